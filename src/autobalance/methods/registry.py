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

from collections.abc import Callable, Iterable
from typing import Any, Protocol, runtime_checkable

import torch

from autobalance.catalog import Catalog, Entry
from autobalance.losses import LossDict
from autobalance.step_info import StepInfo

__all__ = ["METHODS", "Balancer", "MethodSpec", "create", "describe", "names", "spec"]


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

#: A catalogued method: ``name``, ``family``, ``summary``, ``factory`` and ``example_params``
#: (hyperparameters that make a method with required ones runnable on the losses "residual" and
#: "boundary", used by the tests that run every method and by ``autobalance list``).
MethodSpec = Entry

#: Every method, by name.
METHODS: Catalog[Balancer] = Catalog("method", skip=("process_group",))


def names(family: str | None = None) -> list[str]:
    """Method names (optionally of one family), sorted."""
    return METHODS.names(family)


def describe() -> list[MethodSpec]:
    """Every method, sorted by family then name."""
    return METHODS.describe()


def spec(name: str) -> MethodSpec:
    """The entry of ``name``; an unknown name lists the closest known ones."""
    return METHODS.entry(name)


def create(
    name: str, params: Iterable[torch.Tensor] | Iterable[dict[str, Any]], **kwargs: Any
) -> Balancer:
    """Create method ``name`` over ``params`` with its hyperparameters ``kwargs``."""
    return METHODS.get(name)(params, **kwargs)
