"""1D nonlinear Klein–Gordon equation with a manufactured exact solution."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from autobalance._params import AtLeast, Finite, MultipleOf, param
from autobalance.derivatives import gradients
from autobalance.losses import NamedLosses
from autobalance.problems.base import Batch, Model, SpaceTimeProblem, SquareGrid, on_input_columns
from autobalance.problems.domain import Box

__all__ = ["KleinGordon"]


@dataclass(eq=False, kw_only=True)
class KleinGordon(SquareGrid, SpaceTimeProblem):
    """1D Klein–Gordon: u_tt + α·u_xx + β·u + γ·u^k = f on [0,1]², manufactured exact solution.

    Equation (Wang, Teng & Perdikaris 2021, eq. (2.15) form)::

        u_tt + α u_xx + β u + γ u^k = f(x, t),      x ∈ [0, 1], t ∈ [0, 1]
        u(x, 0) = x,   u_t(x, 0) = 0,               u(0, t) = 0,   u(1, t) = cos(5πt) + t³

    Exact solution ``u = x cos(5πt) + (x t)³``; ``f`` is that ``u`` put into the left side, with
    the derivatives taken by hand::

        u_tt = −25π² x cos(5πt) + 6 x³ t,     u_xx = 6 x t³
        f    = u_tt + α u_xx + β u + γ u^k

    With ``α = −1`` the operator is the hyperbolic ``u_tt − u_xx`` (the brief's
    ``u_tt − α u_xx`` with ``α = −1`` would be elliptic; we follow the paper's sign).

    Inputs ``(x, t)``, output ``u``.  Losses (each from its own forward pass):

    * ``"residual"``: mean of ``(u_tt + α u_xx + β u + γ u^k − f)²`` over interior points,
    * ``"initial"``: on ``t = 0`` the two columns ``(u − x, u_t)``; the loss is the mean over both,
      ``(mean (u − x)² + mean u_t²) / 2``,
    * ``"boundary"``: mean of ``(u − u_exact)²`` on ``x = 0`` and ``x = 1`` (half on each).

    Hard constraint (variant ``"hard_constraint"``): ``u = x g1(t) + x(1 − x) t² N`` with
    ``g1(t) = cos(5πt) + t³`` enforces ``"initial"`` and ``"boundary"`` (see
    :meth:`hard_constraint`).

    Defaults: ``α = −1``, ``β = 0``, ``γ = 1``, ``k = 3`` (integer ``>= 1``), 1024 residual,
    256 initial and 256 boundary points per step, a 101 × 101 evaluation grid in ``(x, t)``.

    Source: S. Wang, Y. Teng, P. Perdikaris, "Understanding and mitigating gradient flow
    pathologies in physics-informed neural networks", SIAM J. Sci. Comput. 43(5), 2021
    (arXiv:2001.04536), Sec. 4 (Klein–Gordon example).
    """

    name = "klein-gordon"
    input_names = ("x", "t")
    output_names = ("u",)
    loss_names = ("residual", "initial", "boundary")
    domain = Box(lower=(0.0, 0.0), upper=(1.0, 1.0))

    alpha: float = param(-1.0, Finite())
    beta: float = param(0.0, Finite())
    gamma: float = param(1.0, Finite())
    k: int = param(3, AtLeast(1, "exponent"))
    n_residual: int = param(1024, AtLeast(1))
    n_initial: int = param(256, AtLeast(1))
    n_boundary: int = param(256, AtLeast(1), MultipleOf(2, "half on x = 0, half on x = 1"))
    n_eval: int = param(101, AtLeast(2))

    def reference(self, points: Tensor) -> Tensor:
        """Exact ``u = x cos(5πt) + (x t)³``, shape ``(N, 1)``."""
        x, t = points[:, 0:1], points[:, 1:2]
        return x * torch.cos(5 * math.pi * t) + (x * t) ** 3

    @staticmethod
    def boundary_right(t: Tensor) -> Tensor:
        """The Dirichlet data on ``x = 1``: ``g1(t) = cos(5πt) + t³`` (``g0 = 0`` on ``x = 0``)."""
        return torch.cos(5 * math.pi * t) + t**3

    #: The hard constraint enforces both initial conditions and both boundary conditions.
    hard_constrained_losses = ("initial", "boundary")

    def hard_constraint(self, points: Tensor, output: Tensor) -> Tensor:
        """``u = x g1(t) + x (1 − x) t² · N(x, t)``, ``g1(t) = cos(5πt) + t³``.

        ``x g1(t)`` is the linear-in-``x`` (transfinite) interpolation of the boundary data
        ``g0 = 0``, ``g1``; it also meets the initial data, since ``x g1(0) = x`` and
        ``∂_t(x g1)(x, 0) = x g1'(0) = 0``.  So at ``t = 0``: ``u = x`` and
        ``u_t = x g1'(0) + x(1 − x)(2t N + t² N_t) = 0``; at ``x = 0``: ``u = 0``; at ``x = 1``:
        ``u = g1(t)`` — all exactly.  The exact solution is ``N = −(1 + x) t``, not 0: the lift
        uses only the initial and boundary data (Lagaris, Likas & Fotiadis 1998, Eq. 11).
        """
        x, t = points[:, 0:1], points[:, 1:2]
        return x * self.boundary_right(t) + x * (1 - x) * (t * t) * output

    def source(self, points: Tensor) -> Tensor:
        """``f = u_tt + α u_xx + β u + γ u^k`` of the exact solution, shape ``(N, 1)``."""
        x, t = points[:, 0:1], points[:, 1:2]
        u = self.reference(points)
        u_tt = -25 * math.pi**2 * x * torch.cos(5 * math.pi * t) + 6 * x**3 * t
        u_xx = 6 * x * t**3
        return u_tt + self.alpha * u_xx + self.beta * u + self.gamma * u**self.k

    def residual_terms(self, model: Model, points: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Pointwise ``u_tt + α u_xx + β u + γ u^k − f`` at ``points``, ``(N, 1)``, and the input
        columns."""
        u, (x, t) = on_input_columns(model, points)
        u_x, u_t = gradients(u, (x, t))
        u_xx = gradients(u_x, (x,))[0]
        u_tt = gradients(u_t, (t,))[0]
        lhs = u_tt + self.alpha * u_xx + self.beta * u + self.gamma * u**self.k
        return lhs - self.source(points.detach()), [x, t]

    def losses(self, model: Model, batch: Batch) -> NamedLosses:
        """``{"residual", "initial", "boundary"}``; ``"initial"`` has columns ``(u − x, u_t)``."""
        residual, coords = self.residual_terms(model, batch["residual"])
        u0, (x0, t0) = on_input_columns(model, batch["initial"])
        u0_t = gradients(u0, (t0,))[0]
        boundary = batch["boundary"]
        pointwise = {
            "residual": residual,
            "initial": torch.cat([u0 - x0.detach(), u0_t], dim=1),
            "boundary": model(boundary) - self.reference(boundary),
        }
        return self.mean_square_losses(
            pointwise, batch, coords={"residual": coords, "initial": [x0, t0]}
        )
