"""Data-parallel training (gloo on the CPU): 2 processes with half the points each = 1 process.

One pair of processes is spawned for the whole module (``torch.multiprocessing.spawn``, a free
port on 127.0.0.1): it trains every checked method, resumes from a checkpoint, runs the recipe of
:mod:`autobalance.distributed` and records what the checks below compare with a single process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import io
import math
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import given
from hypothesis import strategies as st

import autobalance.distributed
from autobalance import AutoBalance, methods
from autobalance.distributed import (
    RankAverage,
    broadcast_parameters,
    check_process_group,
    init_from_env,
    rank_share,
    shard_points,
)
from autobalance.errors import DistributedError
from autobalance.losses import NamedLosses
from autobalance.threads import apply_threads

WORLD_SIZE = 2
STEPS = 50
#: The methods the issue names (one of each shape), compared to 1e-10 after STEPS steps.
CHECKED = ["adam", "autobalance", "upgrad", "dwa"]
#: Every other method with a per-loss state or statistic, compared to 1e-8 after 20 steps.
OTHERS = ["multiadam", "mtadam", "m-config", "gradnorm", "lr-annealing", "ntk", "uncertainty"]
RESUMED = ["autobalance", "dwa", "upgrad"]
EXAMPLE_PARAMS = {"ntk": {"every": 5}}


# ------------------------------------------------------------------------------ the problem
def fixed_points() -> dict[str, torch.Tensor]:
    """The global point set: 64 residual points in (0, 1) and the two boundary points."""
    generator = torch.Generator().manual_seed(1)
    return {
        "residual": torch.rand(64, 1, generator=generator, dtype=torch.float64),
        "boundary": torch.tensor([[0.0], [1.0]], dtype=torch.float64),
    }


def make_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(1, 8), torch.nn.Tanh(), torch.nn.Linear(8, 8), torch.nn.Tanh(),
        torch.nn.Linear(8, 1),
    ).double()  # fmt: skip


def pinn_losses(net: torch.nn.Module, points: dict[str, torch.Tensor]) -> NamedLosses:
    """-u'' = π² sin(πx), u(0) = u(1) = 0: means over the given points (this rank's share)."""
    x = points["residual"].clone().requires_grad_()
    u = net(x)
    (u_x,) = torch.autograd.grad(u.sum(), x, create_graph=True)
    (u_xx,) = torch.autograd.grad(u_x.sum(), x, create_graph=True)
    residual = u_xx + torch.pi**2 * torch.sin(torch.pi * x)
    boundary = net(points["boundary"])
    return NamedLosses(
        {"residual": residual.pow(2).mean(), "boundary": boundary.pow(2).mean()},
        pointwise={"residual": residual, "boundary": boundary},
    )


def make_method(name: str, net: torch.nn.Module, group: Any) -> Any:
    params = {**(methods.spec(name).example_params or {}), **EXAMPLE_PARAMS.get(name, {})}
    return methods.create(name, net.parameters(), lr=1e-2, process_group=group, **params)


def flat_parameters(net: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()]).clone()


def train(name: str, group: Any, steps: int) -> dict[str, Any]:
    """``steps`` steps of method ``name`` on this rank's share of the fixed points."""
    net = make_net()
    balancer = make_method(name, net, group)
    points = shard_points(fixed_points(), group)
    for _ in range(steps):
        info = balancer.step(pinn_losses(net, points))
    return {"params": flat_parameters(net), "values": dict(info.values)}


def recipe_source() -> str:
    """The recipe for users' own loops, from the docstring of :mod:`autobalance.distributed`."""
    lines = (autobalance.distributed.__doc__ or "").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Recipe for your own loop"))
    start = next(i for i in range(start, len(lines)) if lines[i].endswith("::")) + 1
    body = []
    for line in lines[start:]:
        if line.strip() and not line.startswith("    "):
            break
        body.append(line)
    return textwrap.dedent("\n".join(body))


def run_recipe(*, quiet: bool = True) -> torch.Tensor:
    """Run the recipe in this process; its final parameters."""
    namespace: dict[str, Any] = {"__name__": "recipe"}
    with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
        exec(compile(recipe_source(), "recipe", "exec"), namespace)
    return flat_parameters(namespace["net"])


# ------------------------------------------------------------------------- what ranks record
def counting_all_reduce(counter: list[int]) -> Any:
    original = dist.all_reduce

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        counter.append(args[0].numel())
        return original(*args, **kwargs)

    return wrapped


def collectives_per_step(name: str, group: Any) -> list[int]:
    """The sizes of the all-reduces of one step after the first."""
    net = make_net()
    balancer = make_method(name, net, group)
    points = shard_points(fixed_points(), group)
    balancer.step(pinn_losses(net, points))
    sizes: list[int] = []
    original = dist.all_reduce
    dist.all_reduce = counting_all_reduce(sizes)
    try:
        balancer.step(pinn_losses(net, points))
    finally:
        dist.all_reduce = original
    return sizes


def resumed(name: str, group: Any, rank: int, path: Path) -> torch.Tensor:
    """STEPS // 2 steps, rank 0 saves, fresh objects on every rank load, STEPS // 2 more."""
    net = make_net()
    balancer = make_method(name, net, group)
    points = shard_points(fixed_points(), group)
    for _ in range(STEPS // 2):
        balancer.step(pinn_losses(net, points))
    if rank == 0:
        torch.save({"net": net.state_dict(), "method": balancer.state_dict()}, path)
    dist.barrier(group)
    del net, balancer
    net = make_net()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)  # the checkpoint, not the seed, must give the parameters
    balancer = make_method(name, net, group)
    checkpoint = torch.load(path, weights_only=True)
    net.load_state_dict(checkpoint["net"])
    balancer.load_state_dict(checkpoint["method"])
    for _ in range(STEPS - STEPS // 2):
        balancer.step(pinn_losses(net, points))
    return flat_parameters(net)


def averaged_per_loss(group: Any, rank: int) -> list[list[torch.Tensor | None]]:
    """Rank-dependent per-loss gradients with ``None`` on one rank, on both, or on none."""
    params = [torch.zeros(2, dtype=torch.float64), torch.zeros(3, dtype=torch.float32)]
    scale = float(rank + 1)
    per_loss: list[list[torch.Tensor | None]] = [
        [None if rank == 0 else torch.full((2,), 4.0, dtype=torch.float64), scale * torch.ones(3)],
        [scale * torch.arange(2.0, dtype=torch.float64), None],
    ]
    return RankAverage(group).per_loss_gradients(per_loss, params)


def failures(group: Any, rank: int) -> dict[str, str]:
    """The errors (and skips) that must be the same on every rank."""
    out: dict[str, str] = {}
    try:
        shard_points(torch.zeros(3, 1), group)
    except DistributedError as err:
        out["shard"] = str(err)
    net = make_net()
    opt = AutoBalance(net.parameters(), lr=1e-2, process_group=group)
    losses = pinn_losses(net, shard_points(fixed_points(), group))
    swapped = losses if rank == 0 else dict(reversed(list(losses.items())))
    try:
        opt.step(swapped)
    except DistributedError as err:
        out["names"] = str(err)
    skipping = AutoBalance(net.parameters(), lr=1e-2, nonfinite="skip", process_group=group)
    losses = pinn_losses(net, shard_points(fixed_points(), group))
    if rank == 1:
        losses["boundary"] = losses["boundary"] * math.nan
    info = skipping.step(losses)
    out["skip"] = f"{info.skipped}: {info.reason}"
    return out


def worker(rank: int, port: int, out_dir: str) -> None:
    apply_threads(1)
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD_SIZE),
        LOCAL_WORLD_SIZE=str(WORLD_SIZE),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    launch = init_from_env(timeout=datetime.timedelta(seconds=60))
    group = launch.group
    record: dict[str, Any] = {
        "launch": (launch.rank, launch.world_size, launch.backend, str(launch.device)),
        "trained": {name: train(name, group, STEPS) for name in CHECKED},
        "others": {name: train(name, group, 20) for name in OTHERS},
        "collectives": {name: collectives_per_step(name, group) for name in CHECKED},
        "resumed": {
            name: resumed(name, group, rank, Path(out_dir) / f"{name}.pt") for name in RESUMED
        },
        "averaged": averaged_per_loss(group, rank),
        "failures": failures(group, rank),
    }
    net = make_net()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(float(rank))
    broadcast_parameters(net.parameters(), group)
    record["broadcast"] = flat_parameters(net)
    record["recipe"] = run_recipe()
    torch.save(record, Path(out_dir) / f"rank{rank}.pt")
    del group, net
    launch.close()  # barrier, destroy, collect: no gloo thread left when the interpreter ends
    assert not dist.is_initialized()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """What each of the two spawned ranks recorded."""
    out = tmp_path_factory.mktemp("ranks")
    mp.spawn(worker, args=(free_port(), str(out)), nprocs=WORLD_SIZE, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD_SIZE)]


@pytest.fixture(scope="module")
def single() -> dict[str, dict[str, Any]]:
    """The same runs in this one process with all the points."""
    return {
        **{name: train(name, None, STEPS) for name in CHECKED},
        **{name: train(name, None, 20) for name in OTHERS},
    }


# -------------------------------------------------------------------------------- the checks
def test_ranks_join_a_gloo_group_from_torchrun_variables(ranks: list[dict[str, Any]]) -> None:
    assert [r["launch"] for r in ranks] == [(0, 2, "gloo", "cpu"), (1, 2, "gloo", "cpu")]


@pytest.mark.parametrize("name", CHECKED)
def test_two_processes_give_the_parameters_of_one(
    name: str, ranks: list[dict[str, Any]], single: dict[str, dict[str, Any]]
) -> None:
    expected = single[name]
    for rank in ranks:
        got = rank["trained"][name]
        assert torch.equal(got["params"], ranks[0]["trained"][name]["params"])  # ranks agree
        assert (got["params"] - expected["params"]).abs().max().item() <= 1e-10
        for loss, value in expected["values"].items():
            assert got["values"][loss] == pytest.approx(value, rel=1e-10, abs=1e-14)
    moved = (expected["params"] - flat_parameters(make_net())).abs().max().item()
    assert moved > 1e-3  # the runs really trained


@pytest.mark.parametrize("name", OTHERS)
def test_other_stateful_methods_match_one_process(
    name: str, ranks: list[dict[str, Any]], single: dict[str, dict[str, Any]]
) -> None:
    for rank in ranks:
        diff = (rank["others"][name]["params"] - single[name]["params"]).abs().max().item()
        assert diff <= 1e-8


@pytest.mark.parametrize("name", CHECKED)
def test_a_step_makes_one_gradient_all_reduce_and_one_for_the_values(
    name: str, ranks: list[dict[str, Any]]
) -> None:
    num_params = sum(p.numel() for p in make_net().parameters())
    gradients = 2 if name in ("autobalance", "upgrad") else 1  # per-loss, or one backward pass
    flags = gradients * 6  # one per (loss row, parameter tensor)
    assert ranks[0]["collectives"][name] == [2, gradients * num_params + flags]


@pytest.mark.parametrize("name", RESUMED)
def test_a_run_resumes_from_rank_0s_checkpoint_bit_for_bit(
    name: str, ranks: list[dict[str, Any]]
) -> None:
    for rank in ranks:
        uninterrupted = rank["trained"][name]["params"]
        assert torch.equal(rank["resumed"][name], uninterrupted)


def test_gradients_are_averaged_and_none_only_where_no_rank_reached(
    ranks: list[dict[str, Any]],
) -> None:
    for rank in ranks:
        (a, b), (c, d) = rank["averaged"]
        assert torch.equal(a, torch.full((2,), 2.0, dtype=torch.float64))  # (0 + 4) / 2
        assert torch.equal(b, torch.full((3,), 1.5)) and b.dtype == torch.float32
        assert torch.equal(c, torch.tensor([0.0, 1.5], dtype=torch.float64))
        assert d is None


def test_disagreements_are_errors_on_every_rank(ranks: list[dict[str, Any]]) -> None:
    first, second = (r["failures"] for r in ranks)
    assert first == second
    assert "3 points cannot be split equally over 2 ranks" in first["shard"]
    assert first["names"].startswith("the ranks disagree on the loss names (in order)")
    assert first["skip"] == "True: loss 'boundary' is nan at step 1"


def test_broadcast_gives_every_rank_the_first_ranks_parameters(
    ranks: list[dict[str, Any]],
) -> None:
    for rank in ranks:
        assert torch.equal(rank["broadcast"], flat_parameters(make_net()))


def test_the_documented_recipe_gives_the_same_parameters_on_two_processes_as_on_one(
    ranks: list[dict[str, Any]],
) -> None:
    alone = run_recipe()
    assert (alone - flat_parameters(make_net())).abs().max().item() > 0  # a different net
    for rank in ranks:
        assert (rank["recipe"] - alone).abs().max().item() <= 1e-10


def test_the_recipe_runs_under_torchrun(tmp_path: Path) -> None:
    script = tmp_path / "recipe.py"
    script.write_text(recipe_source())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    command += ["--master-addr", "127.0.0.1", "--master-port"]
    launch = [*command, str(free_port()), str(script)]
    together = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=300)
    assert together.returncode == 0, together.stderr
    alone = io.StringIO()
    with contextlib.redirect_stdout(alone):
        run_recipe(quiet=False)
    assert together.stdout == alone.getvalue() and together.stdout.startswith("residual ")


# --------------------------------------------------------------------- single-process checks
def test_one_process_is_the_default_and_needs_no_group(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    launch = init_from_env()
    assert (launch.group, launch.rank, launch.world_size, launch.is_main) == (None, 0, 1, True)
    points = torch.arange(6.0).reshape(3, 2)
    assert shard_points(points, None) is points
    net = make_net()
    before = flat_parameters(net)
    broadcast_parameters(net.parameters(), None)
    assert torch.equal(flat_parameters(net), before)


def test_launch_variables_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(DistributedError, match="RANK, MASTER_ADDR, MASTER_PORT is not"):
        init_from_env()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(DistributedError, match="WORLD_SIZE='two' is not an integer"):
        init_from_env()


@pytest.mark.parametrize("name", ["autobalance", "adam", "upgrad", "dwa", "mtadam", "multiadam"])
def test_a_process_group_that_is_not_one_is_refused(name: str) -> None:
    with pytest.raises(DistributedError, match="process_group must be a torch.distributed"):
        make_method(name, make_net(), "WORLD")
    assert check_process_group(None) is None


def test_process_group_is_not_a_catalogued_hyperparameter() -> None:
    for name in methods.names():
        assert "process_group" not in methods.METHODS.parameters(name)


@given(
    world_size=st.integers(1, 8),
    per_rank=st.integers(0, 5),
    columns=st.integers(1, 3),
)
def test_rank_shares_are_equal_and_put_back_together_give_the_points(
    world_size: int, per_rank: int, columns: int
) -> None:
    points = torch.arange(float(world_size * per_rank * columns)).reshape(-1, columns)
    shares = [rank_share(points, rank, world_size) for rank in range(world_size)]
    assert all(share.shape == (per_rank, columns) for share in shares)
    assert torch.equal(torch.cat(shares), points)
    batch = rank_share({"residual": points, "boundary": points[:, :1]}, world_size - 1, world_size)
    assert torch.equal(batch["boundary"], shares[-1][:, :1])


def test_rank_shares_refuse_what_cannot_be_split_equally() -> None:
    with pytest.raises(DistributedError, match="boundary: 5 points cannot be split equally"):
        rank_share({"boundary": torch.zeros(5, 1)}, 0, 2)
    with pytest.raises(DistributedError, match=r"rank must be an integer in \[0, 2\), got 2"):
        rank_share(torch.zeros(4, 1), 2, 2)
    with pytest.raises(DistributedError, match="world_size must be an integer >= 1, got 0"):
        rank_share(torch.zeros(4, 1), 0, 0)
    with pytest.raises(DistributedError, match="points must be a tensor with one row per point"):
        rank_share(torch.tensor(1.0), 0, 1)


def test_closing_a_launch_ends_only_the_group_it_started(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    with init_from_env() as alone:  # one process: nothing to close
        assert alone.group is None
    store = dist.HashStore()
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        described = init_from_env()  # a group this code started: close() leaves it alone
        assert (described.world_size, described.owns_group) == (1, False)
        described.close()
        assert dist.is_initialized()
        owner = dataclasses.replace(described, owns_group=True)
        with owner:
            pass
        assert not dist.is_initialized()
        owner.close()  # closed twice: nothing to do
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
