"""UPGrad: unconflicting projection of gradients (Quinton & Rey, "Jacobian Descent for
Multi-Objective Optimization", 2024, §4, Eq. (5); the ``UPGrad`` aggregator of TorchJD).

Each row is projected onto the dual cone ``{v : G v ≥ 0}`` of the rows::

    π(g_i) = argmin_{G v ≥ 0} ‖v − g_i‖²  =  g_i + Gᵀ λ_i,
    λ_i    = argmin_{λ ≥ 0} ½ λᵀ M λ + λᵀ M e_i                 (M = G Gᵀ, the dual QP)

and ``d = (1/K) Σ_i π(g_i)`` (the paper's mean pre-weighting).  The dual QP is solved exactly by
face enumeration (:mod:`._linalg`, ``K ≤ 12``) — TorchJD uses a QP solver with a small ridge; no
ridge here.  ``normalize_rows=True`` projects the unit rows ``g_i / ‖g_i‖`` instead (the
scale-invariant variant the paper mentions); the cone is unchanged.  Every ``π(g_i)`` lies in the
cone, hence so does ``d``: ``G d ≥ 0``.  Permutation invariant and homogeneous.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from autobalance.methods.aggregation import check_gradient_matrix, register_aggregator
from autobalance.methods.aggregators._linalg import combine, gram, nonneg_qp, row_norms, safe_div

__all__ = ["UPGrad", "upgrad_weights"]


def upgrad_weights(M: np.ndarray, normalize_rows: bool = False) -> np.ndarray:
    """``w`` with ``d = wᵀ G``: ``w = (1/K) Σ_i (e_i s_i + λ_i)`` (``s_i`` the row scaling)."""
    K = M.shape[0]
    s = safe_div(np.ones(K), row_norms(M)) if normalize_rows else np.ones(K)
    E = np.diag(s)  # columns: the (scaled) rows e_i s_i being projected
    lam = nonneg_qp(M, M @ E)  # (K, K): column i is λ_i
    return (E + lam).sum(axis=1) / K


@register_aggregator(
    "upgrad", summary="UPGrad (Quinton & Rey 2024): mean of dual-cone projections."
)
class UPGrad:
    def __init__(self, normalize_rows: bool = False) -> None:
        self.normalize_rows = bool(normalize_rows)
        self.last_weights: list[float] | None = None

    def __call__(self, G: Tensor, losses: Tensor | None = None) -> Tensor:
        w = upgrad_weights(gram(check_gradient_matrix(G)), self.normalize_rows)
        self.last_weights = [float(x) for x in w]
        return combine(w, G)
