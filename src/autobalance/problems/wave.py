"""1D wave equation on the unit interval with a two-mode exact solution."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from autobalance._params import AtLeast, Finite, MultipleOf, Positive, param
from autobalance.derivatives import gradients
from autobalance.losses import NamedLosses
from autobalance.problems.base import Batch, Model, SpaceTimeProblem, SquareGrid, on_input_columns
from autobalance.problems.domain import Box

__all__ = ["Wave"]


@dataclass(eq=False, kw_only=True)
class Wave(SquareGrid, SpaceTimeProblem):
    """1D wave: u_tt = c²·u_xx on [0,1]², u = sin πx cos cπt + a sin mπx cos cmπt (exact).

    Equation::

        u_tt − c² u_xx = 0,                         x ∈ [0, 1], t ∈ [0, 1]
        u(x, 0) = sin(πx) + a sin(mπx),  u_t(x, 0) = 0,
        u(0, t) = u(1, t) = 0

    Exact solution ``u = sin(πx) cos(cπt) + a sin(mπx) cos(c m π t)`` (integer ``m`` so that it
    vanishes at ``x = 0, 1``).

    Inputs ``(x, t)``, output ``u``.  Losses (each from its own forward pass):

    * ``"residual"``: mean of ``(u_tt − c² u_xx)²`` over interior points,
    * ``"initial"``: on ``t = 0`` the two columns ``(u − u0, u_t)``; the loss is the mean over
      both, ``(mean (u − u0)² + mean u_t²) / 2``,
    * ``"boundary"``: mean of ``u²`` on ``x = 0`` and ``x = 1`` (half on each).

    Hard constraint (variant ``"hard_constraint"``): ``u = u0(x) + x(1 − x) t² N`` enforces
    ``"initial"`` and ``"boundary"`` (see :meth:`hard_constraint`).

    Defaults: ``c = 2``, ``a = 0.5``, ``m = 3``: ``u = sin πx cos 2πt + ½ sin 3πx cos 6πt``, the
    benchmark as this project specifies it.  ``m = 4`` gives ``½ sin 4πx cos 8πt``, the solution
    in the code released with the NTK paper (``sin(πx) cos(cπt) + a sin(2cπx) cos(4cπt)``; a
    harder problem, with a higher temporal frequency).  1024 residual,
    256 initial and 256 boundary points per step, a 101 × 101 evaluation grid in ``(x, t)``.

    Source: S. Wang, X. Yu, P. Perdikaris, "When and why PINNs fail to train: a neural tangent
    kernel perspective", J. Comput. Phys. 449 (2022) 110768 (arXiv:2007.14527), Sec. 7.3.
    """

    name = "wave"
    input_names = ("x", "t")
    output_names = ("u",)
    loss_names = ("residual", "initial", "boundary")
    domain = Box(lower=(0.0, 0.0), upper=(1.0, 1.0))

    c: float = param(2.0, Finite(), Positive("wave speed"))
    a: float = param(0.5, Finite())
    m: int = param(3, AtLeast(1, "mode"))
    n_residual: int = param(1024, AtLeast(1))
    n_initial: int = param(256, AtLeast(1))
    n_boundary: int = param(256, AtLeast(1), MultipleOf(2, "half on x = 0, half on x = 1"))
    n_eval: int = param(101, AtLeast(2))

    def initial_condition(self, points: Tensor) -> Tensor:
        """``u0 = sin(πx) + a sin(mπx)`` (the initial data), shape ``(N, 1)``."""
        x = points[:, 0:1]
        return torch.sin(math.pi * x) + self.a * torch.sin(self.m * math.pi * x)

    #: The hard constraint enforces both initial conditions and the boundary condition.
    hard_constrained_losses = ("initial", "boundary")

    def hard_constraint(self, points: Tensor, output: Tensor) -> Tensor:
        """``u = u0(x) + x (1 − x) t² · N(x, t)``, ``u0 = sin πx + a sin mπx``.

        At ``t = 0``: ``u = u0`` and ``u_t = x(1 − x)(2t N + t² N_t) = 0`` exactly (the ``t²``
        factor is needed for the second, velocity, initial condition); at ``x = 0, 1``:
        ``u = u0 = 0`` (to the rounding of ``sin(mπ)``, ~1e-16).  Only the initial data enter;
        the interior is left to the network (Lagaris, Likas & Fotiadis 1998, Eq. 11).
        """
        x, t = points[:, 0:1], points[:, 1:2]
        return self.initial_condition(points) + x * (1 - x) * (t * t) * output

    def reference(self, points: Tensor) -> Tensor:
        """Exact ``u = sin πx cos cπt + a sin mπx cos cmπt``, shape ``(N, 1)``."""
        x, t = points[:, 0:1], points[:, 1:2]
        pi, c, m = math.pi, self.c, self.m
        first = torch.sin(pi * x) * torch.cos(c * pi * t)
        return first + self.a * torch.sin(m * pi * x) * torch.cos(c * m * pi * t)

    def residual_terms(self, model: Model, points: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Pointwise ``u_tt − c² u_xx`` at ``points``, ``(N, 1)``, and the input columns."""
        u, (x, t) = on_input_columns(model, points)
        u_x, u_t = gradients(u, (x, t))
        u_xx = gradients(u_x, (x,))[0]
        u_tt = gradients(u_t, (t,))[0]
        return u_tt - self.c**2 * u_xx, [x, t]

    def losses(self, model: Model, batch: Batch) -> NamedLosses:
        """``{"residual", "initial", "boundary"}``; ``"initial"`` has columns ``(u − u0, u_t)``."""
        residual, coords = self.residual_terms(model, batch["residual"])
        initial = batch["initial"]
        u0, (x0, t0) = on_input_columns(model, initial)
        u0_t = gradients(u0, (t0,))[0]
        pointwise = {
            "residual": residual,
            "initial": torch.cat([u0 - self.initial_condition(initial), u0_t], dim=1),
            "boundary": model(batch["boundary"]),
        }
        return self.mean_square_losses(
            pointwise, batch, coords={"residual": coords, "initial": [x0, t0]}
        )
