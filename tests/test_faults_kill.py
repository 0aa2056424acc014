"""Killed processes: ``autobalance run`` and ``autobalance bench`` in a subprocess, stopped with
SIGKILL at a random point (or SIGTERM), then resumed: nothing lost beyond the last checkpoint,
nothing mislabelled, and the result bit-identical to an uninterrupted run (same machine, same
seed, one thread)."""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path

import pytest

from autobalance.cli.main import EXIT_INTERRUPTED, main
from autobalance.experiments import RunConfig, runner, train
from autobalance.experiments.runner import load_checkpoint
from autobalance.experiments.suites import load_suite
from autobalance.experiments.sweep import RunSpec, run_sweep
from fault_tools import TINY_FLAGS, TINY_PROBLEM, assert_same_results, cli, history_rows, tiny

#: Seeds the random kill points are drawn from (one in CI; more by hand: pytest -k kill).
KILL_SEEDS = [0]
STEPS = 1500
RUN_ARGS = [
    "run", "helmholtz", "--method", "adam", "--lr", "0.01", "--steps", str(STEPS),
    "--eval-every", "100", "--log-every", "5", "--checkpoint-every", "50", *TINY_FLAGS,
]  # fmt: skip


@pytest.fixture(autouse=True)
def _no_solution_figure(monkeypatch: pytest.MonkeyPatch) -> None:
    """No solution.png in this process (a second of matplotlib per run)."""
    monkeypatch.setattr(runner.TrainingRun, "write_plot", lambda self: None)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run of ``RUN_ARGS``, uninterrupted, in this process."""
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    config = tiny(steps=STEPS, eval_every=100, log_every=5, checkpoint_every=50)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner.TrainingRun, "write_plot", lambda self: None)
        train(config, out, progress=False)
    return out


def _wait_for_a_checkpoint_beyond_step_0(run_dirs: list[Path], proc: object) -> Path:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:  # type: ignore[attr-defined]
        started = [d for d in run_dirs if history_rows(d) > 0]
        if started:
            return started[0]
        time.sleep(0.01)
    pytest.fail("the command ended (or hung) before its first checkpoint beyond step 0")


@pytest.mark.parametrize("seed", KILL_SEEDS)
def test_run_killed_at_a_random_point_resumes_bit_identical(
    seed: int, uninterrupted: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    proc = cli(*RUN_ARGS, "--checkpoint-seconds", "0.2", "--out", str(out))
    try:
        _wait_for_a_checkpoint_beyond_step_0([out], proc)
        time.sleep(random.Random(seed).uniform(0.0, 0.5))
        proc.kill()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    saved = load_checkpoint(out / "checkpoint.pt")["step"]
    assert 0 < saved < STEPS, "killed after its end: make STEPS larger"
    assert not (out / "metrics.json").exists()
    assert main(["run", "--out", str(out), "--resume"]) == 0
    assert_same_results(out, uninterrupted)


def test_run_stopped_by_sigterm_saves_its_last_step_and_resumes_bit_identical(
    uninterrupted: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    proc = cli(*RUN_ARGS, "--checkpoint-seconds", "0", "--out", str(out))
    try:
        _wait_for_a_checkpoint_beyond_step_0([out], proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == EXIT_INTERRUPTED, err
    saved = load_checkpoint(out / "checkpoint.pt")["step"]
    assert f"interrupted by SIGTERM: checkpoint written at step {saved} in {out}" in err
    assert "Traceback" not in err
    assert main(["run", "--out", str(out), "--resume"]) == 0
    assert_same_results(out, uninterrupted)


SUITE = {
    "seeds": 1,
    "defaults": {
        "device": "cpu",
        "steps": 400,
        "lr": 0.01,
        "eval_every": 100,
        "log_every": 5,
        "checkpoint_every": 50,
        "problem_params": {"a2": 1, "n_residual": 32, "n_boundary": 16, "n_eval": 11},
        "net_params": {"width": 8, "depth": 1},
    },
    "experiments": [{"name": "kill", "methods": ["adam", "autobalance"]}],
}


#: ``compare`` of the same tiny runs as ``SUITE`` (flags instead of a suite file).
COMPARE_ARGS = [
    "compare", "helmholtz", "--methods", "adam,autobalance", "--seeds", "1", "--steps", "400",
    "--lr", "0.01", "--device", "cpu",
    *(a for k, v in TINY_PROBLEM.items() for a in ("--param", f"{k}={v}")),
    *("--set", "net_params.width=8", "--set", "net_params.depth=1", "--set", "eval_every=100"),
    *("--set", "log_every=5", "--set", "checkpoint_every=50"),
]  # fmt: skip


def _sweep_argv(command: str, tmp_path: Path) -> list[str]:
    if command == "bench":
        suite = tmp_path / "suite.json"
        suite.write_text(json.dumps(SUITE))
        argv = ["bench", str(suite)]
    else:
        argv = list(COMPARE_ARGS)
    argv += ["--executor", "inline", "--quiet", "--no-report", "--checkpoint-seconds", "0.2"]
    return [*argv, "--out", str(tmp_path / command)]


def _planned(out: Path) -> list[RunSpec]:
    """The runs of the sweep in ``out``, from its ``sweep.json`` (written before any run)."""
    plan = json.loads((out / "sweep.json").read_text())["runs"]
    return [RunSpec(RunConfig.from_dict(r["config"]), r["group"]) for r in plan]


@pytest.mark.parametrize("command", ["bench", "compare"])
@pytest.mark.parametrize("seed", KILL_SEEDS)
def test_sweep_killed_at_a_random_point_loses_nothing_beyond_the_last_checkpoint(
    seed: int, command: str, tmp_path: Path
) -> None:
    """``bench`` and ``compare`` killed mid-run, then the same command again: finished runs are
    not redone, the unfinished one continues from its checkpoint, all end bit-identical."""
    argv = _sweep_argv(command, tmp_path)
    out = Path(argv[-1])
    proc = cli(*argv)
    try:
        deadline = time.monotonic() + 120
        while not (out / "sweep.json").exists() and proc.poll() is None:
            assert time.monotonic() < deadline, "the sweep wrote no plan"
            time.sleep(0.01)
        specs = _planned(out)
        _wait_for_a_checkpoint_beyond_step_0([out / s.name for s in specs], proc)
        time.sleep(random.Random(seed).uniform(0.0, 1.0))
        proc.kill()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert len(specs) == 2
    saved = {
        s.name: load_checkpoint(out / s.name / "checkpoint.pt")["step"]
        for s in specs
        if (out / s.name / "checkpoint.pt").exists()
    }
    finished = {s.name for s in specs if (out / s.name / "metrics.json").exists()}
    assert saved and len(finished) < len(specs), "the sweep ended before the kill"

    assert main(argv) == 0  # the same command again
    reference = run_sweep(specs, tmp_path / "reference", stream=None)
    assert not reference.errors
    for spec in specs:
        log = [json.loads(line) for line in (out / spec.name / "attempts.jsonl").open()]
        if spec.name in finished:
            assert len(log) == 1  # complete: never redone
        elif spec.name in saved:
            assert log[-1]["resumed_from"] == saved[spec.name]  # continued from its checkpoint
        assert_same_results(out / spec.name, tmp_path / "reference" / spec.name)


def test_local_sweep_stopped_by_sigterm_checkpoints_its_running_run(tmp_path: Path) -> None:
    """SIGTERM to the sweep process only: it passes the stop on to its worker process, which
    saves the step it reached; the same command would continue from there."""
    suite = tmp_path / "suite.json"
    suite.write_text(json.dumps({**SUITE, "experiments": [{"methods": ["adam"]}]}))
    (spec,) = load_suite(str(suite), overrides=["steps=100000"]).runs  # the signal must stop it
    out = tmp_path / "bench"
    argv = ["bench", str(suite), "--executor", "local", "--workers", "1", "--no-report"]
    proc = cli(*argv, "--steps", "100000", "--checkpoint-seconds", "0", "--out", str(out))
    try:
        _wait_for_a_checkpoint_beyond_step_0([out / spec.name], proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "interrupted by SIGTERM" in err and "run the same command again" in err
    step = load_checkpoint(out / spec.name / "checkpoint.pt")["step"]
    assert 0 < step < 100000 and not (out / spec.name / "metrics.json").exists()
    assert f"{spec.name}: interrupted, checkpoint at step {step}" in err
    assert "Traceback" not in err
