"""Measure, in this process, whether training S seeds as one batched model is faster than S
separate runs: the throughput ratio

    speedup = S · t_separate / t_batched                                              (3)

with ``t_batched`` the median time of one batched step of the S seeds and ``t_separate`` the
median time of one ordinary step of one seed (its own forward pass, ``balancer.step``,
scheduler), the two measured in alternating rounds so that a change of load hits both.  Nothing
is written: the probe's runs are built in memory and dropped (the global RNG is put back,
``torch.random.fork_rng``).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from autobalance.experiments.config import RunConfig
from autobalance.experiments.training_run import TrainingRun
from autobalance.seeds.support import check_batchable
from autobalance.seeds.training import _batched_step, _Seed
from autobalance.threads import choose_threads, using_threads

__all__ = ["AUTO_MIN_SPEEDUP", "measure_speedup", "step_times"]

#: ``--batch-seeds auto`` batches when the measured speedup (3) is at least this.
AUTO_MIN_SPEEDUP = 1.1


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
    check_batchable(configs)
    times: dict[str, list[float]] = {"batched": [], "separate": []}
    with using_threads(choose_threads(configs[0].threads)), torch.random.fork_rng():
        seeds = []
        for config in configs:
            run = TrainingRun(config, Path(os.devnull))
            seeds.append(_Seed(run, torch.get_rng_state()))
        single = TrainingRun(configs[0], Path(os.devnull))
        sync = torch.cuda.synchronize if single.device.type == "cuda" else (lambda: None)

        def separate() -> None:
            batch = single.next_batch()
            single.balancer.step(single.problem.losses(single.model, batch))
            single.scheduler.step()

        def batched() -> None:
            _batched_step(seeds, check=False)

        for _ in range(warmup):
            batched()
            separate()
        for _ in range(rounds):
            for name, step in (("batched", batched), ("separate", separate)):
                sync()
                tic = time.perf_counter()
                step()
                sync()
                times[name].append(time.perf_counter() - tic)
    return statistics.median(times["batched"]), statistics.median(times["separate"])
