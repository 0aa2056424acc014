"""``autobalance report RUNS_DIR [--out DIR] [--metric rel_l2] [--alpha 0.05] [--no-figures]``.

Summarises every run directory found under ``RUNS_DIR`` into ``report.md``, ``results.csv``,
``runs.csv``, ``comparisons.csv`` and ``figures/`` (see :mod:`autobalance.experiments.report`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from autobalance.cli.options import OUT_DIR, Command, Flag

__all__ = ["COMMAND", "cmd_report"]


def cmd_report(args: argparse.Namespace) -> int:
    """Run ``autobalance report``; prints where the report went.  Exit code 0."""
    from autobalance.experiments.report import DEFAULT_METRICS, build_report

    path = build_report(
        Path(args.runs_dir),
        Path(args.out) if args.out else None,
        metrics=DEFAULT_METRICS,
        metric=args.metric,
        alpha=args.alpha,
        figures=not args.no_figures,
        warn=lambda line: print(f"warning: {line}", file=sys.stderr),
    )
    print(f"report: {path}")
    return 0


COMMAND = Command(
    "report",
    "summarise run directories: tables, ranks, significance tests, figures",
    cmd_report,
    (
        Flag.of("runs_dir", metavar="RUNS_DIR", help="directory searched for runs"),
        OUT_DIR.but(help="output directory (default: RUNS_DIR)"),
        Flag.of(
            "--metric",
            default="rel_l2",
            help="metric that ranks methods and decides win/tie/loss (default %(default)s)",
        ),
        Flag.of(
            "--alpha", type=float, default=0.05, help="significance level (default %(default)s)"
        ),
        Flag.switch("--no-figures", "tables only"),
    ),
    description=(
        "Find every run directory (config.json / metrics.json) under RUNS_DIR, at any "
        "depth, and write report.md, results.csv, runs.csv, comparisons.csv and figures/."
    ),
)
