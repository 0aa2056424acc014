"""The problem registry: every PDE problem is created by name, ``create(name, **params)``.

Problems register themselves with :func:`register_problem`; the valid parameters of a problem are
the keyword arguments (with defaults) of its ``__init__``.  There is no dispatch on problem strings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from autobalance._params import check_params, parameter_defaults
from autobalance.errors import UnknownNameError, unknown_name_message
from autobalance.problems.base import Problem

__all__ = ["create", "describe", "get", "names", "parameters", "register_problem"]

P = TypeVar("P", bound=type[Problem])

_REGISTRY: dict[str, type[Problem]] = {}


def register_problem(name: str) -> Callable[[P], P]:
    """Class decorator: register a :class:`Problem` subclass under ``name``."""

    def decorate(cls: P) -> P:
        if name in _REGISTRY:
            raise ValueError(f"problem {name!r} is already registered")
        if not (isinstance(cls, type) and issubclass(cls, Problem)):
            raise TypeError(f"@register_problem({name!r}) needs a Problem subclass, got {cls!r}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def _ensure_builtin_problems() -> None:
    # Importing the modules runs their @register_problem decorators.
    from autobalance.problems import (
        allen_cahn,  # noqa: F401
        burgers,  # noqa: F401
        convection,  # noqa: F401
        helmholtz,  # noqa: F401
        klein_gordon,  # noqa: F401
        kovasznay,  # noqa: F401
        poisson_inverse,  # noqa: F401
        reaction_diffusion,  # noqa: F401
        wave,  # noqa: F401
    )


def names() -> list[str]:
    """Registered problem names, sorted."""
    _ensure_builtin_problems()
    return sorted(_REGISTRY)


def get(name: str) -> type[Problem]:
    """The class registered as ``name``; an unknown name lists the closest known ones."""
    _ensure_builtin_problems()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError(unknown_name_message("problem", name, _REGISTRY)) from None


def parameters(name: str) -> dict[str, Any]:
    """The parameters of problem ``name`` with their defaults."""
    return parameter_defaults(get(name).__init__, skip=("self",))


def describe() -> list[tuple[str, str]]:
    """``(name, one-line summary)`` of every registered problem, sorted by name."""
    out = []
    for n in names():
        doc = (_REGISTRY[n].__doc__ or "").strip()
        out.append((n, doc.splitlines()[0] if doc else _REGISTRY[n].__name__))
    return out


def create(name: str, **params: Any) -> Problem:
    """Create problem ``name`` with ``params`` (validated; unknown names raise ``ConfigError``)."""
    cls = get(name)
    full = check_params(f"problem {name!r}", parameters(name), params)
    return cls(**full)
