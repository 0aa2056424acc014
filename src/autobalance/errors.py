"""Exceptions raised by autobalance.

Every error a user can provoke with bad input derives from :class:`AutoBalanceError`, so callers
can catch the library's complaints without catching torch's internal failures.  Each subclass
also derives from the built-in exception a Python user would expect (``ValueError``,
``KeyError``-like lookups are ``ValueError`` too, ``FloatingPointError`` for non-finite values).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "AutoBalanceError",
    "BaseOptimizerError",
    "ConfigError",
    "HyperparameterError",
    "LossNameError",
    "LossValueError",
    "NonFiniteLossError",
    "UnknownNameError",
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


def closest_names(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """Return up to ``n`` entries of ``known`` closest to ``name`` (best first)."""
    return difflib.get_close_matches(name, list(known), n=n, cutoff=0.5)


def unknown_name_message(kind: str, name: str, known: Iterable[str]) -> str:
    """Format "unknown KIND 'name'; did you mean ...? Known: ..." with the closest names first."""
    known = sorted(known)
    close = closest_names(name, known)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown {kind} {name!r}.{hint} Known {kind}s: {', '.join(known)}."
