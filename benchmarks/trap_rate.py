"""How often is a method trapped?  Counts of trapped runs over many seeds, with intervals and tests.

Issue 15, round 6 (``docs/postcombine.md`` §8).  On reaction–diffusion with both periodicity
conditions, some runs settle on a solution that the residual and the boundary accept and the
initial condition does not (rel. L2 ≈ 0.8, where solved runs reach 1e-3); which runs do depends on
the seed.  Three seeds cannot tell a method that is trapped often from one that was unlucky, so
this script reads many short runs (the trap is set in the first thousand steps; a run is
*trapped* when its final rel. L2 exceeds ``--threshold``) and reports per method:

* the count of trapped runs ``k`` of ``n`` and the Wilson score interval of the rate at 95%
  (Wilson 1927: ``(p̂ + z²/2n ± z √(p̂(1 − p̂)/n + z²/4n²)) / (1 + z²/n)``);
* Fisher's exact test (two-sided, the sum of the hypergeometric probabilities no larger than the
  observed table's) of its count against ``--reference``'s, on the seeds both ran.

Runs are the runner's output directories (``metrics.json`` and ``config.json``) anywhere under
the folders given; a method is labelled by its name, its method parameters and its learning rate
when that is not the runner's default.

    python benchmarks/trap_rate.py RUNS_DIR [...] --reference autobalance --out DIR
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from autobalance.experiments.io import atomic_write_text, write_csv

DEFAULT_LR = 1e-3
Z95 = 1.959963984540054


def wilson_interval(trapped: int, runs: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial rate ``trapped / runs`` (``(0, 1)`` for no runs)."""
    if runs <= 0:
        return 0.0, 1.0
    p = trapped / runs
    centre = p + z * z / (2 * runs)
    spread = z * math.sqrt(p * (1 - p) / runs + z * z / (4 * runs * runs))
    scale = 1 + z * z / runs
    return max(0.0, (centre - spread) / scale), min(1.0, (centre + spread) / scale)


def fisher_exact(a: int, b: int, c: int, d: int) -> float:
    """Two-sided p of Fisher's exact test of the 2 × 2 table ``[[a, b], [c, d]]``.

    Rows are the two methods, columns trapped / not trapped.  The p-value sums the
    hypergeometric probabilities of every table with the same margins that is no more likely
    than the observed one (relative tolerance 1e-7, as R's ``fisher.test``).
    """
    row, col, total = a + b, a + c, a + b + c + d

    def probability(x: int) -> float:
        return math.comb(row, x) * math.comb(total - row, col - x) / math.comb(total, col)

    observed = probability(a)
    low, high = max(0, col - (total - row)), min(row, col)
    p = sum(q for q in map(probability, range(low, high + 1)) if q <= observed * (1 + 1e-7))
    return min(1.0, p)


def method_label(config: dict[str, Any]) -> str:
    """``method``, ``method(key=value, ...)`` with its parameters, ``lr=...`` if not the default."""
    params = dict(sorted((config.get("method_params") or {}).items()))
    lr = float(config.get("lr", DEFAULT_LR))
    if not math.isclose(lr, DEFAULT_LR, rel_tol=1e-9):
        params["lr"] = lr
    inner = ", ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )
    return f"{config['method']}({inner})" if inner else str(config["method"])


def read_runs(folders: Iterable[Path]) -> list[dict[str, Any]]:
    """One row per run directory under ``folders``: label, problem, steps, seed and rel. L2."""
    rows = []
    for folder in folders:
        for metrics_path in sorted(folder.rglob("metrics.json")):
            run = metrics_path.parent
            config = json.loads((run / "config.json").read_text(encoding="utf-8"))
            metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
            rows.append(
                {
                    "method": method_label(config),
                    "problem": config["problem"],
                    "steps": int(config["steps"]),
                    "seed": int(config["seed"]),
                    "status": metrics.get("status", "ok"),
                    "rel_l2": float(metrics.get("rel_l2", math.nan)),
                }
            )
    return rows


def failed_run(row: dict[str, Any]) -> bool:
    """A run that did not finish with a finite error (a NaN or Inf loss)."""
    return row["status"] != "ok" or not math.isfinite(row["rel_l2"])


def trapped(row: dict[str, Any], threshold: float) -> bool:
    """Trapped: a failed run, or a final rel. L2 above ``threshold``."""
    return failed_run(row) or row["rel_l2"] > threshold


def summarize(
    rows: list[dict[str, Any]], threshold: float, reference: str | None
) -> list[dict[str, Any]]:
    """Per method: runs, trapped, rate, Wilson interval and Fisher's p against ``reference``.

    A failed run (NaN or Inf loss, no final error) counts as trapped and is counted apart.
    """
    by_method: dict[str, dict[int, bool]] = defaultdict(dict)
    failed: dict[str, int] = defaultdict(int)
    for row in rows:
        failed[row["method"]] += failed_run(row)
        by_method[row["method"]][row["seed"]] = trapped(row, threshold)
    summary = []
    for method, seeds in sorted(by_method.items()):
        n, k = len(seeds), sum(seeds.values())
        low, high = wilson_interval(k, n)
        entry: dict[str, Any] = {
            "method": method,
            "runs": n,
            "trapped": k,
            "failed": failed[method],
            "rate": k / n,
            "wilson_low": low,
            "wilson_high": high,
            "fisher_p": math.nan,
        }
        if reference is not None and reference in by_method and method != reference:
            shared = sorted(set(seeds) & set(by_method[reference]))
            a = sum(seeds[s] for s in shared)
            c = sum(by_method[reference][s] for s in shared)
            entry["fisher_p"] = fisher_exact(a, len(shared) - a, c, len(shared) - c)
        summary.append(entry)
    return summary


def markdown(summary: list[dict[str, Any]], threshold: float, reference: str | None) -> str:
    lines = [
        f"Trapped: final rel. L2 > {threshold:g} (or a failed run).  95% Wilson intervals; "
        f"Fisher's exact test (two-sided) against `{reference}` on the seeds both ran.",
        "",
        "| method | trapped / runs | rate | 95% interval | Fisher p |",
        "|---|---|---|---|---|",
    ]
    for entry in summary:
        p = entry["fisher_p"]
        lines.append(
            f"| `{entry['method']}` | {entry['trapped']} / {entry['runs']} | {entry['rate']:.2f} | "
            f"{entry['wilson_low']:.2f}–{entry['wilson_high']:.2f} | "
            f"{'–' if math.isnan(p) else f'{p:.2g}'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="folders holding run directories")
    parser.add_argument("--threshold", type=float, default=0.3)
    parser.add_argument("--reference", default="autobalance", help="method label to test against")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = read_runs(args.folders)
    if not rows:
        parser.error(f"no run directories (metrics.json) under {', '.join(map(str, args.folders))}")
    summary = summarize(rows, args.threshold, args.reference)
    text = markdown(summary, args.threshold, args.reference)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    for row in rows:
        row["trapped"] = trapped(row, args.threshold)
    ordered = sorted(rows, key=lambda r: (r["method"], r["seed"]))
    write_csv(args.out / "trap_runs.csv", list(ordered[0]), ordered)
    write_csv(args.out / "trap_rate.csv", list(summary[0]), summary)
    atomic_write_text(args.out / "trap_rate.md", text)


if __name__ == "__main__":
    main()
