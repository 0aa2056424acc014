"""CAGrad: conflict-averse gradient descent (Liu et al., "Conflict-Averse Gradient Descent for
Multi-task Learning", NeurIPS 2021, Eq. (3) and its dual, Algorithm 1).

With ``g_0 = (1/K) Σ_i g_i`` and ``√φ = c ‖g_0‖``, the primal
``max_d min_i g_iᵀ d  s.t.  ‖d − g_0‖ ≤ √φ`` has the dual over the simplex::

    w* = argmin_{w ∈ Δ}  g_wᵀ g_0 + √φ ‖g_w‖,       g_w = Σ_i w_i g_i
    d  = g_0 + (√φ / ‖g_w*‖) g_w*

and ``rescale`` divides ``d`` by ``1 + c²`` (``1``, the paper's default), by ``1 + c`` (``2``) or
not at all (``0``).  Defaults ``c = 0.5``, ``rescale = 1``.

Solver (deliberate deviation: the authors call SciPy's SLSQP with a ``+1e-8`` inside the square
root): an exact face enumeration on the ``K × K`` Gram matrix.  On a face ``S`` stationarity gives
``w = γ (μ x − y)`` with ``M_SS x = 1``, ``M_SS y = a_S`` (``a = M 1/K``), ``γ = ‖g_w‖/√φ`` and
``μ`` a root of ``(1ᵀx) μ² − 2 (1ᵀy) μ + aᵀy − φ = 0``; the vertices and the min-norm point (where
``g_w = 0``) are added as candidates and the feasible candidate of least dual objective is kept.
``g_0 = 0`` or ``g_w* = 0`` give ``d = g_0``; ``‖g_w*‖²`` below the Gram matrix's round-off
(``1000·K·eps·max_k ‖g_k‖²``, i.e. ``‖g_w*‖ ≲ 1e-6 max_k ‖g_k‖``) counts as zero, since the
direction of such a ``g_w*`` is noise (e.g. when ``0`` lies in the hull of the rows: anti-parallel
rows).  Permutation invariant and homogeneous;
``last_weights`` reports the coefficients of ``d`` on the rows.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from autobalance.errors import HyperparameterError
from autobalance.methods.aggregation import check_gradient_matrix, register_aggregator
from autobalance.methods.aggregators._linalg import combine, face_masks, gram, min_norm_simplex
from autobalance.methods.base import check_positive

__all__ = ["CAGrad", "cagrad_weights"]


def _dual(W: np.ndarray, M: np.ndarray, a: np.ndarray, r: float) -> np.ndarray:
    quad = np.clip(np.einsum("ni,ij,nj->n", W, M, W), 0.0, None)
    return W @ a + r * np.sqrt(quad)


def cagrad_dual_weights(M: np.ndarray, c: float) -> np.ndarray:
    """``w*`` of the dual problem (see the module docstring)."""
    K = M.shape[0]
    s = float(np.max(np.diag(M))) or 1.0
    M = M / s
    b = np.full(K, 1.0 / K)
    a = M @ b
    r = c * float(np.sqrt(max(b @ M @ b, 0.0)))
    cands = [np.eye(K), min_norm_simplex(M)[None]]
    masks = face_masks(K)
    masks = masks[masks.sum(axis=1) >= 2]
    if masks.size and r > 0:
        A = M[None] * masks[:, :, None] * masks[:, None, :]
        A += np.eye(K)[None] * (1.0 - masks)[:, None, :]
        P = np.linalg.pinv(A, rcond=1e-13, hermitian=True)
        x = np.einsum("nij,nj->ni", P, masks)
        y = np.einsum("nij,nj->ni", P, masks * a[None])
        p, q, t = x.sum(axis=1), y.sum(axis=1), y @ a
        disc = np.clip(q * q - p * (t - r * r), 0.0, None)
        for sign in (1.0, -1.0):
            with np.errstate(divide="ignore", invalid="ignore"):
                mu = (q + sign * np.sqrt(disc)) / p
                gamma = 1.0 / (mu * p - q)
                W = gamma[:, None] * (mu[:, None] * x - y) * masks
                ok = (
                    np.isfinite(W).all(axis=1)
                    & (gamma > 0)
                    & np.all(W >= -1e-10, axis=1)
                    & (np.abs(W.sum(axis=1) - 1.0) < 1e-8)
                )
            if ok.any():
                W = np.clip(W[ok], 0.0, None)
                cands.append(W / W.sum(axis=1, keepdims=True))
    W = np.concatenate(cands)
    return W[int(np.argmin(_dual(W, M, a, r)))]


def cagrad_weights(M: np.ndarray, c: float, rescale: int) -> np.ndarray:
    """Coefficients ``β`` with ``d = Σ_i β_i g_i``."""
    K = M.shape[0]
    b = np.full(K, 1.0 / K)
    r = c * float(np.sqrt(max(b @ M @ b, 0.0)))
    w = cagrad_dual_weights(M, c)
    gw2 = float(w @ M @ w)
    floor = 1e3 * K * np.finfo(np.float64).eps * float(np.max(np.diag(M)))
    beta = b + (r / np.sqrt(gw2)) * w if gw2 > floor and r > 0 else b
    return beta / {0: 1.0, 1: 1.0 + c * c, 2: 1.0 + c}[rescale]


@register_aggregator("cagrad", summary="CAGrad (Liu et al. 2021): best worst-case step near g0.")
class CAGrad:
    def __init__(self, c: float = 0.5, rescale: int = 1) -> None:
        self.c = check_positive("cagrad c", c, allow_zero=True)
        if rescale not in (0, 1, 2):
            raise HyperparameterError(f"cagrad rescale must be 0, 1 or 2, got {rescale!r}")
        self.rescale = int(rescale)
        self.last_weights: list[float] | None = None

    def __call__(self, G: Tensor, losses: Tensor | None = None) -> Tensor:
        beta = cagrad_weights(gram(check_gradient_matrix(G)), self.c, self.rescale)
        self.last_weights = [float(x) for x in beta]
        return combine(beta, G)
