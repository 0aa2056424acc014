"""The training runner: one PINN, one problem, one balancing method, one seed.

Each step::

    batch = problem.sample(generator, device, dtype)      # fresh points (every resample_every)
    losses = problem.losses(model, batch)                  # {"residual": ..., "boundary": ...}
    info = balancer.step(losses)                           # StepInfo
    scheduler.step()                                       # lr(t) = lr · decay^(t / decay_steps)

Output directory (every file written atomically):

* ``config.json``: the :class:`RunConfig`, with every default filled in;
* ``history.csv``: every ``log_every`` steps, the learning rate, each loss and, where the method
  reports them, each loss's weight, gradient norm, update norm and cosine with the update
  (a method that can skip them, :func:`~autobalance.methods.registry.request_statistics`,
  computes them only on the logged steps; a run that a budget ends on an unlogged step logs
  that last step's losses without them);
* ``eval.csv``: relative L2, relative L1, MSE and L∞ errors on the held-out grid vs step and
  training time, plus the problem's ``extra_errors`` (per output column when there are several,
  unknowns);
* ``metrics.json``: final errors, training wall-clock, cost (backward passes, peak memory), the
  intra-op threads used (``threads``), status, the run's id and the digest of its
  ``config.json`` (so a report never pairs a configuration with another run's metrics);
* ``checkpoint.pt``: model, balancer, scheduler and RNG states, step, config, run id and histories,
  so ``train(config, out_dir, resume=True)`` continues exactly where it stopped (``weights_only``);
* ``solution.png``: reference, prediction and pointwise error on the evaluation grid.

After the first-order steps come the training phases of ``RunConfig.phases`` (L-BFGS,
self-scaled quasi-Newton, Gauss–Newton, ...; :mod:`autobalance.experiments.phase_runs`), logged,
evaluated and checkpointed like steps.

Checkpoints bound the work a crash can lose: one at step 0, then every ``checkpoint_every``
steps *and* every ``checkpoint_seconds`` of wall-clock (default 60 s), and one on SIGINT/SIGTERM
before :class:`~autobalance.experiments.interrupts.RunInterrupted` is raised.  A run killed with
SIGKILL loses at most the steps since its last checkpoint; resumed, it ends bit-identical to an
uninterrupted run on the same machine with the same threads.

A directory is never silently reused: a new run refuses a directory that holds a run's files
(:class:`RunDirectoryError`) unless ``overwrite`` (which first removes exactly those files) or
``resume``.  A resumed run keeps its configuration; only :data:`RESUMABLE_KEYS` may change.

Errors, on the evaluation grid ``{x_i}`` with reference ``u`` and prediction ``û``:
``rel_l2 = ‖û − u‖₂ / ‖u‖₂``, ``rel_l1 = ‖û − u‖₁ / ‖u‖₁``, ``mse = mean (û − u)²``,
``linf = max |û − u|``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from autobalance.errors import ConfigError, NonFiniteLossError
from autobalance.experiments.budget import Budget
from autobalance.experiments.checkpoints import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_SECONDS,
    RESOLVED_KEYS,
    RESUMABLE_KEYS,
    RUN_FILES,
    ResumeConflictError,
    RunDirectoryError,
    check_same_run,
    checkpoint_interval,
    load_checkpoint,
    prepare_run_directory,
    run_files,
)
from autobalance.experiments.config import RunConfig, resolve_device
from autobalance.experiments.data_parallel import DataParallel, joined
from autobalance.experiments.determinism import deterministic_algorithms
from autobalance.experiments.history import history_row, is_logged
from autobalance.experiments.interrupts import RunInterrupted, StopFlag, stop_signals
from autobalance.experiments.io import (
    writable_directory,
    write_json,
)
from autobalance.experiments.phase_runs import run_phases
from autobalance.experiments.progress import progress_bar
from autobalance.experiments.training_run import TrainingRun, build_model
from autobalance.methods.registry import request_statistics
from autobalance.metrics import error_metrics, peak_rss_mb
from autobalance.step_info import StepInfo
from autobalance.threads import choose_threads, using_threads

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_SECONDS",
    "RESUMABLE_CHANGES",
    "RESUMABLE_KEYS",
    "RUN_FILES",
    "ResumeConflictError",
    "RunDirectoryError",
    "RunInterrupted",
    "build_model",
    "checkpoint_interval",
    "errors",
    "load_checkpoint",
    "peak_rss_mb",
    "run_files",
    "train",
]

#: The configuration keys a resumed run may change (the older name of ``RESUMABLE_KEYS``).
RESUMABLE_CHANGES = RESUMABLE_KEYS


def errors(prediction: Tensor, reference: Tensor) -> dict[str, float]:
    """``rel_l2``, ``rel_l1``, ``mse`` and ``linf`` over every point and output component
    (:func:`autobalance.metrics.error_metrics`)."""
    return error_metrics(prediction, reference)


def train(
    config: RunConfig,
    out_dir: str | Path,
    *,
    progress: bool = True,
    resume: bool = False,
    overwrite: bool = False,
    callback: Callable[[StepInfo], None] | None = None,
    checkpoint_seconds: float | None = CHECKPOINT_SECONDS,
    deterministic: bool = False,
) -> dict[str, Any]:
    """Train one PINN and write the run's files to ``out_dir`` (see the module docstring).

    Args:
        config: the run.
        out_dir: created if needed.  A directory holding a run's files is refused unless
            ``resume`` or ``overwrite``.
        progress: show a tqdm progress bar with the current losses on stderr.
        resume: continue from ``out_dir/checkpoint.pt``; ``config`` must be the run's own, except
            for :data:`RESUMABLE_KEYS` (more steps, another budget or checkpoint interval).
        overwrite: remove the run files (:data:`RUN_FILES`) in ``out_dir`` and start afresh.
        callback: called with every step's :class:`StepInfo`.
        checkpoint_seconds: also write a checkpoint whenever this much wall-clock has passed
            since the last one (``None`` or 0: only every ``config.checkpoint_every`` steps).
        deterministic: ``torch.use_deterministic_algorithms(True)`` during the run (changes
            nothing on CPU; on CUDA it trades speed for run-to-run identical results).

    Returns:
        The metrics written to ``metrics.json``.  A divergent run (a loss became NaN or infinite,
        :class:`~autobalance.errors.NonFiniteLossError`) does not raise: its files are written,
        ``status`` is ``"failed"`` and ``error`` holds the step, the loss name and the message.

    Raises:
        AutoBalanceError: invalid configuration (unknown problem, method, parameter, device...);
            :class:`RunDirectoryError` for a directory holding another run; a
            :class:`~autobalance.errors.ConfigError` for a resume whose configuration differs.
        RunFileError: ``resume`` without a readable checkpoint (missing, empty, truncated...).
        OSError: ``out_dir`` is a file, or cannot be created or written (read-only, full);
            its ``filename`` names the path.  Files written before stay intact.
        RunInterrupted: SIGINT or SIGTERM arrived; a checkpoint of the last step was written.

    Data-parallel: launched by ``torchrun --nproc-per-node N`` (``WORLD_SIZE`` > 1), the run
    joins the process group and trains on N ranks, rank 0 writing the files
    (:mod:`~autobalance.experiments.data_parallel`).

    Threads: the run uses ``choose_threads(config.threads)`` intra-op threads
    (:mod:`autobalance.threads`: one unless ``config.threads`` asks for more, never more than
    this process's cores) and puts the caller's thread settings back when it returns.
    """
    if not isinstance(config, RunConfig):
        raise ConfigError(
            f"train() needs a RunConfig, got {type(config).__name__} (RunConfig.from_dict "
            "makes one of a dict)"
        )
    config.validate()
    threads = using_threads(choose_threads(config.threads))
    with threads, joined(resolve_device(config.device)) as data_parallel:  # torchrun's ranks
        return _train(
            config,
            Path(out_dir),
            progress,
            resume,
            overwrite,
            callback,
            checkpoint_seconds,
            deterministic,
            data_parallel,
        )


def _train(
    config: RunConfig,
    out: Path,
    progress: bool,
    resume: bool,
    overwrite: bool,
    callback: Callable[[StepInfo], None] | None,
    checkpoint_seconds: float | None,
    deterministic: bool,
    data_parallel: DataParallel,
) -> dict[str, Any]:
    """:func:`train` with its threads (and ranks) in effect; rank 0 alone writes."""
    started = time.perf_counter()
    every_s = checkpoint_interval(checkpoint_seconds)
    ckpt = prepare_run_directory(out, resume=resume, overwrite=overwrite)
    if ckpt is not None:  # before anything is built: keys the runner does not resolve
        check_same_run(config, ckpt, out / "checkpoint.pt", skip=RESOLVED_KEYS)
    with stop_signals() as stop, deterministic_algorithms(deterministic):
        run = TrainingRun(config, out, data_parallel)
        if ckpt is not None:
            run.restore(ckpt, out / "checkpoint.pt")
        data_parallel.barrier()  # every rank has read the directory before rank 0 changes it
        if data_parallel.is_main:
            writable_directory(out)
            # Nothing was changed before this point; now the old results give way to this run's.
            for name in RUN_FILES if overwrite else ("metrics.json",) if resume else ():
                with contextlib.suppress(FileNotFoundError):
                    (out / name).unlink()
        metrics = _train_loop(run, ckpt is None, callback, progress, every_s, stop)
        metrics["elapsed_s"] = time.perf_counter() - started
        if data_parallel.is_main:
            write_json(out / "metrics.json", metrics)
    return metrics


def _train_loop(
    run: TrainingRun,
    fresh: bool,
    callback: Callable[[StepInfo], None] | None,
    progress: bool,
    every_s: float,
    stop: StopFlag,
) -> dict[str, Any]:
    """The steps of :func:`train` and the files they write; returns the metrics to write."""
    out, cfg, p = run.out, run.config, run.progress
    budget = Budget.from_spec(cfg.budget)  # None: run `steps` steps

    def out_of_budget() -> bool:
        return budget is not None and budget.exhausted(p.step, p.backward_passes, p.wall_s)

    if run.dp.is_main:
        write_json(out / "config.json", cfg.to_dict())
    if not p.evals:
        run.evaluate()
    if fresh:
        run.write_checkpoint()  # step 0: a started run can always be resumed
    saved_at = time.monotonic()

    show = progress and run.dp.is_main
    bar = progress_bar(cfg.steps, min(p.step, cfg.steps), show, f"{cfg.problem}/{cfg.method}")
    failure: dict[str, Any] | None = None
    sync = torch.cuda.synchronize if run.device.type == "cuda" else (lambda: None)
    agreed = run.dp.agreement(stop)  # one clock and stop flag for all ranks (data-parallel)
    try:
        while p.step < cfg.steps and not out_of_budget() and not agreed.stop_requested():
            lr = run.balancer.optimizer.param_groups[0]["lr"]
            tic = time.perf_counter()
            batch = run.variants.transform_batch(run.next_batch(), p.step + 1)
            losses = run.problem.losses(run.model, batch)
            run.dp.check_shares(losses, cfg.problem)
            losses = run.variants.transform_losses(losses, p.step + 1)
            logged = is_logged(p.step + 1, cfg.log_every, cfg.steps)
            request_statistics(run.balancer, logged or callback is not None)
            try:
                info = run.balancer.step(losses)
            except NonFiniteLossError as exc:
                failure = {"step": p.step + 1, "loss": exc.loss, "message": str(exc)}
                break
            run.variants.after_step(p.step + 1)
            run.scheduler.step()
            p.advance(info, time.perf_counter() - tic)  # StepInfo's floats already synchronised
            if callback is not None:
                callback(info)
            p.wall_s = agreed.sync(p.wall_s, saved_at)  # unchanged in one process
            last = p.step == cfg.steps or out_of_budget()
            if is_logged(p.step, cfg.log_every, cfg.steps) or last:
                p.history.append(history_row(info, lr) | {"step": p.step} | run.phase_tag)
                bar.set_postfix_str(
                    " ".join(f"{n}={v:.2e}" for n, v in info.values.items()), refresh=False
                )
            if p.step % cfg.eval_every == 0 or last:
                sync()
                run.evaluate()
            by_steps = cfg.checkpoint_every and p.step % cfg.checkpoint_every == 0
            if not last and (by_steps or agreed.since(saved_at) >= every_s):
                run.write_checkpoint()
                saved_at = time.monotonic()
            bar.update(1)
    finally:
        bar.close()
        request_statistics(run.balancer, True)

    if failure is None and agreed.stop_requested() and p.step < cfg.steps and not out_of_budget():
        run.write_checkpoint()
        raise RunInterrupted(stop.signal_name, str(out), p.step)
    if failure is not None:
        run.evaluate()  # the parameters before the failing step
    else:  # the training phases (RunConfig.phases), if any
        failure = run_phases(run, stop, every_s, progress)
    run.write_checkpoint()
    run.write_plot()
    metrics = run.metrics("failed" if failure else "ok", math.nan)
    if failure is not None:
        metrics["error"] = failure
    if budget is not None:
        metrics["budget"] = budget.to_spec()
    return metrics
