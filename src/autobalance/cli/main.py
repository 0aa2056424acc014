"""The ``autobalance`` command: its sub-commands, ``autobalance list``, and the entry point.

Sub-commands: ``run`` (:mod:`~autobalance.cli.run`), ``list`` (here), ``diagnose``, ``report``,
``compare``, ``bench`` (a module each).  Errors the user can fix (unknown names, bad parameters)
print ``error: <message>`` on stderr and exit with code 2; a run that diverges writes its files
and exits with code 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from autobalance.cli import bench, compare, diagnose, report, run
from autobalance.cli.console import text_table as _format_table
from autobalance.cli.options import Command, add_command, parse_assignments, parse_variants

__all__ = [
    "COMMANDS",
    "GLIBC_TUNABLES",
    "build_parser",
    "main",
    "parse_assignments",
    "parse_variants",
]

#: glibc's default malloc thresholds make every PINN step page-fault on the autograd buffers it
#: just freed; raising both thresholds makes CPU steps 11–25% faster (measured on the 2-core
#: development machine).  glibc reads GLIBC_TUNABLES only at process start, so the console command
#: re-executes itself once with it set (see ``_reexec_with_tunables``).
GLIBC_TUNABLES = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296"

EXIT_USAGE = 2


def _reexec_with_tunables() -> None:
    """Re-exec the same command once with ``GLIBC_TUNABLES`` set (Linux only).

    Skipped when ``GLIBC_TUNABLES`` or ``AUTOBALANCE_NO_REEXEC`` is already set; the new process
    gets both, so it never re-executes again.  Any failure to exec leaves this process running.
    """
    if not sys.platform.startswith("linux"):
        return
    if "GLIBC_TUNABLES" in os.environ or "AUTOBALANCE_NO_REEXEC" in os.environ:
        return
    argv = list(getattr(sys, "orig_argv", []))
    if not argv or not sys.executable:
        return
    env = dict(os.environ, GLIBC_TUNABLES=GLIBC_TUNABLES, AUTOBALANCE_NO_REEXEC="1")
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, *argv[1:]], env)
    except OSError:
        return


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``autobalance`` command."""
    parser = argparse.ArgumentParser(
        prog="autobalance",
        description="Train physics-informed neural networks with multi-loss balancing methods.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS.values():
        add_command(sub, command)
    return parser


def _cmd_list(args: argparse.Namespace) -> int:
    from autobalance import methods, nets, problems, variants

    print("problems:")
    print(_format_table([(f"  {e.name}", e.summary) for e in problems.describe()]))
    print("\nnetworks:")
    print(_format_table([(f"  {e.name}", e.summary) for e in nets.describe()]))
    print(
        "  (every network takes the input embeddings fourier_features=M, fourier_sigma=S, "
        "periodic={input: period}\n   and rwf=true for random weight factorisation: "
        "--net-param KEY=VALUE)"
    )
    print("\nvariants (--variant NAME[:KEY=VALUE,...], applied in order):")
    print(_format_table([(f"  {e.name}", e.summary) for e in variants.describe()]))
    print("\nmethods:")
    specs = methods.describe()
    print(_format_table([(f"  {s.name}", f"[{s.family}] {s.summary}") for s in specs]))
    return 0


#: The sub-commands, in the order ``autobalance --help`` lists them.
COMMANDS = {
    c.name: c
    for c in (
        run.COMMAND,
        Command("list", "list problems, networks, variants and methods", _cmd_list),
        diagnose.COMMAND,
        report.COMMAND,
        compare.COMMAND,
        bench.COMMAND,
    )
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``autobalance`` and ``python -m autobalance``; returns the exit code.

    With ``argv=None`` (a console command) on Linux, the process first re-executes itself once with
    :data:`GLIBC_TUNABLES` set, unless ``GLIBC_TUNABLES`` or ``AUTOBALANCE_NO_REEXEC`` is set.  An
    explicit ``argv`` (a programmatic call) never re-executes.
    """
    if argv is None:
        _reexec_with_tunables()
    from autobalance.errors import AutoBalanceError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed its usage message
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return COMMANDS[args.command].run(args)
    except AutoBalanceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `autobalance list | head`: stop writing quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
