"""What a run does at the end: step length and loss terms over its last steps, per method.

Issue 15, round 7 (``docs/postcombine.md`` §9).  A rule whose step never anneals keeps moving the
network about one update per coordinate at the end of training; its loss terms stop falling
and jump from one logged step to the next.  For every run directory (``config.json``,
``metrics.json``, ``history.csv``) under the folders given, on one problem, this script takes
the logged rows of the last ``--window`` steps and reports per method (labelled as in
``trap_rate.py``) the mean over seeds of:

* the final rel. L2 error;
* the median of each ``--columns`` column (the step's length ``update_norm`` and the loss
  terms; a column the method does not log is ``–``);
* for each loss column, its spread: the median over seeds of ``q90 / q10`` over the window
  (1 for a loss that has settled, large for one that jumps).

    python benchmarks/late_steps.py RUNS_DIR [...] --problem helmholtz --out DIR
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from autobalance.experiments.io import atomic_write_text, write_csv
from trap_rate import method_label  # a sibling script of benchmarks/, not a package

DEFAULT_COLUMNS = ("update_norm", "residual", "boundary")


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` by linear interpolation between order statistics."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


def window_rows(history: Path, window: int) -> list[dict[str, str]]:
    """The logged rows of ``history.csv`` whose step is within ``window`` of the last one."""
    with history.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return []
    last = int(rows[-1]["step"])
    return [row for row in rows if int(row["step"]) > last - window]


def run_summary(run: Path, columns: Sequence[str], window: int) -> dict[str, Any]:
    """One run's label, seed, rel. L2, and per column its window median and q90/q10 spread."""
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    rows = window_rows(run / "history.csv", window)
    summary: dict[str, Any] = {
        "method": method_label(config),
        "problem": config["problem"],
        "seed": int(config["seed"]),
        "rel_l2": float(metrics.get("rel_l2", math.nan)),
    }
    for column in columns:
        values = [float(r[column]) for r in rows if r.get(column) not in (None, "")]
        if values:
            summary[column] = statistics.median(values)
            low = quantile(values, 0.1)
            summary[f"{column}_spread"] = quantile(values, 0.9) / low if low > 0 else math.inf
    return summary


def collect(
    folders: Iterable[Path], problem: str, columns: Sequence[str], window: int
) -> list[dict[str, Any]]:
    """Every finished run of ``problem`` under ``folders``, summarized (:func:`run_summary`)."""
    runs = []
    for folder in folders:
        for metrics in sorted(folder.rglob("metrics.json")):
            run = metrics.parent
            if (run / "history.csv").is_file() and (run / "config.json").is_file():
                summary = run_summary(run, columns, window)
                if summary["problem"] == problem:
                    runs.append(summary)
    return runs


def by_method(runs: Iterable[dict[str, Any]], columns: Sequence[str]) -> list[dict[str, Any]]:
    """Per method (sorted by mean rel. L2): seeds, the mean of every value, spreads' medians."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        grouped[run["method"]].append(run)
    table = []
    for method, group in grouped.items():
        row: dict[str, Any] = {
            "method": method,
            "seeds": ",".join(str(r["seed"]) for r in sorted(group, key=lambda r: r["seed"])),
            "rel_l2": statistics.fmean(r["rel_l2"] for r in group),
        }
        for column in columns:
            values = [r[column] for r in group if column in r]
            spreads = [r[f"{column}_spread"] for r in group if column in r]
            row[column] = statistics.fmean(values) if values else math.nan
            row[f"{column}_spread"] = statistics.median(spreads) if spreads else math.nan
        table.append(row)
    return sorted(table, key=lambda r: r["rel_l2"])


def _number(value: float, digits: int = 2) -> str:
    return "–" if math.isnan(value) else f"{value:.{digits}e}"


def markdown(table: Sequence[dict[str, Any]], columns: Sequence[str], window: int) -> str:
    """The per-method table: rel. L2, column medians over the window, loss spreads."""
    losses = [c for c in columns if c != "update_norm"]
    head = ["method", "seeds", "rel. L2 (mean)"]
    head += [f"{c} (median, last {window} steps)" for c in columns]
    head += [f"{c} q90/q10" for c in losses]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table:
        cells = [f"`{row['method']}`", row["seeds"], _number(row["rel_l2"])]
        cells += [_number(row[c]) for c in columns]
        cells += [
            "–" if math.isnan(row[f"{c}_spread"]) else f"{row[f'{c}_spread']:.1f}" for c in losses
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="folders holding run directories")
    parser.add_argument("--problem", default="helmholtz")
    parser.add_argument("--columns", default=",".join(DEFAULT_COLUMNS))
    parser.add_argument("--window", type=int, default=1000, help="the last steps read")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    columns = [c for c in args.columns.split(",") if c]
    table = by_method(collect(args.folders, args.problem, columns, args.window), columns)
    text = markdown(table, columns, args.window)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / f"late_steps_{args.problem}.md", text)
    keys = list(table[0]) if table else ["method"]
    write_csv(args.out / f"late_steps_{args.problem}.csv", keys, table)


if __name__ == "__main__":
    main()
