"""Nash-MTL: the Nash bargaining solution (Navon et al., "Multi-Task Learning as a Bargaining
Game", ICML 2022, Theorem 5.1, Eq. (3)).

Finds ``α > 0`` with ``(G Gᵀ) α = 1/α`` (element-wise reciprocal) and returns ``d = Σ_k α_k g_k``.

Solver (deliberate deviation: the paper runs a sequence of convex approximations with cvxpy,
which we do not depend on): ``α`` is the unique minimiser of the strictly convex
``f(α) = ½ αᵀ M α − Σ_k log α_k`` (``∇f = Mα − 1/α``), found by damped Newton steps on the
``K × K`` system (Hessian ``M + diag(1/α²)``; the step is shortened to keep ``α > 0``, taken
whole when it halves the residual, else Armijo backtracking on ``f``), warm-started from
the previous solution, until ``‖Mα − 1/α‖ ≤ tol·‖1/α‖`` or ``max_iter`` steps.

Scale.  Theorem 5.1 fixes the scale of ``α``: it solves ``(G Gᵀ) α = 1/α`` itself, so
``‖d‖² = αᵀ M α = K`` and ``d`` does not change when every gradient is multiplied by ``c > 0``
(homogeneous of degree 0).  The authors' code divides the Gram matrix by its Frobenius norm
``s = ‖M‖_F`` for conditioning but multiplies it back in the constraints
(``−log(α_i s) − log((M/s) α)_i ≤ 0``, an objective divided by ``s``), so its ``α`` solves the raw
equation too.  Likewise here (default, ``normalize_gram=False``): Newton runs on ``M/s`` and
``α = α_s / √s``.  ``normalize_gram=True`` is a deliberate variant returning ``α_s`` itself, the
solution of ``(M/s) α = 1/α`` (``= √s · α``): ``d`` then scales with the gradients (degree 1).
``update_every = N`` recomputes ``α`` every ``N``-th call and reuses it in between (the paper's
speed-up).  Where no solution exists (``Mα = 1/α`` is unsolvable when a positive combination of
the rows vanishes, e.g. anti-parallel rows) Newton does not converge and, as the authors' code does
on a solver failure, the previous ``α`` (initially ones) is kept; ``last_converged`` says which
happened.  All-zero ``G`` gives ``d = 0``.  The authors' gradient clipping (``max_norm``) is not
part of the aggregator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autobalance.methods.aggregators._base import Aggregator, check_positive_int
from autobalance.methods.base import check_positive

__all__ = ["NashMTL", "nash_solve"]


def nash_solve(
    M: np.ndarray, alpha0: np.ndarray, max_iter: int = 100, tol: float = 1e-10
) -> tuple[np.ndarray, bool]:
    """Damped Newton on ``f(α) = ½αᵀMα − Σ log α``; returns ``(α, converged)``."""
    alpha = np.where(np.isfinite(alpha0) & (alpha0 > 0), alpha0, 1.0).astype(np.float64)

    def f(x: np.ndarray) -> float:
        return 0.5 * float(x @ M @ x) - float(np.log(x).sum())

    for _ in range(max_iter):
        grad = M @ alpha - 1.0 / alpha
        if np.linalg.norm(grad) <= tol * np.linalg.norm(1.0 / alpha):
            return alpha, True
        H = M + np.diag(1.0 / alpha**2)
        try:
            step = np.linalg.solve(H, grad)
        except np.linalg.LinAlgError:
            return alpha, False
        if not np.all(np.isfinite(step)):
            return alpha, False
        t = 1.0
        while np.any(alpha - t * step <= 0):  # stay inside α > 0
            t *= 0.5
        f0, slope, t_pos = f(alpha), float(grad @ step), t
        trial = alpha - t * step
        if np.linalg.norm(M @ trial - 1.0 / trial) < 0.5 * np.linalg.norm(grad):
            alpha = trial  # the (feasible) Newton step halves the residual: take it
            continue
        while f(alpha - t * step) > f0 - 1e-4 * t * slope:  # Armijo backtracking
            t *= 0.5
            if t < 1e-10:  # no measurable decrease left (round-off): take the feasible step
                t = t_pos
                break
        alpha = alpha - t * step
        if not np.all(np.isfinite(alpha)) or alpha.max() > 1e12:
            return alpha, False
    grad = M @ alpha - 1.0 / alpha
    return alpha, bool(np.linalg.norm(grad) <= tol * np.linalg.norm(1.0 / alpha))


@dataclass
class NashMTL(Aggregator):
    """Nash-MTL (Navon et al. 2022): Nash bargaining weights.

    ``last_converged`` says whether the last solve converged (else the previous ``α`` was kept).
    """

    name = "nashmtl"
    update_every: int = 1
    max_iter: int = 100
    tol: float = 1e-10
    normalize_gram: bool = False
    _alpha: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)
    _calls: int = field(default=0, init=False, repr=False, compare=False)
    last_converged: bool = field(default=True, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.update_every = check_positive_int("nashmtl update_every", self.update_every)
        self.max_iter = check_positive_int("nashmtl max_iter", self.max_iter)
        self.tol = check_positive("nashmtl tol", self.tol)
        self.normalize_gram = bool(self.normalize_gram)

    def weights(self, M: np.ndarray, losses: np.ndarray | None = None) -> np.ndarray:
        """``α`` (see the module docstring for its scale)."""
        K = M.shape[0]
        if self._alpha is not None and self._alpha.shape[0] != K:
            self._alpha = None
        if self._calls % self.update_every == 0:
            norm = float(np.linalg.norm(M))
            if norm > 0:
                # α = unscale · α_s with α_s the solution for M / ‖M‖_F (well scaled for Newton)
                unscale = 1.0 if self.normalize_gram else 1.0 / math.sqrt(norm)
                start = np.ones(K) if self._alpha is None else self._alpha / unscale
                alpha, ok = nash_solve(M / norm, start, self.max_iter, self.tol)
                self.last_converged = ok
                if ok:
                    self._alpha = alpha * unscale
            else:
                self.last_converged = False
        self._calls += 1
        return np.ones(K) if self._alpha is None else self._alpha

    def state_dict(self) -> dict[str, Any]:
        alpha = None if self._alpha is None else [float(a) for a in self._alpha]
        return {"alpha": alpha, "calls": self._calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._alpha = None if state["alpha"] is None else np.asarray(state["alpha"], np.float64)
        self._calls = int(state["calls"])
