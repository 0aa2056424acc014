"""A list of variants applied in order: the composition the runner uses.

``VariantStack([a, b])`` sets up ``a`` then ``b`` (``b`` may wrap the model ``a`` returned),
transforms the batch and the losses through ``a`` then ``b``, and calls every ``after_step``.
Order matters where two variants touch the same loss: each sees the losses (and the pointwise
terms) the previous one handed on.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from autobalance.errors import ConfigError
from autobalance.losses import NamedLosses
from autobalance.variants.base import Variant

if TYPE_CHECKING:
    from autobalance.problems.base import Problem

__all__ = ["VariantStack"]


class VariantStack:
    """Variants applied in order; empty, it changes nothing."""

    def __init__(self, variants: Sequence[Variant] = ()) -> None:
        self.variants = list(variants)

    def __iter__(self) -> Iterator[Variant]:
        return iter(self.variants)

    def __len__(self) -> int:
        return len(self.variants)

    def setup(self, problem: Problem, model: nn.Module) -> nn.Module:
        for variant in self.variants:
            model = variant.setup(problem, model)
        return model

    def transform_batch(self, batch: Mapping[str, Tensor], step: int) -> dict[str, Tensor]:
        out = dict(batch)
        for variant in self.variants:
            out = variant.transform_batch(out, step)
        return out

    def transform_losses(self, losses: NamedLosses, step: int) -> NamedLosses:
        for variant in self.variants:
            losses = variant.transform_losses(losses, step)
        return losses

    def check_phase_objective(self, where: str) -> None:
        """Raise ``ConfigError`` when a variant's transformed losses cannot be a training
        phase's objective (:attr:`~autobalance.variants.base.Variant.defines_phase_objective`)."""
        for variant in self.variants:
            if not variant.defines_phase_objective:
                raise ConfigError(
                    f"{where}: {variant.where()} recomputes its loss weights from the residuals "
                    "at every evaluation and gives them no gradient, so the weighted loss is not "
                    "an objective a line search can minimise. Apply it in the first-order steps "
                    "only; training phases minimise the plain losses"
                )

    def named_parameters(self) -> dict[str, nn.Parameter]:
        """Extra parameters for the balancer, named ``"<index>.<variant>.<k>"``."""
        return {
            f"{i}.{v.name}.{k}": p
            for i, v in enumerate(self.variants)
            for k, p in enumerate(v.parameters())
        }

    def after_step(self, step: int) -> None:
        for variant in self.variants:
            variant.after_step(step)

    def state_dict(self) -> dict[str, Any]:
        return {"names": [v.name for v in self.variants], "states": [v.state_dict() for v in self]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved = list(state["names"])
        if saved != [v.name for v in self.variants]:
            raise ConfigError(
                f"cannot load variant states: saved for {saved}, these are "
                f"{[v.name for v in self.variants]}"
            )
        for variant, sub in zip(self.variants, state["states"], strict=True):
            variant.load_state_dict(sub)
