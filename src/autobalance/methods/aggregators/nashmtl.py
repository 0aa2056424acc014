"""Nash-MTL: the Nash bargaining solution (Navon et al., "Multi-Task Learning as a Bargaining
Game", ICML 2022, Theorem 5.1, Eq. (3)).

Finds ``α > 0`` with ``(G Gᵀ) α = 1/α`` (element-wise reciprocal) and returns ``d = Σ_k α_k g_k``.

Solver (deliberate deviation: the paper runs a sequence of convex approximations with cvxpy,
which we do not depend on): ``α`` is the unique minimiser of the strictly convex
``f(α) = ½ αᵀ M α − Σ_k log α_k`` (``∇f = Mα − 1/α``), found by damped Newton steps on the
``K × K`` system (Hessian ``M + diag(1/α²)``; the step is shortened to keep ``α > 0``, taken
whole when it halves the residual, else Armijo backtracking on ``f``), warm-started from
the previous solution, until ``‖Mα − 1/α‖ ≤ tol·‖1/α‖`` or ``max_iter`` steps.

As in the authors' code, the Gram matrix is first divided by its Frobenius norm
(``normalize_gram=True``), i.e. ``α = ‖M‖_F^{1/2} α'`` with ``α'`` the exact solution of the raw
equation (this makes ``d`` homogeneous of degree 1); ``normalize_gram=False`` uses ``α'`` itself
(``‖d‖² = K``).  ``update_every = N`` recomputes ``α`` every ``N``-th call and reuses it in between
(the paper's speed-up).  Where no solution exists (``Mα = 1/α`` is unsolvable when a positive
combination of the rows vanishes, e.g. anti-parallel rows) Newton does not converge and, as the
authors' code does on a solver failure, the previous ``α`` (initially ones) is kept;
``last_converged`` says which happened.  All-zero ``G`` gives ``d = 0``.  The authors' gradient
clipping (``max_norm``) is not part of the aggregator.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor

from autobalance.errors import HyperparameterError
from autobalance.methods.aggregation import check_gradient_matrix, register_aggregator
from autobalance.methods.aggregators._linalg import combine, gram
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


@register_aggregator("nashmtl", summary="Nash-MTL (Navon et al. 2022): Nash bargaining weights.")
class NashMTL:
    def __init__(
        self,
        update_every: int = 1,
        max_iter: int = 100,
        tol: float = 1e-10,
        normalize_gram: bool = True,
    ) -> None:
        if int(update_every) != update_every or update_every < 1:
            raise HyperparameterError(f"nashmtl update_every must be >= 1, got {update_every!r}")
        if int(max_iter) != max_iter or max_iter < 1:
            raise HyperparameterError(f"nashmtl max_iter must be >= 1, got {max_iter!r}")
        self.update_every = int(update_every)
        self.max_iter = int(max_iter)
        self.tol = check_positive("nashmtl tol", tol)
        self.normalize_gram = bool(normalize_gram)
        self._alpha: np.ndarray | None = None
        self._calls = 0
        self.last_converged = True
        self.last_weights: list[float] | None = None

    def weights(self, G: Tensor) -> np.ndarray:
        M = gram(check_gradient_matrix(G))
        K = M.shape[0]
        if self._alpha is None or self._alpha.shape[0] != K:
            self._alpha = np.ones(K)
        if self._calls % self.update_every == 0:
            norm = float(np.linalg.norm(M))
            if norm > 0:
                Ms = M / norm if self.normalize_gram else M
                alpha, ok = nash_solve(Ms, self._alpha, self.max_iter, self.tol)
                self.last_converged = ok
                if ok:
                    self._alpha = alpha
            else:
                self.last_converged = False
        self._calls += 1
        return self._alpha

    def __call__(self, G: Tensor, losses: Tensor | None = None) -> Tensor:
        alpha = self.weights(G)
        self.last_weights = [float(a) for a in alpha]
        return combine(alpha, G)

    def state_dict(self) -> dict[str, Any]:
        alpha = None if self._alpha is None else [float(a) for a in self._alpha]
        return {"alpha": alpha, "calls": self._calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._alpha = None if state["alpha"] is None else np.asarray(state["alpha"], np.float64)
        self._calls = int(state["calls"])
