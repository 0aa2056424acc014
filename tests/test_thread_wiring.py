"""The thread policy wired in: the ``threads`` configuration key, ``--threads`` on run, compare,
bench and diagnose, the runner applying it (and putting the caller's settings back), the
executors' per-worker counts and default worker count, and a user's OMP_NUM_THREADS respected."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from autobalance import threads
from autobalance.cli.main import main
from autobalance.errors import ConfigError
from autobalance.experiments import RunConfig, runner
from autobalance.experiments import executors as executors_module
from autobalance.experiments.config_files import config_from_dict
from autobalance.experiments.executors import (
    InlineExecutor,
    LocalExecutor,
    create_executor,
    default_workers,
)
from autobalance.experiments.sweep import RunSpec, config_hash
from autobalance.threads import choose_threads

TINY = {"a2": 1, "n_residual": 32, "n_boundary": 16, "n_eval": 11}
TINY_ARGS = [arg for k, v in TINY.items() for arg in ("--param", f"{k}={v}")]
TINY_NET = ["--set", "net_params.width=8", "--set", "net_params.depth=1"]


def tiny(**overrides: Any) -> RunConfig:
    fields: dict[str, Any] = {
        "problem_params": dict(TINY),
        "net_params": {"width": 8, "depth": 1},
        "method": "adam",
        "steps": 3,
        "eval_every": 3,
        "log_every": 1,
        "checkpoint_every": 0,
        "device": "cpu",
    }
    return RunConfig(**{**fields, **overrides})


@pytest.fixture
def cores(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[int], None]]:
    """``cores(n)``: the policy sees ``n`` cores (affinity), no cgroup quota, no OMP/MKL
    variables; torch's count and the variables are put back after the test."""
    before = torch.get_num_threads()

    def set_cores(n: int) -> None:
        monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(n)))
        monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda *a, **k: None)
        for name in threads.THREAD_VARIABLES:
            monkeypatch.delenv(name, raising=False)

    yield set_cores
    torch.set_num_threads(before)


@pytest.fixture
def threads_seen(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """torch.get_num_threads() at every step of every run, through the runner's callback."""
    seen: list[int] = []
    train = runner.train

    def spying_train(*args: Any, callback: Any = None, **kwargs: Any) -> dict[str, Any]:
        def spy(info: Any) -> None:
            seen.append(torch.get_num_threads())
            if callback is not None:
                callback(info)

        return train(*args, **kwargs, callback=spy)

    monkeypatch.setattr(runner, "train", spying_train)
    yield seen


# --- the configuration key --------------------------------------------------------------------


def test_the_threads_key_defaults_to_the_policy_and_round_trips(tmp_path: Path) -> None:
    assert RunConfig().threads is None
    config = RunConfig(threads=3)
    assert config.to_dict()["threads"] == 3
    assert RunConfig.from_dict(config.to_dict()) == config
    (tmp_path / "config.json").write_text(config.to_json())
    assert RunConfig.from_json(tmp_path / "config.json").threads == 3
    assert config_from_dict({}, ["threads=2"]).threads == 2
    assert config_from_dict({"threads": 2}, ["threads=null"]).threads is None


def test_the_default_key_leaves_run_names_unchanged() -> None:
    """Only non-default fields are hashed: runs without ``threads`` keep their directories."""
    assert config_hash(tiny(threads=None)) == config_hash(tiny())
    assert RunSpec(tiny(threads=2)).name != RunSpec(tiny()).name


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_thread_counts_in_a_configuration_are_named(bad: object) -> None:
    # RunConfig checks types and ranges at construction: a wrong type and a bad count both name
    # the key.
    pattern = r"threads must be a positive integer, or None .* got|'threads': expected an integer"
    with pytest.raises(ConfigError, match=pattern):
        RunConfig(threads=bad).validate()  # type: ignore[arg-type]


def test_a_bad_thread_count_stops_a_run_before_it_starts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="threads must be a positive integer"):
        runner.train(tiny(threads=0), tmp_path, progress=False)
    assert not (tmp_path / "config.json").exists()


# --- the runner ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("asked", "used"), [(None, 1), (1, 1), (3, 3), (16, 4)])
def test_the_runner_uses_the_chosen_threads_and_records_them(
    tmp_path: Path, cores: Callable[[int], None], asked: int | None, used: int
) -> None:
    cores(4)
    torch.set_num_threads(2)  # the caller's setting, e.g. torch's default on 2 cores
    os.environ["MKL_NUM_THREADS"] = "2"
    seen: list[int] = []
    metrics = runner.train(
        tiny(threads=asked),
        tmp_path,
        progress=False,
        callback=lambda info: seen.append(torch.get_num_threads()),
    )
    assert seen == [used] * 3
    assert metrics["threads"] == used
    assert json.loads((tmp_path / "metrics.json").read_text())["threads"] == used
    assert json.loads((tmp_path / "config.json").read_text())["threads"] == asked
    # the caller's process as it was: a default run does not cap the next run at one thread
    assert torch.get_num_threads() == 2
    assert os.environ["MKL_NUM_THREADS"] == "2" and "OMP_NUM_THREADS" not in os.environ


def test_a_users_omp_num_threads_caps_the_run(
    tmp_path: Path, cores: Callable[[int], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    cores(8)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert runner.train(tiny(threads=6), tmp_path, progress=False)["threads"] == 2
    assert os.environ["OMP_NUM_THREADS"] == "2"


def test_a_resumed_run_may_change_its_threads(tmp_path: Path, cores: Callable[[int], None]) -> None:
    cores(4)
    runner.train(tiny(threads=1, steps=2), tmp_path, progress=False)
    metrics = runner.train(tiny(threads=2, steps=4), tmp_path, progress=False, resume=True)
    assert metrics["steps"] == 4 and metrics["threads"] == 2
    with pytest.raises(
        ConfigError,
        match=r"lr \(saved 0.001, given 0.5\).*only steps, budget, checkpoint_every, threads "
        "may change",
    ):
        runner.train(tiny(lr=0.5, steps=5), tmp_path, progress=False, resume=True)


# --- the command line ---------------------------------------------------------------------------


def _run_argv(out: Path, *extra: str) -> list[str]:
    return [
        "run",
        "helmholtz",
        "--method",
        "adam",
        *TINY_ARGS,
        "--width",
        "8",
        "--depth",
        "1",
        "--steps",
        "3",
        "--eval-every",
        "3",
        "--device",
        "cpu",
        "--no-progress",
        "--out",
        str(out),
        *extra,
    ]


def test_run_threads_flag_reaches_the_runner(
    tmp_path: Path,
    cores: Callable[[int], None],
    threads_seen: list[int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    cores(4)
    assert main(_run_argv(tmp_path / "a", "--threads", "3")) == 0
    assert threads_seen == [3] * 3
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["threads"] == 3
    assert json.loads((tmp_path / "a" / "config.json").read_text())["threads"] == 3
    assert "ms/step, 3 threads)" in capsys.readouterr().out
    threads_seen.clear()
    assert main(_run_argv(tmp_path / "b")) == 0  # no flag: the policy's one thread
    assert threads_seen == [1] * 3
    assert "ms/step, 1 thread)" in capsys.readouterr().out
    threads_seen.clear()
    resume = ["run", "--resume", "--out", str(tmp_path / "a"), "--steps", "5", "--no-progress"]
    assert main([*resume, "--threads", "2"]) == 0  # a resumed run takes the new count
    assert threads_seen == [2] * 2
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["threads"] == 2


def test_run_threads_flag_with_a_configuration_file(
    tmp_path: Path, cores: Callable[[int], None], threads_seen: list[int]
) -> None:
    cores(4)
    config = tmp_path / "run.json"
    config.write_text(tiny(threads=3).to_json())
    out = ["--out", str(tmp_path / "out"), "--no-progress"]
    assert main(["run", "--config", str(config), *out]) == 0
    assert threads_seen == [3] * 3
    threads_seen.clear()
    again = [*out, "--overwrite"]  # the same directory: replaced, as a reused one is refused
    assert main(["run", "--config", str(config), "--threads", "2", *again]) == 0
    assert threads_seen == [2] * 3
    threads_seen.clear()
    assert main(["run", "--config", str(config), "--set", "threads=1", *again]) == 0
    assert threads_seen == [1] * 3


def test_run_threads_flag_is_validated(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "helmholtz", "--threads", "0", "--no-progress", "--out", "x"]) == 2
    assert "threads must be a positive integer" in capsys.readouterr().err


def test_compare_threads_reach_every_run_and_the_executor(
    tmp_path: Path,
    cores: Callable[[int], None],
    threads_seen: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cores(4)
    asked: list[int | None] = []

    def inline(name: str, **kwargs: Any) -> InlineExecutor:
        asked.append(kwargs["threads"])
        return InlineExecutor()

    monkeypatch.setattr(executors_module, "create_executor", inline)
    argv = ["compare", "helmholtz", "--methods", "adam,sum", "--seeds", "1", "--steps", "3"]
    argv += [*TINY_ARGS, *TINY_NET, "--device", "cpu", "--quiet", "--no-report"]
    assert main([*argv, "--threads", "2", "--out", str(tmp_path / "two")]) == 0
    assert asked == [2] and threads_seen == [2] * 6
    runs = [json.loads(p.read_text()) for p in (tmp_path / "two").glob("*/metrics.json")]
    assert [r["threads"] for r in runs] == [2, 2]
    threads_seen.clear()
    assert main([*argv, "--out", str(tmp_path / "default")]) == 0
    assert asked == [2, None] and threads_seen == [1] * 6


def test_bench_threads_reach_every_run(
    tmp_path: Path, cores: Callable[[int], None], threads_seen: list[int]
) -> None:
    cores(4)
    suite = tmp_path / "mine.toml"
    suite.write_text(
        'seeds = 1\n[defaults]\ndevice = "cpu"\nsteps = 3\n'
        "problem_params = {a2 = 1, n_residual = 32, n_boundary = 16, n_eval = 11}\n"
        "net_params = {width = 8, depth = 1}\n"
        '[[experiments]]\nname = "x"\nmethods = ["adam"]\n'
    )
    argv = ["bench", str(suite), "--executor", "inline", "--quiet", "--no-report"]
    assert main([*argv, "--threads", "3", "--out", str(tmp_path / "out")]) == 0
    assert threads_seen == [3] * 3
    (run,) = (tmp_path / "out").glob("*/metrics.json")
    assert json.loads(run.read_text())["threads"] == 3


@pytest.mark.parametrize(("flag", "used"), [([], 1), (["--threads", "3"], 3)])
def test_diagnose_uses_the_chosen_threads(
    tmp_path: Path,
    cores: Callable[[int], None],
    monkeypatch: pytest.MonkeyPatch,
    flag: list[str],
    used: int,
) -> None:
    from autobalance.cli import diagnose

    cores(4)
    torch.set_num_threads(2)
    seen: list[int] = []

    def study(args: argparse.Namespace, out: Path) -> int:
        seen.append(torch.get_num_threads())
        return 0

    monkeypatch.setattr(diagnose, "_quadratic", study)
    monkeypatch.setattr(diagnose, "_problem", study)
    for target in ("quadratic", "helmholtz"):
        assert main(["diagnose", target, "--out", str(tmp_path), *flag]) == 0
    assert seen == [used, used]
    assert torch.get_num_threads() == 2


# --- the executors ------------------------------------------------------------------------------


def _worker_threads(job: dict[str, Any]) -> dict[str, Any]:
    """A job reporting the thread settings of the worker process it ran in."""
    return {
        "status": "ok",
        "torch": torch.get_num_threads(),
        "omp": os.environ.get("OMP_NUM_THREADS"),
    }


def test_local_workers_get_choose_threads_count(cores: Callable[[int], None]) -> None:
    cores(4)
    executor = LocalExecutor(2, threads=8)
    assert executor.threads == choose_threads(8, 2) == 2
    try:
        outcomes = [outcome for _, outcome in executor.run(_worker_threads, [{"name": "a"}])]
    finally:
        executor.close()
    assert outcomes == [{"status": "ok", "torch": 2, "omp": "2"}]


@pytest.mark.parametrize(
    ("workers", "asked", "each"), [(1, None, 1), (2, None, 1), (1, 8, 4), (2, 3, 2), (8, 4, 1)]
)
def test_local_executor_threads_never_oversubscribe(
    cores: Callable[[int], None], workers: int, asked: int | None, each: int
) -> None:
    cores(4)
    assert LocalExecutor(workers, threads=asked).threads == each


def test_local_executor_respects_a_users_omp_num_threads(
    cores: Callable[[int], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    cores(8)
    monkeypatch.setenv("OMP_NUM_THREADS", "4")  # before: each worker got 8 // workers anyway
    assert LocalExecutor(1, threads=8).threads == 4
    assert LocalExecutor(2, threads=8).threads == 2
    assert create_executor("local", threads=2).workers == 2


@pytest.mark.parametrize(
    ("asked", "cores_", "workers"), [(None, 4, 4), (1, 4, 4), (2, 4, 2), (3, 4, 1), (8, 2, 1)]
)
def test_default_workers(asked: int | None, cores_: int, workers: int) -> None:
    assert default_workers(asked, cores=cores_) == workers


@given(asked=st.none() | st.integers(1, 64), cores_=st.integers(1, 256))
def test_default_workers_times_their_threads_fit_the_cores(asked: int | None, cores_: int) -> None:
    workers = default_workers(asked, cores=cores_)
    assert workers >= 1
    assert workers * choose_threads(asked, workers, cores=cores_) <= cores_


def test_create_executor_passes_threads_on(cores: Callable[[int], None]) -> None:
    cores(4)
    local = create_executor("local", threads=2)
    assert isinstance(local, LocalExecutor) and (local.workers, local.threads) == (2, 2)
    local = create_executor("local", workers=3, threads=4)
    assert (local.workers, local.threads) == (3, 1)
    assert create_executor("local").threads == 1
    assert isinstance(create_executor("inline", threads=4), InlineExecutor)
