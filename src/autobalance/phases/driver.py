"""Run a phase to the end of its schedule: iterations, point redraws, budgets, callbacks.

:func:`run_phase` is the loop a runner needs::

    phase = create_phase(spec, model.parameters())
    result = run_phase(phase, objective, spec, redraw=draw_points, callback=log)

Redraws are a pure function of the iteration, ``redraw(i) -> batch`` (e.g. a generator seeded
from the run's seed and ``i``): the points in use at iteration ``i`` are ``redraw(r·⌊i/r⌋)``
(``r = redraw_every``; the objective's own batch before the first redraw).  A phase restored
from a checkpoint therefore finds its points again without any saved generator state, and
continues bit for bit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from torch import Tensor

from autobalance.errors import ConfigError
from autobalance.phases.base import Phase, PhaseRecord
from autobalance.phases.catalog import PHASES
from autobalance.phases.objective import Batch, Objective
from autobalance.phases.spec import PhaseSpec, parse_phase

__all__ = ["PhaseResult", "create_phase", "run_phase"]


@dataclass(frozen=True)
class PhaseResult:
    """What one :func:`run_phase` call did: its ``records`` (this call's iterations), why it
    ended (``"iters"``, ``"max_evals"``, ``"max_seconds"``, ``"callback"`` or the phase's own
    :attr:`~autobalance.phases.base.Phase.stop_reason`) and its wall time in seconds."""

    records: list[PhaseRecord]
    reason: str
    seconds: float


def create_phase(spec: PhaseSpec | str, params: Iterable[Tensor]) -> Phase:
    """The phase of ``spec`` (a :class:`PhaseSpec` or its text form) over ``params``."""
    if isinstance(spec, str):
        spec = parse_phase(spec)
    return PHASES.create(spec.name, list(params), **spec.options)


def run_phase(
    phase: Phase,
    objective: Objective,
    spec: PhaseSpec,
    *,
    redraw: Callable[[int], Batch] | None = None,
    callback: Callable[[PhaseRecord], bool | None] | None = None,
) -> PhaseResult:
    """Iterate ``phase`` on ``objective`` until ``spec.iters`` iterations are done in all.

    Args:
        phase: a new phase, or one restored from a checkpoint (it continues from its
            iteration).
        objective: the objective on the points of iteration 0.
        spec: the schedule (``iters``, ``redraw_every``, ``max_evals``, ``max_seconds``).
        redraw: ``i -> batch``, the points from iteration ``i`` on (needed with
            ``redraw_every``).
        callback: called with every record; returning ``True`` stops the run (e.g. after a
            checkpoint or on a time limit of the caller's).
    """
    if spec.name != phase.name:
        raise ConfigError(f"the spec is for phase {spec.name!r}, the phase is {phase.name!r}")
    every = spec.redraw_every
    if every and redraw is None:
        raise ConfigError(f"phase {spec.name!r}: redraw_every={every} needs a redraw function")
    started = time.perf_counter()
    records: list[PhaseRecord] = []
    drawn_at = 0  # the iteration whose points `objective` holds

    def finish(reason: str) -> PhaseResult:
        return PhaseResult(records, reason, time.perf_counter() - started)

    while True:
        if phase.stop_reason is not None:
            return finish(phase.stop_reason)
        if phase.iteration >= spec.iters:
            return finish("iters")
        if spec.max_evals and phase.evaluations.functions >= spec.max_evals:
            return finish("max_evals")
        if spec.max_seconds and time.perf_counter() - started >= spec.max_seconds:
            return finish("max_seconds")
        if every:
            due = phase.iteration // every * every
            if due != drawn_at:
                assert redraw is not None
                objective = objective.with_batch(redraw(due))
                drawn_at = due
            if phase.points_iteration != due:
                phase.points_changed(due)
        record = phase.step(objective)
        records.append(record)
        if callback is not None and callback(record):
            return finish("callback")
