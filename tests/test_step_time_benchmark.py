"""``benchmarks/step_time.py``: paired interleaving, paired ratios, and one short real run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmark_modules import benchmark_fixture

step_time = benchmark_fixture("step_time")


def test_interleaved_takes_the_ith_calls_together_in_a_rotating_order(step_time) -> None:
    calls: list[str] = []
    cases = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    ticks = iter(range(10_000))
    samples = step_time.interleaved(
        cases, rounds=2, steps=2, warmup=1, device=torch.device("cpu"), clock=lambda: next(ticks)
    )
    assert calls[:3] == ["a", "b", "c"]  # warm-up
    assert calls[3:] == list("abcbcacababc")
    assert {name: len(s) for name, s in samples.items()} == {"a": 4, "b": 4, "c": 4}
    assert all(t == 1 for s in samples.values() for t in s)  # one tick per call


def test_ratio_is_the_median_of_the_paired_ratios(step_time) -> None:
    # Paired ratios 2, 3, 0.5: median 2 (the ratio of the medians would be 4/2 = 2 as well, but
    # here the pairs matter: 9/3 and 1/2 are taken together).
    assert step_time.ratio([4.0, 9.0, 1.0], [2.0, 3.0, 2.0]) == 2.0
    assert step_time.ratio([1.0, 1.0, 4.0, 4.0], [1.0, 1.0, 1.0, 1.0]) == 2.5


def test_a_short_run_reports_every_method_and_the_gradient_table(
    step_time, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "step_time.json"
    argv = ["--problems", "helmholtz", "--methods", "autobalance", "upgrad", "--rounds", "1"]
    argv += ["--steps", "2", "--warmup", "1", "--batched", "--clock", "cpu", "--json", str(out)]
    assert step_time.main(argv) == 0
    (result,) = json.loads(out.read_text())["results"]
    assert result["problem"] == "helmholtz" and result["losses"] == 2
    assert set(result["methods"]) == {"adam", "autobalance", "upgrad"}
    assert result["methods"]["adam"]["ratio"] == 1.0
    assert all(m["median_ms"] > 0 and m["ratio"] > 0 for m in result["methods"].values())
    gradients = result["gradients"]
    assert gradients["forward"] < gradients["sum backward"]
    assert gradients["per-loss / sum backward"] > 0
    assert gradients["batched VJP / sum backward"] > 0
    assert "helmholtz" in capsys.readouterr().out


def test_cpu_clock_is_refused_with_several_threads(step_time) -> None:
    with pytest.raises(SystemExit):
        step_time.main(["--clock", "cpu", "--threads", "2", "--problems", "helmholtz"])
    assert torch.get_num_threads() == 1  # refused before any setting changed


def test_graph_cost_counts_a_shared_forward_pass_once_in_the_sum(step_time) -> None:
    """Helmholtz's losses come from separate forward passes (Σ = ∪); Kovasznay's three PDE terms
    share one, so K separate backward passes do more nodes and FLOPs than one of the sum."""
    cpu = torch.device("cpu")
    separate = step_time.graph_cost(step_time.make_setup("helmholtz", 8, 2, cpu))
    assert separate["nodes per-loss"] == separate["nodes sum"] > 0
    assert separate["flops ratio"] == 1.0
    shared = step_time.graph_cost(step_time.make_setup("kovasznay", 8, 2, cpu))
    assert shared["nodes per-loss"] > shared["nodes sum"]
    assert shared["flops per-loss"] > shared["flops sum"] > 0


def test_all_methods_are_those_that_take_per_loss_gradients(step_time) -> None:
    found = step_time.multi_gradient_methods(
        step_time.make_setup("helmholtz", 8, 2, torch.device("cpu"))
    )
    assert {"autobalance", "multiadam", "mtadam", "upgrad", "pcgrad", "sum"} <= set(found)
    assert not {"adam", "m-config", "dwa", "ew"} & set(found)  # one backward pass a step


def test_all_methods_leave_out_a_method_the_losses_do_not_fit(
    step_time, capsys: pytest.CaptureFixture[str]
) -> None:
    """lr-annealing needs a loss named like a PDE residual; Kovasznay has none."""
    found = step_time.multi_gradient_methods(
        step_time.make_setup("kovasznay", 8, 2, torch.device("cpu"))
    )
    assert "lr-annealing" not in found and "autobalance" in found
    assert "lr-annealing left out on kovasznay" in capsys.readouterr().err


def test_a_timed_step_asks_for_statistics_as_the_runner_does(step_time, monkeypatch) -> None:
    asked: list[bool] = []
    monkeypatch.setattr(step_time, "request_statistics", lambda _, wanted: asked.append(wanted))
    setup = step_time.make_setup("helmholtz", 8, 2, torch.device("cpu"))
    logged_every_3 = step_time.training_step(setup, "autobalance", 3)
    for _ in range(6):
        logged_every_3()
    assert asked == [True, False, True, False, False, True]  # steps 1, 3, 6 are logged
    asked.clear()
    every_step = step_time.training_step(setup, "autobalance", 0)
    every_step()
    every_step()
    assert asked == [True, True]
