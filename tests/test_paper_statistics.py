"""``benchmarks/paper_statistics.py``: 5-seed statistics, Mann–Whitney outcomes, the report."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from benchmark_modules import benchmark_fixture

paper = benchmark_fixture("paper_statistics")


def _runs(path: Path, rows: list[tuple[str, str, int, float | str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "status", "problem_label", "method", "seed", "rel_l2", "wall_s"])
        writer.writerows([("x", status, p, m, s, v, 100) for p, m, s, v, status in rows])


def test_five_clearly_better_seeds_win_and_overlapping_seeds_tie(paper, tmp_path) -> None:
    rows = []
    for seed in range(5):
        rows.append(("helmholtz", "autobalance", seed, 0.01 * (1 + seed / 10), "ok"))
        rows.append(("helmholtz", "adam", seed, 0.1 * (1 + seed / 10), "ok"))
        # interleaved with the paper rule's errors: no significant difference
        rows.append(("helmholtz", "multiadam", seed, 0.01 * (1.05 + seed / 10), "ok"))
    rows.append(("helmholtz", "mtadam", 0, "", "failed"))
    _runs(tmp_path / "paper-5-seeds/runs.csv", rows)
    merged = paper.merge_run_tables(tmp_path, paper.SOURCES)
    text, records = paper.report(merged)
    by_method = {r["method"]: r for r in records}
    # 5 vs 5, all of one sample below the other: the smallest two-sided p, 2 / C(10, 5)
    assert by_method["adam"]["paper_p"] == pytest.approx(2 / 252)
    assert by_method["adam"]["paper_outcome"] == "win"
    assert by_method["adam"]["paper_ratio"] == pytest.approx(0.1)
    assert by_method["multiadam"]["paper_outcome"] == "tie"
    # paired: every seed better, yet 5 pairs cannot go below 2 / 2^5
    assert by_method["adam"]["paper_wilcoxon_p"] == pytest.approx(0.0625)
    assert by_method["autobalance"]["mean"] == pytest.approx(0.012)
    assert by_method["autobalance"]["std"] == pytest.approx(0.01 * 0.158113883, rel=1e-6)
    assert "1 wins, 1 ties, 0 losses" in text
    assert "helmholtz/mtadam/seed 0 (failed)" in text
    # every problem: Adam and the paper's rule over 5 seeds, the issue 15 rule never ran
    assert (
        "| helmholtz | 1.20e-01 ± 1.6e-02 (5) | 1.20e-02 ± 1.6e-03 (5) | – "
        "| 0.10, win (0.008) | – |" in text
    )
    # ranks by median: autobalance (0.012), multiadam (0.0125), adam (0.12)
    ranks = [
        line.split("|")[1].strip()
        for line in text.splitlines()
        if line.startswith("| ") and "`" in line
    ]
    assert ranks[:3] == ["1", "2", "3"]
    assert "| `autobalance` | 1.20e-02 ± 1.6e-03 (5; #1) | – | – |" in text  # the wide table
    paper.write_csv(tmp_path / "statistics.csv", records)
    with (tmp_path / "statistics.csv").open(newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert [r["method"] for r in table] == ["autobalance", "multiadam", "adam"]
    assert float(table[2]["seed4"]) == pytest.approx(0.14)
