"""The report of a set of runs: tables, ranks, significance tests and figures.

:func:`build_report` finds every run directory under ``runs_dir`` (any directory holding a
``config.json`` or a ``metrics.json``, at any depth; :mod:`autobalance.experiments.runs`), groups,
ranks and compares them (:mod:`autobalance.experiments.analysis`) and writes, atomically, into
``out_dir``:

* ``report.md``: per problem, an error table (for each metric: mean ± sample standard deviation,
  median and best over the successful runs), a cost table (mean wall-clock, ms/step, backward
  passes, peak memory), the rank of each method, AutoBalance against each baseline (win / tie /
  loss with p-values, see :mod:`autobalance.experiments.stats`), the failed runs, figures; then a
  summary of wins, ties and losses over problems, the incomplete run directories and the successful
  runs with missing or non-numeric metrics (:mod:`autobalance.experiments.markdown`);
* ``results.csv``: one row per (problem, method) group with the numbers of the tables;
* ``runs.csv``: one row per run directory (incomplete ones included);
* ``comparisons.csv``: one row per AutoBalance-versus-baseline comparison
  (:mod:`autobalance.experiments.csv_tables`);
* ``figures/``: compact PNGs (:mod:`autobalance.experiments.figures`), linked from ``report.md``
  with relative paths.

Robustness.  A run directory whose ``metrics.json`` or ``config.json`` is missing, unreadable or
malformed is listed as *incomplete* with the reason, and a successful run whose metrics are
missing or not numbers is listed with them; neither stops the report, and ``warn`` reports each
(the CLI on stderr).  A directory without any run is an error.  A figure that cannot be drawn
is noted in the report instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from autobalance.experiments.analysis import (
    AUTOBALANCE_PREFIX,
    DEFAULT_METRICS,
    Criteria,
    MethodGroup,
    analyze,
    group_runs,
)
from autobalance.experiments.csv_tables import comparisons_table, results_table, runs_table
from autobalance.experiments.figures import draw_report_figures
from autobalance.experiments.io import atomic_write_text, write_csv
from autobalance.experiments.markdown import render_markdown, slug
from autobalance.experiments.runs import (
    ReportError,
    RunRecord,
    discover_runs,
    load_run,
    relative_path,
)

__all__ = [
    "AUTOBALANCE_PREFIX",
    "DEFAULT_METRICS",
    "MethodGroup",
    "ReportError",
    "RunRecord",
    "build_report",
    "discover_runs",
    "group_runs",
    "load_run",
]


def build_report(
    runs_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    metric: str | None = None,
    alpha: float = 0.05,
    figures: bool = True,
    warn: Callable[[str], None] | None = None,
) -> Path:
    """Write ``report.md``, ``results.csv``, ``runs.csv``, ``comparisons.csv`` and figures.

    Args:
        runs_dir: searched recursively for run directories (module docstring).
        out_dir: where to write (created if needed); default ``runs_dir``.
        metrics: the error metrics (keys of ``metrics.json``) tabulated; keys such as
            ``rel_l2_a`` found in the runs are added; one that no run records is left out.
        metric: the metric that ranks methods and decides win/tie/loss (default
            ``metrics[0]``); added to ``metrics`` when missing.
        alpha: significance level of the tests, in ``(0, 1)``.
        figures: draw the figures (they need ``eval.csv``, ``history.csv``, ``checkpoint.pt``).
        warn: called with one line per incomplete run directory and per successful run with
            missing or non-numeric metrics (the CLI prints them on stderr); the report lists
            them too.

    Returns:
        The path of ``report.md``.

    Raises:
        ReportError: ``runs_dir`` is not a directory or holds no run directory, no metric
            given, ``metric`` appears in no run's ``metrics.json``, or ``alpha`` is outside
            ``(0, 1)``.
    """
    root = Path(runs_dir)
    out = Path(out_dir) if out_dir is not None else root
    criteria = Criteria.of(metrics, metric, alpha)
    runs = discover_runs(root)
    if not runs:
        raise ReportError(
            f"no run directories under {str(root)!r}: no config.json or metrics.json at any depth"
        )
    analysis = analyze(runs, criteria)
    if warn is not None:
        for run in analysis.with_status("incomplete"):
            warn(f"{relative_path(run.path, root)}: incomplete ({run.reason})")
        for flagged in analysis.flagged:
            warn(
                f"{relative_path(flagged.run.path, root)}: {'; '.join(flagged.issues)} "
                "(left out of those statistics)"
            )
    drawn = None
    if figures:
        drawn = {
            label: draw_report_figures(groups, analysis.metric, out / "figures", slug(label))
            for label, groups in analysis.problems.items()
        }
    text = render_markdown(analysis, root, out, drawn)
    write_csv(out / "results.csv", *results_table(analysis))
    write_csv(out / "runs.csv", *runs_table(analysis, root))
    write_csv(out / "comparisons.csv", *comparisons_table(analysis))
    return atomic_write_text(out / "report.md", text)
