"""1D periodic linear convection (advection) with a large speed, exact travelling wave."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from autobalance._params import AtLeast, Finite, param
from autobalance.derivatives import gradients
from autobalance.losses import NamedLosses
from autobalance.problems.base import Batch, Model, SpaceTimeProblem, on_input_columns
from autobalance.problems.domain import Box

__all__ = ["Convection"]

_TWO_PI = 2.0 * math.pi


@dataclass(eq=False, kw_only=True)
class Convection(SpaceTimeProblem):
    """1D convection: u_t + β·u_x = 0 on [0,2π)×[0,1], periodic, u = sin(x − βt) (exact).

    Equation::

        u_t + β u_x = 0,                 x ∈ [0, 2π), t ∈ [0, 1]
        u(x, 0) = sin(x),                u(0, t) = u(2π, t)   (periodic)

    Exact solution ``u = sin(x − βt)``.  Large ``β`` makes plain PINN training fail (the
    "failure mode" of Krishnapriyan et al.), which is why it is a benchmark.

    Inputs ``(x, t)``, output ``u``.  Losses (each from its own forward pass):

    * ``"residual"``: mean of ``(u_t + β u_x)²`` over interior points,
    * ``"initial"``: mean of ``(u(x, 0) − sin x)²`` over points on ``t = 0``,
    * ``"boundary"``: mean of ``(u(0, t) − u(2π, t))²``; the batch holds the ``x = 0`` points
      (``n_boundary`` of them) and the loss pairs each with ``(2π, t)``.

    Hard constraint (variant ``"hard_constraint"``): ``u = sin x + t N`` enforces ``"initial"``
    only (see :meth:`hard_constraint`).

    Defaults: ``β = 30``, 1024 residual, 256 initial and 256 boundary points per step, a
    256 × 101 evaluation grid in ``(x, t)`` (``x`` from 0 to 2π inclusive).

    Source: A. S. Krishnapriyan, A. Gholami, S. Zhe, R. M. Kirby, M. W. Mahoney,
    "Characterizing possible failure modes in physics-informed neural networks", NeurIPS 2021
    (arXiv:2109.01050), Sec. 3.1 (β = 30 among the failing speeds).
    """

    name = "convection"
    periodic = True
    input_names = ("x", "t")
    output_names = ("u",)
    loss_names = ("residual", "initial", "boundary")
    domain = Box(lower=(0.0, 0.0), upper=(_TWO_PI, 1.0))

    beta: float = param(30.0, Finite())
    n_residual: int = param(1024, AtLeast(1))
    n_initial: int = param(256, AtLeast(1))
    n_boundary: int = param(256, AtLeast(1))
    n_eval_x: int = param(256, AtLeast(2))
    n_eval_t: int = param(101, AtLeast(2))

    #: The hard constraint enforces the initial condition; the periodic boundary stays a loss.
    hard_constrained_losses = ("initial",)

    def hard_constraint(self, points: Tensor, output: Tensor) -> Tensor:
        """``u = u0(x) + t · N(x, t)``, ``u0 = sin x``: ``u(x, 0) = u0`` exactly.

        The periodic boundary condition is not enforced (``u0`` is periodic, ``N`` need not
        be), so ``"boundary"`` stays a loss; with an exactly periodic network
        (:mod:`autobalance.nets.periodic`) it is small but not exactly zero (``sin 2π ≠ 0`` in
        floating point).  Lagaris, Likas & Fotiadis, IEEE Trans. Neural Netw. 9(5), 1998, Eq. 11.
        """
        return self.initial_condition(points) + points[:, 1:2] * output

    def initial_condition(self, points: Tensor) -> Tensor:
        """``u0 = sin(x)`` (the initial data), shape ``(N, 1)``."""
        return torch.sin(points[:, 0:1])

    def reference(self, points: Tensor) -> Tensor:
        """Exact ``u = sin(x − βt)``, shape ``(N, 1)``."""
        return torch.sin(points[:, 0:1] - self.beta * points[:, 1:2])

    def residual_terms(self, model: Model, points: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Pointwise ``u_t + β u_x`` at ``points``, ``(N, 1)``, and the input columns."""
        u, (x, t) = on_input_columns(model, points)
        u_x, u_t = gradients(u, (x, t))
        return u_t + self.beta * u_x, [x, t]

    def losses(self, model: Model, batch: Batch) -> NamedLosses:
        """``{"residual", "initial", "boundary"}``; ``"boundary"`` is ``u(0, t) − u(2π, t)``."""
        residual, coords = self.residual_terms(model, batch["residual"])
        initial, left = batch["initial"], batch["boundary"]
        right = torch.cat([torch.full_like(left[:, 0:1], _TWO_PI), left[:, 1:2]], dim=1)
        pointwise = {
            "residual": residual,
            "initial": model(initial) - self.initial_condition(initial),
            "boundary": model(left) - model(right),
        }
        return self.mean_square_losses(pointwise, batch, coords={"residual": coords})
