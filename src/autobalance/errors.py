"""Exceptions raised by autobalance.

Every error a user can provoke with bad input derives from :class:`AutoBalanceError`, so callers
can catch the library's complaints without catching torch's internal failures.  Each subclass
also derives from the built-in exception a Python user would expect (``ValueError``,
``KeyError``-like lookups are ``ValueError`` too, ``FloatingPointError`` for non-finite values).

The helpers at the end build the messages every component shares: unknown names with the closest
known ones, and numbers outside their range (:func:`check_positive`, :func:`check_in_range`).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable

__all__ = [
    "AutoBalanceError",
    "BaseOptimizerError",
    "ConfigError",
    "DistributedError",
    "HyperparameterError",
    "LossNameError",
    "LossValueError",
    "NonFiniteLossError",
    "StateDictError",
    "UnknownComponentError",
    "UnknownNameError",
    "check_in_range",
    "check_positive",
    "closest_names",
]


class AutoBalanceError(ValueError):
    """Base class of every error autobalance raises for bad input."""


class LossNameError(AutoBalanceError):
    """The names of the losses changed between steps, or a name is unknown."""


class LossValueError(AutoBalanceError):
    """A loss is not a scalar tensor, or has no path to any parameter."""


class NonFiniteLossError(AutoBalanceError, FloatingPointError):
    """A loss (or its gradient) is NaN or infinite."""

    def __init__(self, message: str, *, loss: str, step: int) -> None:
        super().__init__(message)
        self.loss = loss
        self.step = step


class BaseOptimizerError(AutoBalanceError):
    """The base optimizer cannot be used to keep one state per loss."""


class HyperparameterError(AutoBalanceError):
    """A hyperparameter is unknown or has an invalid value."""


class UnknownNameError(AutoBalanceError):
    """A name (method, problem, base optimizer, ...) is not registered."""


class ConfigError(AutoBalanceError):
    """A configuration key or value is invalid."""


class DistributedError(AutoBalanceError):
    """A process group cannot be used, or the processes of a distributed run disagree."""


class UnknownComponentError(ConfigError, UnknownNameError):
    """A run configuration names a problem, network, method, variant or sampler that is not
    catalogued (both a configuration error and an unknown name)."""


class StateDictError(AutoBalanceError):
    """A state dict does not fit the optimizer or method that loads it (nothing was changed)."""


def closest_names(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """Return up to ``n`` entries of ``known`` closest to ``name`` (best first)."""
    return difflib.get_close_matches(name, list(known), n=n, cutoff=0.5)


def unknown_name_message(kind: str, name: str, known: Iterable[str]) -> str:
    """Format "unknown KIND 'name'; did you mean ...? Known: ..." with the closest names first."""
    known = sorted(known)
    close = closest_names(name, known)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown {kind} {name!r}.{hint} Known {kind}s: {', '.join(known)}."


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    """Return ``float(value)`` or raise :class:`HyperparameterError` naming ``name``."""
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise HyperparameterError(f"{name} must be a finite number {bound}, got {value!r}")
    return value


def check_in_range(
    name: str, value: float, low: float, high: float, *, closed: str = "[]"
) -> float:
    """``float(value)`` if it lies in the interval; ``closed`` is "[]", "[)", "(]" or "()"."""
    value = float(value)
    lo_ok = value >= low if closed[0] == "[" else value > low
    hi_ok = value <= high if closed[1] == "]" else value < high
    if not (math.isfinite(value) and lo_ok and hi_ok):
        raise HyperparameterError(
            f"{name} must lie in {closed[0]}{low}, {high}{closed[1]}, got {value!r}"
        )
    return value
