"""1D periodic linear convection (advection) with a large speed, exact travelling wave."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from autobalance.derivatives import gradients
from autobalance.losses import NamedLosses
from autobalance.problems.base import (
    Batch,
    Box,
    Model,
    SpaceTimeProblem,
    check_at_least,
    check_finite,
    input_columns,
)
from autobalance.problems.registry import register_problem

__all__ = ["Convection"]

_TWO_PI = 2.0 * math.pi


@register_problem("convection")
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

    periodic = True

    input_names = ("x", "t")
    output_names = ("u",)
    loss_names = ("residual", "initial", "boundary")

    def __init__(
        self,
        *,
        beta: float = 30.0,
        n_residual: int = 1024,
        n_initial: int = 256,
        n_boundary: int = 256,
        n_eval_x: int = 256,
        n_eval_t: int = 101,
    ) -> None:
        where = "problem 'convection'"
        check_finite(where, beta=beta)
        check_at_least(where, 1, n_residual=n_residual, n_initial=n_initial, n_boundary=n_boundary)
        check_at_least(where, 2, n_eval_x=n_eval_x, n_eval_t=n_eval_t)
        super().__init__(
            beta=float(beta),
            n_residual=int(n_residual),
            n_initial=int(n_initial),
            n_boundary=int(n_boundary),
            n_eval_x=int(n_eval_x),
            n_eval_t=int(n_eval_t),
        )
        self.beta = float(beta)
        self.n_residual, self.n_initial, self.n_boundary = n_residual, n_initial, n_boundary
        self.n_eval_x, self.n_eval_t = n_eval_x, n_eval_t
        self._box = Box(lower=(0.0, 0.0), upper=(_TWO_PI, 1.0))

    @property
    def evaluation_shape(self) -> tuple[int, ...]:
        return (self.n_eval_x, self.n_eval_t)

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

    def pde_residual(self, model: Model, points: Tensor) -> Tensor:
        """Pointwise ``u_t + β u_x`` at ``points``, shape ``(N, 1)``."""
        return self._residual(model, points)[0]

    def _residual(self, model: Model, points: Tensor) -> tuple[Tensor, list[Tensor]]:
        x, t = input_columns(points)
        u = model(torch.cat([x, t], dim=1))
        u_x, u_t = gradients(u, (x, t))
        return u_t + self.beta * u_x, [x, t]

    def losses(self, model: Model, batch: Batch) -> NamedLosses:
        """``{"residual", "initial", "boundary"}``; ``"boundary"`` is ``u(0, t) − u(2π, t)``."""
        residual, coords = self._residual(model, batch["residual"])
        initial, left = batch["initial"], batch["boundary"]
        right = torch.cat([torch.full_like(left[:, 0:1], _TWO_PI), left[:, 1:2]], dim=1)
        pointwise = {
            "residual": residual,
            "initial": model(initial) - self.initial_condition(initial),
            "boundary": model(left) - model(right),
        }
        return NamedLosses(
            {name: r.pow(2).mean() for name, r in pointwise.items()},
            pointwise=pointwise,
            points={name: batch[name] for name in pointwise},
            coords={"residual": coords},
        )
