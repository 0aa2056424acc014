"""Training phases inside a run: the loop that follows the first-order steps.

A run is a sequence of phases: ``RunConfig.steps`` steps of the first-order method, then each
spec of ``RunConfig.phases`` in order (``autobalance run burgers --steps 5000 --then
lbfgs:iters=5000``; :mod:`autobalance.phases`).  Each phase

* minimises the plain sum of the problem's losses, ``L(θ) = Σ_k L_k(θ)``, over the network's
  parameters and the problem's unknowns (inverse problems), with the network's structural
  variants (hard constraints) in place; variants that reweight or add losses (RBA, causal,
  self-adaptive weights, gPINN) act in the first-order phase only;
* uses a fixed point set drawn by the problem's sampler from a generator seeded by the run's
  seed, the phase's index and the iteration it starts at (:func:`phase_points`), redrawn every
  ``redraw_every`` iterations when the spec says so; a pure function of those numbers, so a
  resumed phase finds its points again;
* writes a ``history.csv`` row per ``log_every`` iterations (:func:`~autobalance.experiments.
  history.phase_row`: ``phase``, step size, gradient norm, cumulative evaluations) and an
  ``eval.csv`` row every ``eval_every`` iterations and at its end, numbering them as run steps
  after the first-order ones;
* checkpoints mid-phase every ``checkpoint_every`` iterations, every ``checkpoint_seconds`` of
  wall-clock and on SIGINT/SIGTERM (the phase's ``state_dict`` in the checkpoint's ``phases``
  entry, :class:`PhaseProgress`); a resumed run continues bit for bit;
* stops at ``iters`` iterations, at ``max_evals`` function evaluations, after ``max_seconds``
  of its own wall-clock (summed across resumes), or when the method stops itself (gradient below
  tolerance, no decrease found); the reason is in ``metrics.json`` (``phases``).

A run's ``budget`` (:mod:`autobalance.experiments.budget`) bounds its first-order steps only;
the phases have their own limits.  ``metrics.json`` gives the whole run's work
(``evaluations``: first-order backward passes, then the phases' function, gradient and
Jacobian evaluations) for equal-budget accounting.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from autobalance.errors import NonFiniteLossError
from autobalance.experiments.config import check_phases
from autobalance.experiments.history import phase_row
from autobalance.experiments.interrupts import RunInterrupted, StopFlag
from autobalance.experiments.progress import progress_bar
from autobalance.phases import (
    EvaluationCount,
    PhaseRecord,
    PhaseSpec,
    create_phase,
    problem_objective,
    run_phase,
)

if TYPE_CHECKING:
    from autobalance.experiments.training_run import TrainingRun

__all__ = [
    "PhaseProgress",
    "phase_parameters",
    "phase_points",
    "phase_specs",
    "recipe",
    "resolve_phases",
    "run_phases",
]

#: Mixes the run's seed, the phase index and the iteration into one generator seed.
_SEED_MIX = (1_000_003, 7_919)


def phase_specs(entries: list[Any]) -> list[PhaseSpec]:
    """The :class:`PhaseSpec` of each entry of ``RunConfig.phases`` (text or mapping form)."""
    return check_phases(entries)


def resolve_phases(entries: list[Any]) -> list[dict[str, Any]]:
    """``RunConfig.phases`` in the mapping form with only non-default values (``config.json``)."""
    return [spec.to_mapping() for spec in phase_specs(entries)]


def recipe(method: str, steps: int, entries: list[Any]) -> str:
    """``"adam ×2000 → ssbroyden:iters=3000"``: the run's phases in one line."""
    return " → ".join([f"{method} ×{steps}", *(str(s) for s in phase_specs(entries))])


def phase_parameters(run: TrainingRun) -> list[Tensor]:
    """What the phases optimise: the network's parameters, then the problem's unknowns."""
    return [*run.model.parameters(), *run.unknowns.values()]


def phase_points(run: TrainingRun, index: int, iteration: int) -> dict[str, Tensor]:
    """The points of phase ``index`` from its iteration ``iteration`` on (a pure function)."""
    seed = (run.config.seed * _SEED_MIX[0] + (index + 1) * _SEED_MIX[1] + iteration) % 2**63
    generator = torch.Generator(device=run.device).manual_seed(seed)
    return run.problem.sample(generator, run.device, run.dtype)


@dataclass
class PhaseProgress:
    """The phases' part of a checkpoint: phases finished (``done``, their summaries), and the
    running one's ``state_dict`` and wall-clock (``None``/0 between phases)."""

    index: int = 0
    state: dict[str, Any] | None = None
    wall_s: float = 0.0
    done: list[dict[str, Any]] = field(default_factory=list)

    def entries(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_entries(cls, data: Mapping[str, Any]) -> PhaseProgress:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})

    @property
    def iterations(self) -> int:
        """Iterations of the finished phases."""
        return sum(int(d["iterations"]) for d in self.done)

    def totals(self, backward_passes: int) -> dict[str, int]:
        """Work of the whole run: first-order backward passes and the phases' evaluations."""
        out = {"backward_passes": backward_passes, "functions": 0, "gradients": 0, "jacobians": 0}
        for summary in self.done:
            for key, value in summary["evaluations"].items():
                out[key] += int(value)
        return out


@dataclass
class _Clock:
    """Wall-clock of the running phase, without the time its callback spends (files)."""

    tic: float = field(default_factory=time.perf_counter)

    def lap(self) -> float:
        now = time.perf_counter()
        elapsed, self.tic = now - self.tic, now
        return elapsed


def run_phases(
    run: TrainingRun, stop: StopFlag, every_s: float, progress: bool
) -> dict[str, Any] | None:
    """Run the phases not yet finished; the failure (as the first-order loop reports one) or
    ``None``.  ``every_s``: seconds between checkpoints; ``progress``: show a progress bar.

    Raises:
        RunInterrupted: SIGINT or SIGTERM arrived; a checkpoint mid-phase was written.
    """
    specs = phase_specs(run.config.phases)
    while run.phase_progress.index < len(specs):
        spec = specs[run.phase_progress.index]
        bar = progress_bar(spec.iters, 0, progress, f"{run.config.problem}/{spec.name}")
        try:
            failure = _run_one(run, spec, stop, every_s, bar)
        finally:
            bar.close()
        if failure is not None:
            return failure
    return None


def _run_one(
    run: TrainingRun,
    spec: PhaseSpec,
    stop: StopFlag,
    every_s: float,
    bar: Any,
) -> dict[str, Any] | None:
    """The running phase (started or resumed) to its end; the failure, if any."""
    cfg, progress, p = run.config, run.phase_progress, run.progress
    index = progress.index
    phase = create_phase(spec, phase_parameters(run))
    if progress.state is not None:
        phase.load_state_dict(progress.state)
        bar.update(phase.iteration)
    offset = p.step + progress.iterations  # run step of the phase's iteration 0
    objective = problem_objective(run.problem, run.model, phase_points(run, index, 0))
    flags = {"interrupted": False, "timed_out": False}
    saved_at = time.monotonic()

    def save() -> None:
        progress.state = phase.state_dict()
        run.write_checkpoint()

    def log(record: PhaseRecord) -> None:
        """The ``history.csv`` row of ``record`` (``backward_passes``: this iteration's)."""
        counts = record.evaluations
        before = phase.history[record.iteration - 2] if record.iteration > 1 else None
        last = before.evaluations if before is not None else EvaluationCount()
        work = counts.gradients + counts.jacobians - last.gradients - last.jacobians
        p.history.append(
            phase_row(
                offset + record.iteration,
                spec.name,
                record.losses,
                record.loss,
                counts.as_dict(),
                work,
                record.step_size,
                record.grad_norm,
            )
        )

    def callback(record: PhaseRecord) -> bool:
        nonlocal saved_at
        elapsed = clock.lap()
        progress.wall_s += elapsed
        p.wall_s += elapsed
        p.final_losses = dict(record.losses)
        step = offset + record.iteration
        done = record.iteration >= spec.iters
        if spec.max_seconds and progress.wall_s >= spec.max_seconds:
            flags["timed_out"] = done = True
        if record.iteration % cfg.log_every == 0 or record.iteration == 1 or done:
            log(record)
        if step % cfg.eval_every == 0:
            run.evaluate(step=step, phase=spec.name)
        bar.update(1)
        bar.set_postfix_str(f"loss={record.loss:.2e}", refresh=False)
        if flags["timed_out"]:
            return True
        if stop.requested:
            flags["interrupted"] = True
            return True
        by_steps = cfg.checkpoint_every and record.iteration % cfg.checkpoint_every == 0
        if not done and (by_steps or time.monotonic() - saved_at >= every_s):
            save()
            saved_at = time.monotonic()
        clock.lap()  # the files written above are not the phase's time
        return False

    schedule = dataclasses.replace(spec, max_seconds=0.0)  # timed here, across resumes
    redraw = (lambda i: phase_points(run, index, i)) if spec.redraw_every else None
    clock = _Clock()
    try:
        result = run_phase(phase, objective, schedule, redraw=redraw, callback=callback)
    except NonFiniteLossError as exc:
        step = offset + phase.iteration + 1
        return {"step": step, "phase": str(spec), "loss": exc.loss, "message": str(exc)}
    if flags["interrupted"]:
        save()
        raise RunInterrupted(stop.signal_name, str(run.out), offset + phase.iteration)
    reason = "max_seconds" if flags["timed_out"] else result.reason
    final_step = offset + phase.iteration
    if phase.history and p.history[-1]["step"] != final_step:  # stopped between log rows
        log(phase.history[-1])
    errors = run.evaluate(step=final_step, phase=spec.name)
    progress.done.append(
        {
            "spec": str(spec),
            "name": spec.name,
            "iterations": phase.iteration,
            "reason": reason,
            "wall_s": progress.wall_s,
            "evaluations": phase.evaluations.as_dict(),
            "loss": phase.history[-1].loss if phase.history else float("nan"),
            "rel_l2": errors["rel_l2"],
        }
    )
    progress.index += 1
    progress.state = None
    progress.wall_s = 0.0
    run.write_checkpoint()
    return None
