"""Gradient aggregators: the per-loss gradient matrix ``G`` (``K × P``) → one direction ``d``.

Every aggregator is usable on its own::

    agg = autobalance.methods.aggregator("pcgrad")
    d = agg(G)                      # G: (K, P) tensor, d: (P,)
    d = agg(G, losses=values)       # methods that use the loss values (e.g. Nash-MTL does not)

and as a training method of the same name (``autobalance.methods.create("pcgrad", params,
lr=1e-3, base="adam")``): per-loss gradients (``K`` backward passes) → ``d`` → the base optimizer.
Aggregators register with :func:`register_aggregator`; the method of the same name is registered
with them.  Stateful aggregators (momenta, EMAs of targets) implement ``state_dict`` /
``load_state_dict`` so checkpoints resume them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from autobalance.errors import HyperparameterError, UnknownNameError, unknown_name_message
from autobalance.methods.base import CombineResult, LossBatch, PreCombineMethod
from autobalance.methods.registry import register
from autobalance.step_info import StepInfo

__all__ = [
    "Aggregator",
    "AggregatorMethod",
    "AggregatorSpec",
    "aggregator",
    "aggregator_names",
    "check_gradient_matrix",
    "register_aggregator",
]


@runtime_checkable
class Aggregator(Protocol):
    """``d = agg(G, losses=None)``: ``G`` is ``(K, P)``, ``losses`` an optional ``(K,)`` tensor."""

    def __call__(self, G: Tensor, losses: Tensor | None = None) -> Tensor: ...


@dataclass(frozen=True)
class AggregatorSpec:
    name: str
    summary: str
    cls: type


_AGGREGATORS: dict[str, AggregatorSpec] = {}


def check_gradient_matrix(G: Tensor, name: str = "G") -> Tensor:
    """Raise a clear error unless ``G`` is a finite 2-D ``(K, P)`` floating tensor with K ≥ 1."""
    if not isinstance(G, Tensor):
        raise HyperparameterError(f"{name} must be a torch.Tensor, got {type(G).__name__}")
    if G.dim() != 2 or G.shape[0] < 1 or G.shape[1] < 1:
        raise HyperparameterError(
            f"{name} must be a (K losses × P parameters) matrix, got shape {tuple(G.shape)}"
        )
    if not G.is_floating_point():
        raise HyperparameterError(f"{name} must be floating point, got {G.dtype}")
    if not bool(torch.isfinite(G).all()):
        raise HyperparameterError(f"{name} has NaN or infinite entries")
    return G


def register_aggregator(name: str, *, summary: str) -> Callable[[type], type]:
    """Register an aggregator class (its ``__init__`` takes keyword hyperparameters) by name.

    Also registers the training method ``name`` (family ``"aggregator"``):
    :class:`AggregatorMethod` over that aggregator.
    """

    def decorate(cls: type) -> type:
        if name in _AGGREGATORS:
            raise ValueError(f"aggregator {name!r} is already registered")
        _AGGREGATORS[name] = AggregatorSpec(name=name, summary=summary, cls=cls)

        def factory(params: Any, **kwargs: Any) -> AggregatorMethod:
            return AggregatorMethod(params, aggregator=name, **kwargs)

        register(name, family="aggregator", summary=summary)(factory)
        return cls

    return decorate


def _ensure_builtin_aggregators() -> None:
    from autobalance.methods import _builtin  # noqa: F401


def aggregator_names() -> list[str]:
    """Registered aggregator names, sorted."""
    _ensure_builtin_aggregators()
    return sorted(_AGGREGATORS)


def aggregator(name: str, **hyperparameters: Any) -> Aggregator:
    """Create the aggregator ``name`` (an unknown name lists the closest known ones)."""
    _ensure_builtin_aggregators()
    try:
        spec = _AGGREGATORS[name]
    except KeyError:
        raise UnknownNameError(unknown_name_message("aggregator", name, _AGGREGATORS)) from None
    accepted = _init_names(spec.cls)
    unknown = [k for k in hyperparameters if k not in accepted]
    if unknown:
        raise HyperparameterError(
            f"aggregator {name!r} has no hyperparameter {', '.join(map(repr, unknown))}; "
            f"its hyperparameters are: {', '.join(accepted) or 'none'}"
        )
    return spec.cls(**hyperparameters)


def _init_names(cls: type) -> list[str]:
    """The keyword hyperparameters of an aggregator class."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    params = inspect.signature(cls.__init__).parameters
    return [n for n, p in params.items() if n != "self" and p.kind in kinds]


class AggregatorMethod(PreCombineMethod):
    """Per-loss gradients → aggregator → one base optimizer.

    Args:
        params: parameters or parameter groups.
        aggregator: a registered aggregator name, or an :class:`Aggregator` instance.
        base: the base optimizer ("adam" by default).
        nonfinite: "raise" or "skip" on NaN/Inf losses or gradients.
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
        **kwargs: Any,
    ) -> None:
        if isinstance(aggregator, str):
            _ensure_builtin_aggregators()
            if aggregator not in _AGGREGATORS:
                raise UnknownNameError(unknown_name_message("aggregator", aggregator, _AGGREGATORS))
            accepted = set(_init_names(_AGGREGATORS[aggregator].cls))
            agg_kwargs = {k: v for k, v in kwargs.items() if k in accepted}
            base_kwargs = {k: v for k, v in kwargs.items() if k not in accepted}
            self.aggregator: Aggregator = globals()["aggregator"](aggregator, **agg_kwargs)
            self.method_name = aggregator
        else:
            self.aggregator = aggregator
            base_kwargs = kwargs
            self.method_name = type(aggregator).__name__
        super().__init__(params, base, nonfinite=nonfinite, **base_kwargs)

    def _combine(self, batch: LossBatch) -> CombineResult | StepInfo:
        names, values, step_no = batch.names, batch.values, batch.step
        gm = self.gradients(batch.losses)
        skipped = self.check_gradients_finite(gm, batch)
        if skipped is not None:
            return skipped
        loss_tensor = torch.tensor(
            [values[n] for n in names], dtype=gm.matrix.dtype, device=gm.matrix.device
        )
        with torch.no_grad():
            direction = self.aggregator(gm.matrix, losses=loss_tensor)
        if direction.shape != (gm.matrix.shape[1],) or not bool(torch.isfinite(direction).all()):
            raise FloatingPointError(
                f"aggregator {self.method_name!r} returned an invalid direction "
                f"(shape {tuple(direction.shape)}) at step {step_no}"
            )
        self.set_gradient(direction, gm)
        weights = getattr(self.aggregator, "last_weights", None)
        return CombineResult(len(names), True, weights, gm, direction)

    def extra_state(self) -> dict[str, Any]:
        state_dict = getattr(self.aggregator, "state_dict", None)
        return {"aggregator": state_dict()} if callable(state_dict) else {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        load = getattr(self.aggregator, "load_state_dict", None)
        if callable(load) and "aggregator" in state:
            load(state["aggregator"])
