"""Aggregators by name, and the training method that applies them.

Every aggregator is usable on its own::

    agg = autobalance.methods.aggregator("pcgrad")
    d = agg(G)                      # G: (K, P) tensor, d: (P,)
    d, w = agg.aggregate(G, losses=values)   # and the weights w (K,) with d = wᵀG

and as a training method of the same name (``autobalance.methods.create("pcgrad", params,
lr=1e-3, base="adam")``): per-loss gradients (``K`` backward passes) → ``(d, w)`` → ``d`` to the
base optimizer, ``w`` to the step's statistics.  The aggregators are catalogued in
:data:`~autobalance.methods.aggregators.AGGREGATORS`; :func:`register_aggregator` adds one of
your own, with its training method.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from autobalance.errors import HyperparameterError, StateDictError
from autobalance.methods.aggregators import AGGREGATORS, Aggregator, check_gradient_matrix
from autobalance.methods.base import CombineResult, LossBatch, PreCombineMethod
from autobalance.methods.registry import METHODS
from autobalance.state_checks import check_per_loss
from autobalance.step_info import StepInfo

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

__all__ = [
    "Aggregator",
    "AggregatorMethod",
    "aggregator",
    "aggregator_names",
    "check_gradient_matrix",
    "register_aggregator",
]


def aggregator_names() -> list[str]:
    """Catalogued aggregator names, sorted."""
    return AGGREGATORS.names()


def _split(name: str, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``kwargs`` split into aggregator ``name``'s hyperparameters and the rest."""
    accepted = AGGREGATORS.parameters(name)  # an unknown name lists the closest known ones
    own = {k: v for k, v in kwargs.items() if k in accepted}
    return own, {k: v for k, v in kwargs.items() if k not in accepted}


def aggregator(name: str, **hyperparameters: Any) -> Aggregator:
    """Create the aggregator ``name`` (an unknown name lists the closest known ones)."""
    own, unknown = _split(name, hyperparameters)
    if unknown:
        accepted = ", ".join(AGGREGATORS.parameters(name)) or "none"
        raise HyperparameterError(
            f"aggregator {name!r} has no hyperparameter {', '.join(map(repr, unknown))}; "
            f"its hyperparameters are: {accepted}"
        )
    return AGGREGATORS.get(name)(**own)


class AggregatorMethod(PreCombineMethod):
    """Per-loss gradients → aggregator → one base optimizer.

    Args:
        params: parameters or parameter groups.
        aggregator: a catalogued aggregator name, or an :class:`Aggregator` instance.
        base: the base optimizer ("adam" by default).
        nonfinite: "raise" or "skip" on NaN/Inf losses or gradients.
        process_group: average the losses and the per-loss gradients over its ranks before
            aggregating (data-parallel training, :mod:`autobalance.distributed`); ``None``: one
            process.
        **kwargs: the aggregator's hyperparameters (when ``aggregator`` is a name) first, the
            rest go to the base optimizer (lr, betas, weight_decay, ...).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        aggregator: str | Aggregator,
        base: type[torch.optim.Optimizer] | str = "adam",
        *,
        nonfinite: str = "raise",
        process_group: ProcessGroup | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(aggregator, str):
            own, kwargs = _split(aggregator, kwargs)
            aggregator = AGGREGATORS.get(aggregator)(**own)
        self.aggregator = aggregator
        self.method_name = aggregator.name or type(aggregator).__name__
        super().__init__(params, base, nonfinite=nonfinite, process_group=process_group, **kwargs)

    def _combine(self, batch: LossBatch) -> CombineResult | StepInfo:
        names, values, step_no = batch.names, batch.values, batch.step
        gm = self.gradients(batch.losses)
        skipped = self.check_gradients_finite(gm, batch)
        if skipped is not None:
            return skipped
        try:
            with torch.no_grad():
                direction, weights = self.aggregator.aggregate(gm.matrix, list(values.values()))
        except FloatingPointError as err:
            raise FloatingPointError(f"{err} at step {step_no}") from err
        self.set_gradient(direction, gm)
        return CombineResult(len(names), True, weights.tolist(), gm, direction)

    def extra_state(self) -> dict[str, Any]:
        return {"aggregator": self.aggregator.state_dict()}

    def check_extra_state(self, state: Mapping[str, Any], names: list[str] | None) -> None:
        """The aggregator's state must hold one value per loss where it keeps per-loss data and
        must load into a copy of the aggregator."""
        if "aggregator" not in state:
            return
        what = f"the {self.method_name} aggregator state"
        saved = state["aggregator"]
        check_per_loss(what, saved, None if names is None else len(names))
        try:
            copy.deepcopy(self.aggregator).load_state_dict(saved)
        except Exception as exc:  # each aggregator's state fails in its own way
            raise StateDictError(f"{what} does not fit ({type(exc).__name__}: {exc})") from None

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "aggregator" in state:
            self.aggregator.load_state_dict(state["aggregator"])


def _register_method(name: str) -> None:
    """Register the training method ``name`` (family ``"aggregator"``) over aggregator ``name``."""

    def factory(params: Any, **kwargs: Any) -> AggregatorMethod:
        if "aggregator" in kwargs:
            raise HyperparameterError(
                f"method {name!r} runs the aggregator {name!r}; it takes no 'aggregator' "
                f"(got {kwargs['aggregator']!r}): choose that aggregator's method instead"
            )
        return AggregatorMethod(params, aggregator=name, **kwargs)

    METHODS.add(name, factory, family="aggregator", summary=AGGREGATORS.entry(name).summary)


def register_aggregator(
    name: str, cls: type[Aggregator], *, summary: str | None = None
) -> type[Aggregator]:
    """Catalogue your aggregator class (dataclass fields or keyword arguments with defaults) as
    ``name``, with the training method of the same name; returns ``cls``."""
    AGGREGATORS.add(name, cls, summary=summary)
    _register_method(name)
    return cls


for _name in AGGREGATORS.names():
    _register_method(_name)
