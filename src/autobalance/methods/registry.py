"""The method registry: every balancing method is created by name.

A *method* turns named losses into one parameter update.  Whatever its shape (one optimizer on a
summed loss, a weighting, an aggregator, a multi-state optimizer), a trainer only sees the
:class:`Balancer` protocol: ``info = balancer.step(losses)``.

Methods register themselves with :func:`register`; there is no dispatch on method strings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from autobalance.errors import UnknownNameError, unknown_name_message
from autobalance.losses import LossDict
from autobalance.step_info import StepInfo

__all__ = ["Balancer", "MethodSpec", "create", "describe", "names", "register"]


@runtime_checkable
class Balancer(Protocol):
    """What a trainer needs from a method."""

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The optimizer whose ``param_groups`` learning-rate schedulers act on."""
        ...

    def step(self, losses: LossDict) -> StepInfo:
        """Compute gradients of the named losses and update the parameters."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: dict[str, Any]) -> None: ...


Factory = Callable[..., Balancer]


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its name, family, one-line summary and factory.

    ``example_params``: hyperparameters that make the method runnable on a problem with the
    losses ``"residual"`` and ``"boundary"`` when it has required ones (e.g. fixed weights);
    used by the tests that run every method and by ``autobalance list``.
    """

    name: str
    family: str
    summary: str
    factory: Factory
    example_params: Mapping[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, MethodSpec] = {}


def register(
    name: str,
    *,
    family: str,
    summary: str,
    example_params: Mapping[str, Any] | None = None,
) -> Callable[[Factory], Factory]:
    """Register ``factory(params, **kwargs) -> Balancer`` under ``name``."""

    def decorate(factory: Factory) -> Factory:
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is already registered")
        _REGISTRY[name] = MethodSpec(
            name=name,
            family=family,
            summary=summary,
            factory=factory,
            example_params=dict(example_params or {}),
        )
        return factory

    return decorate


def _ensure_builtin_methods() -> None:
    # Importing the modules runs their @register decorators.
    from autobalance.methods import _builtin  # noqa: F401


def names(family: str | None = None) -> list[str]:
    """Registered method names (optionally of one family), sorted."""
    _ensure_builtin_methods()
    return sorted(n for n, s in _REGISTRY.items() if family is None or s.family == family)


def describe() -> list[MethodSpec]:
    """Every registered method, sorted by family then name."""
    _ensure_builtin_methods()
    return sorted(_REGISTRY.values(), key=lambda s: (s.family, s.name))


def spec(name: str) -> MethodSpec:
    """The :class:`MethodSpec` of ``name``; an unknown name lists the closest known ones."""
    _ensure_builtin_methods()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError(unknown_name_message("method", name, _REGISTRY)) from None


def create(
    name: str, params: Iterable[torch.Tensor] | Iterable[dict[str, Any]], **kwargs: Any
) -> Balancer:
    """Create method ``name`` over ``params`` with its hyperparameters ``kwargs``."""
    return spec(name).factory(params, **kwargs)
