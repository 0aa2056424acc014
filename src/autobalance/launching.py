"""Joining and leaving the process group that ``torchrun`` describes (used by
:mod:`autobalance.distributed`, which re-exports everything here).

**Leaving cleanly.**  A gloo process group runs its collectives on C++ worker threads.  After a
collective returns, the thread that ran it may still hold the last reference to the work's
tensors; when such a tensor was made in Python, dropping it takes the GIL.  If the interpreter
is already shutting down at that moment, Python ends the thread from under the C++ frame and
the process aborts with ``terminate called without an active exception`` (SIGABRT), after the
run's results were written: more often on a loaded machine, where the worker thread lags the
main thread.  ``destroy_process_group()`` alone does not prevent it: for gloo it only forgets
the group (its threads live until the last reference to the group object goes, and the
optimizers here keep such references in reference cycles, freed only by the garbage
collector, possibly during shutdown).  :meth:`Launch.close` therefore

1. waits on a barrier, so every rank has finished its collectives (no rank tears down while a
   peer still sends to it);
2. destroys the group;
3. runs the garbage collector, so objects that referred to the group and sit in reference
   cycles go now, while the interpreter is whole, and with them the group's threads.

Use ``with init_from_env() as launch:`` or call ``launch.close()`` before the script ends
(delete your optimizers first, or let them go out of scope, so that the group itself goes).
"""

from __future__ import annotations

import datetime
import gc
import os
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import torch
import torch.distributed as dist

from autobalance.errors import DistributedError

__all__ = ["LAUNCH_VARIABLES", "Launch", "default_backend", "init_from_env"]

#: The variables ``torchrun`` sets that :func:`init_from_env` needs when ``WORLD_SIZE`` > 1.
LAUNCH_VARIABLES = ("RANK", "MASTER_ADDR", "MASTER_PORT")


def default_backend() -> str:
    """``"nccl"`` when CUDA GPUs are visible and torch has NCCL, else ``"gloo"``."""
    if torch.cuda.is_available() and dist.is_nccl_available():
        return "nccl"
    return "gloo"


@dataclass(frozen=True)
class Launch:
    """How this process was launched: its group, rank and the device it should compute on.

    A context manager: leaving ``with init_from_env() as launch:`` calls :meth:`close`.

    Attributes:
        group: the process group (``torch.distributed.group.WORLD``), ``None`` in one process;
            pass it as ``process_group=`` to any optimizer or method.
        rank: this process's rank (0 in one process).
        world_size: the number of processes (1 in one process).
        local_rank: this process's rank on its machine (``LOCAL_RANK``).
        device: where this rank computes: ``cuda:<LOCAL_RANK>`` with NCCL, the CPU with gloo;
            in one process, the first GPU when there is one, else the CPU.
        backend: ``"nccl"``, ``"gloo"``, ... (``None`` in one process).
        owns_group: whether :func:`init_from_env` started the group (then :meth:`close` ends
            it; a group your own code started is left to your code).
    """

    group: dist.ProcessGroup | None
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """Whether this process writes outputs and checkpoints (rank 0)."""
        return self.rank == 0

    def close(self, *, wait_for_peers: bool = True) -> None:
        """Leave the group cleanly (module docstring): barrier, destroy, garbage-collect.

        A no-op in one process, for a group this launch did not start, or once closed.
        ``wait_for_peers=False`` skips the barrier (after an error, when a peer may never
        reach it).
        """
        if self.group is None or not self.owns_group or not dist.is_initialized():
            return
        if wait_for_peers:
            dist.barrier(group=self.group)
        dist.destroy_process_group()
        gc.collect()

    def __enter__(self) -> Launch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close(wait_for_peers=exc_type is None)


def init_from_env(
    backend: str | None = None, *, timeout: datetime.timedelta | None = None
) -> Launch:
    """Join the process group that ``torchrun`` describes in the environment, or stay single.

    * ``WORLD_SIZE`` unset or ``1``: one process, ``Launch.group`` is ``None`` (a plain
      ``python`` run, or ``torchrun --nproc-per-node 1``: bit-identical to no group at all);
    * otherwise ``init_process_group(backend, init_method="env://")`` with ``backend`` (default
      :func:`default_backend`: NCCL on GPUs, gloo on CPUs); with NCCL each rank takes the GPU
      ``LOCAL_RANK`` (one GPU per process on each machine);
    * already initialised (e.g. by your own code): the existing default group is described
      (and :meth:`Launch.close` leaves it alone).

    Args:
        backend: force a backend (``"gloo"`` on a GPU machine runs the collectives on the CPU).
        timeout: passed to ``init_process_group``.
    """
    local_rank = _int_variable("LOCAL_RANK", default=0)
    if dist.is_available() and dist.is_initialized():
        chosen = str(dist.get_backend())
        return Launch(
            dist.group.WORLD,
            dist.get_rank(),
            dist.get_world_size(),
            local_rank,
            _rank_device(chosen, local_rank),
            chosen,
        )
    world_size = _int_variable("WORLD_SIZE", default=1)
    if world_size == 1:
        device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
        return Launch(None, 0, 1, 0, device, None)
    if not dist.is_available():
        raise DistributedError(f"WORLD_SIZE={world_size} but this torch build has no distributed")
    missing = [name for name in LAUNCH_VARIABLES if name not in os.environ]
    if missing:
        raise DistributedError(
            f"WORLD_SIZE={world_size} is set but {', '.join(missing)} is not: launch with "
            "torchrun (e.g. torchrun --nproc-per-node 2 script.py), which sets them all"
        )
    rank = _int_variable("RANK", default=0)
    chosen = backend or default_backend()
    device = _rank_device(chosen, local_rank)
    if chosen == "nccl":
        _check_gpus_for_nccl(_int_variable("LOCAL_WORLD_SIZE", default=local_rank + 1))
        torch.cuda.set_device(device)
    kwargs: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    dist.init_process_group(
        chosen, init_method="env://", rank=rank, world_size=world_size, **kwargs
    )
    return Launch(dist.group.WORLD, rank, world_size, local_rank, device, chosen, True)


def _int_variable(name: str, *, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise DistributedError(f"environment variable {name}={raw!r} is not an integer >= 0")
    return value


def _rank_device(backend: str, local_rank: int) -> torch.device:
    if backend == "nccl":
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _check_gpus_for_nccl(processes_here: int) -> None:
    if not torch.cuda.is_available():
        raise DistributedError("backend 'nccl' needs CUDA GPUs but none is visible: use 'gloo'")
    gpus = torch.cuda.device_count()
    if processes_here > gpus:
        raise DistributedError(
            f"backend 'nccl' needs one GPU per process: {processes_here} processes on this "
            f"machine but {gpus} GPU(s) visible; launch at most {gpus} per machine "
            "(--nproc-per-node) or use backend 'gloo'"
        )
