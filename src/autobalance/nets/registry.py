"""The network registry: ``create(name, in_dim, out_dim, **params)``; ``names()`` lists them.

A network factory takes ``in_dim`` and ``out_dim`` plus keyword parameters with defaults (the
valid parameter names and types come from that signature).  There is no dispatch on strings.
A factory that also declares a keyword-only ``input_names`` receives the problem's input names
from :func:`create` (e.g. to resolve ``periodic={"x": 2.0}``); it is not a parameter.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from torch import nn

from autobalance._params import check_params, parameter_defaults
from autobalance.errors import UnknownNameError, unknown_name_message

__all__ = ["create", "describe", "names", "parameters", "register_net"]

F = TypeVar("F", bound=Callable[..., nn.Module])

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_net(name: str) -> Callable[[F], F]:
    """Register ``factory(in_dim, out_dim, **params) -> nn.Module`` (e.g. a class) as ``name``."""

    def decorate(factory: F) -> F:
        if name in _REGISTRY:
            raise ValueError(f"network {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return decorate


def _ensure_builtin_nets() -> None:
    # Importing the modules runs their @register_net decorators.
    from autobalance.nets import mlp, modified_mlp, pirate  # noqa: F401


def names() -> list[str]:
    """Registered network names, sorted."""
    _ensure_builtin_nets()
    return sorted(_REGISTRY)


def _get(name: str) -> Callable[..., nn.Module]:
    _ensure_builtin_nets()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError(unknown_name_message("network", name, _REGISTRY)) from None


def parameters(name: str) -> dict[str, Any]:
    """The parameters of network ``name`` (besides ``in_dim``, ``out_dim``) with their defaults."""
    factory = _get(name)
    target = factory.__init__ if isinstance(factory, type) else factory
    return parameter_defaults(target, skip=("self", "in_dim", "out_dim", "input_names"))


def describe() -> list[tuple[str, str]]:
    """``(name, one-line summary)`` of every registered network, sorted by name."""
    out = []
    for n in names():
        doc = (_REGISTRY[n].__doc__ or "").strip()
        out.append((n, doc.splitlines()[0] if doc else n))
    return out


def create(
    name: str,
    in_dim: int,
    out_dim: int,
    *,
    input_names: Sequence[str] | None = None,
    **params: Any,
) -> nn.Module:
    """Create network ``name`` mapping ``in_dim`` inputs to ``out_dim`` outputs.

    ``input_names`` (the problem's, optional) lets parameters name inputs, e.g.
    ``periodic={"x": 2.0}``; factories that do not declare it never see it.
    """
    full = check_params(f"network {name!r}", parameters(name), params)
    factory = _get(name)
    target = factory.__init__ if isinstance(factory, type) else factory
    if input_names is not None and "input_names" in inspect.signature(target).parameters:
        full["input_names"] = tuple(input_names)
    return factory(in_dim, out_dim, **full)
