"""The contract every training phase keeps: one iteration per :meth:`Phase.step`.

A phase is a second-stage optimizer (L-BFGS, dense self-scaled quasi-Newton, Gauss–Newton) run
after a first-order method.  It sees the parameters as one flat vector ``θ`` (see
:mod:`autobalance.phases.flat`), minimises an :class:`~autobalance.phases.objective.Objective`
on a fixed point set, and

* counts function, gradient and Jacobian evaluations (:attr:`Phase.evaluations`),
* returns a :class:`PhaseRecord` per iteration (named loss values after the step, the
  evaluations so far, the step size) and keeps them in :attr:`Phase.history`,
* is told when the point set is redrawn (:meth:`Phase.points_changed`),
* checkpoints with :meth:`Phase.state_dict` / :meth:`Phase.load_state_dict`: a phase restored
  mid-run over parameters restored to the same values continues bit for bit,
* sets :attr:`Phase.stop_reason` when it cannot or need not go on (gradient below tolerance,
  line search found no decrease).

Like a ``torch.optim.Optimizer`` the state is data and the objective is handed to ``step`` (as a
closure is), so the same phase object can be checkpointed without pickling any function.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from autobalance.errors import ConfigError
from autobalance.losses import nonfinite_error
from autobalance.phases.evaluator import Evaluation, EvaluationCount, Evaluator
from autobalance.phases.flat import numel
from autobalance.phases.objective import Objective

__all__ = ["Phase", "PhaseRecord", "check_parameter_limit"]


@dataclass(frozen=True)
class PhaseRecord:
    """One iteration of a phase.

    ``iteration``: iterations done in this phase (1 after the first); ``losses`` and ``loss``
    (weighted total): at the parameters after the step; ``evaluations``: counts so far;
    ``step_size``: the accepted step length multiplier (0: no move); ``grad_norm``: Euclidean
    norm of the total loss's gradient after the step (NaN where the phase does not compute it);
    ``extra``: phase-specific numbers (damping, updates skipped, ...).
    """

    iteration: int
    losses: dict[str, float]
    loss: float
    evaluations: EvaluationCount
    step_size: float
    grad_norm: float
    extra: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: nested evaluations become a plain dict."""
        out = asdict(self)
        out["evaluations"] = self.evaluations.as_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PhaseRecord:
        return cls(**{**data, "evaluations": EvaluationCount(**data["evaluations"])})


def check_parameter_limit(where: str, n: int, limit: int, what: str) -> None:
    """Raise ``ConfigError`` when ``n`` parameters exceed ``limit`` for a dense method."""
    if n > limit:
        raise ConfigError(
            f"{where} keeps {what} ({n}×{n} entries, {n * n * 8 / 2**20:.0f} MiB in float64): "
            f"{n} parameters exceed max_params={limit}. Use the 'lbfgs' phase, a smaller "
            "network, or raise max_params"
        )


class Phase(abc.ABC):
    """Base class of training phases; subclasses implement :meth:`_iterate` and their state.

    Args:
        params: the parameters to optimise (one dtype and device; ``requires_grad``).
    """

    #: Catalogue name, also written in checkpoints to catch a mismatched resume.
    name: ClassVar[str] = ""

    def __init__(self, params: Iterable[Tensor]) -> None:
        self.params: list[Tensor] = list(params)
        where = f"phase {self.name!r}"
        if not self.params:
            raise ConfigError(f"{where}: no parameters to optimise")
        for j, p in enumerate(self.params):
            if not isinstance(p, Tensor) or not torch.is_floating_point(p):
                raise ConfigError(f"{where}: parameter {j} is not a floating-point tensor")
            if not p.requires_grad:
                raise ConfigError(f"{where}: parameter {j} does not require grad")
        kinds = {(p.dtype, p.device) for p in self.params}
        if len(kinds) > 1:
            raise ConfigError(
                f"{where}: every parameter must share one dtype and device, got "
                f"{sorted(str(k) for k in kinds)}"
            )
        self.n = numel(self.params)
        self.evaluator = Evaluator(self.params)
        self.iteration = 0
        self.points_iteration = 0
        self.history: list[PhaseRecord] = []
        self.stop_reason: str | None = None

    # ----------------------------------------------------------------------------- running
    @property
    def evaluations(self) -> EvaluationCount:
        """Function, gradient and Jacobian evaluations so far (a copy)."""
        return self.evaluator.counts.copy()

    @property
    def dtype(self) -> torch.dtype:
        return self.params[0].dtype

    @property
    def device(self) -> torch.device:
        return self.params[0].device

    def step(self, objective: Objective) -> PhaseRecord:
        """Take one iteration on ``objective``; return (and keep) its record."""
        if self.stop_reason is not None:
            raise RuntimeError(f"phase {self.name!r} has stopped: {self.stop_reason}")
        after, step_size, extra = self._iterate(objective)
        self.iteration += 1
        grad_norm = float(after.grad.norm()) if after.grad is not None else math.nan
        record = PhaseRecord(
            iteration=self.iteration,
            losses=dict(after.values),
            loss=after.total,
            evaluations=self.evaluations,
            step_size=float(step_size),
            grad_norm=grad_norm,
            extra=extra,
        )
        self.history.append(record)
        return record

    def points_changed(self, iteration: int | None = None) -> None:
        """The point set was redrawn (at phase iteration ``iteration``, default: now)."""
        self.points_iteration = self.iteration if iteration is None else int(iteration)
        self.evaluator.forget()

    def _start(self, objective: Objective) -> Evaluation:
        """The objective with gradient at the current parameters; NaN/Inf is an error."""
        ev = self.evaluator.evaluate(objective)
        if not ev.finite:
            bad = next((k for k, v in ev.values.items() if not math.isfinite(v)), "total")
            raise nonfinite_error(
                bad, ev.values.get(bad, ev.total), step=self.iteration, what="phase loss"
            )
        return ev

    @abc.abstractmethod
    def _iterate(self, objective: Objective) -> tuple[Evaluation, float, dict[str, float]]:
        """One iteration: move the parameters; return the evaluation at the new parameters
        (with gradient where the method has it), the step size and extra numbers."""

    # ----------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit for bit (the parameters themselves excepted)."""
        return {
            "name": self.name,
            "n": self.n,
            "iteration": self.iteration,
            "points_iteration": self.points_iteration,
            "stop_reason": self.stop_reason,
            "history": [r.as_dict() for r in self.history],
            "evaluator": self.evaluator.state_dict(),
            "method": self._method_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (of a phase of the same name over as many parameters)."""
        if state.get("name") != self.name:
            raise ConfigError(
                f"cannot load a checkpoint of phase {state.get('name')!r} into phase {self.name!r}"
            )
        if state.get("n") != self.n:
            raise ConfigError(
                f"phase {self.name!r}: the checkpoint is over {state.get('n')} parameters, this "
                f"phase over {self.n}"
            )
        self.iteration = int(state["iteration"])
        self.points_iteration = int(state["points_iteration"])
        self.stop_reason = state["stop_reason"]
        self.history = [PhaseRecord.from_dict(r) for r in state["history"]]
        self.evaluator.load_state_dict(state["evaluator"])
        self._load_method_state(state["method"])

    @abc.abstractmethod
    def _method_state(self) -> dict[str, Any]:
        """The method's own state (tensors, numbers)."""

    @abc.abstractmethod
    def _load_method_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`_method_state`."""

    def _tensor(self, value: Tensor) -> Tensor:
        """``value`` on this phase's device and dtype (for loaded state)."""
        return value.to(device=self.device, dtype=self.dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={self.n}, iteration={self.iteration})"
