"""Gradient-enhanced PINN (gPINN): the residual's derivatives must vanish too.

Yu, Lu, Meng & Karniadakis, "Gradient-enhanced physics-informed neural networks for forward and
inverse PDE problems", CMAME 393, 2022, Eq. (6)-(7): since the residual ``r`` is zero everywhere
in the domain, so is ``∂r/∂x_j``; the loss gains ``w_g Σ_j mean_i (∂r/∂x_j (x_i))²``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from autobalance._params import Between, param
from autobalance.derivatives import gradients
from autobalance.errors import ConfigError
from autobalance.losses import NamedLosses
from autobalance.variants.base import Variant, copy_losses, pointwise_of

if TYPE_CHECKING:
    from autobalance.problems.base import Problem

__all__ = ["GradientEnhanced"]


@dataclass(eq=False)
class GradientEnhanced(Variant):
    """gPINN (Yu et al. 2022): an extra loss ``w Σ_j mean (∂r/∂x_j)²`` from the residual.

    The derivatives are taken with respect to the input columns the problem returns in
    ``NamedLosses.coords[loss]``, of the pointwise terms handed in (after earlier variants:
    a detached multiplier ``λ`` gives ``λ ∂r/∂x``).  One new loss ``"<loss>_grad"``, or with
    ``per_coordinate`` one per coordinate, ``"<loss>_grad_<input name>"`` (each
    ``w·mean(∂r/∂x_j)²``), appended after the other losses; a balancer sees them as ordinary
    named losses.

    Args:
        weight: ``w > 0`` multiplying the new loss(es) (Yu et al. use 0.01 to 1).
        loss: the residual loss to differentiate (default ``"residual"``).
        coordinates: the inputs ``x_j`` by name (default: every input).
        per_coordinate: one loss per coordinate instead of their sum.
    """

    name = "gpinn"

    weight: float = param(1.0, Between(0.0, closed="(]"))
    loss: str = "residual"
    coordinates: Sequence[str] | None = None
    per_coordinate: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        coordinates = self.coordinates
        if coordinates is not None and (
            isinstance(coordinates, str) or not all(isinstance(c, str) for c in coordinates)
        ):
            raise ConfigError(
                f"{self.where()}: 'coordinates' must be a list of input names, got {coordinates!r}"
            )
        self.coordinates = None if coordinates is None else list(coordinates)
        self.input_names: list[str] = []
        self.columns: list[int] = []

    def setup(self, problem: Problem, model: nn.Module) -> nn.Module:
        model = super().setup(problem, model)
        self.input_names = list(problem.input_names)
        wanted = self.coordinates if self.coordinates is not None else self.input_names
        unknown = [c for c in wanted if c not in self.input_names]
        if unknown or not wanted:
            raise ConfigError(
                f"{self.where()}: unknown coordinate(s) {unknown or wanted} for problem "
                f"{self.problem_name!r} (inputs: {', '.join(map(repr, self.input_names))})"
            )
        self.columns = [self.input_names.index(c) for c in wanted]
        return model

    def residual_gradients(self, r: Tensor, coords: Sequence[Tensor]) -> list[Tensor]:
        """``[∂r/∂x_j]`` for the chosen columns ``j``, each ``(N, C)`` for ``r`` ``(N, C)``."""
        n = r.shape[0]
        flat = r.reshape(n, -1)
        per_component = [gradients(flat[:, c : c + 1], coords) for c in range(flat.shape[1])]
        return [
            torch.cat([grads[j].reshape(n, 1) for grads in per_component], dim=1)
            for j in self.columns
        ]

    def transform_losses(self, losses: NamedLosses, step: int) -> NamedLosses:
        if not self.columns:
            raise ConfigError(f"{self.where()}: call setup(problem, model) first")
        r = pointwise_of(self.where(), losses, self.loss)
        coords = losses.coords.get(self.loss)
        if not coords or len(coords) != len(self.input_names):
            raise ConfigError(
                f"{self.where()}: loss {self.loss!r} of problem {self.problem_name!r} carries no "
                "input columns (NamedLosses.coords), so its derivatives cannot be taken"
            )
        grads = self.residual_gradients(r, coords)
        out = copy_losses(losses)
        points = losses.points.get(self.loss)
        if self.per_coordinate:
            terms = {
                f"{self.loss}_grad_{self.input_names[j]}": math.sqrt(self.weight) * g
                for j, g in zip(self.columns, grads, strict=True)
            }
        else:
            scale = math.sqrt(self.weight * len(grads))
            terms = {f"{self.loss}_grad": scale * torch.cat(grads, dim=1)}
        for name, term in terms.items():
            if name in out:
                raise ConfigError(f"{self.where()}: a loss named {name!r} exists already")
            out[name] = term.pow(2).mean()
            out.pointwise[name] = term
            out.coords[name] = list(coords)
            if points is not None:
                out.points[name] = points
        return out
