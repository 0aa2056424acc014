"""Parameters of catalogued components (problems, networks, variants): defaults, rules, coercion.

A component declares each parameter once, as a dataclass field with a default; :func:`param`
attaches the rules its value must satisfy (``AtLeast(1)``, ``Finite()``, ...), and
:func:`validate`, called from the component's ``__post_init__``, coerces every field to the type
of its default and checks its rules, in declaration order.  The defaults give both the valid
names and the expected types: values typed on a command line arrive as ``int``/``float``/
``bool``/``str`` and are coerced to the default's type where that is lossless
(:func:`check_params`, used by :class:`~autobalance.catalog.Catalog` before a factory is called).

Every message names the owner and the parameter: ``"problem 'wave': 'n_boundary' must be even
(half on x = 0, half on x = 1), got 3"``.
"""

from __future__ import annotations

import abc
import dataclasses
import inspect
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autobalance.errors import ConfigError, HyperparameterError, unknown_name_message

__all__ = [
    "AtLeast",
    "Between",
    "EvenAtLeast",
    "Finite",
    "MultipleOf",
    "NonNegative",
    "OneOf",
    "Positive",
    "Rule",
    "check_at_least",
    "check_params",
    "coerce",
    "param",
    "parameter_defaults",
    "parse_named_spec",
    "parse_text_value",
    "validate",
]


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


def coerce(where: str, key: str, value: Any, default: Any) -> Any:
    """``value`` as the type of ``default`` when lossless, else :class:`ConfigError`.

    A ``None`` default (or one of another type) takes any value unchanged.
    """

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
        out[key] = coerce(where, key, value, defaults[key])
    return out


# --------------------------------------------------------------------------------------- rules
class Rule(abc.ABC):
    """A condition on the value of one parameter."""

    @abc.abstractmethod
    def check(self, where: str, key: str, value: Any) -> None:
        """Raise (naming ``where`` and ``key``) when ``value`` breaks the rule."""


@dataclass(frozen=True)
class Finite(Rule):
    """A finite number: ``"{where}: 'k' must be a finite number, got nan"``."""

    def check(self, where: str, key: str, value: Any) -> None:
        if not math.isfinite(value):
            raise ConfigError(f"{where}: {key!r} must be a finite number, got {value!r}")


@dataclass(frozen=True)
class NonNegative(Rule):
    """A finite number ``>= 0``."""

    def check(self, where: str, key: str, value: Any) -> None:
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"{where}: {key!r} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class Positive(Rule):
    """A number ``> 0``, named by what it is: ``"wave speed 'c' must be > 0, got -1.0"``."""

    what: str

    def check(self, where: str, key: str, value: Any) -> None:
        if not value > 0:
            raise ConfigError(f"{where}: {self.what} {key!r} must be > 0, got {value}")


@dataclass(frozen=True)
class AtLeast(Rule):
    """A count ``>= minimum`` (point counts: 1, grid sizes: 2); with ``what``, the message reads
    ``"exponent 'k' must be an integer >= 1, got 0"``."""

    minimum: int
    what: str = ""

    def check(self, where: str, key: str, value: Any) -> None:
        if value >= self.minimum:
            return
        if self.what:
            raise ConfigError(
                f"{where}: {self.what} {key!r} must be an integer >= {self.minimum}, got {value}"
            )
        raise ConfigError(f"{where}: {key!r} must be >= {self.minimum}, got {value}")


@dataclass(frozen=True)
class MultipleOf(Rule):
    """A multiple of ``factor``, for the reason ``why`` (e.g. "equal points per edge")."""

    factor: int
    why: str

    def check(self, where: str, key: str, value: Any) -> None:
        if value % self.factor:
            kind = "even" if self.factor == 2 else f"a multiple of {self.factor}"
            raise ConfigError(f"{where}: {key!r} must be {kind} ({self.why}), got {value}")


@dataclass(frozen=True)
class EvenAtLeast(Rule):
    """An even integer ``>= minimum`` (e.g. Fourier modes)."""

    minimum: int

    def check(self, where: str, key: str, value: Any) -> None:
        if value < self.minimum or value % 2:
            raise ConfigError(f"{where}: {key!r} must be even and >= {self.minimum}, got {value}")


@dataclass(frozen=True)
class OneOf(Rule):
    """One of ``options``."""

    options: tuple[Any, ...]

    def check(self, where: str, key: str, value: Any) -> None:
        if value not in self.options:
            allowed = ", ".join(map(repr, self.options))
            raise ConfigError(f"{where}: {key!r} must be one of {allowed}, got {value!r}")


_LOWER = {"[": operator.ge, "(": operator.gt}
_UPPER = {"]": operator.le, ")": operator.lt}


@dataclass(frozen=True)
class Between(Rule):
    """A finite number in an interval; ``closed`` is ``"[]"``, ``"[)"``, ``"(]"`` or ``"()"``.

    Raises :class:`HyperparameterError` (a hyperparameter of a training method or variant).
    """

    low: float
    high: float = math.inf
    closed: str = "[]"

    def check(self, where: str, key: str, value: Any) -> None:
        inside = _LOWER[self.closed[0]](value, self.low) and _UPPER[self.closed[1]](
            value, self.high
        )
        if not (math.isfinite(value) and inside):
            interval = f"{self.closed[0]}{self.low}, {self.high}{self.closed[1]}"
            raise HyperparameterError(f"{where}: {key!r} must lie in {interval}, got {value!r}")


def check_at_least(where: str, minimum: int, **values: int) -> None:
    """Raise ``ConfigError`` (``"{where}: 'key' must be >= minimum, got …"``) for a count below
    ``minimum`` (point counts: 1; evaluation grid sizes: 2)."""
    for key, value in values.items():
        AtLeast(minimum).check(where, key, value)


# ------------------------------------------------------------------------------------- fields
def param(default: Any, *rules: Rule, **field_options: Any) -> Any:
    """A dataclass field with ``default`` whose value must satisfy ``rules`` (checked in order
    by :func:`validate`); ``field_options`` go to :func:`dataclasses.field` (e.g. ``kw_only``)."""
    return dataclasses.field(default=default, metadata={"rules": rules}, **field_options)


def validate(where: str, component: Any, *, skip: Sequence[str] = ()) -> None:
    """Coerce every init field of the dataclass ``component`` to the type of its default (see
    :func:`coerce`) and check the rules :func:`param` attached to it, field by field in
    declaration order.  Works on frozen dataclasses too; fields named in ``skip`` are left alone.

    Raises:
        ConfigError, HyperparameterError: from the first value that breaks a rule.
    """
    for f in dataclasses.fields(component):
        if not f.init or f.name in skip:
            continue
        value = getattr(component, f.name)
        if f.default is not dataclasses.MISSING:
            value = coerce(where, f.name, value, f.default)
            object.__setattr__(component, f.name, value)
        for rule in f.metadata.get("rules", ()):
            rule.check(where, f.name, value)


def parse_text_value(text: str) -> Any:
    """``"5000"`` → 5000, ``"1e-6"`` → 1e-06, ``"true"`` → True, else the stripped text."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip()


def parse_named_spec(text: str, where: str) -> tuple[str, dict[str, Any]]:
    """``"name:key=value,key=value"`` → ``("name", {key: value, ...})`` (values by
    :func:`parse_text_value`); a pair without ``=`` or a key given twice is a ConfigError."""
    name, _, body = text.strip().partition(":")
    params: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in body.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"{where} {text.strip()!r}: {item!r} is not key=value")
        if key.strip() in params:
            raise ConfigError(f"{where} {text.strip()!r}: {key.strip()!r} is given twice")
        params[key.strip()] = parse_text_value(value)
    return name.strip(), params
