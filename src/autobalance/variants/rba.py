"""Residual-based attention (RBA): per-point multipliers that grow where the residual is large.

Anagnostopoulos, Toscano, Stergiopulos & Karniadakis, "Residual-based attention in physics-
informed neural networks", CMAME 421, 2024, Eq. (9)-(10)::

    λ_i ← γ λ_i + η |r_i| / max_j |r_j|          (no gradient through λ)
    L = mean_i (λ_i r_i)²

The multipliers are updated from the current residuals and then used in the same step's loss,
so the weighted loss carries no gradient through them and changes at every call: training
phases refuse it (:func:`~autobalance.phases.problem_objective`) and minimise the plain losses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from autobalance._params import Between, param
from autobalance.losses import NamedLosses
from autobalance.variants.base import FixedPoints, Variant, pointwise_of, replace_loss

__all__ = ["ResidualAttention"]


@dataclass(eq=False)
class ResidualAttention(Variant):
    """RBA (Anagnostopoulos et al. 2024): ``λ ← γλ + η|r|/max|r|``, loss ``mean((λ r)²)``.

    One multiplier per point (and output component) of loss ``loss``.  Index alignment: the
    variant keeps that loss's points fixed (the first step's points, see
    :class:`~autobalance.variants.base.FixedPoints`) whatever the run's ``resample_every``; the
    other losses are resampled as configured.

    Args:
        loss: the loss to reweight (default ``"residual"``).
        gamma: decay ``γ`` in ``[0, 1)`` (paper: 0.999).
        eta: learning rate ``η > 0`` of the multipliers (paper: 0.01).
        init: initial multipliers ``λ⁰ ≥ 0``.
    """

    name = "rba"
    #: The multipliers are updated from the residuals at each call and carry no gradient.
    defines_phase_objective = False

    loss: str = "residual"
    gamma: float = param(0.999, Between(0.0, 1.0, closed="[)"))
    eta: float = param(0.01, Between(0.0, closed="(]"))
    init: float = param(0.0, Between(0.0))

    def __post_init__(self) -> None:
        super().__post_init__()
        self.fixed = FixedPoints(self.where(), self.loss)
        self.lambdas: Tensor | None = None

    def transform_batch(self, batch: Mapping[str, Tensor], step: int) -> dict[str, Tensor]:
        return self.fixed.apply(batch)

    def transform_losses(self, losses: NamedLosses, step: int) -> NamedLosses:
        r = pointwise_of(self.where(), losses, self.loss)
        magnitude = r.detach().abs()
        if self.lambdas is None:
            self.lambdas = torch.full_like(magnitude, self.init)
        self.fixed.check(r.shape[0], self.lambdas.shape[0])
        lam = self.lambdas.to(magnitude)
        scale = magnitude.max().clamp_min(torch.finfo(magnitude.dtype).tiny)
        self.lambdas = self.gamma * lam + self.eta * magnitude / scale
        return replace_loss(losses, self.loss, self.lambdas * r)

    def state_dict(self) -> dict[str, Any]:
        return {"lambdas": self.lambdas, "points": self.fixed.points}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        lam, pts = state.get("lambdas"), state.get("points")
        self.lambdas = None if lam is None else lam.to(device=self.device, dtype=self.dtype)
        self.fixed.points = None if pts is None else pts.to(device=self.device, dtype=self.dtype)
