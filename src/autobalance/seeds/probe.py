"""Measure, in this process, whether training S seeds as one batched model is faster than S
separate runs: the throughput ratio

    speedup = S · t_separate / t_batched                                              (3)

with ``t_batched`` the median time of one batched step of the S seeds and ``t_separate`` the
median time of one ordinary step of one seed (its own forward pass, ``balancer.step``,
scheduler), the two measured in alternating rounds so that a change of load hits both.  On a
GPU the clock is read after ``torch.cuda.synchronize()``.  Nothing is written: the probe's runs
are built in memory and dropped (the global RNG is put back, ``torch.random.fork_rng``).

Where every run starts a process of its own (a sweep's local or Ray workers), S separate runs
also pay S start-ups (a Python process importing torch and autobalance) where the batched runs
pay one; over ``N`` steps the predicted ratio of the whole runs is

    speedup_runs = S · (N · t_separate + c) / (N · t_batched + c)                     (4)

with ``c`` = :data:`PROCESS_START_S`.  ``--batch-seeds auto`` batches a group when (4) is at
least :data:`AUTO_MIN_SPEEDUP` (``c = 0`` for runs executed in the sweep's own process).
"""

from __future__ import annotations

import functools
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from autobalance.experiments.config import RunConfig
from autobalance.experiments.training_run import TrainingRun
from autobalance.seeds.fused import fuse_seeds
from autobalance.seeds.support import check_batchable
from autobalance.seeds.training import _batched_step, _Seed
from autobalance.threads import choose_threads, using_threads

__all__ = [
    "AUTO_MIN_SPEEDUP",
    "PROCESS_START_S",
    "measure_speedup",
    "run_speedup",
    "step_times",
    "step_times_by_size",
]

#: ``--batch-seeds auto`` batches when the predicted speedup (4) is at least this.
AUTO_MIN_SPEEDUP = 1.1
#: CPU seconds of one run's process start: ``python -c "import torch,
#: autobalance.experiments.runner"`` took 2.3-2.5 s of CPU time (user + sys, 3 tries) on the
#: 2-core development machine (torch 2.13 CPU); wall time is larger under load, as the steps' is.
PROCESS_START_S = 2.5


def run_speedup(
    seeds: int, t_batched: float, t_separate: float, steps: int, start_s: float = 0.0
) -> float:
    """The predicted throughput ratio (4) of ``seeds`` runs of ``steps`` steps batched against
    separate (``start_s``: one process start, 0 where the runs share a process)."""
    return seeds * (steps * t_separate + start_s) / (steps * t_batched + start_s)


def measure_speedup(configs: Sequence[RunConfig], *, rounds: int = 5, warmup: int = 2) -> float:
    """The throughput ratio (3) of batching ``configs`` (one configuration, several seeds).

    Raises:
        SeedBatchingError: the runs cannot be batched.
    """
    t_batched, t_separate = step_times(configs, rounds=rounds, warmup=warmup)
    return len(configs) * t_separate / t_batched


def step_times(
    configs: Sequence[RunConfig], *, rounds: int = 5, warmup: int = 2
) -> tuple[float, float]:
    """Median seconds of one batched step of ``configs`` and of one separate step of the first
    (module docstring), measured in ``rounds`` alternating rounds after ``warmup`` of each.

    Raises:
        SeedBatchingError: the runs cannot be batched.
    """
    batched, separate = step_times_by_size(configs, [len(configs)], rounds=rounds, warmup=warmup)
    return batched[len(configs)], separate


def step_times_by_size(
    configs: Sequence[RunConfig],
    sizes: Sequence[int],
    *,
    rounds: int = 5,
    warmup: int = 2,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[dict[int, float], float]:
    """Median seconds of one batched step of the first ``S`` runs of ``configs`` for every ``S``
    in ``sizes``, and of one separate step of the first run (module docstring).

    The runs are built once and take one batched step together; then each round takes one
    batched step of every size, then one separate step (``warmup`` rounds first, not timed).
    Each size steps as training does: with its own fused optimizer of its seeds where the method
    allows one (:mod:`autobalance.seeds.fused`; never written back), else through the seeds'
    balancers (whose states then drift apart in step count: harmless for timing).

    Raises:
        SeedBatchingError: the runs cannot be batched.
        ValueError: a size is not between 1 and ``len(configs)``.
    """
    check_batchable(configs)
    bad = [s for s in sizes if not 1 <= s <= len(configs)]
    if bad or not sizes:
        raise ValueError(f"sizes must lie between 1 and {len(configs)} seeds, got {list(sizes)}")
    times: dict[int | str, list[float]] = {s: [] for s in sizes}
    times["separate"] = []
    with using_threads(choose_threads(configs[0].threads)), torch.random.fork_rng():
        seeds = []
        for config in configs[: max(sizes)]:
            run = TrainingRun(config, Path(os.devnull))
            seeds.append(_Seed(run, torch.get_rng_state()))
        single = TrainingRun(configs[0], Path(os.devnull))
        sync = torch.cuda.synchronize if single.device.type == "cuda" else (lambda: None)

        def separate() -> None:
            batch = single.next_batch()
            single.balancer.step(single.problem.losses(single.model, batch))
            single.scheduler.step()

        _batched_step(seeds, check=False)  # every seed's first step: the loss names are fixed
        engines = {s: fuse_seeds([seed.run.balancer for seed in seeds[:s]]) for s in sizes}
        steps: list[tuple[int | str, Callable[[], object]]] = [
            (s, functools.partial(_batched_step, seeds[:s], check=False, fused=engines[s]))
            for s in sizes
        ]
        steps.append(("separate", separate))
        for _ in range(warmup):
            for _, step in steps:
                step()
        for _ in range(rounds):
            for name, step in steps:
                sync()
                tic = clock()
                step()
                sync()
                times[name].append(clock() - tic)
    medians = {name: statistics.median(values) for name, values in times.items()}
    separate_s = medians.pop("separate")
    return {int(s): t for s, t in medians.items()}, separate_s
