"""IMTL-G: impartial gradient weighting (Liu et al., "Towards Impartial Multi-task Learning",
ICLR 2021, §3.2, Eq. (9)).

With ``u_i = g_i / ‖g_i‖``, ``D = [g_1 − g_2; …; g_1 − g_K]`` and ``U = [u_1 − u_2; …; u_1 − u_K]``
(both ``(K−1) × P``)::

    α_{2:K} = g_1 Uᵀ (D Uᵀ)⁻¹,      α_1 = 1 − Σ_{k≥2} α_k,      d = Σ_k α_k g_k

so that ``d`` has the same projection onto every unit gradient (``d·u_i = d·u_j``).  Every product
is read off the ``K × K`` Gram matrix (``g_a·u_b = M_ab / ‖g_b‖``).  Deliberate deviation: a
singular ``D Uᵀ`` (parallel rows, ``K > P``, a zero row whose ``u`` is taken as 0) is inverted
with the Moore–Penrose pseudo-inverse, so the equal-projection property then holds only in the
least-squares sense, and the solution — one of several with equal projections — depends on which
loss is ``g_1``: permutation invariance then fails (it holds when ``D Uᵀ`` is non-singular).  Only
the gradient part (IMTL-G) is implemented, not the loss scaling (IMTL-L).  Homogeneous;
the weights are ``α``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autobalance.methods.aggregators._base import Aggregator
from autobalance.methods.aggregators._gram import row_norms, safe_div

__all__ = ["IMTLG", "imtl_g_weights"]


def imtl_g_weights(M: np.ndarray) -> np.ndarray:
    """``α`` of Eq. (9) from the Gram matrix ``M = G Gᵀ``."""
    K = M.shape[0]
    if K == 1:
        return np.ones(1)
    inv = safe_div(np.ones(K), row_norms(M))
    GU = M * inv[None, :]  # GU[a, b] = g_a · u_b
    # g_1 Uᵀ: entries g_1·(u_1 − u_i);  D Uᵀ: (g_1 − g_i)·(u_1 − u_j), i, j = 2..K
    r = GU[0, 0] - GU[0, 1:]
    DU = GU[0, 0] - GU[0, None, 1:] - GU[1:, 0, None] + GU[1:, 1:]
    # Entries of GU are at most max‖g‖ in size; a D Uᵀ below round-off of that (all unit gradients
    # equal: every α with Σα = 1 has equal projections) is zero, not noise to be inverted.
    scale = float(np.max(np.abs(DU)))
    if scale <= 1e-12 * float(np.max(np.sqrt(np.clip(np.diag(M), 0.0, None)))):
        a = np.zeros(K - 1)
    else:
        a = np.linalg.pinv(DU.T / scale, rcond=1e-12) @ (r / scale)  # α Dᵤ = r ⇔ DUᵀ α = r
    return np.concatenate([[1.0 - a.sum()], a])


@dataclass
class IMTLG(Aggregator):
    """IMTL-G (Liu et al. 2021): equal projections on unit grads."""

    name = "imtl-g"

    def weights(self, M: np.ndarray, losses: np.ndarray | None = None) -> np.ndarray:
        return imtl_g_weights(M)
