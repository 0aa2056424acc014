"""Issue 18: the paper's three problems at 5 seeds: mean ± std, median, ranks and rank tests.

Merges the default-budget runs (15,000 steps, 4×50 tanh MLP, float32, CPU, the runner's schedule)
of the sweeps that hold them (:data:`SOURCES`, with :func:`autobalance.experiments.run_tables.
merge_run_tables`, which checks that a run found twice reproduces) and writes, per problem of
:data:`PROBLEMS`, every method of :data:`METHODS` that has runs:

* ``n`` (successful / failed), mean ± std (sample, n − 1), median, best and worst relative L2
  error, the rank by median (1 = lowest), mean wall time and backward passes per run where the
  tables record them;
* the paper's rule (``autobalance``) and issue 15's rule (``autobalance-consensus-mean``) against
  every other method: the ratio of means, and the outcome of a two-sided **Mann–Whitney U** test at
  α = 0.05 (win: lower median and p < α; loss: higher median and p < α; else tie), with the paired
  Wilcoxon signed-rank p beside it.  Why Mann–Whitney decides: with 5 paired seeds the exact
  Wilcoxon test cannot go below p = 2/2⁵ = 0.0625, so it could never decide anything at α = 0.05,
  while 5 against 5 Mann–Whitney reaches 2/C(10, 5) = 0.0079.  Seeds give each method the same
  initial network and points, so the paired test is the more natural one once there are 6 or
  more seeds.  No correction for multiple comparisons.

    python benchmarks/paper_statistics.py    # prints; writes paper-5-seeds/statistics.{md,csv}
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections import Counter
from pathlib import Path

from autobalance.experiments import stats
from autobalance.experiments.io import atomic_write_text
from autobalance.experiments.run_tables import DEFAULT_BUDGET_TABLES, MergedRuns, merge_run_tables

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"
#: Sweeps holding default-budget runs of the paper's problems (read in this order).
SOURCES = (*DEFAULT_BUDGET_TABLES, "paper-5-seeds/runs.csv")
PROBLEMS = ("helmholtz", "reaction-diffusion", "poisson-inverse")
PAPER = "autobalance"
NEW = "autobalance-consensus-mean"
METHODS = (
    "adam",
    PAPER,
    NEW,
    "multiadam",
    "mtadam",
    "imtl-g",
    "grad-norm",
    "config",
    "nashmtl",
)
ALPHA = 0.05


def _format(value: float, digits: int = 2) -> str:
    return "–" if not math.isfinite(value) else f"{value:.{digits}e}"


def _whole(value: float) -> str:
    return "–" if not math.isfinite(value) else f"{value:.0f}"


def _mean_of(merged: MergedRuns, problem: str, method: str, key: str) -> float:
    values = list(merged.values(problem, method, key).values())
    return statistics.fmean(values) if values else math.nan


def compare(a: dict[int, float], b: dict[int, float]) -> dict[str, object]:
    """``a`` against ``b``: ratio of means, Mann–Whitney outcome and p, paired Wilcoxon p."""
    ratio = statistics.fmean(a.values()) / statistics.fmean(b.values())
    mw = stats.compare(list(a.values()), list(b.values()), alpha=ALPHA, paired=False)
    shared = sorted(set(a) & set(b))
    wilcoxon_p = math.nan
    if len(shared) >= 2:
        paired = stats.compare([a[s] for s in shared], [b[s] for s in shared], paired=True)
        wilcoxon_p = paired.test.p_value
    return {
        "ratio": ratio,
        "outcome": mw.outcome,
        "p": mw.test.p_value,
        "min_p": mw.test.min_p,
        "wilcoxon_p": wilcoxon_p,
    }


def problem_table(merged: MergedRuns, problem: str) -> tuple[list[str], list[dict[str, object]]]:
    """Markdown lines and CSV records of one problem (module docstring)."""
    methods = [m for m in METHODS if merged.values(problem, m)]
    failed = Counter(
        r.method for r in merged.failed if r.problem == problem and r.status == "failed"
    )
    summaries = {m: stats.summarize(list(merged.values(problem, m).values())) for m in methods}
    medians = sorted({s.median for s in summaries.values()})
    lines = [
        f"### {problem}",
        "",
        "| rank | method | n ok/failed | seeds | rel. L2 mean ± std | median | best | worst "
        "| wall s (sweeps at different loads) | backward passes "
        "| paper rule: its mean ÷ this, outcome, MW p (Wilcoxon p) "
        "| issue 15 rule: the same |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    records: list[dict[str, object]] = []
    for method in sorted(methods, key=lambda m: summaries[m].median):
        values = merged.values(problem, method)
        summary = summaries[method]
        cells = []
        record: dict[str, object] = {"problem": problem, "method": method}
        for reference, tag in ((PAPER, "paper"), (NEW, "new")):
            other = merged.values(problem, reference)
            if method == reference or len(values) < 2 or len(other) < 2:
                cells.append("–")
                continue
            # the reference method's view: its errors against this method's
            result = compare(other, values)
            cells.append(
                f"{result['ratio']:.2f}, {result['outcome']} p={result['p']:.3f} "
                f"({result['wilcoxon_p']:.3f})"
            )
            record.update({f"{tag}_{k}": v for k, v in result.items()})
        std = f" ± {summary.std:.1e}" if summary.n > 1 else ""
        wall = _mean_of(merged, problem, method, "wall_s")
        backward = _mean_of(merged, problem, method, "backward_passes")
        lines.append(
            f"| {medians.index(summary.median) + 1} | `{method}` | {summary.n}/{failed[method]} "
            f"| {' '.join(map(str, values))} | {_format(summary.mean)}{std} "
            f"| {_format(summary.median)} | {_format(summary.minimum)} "
            f"| {_format(summary.maximum)} | {_whole(wall)} | {_whole(backward)}"
            f" | {cells[0]} | {cells[1]} |"
        )
        record.update(
            {
                "rank": medians.index(summary.median) + 1,
                "n_ok": summary.n,
                "n_failed": failed[method],
                "mean": summary.mean,
                "std": summary.std,
                "median": summary.median,
                "best": summary.minimum,
                "worst": summary.maximum,
                "wall_s_mean": wall,
                "backward_passes_mean": backward,
                **{f"seed{s}": v for s, v in values.items()},
            }
        )
        records.append(record)
    return lines, records


def wide_table(records: list[dict[str, object]]) -> list[str]:
    """One row per method, one column per problem: ``mean ± std (n)``, rank by median."""
    cells: dict[str, dict[str, str]] = {}
    for r in records:
        n, mean, std = int(str(r["n_ok"])), float(str(r["mean"])), float(str(r["std"]))
        spread = f" ± {std:.1e}" if n > 1 else ""
        text = f"{mean:.2e}{spread} ({n}; #{r['rank']})"
        cells.setdefault(str(r["method"]), {})[str(r["problem"])] = text
    lines = [
        "| method | " + " | ".join(PROBLEMS) + " |",
        "|---|" + "---|" * len(PROBLEMS),
    ]
    for method in METHODS:
        if method in cells:
            row = [cells[method].get(p, "–") for p in PROBLEMS]
            lines.append(f"| `{method}` | " + " | ".join(row) + " |")
    return lines


def every_problem_table(merged: MergedRuns) -> list[str]:
    """Adam, the paper's rule and issue 15's rule on every problem, every seed there is."""
    problems = sorted({p for p, m in merged.ok if m == PAPER and "(" not in p})
    lines = [
        "| problem | `adam` | `autobalance` | `autobalance-consensus-mean` "
        "| paper ÷ Adam, MW outcome (p) | issue 15 ÷ Adam |",
        "|---|---|---|---|---|---|",
    ]
    for problem in problems:
        samples = [merged.values(problem, m) for m in ("adam", PAPER, NEW)]
        cells = []
        for sample in samples:
            if not sample:
                cells.append("–")
                continue
            summary = stats.summarize(list(sample.values()))
            std = f" ± {summary.std:.1e}" if summary.n > 1 else ""
            cells.append(f"{_format(summary.mean)}{std} ({summary.n})")
        for sample in samples[1:]:
            adam = samples[0]
            if len(sample) < 2 or len(adam) < 2:
                ratio = (
                    statistics.fmean(sample.values()) / statistics.fmean(adam.values())
                    if sample and adam
                    else math.nan
                )
                cells.append("–" if math.isnan(ratio) else f"{ratio:.2f}, one seed")
                continue
            result = compare(sample, adam)
            cells.append(f"{result['ratio']:.2f}, {result['outcome']} ({result['p']:.3f})")
        lines.append(f"| {problem} | " + " | ".join(cells) + " |")
    return lines


def win_tie_loss(records: list[dict[str, object]], tag: str) -> Counter[str]:
    """Outcomes of the paper's rule (``tag="paper"``) or issue 15's (``"new"``) over records."""
    return Counter(str(r[f"{tag}_outcome"]) for r in records if f"{tag}_outcome" in r)


def report(merged: MergedRuns) -> tuple[str, list[dict[str, object]]]:
    """The whole Markdown report and its CSV records."""
    lines: list[str] = []
    records: list[dict[str, object]] = []
    for problem in PROBLEMS:
        problem_lines, problem_records = problem_table(merged, problem)
        lines += [*problem_lines, ""]
        records += problem_records
    for tag, name in (("paper", f"`{PAPER}`"), ("new", f"`{NEW}`")):
        counts = win_tie_loss(records, tag)
        lines.append(
            f"- {name} against the other methods, three problems, Mann–Whitney at α = {ALPHA}: "
            f"{counts['win']} wins, {counts['tie']} ties, {counts['loss']} losses."
        )
    lines += [
        "### The three problems side by side (mean ± std (seeds; rank by median))",
        "",
        *wide_table(records),
        "",
        "### Every problem: Adam, the paper's rule and issue 15's rule (mean ± std (seeds))",
        "",
        *every_problem_table(merged),
        "",
    ]
    for title, wanted in (("Failed runs", True), ("Runs that did not finish", False)):
        runs = [
            f"{r.problem}/{r.method}/seed {r.seed} ({r.status})"
            for r in merged.failed
            if (r.status == "failed") == wanted
        ]
        lines.append(f"- {title}: " + ("; ".join(runs) if runs else "none."))
    differ = merged.differing
    reproduced = sum(c.endswith("reproduced") for c in merged.checks)
    lines.append(
        f"- Cross-source check: {reproduced} runs found in two sweeps reproduced to 6 significant "
        "digits" + ("; " + "; ".join(differ) if differ else "") + "."
    )
    return "\n".join(lines) + "\n", records


def write_csv(path: Path, records: list[dict[str, object]]) -> None:
    """The records as CSV (columns: the union, problem and method first), written atomically."""
    keys = sorted(
        {k for r in records for k in r}, key=lambda k: (k not in ("problem", "method"), k)
    )
    order = ["problem", "method"] + [k for k in keys if k not in ("problem", "method")]

    def cell(value: object) -> str:
        text = f"{value:.6g}" if isinstance(value, float) else str(value)
        return f'"{text}"' if "," in text else text

    text = "\n".join(
        [",".join(order)] + [",".join(cell(r.get(k, "")) for k in order) for r in records]
    )
    atomic_write_text(path, text + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=RESULTS)
    parser.add_argument("--out", type=Path, default=RESULTS / "paper-5-seeds")
    args = parser.parse_args()
    merged = merge_run_tables(args.root, SOURCES)
    text, records = report(merged)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "statistics.md", text)
    write_csv(args.out / "statistics.csv", records)


if __name__ == "__main__":
    main()
