"""CAGrad: conflict-averse gradient descent (Liu et al., "Conflict-Averse Gradient Descent for
Multi-task Learning", NeurIPS 2021, Eq. (3) and its dual, Algorithm 1).

With ``g_0 = (1/K) Σ_i g_i`` and ``√φ = r = c ‖g_0‖``, the primal
``max_d min_i g_iᵀ d  s.t.  ‖d − g_0‖ ≤ r`` has the dual over the simplex::

    w* = argmin_{w ∈ Δ}  F(w) = g_wᵀ g_0 + r ‖g_w‖,       g_w = Σ_i w_i g_i
    d  = g_0 + (r / ‖g_w*‖) g_w*

and ``rescale`` divides ``d`` by ``1 + c²`` (``1``, the paper's default), by ``1 + c`` (``2``) or
not at all (``0``).  Defaults ``c = 0.5``, ``rescale = 1``.  The weights are
``w = (1/K + (r/‖g_w*‖) w*) / rescale``.

Solver (deliberate deviation: the authors call SciPy's SLSQP with a ``+1e-8`` inside the square
root): exact, through quadratic programmes.  In terms of ``p = g_w`` the dual minimises
``g_0ᵀp + r‖p‖`` over the hull ``H`` of the rows, and its optimality condition is that of the
projection ``p(t) = Proj_H(−t g_0)`` — the QP ``w(t) = argmin_{w ∈ Δ} ½ wᵀMw + t aᵀw``
(``a = M 1/K``) — at the ``t*`` with ``‖p(t*)‖ = r t*``.  ``‖p(t)‖/t`` does not increase with ``t``
(``t ‖p‖`` is the slope of the convex value function of the ball-constrained problem), so ``t*``
is bracketed by ``[‖p_min‖/r, max_k ‖g_k‖/r]`` and found by bisection on ``log t``, each step one
QP (:func:`._qp.simplex_qp`).  On each QP's face ``S`` the solution is affine,
``w_S(t) = x + t y``, so ``‖p(t)‖² = r² t²`` is a quadratic in ``t``; its roots are the exact
candidates, accepted once their Frank–Wolfe gap ``∇Fᵀw − min_k ∇F_k`` vanishes (to 1e-12) — as
soon as a bisection step lands on the optimal face, usually the first or second.  ``K = 2`` is
closed-form: the vertices and the roots on the one edge.  ``g_0 = 0`` or ``g_w* = 0`` give
``d = g_0``; ``‖g_w*‖²`` below the Gram matrix's round-off (``1000·K·eps·max_k ‖g_k‖²``, i.e.
``‖g_w*‖ ≲ 1e-6 max_k ‖g_k‖``) counts as zero, since the direction of such a ``g_w*`` is noise
(e.g. when ``0`` lies in the hull of the rows: anti-parallel rows).  Permutation invariant and
homogeneous.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autobalance.errors import HyperparameterError
from autobalance.methods.aggregators._base import Aggregator
from autobalance.methods.aggregators._qp import min_norm_simplex, simplex_qp
from autobalance.methods.base import check_positive

__all__ = ["CAGrad", "cagrad_dual_weights", "cagrad_weights"]

_GAP_TOL = 1e-12
_RESCALES = (0, 1, 2)


def _dual(w: np.ndarray, M: np.ndarray, a: np.ndarray, r: float) -> float:
    return float(w @ a + r * np.sqrt(max(float(w @ M @ w), 0.0)))


def _dual_gap(w: np.ndarray, M: np.ndarray, a: np.ndarray, r: float) -> float:
    """Frank–Wolfe gap of ``F`` at ``w`` (``inf`` where ``g_w = 0``, ``F`` is not smooth)."""
    Mw = M @ w
    rho = float(np.sqrt(max(float(w @ Mw), 0.0)))
    if rho <= 0:
        return np.inf
    grad = a + (r / rho) * Mw
    return float(grad @ w - grad.min())


def _face_candidates(M: np.ndarray, a: np.ndarray, r: float, S: np.ndarray) -> list[np.ndarray]:
    """Feasible roots of ``‖p(t)‖ = r t`` with ``w_S(t) = x + t y`` on the face ``S``."""
    n = S.size
    B = np.zeros((n + 1, n + 1))  # [M_SS 1; 1ᵀ 0] [w_S; ν] = [−t a_S; 1]
    B[:n, :n] = M[np.ix_(S, S)]
    B[:n, n] = 1.0
    B[n, :n] = 1.0
    rhs = np.zeros((n + 1, 2))
    rhs[n, 0] = 1.0
    rhs[:n, 1] = -a[S]
    sol = np.linalg.lstsq(B, rhs, rcond=None)[0][:n]
    x, y = sol[:, 0], sol[:, 1]
    Mss = M[np.ix_(S, S)]
    coef = (float(y @ Mss @ y) - r * r, float(x @ Mss @ y), float(x @ Mss @ x))
    out = []
    for t in np.roots([coef[0], 2.0 * coef[1], coef[2]]):
        if abs(t.imag) > 1e-12 * max(abs(t.real), 1.0) or not t.real > 0:
            continue
        wS = x + t.real * y
        if wS.min() < -1e-12:
            continue
        w = np.zeros(M.shape[0])
        w[S] = np.clip(wS, 0.0, None)
        out.append(w / w.sum())
    return out


def cagrad_dual_weights(M: np.ndarray, c: float) -> np.ndarray:
    """``w*`` of the dual problem (see the module docstring)."""
    K = M.shape[0]
    M = M / (float(np.max(np.diag(M))) or 1.0)  # max_k ‖g_k‖ = 1
    a = M @ np.full(K, 1.0 / K)
    r = c * float(np.sqrt(max(float(np.mean(a)), 0.0)))  # ‖g_0‖² = 1ᵀM1/K² = mean(a)
    w_min = min_norm_simplex(M)
    if r <= 0:
        return w_min
    cands = [*np.eye(K), w_min]
    if K == 2:
        cands += _face_candidates(M, a, r, np.arange(2))
        return min(cands, key=lambda w: _dual(w, M, a, r))
    floor = float(np.sqrt(1e3 * K * np.finfo(np.float64).eps))  # ‖g_w‖ that counts as 0
    rho_min = float(np.sqrt(max(float(w_min @ M @ w_min), 0.0)))
    t_lo, t_hi = max(rho_min, floor) / r, 1.0 / r
    if rho_min <= floor:
        w = simplex_qp(M, t_lo * a)
        if np.sqrt(max(float(w @ M @ w), 0.0)) <= r * t_lo:  # t* < t_lo: ‖g_w*‖ < floor
            return w_min
    t = float(np.sqrt(t_lo * t_hi))
    for _ in range(200):
        w = simplex_qp(M, t * a)
        cands.append(w)
        if np.sqrt(max(float(w @ M @ w), 0.0)) > r * t:
            t_lo = t
        else:
            t_hi = t
        guesses = []
        for cand in _face_candidates(M, a, r, np.flatnonzero(w > 0)):
            if _dual_gap(cand, M, a, r) <= _GAP_TOL:
                return cand
            cands.append(cand)
            guesses.append(np.sqrt(max(float(cand @ M @ cand), 0.0)) / r)
        if t_hi <= t_lo * (1.0 + 1e-12):
            break
        inside = [g for g in guesses if t_lo < g < t_hi]
        t = inside[0] if inside else float(np.sqrt(t_lo * t_hi))
    return min(cands, key=lambda w: _dual(w, M, a, r))


def cagrad_weights(M: np.ndarray, c: float, rescale: int) -> np.ndarray:
    """Coefficients ``β`` with ``d = Σ_i β_i g_i``."""
    K = M.shape[0]
    b = np.full(K, 1.0 / K)
    r = c * float(np.sqrt(max(b @ M @ b, 0.0)))
    beta = b
    if r > 0:
        w = cagrad_dual_weights(M, c)
        gw2 = float(w @ M @ w)
        floor = 1e3 * K * np.finfo(np.float64).eps * float(np.max(np.diag(M)))
        if gw2 > floor:
            beta = b + (r / np.sqrt(gw2)) * w
    return beta / {0: 1.0, 1: 1.0 + c * c, 2: 1.0 + c}[rescale]


@dataclass
class CAGrad(Aggregator):
    """CAGrad (Liu et al. 2021): best worst-case step near g0."""

    name = "cagrad"
    c: float = 0.5
    rescale: int = 1

    def __post_init__(self) -> None:
        self.c = check_positive("cagrad c", self.c, allow_zero=True)
        if self.rescale not in _RESCALES:
            raise HyperparameterError(f"cagrad rescale must be 0, 1 or 2, got {self.rescale!r}")
        self.rescale = int(self.rescale)

    def weights(self, M: np.ndarray, losses: np.ndarray | None = None) -> np.ndarray:
        return cagrad_weights(M, self.c, self.rescale)
