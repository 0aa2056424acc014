"""Gauss–Newton phases on the stacked residuals: Levenberg–Marquardt and energy natural gradient.

With ``ρ(θ)`` the stacked weighted residuals (:mod:`autobalance.phases.jacobian`),
``L = ‖ρ‖²`` and ``J = ∂ρ/∂θ``, one iteration solves the damped linear least-squares problem::

    δ = argmin_δ ‖ρ + J δ‖² + λ ‖δ‖² = −(JᵀJ + λI)⁻¹ Jᵀρ = −Jᵀ(JJᵀ + λI)⁻¹ ρ        (GN)

(the second form, on the ``m × m`` kernel, when there are fewer residuals than parameters; with
``λ = 0`` the minimum-norm least-squares solution) and moves ``θ ← θ + η δ``.

* ``"engd"`` — energy natural gradient descent (Müller & Zeinhofer, "Achieving high accuracy
  with PINNs via energy natural gradient descent", ICML 2023, Alg. 1): for the PINN loss the
  energy Gram matrix is ``JᵀJ``, the step is its pseudo-inverse applied to the gradient
  (eigenvalues below ``rcond`` times the largest cut off) and ``η`` is chosen on the grid
  ``{2⁻ᵏ : k = 0, …, grid}`` by the least loss (their line search, ``grid = 30``).  The grid is
  walked from ``η = 1`` down and left as soon as the loss rises again after a decrease (the same
  choice as theirs when the loss along ``δ`` is unimodal on the grid, with fewer evaluations).
* ``"gauss_newton"`` — Levenberg–Marquardt (Levenberg 1944; Marquardt 1963): ``η = 1`` and
  ``λ`` adapted by the gain ratio ``ϱ = (L(θ) − L(θ+δ)) / (L(θ) − ‖ρ + Jδ‖²)``: after a success
  ``λ ← λ · max(1/3, 1 − (2ϱ − 1)³)``, after a failure ``λ ← λ · ν``, ``ν ← 2ν`` and the step is
  solved again (Nielsen's rule: Madsen, Nielsen & Tingleff, "Methods for non-linear least
  squares problems", 2004, Eq. 2.21).

On a linear least-squares problem with ``λ = 0`` either reaches the exact solution in one step.
The ``n × n`` (or ``m × m``) system is dense, so a phase refuses more than ``max_params``
parameters.  A Jacobian counts as one Jacobian and one function evaluation; each trial step of
the line search or of Levenberg–Marquardt as one function evaluation (no gradient).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from torch import Tensor

from autobalance.errors import ConfigError
from autobalance.phases.base import Phase, check_parameter_limit
from autobalance.phases.evaluator import Evaluation
from autobalance.phases.flat import assign_flat, flat_params
from autobalance.phases.jacobian import stacked_residuals
from autobalance.phases.objective import Objective

__all__ = ["DampedLeastSquares", "ENGDPhase", "GaussNewtonPhase", "damped_least_squares"]

#: Adaptive relative damping stays in this range (below it the solve is undamped in float64).
_DAMPING_RANGE = (1e-15, 1e15)


class DampedLeastSquares:
    """``δ(λ) = argmin ‖ρ + Jδ‖² + λ‖δ‖²`` for several ``λ``, Eq. (GN), the Gram matrix formed
    once: ``JᵀJ`` (``n × n``) when ``m ≥ n``, else the kernel ``JJᵀ`` (``m × m``).

    :meth:`solve` uses a Cholesky factorisation (and, should it fail numerically, least squares
    on the stacked system ``[J; √λ I] δ = [−ρ; 0]``); :meth:`pseudo_solve` the pseudo-inverse of
    the Gram matrix from its eigendecomposition, eigenvalues below ``rcond`` times the largest
    cut off — the minimum-norm least-squares step when ``λ = 0``.
    """

    def __init__(self, J: Tensor, rho: Tensor) -> None:
        m, n = J.shape
        self.J, self.rho = J, rho
        self.primal = m >= n
        self.gram = J.T @ J if self.primal else J @ J.T
        self.rhs = J.T @ rho if self.primal else rho
        #: ``‖J‖_F² / n``: the mean diagonal entry of ``JᵀJ`` (relative damping's unit).
        self.scale = float(self.gram.diagonal().sum()) / n
        self._eig: tuple[Tensor, Tensor] | None = None

    def _finish(self, z: Tensor) -> Tensor:
        return -z if self.primal else -(self.J.T @ z)

    def solve(self, damping: float) -> Tensor:
        """The step for ``λ = damping > 0`` (absolute)."""
        if not damping > 0:
            raise ConfigError(f"damping must be > 0 for a Cholesky solve, got {damping}")
        system = self.gram.clone()
        system.diagonal().add_(damping)
        factor, info = torch.linalg.cholesky_ex(system)
        if int(info) == 0:
            return self._finish(torch.cholesky_solve(self.rhs.unsqueeze(1), factor)[:, 0])
        n = self.J.shape[1]
        eye = damping**0.5 * torch.eye(n, dtype=self.J.dtype, device=self.J.device)
        stacked = torch.cat([self.J, eye])
        zeros = torch.zeros(n, dtype=self.J.dtype, device=self.J.device)
        target = torch.cat([-self.rho, zeros]).unsqueeze(1)
        return torch.linalg.lstsq(stacked, target).solution[:, 0]

    def pseudo_solve(self, damping: float = 0.0, *, rcond: float = 1e-12) -> Tensor:
        """The step with ``(G + λI)⁺``, eigenvalues of ``G`` below ``rcond · max`` cut off."""
        if self._eig is None:
            self._eig = torch.linalg.eigh(self.gram)
        values, vectors = self._eig
        keep = values > rcond * values.max().clamp_min(0)
        inverse = torch.where(keep, 1.0 / (values + damping), torch.zeros_like(values))
        return self._finish(vectors @ (inverse * (vectors.T @ self.rhs)))


def damped_least_squares(J: Tensor, rho: Tensor, damping: float, *, rcond: float = 1e-12) -> Tensor:
    """``δ = argmin ‖ρ + Jδ‖² + λ‖δ‖²`` (absolute ``λ = damping``); with ``λ = 0`` the
    minimum-norm least-squares solution (pseudo-inverse, cut-off ``rcond``)."""
    if damping < 0:
        raise ConfigError(f"damping must be >= 0, got {damping}")
    system = DampedLeastSquares(J, rho)
    return system.solve(damping) if damping > 0 else system.pseudo_solve(rcond=rcond)


class GaussNewtonPhase(Phase):
    """Levenberg–Marquardt on the stacked residuals (Levenberg 1944; Marquardt 1963).

    The damping is relative: ``λ = damping · ‖J‖_F² / n``, the mean diagonal entry of ``JᵀJ``
    times ``damping`` (Madsen, Nielsen & Tingleff's start ``τ · max diag``, Eq. 3.14, with the
    mean), so that it does not depend on the scale of the loss.  The default start ``1e-6`` is
    their choice for a good starting point (a phase starts from a first-order method's result);
    on Helmholtz after 2000 Adam steps it reached rel. L2 0.19 in 43 s where ``1e-3`` reached 0.30
    in 66 s.

    Args:
        params: the parameters (at most ``max_params`` scalars).
        damping: the initial relative damping (kept when not adaptive).
        adaptive_damping: adapt it by the gain ratio (Nielsen's rule).
        line_search: ``"none"`` (``η = 1``; a step that does not decrease the loss is refused)
            or ``"grid"`` (``η`` of least loss on ``{2⁻ᵏ : k = 0..grid}``, as in ENGD).
        grid: the largest ``k`` of the grid.
        chunk: points per Jacobian chunk (0: the whole point set at once).
        max_params: refuse more parameters than this.
        max_tries: solves per iteration before the phase stops for lack of decrease.
        rcond: with ``damping = 0``, eigenvalues of the Gram matrix below ``rcond`` times the
            largest are cut off (the pseudo-inverse).
    """

    name: ClassVar[str] = "gauss_newton"

    def __init__(
        self,
        params: Iterable[Tensor],
        *,
        damping: float = 1e-6,
        adaptive_damping: bool = True,
        line_search: str = "none",
        grid: int = 20,
        chunk: int = 16,
        max_params: int = 5000,
        max_tries: int = 12,
        rcond: float = 1e-12,
    ) -> None:
        super().__init__(params)
        where = f"phase {self.name!r}"
        check_parameter_limit(where, self.n, max_params, "a dense Gauss–Newton matrix")
        if not damping >= 0:
            raise ConfigError(f"{where}: damping must be >= 0, got {damping}")
        if adaptive_damping and damping == 0:
            raise ConfigError(f"{where}: adaptive damping needs damping > 0 to start from")
        if line_search not in ("none", "grid"):
            raise ConfigError(f"{where}: line_search must be 'none' or 'grid', got {line_search!r}")
        for key, value, least in (
            ("grid", grid, 0),
            ("chunk", chunk, 0),
            ("max_tries", max_tries, 1),
        ):
            if value < least:
                raise ConfigError(f"{where}: {key} must be >= {least}, got {value}")
        if not 0 <= rcond < 1:
            raise ConfigError(f"{where}: rcond must be in [0, 1), got {rcond}")
        self.damping = float(damping)
        self.adaptive_damping = bool(adaptive_damping)
        self.line_search = line_search
        self.grid = int(grid)
        self.chunk = int(chunk)
        self.max_tries = int(max_tries)
        self.rcond = float(rcond)
        self.nu = 2.0

    def _loss_at(self, objective: Objective, x: Tensor) -> tuple[float, dict[str, float]]:
        assign_flat(self.params, x)
        out = stacked_residuals(objective, self.params, jacobian=False)
        self.evaluator.counts.functions += 1
        return out.total, out.values

    def _step(self, system: DampedLeastSquares) -> Tensor:
        if self.damping > 0:
            return system.solve(self.damping * system.scale)
        return system.pseudo_solve(rcond=self.rcond)

    def _iterate(self, objective: Objective) -> tuple[Evaluation, float, dict[str, float]]:
        x = flat_params(self.params)
        here = stacked_residuals(objective, self.params, chunk=self.chunk)
        self.evaluator.counts.functions += 1
        self.evaluator.counts.jacobians += 1
        J, rho = here.jacobian, here.rho
        assert J is not None
        if not (torch.isfinite(rho).all() and torch.isfinite(J).all()):
            raise ConfigError(f"phase {self.name!r}: non-finite residuals or Jacobian")
        system = DampedLeastSquares(J, rho)
        steps = [2.0**-k for k in range(self.grid + 1)] if self.line_search == "grid" else [1.0]
        for _ in range(self.max_tries):
            delta = self._step(system)
            best_eta, best_total, best_values = 0.0, here.total, here.values
            for eta in steps:
                total, values = self._loss_at(objective, x + eta * delta)
                if total < best_total:
                    best_eta, best_total, best_values = eta, total, values
                elif best_eta > 0.0:
                    break  # past the best step of the grid (the loss along δ rose again)
            if best_eta > 0.0:
                if self.adaptive_damping:
                    model = float((rho + best_eta * (J @ delta)).pow(2).sum())
                    predicted = here.total - model
                    gain = (here.total - best_total) / predicted if predicted > 0 else 0.0
                    factor = max(1.0 / 3.0, 1.0 - (2.0 * gain - 1.0) ** 3)
                    self.damping = max(self.damping * factor, _DAMPING_RANGE[0])
                    self.nu = 2.0
                new_x = x + best_eta * delta
                assign_flat(self.params, new_x)
                after = Evaluation(x=new_x, values=best_values, total=best_total, grad=None)
                return after, best_eta, {"damping": self.damping}
            if not self.adaptive_damping:
                break
            self.damping = min(self.damping * self.nu, _DAMPING_RANGE[1])
            self.nu *= 2.0
        assign_flat(self.params, x)
        self.stop_reason = "no step decreased the loss"
        grad = 2.0 * (J.T @ rho)
        before = Evaluation(x=x, values=here.values, total=here.total, grad=grad)
        return before, 0.0, {"damping": self.damping}

    def _method_state(self) -> dict[str, Any]:
        return {"damping": self.damping, "nu": self.nu}

    def _load_method_state(self, state: dict[str, Any]) -> None:
        self.damping = float(state["damping"])
        self.nu = float(state["nu"])


class ENGDPhase(GaussNewtonPhase):
    """Energy natural gradient descent (Müller & Zeinhofer, ICML 2023): the Gram matrix ``JᵀJ``
    and the step of least loss on the grid ``2⁻ᵏ``.

    Their step uses the pseudo-inverse of the Gram matrix (here ``damping=0``, cut-off
    ``rcond``).  The default is a small relative Tikhonov damping instead, ``1e-6`` (a Cholesky
    solve): on Helmholtz after 2000 Adam steps it reached rel. L2 1.5 in 40 s, the
    pseudo-inverse 1.6 (``rcond=1e-8``) and 3.7 (``rcond=1e-12``, 60 s), each eigendecomposition
    costing several seconds.
    """

    name: ClassVar[str] = "engd"

    def __init__(
        self,
        params: Iterable[Tensor],
        *,
        damping: float = 1e-6,
        rcond: float = 1e-12,
        grid: int = 30,
        chunk: int = 16,
        max_params: int = 5000,
    ) -> None:
        super().__init__(
            params,
            damping=damping,
            adaptive_damping=False,
            line_search="grid",
            grid=grid,
            chunk=chunk,
            max_params=max_params,
            max_tries=1,
            rcond=rcond,
        )
