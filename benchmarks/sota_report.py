"""Issue 14's table: per problem, today's defaults beside the ``sota`` preset and the same recipe
with AutoBalance as the first phase, against the issue's targets.

Reads ``docs/results/sota/runs.csv`` (the report of ``autobalance bench sota``: the preset runs,
recognised by their phase iterations, and the default-budget runs the suite adds) and the
committed default-budget run tables (:data:`DEFAULT_SOURCES`, merged with
:func:`autobalance.experiments.run_tables.merge_run_tables`, which checks that a run found twice
reproduces), and writes ``docs/results/sota/summary.{md,csv}``:

* per problem: the target and the error it is measured on (``a``'s for the inverse problem);
  today's default Adam and AutoBalance (float32, 4×50 MLP, 15,000 steps), the preset (Adam
  first, then the quasi-Newton phase) and the same recipe with AutoBalance first, each as
  mean ± sample std over its seeds; whether the preset's mean meets the target; the preset's
  mean wall time per run, phase iterations and function evaluations;
* the answer to "does the first-order balancer still matter after the finisher?": AutoBalance
  first ÷ Adam first (ratio of means), the seeds on which AutoBalance first is lower, and the
  paired Wilcoxon p (3 paired seeds cannot go below p = 0.25, so no difference can be
  significant: the table says so), and the same for the defaults (the balancer alone).

    python benchmarks/sota_report.py            # prints; writes sota/summary.{md,csv}
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections import defaultdict
from pathlib import Path

from autobalance.experiments import stats
from autobalance.experiments.io import atomic_write_text, write_csv
from autobalance.experiments.run_tables import (
    DEFAULT_BUDGET_TABLES,
    RunRow,
    merge_run_tables,
    read_run_table,
)
from autobalance.presets import SOTA

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"
SWEEP = "sota/runs.csv"
#: Committed tables of default-budget runs (read in this order).
DEFAULT_SOURCES = (*DEFAULT_BUDGET_TABLES, "paper-5-seeds/runs.csv")
#: The error a problem's target is stated on, where it is not the solution's rel. L2.
TARGET_METRIC = {"poisson-inverse": "rel_l2_a"}
FIRST_PHASES = ("adam", "autobalance")
ALPHA = 0.05

Runs = dict[tuple[str, str, str], dict[int, RunRow]]  # (recipe, problem, method) → seed → row


def collect(root: Path) -> tuple[Runs, list[str]]:
    """The runs by recipe (``default`` or ``sota``), problem and first-phase method, and the
    merge's check lines (``... DIFFERS`` where a run recorded twice disagrees)."""
    runs: Runs = defaultdict(dict)
    merged = merge_run_tables(root, DEFAULT_SOURCES)
    for (problem, method), by_seed in merged.ok.items():
        if method in FIRST_PHASES:
            runs[("default", problem, method)].update(by_seed)
    checks = list(merged.checks)
    for row in read_run_table(root / SWEEP, source=SWEEP):
        if row.status != "ok" or row.method not in FIRST_PHASES:
            continue
        recipe = "sota" if row.values.get("phase_iterations", 0) > 0 else "default"
        known = runs[(recipe, row.problem, row.method)]
        if row.seed in known:
            checks.append(f"{recipe} {row.problem}/{row.method}/seed {row.seed}: recorded twice")
        known[row.seed] = row
    return runs, checks


def _values(runs: Runs, recipe: str, problem: str, method: str, key: str) -> dict[int, float]:
    rows = runs.get((recipe, problem, method), {})
    return {s: r.values[key] for s, r in sorted(rows.items()) if key in r.values}


def _mean(runs: Runs, problem: str, key: str) -> float:
    """Mean of ``key`` over the preset's runs (Adam first) on ``problem``."""
    values = _values(runs, "sota", problem, "adam", key).values()
    return statistics.fmean(values) if values else math.nan


def _mean_std(values: dict[int, float]) -> str:
    if not values:
        return "–"
    mean = statistics.fmean(values.values())
    std = statistics.stdev(values.values()) if len(values) > 1 else math.nan
    spread = f" ± {std:.1e}" if math.isfinite(std) else ""
    return f"{mean:.2e}{spread} ({len(values)})"


def balancer_effect(ab: dict[int, float], adam: dict[int, float]) -> dict[str, object]:
    """AutoBalance first against Adam first on the seeds both have: ratio of means, the seeds
    where AutoBalance is lower, and the paired Wilcoxon p with the smallest p it could reach."""
    shared = sorted(set(ab) & set(adam))
    if not shared:
        return {"ratio": math.nan, "pairs": 0, "lower": "–", "p": math.nan, "min_p": math.nan}
    a, b = [ab[s] for s in shared], [adam[s] for s in shared]
    lower = sum(x < y for x, y in zip(a, b, strict=True))
    p = min_p = math.nan
    if len(shared) >= 2:
        test = stats.compare(a, b, paired=True).test
        p, min_p = test.p_value, test.min_p
    return {
        "ratio": statistics.fmean(a) / statistics.fmean(b),
        "pairs": len(shared),
        "lower": f"{lower}/{len(shared)}",
        "p": p,
        "min_p": min_p,
    }


def summary(runs: Runs) -> list[dict[str, object]]:
    """One record per problem with a sota recipe (module docstring)."""
    records = []
    for problem, preset in SOTA.items():
        key = TARGET_METRIC.get(problem, "rel_l2")
        cells = {
            (recipe, method): _values(runs, recipe, problem, method, key)
            for recipe in ("default", "sota")
            for method in FIRST_PHASES
        }
        preset_errors = cells[("sota", "adam")]
        mean = statistics.fmean(preset_errors.values()) if preset_errors else math.nan

        finisher = balancer_effect(cells[("sota", "autobalance")], preset_errors)
        alone = balancer_effect(cells[("default", "autobalance")], cells[("default", "adam")])
        record: dict[str, object] = {
            "problem": problem,
            "metric": key,
            "target": preset.target,
            "default_adam": _mean_std(cells[("default", "adam")]),
            "default_autobalance": _mean_std(cells[("default", "autobalance")]),
            "sota": _mean_std(preset_errors),
            "sota_seeds": " ".join(f"{v:.2e}" for v in preset_errors.values()),
            "sota_autobalance_first": _mean_std(cells[("sota", "autobalance")]),
            "sota_mean": mean,
            "met": "yes" if mean <= preset.target else ("–" if math.isnan(mean) else "no"),
            **{
                k: _mean(runs, problem, k)
                for k in ("wall_s", "phase_iterations", "phase_functions")
            },
        }
        record.update({f"finisher_{k}": v for k, v in finisher.items()})
        record.update({f"default_{k}": v for k, v in alone.items()})
        records.append(record)
    return records


def _p(value: object) -> str:
    return "–" if not isinstance(value, float) or math.isnan(value) else f"{value:.2f}"


def markdown(records: list[dict[str, object]], checks: list[str]) -> str:
    lines = [
        "# The `sota` preset against today's defaults (issue 14)",
        "",
        "Written by `benchmarks/sota_report.py` from `runs.csv` (this sweep) and the committed "
        "default-budget tables. Errors: relative L2 on the held-out grid after the last phase "
        "(the inverse problem: the coefficient `a`'s), mean ± sample std (number of seeds).",
        "",
        "| problem | target | default Adam | default AutoBalance | **sota preset** (Adam first) "
        "| met | same recipe, AutoBalance first | wall s / run | phase iterations "
        "| phase function evals |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['problem']} | ≤ {r['target']:.0e} | {r['default_adam']} "
            f"| {r['default_autobalance']} | **{r['sota']}** | {r['met']} "
            f"| {r['sota_autobalance_first']} | {r['wall_s']:.0f} | {r['phase_iterations']:.0f} "
            f"| {r['phase_functions']:.0f} |"
        )
    lines += [
        "",
        "## Does the first-order balancer still matter after the finisher?",
        "",
        "AutoBalance ÷ Adam as the first phase (ratio of means over the shared seeds), the seeds "
        "on which AutoBalance is lower, and the paired Wilcoxon p; beside it the same for "
        "today's defaults, where the balancer is the whole training.",
        "",
        "| problem | after the finisher: ratio | lower | p | defaults alone: ratio | lower | p |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['problem']} | {r['finisher_ratio']:.2f} | {r['finisher_lower']} "
            f"| {_p(r['finisher_p'])} | {r['default_ratio']:.2f} | {r['default_lower']} "
            f"| {_p(r['default_p'])} |"
        )
    reachable = sorted(
        {
            (r[f"{tag}_pairs"], r[f"{tag}_min_p"])
            for r in records
            for tag in ("finisher", "default")
            if r[f"{tag}_pairs"]
        }
    )
    floors = ", ".join(f"{_p(p)} with {n} pairs" for n, p in reachable)
    significant = [
        f"{r['problem']} ({tag})"
        for r in records
        for tag in ("finisher", "default")
        if isinstance(r[f"{tag}_p"], float) and r[f"{tag}_p"] < ALPHA  # type: ignore[operator]
    ]
    lines += [
        "",
        f"The smallest p the paired test can reach: {floors}. Below α = {ALPHA}: "
        f"{', '.join(significant) or 'none'}.",
    ]
    differing = [c for c in checks if "DIFFERS" in c or "twice" in c]
    if differing:
        lines += ["", "Runs recorded twice that disagree:", "", *[f"- {c}" for c in differing]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=RESULTS, help="the docs/results folder")
    args = parser.parse_args(argv)
    runs, checks = collect(args.root)
    records = summary(runs)
    text = markdown(records, checks)
    atomic_write_text(args.root / "sota" / "summary.md", text)
    write_csv(args.root / "sota" / "summary.csv", list(records[0]), records)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
