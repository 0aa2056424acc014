"""The variant registry: ``create(name, **params)``; ``names()`` lists the variants.

A variant class declares its parameters as keyword arguments with defaults (the valid names and
types come from that signature, as for networks and problems).  A run configuration lists
variants as ``[{"name": "rba", "eta": 0.01}, {"name": "gpinn", "weight": 0.1}]``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from autobalance._params import check_params, parameter_defaults
from autobalance.errors import ConfigError, UnknownNameError, unknown_name_message
from autobalance.variants.base import Variant

__all__ = ["create", "describe", "names", "parameters", "register_variant", "resolve_specs"]

V = TypeVar("V", bound=type[Variant])

_REGISTRY: dict[str, type[Variant]] = {}


def register_variant(name: str) -> Callable[[V], V]:
    """Class decorator: register a :class:`Variant` subclass under ``name``."""

    def decorate(cls: V) -> V:
        if name in _REGISTRY:
            raise ValueError(f"variant {name!r} is already registered")
        if not (isinstance(cls, type) and issubclass(cls, Variant)):
            raise TypeError(f"@register_variant({name!r}) needs a Variant subclass, got {cls!r}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def _ensure_builtin_variants() -> None:
    # Importing the modules runs their @register_variant decorators.
    from autobalance.variants import causal, gpinn, hard, rba, self_adaptive  # noqa: F401


def names() -> list[str]:
    """Registered variant names, sorted."""
    _ensure_builtin_variants()
    return sorted(_REGISTRY)


def _get(name: str) -> type[Variant]:
    _ensure_builtin_variants()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError(unknown_name_message("variant", name, _REGISTRY)) from None


def parameters(name: str) -> dict[str, Any]:
    """The parameters of variant ``name`` with their defaults."""
    return parameter_defaults(_get(name).__init__, skip=("self",))


def describe() -> list[tuple[str, str]]:
    """``(name, one-line summary)`` of every registered variant, sorted by name."""
    out = []
    for n in names():
        doc = (_REGISTRY[n].__doc__ or "").strip()
        out.append((n, doc.splitlines()[0] if doc else n))
    return out


def create(name: str, **params: Any) -> Variant:
    """Create variant ``name`` with its parameters (unknown names and bad types raise)."""
    full = check_params(f"variant {name!r}", parameters(name), params)
    return _get(name)(**full)


def resolve_specs(specs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Check ``[{"name": ..., **params}, ...]`` and fill in every default (for ``config.json``)."""
    out = []
    for i, spec in enumerate(specs):
        if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
            raise ConfigError(
                f"variants[{i}] must be a mapping with a 'name' (one of {', '.join(names())}), "
                f"got {spec!r}"
            )
        params = {k: v for k, v in spec.items() if k != "name"}
        full = check_params(f"variant {spec['name']!r}", parameters(spec["name"]), params)
        out.append({"name": spec["name"], **full})
    return out
