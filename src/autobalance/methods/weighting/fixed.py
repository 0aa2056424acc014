"""Static weights: equal weights (the vanilla PINN) and user-given fixed weights.

``g = ∇ Σ_k w_k L_k`` with ``w_k = 1`` (EW) or ``w_k`` given; one backward pass per step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from autobalance.errors import HyperparameterError
from autobalance.methods.base import WeightingMethod, WeightingStep, check_positive

__all__ = ["EqualWeights", "FixedWeights"]


class EqualWeights(WeightingMethod):
    """Equal weighting (EW), ``w_k = 1``: ``g = ∇ Σ_k L_k`` — the vanilla PINN.

    Unlike ``"adam"``/``"adamw"`` (one optimizer on the summed loss for any number of losses),
    EW is a weighting method: it reports weights and needs at least two losses.
    """

    method_name = "ew"

    def weights(self, ctx: WeightingStep) -> Sequence[float]:
        return [1.0] * len(ctx.names)


class FixedWeights(WeightingMethod):
    """Fixed weights ``w_k`` given by name: ``g = ∇ Σ_k w_k L_k``.

    Args:
        params: parameters or parameter groups.
        weights: mapping from every loss name to its weight (``≥ 0``, not all zero).
        base, nonfinite, **base_kwargs: see :class:`~autobalance.methods.base.PreCombineMethod`.
    """

    method_name = "fixed"

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        weights: Mapping[str, float] | None = None,
        base: type[torch.optim.Optimizer] | str = "adam",
        **kwargs: Any,
    ) -> None:
        if not isinstance(weights, Mapping) or not weights:
            raise HyperparameterError(
                "method 'fixed' needs weights={loss name: weight, ...} for every loss"
            )
        self._fixed = {
            str(k): check_positive(f"weight of {k!r}", v, allow_zero=True)
            for k, v in weights.items()
        }
        if not any(self._fixed.values()):
            raise HyperparameterError("method 'fixed': every weight is zero")
        super().__init__(params, base, **kwargs)

    def _check_names_first_step(self, names: list[str]) -> None:
        missing = [n for n in names if n not in self._fixed]
        extra = [n for n in self._fixed if n not in names]
        if missing or extra:
            raise HyperparameterError(
                f"method 'fixed': weights are given for {sorted(self._fixed)} but the losses are "
                f"{names}"
                + (f"; no weight for {missing}" if missing else "")
                + (f"; unknown {extra}" if extra else "")
            )

    def weights(self, ctx: WeightingStep) -> Sequence[float]:
        return [self._fixed[n] for n in ctx.names]
