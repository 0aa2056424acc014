"""``benchmarks/postcombine_evaluation.py``: sources merged, reproductions checked, target ratio."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from benchmark_modules import benchmark_fixture

evaluation = benchmark_fixture("postcombine_evaluation")


def _write(path: Path, rows: list[tuple[str, str, int, float]], *, runs_table: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if runs_table:
            writer.writerow(["path", "status", "problem_label", "method", "seed", "rel_l2"])
            writer.writerows([("x", "ok", p, m, s, v) for p, m, s, v in rows])
            writer.writerow(("y", "failed", "toy", "adam", 9, ""))  # skipped: not ok
        else:
            writer.writerow(["problem", "method", "seed", "steps", "rel_l2"])
            writer.writerows([(p, m, s, 15000, v) for p, m, s, v in rows])


def test_sources_are_merged_and_a_run_in_two_sweeps_is_checked(evaluation, tmp_path) -> None:
    _write(
        tmp_path / "default-budget/runs.csv",
        [("toy", "adam", 0, 0.2), ("toy", "autobalance", 0, 0.1)],
        runs_table=True,
    )
    _write(
        tmp_path / "postcombine-eval/runs.csv",
        [
            ("toy", "adam", 0, 0.2000001),  # reproduced within 5e-6
            ("toy", "autobalance", 0, 0.12),  # differs
            ("toy", "adam", 1, 0.4),
            ("toy", "autobalance", 1, 0.3),
            ("toy", "autobalance-consensus-mean", 0, 0.11),
            ("toy", "autobalance-consensus-mean", 1, 0.2),
        ],
        runs_table=True,
    )
    errors, checks = evaluation.collect(tmp_path)
    assert errors[("toy", "adam")] == {0: 0.2000001, 1: 0.4}
    assert errors[("toy", "autobalance")] == {0: 0.12, 1: 0.3}
    assert sum(c.endswith("reproduced") for c in checks) == 1
    assert any("toy/autobalance/seed 0" in c and "DIFFERS" in c for c in checks)
    assert any(c.endswith("missing") for c in checks)  # the other sources do not exist here
    assert ("toy", "adam") in errors and 9 not in errors[("toy", "adam")]

    lines, records = evaluation.table(errors)
    # new mean 0.155; min(Adam 0.30000005, paper 0.21) = 0.21 -> 0.738, which meets <= 1.1
    assert records[0]["problem"] == "toy"
    assert float(records[0]["ratio_to_min_adam_paper"]) == pytest.approx(0.155 / 0.21, rel=1e-3)
    assert records[0]["meets"] == "yes"
    assert "| toy |" in lines[2] and "0.74" in lines[2]


def test_ratio_outcomes_use_the_margin_both_ways(evaluation) -> None:
    new = {0: 1.0, 1: 1.0}
    assert evaluation._outcome(new, {0: 1.2, 1: 1.2})[0] == "win"  # 1/1.2 < 1/1.1
    assert evaluation._outcome(new, {0: 1.05, 1: 1.05})[0] == "tie"
    assert evaluation._outcome(new, {0: 0.8, 1: 0.8})[0] == "loss"  # 1.25 > 1.1
    assert evaluation._outcome(new, {}) == ("–", "–")
    # two shared seeds: the paired test runs, and with n = 2 it cannot be significant
    assert evaluation._outcome(new, {0: 2.0, 1: 2.0})[1].startswith("tie")
