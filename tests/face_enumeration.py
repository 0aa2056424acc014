"""The exact face-enumeration QP solvers the aggregators used before quadprog: a test reference.

A convex QP over a polyhedron has an optimal *basic* solution, whose support ``S`` makes the
reduced KKT system non-singular, so solving the equality-constrained problem on every face
(``2^K − 1`` of them, as one batch of pseudo-inverses) and keeping the best *feasible* candidate
gives the optimum.  Candidates are scored by the true objective.  Cost and memory grow as
``2^K``: usable up to ``K ≈ 12``.  Kept out of the library on purpose; the tests and
``benchmarks/qp_time.py`` compare the quadprog solvers of
:mod:`autobalance.methods.aggregators._qp` with it.
"""

from __future__ import annotations

import itertools

import numpy as np

__all__ = ["cagrad_dual_weights", "face_masks", "min_norm_simplex", "nonneg_qp"]

_FEAS_TOL = 1e-10


def face_masks(K: int) -> np.ndarray:
    """Every non-empty support of ``K`` variables, as ``(2^K − 1, K)`` 0/1 rows."""
    rows = [m for m in itertools.product((0.0, 1.0), repeat=K) if any(m)]
    return np.array(rows, dtype=np.float64)


def _scale(M: np.ndarray) -> float:
    s = float(np.max(np.abs(np.diag(M)))) if M.size else 0.0
    return s if s > 0 else 1.0


def min_norm_simplex(M: np.ndarray) -> np.ndarray:
    """``argmin_{α ∈ Δ} αᵀ M α`` by enumerating the faces of the simplex."""
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
    cand = np.concatenate([cand, np.eye(K)])  # the vertices are always feasible candidates
    obj = np.einsum("ni,ij,nj->n", cand, A0, cand)
    return cand[int(np.argmin(obj))]


def nonneg_qp(M: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """``argmin_{λ ≥ 0} ½ λᵀ M λ + qᵀ λ`` for every column ``q`` of ``Q``, by face enumeration."""
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


def _dual(W: np.ndarray, M: np.ndarray, a: np.ndarray, r: float) -> np.ndarray:
    quad = np.clip(np.einsum("ni,ij,nj->n", W, M, W), 0.0, None)
    return W @ a + r * np.sqrt(quad)


def cagrad_dual_weights(M: np.ndarray, c: float) -> np.ndarray:
    """CAGrad's ``w* = argmin_{w ∈ Δ} wᵀ M b + c ‖g_0‖ ‖G w‖`` (``b = 1/K``) by face enumeration.

    On a face ``S`` stationarity gives ``w = γ (μ x − y)`` with ``M_SS x = 1``, ``M_SS y = a_S``
    (``a = M b``) and ``μ`` a root of ``(1ᵀx) μ² − 2 (1ᵀy) μ + aᵀy − r² = 0``; the vertices and
    the min-norm point are candidates too.
    """
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
