"""Keyword parameters of registered factories (problems, networks): defaults, validation, coercion.

A registered class or function declares its parameters as keyword arguments with defaults; the
defaults give both the valid names and the expected types.  Values typed on a command line arrive
as ``int``/``float``/``bool``/``str`` and are coerced to the default's type where that is lossless.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from autobalance.errors import ConfigError, unknown_name_message

__all__ = ["check_params", "parameter_defaults"]


def parameter_defaults(
    factory: Callable[..., Any], *, skip: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The keyword parameters of ``factory`` that have defaults, with those defaults, in order."""
    out: dict[str, Any] = {}
    for name, p in inspect.signature(factory).parameters.items():
        if name in skip or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is not inspect.Parameter.empty:
            out[name] = p.default
    return out


def _coerce(where: str, key: str, value: Any, default: Any) -> Any:
    """``value`` as the type of ``default`` when lossless, else :class:`ConfigError`."""

    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{where}: parameter {key!r} must be {expected}, got {value!r}")

    if default is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise bad("true or false")
    if isinstance(default, int):
        if isinstance(value, bool):
            raise bad("an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad("an integer")
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise bad("a number")
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        raise bad("a string")
    return value


def check_params(
    where: str, defaults: Mapping[str, Any], params: Mapping[str, Any]
) -> dict[str, Any]:
    """Validate ``params`` against ``defaults`` and return the full, coerced parameter set.

    Args:
        where: names the owner in messages, e.g. ``"problem 'helmholtz'"``.
        defaults: every valid parameter name with its default value.
        params: the values given.

    Raises:
        ConfigError: a name is not a parameter (the message lists the valid ones), or a value
            cannot be coerced to the default's type.
    """
    out = dict(defaults)
    for key, value in params.items():
        if key not in defaults:
            raise ConfigError(f"{where}: {unknown_name_message('parameter', key, defaults)}")
        out[key] = _coerce(where, key, value, defaults[key])
    return out
