"""``torchrun --nproc-per-node 2 -m autobalance run ...`` (gloo on the CPU) against one process.

The shape of the issue's acceptance command, on a small Helmholtz run (fewer points and steps):
two processes give one process's relative L2 error to 1e-8 and its parameters to 1e-10; a
two-process run killed with SIGKILL after a checkpoint resumes on two processes and ends where
the uninterrupted run ends; resuming it on another number of processes is a clear error.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from autobalance.distributed import rank_share
from autobalance.errors import DistributedError
from autobalance.experiments.config import RunConfig
from autobalance.experiments.data_parallel import DataParallel
from autobalance.experiments.interrupts import StopFlag
from autobalance.experiments.runner import load_checkpoint, train
from autobalance.launching import Launch
from autobalance.losses import NamedLosses

STEPS = 120
#: ``autobalance run`` arguments after the output directory (a small Helmholtz run).
RUN = [
    "helmholtz", "--method", "autobalance", "--dtype", "float64", "--seed", "0",
    "--steps", str(STEPS), "--param", "n_residual=64", "--param", "n_boundary=16",
    "--param", "n_eval=21", "--width", "16", "--depth", "2", "--checkpoint-every", "10",
    "--eval-every", "40", "--no-progress",
]  # fmt: skip
TIMEOUT_S = 300


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def command(out: Path, processes: int, *extra: str) -> list[str]:
    """``autobalance run`` in one process, or under torchrun with ``processes`` ranks."""
    run = ["-m", "autobalance", "run", *RUN, "--out", str(out), *extra]
    if processes == 1:
        return [sys.executable, *run]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes)]
    return [*launcher, "--master-addr", "127.0.0.1", "--master-port", str(free_port()), *run]


def environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}


def run(out: Path, processes: int, *extra: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        command(out, processes, *extra),
        env=environment(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def final_parameters(out: Path) -> torch.Tensor:
    model = load_checkpoint(out / "checkpoint.pt")["model"]
    return torch.cat([t.reshape(-1) for t in model.values()])


def rel_l2(out: Path) -> float:
    return float(json.loads((out / "metrics.json").read_text())["rel_l2"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One process, two processes, and the stdout of each."""
    root = tmp_path_factory.mktemp("data-parallel")
    alone, together = root / "one", root / "two"
    printed_alone = run(alone, 1).stdout
    printed_together = run(together, 2).stdout
    return {"one": alone, "two": together, "stdout": (printed_alone, printed_together)}


def test_two_processes_give_the_error_and_parameters_of_one(runs: dict[str, Any]) -> None:
    one, two = rel_l2(runs["one"]), rel_l2(runs["two"])
    assert one == pytest.approx(two, rel=1e-8)
    difference = (final_parameters(runs["two"]) - final_parameters(runs["one"])).abs().max()
    assert difference.item() <= 1e-10
    header, *rows = (runs["two"] / "eval.csv").read_text().splitlines()
    column = header.split(",").index("rel_l2")
    errors = [float(row.split(",")[column]) for row in rows]
    assert len(errors) == 1 + STEPS // 40 and errors[-1] < 0.9 * errors[0]  # it trained


def test_rank_0_alone_reports_and_writes(runs: dict[str, Any]) -> None:
    printed_alone, printed_together = runs["stdout"]
    assert printed_together.count("rel L2") == 1  # one table, not one per rank
    assert printed_alone.splitlines()[0] == printed_together.splitlines()[0]
    metrics = json.loads((runs["two"] / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["steps"] == STEPS
    checkpoint = load_checkpoint(runs["two"] / "checkpoint.pt")
    assert checkpoint["world_size"] == 2 and len(checkpoint["variants_by_rank"]) == 2
    assert "world_size" not in load_checkpoint(runs["one"] / "checkpoint.pt")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the ranks in /proc")
def test_a_killed_two_process_run_resumes_where_it_would_have_ended(
    runs: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "killed"
    job = subprocess.Popen(
        command(out, 2),
        env=environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while checkpoint_step(out) < 10:
            assert job.poll() is None, "the run ended before a checkpoint after step 0"
            assert time.monotonic() < deadline, "no checkpoint after step 0 in time"
            time.sleep(0.05)
    finally:
        for pid in [*descendants(job.pid), job.pid]:  # the ranks (own sessions) and torchrun
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        job.wait(timeout=60)
    killed_at = checkpoint_step(out)
    assert 10 <= killed_at < STEPS and not (out / "metrics.json").exists()

    config = RunConfig.from_dict(load_checkpoint(out / "checkpoint.pt")["config"])
    with pytest.raises(DistributedError, match="written by a run on 2 process"):
        train(config, out, resume=True, progress=False)  # one process
    assert checkpoint_step(out) == killed_at  # the refused resume changed nothing

    run(out, 2, "--resume")
    assert torch.equal(final_parameters(out), final_parameters(runs["two"]))
    assert rel_l2(out) == rel_l2(runs["two"])


def descendants(pid: int) -> list[int]:
    """The processes started by ``pid`` and by them (torchrun starts each rank in its own
    session, so killing torchrun's process group would leave the ranks running)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def checkpoint_step(out: Path) -> int:
    """The step of ``out``'s checkpoint, ``-1`` before the first one is written."""
    try:
        return int(torch.load(out / "checkpoint.pt", weights_only=True)["step"])
    except (FileNotFoundError, EOFError, RuntimeError):
        return -1


# --------------------------------------------------------------------- without processes
def rank(of: int, world_size: int) -> DataParallel:
    """Rank ``of`` of ``world_size`` without a group: only what needs no collective is used."""
    group: Any = object()
    return DataParallel(Launch(group, of, world_size, of, torch.device("cpu"), "gloo"))


def test_each_rank_keeps_its_share_of_every_point_set() -> None:
    batch = {"residual": torch.arange(8.0).reshape(4, 2), "boundary": torch.arange(2.0)[:, None]}
    assert DataParallel.single().shard(batch) is batch
    shares = [rank(r, 2).shard(batch) for r in range(2)]
    for name, points in batch.items():
        assert torch.equal(torch.cat([share[name] for share in shares]), points)
    assert torch.equal(shares[1]["residual"], rank_share(batch["residual"], 1, 2))
    with pytest.raises(DistributedError, match="boundary: 2 points cannot be split equally"):
        rank(0, 4).shard({"boundary": torch.zeros(2, 1)})


def test_losses_that_are_not_means_over_their_points_are_refused() -> None:
    points = torch.zeros(4, 1)
    good = NamedLosses(
        {"residual": torch.tensor(1.0)}, pointwise={"residual": points}, points={"residual": points}
    )
    rank(0, 2).check_shares(good, "toy")
    bad = NamedLosses(
        {"residual": torch.tensor(1.0)},
        pointwise={"residual": torch.zeros(2, 1)},
        points={"residual": points},
    )
    with pytest.raises(DistributedError, match="problem 'toy': loss 'residual' is not the mean"):
        rank(0, 2).check_shares(bad, "toy")
    with pytest.raises(DistributedError, match="loss 'plain' is not the mean"):
        rank(0, 2).check_shares({"plain": torch.tensor(1.0)}, "toy")
    DataParallel.single().check_shares({"plain": torch.tensor(1.0)}, "toy")  # one process


def test_one_process_agrees_with_itself_and_adds_nothing_to_checkpoints() -> None:
    alone = DataParallel.single()
    stop = StopFlag()
    agreed = alone.agreement(stop)
    assert agreed.sync(1.5, saved_at=time.monotonic() - 2.0) == 1.5
    assert not agreed.stop_requested() and agreed.since(time.monotonic() - 2.0) >= 2.0
    stop.set(signal.SIGTERM)  # read when asked, as a run without data parallelism does
    assert agreed.stop_requested()
    assert alone.checkpoint_entries({"names": []}) == {}
    assert alone.variant_state({"variants": {"names": []}}, "here") == {"names": []}
    with pytest.raises(DistributedError, match="written by a run on 4 process"):
        alone.variant_state({"world_size": 4, "variants_by_rank": []}, "here")
