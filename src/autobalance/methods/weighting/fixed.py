"""Static weights: equal weights (the vanilla PINN) and user-given fixed weights.

``g = ∇ Σ_k w_k L_k`` with ``w_k = 1`` (EW) or ``w_k`` given; one backward pass per step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from autobalance.errors import HyperparameterError, check_positive
from autobalance.methods.weighting.base import Weighting, WeightingStep

__all__ = ["EqualWeights", "FixedWeights"]


@dataclass(eq=False)
class EqualWeights(Weighting):
    """Equal weighting (EW), ``w_k = 1``: ``g = ∇ Σ_k L_k`` — the vanilla PINN.

    Unlike ``"adam"``/``"adamw"`` (one optimizer on the summed loss for any number of losses),
    EW is a weighting method: it reports weights and needs at least two losses.
    """

    name: ClassVar[str] = "ew"

    def __call__(self, ctx: WeightingStep) -> Sequence[float]:
        return [1.0] * len(ctx.names)


@dataclass(eq=False)
class FixedWeights(Weighting):
    """Fixed weights ``w_k`` given by name: ``g = ∇ Σ_k w_k L_k``.

    Args:
        weights: mapping from every loss name to its weight (``≥ 0``, not all zero).
    """

    name: ClassVar[str] = "fixed"
    weights: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.weights, Mapping) or not self.weights:
            raise HyperparameterError(
                "method 'fixed' needs weights={loss name: weight, ...} for every loss"
            )
        self.weights = {
            str(k): check_positive(f"weight of {k!r}", v, allow_zero=True)
            for k, v in self.weights.items()
        }
        if not any(self.weights.values()):
            raise HyperparameterError("method 'fixed': every weight is zero")

    def check_names(self, names: list[str]) -> None:
        assert self.weights is not None
        missing = [n for n in names if n not in self.weights]
        extra = [n for n in self.weights if n not in names]
        if missing or extra:
            raise HyperparameterError(
                f"method 'fixed': weights are given for {sorted(self.weights)} but the losses are "
                f"{names}"
                + (f"; no weight for {missing}" if missing else "")
                + (f"; unknown {extra}" if extra else "")
            )

    def __call__(self, ctx: WeightingStep) -> Sequence[float]:
        assert self.weights is not None
        return [self.weights[n] for n in ctx.names]
