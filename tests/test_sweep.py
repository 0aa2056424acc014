"""Sweeps: deterministic run directories, skip/resume rules, SIGKILL safety, executors, CLI."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from autobalance import problems
from autobalance.cli.main import main
from autobalance.errors import ConfigError
from autobalance.experiments import RunConfig
from autobalance.experiments.executors import InlineExecutor, LocalExecutor
from autobalance.experiments.suites import expand_suite, load_suite, suite_names
from autobalance.experiments.sweep import (
    RunSpec,
    SweepProgress,
    config_hash,
    inspect_run,
    run_sweep,
)
from autobalance.problems.helmholtz import Helmholtz

TINY = {"a2": 1, "n_residual": 64, "n_boundary": 32, "n_eval": 21}


def tiny(method: str = "adam", seed: int = 0, **overrides: Any) -> RunConfig:
    fields: dict[str, Any] = {
        "problem_params": dict(TINY),
        "net_params": {"width": 10, "depth": 2},
        "method": method,
        "seed": seed,
        "steps": 30,
        "eval_every": 10,
        "log_every": 5,
        "checkpoint_every": 10,
        "device": "cpu",
    }
    fields.update(overrides)
    return RunConfig(**fields)


def attempts(run_dir: Path) -> list[dict[str, Any]]:
    lines = (run_dir / "attempts.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def same_results(a: Path, b: Path) -> None:
    """Two run directories hold bit-identical results (timings aside)."""
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    for key in ("status", "steps", "rel_l2", "mse", "linf", "backward_passes", "final_losses"):
        assert ma[key] == mb[key], key
    assert (a / "history.csv").read_bytes() == (b / "history.csv").read_bytes()
    sa, sb = (torch.load(d / "checkpoint.pt", weights_only=True)["model"] for d in (a, b))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_run_names_are_deterministic() -> None:
    a, b = RunSpec(tiny()), RunSpec(tiny())
    assert a.name == b.name and a.name.startswith("helmholtz-adam-seed0-")
    assert RunSpec(tiny(seed=1)).name != a.name
    assert RunSpec(tiny(lr=2e-3)).name != a.name
    # only non-default fields are hashed: naming a default explicitly changes nothing
    assert config_hash(tiny(sampler="uniform")) == config_hash(tiny())


def test_complete_runs_are_skipped(tmp_path: Path) -> None:
    specs = [RunSpec(tiny(seed=s)) for s in (0, 1)] + [RunSpec(tiny(seed=0))]  # a duplicate
    first = run_sweep(specs, tmp_path, stream=None)
    assert len(first.specs) == 2 and sorted(first.executed) == sorted(s.name for s in specs[:2])
    stamps = {s.name: (tmp_path / s.name / "metrics.json").stat().st_mtime_ns for s in specs}
    again = run_sweep(specs, tmp_path, stream=None)
    assert again.executed == [] and len(again.skipped) == 2 and len(again.rows()) == 2
    for spec in specs:
        assert (tmp_path / spec.name / "metrics.json").stat().st_mtime_ns == stamps[spec.name]
        assert len(attempts(tmp_path / spec.name)) == 1
    plan = json.loads((tmp_path / "sweep.json").read_text())
    assert [r["name"] for r in plan["runs"]] == [s.name for s in specs[:2]]


def test_broken_run_directories_are_reported_and_rerun(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref, out = tmp_path / "ref", tmp_path / "out"
    specs = [RunSpec(tiny(seed=s)) for s in (0, 1, 2)]
    run_sweep(specs, ref, stream=None)
    run_sweep(specs, out, stream=None)
    garbage, torn_metrics, no_ckpt = (out / s.name for s in specs)
    (garbage / "metrics.json").write_text('{"status": "o')  # half-written
    (garbage / "checkpoint.pt").write_bytes(b"PK\x03\x04 not a zip")
    (torn_metrics / "metrics.json").write_text("")  # readable checkpoint: resumed from it
    (no_ckpt / "metrics.json").unlink()
    (no_ckpt / "checkpoint.pt").unlink()
    assert inspect_run(garbage).kind == "broken" and "unreadable" in inspect_run(garbage).reason
    assert inspect_run(torn_metrics).kind == "resumable"
    result = run_sweep(specs, out, stream=sys.stderr)
    err = capsys.readouterr().err
    assert "checkpoint.pt unreadable" in err and "running it again" in err
    assert sorted(result.executed) == sorted(s.name for s in specs) and not result.errors
    assert attempts(torn_metrics)[-1]["resumed_from"] == 30
    for spec in specs:
        same_results(ref / spec.name, out / spec.name)


class _NanAfter(Helmholtz):
    """Helmholtz whose boundary loss turns NaN at the 4th evaluation."""

    calls = 0

    def losses(self, model: Any, batch: Any) -> dict[str, torch.Tensor]:
        self.calls += 1
        out = super().losses(model, batch)
        if self.calls >= 4:
            out["boundary"] = out["boundary"] * math.nan
        return out


@pytest.fixture
def nan_problem() -> Iterator[str]:
    problems.CATALOG.add("nan_after", _NanAfter)
    yield "nan_after"
    problems.CATALOG.remove("nan_after")


def test_failed_and_erroring_runs_do_not_stop_the_sweep(tmp_path: Path, nan_problem: str) -> None:
    nan = RunSpec(tiny(problem="nan_after", checkpoint_every=0))
    bad = RunSpec(tiny(method_params={"bogus": 1}))  # the method rejects it when created
    good = RunSpec(tiny(seed=5))
    result = run_sweep([nan, bad, good], tmp_path, stream=None)
    assert result.metrics[nan.name]["status"] == "failed"
    assert result.metrics[nan.name]["error"]["step"] == 4
    assert result.metrics[good.name]["status"] == "ok"
    assert bad.name in result.errors and "bogus" in result.errors[bad.name]
    again = run_sweep([nan, bad, good], tmp_path, stream=None)  # errors are retried, failures not
    assert sorted(again.skipped) == sorted([nan.name, good.name]) and bad.name in again.errors


def test_progress_line_and_eta() -> None:
    progress = SweepProgress(total=4, workers=2)
    progress.record({"status": "skipped"})
    progress.running = 2
    progress.record({"status": "ok", "seconds": 10.0})
    progress.record({"status": "failed", "seconds": 30.0})
    assert progress.eta_s() == pytest.approx(20.0)
    line = progress.line()
    assert "3/4 complete (1 skipped)" in line and "0 running" in line and "1 failed" in line


_SWEEP_SCRIPT = """
import json, sys
from autobalance.experiments import RunConfig
from autobalance.experiments.executors import LocalExecutor
from autobalance.experiments.sweep import RunSpec, run_sweep

if __name__ == "__main__":  # spawned workers import this file too
    configs = json.load(open(sys.argv[1]))
    specs = [RunSpec(RunConfig.from_dict(c)) for c in configs]
    executor = LocalExecutor(1, threads=1)
    try:
        run_sweep(specs, sys.argv[2], executor=executor)
    finally:
        executor.close()
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _checkpointed_beyond_step_0(run_dir: Path) -> bool:
    """A checkpoint after step 0 was written: the history.csv written with it has rows."""
    try:
        return len((run_dir / "history.csv").read_text().splitlines()) > 1
    except OSError:
        return False


def test_sigkilled_sweep_loses_and_redoes_no_completed_run(tmp_path: Path) -> None:
    """SIGKILL a sweep of worker processes mid-run, restart it, compare with a clean sweep."""
    specs = [RunSpec(tiny(seed=s, steps=400, checkpoint_every=40)) for s in range(3)]
    ref, out = tmp_path / "ref", tmp_path / "out"
    (tmp_path / "configs.json").write_text(json.dumps([s.config.to_dict() for s in specs]))
    (tmp_path / "sweep.py").write_text(_SWEEP_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "sweep.py"), str(tmp_path / "configs.json"), str(out)],
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    interrupted: Path | None = None
    try:
        deadline = time.monotonic() + 90
        while interrupted is None and time.monotonic() < deadline and proc.poll() is None:
            dirs = [out / s.name for s in specs]
            done = [d for d in dirs if (d / "metrics.json").exists()]
            started = [d for d in dirs if _checkpointed_beyond_step_0(d) and d not in done]
            if done and started:
                interrupted = started[0]
                os.kill(proc.pid, signal.SIGKILL)  # the sweep process only, not its worker
            time.sleep(0.005)
        proc.wait(timeout=30)
        assert interrupted is not None, "the sweep finished before it could be killed"
        worker = attempts(interrupted)[-1]["pid"]
        deadline = time.monotonic() + 10
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(worker), "the worker outlived the killed sweep"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        if proc.stderr is not None:
            proc.stderr.close()
    completed = {
        s.name: (out / s.name / "metrics.json").stat().st_mtime_ns
        for s in specs
        if (out / s.name / "metrics.json").exists()
    }
    assert completed and interrupted.name not in completed

    result = run_sweep(specs, out, stream=None)  # the restart, in this process
    assert sorted(result.skipped) == sorted(completed)
    assert interrupted.name in result.executed
    for name, stamp in completed.items():
        assert (out / name / "metrics.json").stat().st_mtime_ns == stamp
        assert len(attempts(out / name)) == 1
    resumed = attempts(interrupted)
    assert len(resumed) == 2 and resumed[-1]["resumed_from"] > 0

    run_sweep(specs, ref, stream=None)  # uninterrupted
    for spec in specs:
        same_results(ref / spec.name, out / spec.name)


def test_a_second_sweep_in_the_same_directory_is_refused(tmp_path: Path) -> None:
    fcntl = pytest.importorskip("fcntl")
    with (tmp_path / ".sweep.lock").open("a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        with pytest.raises(ConfigError, match="another sweep"):
            run_sweep([RunSpec(tiny())], tmp_path, stream=None)


def test_ray_executor(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'autobalance[ray]')")
    from autobalance.experiments.executors import RayExecutor

    specs = [RunSpec(tiny(seed=s)) for s in (0, 1)]
    run_sweep(specs, tmp_path / "ref", stream=None)
    executor = RayExecutor(num_cpus=2, threads=1)
    try:
        result = run_sweep(specs, tmp_path / "ray", executor=executor, stream=None)
        assert sorted(result.executed) == sorted(s.name for s in specs) and not result.errors
        again = run_sweep(specs, tmp_path / "ray", executor=executor, stream=None)
        assert len(again.skipped) == 2
    finally:
        executor.close()
    for spec in specs:
        same_results(tmp_path / "ref" / spec.name, tmp_path / "ray" / spec.name)


def _die(job: dict[str, Any]) -> dict[str, Any]:
    os.kill(os.getpid(), signal.SIGKILL)
    return {}


def test_local_executor_reports_a_dead_worker() -> None:
    executor = LocalExecutor(1, threads=1)
    try:
        outcomes = list(executor.run(_die, [{"name": "x"}]))
    finally:
        executor.close()
    assert outcomes[0][1]["status"] == "error" and "died" in outcomes[0][1]["error"]
    assert InlineExecutor().workers == 1


# ------------------------------------------------------------------------------------ suites
def test_shipped_suites_expand() -> None:
    assert {"paper", "quick", "ablations"} <= set(suite_names())
    paper = load_suite("paper")
    assert {s.config.problem for s in paper.runs} == {
        "helmholtz",
        "reaction-diffusion",
        "poisson-inverse",
    }
    assert len({s.config.seed for s in paper.runs}) >= 3
    quick = load_suite("quick", overrides=["steps=5"], seeds=2)
    assert {"adam", "autobalance"} <= {s.config.method for s in quick.runs}
    assert {s.config.seed for s in quick.runs} == {0, 1}
    assert all(s.config.steps == 5 for s in quick.runs)
    ablations = load_suite("ablations")
    groups = {s.group for s in ablations.runs}
    assert {"sum-vs-mean", "adam-vs-adamw-base", "states-grouped", "lr-sensitivity"} <= groups
    combine = {s.config.method_params.get("combine") for s in ablations.runs}
    assert {"sum", "mean"} <= combine


def test_user_suite_skips_unknown_problems_and_methods(tmp_path: Path) -> None:
    data = {
        "seeds": [3],
        "defaults": {"device": "cpu", "steps": 4, "problem_params": TINY},
        "experiments": [
            {"name": "a", "methods": ["adam", "no-such-method"], "grid": {"lr": [1e-3, 2e-3]}},
            {"name": "b", "problem": "no-such-problem", "methods": ["adam"]},
            {"name": "c", "methods": ["fixed"]},  # example_params fill the required weights
        ],
    }
    suite = expand_suite(data, "mine")
    assert [(s.group, s.config.lr) for s in suite.runs] == [("a", 1e-3), ("a", 2e-3), ("c", 1e-3)]
    assert suite.runs[2].config.method_params["weights"] == {"residual": 1.0, "boundary": 10.0}
    assert any("no-such-method" in s for s in suite.skipped)
    assert any("no-such-problem" in s for s in suite.skipped)
    with pytest.raises(ConfigError, match="stepz"):
        expand_suite({**data, "defaults": {"stepz": 3}}, "mine")
    with pytest.raises(ConfigError, match="experimentz"):
        expand_suite({"experimentz": []}, "mine")


# --------------------------------------------------------------------------------------- CLI
def test_cli_compare_prints_the_table_and_writes_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = [arg for k, v in TINY.items() for arg in ("--param", f"{k}={v}")]
    argv = ["compare", "helmholtz", "--methods", "adam,autobalance", "--seeds", "2"]
    argv += [*params, "--budget", "backward=40", "--executor", "inline", "--device", "cpu"]
    argv += ["--set", "net_params.width=10", "--set", "net_params.depth=2", "--set", "eval_every=5"]
    assert main([*argv, "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "rel-L2" in out and "backward" in out and "peak RSS MB" in out
    assert "adam " in out and "autobalance" in out and "2/2" in out
    runs = [json.loads(p.read_text()) for p in tmp_path.glob("*/metrics.json")]
    assert len(runs) == 4
    assert {(r["method"], r["steps"], r["backward_passes"]) for r in runs} == {
        ("adam", 40, 40),
        ("autobalance", 20, 40),
    }
    assert (tmp_path / "report.md").exists() and "report:" in out
    assert main([*argv, "--out", str(tmp_path), "--quiet", "--no-report"]) == 0
    assert "0 run now, 4 already complete" in capsys.readouterr().out


def test_cli_bench_user_suite_and_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = tmp_path / "mine.toml"
    suite.write_text(
        'seeds = 1\n[defaults]\ndevice = "cpu"\nsteps = 5\n'
        "problem_params = {a2 = 1, n_residual = 64, n_boundary = 32, n_eval = 21}\n"
        "net_params = {width = 10, depth = 2}\n"
        '[[experiments]]\nname = "x"\nmethods = ["adam", "not-a-method"]\n'
    )
    argv = ["bench", str(suite), "--executor", "inline", "--quiet", "--no-report"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert "skipped: x: method 'not-a-method' is not registered" in captured.err
    assert "1/1" in captured.out
    assert main(["bench", "quick", "--list", "--seeds", "1"]) == 0
    assert "helmholtz-autobalance-seed0-" in capsys.readouterr().out
    assert main(["bench", "nope"]) == 2
    assert "unknown suite 'nope'" in capsys.readouterr().err
    assert main(["compare", "helmholtz", "--methods", "adam,adamm", "--no-report"]) == 2
    assert "adamm" in capsys.readouterr().err
    assert main(["compare", "helmholtz", "--budget", "weeks=2"]) == 2
    assert "budget kind 'weeks'" in capsys.readouterr().err


def bench_one_adam_run_with_tensorboard(tmp_path: Path) -> int:
    """``autobalance bench`` of a 3-step Adam suite with ``--tensorboard``, into tmp_path/out."""
    suite = tmp_path / "mine.json"
    defaults = {"device": "cpu", "steps": 3, "problem_params": TINY}
    suite.write_text(json.dumps({"defaults": defaults, "experiments": [{"methods": ["adam"]}]}))
    argv = ["bench", str(suite), "--executor", "inline", "--quiet", "--no-report", "--tensorboard"]
    return main([*argv, "--out", str(tmp_path / "out")])


def test_tensorboard_flag_without_tensorboard_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "tensorboard" else real(n, *a)
    )
    assert bench_one_adam_run_with_tensorboard(tmp_path) == 0
    assert "--tensorboard ignored: the tensorboard package is not installed" in (
        capsys.readouterr().err
    )


class _TwoAtOnce:
    """An executor that starts two jobs before the first finishes (as two workers do)."""

    workers = 2

    def run(self, fn: Any, jobs: Any, on_start: Any = None) -> Any:
        jobs = list(jobs)
        for job in jobs[:2]:
            on_start(job)
        for i, job in enumerate(jobs):
            if i >= 2:
                on_start(job)
            yield job, {"name": job["name"], "status": "ok", "seconds": 1.0, "rel_l2": 0.5}

    def close(self) -> None:
        pass


def test_progress_counts_the_runs_in_progress(tmp_path: Path) -> None:
    import io

    stream = io.StringIO()
    specs = [RunSpec(tiny(seed=s)) for s in range(3)]
    run_sweep(specs, tmp_path, executor=_TwoAtOnce(), stream=stream)  # type: ignore[arg-type]
    lines = stream.getvalue().splitlines()
    assert "starting 3 run(s)" in lines[0] and "0 running" in lines[0]
    assert "1 running" in lines[1] and "started" in lines[1]
    assert "2 running" in lines[2] and "started" in lines[2]
    assert "1/3 complete" in lines[3] and "1 running" in lines[3] and "ETA ?" not in lines[3]
    assert "3/3 complete" in lines[-1] and "0 running" in lines[-1] and "ETA 0s" in lines[-1]


def test_eta_uses_the_time_seen_by_the_sweep() -> None:
    """Run time from hand-over to result (worker start-up included), not the worker's own."""
    progress = SweepProgress(total=3, workers=1)
    progress.start("a")
    assert progress.running == 1 and math.isnan(progress.eta_s())
    progress._started["a"] -= 100.0  # handed over 100 s ago
    progress.record({"status": "ok", "seconds": 1.0}, "a")
    assert progress.running == 0 and progress.eta_s() == pytest.approx(200.0, rel=1e-3)
    progress.start("b")
    progress.record({"status": "error", "error": "boom"}, "b")  # errors do not feed the mean
    assert progress.running == 0 and progress.eta_s() == pytest.approx(100.0, rel=1e-3)
    progress.start("c")
    progress.record({"status": "skipped"}, "c")  # finished meanwhile by someone else
    assert progress.running == 0 and progress.skipped == 1 and progress.eta_s() == 0.0


def test_tensorboard_logs_the_losses(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="tensorboard is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    spec = RunSpec(tiny(steps=20, log_every=5))
    result = run_sweep([spec], tmp_path, tensorboard=True, stream=None)
    assert result.executed == [spec.name]
    events = EventAccumulator(str(tmp_path / spec.name / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss/total", "loss/residual", "loss/boundary"} <= tags
    assert [e.step for e in events.Scalars("loss/total")] == [1, 5, 10, 15, 20]


def test_cli_tensorboard_flag_writes_event_files(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="tensorboard is not installed")
    assert bench_one_adam_run_with_tensorboard(tmp_path) == 0
    assert list((tmp_path / "out").glob("*/tensorboard/events.out.tfevents.*"))


def test_executors_are_found_by_name() -> None:
    from autobalance.errors import UnknownNameError
    from autobalance.experiments.executors import EXECUTORS, create_executor

    assert EXECUTORS == ("inline", "local", "ray")
    assert isinstance(create_executor("inline"), InlineExecutor)
    local = create_executor("local", workers=2)
    assert isinstance(local, LocalExecutor) and local.workers == 2
    with pytest.raises(UnknownNameError, match="Did you mean 'local'"):
        create_executor("locale")
    with pytest.raises(ConfigError, match="workers"):
        create_executor("local", workers=0)
