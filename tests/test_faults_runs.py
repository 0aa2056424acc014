"""Runs under faults, in this process: when checkpoints are written, SIGINT/SIGTERM, reused run
directories, resumes whose configuration conflicts, and same-seed reproducibility."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch

from autobalance.cli.main import main
from autobalance.errors import AutoBalanceError, ConfigError
from autobalance.experiments import runner, train
from autobalance.experiments.interrupts import RunInterrupted, stop_signals
from autobalance.experiments.report import load_run
from autobalance.experiments.runner import (
    ResumeConflictError,
    RunDirectoryError,
    load_checkpoint,
)
from fault_tools import TINY_FLAGS, assert_same_results, snapshot, tiny


@pytest.fixture(autouse=True)
def _no_solution_figure(monkeypatch: pytest.MonkeyPatch) -> None:
    """No solution.png (a second of matplotlib per run; its writing is tested elsewhere)."""
    monkeypatch.setattr(runner.TrainingRun, "write_plot", lambda self: None)


@pytest.fixture
def checkpoint_steps(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The step of every checkpoint the runner writes, in order."""
    steps: list[int] = []
    write = runner.TrainingRun.write_checkpoint

    def spy(self: Any) -> None:
        steps.append(self.progress.step)
        write(self)

    monkeypatch.setattr(runner.TrainingRun, "write_checkpoint", spy)
    return steps


# ------------------------------------------------------------------------------ checkpoints
def test_checkpoints_at_step_0_every_n_steps_and_at_the_end(
    tmp_path: Path, checkpoint_steps: list[int]
) -> None:
    train(tiny(steps=7, checkpoint_every=3), tmp_path, progress=False, checkpoint_seconds=None)
    assert checkpoint_steps == [0, 3, 6, 7]


def test_checkpoints_by_wall_clock(tmp_path: Path, checkpoint_steps: list[int]) -> None:
    """An interval shorter than any step: a checkpoint after every step."""
    train(tiny(steps=5), tmp_path / "often", progress=False, checkpoint_seconds=1e-9)
    assert checkpoint_steps == [0, 1, 2, 3, 4, 5]
    checkpoint_steps.clear()
    train(tiny(steps=5), tmp_path / "never", progress=False, checkpoint_seconds=3600)
    assert checkpoint_steps == [0, 5]


@pytest.mark.parametrize("seconds", [-1.0, float("nan"), "60", True])
def test_a_bad_checkpoint_interval_is_refused(tmp_path: Path, seconds: Any) -> None:
    with pytest.raises(ConfigError, match="checkpoint_seconds"):
        train(tiny(), tmp_path, progress=False, checkpoint_seconds=seconds)
    assert not tmp_path.joinpath("config.json").exists()


def _signal_at(step: int, signum: int) -> Any:
    """A train callback that sends ``signum`` to this process after step ``step``."""
    count = 0

    def callback(info: Any) -> None:
        nonlocal count
        count += 1
        if count == step:
            os.kill(os.getpid(), signum)

    return callback


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_checkpoints_the_last_step_and_resume_is_bit_identical(
    tmp_path: Path, signum: int
) -> None:
    before = signal.getsignal(signum)
    split, straight = tmp_path / "split", tmp_path / "straight"
    with pytest.raises(RunInterrupted) as caught:
        train(tiny(steps=30), split, progress=False, callback=_signal_at(13, signum))
    assert caught.value.step == 13 and caught.value.signal_name == signal.Signals(signum).name
    assert signal.getsignal(signum) is before  # the handlers are put back
    assert load_checkpoint(split / "checkpoint.pt")["step"] == 13  # not one step lost
    assert not (split / "metrics.json").exists()
    assert load_run(split).status == "incomplete"
    train(tiny(steps=30), split, progress=False, resume=True)
    train(tiny(steps=30), straight, progress=False)
    assert_same_results(split, straight)


def test_cli_stop_signal_exits_130_with_how_to_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = runner.train
    monkeypatch.setattr(
        runner, "train", lambda *a, **k: real(*a, **k, callback=_signal_at(4, signal.SIGTERM))
    )
    out = tmp_path / "run"
    code = main(["run", "helmholtz", "--method", "adam", *TINY_FLAGS, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 130
    assert f"interrupted by SIGTERM: checkpoint written at step 4 in {out}" in err
    assert f"autobalance run --out {out} --resume" in err and "Traceback" not in err


def test_nested_stop_signals_share_one_flag() -> None:
    with stop_signals() as outer, stop_signals() as inner:
        assert inner is outer and not outer.requested
        os.kill(os.getpid(), signal.SIGINT)
        assert inner.requested and outer.signal_name == "SIGINT"


# -------------------------------------------------------------------------- run directories
def test_a_directory_holding_a_run_is_refused_unless_resume_or_overwrite(tmp_path: Path) -> None:
    train(tiny(steps=5), tmp_path, progress=False)
    before = snapshot(tmp_path)
    with pytest.raises(RunDirectoryError, match=r"already holds a run \(metrics.json"):
        train(tiny(steps=5, lr=2e-2), tmp_path, progress=False)
    assert snapshot(tmp_path) == before
    (tmp_path / "notes.txt").write_text("mine")
    metrics = train(tiny(steps=3, lr=2e-2), tmp_path, progress=False, overwrite=True)
    assert metrics["steps"] == 3 and (tmp_path / "notes.txt").read_text() == "mine"
    assert json.loads((tmp_path / "config.json").read_text())["lr"] == 2e-2
    with pytest.raises(ConfigError, match="exclude each other"):
        train(tiny(), tmp_path, progress=False, resume=True, overwrite=True)


def test_an_overwrite_that_fails_before_training_leaves_the_old_run_whole(tmp_path: Path) -> None:
    train(tiny(steps=3), tmp_path, progress=False)
    before = snapshot(tmp_path)
    with pytest.raises(AutoBalanceError, match="bogus"):
        train(tiny(method_params={"bogus": 1}), tmp_path, progress=False, overwrite=True)
    assert snapshot(tmp_path) == before
    assert load_run(tmp_path).status == "ok"


def test_report_never_pairs_a_config_with_another_runs_metrics(tmp_path: Path) -> None:
    """The issue's reproduction: a finished run, then another configuration into its directory."""
    train(tiny(steps=3), tmp_path, progress=False)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["config_sha256"] and metrics["run_id"]
    # what the old runner left: the new run's config.json beside the old run's metrics.json
    other = tiny(method="fixed", method_params={"weights": {"residual": 1, "boundary": 10}})
    (tmp_path / "config.json").write_text(other.to_json())
    record = load_run(tmp_path)
    assert record.status == "incomplete" and "belongs to another run" in record.reason
    # today's runner: the new run is refused; with --overwrite the old metrics go first, so a
    # run that then fails leaves no metrics to pair
    code = main(
        ["run", "helmholtz", "--method", "fixed", "--method-param",
         'weights={"residual": 1, "bondary": 10}', *TINY_FLAGS, "--out", str(tmp_path)]
    )  # fmt: skip
    assert code == 2
    assert main([*_fixed_bondary(tmp_path), "--overwrite"]) == 2  # fails at its first step
    assert not (tmp_path / "metrics.json").exists()
    assert load_run(tmp_path).status == "incomplete"
    assert load_checkpoint(tmp_path / "checkpoint.pt")["config"]["method"] == "fixed"


def _fixed_bondary(out: Path) -> list[str]:
    weights = 'weights={"residual": 1, "bondary": 10}'
    return ["run", "helmholtz", "--method", "fixed", "--method-param", weights, *TINY_FLAGS,
            "--out", str(out)]  # fmt: skip


def test_the_run_id_is_kept_across_a_resume(tmp_path: Path) -> None:
    train(tiny(steps=4), tmp_path, progress=False)
    first = json.loads((tmp_path / "metrics.json").read_text())["run_id"]
    assert load_checkpoint(tmp_path / "checkpoint.pt")["run_id"] == first
    again = train(tiny(steps=8), tmp_path, progress=False, resume=True)
    assert again["run_id"] == first
    replaced = train(tiny(steps=2), tmp_path, progress=False, overwrite=True)
    assert replaced["run_id"] != first


def test_default_output_names_differ_for_every_configuration() -> None:
    from autobalance.cli.main import build_parser
    from autobalance.cli.run import _config_from_args

    argvs = [
        [],
        ["--base", "adam"],
        ["--base", "adamw"],
        ["--lr", "2e-3"],
        ["--seed", "1"],
        ["--width", "20"],
        ["--param", "a2=2"],
        ["--steps", "100"],
        ["--variant", "rba"],
    ]
    outs = [
        _config_from_args(build_parser().parse_args(["run", "helmholtz", *a]))[1] for a in argvs
    ]
    assert len(set(outs)) == len(argvs)
    assert outs[1].name.startswith("helmholtz-autobalance-adam-lr0.001-seed0-")
    assert outs[3].name.startswith("helmholtz-autobalance-lr0.002-seed0-")


# --------------------------------------------------------------------------------- resuming
@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--lr", "0.02"], "lr (saved 0.01, given 0.02)"),
        (["--lr", "0.001"], "lr (saved 0.01, given 0.001)"),  # a default value, given: checked
        (["--set", "method=autobalance"], 'method (saved "adam", given "autobalance")'),
        (["--base", "adamw"], "base='adamw' conflicts with it"),  # RunConfig refuses it
        (["--param", "a2=2"], "problem_params.a2 (saved 1.0, given 2.0)"),
        (["--width", "9"], "net_params.width (saved 8, given 9)"),
        (["--variant", "rba"], "variants"),
        (["--seed", "3"], "seed (saved 0, given 3)"),
        (["--seed", "3", "--lr", "0.5"], "lr (saved 0.01, given 0.5); seed (saved 0, given 3)"),
        (["--steps", "5"], "cannot resume with steps=5: the checkpoint"),
        (["--budget", "steps=4"], None),  # not a run flag: argparse refuses it
    ],
)
def test_cli_resume_with_conflicting_flags_is_an_error_naming_them(
    flags: list[str], named: str | None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["run", "helmholtz", "--method", "adam", "--lr", "0.01", "--steps", "10",
                 *TINY_FLAGS, "--out", str(out)]) == 0  # fmt: skip
    before = snapshot(out)
    capsys.readouterr()
    code = main(["run", "--out", str(out), "--resume", *flags])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    if named is not None:
        assert err.startswith("error: ") and named in err
    assert snapshot(out) == before


def test_resume_may_add_steps_change_the_budget_and_the_checkpoint_interval(
    tmp_path: Path,
) -> None:
    split, straight = tmp_path / "split", tmp_path / "straight"
    train(tiny(steps=12), split, progress=False)
    train(tiny(steps=20, checkpoint_every=5), split, progress=False, resume=True)
    train(tiny(steps=25, budget={"kind": "steps", "value": 25}), split, progress=False, resume=True)
    with pytest.raises(ConfigError, match=r"budget steps=10: the checkpoint .* already beyond"):
        train(tiny(steps=25, budget={"kind": "steps", "value": 10}), split, resume=True)
    train(tiny(steps=25), straight, progress=False)
    assert json.loads((split / "metrics.json").read_text())["steps"] == 25
    with pytest.raises(ResumeConflictError, match="lr"):
        train(tiny(steps=30, lr=0.5), split, progress=False, resume=True)
    a = torch.load(split / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(straight / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cli_resume_without_flags_keeps_the_saved_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["run", "helmholtz", "--method", "adam", "--lr", "0.02", "--steps", "6", *TINY_FLAGS]
    assert main([*argv, "--out", str(out)]) == 0
    assert main(["run", "--out", str(out), "--resume", "--steps", "9", "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["steps"], metrics["lr"], metrics["method"]) == (9, 0.02, "adam")
    assert main(["run", "--resume"]) == 2
    assert "--resume needs --out" in capsys.readouterr().err


# --------------------------------------------------------------------------- reproducibility
def test_same_seed_same_threads_gives_bit_identical_runs(tmp_path: Path) -> None:
    """Same machine, same seed, same threads: every number of the two runs is the same."""
    first = train(tiny(method="autobalance", steps=25), tmp_path / "a", progress=False)
    torch.manual_seed(12345)  # the global RNG state before a run does not matter
    second = train(tiny(method="autobalance", steps=25), tmp_path / "b", progress=False)
    assert first["threads"] == second["threads"] == 1  # RunConfig.threads None: one thread
    assert_same_results(tmp_path / "a", tmp_path / "b")
    other = train(tiny(method="autobalance", steps=25, seed=1), tmp_path / "c", progress=False)
    assert other["rel_l2"] != first["rel_l2"]


def test_deterministic_switch_is_recorded_and_restored(tmp_path: Path) -> None:
    assert not torch.are_deterministic_algorithms_enabled()
    metrics = train(tiny(steps=5), tmp_path / "det", progress=False, deterministic=True)
    assert metrics["deterministic"] is True
    assert not torch.are_deterministic_algorithms_enabled()
    plain = train(tiny(steps=5), tmp_path / "plain", progress=False)
    assert plain["deterministic"] is False
    assert_same_results(tmp_path / "det", tmp_path / "plain")  # CPU: the same numbers
