"""The report's CSV tables, as ``(columns, rows)`` for :func:`autobalance.experiments.io.write_csv`.

* :func:`results_table` (``results.csv``): one row per (problem, method) group: counts, rank,
  seeds, and for every metric its mean, sample standard deviation, median, best and worst, then
  the mean of every cost;
* :func:`runs_table` (``runs.csv``): one row per run directory, incomplete ones included, with its
  costs (and the training phases' iterations and evaluations when a run has phases);
* :func:`comparisons_table` (``comparisons.csv``): one row per AutoBalance-versus-baseline test.

Parameters are canonical JSON (sorted keys); a missing number is an empty cell.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from autobalance.experiments.analysis import COSTS, Analysis, canonical_json, ordered
from autobalance.experiments.runs import relative_path

__all__ = ["comparisons_table", "results_table", "runs_table"]

Table = tuple[list[str], list[dict[str, Any]]]

#: Costs of the training phases (:data:`COSTS`): per run in ``runs.csv`` where some run has them.
_PHASE_COSTS = [key for key, _, _ in COSTS if key.startswith("phase_")]

_GROUP_COLUMNS = ["problem_label", "problem", "problem_params", "method_label", "method"]
_GROUP_COLUMNS += ["method_params", "n_runs", "n_ok", "n_failed", "rank", "seeds"]
#: Column suffix → attribute of :class:`autobalance.experiments.stats.Summary`.
_STATISTICS = {
    "mean": "mean",
    "std": "std",
    "median": "median",
    "best": "minimum",
    "worst": "maximum",
}


def _metrics(analysis: Analysis) -> list[str]:
    return [*analysis.metrics, *analysis.extras]


def results_table(analysis: Analysis) -> Table:
    """``results.csv``: one row per method group, problems in label order, groups by rank."""
    metrics = _metrics(analysis)
    columns = list(_GROUP_COLUMNS)
    columns += [f"{m}_{s}" for m in metrics for s in _STATISTICS]
    columns += [f"{key}_mean" for key, _, _ in COSTS]
    rows = []
    for groups in analysis.problems.values():
        for g in ordered(groups):
            first = g.runs[0].config
            row: dict[str, Any] = {
                "problem_label": g.problem_label,
                "problem": g.problem,
                "problem_params": canonical_json(g.problem_params),
                "method_label": g.method_label,
                "method": first.get("method"),
                "method_params": canonical_json(first.get("method_params", {})),
                "n_runs": len(g.runs),
                "n_ok": len(g.ok),
                "n_failed": len(g.failed),
                "rank": g.rank,
                "seeds": " ".join(str(r.seed) for r in g.ok),
            }
            for m in metrics:
                summary = g.summary(m)
                if summary is not None:
                    row.update({f"{m}_{s}": getattr(summary, a) for s, a in _STATISTICS.items()})
            row.update({f"{key}_mean": g.mean(key) for key, _, _ in COSTS})
            rows.append(row)
    return columns, rows


def runs_table(analysis: Analysis, root: Path) -> Table:
    """``runs.csv``: one row per run directory (paths relative to ``root``)."""
    metrics = _metrics(analysis)
    costs = ["wall_s", "step_ms", "backward_passes"]
    costs += [k for k in _PHASE_COSTS if any(math.isfinite(r.value(k)) for r in analysis.runs)]
    columns = ["path", "status", "problem_label", "method_label", "problem", "method", "seed"]
    columns += [*metrics, *costs, "error_step", "error_loss", "reason"]
    rows = []
    for r in analysis.runs:
        row: dict[str, Any] = {
            "path": relative_path(r.path, root),
            "status": r.status,
            "problem_label": r.problem_label,
            "method_label": r.method_label,
            "problem": r.recorded("problem"),
            "method": r.recorded("method"),
            "seed": r.seed,
            "error_step": r.error.get("step"),
            "error_loss": r.error.get("loss"),
            "reason": r.reason,
        }
        row.update({k: r.value(k) for k in (*metrics, *costs)})
        rows.append(row)
    return columns, rows


def comparisons_table(analysis: Analysis) -> Table:
    """``comparisons.csv``: one row per AutoBalance-versus-baseline comparison."""
    columns = ["problem_label", "autobalance", "baseline", "metric", "median_autobalance"]
    columns += ["median_baseline", "test", "paired", "exact", "statistic", "p_value", "min_p"]
    columns += ["welch_log_t", "welch_log_df", "welch_log_p", "alpha", "outcome", "note"]
    out = []
    for r in analysis.comparisons:
        c = r.comparison
        row: dict[str, Any] = {
            "problem_label": r.problem,
            "autobalance": r.autobalance,
            "baseline": r.baseline,
            "metric": analysis.metric,
            "note": r.note,
            "outcome": "n/a" if c is None else c.outcome,
        }
        if c is not None:
            row.update(
                {
                    "median_autobalance": c.median_a,
                    "median_baseline": c.median_b,
                    "test": c.test.name,
                    "paired": int(r.paired),
                    "exact": int(c.test.exact),
                    "statistic": c.test.statistic,
                    "p_value": c.test.p_value,
                    "min_p": c.test.min_p,
                    "alpha": c.alpha,
                }
            )
        if c is not None and c.welch_log is not None:
            welch = c.welch_log
            row.update(
                {
                    "welch_log_t": welch.statistic,
                    "welch_log_df": welch.df,
                    "welch_log_p": welch.p_value,
                }
            )
        out.append(row)
    return columns, out
