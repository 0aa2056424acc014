"""``autobalance bench SUITE``: run a named benchmark suite (or a suite file) as a resumable sweep.

Shipped suites (:mod:`autobalance.experiments.suites`): ``paper``, ``quick``, ``ablations``;
``SUITE`` may also be a TOML, YAML or JSON suite file.  Problems and methods the suite names but
that are not registered are skipped and listed.  The runs land in ``--out`` (default
``runs/bench-SUITE``); running the same command again skips complete runs and resumes
interrupted ones.  Then the table of ``autobalance compare`` and the report
(:mod:`autobalance.cli.sweeps`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from autobalance.cli.options import Command, Flag
from autobalance.cli.sweeps import SWEEP_FLAGS, budget_items, finish_sweep, thread_items

__all__ = ["COMMAND", "cmd_bench"]


def cmd_bench(args: argparse.Namespace) -> int:
    """Run ``autobalance bench``."""
    from autobalance.errors import ConfigError
    from autobalance.experiments.suites import load_suite

    if args.seeds is not None and args.seeds < 1:
        raise ConfigError(f"invalid --seeds {args.seeds}: must be >= 1")
    only = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    suite = load_suite(
        args.suite,
        overrides=[*budget_items(args), *thread_items(args), *args.set],
        seeds=args.seeds,
        only_methods=only,
    )
    print(f"suite {suite.name}: {suite.description}")
    print(f"{len({s.name for s in suite.runs})} runs")
    for entry in suite.skipped:
        print(f"skipped: {entry}", file=sys.stderr)
    if args.list:
        for spec in suite.runs:
            print(f"  [{spec.group}] {spec.name}")
        return 0
    if not suite.runs:
        raise ConfigError(f"suite {suite.name!r} has no runs to do")
    out = Path(args.out or f"runs/bench-{suite.name}")
    return finish_sweep(suite.runs, out, args)


COMMAND = Command(
    "bench",
    "run a benchmark suite (paper, quick, ablations, or a suite file)",
    cmd_bench,
    (
        Flag.of("suite", help="paper, quick, ablations, or a suite file"),
        Flag.of("--methods", help="comma-separated: keep only these methods of the suite"),
        Flag.switch("--list", "list the suite's runs and skipped entries, run nothing"),
        *SWEEP_FLAGS,
    ),
    description=(
        "Run every run of SUITE (a shipped suite name or a TOML/YAML/JSON suite file) as a "
        "resumable sweep in --out, print the table and write the report."
    ),
)
