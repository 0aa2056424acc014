"""``benchmarks/trap_rate.py``: counts of trapped runs, Wilson intervals and Fisher's exact test."""

from __future__ import annotations

import json
import math

import pytest

from benchmark_modules import benchmark_fixture

trap_rate = benchmark_fixture("trap_rate")


def test_wilson_interval_closed_form(trap_rate) -> None:
    # no trapped run of 20: (0, z²/(n + z²)); half of 4: symmetric about 1/2
    low, high = trap_rate.wilson_interval(0, 20)
    z2 = trap_rate.Z95**2
    assert low == 0.0 and high == pytest.approx(z2 / (20 + z2), rel=1e-12)
    low, high = trap_rate.wilson_interval(2, 4)
    assert low + high == pytest.approx(1.0) and high == pytest.approx(0.8499, abs=1e-4)
    assert trap_rate.wilson_interval(0, 0) == (0.0, 1.0)


def test_fisher_exact_matches_hand_computed_tables(trap_rate) -> None:
    # [[3, 1], [1, 3]]: tables as likely or less: x = 0, 1, 3, 4 of C(4,x)C(4,4−x)/C(8,4)
    assert trap_rate.fisher_exact(3, 1, 1, 3) == pytest.approx((1 + 16 + 16 + 1) / 70)
    assert trap_rate.fisher_exact(13, 7, 2, 18) == pytest.approx(7.716281353656e-4, rel=1e-9)
    assert trap_rate.fisher_exact(5, 5, 5, 5) == pytest.approx(1.0)
    assert trap_rate.fisher_exact(4, 0, 0, 4) == pytest.approx(2 / 70)


def test_method_label_names_parameters_and_a_changed_lr(trap_rate) -> None:
    assert trap_rate.method_label({"method": "adam", "lr": 1e-3}) == "adam"
    assert trap_rate.method_label({"method": "adam", "lr": 3e-3}) == "adam(lr=0.003)"
    config = {"method": "autobalance", "method_params": {"combine": "balanced-concede"}}
    assert trap_rate.method_label(config) == "autobalance(combine=balanced-concede)"


def test_summary_of_run_directories(trap_rate, tmp_path) -> None:
    errors = {"adam": [0.01, 0.8, 0.9, 0.02], "autobalance": [0.02, 0.03, 0.5, float("nan")]}
    for method, values in errors.items():
        for seed, error in enumerate(values):
            run = tmp_path / "sweep" / f"{method}-{seed}"
            run.mkdir(parents=True)
            config = {"method": method, "problem": "p", "steps": 10, "seed": seed}
            (run / "config.json").write_text(json.dumps(config))
            status = "failed" if math.isnan(error) else "ok"
            metrics = {"status": status} | ({} if math.isnan(error) else {"rel_l2": error})
            (run / "metrics.json").write_text(json.dumps(metrics))
    rows = trap_rate.read_runs([tmp_path])
    assert len(rows) == 8
    summary = {s["method"]: s for s in trap_rate.summarize(rows, 0.3, "autobalance")}
    assert (summary["adam"]["trapped"], summary["adam"]["runs"]) == (2, 4)
    # the failed run counts as trapped, and apart
    assert (summary["autobalance"]["trapped"], summary["autobalance"]["failed"]) == (2, 1)
    assert summary["adam"]["fisher_p"] == pytest.approx(1.0)
    assert math.isnan(summary["autobalance"]["fisher_p"])
    assert "| `adam` | 2 / 4 | 0.50 |" in trap_rate.markdown(list(summary.values()), 0.3, "x")
