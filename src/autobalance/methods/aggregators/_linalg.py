"""Small exact solvers on the ``K × K`` Gram matrix ``M = G Gᵀ`` shared by the aggregators.

Everything here works on float64 NumPy arrays of size ``K`` (a handful of losses); the ``(K, P)``
gradient matrix itself stays on its own device (see :func:`gram` and :func:`combine`).  The Gram
matrix is always accumulated in float64: formed in float32 its entries carry errors of about
``1e-7 · ‖g_i‖ ‖g_j‖``, which swamp the small eigenvalues of nearly parallel or rank-deficient
(``K > P``) gradient systems, so every pseudo-inverse and rank decision below (calibrated for
float64) would invert noise.

The two quadratic programmes are solved *exactly* by enumerating the faces of the feasible set:
a convex QP over a polyhedron has an optimal *basic* solution, whose support ``S`` makes the
reduced KKT system non-singular, so solving the equality-constrained problem on every face
(``2^K − 1`` of them, solved as one batch of pseudo-inverses) and keeping the best *feasible*
candidate gives the optimum.  Candidates are scored by the true objective, so near-singular faces
can never return a point worse than the optimum found on a well-conditioned face.  Enumeration is
limited to ``K ≤ MAX_ENUMERATION_K`` losses (4 096 faces).
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import Tensor

from autobalance.errors import HyperparameterError

__all__ = [
    "MAX_ENUMERATION_K",
    "combine",
    "face_masks",
    "gram",
    "min_norm_simplex",
    "nonneg_qp",
    "row_norms",
    "safe_div",
]

MAX_ENUMERATION_K = 12
_FEAS_TOL = 1e-10


def gram(G: Tensor) -> np.ndarray:
    """``M = G Gᵀ`` accumulated in float64, as a symmetric float64 array.

    The product runs on ``G``'s device (on the CPU for devices without float64, e.g. MPS); only
    the ``K × K`` result is copied to the host.  The entries of a float32 ``G`` are exact in
    float64, so ``M`` is the Gram matrix of the given rows to float64 round-off.
    """
    with torch.no_grad():
        Gd = G.detach()
        if Gd.device.type == "mps":  # no float64 there
            Gd = Gd.cpu()
        Gd = Gd.to(torch.float64)
        M = (Gd @ Gd.T).cpu().numpy()
    return 0.5 * (M + M.T)


def combine(weights: np.ndarray, G: Tensor) -> Tensor:
    """``d = Σ_k w_k G_k`` in ``G``'s dtype and device."""
    w = torch.as_tensor(np.asarray(weights, dtype=np.float64), dtype=G.dtype, device=G.device)
    return w @ G


def row_norms(M: np.ndarray) -> np.ndarray:
    """``‖g_k‖`` from the Gram matrix."""
    return np.sqrt(np.clip(np.diag(M), 0.0, None))


def safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``den`` is 0 (zero rows stay zero, never NaN)."""
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den > 0)
    return out


def face_masks(K: int) -> np.ndarray:
    if K > MAX_ENUMERATION_K:
        raise HyperparameterError(
            f"the exact face-enumeration solver supports at most {MAX_ENUMERATION_K} losses, "
            f"got K = {K}"
        )
    rows = [m for m in itertools.product((0.0, 1.0), repeat=K) if any(m)]
    return np.array(rows, dtype=np.float64)  # (2^K - 1, K)


def _scale(M: np.ndarray) -> float:
    s = float(np.max(np.abs(np.diag(M)))) if M.size else 0.0
    return s if s > 0 else 1.0


def min_norm_simplex(M: np.ndarray) -> np.ndarray:
    """Exact ``argmin_{α ∈ Δ} αᵀ M α`` (``Δ`` the probability simplex), ``M`` PSD ``K × K``.

    Per face ``S``: ``[M_SS 1; 1ᵀ 0][α_S; −μ] = [0; 1]`` (pseudo-inverse), then the feasible
    candidate of least objective.  All-zero ``M`` gives the uniform weights.
    """
    K = M.shape[0]
    if K == 1:
        return np.ones(1)
    if not np.any(M):
        return np.full(K, 1.0 / K)
    A0 = M / _scale(M)
    masks = face_masks(K)
    n = masks.shape[0]
    A = np.zeros((n, K + 1, K + 1))
    A[:, :K, :K] = A0[None] * masks[:, :, None] * masks[:, None, :]
    A[:, :K, :K] += np.eye(K)[None] * (1.0 - masks)[:, None, :]
    A[:, :K, K] = masks
    A[:, K, :K] = masks
    b = np.zeros((n, K + 1))
    b[:, K] = 1.0
    sol = np.einsum("nij,nj->ni", np.linalg.pinv(A, rcond=1e-13, hermitian=True), b)[:, :K]
    sol *= masks
    ok = np.all(sol >= -_FEAS_TOL, axis=1) & (np.abs(sol.sum(axis=1) - 1.0) < 1e-8)
    cand = np.clip(sol[ok], 0.0, None)
    cand /= cand.sum(axis=1, keepdims=True)
    eye = np.eye(K)  # the vertices are always feasible candidates
    cand = np.concatenate([cand, eye])
    obj = np.einsum("ni,ij,nj->n", cand, A0, cand)
    return cand[int(np.argmin(obj))]


def nonneg_qp(M: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """Exact ``argmin_{λ ≥ 0} ½ λᵀ M λ + qᵀ λ`` for every column ``q`` of ``Q`` (``K × R``).

    Returns the ``K × R`` matrix of solutions.  Per face ``S``: ``M_SS λ_S = −q_S``
    (pseudo-inverse); ``λ = 0`` is always a candidate.
    """
    K, R = Q.shape
    s = _scale(M)
    A0, Q0 = M / s, Q / s
    masks = face_masks(K)
    A = A0[None] * masks[:, :, None] * masks[:, None, :]
    A += np.eye(K)[None] * (1.0 - masks)[:, None, :]
    rhs = -Q0[None] * masks[:, :, None]  # (n, K, R)
    sol = np.linalg.pinv(A, rcond=1e-13, hermitian=True) @ rhs  # (n, K, R)
    sol *= masks[:, :, None]
    sol = np.concatenate([sol, np.zeros((1, K, R))])
    feasible = np.all(sol >= -_FEAS_TOL, axis=1)  # (n + 1, R)
    sol = np.clip(sol, 0.0, None)
    obj = 0.5 * np.einsum("nkr,kj,njr->nr", sol, A0, sol) + np.einsum("kr,nkr->nr", Q0, sol)
    obj = np.where(feasible, obj, np.inf)
    best = np.argmin(obj, axis=0)  # (R,)
    return sol[best, :, np.arange(R)].T
