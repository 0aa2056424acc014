"""One name → component catalog, shared by problems, networks, variants and methods.

A :class:`Catalog` maps names to *factories* (a class or a function).  A factory's parameters are
read from it once, in one place:

* a dataclass: its fields with defaults, in the order of its ``__init__`` (positional fields,
  then keyword-only ones),
* anything else: the keyword arguments with defaults of its signature (``__init__`` for a class,
  or the ``__signature__`` it declares),

minus the names the catalog passes itself (``skip``, e.g. ``in_dim`` for networks).  Parameters
given by name are validated and coerced by :func:`autobalance._params.check_params` before the
factory is called, so a CLI, a config file and the API refuse the same inputs with the same
messages.

A catalog is filled by explicit ``add`` calls in the package that owns it (no decorators that run
at import, no lazy "builtin" imports), so ``import autobalance.problems`` shows every problem by
reading one list.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from autobalance._params import check_params, parameter_defaults
from autobalance.errors import UnknownNameError, unknown_name_message

__all__ = ["Catalog", "Entry", "factory_parameters"]

T = TypeVar("T")


def factory_parameters(factory: Callable[..., Any], *, skip: Iterable[str] = ()) -> dict[str, Any]:
    """The keyword parameters of ``factory`` with their defaults, in the order of its signature.

    The signature is ``inspect.signature(factory)``: a function's, a class's ``__init__`` (or its
    ``__signature__``); for a dataclass, its generated ``__init__``: the positional fields, then
    the keyword-only ones, each with its default (a default factory is called).  Parameters
    without a default, ``*args``/``**kwargs`` and the names in ``skip`` are left out.
    """
    out = parameter_defaults(factory, skip=tuple(skip))
    if dataclasses.is_dataclass(factory) and isinstance(factory, type):
        for f in dataclasses.fields(factory):
            if f.name in out and f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
    return out


def _summary(factory: Callable[..., Any]) -> str:
    doc = inspect.getdoc(factory) or ""
    return doc.strip().splitlines()[0] if doc.strip() else getattr(factory, "__name__", "")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A catalogued component: its name, factory, one-line summary and optional family.

    ``example_params``: values that make a component with required parameters runnable in the
    tests and in ``autobalance list`` (e.g. the weights of the ``fixed`` method).
    ``parameters_from``: where the parameters are read, when not from the factory itself (e.g. a
    network's hyperparameter dataclass, for a factory that takes ``**params``).
    """

    name: str
    factory: Callable[..., T]
    summary: str
    family: str = ""
    example_params: Mapping[str, Any] = field(default_factory=dict)
    parameters_from: Callable[..., Any] | None = None


class Catalog(Generic[T]):
    """Components of one kind (``"problem"``, ``"network"``, ...) found by name.

    Args:
        kind: what the entries are, used in every message (``"unknown problem 'helmholz'; did
            you mean 'helmholtz'?"``).
        skip: factory arguments the catalog's owner passes itself, not user parameters.
    """

    def __init__(self, kind: str, *, skip: Iterable[str] = ()) -> None:
        self.kind = kind
        self.skip = tuple(skip)
        self._entries: dict[str, Entry[T]] = {}

    def add(
        self,
        name: str,
        factory: Callable[..., T],
        *,
        summary: str | None = None,
        family: str = "",
        example_params: Mapping[str, Any] | None = None,
        parameters_from: Callable[..., Any] | None = None,
    ) -> Callable[..., T]:
        """Catalogue ``factory`` as ``name`` and return it; a name is added once.

        The parameters are read from ``parameters_from`` when given, else from ``factory``
        (see :func:`factory_parameters`).
        """
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already in the catalog")
        if not callable(factory):
            raise TypeError(f"{self.kind} {name!r}: the factory must be callable, got {factory!r}")
        self._entries[name] = Entry(
            name=name,
            factory=factory,
            summary=summary if summary is not None else _summary(factory),
            family=family,
            example_params=dict(example_params or {}),
            parameters_from=parameters_from,
        )
        return factory

    def remove(self, name: str) -> None:
        """Take ``name`` out of the catalog (e.g. a component a test added)."""
        self.entry(name)
        del self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def names(self, family: str | None = None) -> list[str]:
        """The catalogued names (of one family when given), sorted."""
        return sorted(n for n, e in self._entries.items() if family is None or e.family == family)

    def entry(self, name: str) -> Entry[T]:
        """The :class:`Entry` of ``name``; an unknown name lists the closest known ones."""
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(unknown_name_message(self.kind, name, self._entries)) from None

    def get(self, name: str) -> Callable[..., T]:
        """The factory catalogued as ``name``."""
        return self.entry(name).factory

    def parameters(self, name: str) -> dict[str, Any]:
        """The parameters of ``name`` with their defaults (see :func:`factory_parameters`)."""
        entry = self.entry(name)
        return factory_parameters(entry.parameters_from or entry.factory, skip=self.skip)

    def describe(self) -> list[Entry[T]]:
        """Every entry, sorted by family, then name."""
        return sorted(self._entries.values(), key=lambda e: (e.family, e.name))

    def check(self, name: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """The full, validated and coerced parameter set of ``name`` for ``params``."""
        return check_params(f"{self.kind} {name!r}", self.parameters(name), params)

    def create(self, name: str, *args: Any, **params: Any) -> T:
        """Build ``name``: ``factory(*args, **validated params)``.

        ``args`` (and any keyword in ``skip``) are the owner's arguments, passed through
        unchecked; every other keyword is a user parameter, validated by :meth:`check`.
        """
        own = {k: params.pop(k) for k in self.skip if k in params}
        return self.get(name)(*args, **own, **self.check(name, params))
