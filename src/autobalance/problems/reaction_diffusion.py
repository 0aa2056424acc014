"""1D periodic reaction–diffusion (Fisher–KPP) equation, reference by a Fourier/ETDRK4 solver."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from autobalance._params import AtLeast, EvenAtLeast, NonNegative, param
from autobalance.derivatives import derivative, gradient
from autobalance.errors import ConfigError
from autobalance.losses import NamedLosses
from autobalance.problems.base import Batch, Model, SpaceTimeProblem, on_input_columns
from autobalance.problems.cache import cached_arrays
from autobalance.problems.domain import Box
from autobalance.problems.spectral import PeriodicSolution, nodes, solve_periodic, wavenumbers

__all__ = ["ReactionDiffusion", "initial_condition"]

_LENGTH = 2 * math.pi
_T_END = 1.0
#: Saved solver states per unit of time are ``n_steps / _SAVE_EVERY``.
_SAVE_EVERY = 10


def initial_condition(x: np.ndarray) -> np.ndarray:
    """``u0(x) = exp(−(x − π)² / (2 (π/4)²))``."""
    return np.exp(-((np.asarray(x) - math.pi) ** 2) / (2 * (math.pi / 4) ** 2))


@dataclass(eq=False, kw_only=True)
class ReactionDiffusion(SpaceTimeProblem):
    """1D reaction–diffusion: u_t − ν u_xx − ρ u(1 − u) = 0, periodic on [0, 2π), t ∈ [0, 1].

    Equation::

        u_t − ν u_xx − ρ u (1 − u) = 0,          x ∈ [0, 2π),  t ∈ [0, 1]
        u(x, 0) = exp(−(x − π)² / (2 (π/4)²))
        u(0, t) = u(2π, t),  u_x(0, t) = u_x(2π, t)   (periodic)

    Losses (each from its own forward pass):

    * ``"residual"``: mean of ``(u_t − ν u_xx − ρ u(1 − u))²`` over ``n_residual`` interior points,
    * ``"initial"``: mean of ``(u(x, 0) − u0(x))²`` over ``n_initial`` points on ``t = 0``,
    * ``"boundary"``: mean over ``n_boundary`` pairs (same ``t``) and both columns of
      ``(u(0, t) − u(2π, t), u_x(0, t) − u_x(2π, t))²``; with ``boundary_derivative=False``
      the first column only (the default until 2026-12-01; see below).

    Hard constraint (variant ``"hard_constraint"``): ``u = u0(x) + t N`` enforces ``"initial"``
    only (see :meth:`hard_constraint`); with ``periodic_lift = δ > 0``
    ``u = u0 + (1 − e^{−t/δ})(ū0 − u0) + t N`` (``ū0`` the periodic sum of ``u0``'s Gaussian),
    still exact at ``t = 0`` but without ``u0``'s slope jump at ``x = 0 ≡ 2π`` once ``t ≫ δ``.

    **Both periodicity conditions are needed.**  ``u(0, t) = u(2π, t)`` alone is one condition
    for an equation of second order in ``x``: solutions with unequal boundary fluxes fit every
    loss.  The default is therefore ``boundary_derivative=True``, as in the source paper's code
    (which adds the ``u_x`` term whenever ``ν ≠ 0``) and in Allen–Cahn.  Until 2026-12-01 the
    default was ``False``; measured then (issue 15, ``docs/postcombine.md`` §7): networks whose
    losses fell below 1e-4 let 10–14% of the mass through the boundary and kept a rel. L2 error
    of 0.06–0.12, where the same runs with both conditions reach ~1e-3.

    Points are drawn by the problem's sampler (``RunConfig.sampler``).  The initial condition is
    continuous and periodic but its derivative jumps by ``≈ 3.4e-3`` at ``x = 0 ≡ 2π``; the
    periodic solution smooths it out at once.

    Reference: Fourier pseudo-spectral in ``x`` (``n_modes`` nodes) and ETDRK4 in ``t``
    (``n_steps`` steps on [0, 1]; :mod:`autobalance.problems.spectral`), cached on disk
    (:func:`~autobalance.problems.cache.cached_arrays`).  At any point it is evaluated exactly
    spectrally in ``x`` and by ETDRK4 steps to the exact ``t`` (no time interpolation); at
    ``t = 0`` it is ``u0`` itself.  Measured accuracy with the defaults: two resolutions
    (256 modes/1000 steps vs 512/2000) agree to ~2e-7 at random points, ``ν = 0`` matches the
    logistic closed form to ~4e-12 at the nodes.

    Defaults: ``ν = 3``, ``ρ = 5``, 1024 residual, 256 initial and 256 boundary points per step,
    solver with 512 modes and 1000 steps, a 201 (x) × 101 (t) evaluation grid (``x = 2π``
    included; it equals ``x = 0``).

    Source: A. S. Krishnapriyan, A. Gholami, S. Zhe, R. M. Kirby, M. W. Mahoney, "Characterizing
    possible failure modes in physics-informed neural networks", NeurIPS 2021 (arXiv:2109.01050),
    Sec. 3.3 (equation, domain, initial condition; the paper sweeps ν and ρ; ν = 3, ρ = 5 is the
    setting used here, as in later benchmarks — AutoBalance's exact values are not published).
    """

    name = "reaction-diffusion"
    periodic = True
    input_names = ("x", "t")
    output_names = ("u",)
    loss_names = ("residual", "initial", "boundary")
    domain = Box(lower=(0.0, 0.0), upper=(_LENGTH, _T_END))

    nu: float = param(3.0, NonNegative())
    rho: float = param(5.0, NonNegative())
    n_residual: int = param(1024, AtLeast(1))
    n_initial: int = param(256, AtLeast(1))
    n_boundary: int = param(256, AtLeast(1))
    boundary_derivative: bool = True
    n_modes: int = param(512, EvenAtLeast(16))
    n_steps: int = 1000
    n_eval_x: int = param(201, AtLeast(2))
    n_eval_t: int = param(101, AtLeast(2))
    periodic_lift: float = param(0.0, NonNegative())

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_steps < _SAVE_EVERY or self.n_steps % _SAVE_EVERY:
            raise ConfigError(
                f"{self.where}: 'n_steps' must be a positive multiple of {_SAVE_EVERY}, "
                f"got {self.n_steps}"
            )
        self._solution: PeriodicSolution | None = None

    # ---------------------------------------------------------------------------------- losses
    def initial_values(self, x: Tensor) -> Tensor:
        """``u0(x)`` for a column ``x``."""
        return torch.exp(-((x - math.pi) ** 2) / (2 * (math.pi / 4) ** 2))

    #: The hard constraint enforces the initial condition; the periodic boundary stays a loss.
    hard_constrained_losses = ("initial",)

    def periodic_initial_values(self, x: Tensor) -> Tensor:
        """``ū0(x) = Σ_{k=−1,0,1} exp(−(x − π − 2πk)²/(2 (π/4)²))``: ``u0``'s Gaussian summed
        over the neighbouring periods, smooth and 2π-periodic to rounding on ``[0, 2π]`` (the
        next terms are below ``e^{−72}``); ``ū0 − u0 ≤ e^{−8} ≈ 3.4e-4``."""
        return sum(self.initial_values(x - _LENGTH * k) for k in (-1, 0, 1))  # type: ignore[return-value]

    def hard_constraint(self, points: Tensor, output: Tensor) -> Tensor:
        """``u = u0(x) + t · N(x, t)``, ``u0 = exp(−(x − π)²/(2 (π/4)²))``: ``u(x, 0) = u0``.

        Exact at ``t = 0`` (the initial loss uses the same ``u0``).  The periodic boundary
        condition is not enforced (``N`` need not be periodic), so ``"boundary"`` stays a
        loss.  Lagaris, Likas & Fotiadis, IEEE Trans. Neural Netw. 9(5), 1998, Eq. 11.

        ``u0``'s slope jumps by ``≈ 3.4e-3`` at ``x = 0 ≡ 2π`` and ``u0 + tN`` keeps that jump
        at every ``t`` when ``N`` is periodic in ``x`` (a periodic embedding), while the true
        solution is smooth for ``t > 0``.  With ``periodic_lift = δ > 0`` the transform is::

            u = u0(x) + (1 − e^{−t/δ}) (ū0(x) − u0(x)) + t N(x, t)

        (:meth:`periodic_initial_values`): still ``u(x, 0) = u0`` exactly, smooth in ``t`` and in
        ``x`` inside the domain, and its slope jump at ``x = 0 ≡ 2π`` is ``e^{−t/δ}`` times
        ``u0``'s, gone after a few ``δ``, as the true solution's is (diffusion).
        """
        x, t = points[:, 0:1], points[:, 1:2]
        u0 = self.initial_values(x)
        if self.periodic_lift > 0:
            fade = -torch.expm1(-t / self.periodic_lift)  # 1 − e^{−t/δ}, exact near t = 0
            u0 = u0 + fade * (self.periodic_initial_values(x) - u0)
        return u0 + t * output

    def residual_terms(self, model: Model, points: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Pointwise ``u_t − ν u_xx − ρ u(1 − u)`` at ``points``, ``(N, 1)``, and the input
        columns."""
        u, (x, t) = on_input_columns(model, points)
        u_t = gradient(u, t)
        u_xx = derivative(u, x, 2)
        return u_t - self.nu * u_xx - self.rho * u * (1 - u), [x, t]

    def losses(self, model: Model, batch: Batch) -> NamedLosses:
        """``{"residual", "initial", "boundary"}`` (see the class docstring), separate passes."""
        residual, coords = self.residual_terms(model, batch["residual"])
        initial_pts = batch["initial"]
        initial = model(initial_pts) - self.initial_values(initial_pts[:, 0:1])
        left = batch["boundary"]
        right = left.clone()
        right[:, 0] = _LENGTH
        both = torch.cat([left, right], dim=0)
        n = left.shape[0]
        if self.boundary_derivative:
            u, (x, _) = on_input_columns(model, both)
            u_x = gradient(u, x)
            boundary = torch.cat([u[:n] - u[n:], u_x[:n] - u_x[n:]], dim=1)
        else:
            u = model(both)
            boundary = u[:n] - u[n:]
        pointwise = {"residual": residual, "initial": initial, "boundary": boundary}
        return self.mean_square_losses(pointwise, batch, coords={"residual": coords})

    # ------------------------------------------------------------------------------- reference
    def solver_params(self) -> dict[str, Any]:
        """Everything the cached reference depends on."""
        return {
            "nu": self.nu,
            "rho": self.rho,
            "n_modes": self.n_modes,
            "n_steps": self.n_steps,
            "save_every": _SAVE_EVERY,
            "t_end": _T_END,
            "initial": "exp(-(x-pi)^2/(2(pi/4)^2))",
        }

    def solution(self) -> PeriodicSolution:
        """The reference solver's dense output (solved once, cached on disk and here)."""
        if self._solution is None:
            nu, rho = self.nu, self.rho

            def linear(k: np.ndarray) -> np.ndarray:
                return -nu * k**2

            def nonlinear(u: np.ndarray) -> np.ndarray:
                return rho * u * (1 - u)

            def compute() -> dict[str, np.ndarray]:
                sol = solve_periodic(
                    initial_condition(nodes(self.n_modes, _LENGTH)),
                    linear=linear,
                    nonlinear=nonlinear,
                    t_end=_T_END,
                    n_steps=self.n_steps,
                    save_every=_SAVE_EVERY,
                    length=_LENGTH,
                )
                return {"coefficients": sol.coefficients, "times": sol.times}

            arrays = cached_arrays(self.name or "reaction-diffusion", self.solver_params(), compute)
            self._solution = PeriodicSolution(
                coefficients=arrays["coefficients"],
                times=arrays["times"],
                n=self.n_modes,
                substeps=_SAVE_EVERY,
                linear=linear(wavenumbers(self.n_modes, _LENGTH)),
                nonlinear=nonlinear,
                length=_LENGTH,
            )
        return self._solution

    def reference(self, points: Tensor) -> Tensor:
        """The reference solution at any ``(x, t)`` in the domain, shape ``(N, 1)``.

        ``u0`` exactly at ``t = 0``; elsewhere the spectral/ETDRK4 solution (class docstring).
        """
        return self.numpy_reference(points, self._reference_values)

    def _reference_values(self, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        if t.size and (t.min() < 0 or t.max() > _T_END * (1 + 1e-12)):
            raise ValueError(f"reaction-diffusion: t must lie in [0, {_T_END}]")
        values = np.empty_like(x)
        at_zero = t == 0
        values[at_zero] = initial_condition(x[at_zero])
        if (~at_zero).any():
            values[~at_zero] = self.solution()(x[~at_zero], t[~at_zero])
        return values
