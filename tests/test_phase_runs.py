"""Training phases inside runs: run after the first-order steps, logged, counted, checkpointed
mid-phase and resumed bit for bit; configured by RunConfig.phases, config files and ``--then``."""

from __future__ import annotations

import csv
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch

from autobalance.cli.main import main
from autobalance.errors import ConfigError, UnknownComponentError
from autobalance.experiments import phase_runs, runner, train
from autobalance.experiments.interrupts import RunInterrupted
from autobalance.experiments.runner import load_checkpoint
from fault_tools import TINY_FLAGS, TINY_PROBLEM, assert_same_results, tiny

PHASES = ["lbfgs:iters=6,redraw_every=4", {"name": "ssbroyden", "iters": 5}, "gauss_newton:iters=3"]


@pytest.fixture(autouse=True)
def _no_solution_figure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner.TrainingRun, "write_plot", lambda self: None)


def _config(**overrides: Any) -> Any:
    fields = {"steps": 8, "dtype": "float64", "log_every": 1, "eval_every": 4, "phases": PHASES}
    return tiny(**{**fields, **overrides})


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_phases_follow_the_first_order_steps_and_are_logged_and_counted(tmp_path: Path) -> None:
    metrics = train(_config(), tmp_path, progress=False)
    assert metrics["status"] == "ok" and metrics["steps"] == 8
    assert [p["name"] for p in metrics["phases"]] == ["lbfgs", "ssbroyden", "gauss_newton"]
    assert [p["iterations"] for p in metrics["phases"]] == [6, 5, 3]
    assert metrics["phase_iterations"] == 14
    assert metrics["recipe"] == (
        "adam ×8 → lbfgs:iters=6,redraw_every=4 → ssbroyden:iters=5 → gauss_newton:iters=3"
    )
    gn = metrics["phases"][2]["evaluations"]
    assert gn["jacobians"] == 3 and gn["gradients"] == 0
    totals = metrics["evaluations"]
    assert totals["backward_passes"] == 8
    for key in ("functions", "gradients", "jacobians"):
        assert totals[key] == sum(p["evaluations"][key] for p in metrics["phases"])
    assert metrics["phases"][-1]["rel_l2"] == metrics["rel_l2"]
    phase_s = sum(p["wall_s"] for p in metrics["phases"])
    assert metrics["first_order_s"] + phase_s == pytest.approx(metrics["wall_s"])
    assert metrics["step_ms"] == pytest.approx(1e3 * metrics["first_order_s"] / 8)

    history = _rows(tmp_path / "history.csv")
    assert [r["step"] for r in history] == [str(s) for s in range(1, 23)]
    assert [r["phase"] for r in history] == ["adam"] * 8 + ["lbfgs"] * 6 + ["ssbroyden"] * 5 + [
        "gauss_newton"
    ] * 3
    assert history[8]["functions"] and not history[7]["functions"]  # counts on phase rows only
    assert int(history[13]["functions"]) == metrics["phases"][0]["evaluations"]["functions"]
    evals = _rows(tmp_path / "eval.csv")
    assert [(r["step"], r["phase"]) for r in evals] == [
        ("0", "adam"), ("4", "adam"), ("8", "adam"), ("12", "lbfgs"), ("14", "lbfgs"),
        ("16", "ssbroyden"), ("19", "ssbroyden"), ("20", "gauss_newton"), ("22", "gauss_newton"),
    ]  # fmt: skip
    saved = json.loads((tmp_path / "config.json").read_text())["phases"]
    assert saved == [
        {"name": "lbfgs", "iters": 6, "redraw_every": 4},
        {"name": "ssbroyden", "iters": 5},
        {"name": "gauss_newton", "iters": 3},
    ]


def test_tables_with_a_phase_column_read_as_numbers(tmp_path: Path) -> None:
    from autobalance.experiments.runs import read_table

    train(_config(phases=["lbfgs:iters=2"]), tmp_path, progress=False)
    history = read_table(tmp_path / "history.csv")
    assert "phase" not in history and list(history["step"]) == list(range(1, 11))
    assert list(read_table(tmp_path / "eval.csv")["step"]) == [0, 4, 8, 10]


def test_a_run_without_phases_writes_no_phase_columns(tmp_path: Path) -> None:
    metrics = train(tiny(steps=3), tmp_path, progress=False)
    assert "phases" not in metrics and "recipe" not in metrics
    header = (tmp_path / "history.csv").read_text().splitlines()[0]
    assert "phase" not in header and "phase" not in (tmp_path / "eval.csv").read_text()


def _signal_at_step(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """SIGTERM to this process when the phase row of run step ``step`` is logged."""
    real = phase_runs.phase_row

    def spy(at: int, *args: Any) -> dict[str, Any]:
        if at == step:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(at, *args)

    monkeypatch.setattr(phase_runs, "phase_row", spy)


@pytest.mark.parametrize("step", [11, 17, 21])  # in L-BFGS (after a redraw), SSBroyden, GN
def test_sigterm_mid_phase_checkpoints_and_resume_is_bit_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: int
) -> None:
    split, straight = tmp_path / "split", tmp_path / "straight"
    with monkeypatch.context() as patch:
        _signal_at_step(patch, step)
        with pytest.raises(RunInterrupted) as caught:
            train(_config(), split, progress=False)
    assert caught.value.step == step
    ckpt = load_checkpoint(split / "checkpoint.pt")
    assert ckpt["phases"]["state"] is not None  # mid-phase
    assert ckpt["step"] == 8 and not (split / "metrics.json").exists()
    train(_config(), split, progress=False, resume=True)
    train(_config(), straight, progress=False)
    assert_same_results(split, straight)
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (split, straight))
    for key in ("recipe", "evaluations", "phase_iterations"):
        assert a[key] == b[key]
    drop = ("wall_s",)
    assert [{k: v for k, v in p.items() if k not in drop} for p in a["phases"]] == [
        {k: v for k, v in p.items() if k not in drop} for p in b["phases"]
    ]


def test_checkpoints_mid_phase_every_n_iterations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[int, int | None]] = []
    write = runner.TrainingRun.write_checkpoint

    def spy(self: Any) -> None:
        state = self.phase_progress.state
        seen.append((self.phase_progress.index, state and state["iteration"]))
        write(self)

    monkeypatch.setattr(runner.TrainingRun, "write_checkpoint", spy)
    config = _config(steps=2, phases=["lbfgs:iters=5"], checkpoint_every=2)
    train(config, tmp_path, progress=False, checkpoint_seconds=None)
    # step 0, first-order step 2 (the last: no mid-run checkpoint), phase iterations 2 and 4,
    # the phase's end, the run's end
    assert seen == [(0, None), (0, 2), (0, 4), (1, None), (1, None)]


def test_max_seconds_stops_a_phase_and_says_why(tmp_path: Path) -> None:
    metrics = train(_config(phases=["lbfgs:iters=50,max_seconds=1e-9"]), tmp_path, progress=False)
    (phase,) = metrics["phases"]
    assert phase["reason"] == "max_seconds" and phase["iterations"] == 1


def test_max_evals_stops_a_phase_and_its_last_iteration_is_logged(tmp_path: Path) -> None:
    config = _config(phases=["bfgs:iters=50,max_evals=9"], log_every=4)
    metrics = train(config, tmp_path, progress=False)
    (phase,) = metrics["phases"]
    assert phase["reason"] == "max_evals" and phase["evaluations"]["functions"] >= 9
    last = _rows(tmp_path / "history.csv")[-1]
    assert int(last["step"]) == 8 + phase["iterations"] and last["phase"] == "bfgs"
    assert int(last["functions"]) == phase["evaluations"]["functions"]


def test_resume_may_not_add_first_order_steps_once_phases_began(tmp_path: Path) -> None:
    train(_config(phases=["lbfgs:iters=2"]), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="started its phases"):
        train(_config(steps=20, phases=["lbfgs:iters=2"]), tmp_path, progress=False, resume=True)


@pytest.mark.parametrize(
    ("phases", "error", "match"),
    [
        (["lbfgs:iters=0"], ConfigError, r"'phases' \(entry 0\).*'iters' must be >= 1"),
        (["lbfgs", "lbgfs"], UnknownComponentError, r"entry 1.*Did you mean 'lbfgs'"),
        ([{"name": "bfgs", "histroy": 3}], ConfigError, r"entry 0.*histroy"),
        ([3], ConfigError, "a phase is a spec like"),
    ],
)
def test_bad_phases_are_refused_naming_the_entry(
    phases: list[Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        _config(phases=phases)


def test_a_dense_phase_over_too_many_parameters_is_refused_before_training(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match="exceed max_params=10"):
        train(_config(phases=["ssbfgs:max_params=10"]), tmp_path, progress=False)
    assert not (tmp_path / "history.csv").exists()


def test_cli_then_and_config_files_set_the_phases(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    args = ["run", "helmholtz", *TINY_FLAGS, "--method", "adam", "--steps", "3", "--out", str(out)]
    assert main([*args, "--then", "lbfgs:iters=2", "--then", "bfgs:iters=2"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["recipe"] == "adam ×3 → lbfgs:iters=2 → bfgs:iters=2"
    assert "lbfgs" in capsys.readouterr().out
    file = tmp_path / "run.toml"
    file.write_text(
        'problem = "helmholtz"\nmethod = "adam"\nsteps = 2\ndevice = "cpu"\n'
        "problem_params = {a2 = 1, n_residual = 16, n_boundary = 8, n_eval = 11}\n"
        "net_params = {width = 4, depth = 1}\n"
        'phases = ["lbfgs:iters=3", {name = "ssbroyden", iters = 2}]\n'
    )
    assert main(["run", "--config", str(file), "--out", str(tmp_path / "f"), "--no-progress"]) == 0
    done = json.loads((tmp_path / "f" / "metrics.json").read_text())["phases"]
    assert [(p["name"], p["iterations"]) for p in done] == [("lbfgs", 3), ("ssbroyden", 2)]
    assert torch.load(tmp_path / "f" / "checkpoint.pt", weights_only=True)["phases"]["index"] == 2


def test_compare_then_runs_the_phases_and_the_report_shows_recipe_and_evaluations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["compare", "helmholtz", "--methods", "adam,autobalance", "--seeds", "1"]
    argv += [arg for k, v in TINY_PROBLEM.items() for arg in ("--param", f"{k}={v}")]
    argv += ["--set", "net_params.width=8", "--set", "net_params.depth=1", "--device", "cpu"]
    argv += ["--steps", "4", "--executor", "inline", "--quiet", "--then", "lbfgs:iters=3"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    runs = [json.loads(p.read_text()) for p in tmp_path.glob("*/metrics.json")]
    assert sorted(r["recipe"] for r in runs) == [
        "adam ×4 → lbfgs:iters=3",
        "autobalance ×4 → lbfgs:iters=3",
    ]
    report = (tmp_path / "report.md").read_text()
    assert "adam → lbfgs:iters=3" in report and "autobalance → lbfgs:iters=3" in report
    assert "phase function evals" in report and "phase iterations" in report
    assert "not drawn" not in report  # the curves read the tables with their phase column


def test_gauss_newton_chunks_of_the_poisson_inverse_observation_grid() -> None:
    """The Jacobian cut into chunks (subsets of the observation grid) equals the whole one."""
    from autobalance import nets, problems
    from autobalance.phases import problem_objective, stacked_residuals

    problem = problems.create("poisson-inverse", n_residual=20, n_boundary=8, n_data_side=5)
    torch.manual_seed(0)
    model = nets.create("mlp", 2, 2, width=4, depth=1).double()
    batch = problem.sample(torch.Generator().manual_seed(0), "cpu", torch.float64)
    objective = problem_objective(problem, model, batch)
    params = list(model.parameters())
    whole = stacked_residuals(objective, params, chunk=0)
    chunked = stacked_residuals(objective, params, chunk=4)
    assert torch.allclose(whole.rho, chunked.rho, rtol=0, atol=1e-12)
    assert whole.jacobian is not None and chunked.jacobian is not None
    assert torch.allclose(whole.jacobian, chunked.jacobian, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="observation points"):
        problem.observed_at(batch["data"][:3] + 0.01)
