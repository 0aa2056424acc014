"""``benchmarks/ablation_answers.py``: run directories to a table, and the five answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark_modules import benchmark_fixture

ablation = benchmark_fixture("ablation_answers")


def _run(root: Path, name: str, method: str, params: dict, lr: float, seed: int, err: float):
    run = root / name
    run.mkdir(parents=True)
    config = {"method": method, "method_params": params, "lr": lr, "seed": seed}
    status = "ok" if err == err else "failed"
    metrics = {"status": status, "rel_l2": None if status != "ok" else err, "wall_s": 20.0}
    metrics |= {"step_ms": 6.0, "backward_passes": 6000 if method == "autobalance" else 3000}
    (run / "config.json").write_text(json.dumps(config))
    (run / "metrics.json").write_text(json.dumps(metrics))


def _sweep(root: Path) -> None:
    """sum best at 1e-3, mean best at 3e-3 (K = 2: mean at 2·lr is sum at lr); Adam worse."""
    for seed in range(5):
        jitter = 1 + seed / 100
        for lr, sum_err, mean_err in ((1e-3, 0.1, 0.5), (3e-3, 0.4, 0.11)):
            _run(
                root, f"s{lr}-{seed}", "autobalance", {"combine": "sum"}, lr, seed, sum_err * jitter
            )
            _run(
                root,
                f"m{lr}-{seed}",
                "autobalance",
                {"combine": "mean"},
                lr,
                seed,
                mean_err * jitter,
            )
        # the default spelled out above and left out here: the same run twice, values agree
        _run(root, f"d-{seed}", "autobalance", {}, 1e-3, seed, 0.1 * jitter)
        _run(root, f"b-{seed}", "autobalance", {"base": "adam"}, 1e-3, seed, 0.2 * jitter)
        _run(root, f"g-{seed}", "autobalance", {"groups": {"all": ["r", "b"]}}, 1e-3, seed, 0.3)
        _run(root, f"beta-{seed}", "autobalance", {"betas": [0.9, 0.99]}, 1e-3, seed, 0.3 * jitter)
        _run(root, f"adam-{seed}", "adam", {}, 1e-3, seed, 1.0 * jitter)
        _run(root, f"adam3-{seed}", "adam", {}, 3e-3, seed, 0.9 * jitter)
    _run(root, "nan", "adam", {}, 1e-2, 0, float("nan"))


def test_collect_spells_out_the_defaults(ablation, tmp_path: Path) -> None:
    _sweep(tmp_path / "sweep")
    rows = {
        (r["method"], r["combine"], r["base"], r["states"], r["betas"], r["lr"], r["seed"]): r
        for r in ablation.collect(tmp_path / "sweep")
    }
    default = rows[("autobalance", "sum", "adamw", "per-term", "0.9/0.999", "0.001", "0")]
    assert default["status"] == "ok" and default["backward_passes"] == "6000"
    assert ("autobalance", "sum", "adamw", "grouped", "0.9/0.999", "0.001", "1") in rows
    assert ("autobalance", "sum", "adamw", "per-term", "0.9/0.99", "0.001", "2") in rows
    assert ("adam", "", "", "", "", "0.01", "0") in rows  # the failed run is kept


def test_answers_compare_sum_and_mean_each_at_its_best_lr(ablation, tmp_path: Path) -> None:
    _sweep(tmp_path / "sweep")
    ablation.write_table(tmp_path / "ablations.csv", ablation.collect(tmp_path / "sweep"))
    rows = ablation.read_table(tmp_path / "ablations.csv")
    lines, curves = ablation.answers(rows)
    text = "\n".join(lines)
    # sum's best is 1e-3 (mean 0.102), mean's is 3e-3 (0.1122): ratio 0.909, every sum seed
    # below every mean seed -> Mann–Whitney p = 2/252, a win
    assert "Best: sum at lr 0.001 (0.102 ± 0.0016), mean at lr 0.003 (0.112 ± 0.0017)" in text
    assert "sum ÷ mean: ratio 0.91, win (p = 0.008)" in text
    assert "AdamW base ÷ Adam base: ratio 0.50, win (p = 0.008)" in text
    assert "per-term ÷ grouped: ratio 0.34, win (p = 0.008)" in text
    assert "Spread: worst (0.9/0.99) ÷ best (0.9/0.999) = 3.00" in text
    assert "Each at its best lr: AutoBalance 0.001 (0.102 ± 0.0016), Adam 0.003" in text
    assert "Runs made twice that differ" not in text  # the two spellings of the default agree
    assert "adam" in curves["lr"] and set(curves["lr"]["adam"]) == {"0.001", "0.003"}
    assert "- Failed runs: method=adam, lr=0.01, seed=0: failed." in text
    ablation.figures(curves, tmp_path)
    assert (tmp_path / "lr-sensitivity.png").stat().st_size > 1000
    assert (tmp_path / "beta-sensitivity.png").stat().st_size > 1000
    assert (tmp_path / "sum-vs-mean.png").stat().st_size > 1000
    assert set(curves["combine"]["mean"]) == {"0.001", "0.003"}


def test_a_setting_run_twice_with_different_errors_is_reported(ablation) -> None:
    base = dict.fromkeys(ablation.COLUMNS, "")
    row = {**base, **ablation.DEFAULT, "lr": "0.001", "seed": "0", "status": "ok", "rel_l2": "0.1"}
    values, notes = ablation.sample([row, {**row, "rel_l2": "0.2"}], lr="0.001")
    assert values == {0: pytest.approx(0.2)}
    assert notes == ["seed 0: 0.1 vs 0.2 for one setting"]
