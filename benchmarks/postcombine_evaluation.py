"""Issue 15's evaluation: the chosen post-combine rule against Adam, the paper's rule and others.

Collects the final relative L2 errors of every default-budget run (15,000 steps, 4×50 tanh MLP,
float32, CPU, the runner's schedule) from the sweeps under ``docs/results`` that hold them, one row
per (problem, method, seed); a run found in several sweeps must agree (same
runner, same configuration, deterministic on CPU; some tables keep 6 significant digits, hence
5e-6 relative), which the script checks and reports.  Then,
per problem (default and changed parameters):

* mean ± std over seeds of the new rule (``autobalance-consensus-mean``), Adam and the paper's rule
  (``autobalance``), and of MultiAdam and IMTL-G (the best pre-combine method of the Helmholtz
  default-budget table) where they were run;
* ``new / min(Adam, paper)``, the target of issue 15 (≤ 1.1 on every problem);
* the paired comparison of :func:`autobalance.experiments.stats.compare` (Wilcoxon signed-rank on
  the shared seeds; with 3 seeds its smallest p is 0.25, so every outcome is a tie at α = 0.05,
  which the table says) and the ratio outcome used for the win/tie/loss count: *win* when the
  new rule's mean is below the other's / 1.1, *loss* when above × 1.1, else *tie*.

    python benchmarks/postcombine_evaluation.py    # the table; postcombine-eval/evaluation.csv
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
from collections import defaultdict
from pathlib import Path

from autobalance.experiments import stats
from autobalance.experiments.run_tables import DEFAULT_BUDGET_TABLES, merge_run_tables

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"
#: Where the default-budget runs are: (runs table, columns of problem/method/seed/error).
SOURCES = DEFAULT_BUDGET_TABLES
NEW = "autobalance-consensus-mean"
PAPER = "autobalance"
COLUMNS = (NEW, "adam", PAPER, "multiadam", "imtl-g")
#: The development problems (the rule was chosen and tuned on them; not out-of-sample).
DEVELOPMENT = ("helmholtz", "burgers", "wave", "klein-gordon")
RATIO_MARGIN = 1.1


def collect(root: Path) -> tuple[dict[tuple[str, str], dict[int, float]], list[str]]:
    """``errors[(problem, method)][seed]`` from every source, and the cross-source checks."""
    merged = merge_run_tables(root, SOURCES)
    errors = {key: merged.values(*key) for key in merged.ok}
    return errors, merged.checks


def _cell(values: dict[int, float]) -> str:
    if not values:
        return "–"
    xs = list(values.values())
    if len(xs) == 1:
        return f"{xs[0]:.2e} (1)"
    return f"{statistics.fmean(xs):.2e} ± {statistics.stdev(xs):.1e} ({len(xs)})"


def _outcome(new: dict[int, float], other: dict[int, float]) -> tuple[str, str]:
    """(ratio outcome, paired-test outcome with p) of the new rule against another method."""
    if not new or not other:
        return "–", "–"
    ratio = statistics.fmean(new.values()) / statistics.fmean(other.values())
    by_ratio = "win" if ratio < 1 / RATIO_MARGIN else "loss" if ratio > RATIO_MARGIN else "tie"
    shared = sorted(set(new) & set(other))
    if len(shared) < 2:
        return by_ratio, "–"
    result = stats.compare([new[s] for s in shared], [other[s] for s in shared], paired=True)
    return by_ratio, f"{result.outcome} (p={result.test.p_value:.2f})"


def table(
    errors: dict[tuple[str, str], dict[int, float]],
) -> tuple[list[str], list[dict[str, str]]]:
    problems = sorted({p for p, m in errors if m == NEW})
    lines = [
        "| problem | "
        + " | ".join(f"`{c}`" for c in COLUMNS)
        + " | new / min(Adam, paper) | ≤ 1.1 | vs Adam (ratio; paired test) | vs paper |",
        "|" + "---|" * (len(COLUMNS) + 5),
    ]
    records = []
    for problem in problems:
        cells = {c: errors.get((problem, c), {}) for c in COLUMNS}
        new, adam, paper = cells[NEW], cells["adam"], cells[PAPER]
        ratio = math.nan
        if new and adam and paper:
            best = min(statistics.fmean(adam.values()), statistics.fmean(paper.values()))
            ratio = statistics.fmean(new.values()) / best
        meets = "–" if math.isnan(ratio) else ("yes" if ratio <= RATIO_MARGIN else "**no**")
        vs_adam, vs_paper = _outcome(new, adam), _outcome(new, paper)
        label = problem + (" (dev)" if problem in DEVELOPMENT else "")
        lines.append(
            f"| {label} | "
            + " | ".join(_cell(cells[c]) for c in COLUMNS)
            + f" | {ratio:.2f} | {meets} | {'; '.join(vs_adam)} | {'; '.join(vs_paper)} |"
        )
        record = {"problem": problem, "ratio_to_min_adam_paper": f"{ratio:.4g}", "meets": meets}
        for c in COLUMNS:
            for seed, value in sorted(cells[c].items()):
                record[f"{c}:seed{seed}"] = f"{value:.6g}"
        records.append(record)
    return lines, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=RESULTS)
    parser.add_argument("--out", type=Path, default=RESULTS / "postcombine-eval")
    args = parser.parse_args()
    errors, checks = collect(args.root)
    lines, records = table(errors)
    wins = {"adam": defaultdict(int), PAPER: defaultdict(int)}
    for problem in sorted({p for p, m in errors if m == NEW}):
        for other in wins:
            outcome = _outcome(errors[(problem, NEW)], errors.get((problem, other), {}))[0]
            wins[other][outcome] += 1
    summary = [
        f"- against {other}: {d['win']} wins, {d['tie']} ties, {d['loss']} losses (ratio rule)"
        for other, d in wins.items()
    ]
    differ = [c for c in checks if not c.endswith("reproduced")]
    check_line = (
        f"Cross-source check: {len(checks) - len(differ)} runs found in two sweeps reproduced to 6"
        " significant digits" + ("; " + "; ".join(differ) if differ else "") + "."
    )
    text = "\n".join([*lines, "", *summary, "", check_line])
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    keys = sorted({k for r in records for k in r}, key=lambda k: (k != "problem", k))
    tmp = args.out / "evaluation.csv.tmp"
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(records)
    tmp.replace(args.out / "evaluation.csv")


if __name__ == "__main__":
    main()
