"""How the ``autobalance`` sub-commands are declared, and how ``KEY=VALUE`` flags are read.

A sub-command is data: a :class:`Command` (name, help line, description, its :class:`Flag` s and
the function it runs); :func:`add_command` turns it into an ``argparse`` sub-parser.  Flags that
several commands share (``--param``, ``--out``, ...) are declared once, here.

``KEY=VALUE`` values are read by :func:`autobalance.experiments.config_files.parse_value`, the
parser of ``--set``, so a value means the same in ``--param``, ``--method-param``, ``--variant``
and ``--set``: ``"4"`` → 4, ``"1e-3"`` → 0.001, ``"true"`` → True, ``"(0.9, 0.99)"`` → a tuple,
anything else → the text.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CONFIG_FILE",
    "OUT_DIR",
    "PROBLEM_PARAM",
    "THREADS",
    "Command",
    "Flag",
    "add_command",
    "parse_assignments",
    "parse_variants",
]


@dataclass(frozen=True)
class Flag:
    """One argument of a sub-command: ``parser.add_argument(*names, **options)``."""

    names: tuple[str, ...]
    options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, *names: str, **options: Any) -> Flag:
        """``Flag.of("--lr", type=float, help=...)``."""
        return cls(names, options)

    @classmethod
    def switch(cls, name: str, text: str) -> Flag:
        """An on/off flag: ``False`` unless given."""
        return cls((name,), {"action": "store_true", "help": text})

    def but(self, **options: Any) -> Flag:
        """The same flag with some options replaced (e.g. another ``help``)."""
        return Flag(self.names, {**self.options, **options})


@dataclass(frozen=True)
class Command:
    """A sub-command of ``autobalance``.

    Attributes:
        name: what follows ``autobalance`` on the command line.
        help: one line for ``autobalance --help``.
        run: called with the parsed arguments; returns the exit code.
        flags: its arguments, in order.
        description: the text of ``autobalance NAME --help`` (default: ``help``).
    """

    name: str
    help: str
    run: Callable[[argparse.Namespace], int]
    flags: Sequence[Flag] = ()
    description: str | None = None


def add_command(subparsers: Any, command: Command) -> argparse.ArgumentParser:
    """Add ``command`` to an ``add_subparsers()`` object; returns its parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        command.name, help=command.help, description=command.description
    )
    for flag in command.flags:
        parser.add_argument(*flag.names, **flag.options)
    return parser


def parse_assignments(items: Sequence[str] | None, flag: str) -> dict[str, Any]:
    """Parse repeated ``KEY=VALUE`` options into a dict (values as ``--set`` reads them)."""
    from autobalance.errors import ConfigError
    from autobalance.experiments.config_files import parse_value

    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key.strip()] = parse_value(value)
    return out


def parse_variants(items: Sequence[str] | None) -> list[dict[str, Any]]:
    """``["rba", "causal:chunks=16,epsilon=0.1"]`` → ``[{"name": "rba"}, {"name": "causal", ...}]``.

    Parameters follow the name after a colon as comma-separated ``KEY=VALUE`` pairs (values as
    in :func:`parse_assignments`); a value that itself holds a comma needs ``--set variants=JSON``.
    """
    from autobalance.errors import ConfigError

    specs: list[dict[str, Any]] = []
    for item in items or ():
        name, _, rest = item.partition(":")
        if not name.strip():
            raise ConfigError(f"--variant expects NAME[:KEY=VALUE,...], got {item!r}")
        pairs = [p for p in rest.split(",") if p.strip()]
        specs.append({"name": name.strip(), **parse_assignments(pairs, f"--variant {name}")})
    return specs


#: ``--param KEY=VALUE`` (repeatable): a problem parameter.
PROBLEM_PARAM = Flag.of(
    "--param",
    action="append",
    metavar="KEY=VALUE",
    help="problem parameter, e.g. a2=4 or n_residual=2048 (repeatable)",
)
#: ``--config FILE``: a run configuration file.
CONFIG_FILE = Flag.of(
    "--config", metavar="FILE", help="run configuration file (TOML, YAML or JSON)"
)
#: ``--threads N``: intra-op CPU threads per run (:mod:`autobalance.threads`).
THREADS = Flag.of(
    "--threads",
    type=int,
    metavar="N",
    help="CPU threads per run (default 1: two threads collapse next to a busy core); capped by "
    "the cores this process may use (affinity, cgroup quota, OMP_NUM_THREADS)",
)
#: ``--out DIR``: where the command writes.
OUT_DIR = Flag.of("--out", metavar="DIR", help="output directory")
