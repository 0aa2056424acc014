"""Data-parallel runs: ``torchrun --nproc-per-node N -m autobalance run ...``.

:func:`~autobalance.experiments.runner.train` joins the process group that ``torchrun``
describes (:func:`autobalance.distributed.init_from_env`) and asks the :class:`DataParallel`
built here at a few points; in one process (no ``WORLD_SIZE``, or ``WORLD_SIZE=1``) every
answer is the single-process one and nothing is communicated, so a plain run is unchanged.

With ``R`` ranks:

* **points**: every rank draws the step's global point sets exactly as one process draws them
  (the same seed, the same generator), then keeps its equal, contiguous share of every set
  (:func:`~autobalance.distributed.rank_share`); a set whose size is not a multiple of ``R`` is
  refused, naming it.  Every problem's losses are means of per-point terms over their sets
  (``Problem.mean_square_losses``), so the average over ranks of the rank losses is the
  single-process loss; :meth:`DataParallel.check_shares` verifies at the first step that each
  loss's per-point terms have one row per point of its set, else refuses the run;
* **the method** gets ``process_group=``: loss values and per-loss gradients are averaged over
  the ranks in one flat all-reduce per step (:mod:`autobalance.distributed`);
* **decisions**: the wall-clock (step time, time budget, time-based checkpoints) and a stop
  signal differ between ranks; one all-reduce of three numbers per step (:class:`Agreement`) makes
  every rank take the slowest rank's clock and stop when any rank was asked to, so that all
  ranks leave the loop, evaluate and checkpoint at the same step;
* **files**: rank 0 alone writes (config, tables, checkpoints, metrics, plot); every rank
  evaluates (no collective) and loads the checkpoint to resume, which needs the same ``R``;
* **per-point weights** (``rba``, ``self_adaptive``): stay with their rank's points (each rank
  weights the fixed share it evaluates); a checkpoint holds every rank's share
  (``variants_by_rank``).  RBA's normaliser and SA-PINN's ascent scale are per rank, so these
  runs are close to, not equal to, one process (see :mod:`autobalance.distributed`);
* **backend**: NCCL with device ``cuda:LOCAL_RANK`` when the run's device is CUDA (``auto`` on
  a machine with GPUs), gloo on the CPU otherwise.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from autobalance.distributed import broadcast_parameters, rank_share
from autobalance.errors import DistributedError
from autobalance.experiments.interrupts import StopFlag
from autobalance.launching import Launch, init_from_env
from autobalance.losses import NamedLosses

__all__ = ["Agreement", "DataParallel", "is_main_process", "joined"]


def is_main_process() -> bool:
    """Whether this process prints and writes: rank 0 under ``torchrun``, or a plain process."""
    return os.environ.get("RANK", "0") == "0"


@dataclass
class DataParallel:
    """This rank's part in a run (module docstring); ``launch.group`` is ``None`` in one process."""

    launch: Launch
    _shares_checked: bool = False

    @classmethod
    def single(cls) -> DataParallel:
        """One process: no group, nothing communicated."""
        return cls(Launch(None, 0, 1, 0, torch.device("cpu"), None))

    @property
    def group(self) -> dist.ProcessGroup | None:
        return self.launch.group

    @property
    def rank(self) -> int:
        return self.launch.rank

    @property
    def world_size(self) -> int:
        return self.launch.world_size

    @property
    def is_main(self) -> bool:
        """Whether this rank writes the run's files."""
        return self.launch.is_main

    @property
    def device(self) -> torch.device | None:
        """The device this rank must compute on (``cuda:LOCAL_RANK`` with NCCL), else ``None``:
        the run's own device."""
        return self.launch.device if self.launch.backend == "nccl" else None

    # --------------------------------------------------------------------------------- points
    def shard(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """This rank's share of every point set of ``batch`` (``batch`` itself in one process)."""
        if self.group is None:
            return batch  # the very mapping: one process is unchanged
        return dict(rank_share(batch, self.rank, self.world_size))

    def check_shares(self, losses: Mapping[str, Tensor], problem: str) -> None:
        """Refuse (once, at the first step) losses that are not means of per-point terms with
        one row per point of their set: averaging them over ranks would not give the loss."""
        if self.group is None or self._shares_checked:
            return
        pointwise = losses.pointwise if isinstance(losses, NamedLosses) else {}
        points = losses.points if isinstance(losses, NamedLosses) else {}
        for name in losses:
            term, where = pointwise.get(name), points.get(name)
            if term is None or where is None or term.shape[:1] != where.shape[:1]:
                raise DistributedError(
                    f"problem {problem!r}: loss {name!r} is not the mean of one term per point of "
                    "its point set, so its average over ranks is not its value on all points; "
                    "data-parallel runs need losses built with Problem.mean_square_losses"
                )
        self._shares_checked = True

    def broadcast_parameters(self, params: Sequence[Tensor]) -> None:
        """Every rank starts from rank 0's values (a no-op in one process)."""
        broadcast_parameters(params, self.group)

    # ------------------------------------------------------------------------------ decisions
    def agreement(self, stop: StopFlag) -> Agreement:
        """The per-step decisions that depend on each rank's clock and signals (module
        docstring): agreed by all ranks, or read directly in one process."""
        return Agreement(self, stop)

    def barrier(self) -> None:
        """Wait for every rank (e.g. before rank 0 changes the run directory)."""
        if self.group is not None:
            dist.barrier(group=self.group)

    # ----------------------------------------------------------------------------- checkpoints
    def checkpoint_entries(self, variant_state: Mapping[str, Any]) -> dict[str, Any]:
        """What a checkpoint adds in a data-parallel run: ``world_size`` and every rank's
        variant state (gathered to every rank; nothing in one process)."""
        if self.group is None:
            return {}
        states: list[Any] = [None] * self.world_size
        dist.all_gather_object(states, _to_cpu(variant_state), group=self.group)
        return {"world_size": self.world_size, "variants_by_rank": states}

    def variant_state(self, ckpt: Mapping[str, Any], where: str) -> Any:
        """This rank's variant state in ``ckpt``; a clear error when it was written by another
        number of processes."""
        saved = int(ckpt.get("world_size", 1))
        if saved != self.world_size:
            raise DistributedError(
                f"cannot resume {where}: it was written by a run on {saved} process(es) and this "
                f"run has {self.world_size}; resume with the same number of processes "
                f"(torchrun --nproc-per-node ... giving {saved} in all)"
            )
        if self.group is None:
            return ckpt.get("variants")
        return ckpt["variants_by_rank"][self.rank]


class Agreement:
    """One clock, stop flag and checkpoint timer for every rank of a run.

    :meth:`sync` (after each step, every rank) takes the largest over ranks of the training
    clock, the stop flag and the time since the last checkpoint in one all-reduce of three
    numbers; :meth:`stop_requested` and :meth:`since` then give the agreed values.  In one
    process nothing is communicated and both read the flag and the clock when asked, exactly
    as a run without this class.
    """

    def __init__(self, data_parallel: DataParallel, stop: StopFlag) -> None:
        self._dp, self._stop = data_parallel, stop
        self._stopping, self._since = False, 0.0

    def sync(self, wall_s: float, saved_at: float) -> float:
        """The training clock every rank uses (the slowest rank's); ``saved_at``: the
        ``time.monotonic()`` of this rank's last checkpoint."""
        dp = self._dp
        if dp.group is None:
            return wall_s
        device = dp.launch.device if dp.launch.backend == "nccl" else torch.device("cpu")
        since = time.monotonic() - saved_at
        numbers = torch.tensor(
            [wall_s, float(self._stop.requested), since], dtype=torch.float64, device=device
        )
        dist.all_reduce(numbers, op=dist.ReduceOp.MAX, group=dp.group)
        wall, stopping, self._since = numbers.tolist()
        self._stopping = self._stopping or stopping > 0
        return float(wall)

    def stop_requested(self) -> bool:
        """Whether the run must stop (some rank got SIGINT/SIGTERM)."""
        return self._stop.requested if self._dp.group is None else self._stopping

    def since(self, saved_at: float) -> float:
        """Seconds since the last checkpoint (the largest over ranks at the last sync)."""
        return time.monotonic() - saved_at if self._dp.group is None else self._since


def _to_cpu(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach().cpu()
    if isinstance(value, Mapping):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_cpu(v) for v in value)
    return value


@contextmanager
def joined(device: torch.device) -> Iterator[DataParallel]:
    """Join ``torchrun``'s group for a run on ``device`` (NCCL for CUDA, gloo for the CPU) and
    leave it cleanly at the end (:meth:`~autobalance.launching.Launch.close`); one process
    when the environment describes none."""
    launch = init_from_env("nccl" if device.type == "cuda" else "gloo")
    failed = True
    try:
        yield DataParallel(launch)
        failed = False
    finally:
        launch.close(wait_for_peers=not failed)
