"""The method catalog: every balancing method is created by name.

A *method* turns named losses into one parameter update.  Whatever its shape (one optimizer on a
summed loss, a weighting, an aggregator, a multi-state optimizer), a trainer only sees the
:class:`Balancer` protocol: ``info = balancer.step(losses)``.

:data:`METHODS` is a :class:`~autobalance.catalog.Catalog`.  ``autobalance.methods`` fills it with
one explicit list (``METHODS.add(name, factory, family=..., summary=...)``); the aggregator
methods are added by :mod:`autobalance.methods.aggregation` with their aggregators.  A factory is
called as ``factory(params, **kwargs)``: the method's own hyperparameters and those of its base
optimizer (``lr``, ``betas``, ...) arrive together, and the method sorts them out.  Every method
also takes ``process_group=`` (data-parallel training, :mod:`autobalance.distributed`): the
trainer passes it itself, so it is not a hyperparameter of the catalog.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

import torch

from autobalance.catalog import Catalog, Entry
from autobalance.errors import HyperparameterError
from autobalance.losses import LossDict
from autobalance.step_info import StepInfo

__all__ = [
    "METHODS",
    "Balancer",
    "MethodSpec",
    "Preset",
    "check_arguments",
    "create",
    "describe",
    "names",
    "request_statistics",
    "spec",
]


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


@runtime_checkable
class SwitchableStatistics(Protocol):
    """A balancer whose per-loss statistics can be switched off per step (AutoBalance and the
    multi-state optimizers built on it: ``statistics = False`` skips the update Gram)."""

    statistics: bool


def request_statistics(balancer: Balancer, wanted: bool) -> None:
    """Ask ``balancer`` for per-loss statistics (norms, cosines) in its next infos or not;
    a balancer that always computes them ignores this."""
    if isinstance(balancer, SwitchableStatistics):
        balancer.statistics = wanted


Factory = Callable[..., Balancer]

#: A catalogued method: ``name``, ``family``, ``summary``, ``factory`` and ``example_params``
#: (hyperparameters that make a method with required ones runnable on the losses "residual" and
#: "boundary", used by the tests that run every method and by ``autobalance list``).
MethodSpec = Entry

#: Every method, by name.
METHODS: Catalog[Balancer] = Catalog("method", skip=("process_group",))


def names(family: str | None = None) -> list[str]:
    """Method names (optionally of one family), sorted."""
    return METHODS.names(family)


def describe() -> list[Entry[Balancer]]:
    """Every method, sorted by family then name."""
    return METHODS.describe()


def spec(name: str) -> Entry[Balancer]:
    """The entry of ``name``; an unknown name lists the closest known ones."""
    return METHODS.entry(name)


class Preset:
    """``factory`` with some keyword arguments fixed: method "adam" is
    ``Preset("adam", SummedLoss, base="adam")``.

    Unlike ``functools.partial``, a fixed argument cannot be overridden: giving it another value
    (``create("adam", params, base="adamw")``) is a :class:`HyperparameterError`, never a
    silently different method.  Giving it its own value is allowed.
    """

    def __init__(self, name: str, factory: Callable[..., Balancer], **fixed: Any) -> None:
        self.name = name
        self.factory = factory
        self.fixed = fixed
        self.__signature__ = inspect.signature(functools.partial(factory, **fixed))
        self.__doc__ = factory.__doc__

    def __call__(self, params: Any, **kwargs: Any) -> Balancer:
        self.check(kwargs)
        return self.factory(params, **{**kwargs, **self.fixed})

    def check(self, kwargs: Mapping[str, Any]) -> None:
        """A :class:`HyperparameterError` when ``kwargs`` give a fixed argument another value."""
        clash = [k for k in kwargs if k in self.fixed and not _same(kwargs[k], self.fixed[k])]
        if clash:
            given = ", ".join(f"{k}={kwargs[k]!r}" for k in clash)
            fixed = ", ".join(f"{k}={self.fixed[k]!r}" for k in clash)
            raise HyperparameterError(
                f"method {self.name!r} fixes {fixed}, so {given} conflicts with it; choose the "
                f"method made for that value instead (see `autobalance list`)"
            )


def _same(given: Any, fixed: Any) -> bool:
    if isinstance(given, str) and isinstance(fixed, str):
        return given.lower() == fixed.lower()
    return bool(given == fixed)


def check_arguments(name: str, kwargs: Mapping[str, Any]) -> None:
    """Raise :class:`HyperparameterError` unless method ``name`` can take the keyword arguments
    ``kwargs``: none conflicts with one the method fixes (:class:`Preset`), and each is a
    parameter of its factory (unless the factory takes any keyword).  Builds nothing."""
    factory = METHODS.get(name)
    if isinstance(factory, Preset):
        factory.check(kwargs)
    parameters = list(inspect.signature(factory).parameters.values())
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return
    known = [p.name for p in parameters[1:] if p.kind is not inspect.Parameter.POSITIONAL_ONLY]
    unknown = [k for k in kwargs if k not in known]
    if unknown:
        raise HyperparameterError(
            f"method {name!r} has no parameter {', '.join(map(repr, unknown))}; its parameters "
            f"are: {', '.join(known)}"
        )


def create(
    name: str, params: Iterable[torch.Tensor] | Iterable[dict[str, Any]], **kwargs: Any
) -> Balancer:
    """Create method ``name`` over ``params`` with its hyperparameters ``kwargs``.

    Raises:
        UnknownNameError: no such method.
        HyperparameterError: an argument the method does not take, or one that conflicts with
            an argument the method fixes (:func:`check_arguments`).
    """
    check_arguments(name, kwargs)
    return METHODS.get(name)(params, **kwargs)
