"""Train the S seeds of one configuration as one batched model, writing S ordinary run directories.

Each step, for the seeds still running::

    batch   = interleave(seed_s.next_batch() for s)        # each seed's own generator
    losses  = problem.losses(StackedModel(θ_1..θ_S), batch) # one batched forward pass
    L_k^(s) = mean_i r_k[i·S + s]²                          # per-seed losses (S,) per loss
    G_k     = ∂ Σ_s L_k^(s) / ∂θ_stack                      # one backward per loss, eq. (1)
    info_s  = balancer_s.step({k: carrier(L_k^(s), G_k[s])}) for every s    # eq. (2)

or, from the second step on, where the method's update is elementwise per coordinate (Adam and
AdamW on the summed loss, AutoBalance over Adam/AdamW with fixed weights), one step of a fused
optimizer of all seeds on the stacked parameters (:mod:`autobalance.seeds.fused`), written back
to each seed's network before every evaluation and to its balancer before every checkpoint.

Every seed keeps the objects a separate run builds (:class:`TrainingRun`: its network drawn from
its own seed, its points from its own generator, its balancer, scheduler, global-RNG state,
progress and checkpoints), so a seed's run directory holds the same files as a separate run's,
resumes the same way (with :func:`train_seeds`, or alone with
:func:`~autobalance.experiments.runner.train`) and its numbers equal the separate run's to float
rounding (the batched products sum in another order).  A method that needs only the gradient of
the summed loss (Adam, AdamW) gets it from one backward pass, as a separate run does.

Wall-clock is shared honestly: a batched step's time is divided equally among the seeds it
advanced, each seed's ``wall_s`` (and a ``time`` budget) counts its share, and ``metrics.json``
says so under ``seed_batch`` (the number of seeds and the batched step time).  A seed whose loss
turns NaN/Inf fails alone (``status: "failed"``); the others go on without it.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from autobalance.errors import NonFiniteLossError
from autobalance.experiments.budget import Budget
from autobalance.experiments.checkpoints import (
    CHECKPOINT_SECONDS,
    RESOLVED_KEYS,
    RUN_FILES,
    check_same_run,
    checkpoint_interval,
    prepare_run_directory,
)
from autobalance.experiments.config import RunConfig
from autobalance.experiments.determinism import deterministic_algorithms
from autobalance.experiments.history import history_row, is_logged
from autobalance.experiments.interrupts import RunInterrupted, StopFlag, stop_signals
from autobalance.experiments.io import writable_directory, write_json
from autobalance.experiments.progress import progress_bar
from autobalance.experiments.training_run import TrainingRun
from autobalance.gradients import per_loss_gradients
from autobalance.methods.registry import request_statistics
from autobalance.methods.single import SummedLoss
from autobalance.seeds.carriers import carrier
from autobalance.seeds.fused import FusedSeeds, fuse_seeds, may_fuse
from autobalance.seeds.stacked import StackedModel, interleave, per_seed_losses
from autobalance.seeds.support import SeedBatchingError, check_batchable
from autobalance.step_info import StepInfo
from autobalance.threads import choose_threads, using_threads

__all__ = ["train_seeds"]

#: Relative tolerance of the first step's check that each loss is the mean square of its terms.
_MEAN_SQUARE_RTOL = 1e-4


@dataclass
class _Seed:
    """One seed's run, its own global-RNG state, and how its training ended."""

    run: TrainingRun
    rng: Tensor
    budget: Budget | None = field(init=False)
    failure: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.budget = Budget.from_spec(self.run.config.budget)

    def out_of_budget(self) -> bool:
        p = self.run.progress
        return self.budget is not None and self.budget.exhausted(
            p.step, p.backward_passes, p.wall_s
        )

    def running(self) -> bool:
        p = self.run.progress
        return self.failure is None and p.step < self.run.config.steps and not self.out_of_budget()

    @contextlib.contextmanager
    def own_rng(self) -> Iterator[None]:
        """The global torch RNG holds this seed's state inside (what its separate run has)."""
        torch.set_rng_state(self.rng)
        try:
            yield
        finally:
            self.rng = torch.get_rng_state()


class _SeedBatch:
    """Steps of the running seeds: with one fused optimizer for all of them where their method
    allows it (:mod:`autobalance.seeds.fused`; from their second step, until the set of running
    seeds changes or a step is NaN/Inf for some seed), else through each seed's balancer."""

    def __init__(self) -> None:
        self.fused: FusedSeeds | None = None
        self.members: list[int] = []
        self.gave_up = False
        #: Whether some step of this batch was taken by a fused optimizer.
        self.used_fused = False

    def step(self, active: list[_Seed], *, check: bool) -> list[StepInfo | dict[str, Any]]:
        """One batched step of ``active`` (:func:`_batched_step`)."""
        if self.fused is not None and self.members != [id(s) for s in active]:
            self.fused.write_back()
            self.fused = None
        if self.fused is None and not self.gave_up:
            balancers = [s.run.balancer for s in active]
            self.gave_up = not may_fuse(balancers[0])
            # only fusable methods (AutoBalance, Adam on the sum, MultiAdam) count their steps
            taken = [int(getattr(b, "steps_taken", 0)) for b in balancers]
            if not self.gave_up and min(taken) >= 1:
                self.fused = fuse_seeds(balancers)
                self.members = [id(s) for s in active]
                self.gave_up = self.fused is None
        outcomes, fused = _batched_step(active, check=check, fused=self.fused)
        if self.fused is not None and not fused:  # written back: the seeds' balancers go on
            self.fused, self.gave_up = None, True
        self.used_fused = self.used_fused or fused
        return outcomes

    def write_models(self) -> None:
        """The seeds' networks hold their current parameters (before an evaluation)."""
        if self.fused is not None:
            self.fused.write_models()

    def write_back(self) -> None:
        """The seeds' networks and balancers hold their current state (before a checkpoint)."""
        if self.fused is not None:
            self.fused.write_back()


def train_seeds(
    configs: Sequence[RunConfig],
    out_dirs: Sequence[str | Path],
    *,
    progress: bool = True,
    resume: bool = False,
    overwrite: bool = False,
    checkpoint_seconds: float | None = CHECKPOINT_SECONDS,
    deterministic: bool = False,
) -> list[dict[str, Any]]:
    """Train the runs ``configs`` (one configuration, several seeds) as one batched model.

    Args and files as :func:`~autobalance.experiments.runner.train`, one output directory per
    run, in order.

    Returns:
        Each run's metrics (as written to its ``metrics.json``), in order.

    Raises:
        SeedBatchingError: the runs cannot be batched (:func:`check_batchable`: an unsupported
            method, variant or problem, runs differing in more than the seed, resumed
            checkpoints at different steps); nothing was written.
        AutoBalanceError, RunFileError, OSError, RunInterrupted: as
            :func:`~autobalance.experiments.runner.train`.
    """
    if len(configs) != len(out_dirs):
        raise ValueError(f"{len(configs)} configurations but {len(out_dirs)} output directories")
    for config in configs:
        config.validate()
    check_batchable(configs)
    outs = [Path(o) for o in out_dirs]
    if len(set(outs)) != len(outs):
        raise SeedBatchingError("the seeds' output directories must differ")
    with using_threads(choose_threads(configs[0].threads)):
        return _train_seeds(
            list(configs), outs, progress, resume, overwrite, checkpoint_seconds, deterministic
        )


def _train_seeds(
    configs: list[RunConfig],
    outs: list[Path],
    progress: bool,
    resume: bool,
    overwrite: bool,
    checkpoint_seconds: float | None,
    deterministic: bool,
) -> list[dict[str, Any]]:
    started = time.perf_counter()
    every_s = checkpoint_interval(checkpoint_seconds)
    ckpts = [prepare_run_directory(out, resume=resume, overwrite=overwrite) for out in outs]
    for config, out, ckpt in zip(configs, outs, ckpts, strict=True):
        if ckpt is not None:
            check_same_run(config, ckpt, out / "checkpoint.pt", skip=RESOLVED_KEYS)
    with stop_signals() as stop, deterministic_algorithms(deterministic):
        seeds = []
        for config, out, ckpt in zip(configs, outs, ckpts, strict=True):
            run = TrainingRun(config, out)  # seeds the global RNG: the network's initialisation
            if ckpt is not None:
                run.restore(ckpt, out / "checkpoint.pt")
            seeds.append(_Seed(run, torch.get_rng_state()))
        at = sorted({s.run.progress.step for s in seeds})
        if len(at) > 1:
            raise SeedBatchingError(
                f"cannot resume these seeds as one batched model: their checkpoints are at "
                f"different steps ({', '.join(map(str, at))}); run the seeds separately "
                "(--batch-seeds off)"
            )
        for out in outs:
            writable_directory(out)
            for name in RUN_FILES if overwrite else ("metrics.json",) if resume else ():
                with contextlib.suppress(FileNotFoundError):
                    (out / name).unlink()
        all_metrics = _train_loop(seeds, all(c is None for c in ckpts), progress, every_s, stop)
        for out, metrics in zip(outs, all_metrics, strict=True):
            metrics["elapsed_s"] = time.perf_counter() - started
            write_json(out / "metrics.json", metrics)
    return all_metrics


def _train_loop(
    seeds: list[_Seed], fresh: bool, progress: bool, every_s: float, stop: StopFlag
) -> list[dict[str, Any]]:
    """The batched steps and each seed's files (as the runner's loop writes them)."""
    cfg = seeds[0].run.config
    for seed in seeds:
        write_json(seed.run.out / "config.json", seed.run.config.to_dict())
        if not seed.run.progress.evals:
            seed.run.evaluate()
        if fresh:
            with seed.own_rng():
                seed.run.write_checkpoint()
    saved_at = time.monotonic()
    start = min(seeds[0].run.progress.step, cfg.steps)
    label = f"{cfg.problem}/{cfg.method} ×{len(seeds)} seeds"
    bar = progress_bar(cfg.steps, start, progress, label)
    sync = torch.cuda.synchronize if seeds[0].run.device.type == "cuda" else (lambda: None)
    batched_ms: list[float] = []
    checked = False
    batch = _SeedBatch()
    try:
        while not stop.requested:
            active = [s for s in seeds if s.running()]
            if not active:
                break
            lrs = [s.run.balancer.optimizer.param_groups[0]["lr"] for s in active]
            for seed in active:
                logged = is_logged(seed.run.progress.step + 1, cfg.log_every, cfg.steps)
                request_statistics(seed.run.balancer, logged)
            tic = time.perf_counter()
            outcomes = batch.step(active, check=not checked)
            sync()
            elapsed = time.perf_counter() - tic
            checked = True
            batched_ms.append(1e3 * elapsed)
            by_time = time.monotonic() - saved_at >= every_s
            for seed, outcome, lr in zip(active, outcomes, lrs, strict=True):
                _record(seed, outcome, lr, elapsed / len(active), batch.write_models)
            p0 = active[0].run.progress
            by_steps = cfg.checkpoint_every and p0.step % cfg.checkpoint_every == 0
            if by_steps or by_time:
                batch.write_back()
                for seed in active:
                    if seed.running():
                        with seed.own_rng():
                            seed.run.write_checkpoint()
                saved_at = time.monotonic()
            bar.set_postfix_str(f"{len(active)} seeds running", refresh=False)
            bar.update(1)
    finally:
        bar.close()
        batch.write_back()
        for seed in seeds:
            request_statistics(seed.run.balancer, True)
    if stop.requested and any(s.running() for s in seeds):
        for seed in seeds:
            with seed.own_rng():
                seed.run.write_checkpoint()
        first = seeds[0].run
        raise RunInterrupted(stop.signal_name, str(first.out), first.progress.step)
    step_ms = sorted(batched_ms)[len(batched_ms) // 2] if batched_ms else math.nan
    return [_finish(seed, len(seeds), step_ms, batch.used_fused) for seed in seeds]


def _record(
    seed: _Seed,
    outcome: StepInfo | dict[str, Any],
    lr: float,
    share_s: float,
    before_eval: Callable[[], None],
) -> None:
    """A seed's bookkeeping after a batched step (as the runner's loop does after a step)."""
    run, p, cfg = seed.run, seed.run.progress, seed.run.config
    if isinstance(outcome, dict):
        seed.failure = outcome
        return
    info = outcome
    p.advance(info, share_s)
    last = p.step == cfg.steps or seed.out_of_budget()
    if is_logged(p.step, cfg.log_every, cfg.steps) or last:
        p.history.append(history_row(info, lr) | {"step": p.step})
    if p.step % cfg.eval_every == 0 or last:
        before_eval()
        run.evaluate()


def _finish(seed: _Seed, seeds: int, step_ms: float, fused: bool) -> dict[str, Any]:
    """A seed's last evaluation, checkpoint, figure and metrics."""
    run = seed.run
    if seed.failure is not None:
        run.evaluate()  # the parameters before the failing step
    with seed.own_rng():
        run.write_checkpoint()
    run.write_plot()
    metrics = run.metrics("failed" if seed.failure else "ok", math.nan)
    if seed.failure is not None:
        metrics["error"] = seed.failure
    if seed.budget is not None:
        metrics["budget"] = seed.budget.to_spec()
    metrics["seed_batch"] = {
        "seeds": seeds,
        "batched_step_ms": step_ms,
        "fused_optimizer": fused,
        "wall_s": "each batched step's time divided equally among the seeds it advanced",
    }
    return metrics


def _batched_step(
    active: list[_Seed], *, check: bool, fused: FusedSeeds | None = None
) -> tuple[list[StepInfo | dict[str, Any]], bool]:
    """One step of every seed in ``active``: a StepInfo, or a failure record for a seed whose
    loss or gradient became NaN/Inf; and whether ``fused`` took it (else it was written back
    and every seed's balancer took its step)."""
    runs = [s.run for s in active]
    n = len(runs)
    batch = interleave([run.next_batch() for run in runs])
    stacked = StackedModel([run.model for run in runs], None if fused is None else fused.stacked)
    named = runs[0].problem.losses(stacked, batch)
    pointwise = getattr(named, "pointwise", {})
    missing = [k for k in named if k not in pointwise]
    if missing:
        raise SeedBatchingError(
            f"problem {runs[0].config.problem!r} gives no pointwise terms for {missing}: its "
            "losses cannot be split by seed; run the seeds separately (--batch-seeds off)"
        )
    per_seed = per_seed_losses({k: pointwise[k] for k in named}, n)
    if check:
        _check_mean_square(named, per_seed, runs[0].config.problem)
    names = list(per_seed)
    grads = _stacked_gradients(names, per_seed, stacked.leaves, summed=_summed(runs[0]))
    del named, pointwise, batch
    if fused is not None:
        infos = fused.step(grads, per_seed)
        if infos is not None:
            for seed in active:
                seed.run.scheduler.step()
            return list(infos), True
        fused.write_back()
    values = {k: v.detach() for k, v in per_seed.items()}
    outcomes: list[StepInfo | dict[str, Any]] = []
    for i, seed in enumerate(active):
        params = list(seed.run.model.parameters())
        losses = {
            k: carrier(values[k][i], params, [None if g is None else g[i] for g in grads[k]])
            for k in names
        }
        try:
            with seed.own_rng():
                info = seed.run.balancer.step(losses)
        except NonFiniteLossError as exc:
            outcomes.append(
                {"step": seed.run.progress.step + 1, "loss": exc.loss, "message": str(exc)}
            )
            continue
        seed.run.scheduler.step()
        outcomes.append(info)
    return outcomes, False


def _summed(run: TrainingRun) -> bool:
    """Whether the method takes one backward pass of the summed loss (Adam, AdamW)."""
    return isinstance(run.balancer, SummedLoss)


def _stacked_gradients(
    names: list[str], per_seed: dict[str, Tensor], leaves: list[Tensor], *, summed: bool
) -> dict[str, list[Tensor | None]]:
    """``G_k = ∂ Σ_s L_k^(s) / ∂θ_stack`` per loss (eq. (1)); for a summed-loss method, the
    gradient of ``Σ_k Σ_s L_k^(s)`` on the first loss and zeros on the others (one backward)."""
    if not summed:
        totals = [per_seed[k].sum() for k in names]
        return dict(zip(names, per_loss_gradients(names, totals, leaves), strict=True))
    total = torch.stack([per_seed[k].sum() for k in names]).sum()
    grad: list[Tensor | None] = list(torch.autograd.grad(total, leaves, allow_unused=True))
    zeros = [None if g is None else torch.zeros_like(g) for g in grad]
    return {k: grad if j == 0 else zeros for j, k in enumerate(names)}


def _check_mean_square(named: Any, per_seed: dict[str, Tensor], problem: str) -> None:
    """Each batched loss must be the mean of the seeds' mean-square losses (equal row counts):
    else the problem's losses are not the mean squares of their pointwise terms."""
    for name, vector in per_seed.items():
        whole, split = float(named[name].detach()), float(vector.detach().mean())
        if not abs(whole - split) <= _MEAN_SQUARE_RTOL * max(abs(whole), 1e-30):
            raise SeedBatchingError(
                f"problem {problem!r}: loss {name!r} is not the mean square of its pointwise "
                f"terms ({whole:.6g} vs {split:.6g}), so it cannot be split by seed; run the "
                "seeds separately (--batch-seeds off)"
            )
