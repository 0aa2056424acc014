"""Exact convex quadratic programmes on the ``K × K`` Gram matrix ``M = G Gᵀ``, at any ``K``.

Two problems (``M`` symmetric positive semi-definite, float64)::

    simplex_qp(M, b):   argmin_{w ∈ Δ}   ½ wᵀ M w + bᵀ w     (Δ: w ≥ 0, Σ w = 1)
    nonneg_qp(M, Q):    argmin_{λ ≥ 0}   ½ λᵀ M λ + qᵀ λ     for every column q of Q

MGDA is ``simplex_qp(M, 0)``, UPGrad's dual is ``nonneg_qp``, and CAGrad solves a sequence of
``simplex_qp(M, t a)`` (:mod:`.cagrad`).  ``b`` and the columns of ``Q`` are expected in the range
of ``M`` (true of all three), so every face of the feasible set has a minimiser.  How:

1. **Scale**: symmetrise, then Jacobi-scale, ``A = D M D`` with ``D = diag(1/√M_kk)`` (1 for zero
   rows) and ``w = D u``: ``A`` has a unit diagonal, so rows of very different lengths cannot
   hide each other behind round-off, and every tolerance below is relative.
2. **quadprog** (Goldfarb & Idnani's dual active-set method) solves the scaled problem.  It needs
   a strictly positive definite matrix; only where the smallest eigenvalue of ``A`` is below
   ``RIDGE = 1e-10`` (parallel gradients, ``K > P``) does it get ``A + RIDGE·I``.
3. **Exact active-set refinement** (primal active-set iterations, Nocedal & Wright, *Numerical
   Optimization*, Alg. 16.3), started from quadprog's point and face: on the face (the variables
   not held at 0) the equality-constrained KKT system of the *unridged* ``A`` is solved by a
   least-squares correction from the current point (:func:`numpy.linalg.lstsq`: exact when the
   face's minimiser is unique, the nearest minimiser when it is not); a step that would leave
   the feasible set stops at its boundary and frees nothing, a variable whose multiplier is
   negative is freed.  Each iteration ends with a feasible point; the iterations stop when the
   KKT conditions hold to ``TOL`` (relative) — usually at once, when quadprog found the right
   face — and the point with the smallest KKT residual seen is returned, so the refinement can
   only improve on quadprog's answer, whose error is of the order of the ridge.

``K = 2`` has closed forms (the minimum of a quadratic on ``[0, 1]``; the best of the four faces of
the quadrant), used as they are exact.  There is no limit on ``K``: a problem costs ``O(K³)``
(against ``2^K − 1`` faces for the enumeration these solvers replace).
"""

from __future__ import annotations

import numpy as np
import quadprog

__all__ = ["RIDGE", "TOL", "min_norm_simplex", "nonneg_qp", "simplex_qp"]

#: Ridge added (to the unit-diagonal scaled matrix) only where quadprog needs strict positivity.
RIDGE = 1e-10
#: KKT tolerance of the refinement, relative to the unit-diagonal scaled problem.
TOL = 1e-13


def _jacobi(M: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """``(A, D, s)``: ``A = D (M/s) D`` (symmetrised), ``s = max_k M_kk`` and
    ``D_k = (M_kk/s)^{-1/2}`` (1 where ``M_kk = 0``).  The minimisers of both problems do not
    change when ``M`` and ``b`` (or ``Q``) are divided by the same ``s``."""
    diag = np.diag(M).copy()
    s = float(diag.max()) if diag.size and diag.max() > 0 else 1.0
    diag /= s
    D = np.ones(M.shape[0])
    positive = diag > 0
    D[positive] = 1.0 / np.sqrt(diag[positive])
    A = 0.5 * (M + M.T) / s * np.outer(D, D)
    return A, D, s


def _for_quadprog(A: np.ndarray) -> np.ndarray:
    """``A`` when it is safely positive definite, else ``A + RIDGE·I``."""
    if float(np.linalg.eigvalsh(A)[0]) > RIDGE:
        return A
    return A + RIDGE * np.eye(A.shape[0])


def _kkt(
    A: np.ndarray, b: np.ndarray, u: np.ndarray, e: np.ndarray | None
) -> tuple[float, np.ndarray]:
    """KKT residual of a feasible ``u`` of ``min ½uᵀAu + bᵀu, u ≥ 0 (, eᵀu = 1)``, and the
    reduced gradient ``∇f − ν e`` (``ν`` the best equality multiplier on the support)."""
    grad = A @ u + b
    if e is not None:
        support = u > 0
        nu = float(np.mean(grad[support] / e[support])) if support.any() else 0.0
        grad = grad - nu * e
    stationarity = np.abs(grad[u > 0]).max(initial=0.0)
    dual = max(-float(grad.min()), 0.0)
    scale = max(1.0, float(np.abs(b).max(initial=0.0)), float(u.max(initial=0.0)))
    return max(stationarity, dual) / scale, grad


def _face_minimiser(
    A: np.ndarray, b: np.ndarray, u: np.ndarray, free: np.ndarray, e: np.ndarray | None
) -> np.ndarray:
    """The minimiser on the face ``{u_k = 0, k ∉ free}`` (with ``eᵀu = 1``) nearest ``u``."""
    S = np.flatnonzero(free)
    n = S.size
    z = np.zeros_like(u)
    if n == 0:
        return z
    if e is None:
        B = A[np.ix_(S, S)]
        z[S] = u[S] + np.linalg.lstsq(B, -b[S] - B @ u[S], rcond=None)[0]
        return z
    B = np.zeros((n + 1, n + 1))  # unknowns (u_S, −ν): A_SS u_S − ν e_S = −b_S,  e_Sᵀ u_S = 1
    B[:n, :n] = A[np.ix_(S, S)]
    B[:n, n] = e[S]
    B[n, :n] = e[S]
    grad = (A @ u + b)[S]
    y0 = np.concatenate([u[S], [-float(np.mean(grad / e[S]))]])
    rhs = np.concatenate([-b[S], [1.0]])
    z[S] = (y0 + np.linalg.lstsq(B, rhs - B @ y0, rcond=None)[0])[:n]
    return z


def _feasible(u: np.ndarray, e: np.ndarray | None) -> np.ndarray:
    """``u`` clipped to ``u ≥ 0`` and, with ``e``, rescaled onto ``eᵀu = 1``."""
    u = np.clip(u, 0.0, None)
    if e is None:
        return u
    total = float(e @ u)
    if total > 0:
        return u / total
    u[0] = 1.0 / e[0]  # u was 0: any vertex is feasible
    return u


def _refine(
    A: np.ndarray, b: np.ndarray, u: np.ndarray, free: np.ndarray, e: np.ndarray | None
) -> np.ndarray:
    """Primal active-set iterations from the feasible ``u`` (see the module docstring)."""
    u = _feasible(np.where(free, u, 0.0), e)  # quadprog's active bounds hold exactly
    best, (best_res, _) = u, _kkt(A, b, u, e)
    previous = np.inf
    for _ in range(3 * u.shape[0] + 10):
        if best_res <= TOL:
            break
        z = _face_minimiser(A, b, u, free, e)
        blocking = free & (z < 0)
        if blocking.any():  # step to the boundary; the blocking variables leave the face
            step = u[blocking] / (u[blocking] - z[blocking])
            alpha = float(step.min())
            u = u + alpha * (z - u)
            hit = np.flatnonzero(blocking)[step <= alpha]
            u[hit] = 0.0
            free[hit] = False
            u = _feasible(u, e)
        else:
            u = _feasible(z, e)
        res, reduced = _kkt(A, b, u, e)
        if res < best_res:
            best, best_res = u, res
        if not blocking.any():
            reduced = np.where(free, np.inf, reduced)
            k = int(np.argmin(reduced))
            if reduced[k] < -TOL * max(1.0, float(np.abs(b).max(initial=0.0))):
                free[k] = True
            elif res > 0.5 * previous:
                break  # nothing left to free, and a further correction no longer helps
            previous = res
    return best


def _simplex_pair(M: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``K = 2``: ``w = (α, 1 − α)``, ``f`` is ``½ c α² + e α`` + const on ``[0, 1]``."""
    c = M[0, 0] + M[1, 1] - 2.0 * M[0, 1]
    e = M[0, 1] - M[1, 1] + b[0] - b[1]
    # c = 0: f is linear in α (equal rows): the better end, or the midpoint on a tie
    alpha = min(1.0, max(0.0, -e / c)) if c > 0 else 0.0 if e > 0 else 1.0 if e < 0 else 0.5
    return np.array([alpha, 1.0 - alpha])


def simplex_qp(M: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """``argmin_{w ∈ Δ} ½ wᵀ M w + bᵀ w`` (``b = 0`` by default; see the module docstring)."""
    K = M.shape[0]
    b = np.zeros(K) if b is None else np.asarray(b, dtype=np.float64)
    if K == 1:
        return np.ones(1)
    if K == 2:
        return _simplex_pair(0.5 * (M + M.T), b)
    A, D, s = _jacobi(M)  # w = D u:  min ½ uᵀAu + (Db/s)ᵀu,  u ≥ 0,  Dᵀu = 1
    bs = D * b / s
    C = np.concatenate([D[:, None], np.eye(K)], axis=1)
    lower = np.concatenate([[1.0], np.zeros(K)])
    u0, *_, active = quadprog.solve_qp(_for_quadprog(A), -bs, C, lower, 1)
    free = np.ones(K, dtype=bool)
    free[active[active > 1] - 2] = False  # quadprog's constraint indices are 1-based
    u = _refine(A, bs, u0, free, D)
    return D * u


def min_norm_simplex(M: np.ndarray) -> np.ndarray:
    """``argmin_{α ∈ Δ} αᵀ M α``, the minimum-norm point of the hull of the rows (MGDA).

    All-zero ``M`` gives the uniform weights.
    """
    if not np.any(M):
        return np.full(M.shape[0], 1.0 / M.shape[0])
    return simplex_qp(M)


def _nonneg_pair(M: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``K = 2``: the best of the four faces (``0``, each axis, the interior)."""
    cands = [np.zeros(2)]
    for k in (0, 1):
        if M[k, k] > 0 and -q[k] > 0:
            lam = np.zeros(2)
            lam[k] = -q[k] / M[k, k]
            cands.append(lam)
    det = M[0, 0] * M[1, 1] - M[0, 1] ** 2
    if det > 1e-12 * M[0, 0] * M[1, 1]:  # else a lower face holds an optimum
        lam = np.array([-M[1, 1] * q[0] + M[0, 1] * q[1], M[0, 1] * q[0] - M[0, 0] * q[1]]) / det
        if lam.min() >= 0:
            cands.append(lam)
    return min(cands, key=lambda x: 0.5 * x @ M @ x + q @ x)


def nonneg_qp(M: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """``argmin_{λ ≥ 0} ½ λᵀ M λ + qᵀ λ`` for every column ``q`` of ``Q`` (``K × R``).

    Returns the ``K × R`` matrix of solutions (see the module docstring).
    """
    K, R = Q.shape
    Q = np.asarray(Q, dtype=np.float64)
    out = np.zeros((K, R))
    if K == 2:
        Ms = 0.5 * (M + M.T)
        for j in range(R):
            out[:, j] = _nonneg_pair(Ms, Q[:, j])
        return out
    A, D, s = _jacobi(M)  # λ = D u:  min ½ uᵀAu + (Dq/s)ᵀu,  u ≥ 0
    H = _for_quadprog(A)
    eye = np.eye(K)
    for j in range(R):
        q = D * Q[:, j] / s
        u0, *_, active = quadprog.solve_qp(H, -q, eye, np.zeros(K), 0)
        free = np.ones(K, dtype=bool)
        free[active[active > 0] - 1] = False
        out[:, j] = D * _refine(A, q, u0, free, None)
    return out
