"""The loss history of a run (``history.csv``): its rows, its columns, and which are losses.

One row every ``log_every`` steps, built from the step's
:class:`~autobalance.step_info.StepInfo`::

    step, lr, total, <loss>..., [update_norm], [<loss>_<stat>...], backward_passes, skipped

``<stat>`` is one of :data:`STATS` (the loss's weight, gradient norm, update norm and cosine with
the update); an optional column is written only when some row reports it as a finite number, so a
method without per-loss updates has no ``<loss>_update_norm`` column.

A run with training phases (``RunConfig.phases``) also has :data:`PHASE_COLUMNS`: ``phase`` (the
first-order method's name, then each phase's), and on phase rows the accepted step size, the
gradient norm and the cumulative function, gradient and Jacobian evaluations of that phase
(:func:`phase_row`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from autobalance.step_info import StepInfo

__all__ = [
    "PHASE_COLUMNS",
    "STATS",
    "history_columns",
    "history_row",
    "is_logged",
    "loss_columns",
    "phase_row",
]

#: Per-loss statistics of a row, from :class:`~autobalance.step_info.LossStats`.
STATS = ("weight", "grad_norm", "update_norm", "cosine")

_FIXED = ("step", "lr", "total")
_COUNTS = ("backward_passes", "skipped")
#: Columns of runs with phases (``phase`` on every row, the others on phase rows).
PHASE_COLUMNS = ("phase", "step_size", "grad_norm", "functions", "gradients", "jacobians")


def is_logged(step: int, log_every: int, steps: int) -> bool:
    """Whether the runner logs ``step`` (counted from 1): the first, every ``log_every``-th and
    the last of ``steps`` (a run that a budget ends early also logs the step it ends on)."""
    return step == 1 or step % log_every == 0 or step == steps


def history_row(info: StepInfo, lr: float) -> dict[str, Any]:
    """The row of one step: ``lr`` is the learning rate the step used."""
    row: dict[str, Any] = {
        "step": info.step,
        "lr": lr,
        "total": info.total_loss,
        "update_norm": info.update_norm,
        "backward_passes": info.backward_passes,
        "skipped": int(info.skipped),
    }
    for name, stats in info.losses.items():
        row[name] = stats.value
        for stat in STATS:
            row[f"{name}_{stat}"] = getattr(stats, stat)
    return row


def phase_row(
    step: int,
    phase: str,
    losses: Mapping[str, float],
    total: float,
    evaluations: Mapping[str, int],
    backward_passes: int,
    step_size: float,
    grad_norm: float,
) -> dict[str, Any]:
    """The row of one phase iteration (run step ``step``): ``evaluations`` are the phase's
    cumulative counts, ``backward_passes`` the gradients and Jacobians of this iteration."""
    return {
        "step": step,
        "lr": math.nan,
        "total": total,
        **losses,
        "phase": phase,
        "step_size": step_size,
        "grad_norm": grad_norm,
        **{k: evaluations[k] for k in ("functions", "gradients", "jacobians")},
        "backward_passes": backward_passes,
        "skipped": 0,
    }


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def history_columns(rows: Sequence[Mapping[str, Any]], loss_names: Sequence[str]) -> list[str]:
    """Fixed columns, the losses, then only those statistics some row reports as finite (and
    :data:`PHASE_COLUMNS` when some row has a ``phase``)."""
    optional = ["update_norm"] + [f"{n}_{s}" for n in loss_names for s in STATS]
    present = [c for c in optional if any(_finite(r.get(c)) for r in rows)]
    phases = list(PHASE_COLUMNS) if any("phase" in r for r in rows) else []
    return [*_FIXED, *loss_names, *present, *phases, *_COUNTS]


def loss_columns(columns: Sequence[str] | Mapping[str, Any]) -> list[str]:
    """The loss-value columns among the columns of a ``history.csv`` table, in order."""
    others = {*_FIXED, *_COUNTS, *PHASE_COLUMNS, "update_norm"}
    suffixes = tuple(f"_{stat}" for stat in STATS)
    return [c for c in columns if c not in others and not c.endswith(suffixes)]
