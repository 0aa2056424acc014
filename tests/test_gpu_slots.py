"""Sweeps on GPUs without a GPU: the device count and CUDA_VISIBLE_DEVICES are faked."""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch

from autobalance.errors import ConfigError
from autobalance.experiments import executors
from autobalance.experiments.executors import LocalExecutor
from autobalance.experiments.gpu_slots import gpu_slots, needs_gpu, visible_gpus


@pytest.fixture
def four_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)


@pytest.mark.usefixtures("four_gpus")
def test_workers_are_spread_over_the_gpus_several_per_gpu() -> None:
    assert visible_gpus() == ["0", "1", "2", "3"]
    assert gpu_slots(6) == ["0", "1", "2", "3", "0", "1"]
    assert gpu_slots(2) == ["0", "1"]


@pytest.mark.usefixtures("four_gpus")
def test_a_fraction_of_a_gpu_per_run_shares_each_gpu() -> None:
    assert gpu_slots(100, 0.5) == ["0", "0", "1", "1", "2", "2", "3", "3"]
    assert gpu_slots(100, 1 / 3) == [gpu for gpu in "0123" for _ in range(3)]
    assert gpu_slots(3, 0.25) == ["0", "0", "0"]  # never more slots than workers
    assert gpu_slots(100, 1) == ["0", "1", "2", "3"]


@pytest.mark.usefixtures("four_gpus")
def test_several_gpus_per_run_are_disjoint() -> None:
    assert gpu_slots(100, 2) == ["0,1", "2,3"]
    assert gpu_slots(100, 3) == ["0,1,2"]
    with pytest.raises(ConfigError, match="--gpus-per-run 5 asked for, but only 4 GPU"):
        gpu_slots(1, 5)
    for bad in (0, -1, 1.5):
        with pytest.raises(ConfigError, match=f"invalid --gpus-per-run {bad}"):
            gpu_slots(1, bad)


def test_the_parents_visible_gpus_are_the_ones_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert gpu_slots(3) == ["3", "5", "3"]
    assert gpu_slots(9, 0.5) == ["3", "3", "5", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpu_slots(3) is None  # no GPU: nothing is set, CPU sweeps unchanged
    with pytest.raises(ConfigError, match="--gpus-per-run 1.0 asked for, but no GPU is visible"):
        gpu_slots(3, 1.0)


def test_which_runs_need_a_gpu() -> None:
    assert needs_gpu({"config": {"device": "cuda"}}, cluster_has_gpus=False)
    assert needs_gpu({"config": {"device": "cuda:1"}}, cluster_has_gpus=True)
    assert needs_gpu({"config": {"device": "auto"}}, cluster_has_gpus=True)
    assert not needs_gpu({"config": {"device": "auto"}}, cluster_has_gpus=False)
    assert not needs_gpu({"config": {"device": "cpu"}}, cluster_has_gpus=True)


def report_visible(job: dict[str, Any]) -> dict[str, Any]:
    """A job that says which GPUs its worker process sees."""
    return {"status": "ok", "name": job["name"], "visible": os.environ["CUDA_VISIBLE_DEVICES"]}


def test_each_local_worker_sees_its_own_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,7")  # what the spawned workers inherit
    executor = LocalExecutor(2, threads=1)
    try:
        assert (executor.workers, executor.gpu_slots) == (2, ["4", "7"])
        jobs = [{"name": str(i)} for i in range(3)]
        seen = {o["name"]: o["visible"] for _, o in executor.run(report_visible, jobs)}
    finally:
        executor.close()
    assert (seen["0"], seen["1"]) == ("4", "7")  # the first two at once, one GPU each
    assert seen["2"] in ("4", "7")  # the third on the GPU that came free
    assert sorted(executor._free_slots) == ["4", "7"]  # every slot came back


def test_fewer_workers_when_gpus_allow_fewer_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    executor = executors.create_executor("local", workers=8, threads=1, gpus_per_run=1)
    try:
        assert (executor.workers, getattr(executor, "gpu_slots", None)) == (2, ["0", "1"])
    finally:
        executor.close()
