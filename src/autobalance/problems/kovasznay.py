"""Kovasznay flow: steady 2D incompressible Navier–Stokes with an exact solution."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from autobalance._params import AtLeast, Finite, MultipleOf, OneOf, Positive, param
from autobalance.derivatives import gradients
from autobalance.losses import NamedLosses
from autobalance.problems.base import Batch, BoundaryValueProblem, Model, on_input_columns
from autobalance.problems.domain import Box, box_bubble, transfinite_lift

__all__ = ["Kovasznay"]


@dataclass(eq=False, kw_only=True)
class Kovasznay(BoundaryValueProblem):
    """Kovasznay flow: steady 2D Navier–Stokes (u, v, p) on [−0.5,1]×[−0.5,1.5], exact solution.

    Equations::

        u u_x + v u_y + p_x − (1/Re)(u_xx + u_yy) = 0        (momentum, x)
        u v_x + v v_y + p_y − (1/Re)(v_xx + v_yy) = 0        (momentum, y)
        u_x + v_y = 0                                        (continuity)
        (x, y) ∈ Ω = [−0.5, 1] × [−0.5, 1.5]

    Exact solution (Kovasznay 1948), ``λ = Re/2 − √(Re²/4 + 4π²)``::

        u = 1 − e^{λx} cos(2πy),   v = λ/(2π) e^{λx} sin(2πy),   p = ½ (1 − e^{2λx})

    Boundary conditions: Dirichlet ``u, v`` = exact on all of ∂Ω.  The pressure is fixed only up to
    a constant by the equations; ``pressure_boundary = "outflow"`` (default) also imposes the
    exact ``p`` on the outflow edge ``x = 1``, as DeepXDE's Kovasznay example does;
    ``"all"`` imposes it on all of ∂Ω.

    Inputs ``(x, y)``, outputs ``(u, v, p)``; errors are reported per field (``rel_l2_u``, ...).
    Losses (each from its own forward pass; the three PDE terms share one):

    * ``"momentum_x"``, ``"momentum_y"``, ``"continuity"``: mean squares of the residuals above
      over ``n_residual`` interior points,
    * ``"boundary"``: ``n_boundary`` points, the same number on each edge, with the three columns
      ``(u − u*, v − v*, w·(p − p*))`` where ``w`` is 1 where the pressure is imposed and 0
      elsewhere; the loss is the mean over all three columns.

    Hard constraint (variant ``"hard_constraint"``): the transfinite interpolant of the Dirichlet
    data plus a bubble times the network enforces ``"boundary"`` exactly (see
    :meth:`hard_constraint`).

    Defaults: ``Re = 20`` (``λ ≈ −1.810``), 2048 residual and 256 boundary points per step, a
    101 × 101 evaluation grid.

    Sources: L. I. G. Kovasznay, "Laminar flow behind a two-dimensional grid", Proc. Camb.
    Philos. Soc. 44 (1948) 58–62; X. Jin, S. Cai, H. Li, G. E. Karniadakis, "NSFnets",
    J. Comput. Phys. 426 (2021) 109951, Sec. 3.1 (Re = 20 on this domain); L. Lu et al.,
    "DeepXDE", SIAM Rev. 63(1) (2021), Kovasznay flow example (pressure on the outflow edge).
    """

    name = "kovasznay"
    input_names = ("x", "y")
    output_names = ("u", "v", "p")
    loss_names = ("momentum_x", "momentum_y", "continuity", "boundary")
    domain = Box(lower=(-0.5, -0.5), upper=(1.0, 1.5))

    re: float = param(20.0, Finite(), Positive("Reynolds number"))
    pressure_boundary: str = param("outflow", OneOf(("outflow", "all")))
    n_residual: int = param(2048, AtLeast(1))
    n_boundary: int = param(256, AtLeast(1), MultipleOf(4, "equal points per edge"))
    n_eval: int = param(101, AtLeast(2))

    def __post_init__(self) -> None:
        super().__post_init__()
        self.lam = self.re / 2 - math.sqrt(self.re**2 / 4 + 4 * math.pi**2)

    def reference(self, points: Tensor) -> Tensor:
        """Exact ``(u, v, p)`` at ``points``, shape ``(N, 3)``."""
        x, y = points[:, 0:1], points[:, 1:2]
        lam, two_pi = self.lam, 2 * math.pi
        decay = torch.exp(lam * x)
        u = 1 - decay * torch.cos(two_pi * y)
        v = lam / two_pi * decay * torch.sin(two_pi * y)
        p = 0.5 * (1 - decay**2)
        return torch.cat([u, v, p], dim=1)

    #: The hard constraint enforces every Dirichlet condition of the boundary loss.
    hard_constrained_losses = ("boundary",)

    def hard_constraint(self, points: Tensor, output: Tensor) -> Tensor:
        """Dirichlet data built in: ``(u, v) = G + b · (N_u, N_v)``, ``p`` by ``pressure_boundary``.

        ``G`` is the transfinite (Coons) interpolant of the boundary data ``(u*, v*)``
        (:func:`~autobalance.problems.base.transfinite_lift`, which evaluates the data only on
        ∂Ω; in the interior ``G`` differs from the solution, so ``N = 0`` is not the answer) and
        ``b`` the bubble ``∏ 4 (x_j − lo_j)(hi_j − x_j)/(hi_j − lo_j)²``, zero on ∂Ω
        (:func:`~autobalance.problems.base.box_bubble`).  Pressure: ``"outflow"``:
        ``p = p*(1, y) + (1 − x)/1.5 · N_p``, exact on ``x = 1`` only; ``"all"``: like ``u, v``.
        The boundary loss is then zero (bit for bit on ``y = −0.5, 1.5`` and ``x = 1``, to
        rounding on ``x = −0.5``).  The equations (momentum, continuity) stay losses.
        """
        box = self.domain
        bubble = box_bubble(points, box)
        if self.pressure_boundary == "all":
            lift = transfinite_lift(points, box, self.reference)
            return lift + bubble * output
        lift = transfinite_lift(points, box, lambda p: self.reference(p)[:, :2])
        (x0, _), (x1, _) = box.lower, box.upper
        x = points[:, 0:1]
        outflow = torch.cat([torch.full_like(x, x1), points[:, 1:2]], dim=1)
        pressure = self.reference(outflow)[:, 2:3] + (x1 - x) / (x1 - x0) * output[:, 2:3]
        return torch.cat([lift + bubble * output[:, :2], pressure], dim=1)

    def residual_terms(self, model: Model, points: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Pointwise ``(momentum_x, momentum_y, continuity)`` residuals, ``(N, 3)``, and the
        input columns."""
        terms, coords = self._residuals(model, points)
        return torch.cat(terms, dim=1), coords

    def _residuals(self, model: Model, points: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        out, (x, y) = on_input_columns(model, points)
        u, v, p = out[:, 0:1], out[:, 1:2], out[:, 2:3]
        u_x, u_y = gradients(u, (x, y))
        v_x, v_y = gradients(v, (x, y))
        p_x, p_y = gradients(p, (x, y))
        lap_u = gradients(u_x, (x,))[0] + gradients(u_y, (y,))[0]
        lap_v = gradients(v_x, (x,))[0] + gradients(v_y, (y,))[0]
        nu = 1.0 / self.re
        momentum_x = u * u_x + v * u_y + p_x - nu * lap_u
        momentum_y = u * v_x + v * v_y + p_y - nu * lap_v
        return [momentum_x, momentum_y, u_x + v_y], [x, y]

    def pressure_mask(self, points: Tensor) -> Tensor:
        """``(N, 1)``: 1 where the pressure is imposed on the boundary, else 0."""
        if self.pressure_boundary == "all":
            return torch.ones_like(points[:, 0:1])
        return (points[:, 0:1] == self.domain.upper[0]).to(points.dtype)

    def losses(self, model: Model, batch: Batch) -> NamedLosses:
        """Three PDE residual losses and one boundary loss (columns ``u, v, w·p`` errors)."""
        (mom_x, mom_y, cont), coords = self._residuals(model, batch["residual"])
        boundary = batch["boundary"]
        error = model(boundary) - self.reference(boundary)
        weight = torch.cat([torch.ones_like(error[:, :2]), self.pressure_mask(boundary)], dim=1)
        pointwise = {
            "momentum_x": mom_x,
            "momentum_y": mom_y,
            "continuity": cont,
            "boundary": error * weight,
        }
        pde = ("momentum_x", "momentum_y", "continuity")
        return self.mean_square_losses(
            pointwise,
            batch,
            coords=dict.fromkeys(pde, coords),
            points={**dict.fromkeys(pde, batch["residual"]), "boundary": boundary},
        )
