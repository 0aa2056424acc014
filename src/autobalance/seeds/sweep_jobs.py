"""Batched seeds in a sweep: the runs of one configuration that differ only in their seed become
one job, trained by :func:`~autobalance.seeds.training.train_seeds` into the same run
directories, with the same files, as the separate runs would write.

``--batch-seeds`` (``compare``, ``bench``, ``sweep``):

* ``off``: every run is its own job (as before);
* ``on``: every group of two or more runs that can be batched
  (:func:`~autobalance.seeds.support.batching_problem`) is one job;
* ``auto`` (the commands' default): a group is one job when batching is supported *and*
  predicted faster from step times measured in this process
  (:func:`~autobalance.seeds.probe.step_times`, eq. (4) of :mod:`autobalance.seeds.probe`: the
  step-time ratio and, where each run starts its own process, the start-ups the batched runs
  save; at least :data:`~autobalance.seeds.probe.AUTO_MIN_SPEEDUP`).  One line per group says
  what was chosen and the numbers it was chosen by.

A group job resumes like separate runs: complete runs are skipped, and the rest continue from
their checkpoints when all are at the same step (else, and whenever batching refuses the runs,
each remaining run is executed separately by
:func:`~autobalance.experiments.sweep.execute_job`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from autobalance.errors import ConfigError
from autobalance.experiments.config import RunConfig
from autobalance.experiments.executors import Executor, InlineExecutor, Job, Outcome
from autobalance.experiments.interrupts import RunInterrupted
from autobalance.experiments.runs import RunFileError
from autobalance.seeds.probe import AUTO_MIN_SPEEDUP, PROCESS_START_S, run_speedup, step_times
from autobalance.seeds.support import SeedBatchingError, batching_problem

__all__ = ["BATCH_SEEDS_MODES", "execute_sweep_job", "plan_seed_groups", "split_outcome"]

#: The values of ``--batch-seeds``.
BATCH_SEEDS_MODES = ("auto", "on", "off")


def _group_key(config: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in config.items() if k != "seed"}, sort_keys=True)


def plan_seed_groups(
    jobs: Sequence[Job],
    mode: str,
    show: Callable[[str], None] = lambda _: None,
    executor: Executor | None = None,
) -> list[Job]:
    """``jobs`` with each group of batchable seeds replaced by one group job (module docstring);
    ``show`` receives one line per group saying what was chosen and why.  ``executor``: where
    the jobs will run; ``None`` or an :class:`InlineExecutor` runs them in this process (no
    process start-ups to save, ``c = 0`` in eq. (4))."""
    if mode not in BATCH_SEEDS_MODES:
        raise ConfigError(
            f"invalid batch-seeds mode {mode!r}: expected one of {', '.join(BATCH_SEEDS_MODES)}"
        )
    if mode == "off":
        return list(jobs)
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        groups.setdefault(_group_key(job["config"]), []).append(job)
    out: list[Job] = []
    inline = executor is None or isinstance(executor, InlineExecutor)
    start_s = 0.0 if inline else PROCESS_START_S
    for members in groups.values():
        if len(members) < 2:
            out += members
            continue
        configs = [RunConfig.from_dict(job["config"]) for job in members]
        label = f"{configs[0].problem}/{configs[0].method} ×{len(members)} seeds"
        reason = batching_problem(configs)
        speedup, measured = None, ""
        if reason is None and mode == "auto":
            t_batched, t_separate = step_times(configs)
            n = len(configs)
            speedup = run_speedup(n, t_batched, t_separate, configs[0].steps, start_s)
            measured = (
                f"steps measured here: {n} seeds batched {1e3 * t_batched:.1f} ms, one seed "
                f"{1e3 * t_separate:.1f} ms, {n * t_separate / t_batched:.2f}× the throughput"
                + (f"; with {start_s:g} s per run's process start" if start_s else "")
                + f": {speedup:.2f}× predicted over {configs[0].steps} steps"
            )
            if speedup < AUTO_MIN_SPEEDUP:
                reason = f"{measured}, below {AUTO_MIN_SPEEDUP:g}×"
        if reason is not None:
            show(f"{label}: separate runs ({reason})")
            out += members
            continue
        show(f"{label}: batched in one process" + (f" ({measured})" if measured else ""))
        seeds = ",".join(str(c.seed) for c in configs)
        name = f"{members[0]['name'].rsplit('-seed', 1)[0]}-seeds{seeds}"
        out.append({"name": name, "seed_group": list(members), "speedup": speedup})
    return out


def split_outcome(job: Job, outcome: Outcome) -> list[tuple[Job, Outcome]]:
    """The per-run ``(job, outcome)`` pairs of a job's outcome (one pair for a single run)."""
    if "seed_group" not in job:
        return [(job, outcome)]
    runs = outcome.get("runs")
    if not isinstance(runs, list):  # the group job itself raised: every run shares the error
        return [(member, {**outcome, "name": member["name"]}) for member in job["seed_group"]]
    return list(zip(job["seed_group"], runs, strict=True))


def execute_sweep_job(job: Job) -> Outcome:
    """Run one job of a sweep: a single run (``execute_job``) or a group of seeds."""
    from autobalance.experiments.sweep import execute_job

    if "seed_group" not in job:
        return execute_job(job)
    return {"name": job["name"], "status": "group", "runs": _execute_group(job["seed_group"])}


def _execute_group(members: list[Job]) -> list[Outcome]:
    from autobalance.experiments.runner import CHECKPOINT_SECONDS
    from autobalance.experiments.sweep import _log_attempt, execute_job, inspect_run
    from autobalance.seeds.training import train_seeds

    started = time.perf_counter()
    states = [inspect_run(_path(job)) for job in members]
    outcomes: dict[int, Outcome] = {}
    todo = []
    for i, (job, state) in enumerate(zip(members, states, strict=True)):
        if state.kind == "complete":
            outcomes[i] = {"name": job["name"], "status": "skipped", "run_status": state.status}
        else:
            todo.append(i)
    kinds = {states[i].kind == "resumable" for i in todo}
    steps = {states[i].step for i in todo if states[i].kind == "resumable"}
    batched = len(todo) >= 2 and len(kinds) == 1 and len(steps) <= 1
    if batched:
        resume = kinds == {True}
        first = members[todo[0]]
        for i in todo:
            _log_attempt(
                _path(members[i]),
                {
                    "started": time.time(),
                    "pid": os.getpid(),
                    "state": states[i].kind,
                    "resumed_from": states[i].step if resume else None,
                    "reason": states[i].reason,
                    "batched_seeds": len(todo),
                },
            )
        try:
            metrics = train_seeds(
                [RunConfig.from_dict(members[i]["config"]) for i in todo],
                [_path(members[i]) for i in todo],
                progress=False,
                resume=resume,
                overwrite=not resume,
                checkpoint_seconds=first.get("checkpoint_seconds", CHECKPOINT_SECONDS),
                deterministic=bool(first.get("deterministic", False)),
            )
        except RunInterrupted as exc:
            for i in todo:
                outcomes[i] = {
                    "name": members[i]["name"],
                    "status": "interrupted",
                    "step": exc.step,
                }
            return [outcomes[i] for i in range(len(members))]
        except (SeedBatchingError, RunFileError, ConfigError):
            batched = False  # e.g. a checkpoint of another configuration: run them separately
        else:
            share = (time.perf_counter() - started) / len(todo)
            for i, m in zip(todo, metrics, strict=True):
                outcomes[i] = {
                    "name": members[i]["name"],
                    "status": m["status"],
                    "resumed_from": states[i].step if resume else None,
                    "seconds": share,
                    "rel_l2": m.get("rel_l2"),
                    "error": m.get("error"),
                    "batched_seeds": len(todo),
                }
    if not batched:
        for i in todo:
            outcomes[i] = execute_job(members[i])
    return [outcomes[i] for i in range(len(members))]


def _path(job: Job) -> Path:
    return Path(job["run_dir"])
