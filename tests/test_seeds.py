"""Seeds batched in one process (autobalance.seeds): equal to separate runs, per-seed files,
honest wall-clock, clear refusals."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from autobalance import methods, nets, problems
from autobalance.experiments.config import RunConfig
from autobalance.experiments.runner import train
from autobalance.experiments.training_run import TrainingRun
from autobalance.seeds import (
    UNSUPPORTED_METHODS,
    SeedBatchingError,
    StackedModel,
    carrier,
    check_batchable,
    interleave,
    per_seed_losses,
    train_seeds,
)

SMALL = {"n_residual": 32, "n_boundary": 16, "n_eval": 11}
#: Methods whose seeds take one fused optimizer step (autobalance.seeds.fused).
FUSED = {"adam", "adamw", "autobalance", "multiadam"}
NET = {"width": 8, "depth": 2}


@pytest.fixture(autouse=True)
def _no_solution_figure(monkeypatch: pytest.MonkeyPatch) -> None:
    """The figure (matplotlib, seconds per run) is the same code in both paths: skipped."""
    monkeypatch.setattr(TrainingRun, "write_plot", lambda self: None)


def _configs(method: str, seeds: int = 3, **kw: object) -> list[RunConfig]:
    base: dict[str, object] = {
        "problem": "helmholtz",
        "problem_params": SMALL,
        "net_params": NET,
        "method": method,
        "steps": 50,
        "dtype": "float64",
        "eval_every": 25,
        "log_every": 10,
        **kw,
    }
    return [RunConfig(seed=s, **base) for s in range(seeds)]  # type: ignore[arg-type]


def _model(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path / "checkpoint.pt", weights_only=True)["model"]


def _csv(path: Path) -> list[list[str]]:
    return [line.split(",") for line in path.read_text().splitlines()]


# A method of each family: single optimizer, multi-state, aggregator (Gram), weighting.
@pytest.mark.parametrize("method", ["adam", "autobalance", "multiadam", "upgrad", "dwa"])
def test_batched_seeds_equal_separate_runs(tmp_path: Path, method: str) -> None:
    configs = _configs(method)
    batched = train_seeds(configs, [tmp_path / f"b{c.seed}" for c in configs], progress=False)
    for config, metrics in zip(configs, batched, strict=True):
        alone = train(config, tmp_path / f"s{config.seed}", progress=False)
        assert metrics["status"] == alone["status"] == "ok"
        assert metrics["steps"] == alone["steps"] == 50
        assert metrics["backward_passes"] == alone["backward_passes"]
        a, b = _model(tmp_path / f"b{config.seed}"), _model(tmp_path / f"s{config.seed}")
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-9, atol=1e-11)
        assert metrics["rel_l2"] == pytest.approx(alone["rel_l2"], rel=1e-8)
        for name, value in alone["final_losses"].items():
            assert metrics["final_losses"][name] == pytest.approx(value, rel=1e-8)
        # the same files, the same history columns and rows
        rows_b, rows_s = (
            _csv(tmp_path / f"b{config.seed}/history.csv"),
            _csv(tmp_path / f"s{config.seed}/history.csv"),
        )
        assert rows_b[0] == rows_s[0] and len(rows_b) == len(rows_s)
        for row_b, row_s in zip(rows_b[1:], rows_s[1:], strict=True):  # statistics included
            assert [float(v) for v in row_b] == pytest.approx(
                [float(v) for v in row_s], rel=1e-7, abs=1e-12, nan_ok=True
            )
        # one fused optimizer for all seeds where the method is elementwise (seeds.fused); it
        # computes the statistics of the logged steps
        assert metrics["seed_batch"]["fused_optimizer"] is (method in FUSED)
        if method in ("autobalance", "multiadam"):  # fused multi-state methods
            column = rows_b[0].index("residual_grad_norm")
            assert all(float(row[column]) > 0 for row in rows_b[1:])
        assert {p.name for p in (tmp_path / f"b{config.seed}").iterdir()} == {
            p.name for p in (tmp_path / f"s{config.seed}").iterdir()
        }
    # the seeds differ from one another (each its own initialisation and points)
    assert batched[0]["rel_l2"] != batched[1]["rel_l2"]


def test_per_seed_losses_equal_separate_losses_on_every_problem() -> None:
    for name in problems.names():
        if name == "poisson-inverse":
            continue
        problem = problems.create(name)
        models, batches = [], []
        for seed in range(3):
            torch.manual_seed(seed)
            models.append(nets.create("mlp", problem.in_dim, problem.out_dim, width=6, depth=2))
            models[-1].double()
            gen = torch.Generator().manual_seed(seed)
            batches.append(problem.sample(gen, "cpu", torch.float64))
        stacked = StackedModel(models)
        named = problem.losses(stacked, interleave(batches))
        per_seed = per_seed_losses(named.pointwise, 3)
        for s in range(3):
            alone = problem.losses(models[s], batches[s])
            for loss, value in alone.items():
                assert float(per_seed[loss][s].detach()) == pytest.approx(
                    float(value.detach()), rel=1e-10
                ), (
                    name,
                    loss,
                )


@pytest.mark.parametrize(
    ("net", "params"),
    [
        ("modified_mlp", {"width": 6, "depth": 2}),
        ("pirate", {}),
        ("mlp", {"width": 6, "depth": 2, "fourier_features": 4, "rwf": True}),
    ],
)
def test_stacked_model_matches_each_network_and_its_gradients(net: str, params: dict) -> None:
    models = []
    for seed in range(2):
        torch.manual_seed(seed)
        models.append(nets.create(net, 2, 1, **params).double())
    stacked = StackedModel(models)
    assert not stacked.uses_bmm
    x = [torch.rand(5, 2, dtype=torch.float64) for _ in range(2)]
    out = stacked(interleave([{"x": x[0]}, {"x": x[1]}])["x"])
    loss = out.pow(2).reshape(5, 2).sum(0)
    grads = torch.autograd.grad(loss.sum(), stacked.leaves, allow_unused=True)
    for s, model in enumerate(models):
        torch.testing.assert_close(out[s::2], model(x[s]))
        own = torch.autograd.grad(model(x[s]).pow(2).sum(), list(model.parameters()))
        for g_stacked, g_own in zip(grads, own, strict=True):
            torch.testing.assert_close(g_stacked[s], g_own)


def test_plain_mlp_uses_batched_matrix_products() -> None:
    models = [nets.create("mlp", 2, 1, width=4, depth=2) for _ in range(2)]
    assert StackedModel(models).uses_bmm


@settings(max_examples=25, deadline=None)
@given(
    weight=st.floats(-3, 3, allow_nan=False),
    value=st.floats(-1e3, 1e3, allow_nan=False),
)
def test_carrier_has_the_given_value_and_gradient(weight: float, value: float) -> None:
    p, q, unused = (torch.randn(3, requires_grad=True, dtype=torch.float64) for _ in range(3))
    gp, gq = torch.randn(3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    loss = carrier(torch.tensor(value, dtype=torch.float64), [p, q, unused], [gp, gq, None])
    assert float(loss) == value
    grads = torch.autograd.grad(weight * loss, [p, q, unused], allow_unused=True)
    torch.testing.assert_close(grads[0], weight * gp)
    torch.testing.assert_close(grads[1], weight * gq)
    assert grads[2] is None


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"method": "ntk"}, "ntk"),
        ({"variants": [{"name": "rba"}]}, "rba"),
        ({"problem": "poisson-inverse", "problem_params": {}}, "poisson-inverse"),
        ({"method": "soap"}, "soap"),
        ({"method": "autobalance", "method_params": {"base": "soap"}}, "base 'soap'"),
        ({"phases": ["lbfgs:iters=5"]}, "training phases"),
    ],
)
def test_unsupported_runs_are_refused_by_name(change: dict, named: str) -> None:
    configs = [RunConfig.from_dict({**c.to_dict(), **change}) for c in _configs("adam", 2)]
    with pytest.raises(SeedBatchingError, match=named) as info:
        check_batchable(configs)
    assert "run the seeds separately" in str(info.value)


def test_runs_differing_in_more_than_the_seed_are_refused(tmp_path: Path) -> None:
    configs = [*_configs("adam", 1), *_configs("adam", 2, lr=1e-2)[1:]]
    with pytest.raises(SeedBatchingError, match="lr"):
        train_seeds(configs, [tmp_path / "a", tmp_path / "b"], progress=False)
    assert not (tmp_path / "a").exists()


def test_a_diverging_seed_fails_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = TrainingRun.next_batch

    def poisoned(self: TrainingRun) -> dict[str, torch.Tensor]:
        batch = original(self)
        if self.config.seed == 1 and self.progress.step == 3:
            return {k: torch.full_like(v, math.nan) for k, v in batch.items()}
        return batch

    monkeypatch.setattr(TrainingRun, "next_batch", poisoned)
    configs = _configs("autobalance", steps=8)
    metrics = train_seeds(configs, [tmp_path / str(c.seed) for c in configs], progress=False)
    assert [m["status"] for m in metrics] == ["ok", "failed", "ok"]
    assert metrics[1]["error"]["step"] == 4 and metrics[1]["steps"] == 3
    assert metrics[0]["steps"] == metrics[2]["steps"] == 8


def test_resumed_batch_ends_as_an_uninterrupted_one(tmp_path: Path) -> None:
    whole = train_seeds(
        _configs("autobalance", 2, steps=12), [tmp_path / "w0", tmp_path / "w1"], progress=False
    )
    dirs = [tmp_path / "r0", tmp_path / "r1"]
    train_seeds(_configs("autobalance", 2, steps=5), dirs, progress=False)
    resumed = train_seeds(_configs("autobalance", 2, steps=12), dirs, progress=False, resume=True)
    for s in range(2):
        a, b = _model(tmp_path / f"w{s}"), _model(dirs[s])
        for key in a:
            assert torch.equal(a[key], b[key])
        assert resumed[s]["rel_l2"] == whole[s]["rel_l2"]
    # one seed of a batch resumes alone as an ordinary run
    alone = train(_configs("autobalance", 2, steps=15)[1], dirs[1], progress=False, resume=True)
    assert alone["status"] == "ok" and alone["steps"] == 15


def test_wall_clock_is_shared_and_said(tmp_path: Path) -> None:
    configs = _configs("adam", 2, steps=10)
    metrics = train_seeds(configs, [tmp_path / "0", tmp_path / "1"], progress=False)
    for m in metrics:
        assert m["seed_batch"]["seeds"] == 2
        # each seed's training time is its half of the batched steps
        assert m["wall_s"] == pytest.approx(metrics[0]["wall_s"], rel=1e-12)
        assert m["wall_s"] < m["elapsed_s"]
        saved = json.loads((tmp_path / "0" / "metrics.json").read_text())
        assert saved["seed_batch"]["seeds"] == 2
    # a time budget counts each seed's share: the seeds stop together, at the budget
    budget = {"kind": "time", "value": metrics[0]["wall_s"] / 2}
    timed = train_seeds(
        _configs("adam", 2, steps=10_000, budget=budget),
        [tmp_path / "t0", tmp_path / "t1"],
        progress=False,
    )
    assert timed[0]["steps"] == timed[1]["steps"] < 10_000
    assert all(budget["value"] <= m["wall_s"] for m in timed)


def test_sweep_batches_seeds_into_the_same_run_directories(tmp_path: Path) -> None:
    from autobalance.experiments.sweep import RunSpec, run_sweep

    specs = [RunSpec(c, group="g") for c in _configs("autobalance", 3, steps=6)]
    on = run_sweep(specs, tmp_path / "on", stream=None, batch_seeds="on")
    off = run_sweep(specs, tmp_path / "off", stream=None, batch_seeds="off")
    assert sorted(on.metrics) == sorted(off.metrics) and len(on.metrics) == 3
    for name, metrics in on.metrics.items():
        assert metrics["seed_batch"]["seeds"] == 3
        assert "seed_batch" not in off.metrics[name]
        assert metrics["rel_l2"] == pytest.approx(off.metrics[name]["rel_l2"], rel=1e-8)
    again = run_sweep(specs, tmp_path / "on", stream=None, batch_seeds="on")
    assert sorted(again.skipped) == sorted(on.metrics) and not again.executed


@pytest.mark.parametrize(
    "method", [m for m in methods.names() if m not in UNSUPPORTED_METHODS and m != "adam"]
)
def test_every_supported_method_takes_its_separate_runs_steps(tmp_path: Path, method: str) -> None:
    params = dict(methods.spec(method).example_params)
    configs = _configs(method, 2, steps=4, eval_every=4, method_params=params)
    batched = train_seeds(configs, [tmp_path / "b0", tmp_path / "b1"], progress=False)
    for config, metrics in zip(configs, batched, strict=True):
        alone = train(config, tmp_path / f"s{config.seed}", progress=False)
        assert metrics["status"] == alone["status"] == "ok"
        a, b = _model(tmp_path / f"b{config.seed}"), _model(tmp_path / f"s{config.seed}")
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-9, atol=1e-11)


def test_cli_compare_batches_the_seeds_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from autobalance.cli.main import main

    argv = ["compare", "helmholtz", "--methods", "adam,autobalance,ntk", "--seeds", "2"]
    argv += [arg for k, v in SMALL.items() for arg in ("--param", f"{k}={v}")]
    argv += ["--budget", "backward=12", "--executor", "inline", "--batch-seeds", "on"]
    argv += ["--set", "net_params.width=6", "--set", "net_params.depth=2"]
    assert main([*argv, "--out", str(tmp_path), "--no-report"]) == 0
    err = capsys.readouterr().err
    assert "helmholtz/adam ×2 seeds: batched in one process" in err
    assert "helmholtz/ntk ×2 seeds: separate runs (method 'ntk' is not supported" in err
    runs = [json.loads(p.read_text()) for p in tmp_path.glob("*/metrics.json")]
    assert len(runs) == 6
    # the backward budget counts each seed's own passes, batched or not
    counted = {(r["method"], r["steps"], r["backward_passes"], "seed_batch" in r) for r in runs}
    assert {c for c in counted if c[0] != "ntk"} == {
        ("adam", 12, 12, True),
        ("autobalance", 6, 12, True),
    }
    assert all(r["status"] == "ok" and "seed_batch" not in r for r in runs if r["method"] == "ntk")


@pytest.mark.parametrize("method", ["adamw", "autobalance"])
def test_fused_state_is_written_back_at_checkpoints_and_evaluations(
    tmp_path: Path, method: str
) -> None:
    # checkpoints every 7 steps and evaluations every 5 write the fused state back mid-run; the
    # runs continue fused and end where separate runs end, every evaluation included
    configs = _configs(method, 2, steps=20, checkpoint_every=7, eval_every=5)
    batched = train_seeds(configs, [tmp_path / "b0", tmp_path / "b1"], progress=False)
    for config, metrics in zip(configs, batched, strict=True):
        assert metrics["seed_batch"]["fused_optimizer"] is True
        alone = train(config, tmp_path / f"s{config.seed}", progress=False)
        a = torch.load(tmp_path / f"b{config.seed}/checkpoint.pt", weights_only=True)
        b = torch.load(tmp_path / f"s{config.seed}/checkpoint.pt", weights_only=True)
        for key in a["model"]:
            torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-9, atol=1e-11)
        saved_b, saved_s = a["balancer"], b["balancer"]
        state_b = saved_b.get("optimizer", saved_b)["state"]
        state_s = saved_s.get("optimizer", saved_s)["state"]
        assert state_b.keys() == state_s.keys()
        for i in state_s:
            for key, value in state_s[i].items():
                torch.testing.assert_close(state_b[i][key], value, rtol=1e-9, atol=1e-13)
        evals_b = _csv(tmp_path / f"b{config.seed}/eval.csv")
        evals_s = _csv(tmp_path / f"s{config.seed}/eval.csv")
        assert [r[0] for r in evals_b] == [r[0] for r in evals_s]  # steps 0, 5, 10, 15, 20
        assert metrics["rel_l2"] == pytest.approx(alone["rel_l2"], rel=1e-8)


def test_auto_batches_by_the_predicted_speedup_and_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from autobalance.experiments.executors import InlineExecutor, LocalExecutor
    from autobalance.seeds import probe, sweep_jobs

    # eq. (4): 8 · (2000 · 12.5 ms + 2.5 s) / (2000 · 100 ms + 2.5 s) = 220 / 202.5
    assert probe.run_speedup(8, 0.1, 0.0125, 2000, 2.5) == pytest.approx(220 / 202.5)
    assert probe.run_speedup(4, 0.03, 0.01, 100, 0.0) == pytest.approx(4 / 3)
    monkeypatch.setattr(sweep_jobs, "step_times", lambda configs: (0.1, 0.0135))
    jobs = [
        {"name": f"helmholtz-adam-seed{c.seed}", "config": c.to_dict(), "run_dir": "x"}
        for c in _configs("adam", 8, steps=2000)
    ]
    lines: list[str] = []
    # 1.08× from the steps alone: separate runs in one process...
    planned = sweep_jobs.plan_seed_groups(jobs, "auto", lines.append, InlineExecutor())
    assert len(planned) == 8 and "separate runs" in lines[-1] and "1.08× predicted" in lines[-1]
    # ...batched when every separate run would start its own process (2.5 s each): 1.17×
    local = LocalExecutor(2)
    planned = sweep_jobs.plan_seed_groups(jobs, "auto", lines.append, local)
    assert len(planned) == 1 and planned[0]["seed_group"] == jobs
    assert "batched in one process" in lines[-1] and "1.17× predicted" in lines[-1]
    assert "2.5 s per run's process start" in lines[-1]


def test_step_times_by_size_measures_every_size_from_one_set_of_runs() -> None:
    from autobalance.seeds.probe import step_times_by_size

    configs = _configs("autobalance", 3, dtype="float32")
    batched, separate = step_times_by_size(configs, [1, 3], rounds=2, warmup=1)
    assert sorted(batched) == [1, 3] and separate > 0
    assert all(t > 0 for t in batched.values())
    with pytest.raises(ValueError, match="between 1 and 3"):
        step_times_by_size(configs, [4])
