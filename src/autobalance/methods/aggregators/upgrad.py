"""UPGrad: unconflicting projection of gradients (Quinton & Rey, "Jacobian Descent for
Multi-Objective Optimization", 2024, §4, Eq. (5); the ``UPGrad`` aggregator of TorchJD).

Each row is projected onto the dual cone ``{v : G v ≥ 0}`` of the rows::

    π(g_i) = argmin_{G v ≥ 0} ‖v − g_i‖²  =  g_i + Gᵀ λ_i,
    λ_i    = argmin_{λ ≥ 0} ½ λᵀ M λ + λᵀ M e_i                 (M = G Gᵀ, the dual QP)

and ``d = (1/K) Σ_i π(g_i)`` (the paper's mean pre-weighting), i.e. ``w = (1/K) Σ_i (e_i + λ_i)``.
The ``K`` dual QPs are solved exactly at any ``K`` (:mod:`._qp`: quadprog, then an exact
active-set refinement on the unridged Gram matrix; a closed form for ``K = 2``) — TorchJD solves
them with quadprog on a Gram matrix carrying a ridge of ``1e-4`` (relative to its trace).
``normalize_rows=True`` projects the unit rows ``g_i / ‖g_i‖`` instead (the scale-invariant
variant the paper mentions); the cone is unchanged.  Every ``π(g_i)`` lies in the cone, hence so
does ``d``: ``G d ≥ 0``.  Permutation invariant and homogeneous.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autobalance.methods.aggregators._base import Aggregator
from autobalance.methods.aggregators._gram import row_norms, safe_div
from autobalance.methods.aggregators._qp import nonneg_qp

__all__ = ["UPGrad", "upgrad_weights"]


def upgrad_weights(M: np.ndarray, normalize_rows: bool = False) -> np.ndarray:
    """``w`` with ``d = wᵀ G``: ``w = (1/K) Σ_i (e_i s_i + λ_i)`` (``s_i`` the row scaling)."""
    K = M.shape[0]
    s = safe_div(np.ones(K), row_norms(M)) if normalize_rows else np.ones(K)
    E = np.diag(s)  # columns: the (scaled) rows e_i s_i being projected
    lam = nonneg_qp(M, M @ E)  # (K, K): column i is λ_i
    return (E + lam).sum(axis=1) / K


@dataclass
class UPGrad(Aggregator):
    """UPGrad (Quinton & Rey 2024): mean of dual-cone projections."""

    name = "upgrad"
    normalize_rows: bool = False

    def __post_init__(self) -> None:
        self.normalize_rows = bool(self.normalize_rows)

    def weights(self, M: np.ndarray, losses: np.ndarray | None = None) -> np.ndarray:
        return upgrad_weights(M, self.normalize_rows)
