"""Equal-budget accounting: stop a run after a number of steps, backward passes or seconds.

Methods differ in what one step costs: Adam on the summed loss needs one backward pass per step,
a per-loss method (AutoBalance, MultiAdam, PCGrad, ...) one per loss.  Comparing them at equal
*steps* favours the expensive ones; a :class:`Budget` lets a sweep compare them at equal
backward passes or equal wall-clock time instead.

A budget is stored in :class:`~autobalance.experiments.config.RunConfig` as
``{"kind": KIND, "value": VALUE}`` (``None``: no budget, the run does ``steps`` steps), with

* ``"steps"``: at most ``value`` optimisation steps;
* ``"backward"``: at most ``value`` backward passes; a step is not started when it would exceed
  the budget, predicting its cost as the mean cost per step so far (deterministic, so a resumed
  run stops at the same step as an uninterrupted one);
* ``"time"``: training wall-clock (``metrics.json``'s ``wall_s``, evaluations excluded) of at
  least ``value`` seconds: the run stops after the first step that reaches it.

``RunConfig.steps`` stays an upper bound in every case.  On the command line a budget is written
``KIND=VALUE`` (``steps=5000``, ``backward=10000``, ``time=120``), see :func:`parse_budget`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from autobalance.errors import ConfigError, unknown_name_message

__all__ = ["BUDGET_KINDS", "Budget", "parse_budget", "step_cap"]

#: The kinds of budget and what they count.
BUDGET_KINDS: dict[str, str] = {
    "steps": "optimisation steps",
    "backward": "backward passes",
    "time": "seconds of training wall-clock",
}


@dataclass(frozen=True)
class Budget:
    """A limit on the cost of one run (module docstring)."""

    kind: str
    value: float

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or self.kind not in BUDGET_KINDS:
            raise ConfigError(unknown_name_message("budget kind", str(self.kind), BUDGET_KINDS))
        value = self.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"invalid budget.value {value!r}: expected a number")
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"invalid budget.value {value!r}: must be a finite number >= 0")
        if self.kind != "time" and value != int(value):
            raise ConfigError(f"invalid budget.value {value!r}: {self.kind} must be a whole number")

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | str | None) -> Budget | None:
        """``{"kind": ..., "value": ...}``, ``"KIND=VALUE"`` or ``None`` (no budget)."""
        if spec is None:
            return None
        if isinstance(spec, str):
            return parse_budget(spec)
        if not isinstance(spec, Mapping):
            raise ConfigError(
                f"invalid budget {spec!r}: expected {{'kind': ..., 'value': ...}} or 'KIND=VALUE'"
            )
        extra = sorted(set(spec) - {"kind", "value"})
        if extra:
            raise ConfigError(
                f"unknown budget key {extra[0]!r}: a budget has only 'kind' and 'value'"
            )
        for key in ("kind", "value"):
            if key not in spec:
                raise ConfigError(
                    f"budget.{key} is missing (budget = {{'kind': ..., 'value': ...}})"
                )
        return cls(kind=spec["kind"], value=spec["value"])

    def to_spec(self) -> dict[str, Any]:
        """The JSON form stored in ``RunConfig.budget``."""
        value: float = self.value if self.kind == "time" else int(self.value)
        return {"kind": self.kind, "value": value}

    def exhausted(self, steps: int, backward_passes: int, wall_s: float) -> bool:
        """Whether a run that has done ``steps`` steps at this cost must stop before the next."""
        if self.kind == "steps":
            return steps >= self.value
        if self.kind == "time":
            return wall_s >= self.value
        per_step = backward_passes / steps if steps else 0.0
        return backward_passes + per_step > self.value or backward_passes >= self.value

    def __str__(self) -> str:
        value = self.to_spec()["value"]
        return f"{self.kind}={value:g}" if self.kind == "time" else f"{self.kind}={value}"


def parse_budget(text: str) -> Budget:
    """``"steps=5000"``, ``"backward=1e4"`` or ``"time=120"`` to a :class:`Budget`."""
    kind, sep, value = str(text).partition("=")
    kind = kind.strip()
    if not sep or not kind:
        raise ConfigError(
            f"invalid budget {text!r}: expected KIND=VALUE with KIND one of "
            f"{', '.join(BUDGET_KINDS)} (e.g. backward=10000)"
        )
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(
            f"invalid budget value {value.strip()!r} in {text!r}: not a number"
        ) from None
    if kind != "time" and number.is_integer():
        return Budget(kind, int(number))
    return Budget(kind, number)


def step_cap(budget: Budget | None, default: int) -> int:
    """A ``steps`` upper bound that lets ``budget`` decide when to stop.

    ``steps`` budgets give their value, ``backward`` ones their value (a step costs at least one
    backward pass); ``time`` budgets and no budget keep ``default``.
    """
    if budget is None or budget.kind == "time":
        return default
    return int(budget.value)
