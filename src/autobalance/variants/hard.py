"""Hard constraints: an output transform that satisfies conditions exactly.

Lagaris, Likas & Fotiadis, "Artificial neural networks for solving ordinary and partial
differential equations", IEEE Trans. Neural Netw. 9(5), 1998, Eq. (11); Lu et al., "Physics-
informed neural networks with hard constraints for inverse design", SIAM J. Sci. Comput. 43(6),
2021.  The trained function is ``u(x) = T(x, N(x))`` with the transform ``T`` of the problem's
:meth:`~autobalance.problems.base.Problem.hard_constraint` hook; the losses the transform
enforces exactly (:attr:`~autobalance.problems.base.Problem.hard_constrained_losses`) are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from autobalance._params import Between, param
from autobalance.errors import ConfigError
from autobalance.losses import NamedLosses
from autobalance.variants.base import Variant, copy_losses

if TYPE_CHECKING:
    from autobalance.problems.base import Problem

__all__ = ["HardConstrainedModel", "HardConstraint"]


class HardConstrainedModel(nn.Module):
    """``x ↦ problem.hard_constraint(x, scale · net(x))``; the network is the submodule ``net``."""

    def __init__(self, net: nn.Module, problem: Problem, scale: float = 1.0) -> None:
        super().__init__()
        self.net = net
        self.problem = problem
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        output = self.net(x)
        out = self.problem.hard_constraint(x, output if self.scale == 1 else self.scale * output)
        if out is None:
            raise ConfigError(f"problem {self.problem.name!r} has no hard constraint")
        return out


@dataclass(eq=False)
class HardConstraint(Variant):
    """Hard constraints: train ``u = T(x, N(x))`` (the problem's transform), drop enforced losses.

    Args:
        drop: remove the losses the transform enforces exactly (the problem's
            ``hard_constrained_losses``, e.g. ``"boundary"``); ``False`` keeps them (they are then
            zero up to rounding, which a balancer may not like).
        scale: the network's output is multiplied by ``scale`` before the transform,
            ``u = T(x, scale · N(x))``: for a lift whose own residual is large (wave: ``−c² u0''``
            of amplitude ~180), which ``N`` must cancel with outputs far beyond its initial O(1).

    Raises:
        ConfigError: at setup, when the problem defines no hard constraint.
    """

    name = "hard_constraint"

    drop: bool = True
    scale: float = param(1.0, Between(0.0, closed="()"))

    def __post_init__(self) -> None:
        super().__post_init__()
        self.dropped: tuple[str, ...] = ()

    def setup(self, problem: Problem, model: nn.Module) -> nn.Module:
        model = super().setup(problem, model)
        probe = torch.zeros(1, problem.in_dim, device=self.device, dtype=self.dtype)
        with torch.no_grad():
            transformed = problem.hard_constraint(probe, model(probe))
        if transformed is None:
            raise ConfigError(
                f"{self.where()}: problem {self.problem_name!r} has no hard constraint (its "
                "Problem.hard_constraint hook returns None); implement the hook for it or remove "
                "this variant"
            )
        self.dropped = tuple(problem.hard_constrained_losses) if self.drop else ()
        return HardConstrainedModel(model, problem, self.scale)

    def transform_losses(self, losses: NamedLosses, step: int) -> NamedLosses:
        if not self.dropped:
            return losses
        out = copy_losses(losses)
        for name in self.dropped:
            for table in (out, out.pointwise, out.points, out.coords):
                table.pop(name, None)
        if not out:
            raise ConfigError(f"{self.where()}: dropping {self.dropped} leaves no loss")
        return out
