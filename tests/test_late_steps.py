"""``benchmarks/late_steps.py``: the last steps of each run, per method."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmark_modules import benchmark_fixture

late_steps = benchmark_fixture("late_steps")


def _run(root: Path, name: str, method: str, seed: int, rel_l2: float, rows: list[str]) -> None:
    run = root / name
    run.mkdir(parents=True)
    config = {"method": method, "problem": "helmholtz", "seed": seed, "steps": 30, "lr": 1e-3}
    (run / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (run / "metrics.json").write_text(json.dumps({"rel_l2": rel_l2}), encoding="utf-8")
    header = "step,lr,total,residual,boundary,update_norm\n"
    (run / "history.csv").write_text(header + "\n".join(rows) + "\n", encoding="utf-8")


def test_quantile_interpolates_between_order_statistics(late_steps) -> None:
    assert late_steps.quantile([4.0, 1.0, 3.0, 2.0, 5.0], 0.5) == 3.0
    assert late_steps.quantile([1.0, 2.0], 0.9) == pytest.approx(1.9)
    assert late_steps.quantile([7.0], 0.1) == 7.0


def test_only_the_window_is_read_and_methods_are_averaged_over_seeds(late_steps, tmp_path) -> None:
    # steps 10, 20, 30; a window of 15 keeps 20 and 30 (step > 30 - 15)
    _run(
        tmp_path,
        "a0",
        "rule",
        0,
        0.02,
        ["10,0,0,9,9,9", "20,0,0,1,1e-3,2e-3", "30,0,0,3,4e-3,4e-3"],
    )
    _run(
        tmp_path,
        "a1",
        "rule",
        1,
        0.04,
        ["10,0,0,9,9,9", "20,0,0,2,2e-3,1e-3", "30,0,0,2,2e-3,1e-3"],
    )
    _run(tmp_path, "b0", "other", 0, 0.01, ["10,0,0,1,1,1", "20,0,0,1,1,1", "30,0,0,1,1,1"])
    _run(tmp_path / "elsewhere", "c0", "rule", 2, 0.5, ["30,0,0,1,1,1"])
    columns = ["update_norm", "residual", "boundary"]
    runs = late_steps.collect([tmp_path], "helmholtz", columns, 15)
    assert len(runs) == 4
    table = late_steps.by_method([r for r in runs if r["seed"] < 2], columns)
    assert [row["method"] for row in table] == ["other", "rule"]  # by mean rel. L2
    rule = table[1]
    assert rule["seeds"] == "0,1" and rule["rel_l2"] == pytest.approx(0.03)
    # medians over the window: seed 0 (2e-3 + 4e-3)/2 = 3e-3, seed 1 1e-3; their mean 2e-3
    assert rule["update_norm"] == pytest.approx(2e-3)
    assert rule["residual"] == pytest.approx((2.0 + 2.0) / 2)
    # q90/q10 of seed 0's boundary (1e-3, 4e-3): 3.7e-3 / 1.3e-3; seed 1's: 1; median of the two
    assert rule["boundary_spread"] == pytest.approx((3.7 / 1.3 + 1.0) / 2)
    text = late_steps.markdown(table, columns, 15)
    assert "| `rule` | 0,1 | 3.00e-02 | 2.00e-03 | 2.00e+00 |" in text
    assert math.isnan(late_steps.by_method(runs, ["missing"])[0]["missing"])
