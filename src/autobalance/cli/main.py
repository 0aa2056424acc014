"""The ``autobalance`` command: its sub-commands, ``autobalance list``, and the entry point.

Sub-commands: ``run`` (:mod:`~autobalance.cli.run`), ``list`` (here), ``diagnose``, ``report``,
``compare``, ``bench`` (a module each).  Every problem ends in one ``error: <message>`` line on
stderr (never a traceback) and an exit status that says which kind it was (:data:`EXIT_CODES`):

* 0: done;
* 1: a run diverged (its files are written, ``status: "failed"``), or a sweep's run raised;
* 2: usage or configuration error (unknown names, bad values, a resume whose flags change the
  run, a run directory that already holds a run without ``--resume``/``--overwrite``);
* 3: file error: a path that cannot be read or written (a file where a directory should be,
  read-only or full disk, missing directory) or a file that is missing, empty or corrupt
  (a checkpoint to resume from); the message names the path;
* 130: interrupted by SIGINT or SIGTERM after writing a checkpoint; ``--resume`` (``run``) or
  the same command again (``compare``, ``bench``) continues.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from autobalance.cli import bench, compare, diagnose, report, run
from autobalance.cli.console import text_table as _format_table
from autobalance.cli.options import Command, add_command, parse_assignments, parse_variants

if TYPE_CHECKING:
    from autobalance.experiments.interrupts import RunInterrupted

__all__ = [
    "COMMANDS",
    "EXIT_CODES",
    "EXIT_FILE",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
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
EXIT_FILE = 3
EXIT_INTERRUPTED = 130
#: What each exit status means (``autobalance --help`` shows it).
EXIT_CODES = {
    0: "done",
    1: "a run diverged (its files are written) or a sweep's run raised",
    EXIT_USAGE: "usage or configuration error",
    EXIT_FILE: "file error: a path that cannot be read or written, or a missing or corrupt file",
    EXIT_INTERRUPTED: "interrupted by SIGINT/SIGTERM; a checkpoint was written, resume continues",
}
EXIT_HELP = "exit status: " + "; ".join(f"{code} {text}" for code, text in EXIT_CODES.items())


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
        epilog=EXIT_HELP,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS.values():
        add_command(sub, command).epilog = EXIT_HELP
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
    from autobalance.phases import PHASES
    from autobalance.presets import PRESETS

    print("\nphases (--then NAME[:iters=N,redraw_every=N,max_evals=N,max_seconds=S,...]):")
    print(_format_table([(f"  {e.name}", f"[{e.family}] {e.summary}") for e in PHASES.describe()]))
    print("\npresets (--preset NAME):")
    print(_format_table([(f"  {e.name}", e.summary) for e in PRESETS.describe()]))
    return 0


#: The sub-commands, in the order ``autobalance --help`` lists them.
COMMANDS = {
    c.name: c
    for c in (
        run.COMMAND,
        Command(
            "list", "list problems, networks, variants, methods, phases and presets", _cmd_list
        ),
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

    warnings.formatwarning = _warning_line
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed its usage message (or the help)
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    # after parsing: `--help` does not import the experiments package (and torch)
    from autobalance.experiments.interrupts import RunInterrupted
    from autobalance.experiments.runs import RunFileError

    try:
        return COMMANDS[args.command].run(args)
    except RunInterrupted as exc:
        print(_interrupted_message(exc), file=sys.stderr)
        return EXIT_INTERRUPTED
    except RunFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FILE
    except AutoBalanceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `autobalance list | head`: stop writing quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except OSError as exc:
        print(f"error: {_os_error_message(exc)}", file=sys.stderr)
        return EXIT_FILE


def _warning_line(message: Warning | str, category: type[Warning], *args: Any, **kw: Any) -> str:
    """``warning: <message>``, one line, as the command's errors are written."""
    return f"warning: {message}\n"


def _os_error_message(exc: OSError) -> str:
    """``PATH: what is wrong`` (e.g. ``runs/x/metrics.json: No space left on device``)."""
    what = exc.strerror or str(exc)
    if exc.filename is None:
        return what
    path = os.fsdecode(exc.filename)
    if exc.filename2 is not None:
        return f"{path} -> {os.fsdecode(exc.filename2)}: {what}"
    return f"{path}: {what}"


def _interrupted_message(exc: RunInterrupted) -> str:
    """What was saved and how to continue, for a run (``exc.step`` set) or a sweep."""
    if exc.step is not None:
        return (
            f"interrupted by {exc.signal_name}: checkpoint written at step {exc.step} in "
            f"{exc.where}; continue with: autobalance run --out {exc.where} --resume"
        )
    return (
        f"interrupted by {exc.signal_name}: the runs in progress wrote a checkpoint; run the same "
        f"command again to continue the sweep in {exc.where}"
    )
