"""Self-adaptive PINN (SA-PINN): trainable per-point weights, maximised by gradient ascent.

McClenny & Braga-Neto, "Self-adaptive physics-informed neural networks", J. Comput. Phys. 474,
2023, Eq. (5)-(7): ``min_θ max_λ mean_i m(λ_i) r_i(θ)²`` with a soft-attention mask ``m``
(non-negative, increasing), the network descending and the weights ascending the same loss.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from autobalance._params import Between, OneOf, param
from autobalance.losses import NamedLosses
from autobalance.variants.base import FixedPoints, Variant, pointwise_of, replace_loss

__all__ = ["SelfAdaptive"]

#: Masks ``m(λ)`` and their derivatives ``m'(λ)``.
MASKS = ("identity", "square")


@dataclass(eq=False)
class SelfAdaptive(Variant):
    """SA-PINN (McClenny & Braga-Neto 2023): loss ``mean(m(λ_i) r_i²)``, ``λ`` by Adam *ascent*.

    One weight per point of loss ``loss`` (shared by the output components), on a fixed point set
    (the first step's, see :class:`~autobalance.variants.base.FixedPoints`).  The weights are not
    parameters of the balancer: ``λ`` enters the loss without gradient and, after the balancer's
    step, :meth:`after_step` applies one step of the variant's own ``Adam(maximize=True)`` with
    the exact gradient ``∂L/∂λ_i = m'(λ_i) Σ_c r_ic² / (N C)`` at that step's residuals.  So it
    composes with any balancer.  The pointwise terms become ``sqrt(m(λ_i)) r_i``.

    Args:
        loss: the loss to weight (default ``"residual"``).
        mask: ``"square"`` (``m = λ²``, default) or ``"identity"`` (``m = λ``).
        lr: learning rate of the weights' Adam.
        init: initial weights ``λ⁰ > 0``.
    """

    name = "self_adaptive"

    loss: str = "residual"
    mask: str = param("square", OneOf(MASKS))
    lr: float = param(5e-3, Between(0.0, closed="(]"))
    init: float = param(1.0, Between(0.0, closed="(]"))

    def __post_init__(self) -> None:
        super().__post_init__()
        self.fixed = FixedPoints(self.where(), self.loss)
        self.weights: nn.Parameter | None = None
        self.optimizer: torch.optim.Adam | None = None
        self._ascent: Tensor | None = None

    def masked(self, lam: Tensor) -> Tensor:
        """``m(λ)``."""
        return lam * lam if self.mask == "square" else lam

    def mask_derivative(self, lam: Tensor) -> Tensor:
        """``m'(λ)``."""
        return 2 * lam if self.mask == "square" else torch.ones_like(lam)

    def _create(self, values: Tensor) -> None:
        self.weights = nn.Parameter(values.to(device=self.device, dtype=self.dtype))
        self.optimizer = torch.optim.Adam([self.weights], lr=self.lr, maximize=True)

    def transform_batch(self, batch: Mapping[str, Tensor], step: int) -> dict[str, Tensor]:
        return self.fixed.apply(batch)

    def transform_losses(self, losses: NamedLosses, step: int) -> NamedLosses:
        r = pointwise_of(self.where(), losses, self.loss)
        n = r.shape[0]
        if self.weights is None:
            self._create(torch.full((n,), self.init))
        assert self.weights is not None
        self.fixed.check(n, self.weights.shape[0])
        lam = self.weights.detach().to(r)
        squares = r.detach().reshape(n, -1).pow(2)
        self._ascent = self.mask_derivative(lam) * squares.sum(dim=1) / squares.numel()
        factor = torch.sqrt(self.masked(lam).clamp_min(0)).reshape(n, *([1] * (r.ndim - 1)))
        return replace_loss(losses, self.loss, factor * r)

    def after_step(self, step: int) -> None:
        if self._ascent is None or self.weights is None or self.optimizer is None:
            return
        self.weights.grad = self._ascent.to(self.weights)
        self.optimizer.step()
        self.weights.grad = None
        self._ascent = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "weights": None if self.weights is None else self.weights.detach().clone(),
            "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
            "points": self.fixed.points,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pts = state.get("points")
        self.fixed.points = None if pts is None else pts.to(device=self.device, dtype=self.dtype)
        if state.get("weights") is None:
            self.weights = self.optimizer = None
            return
        self._create(state["weights"].clone())
        assert self.optimizer is not None
        self.optimizer.load_state_dict(state["optimizer"])
