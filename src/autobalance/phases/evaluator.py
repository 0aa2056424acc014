"""Counted, memoised evaluations of an :class:`~autobalance.phases.objective.Objective`.

Every phase evaluates its objective through one :class:`Evaluator`, which

* counts loss evaluations (forward passes over the point set), gradient evaluations (backward
  passes) and residual Jacobians, for equal-budget comparisons (:class:`EvaluationCount`);
* remembers the last few evaluations keyed by the exact bits of ``θ``, so that asking again at
  a point already evaluated (torch's L-BFGS re-evaluates the point its line search ended on)
  costs nothing and is not counted.  The memory is part of the phase's checkpoint, so a resumed
  phase counts exactly what an uninterrupted one counts.  It is cleared when the points change.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from autobalance.losses import check_scalar_losses, loss_values
from autobalance.phases.flat import assign_flat, flat_gradient, flat_params
from autobalance.phases.objective import Objective

__all__ = ["Evaluation", "EvaluationCount", "Evaluator"]


@dataclass
class EvaluationCount:
    """Work done by a phase so far.

    ``functions``: evaluations of the losses on the whole point set (forward passes);
    ``gradients``: gradients of the weighted total loss (backward passes);
    ``jacobians``: Jacobians of the stacked residuals (Gauss–Newton), each also one function
    evaluation.
    """

    functions: int = 0
    gradients: int = 0
    jacobians: int = 0

    def copy(self) -> EvaluationCount:
        return EvaluationCount(**asdict(self))

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Evaluation:
    """The objective at ``x``: named loss values, weighted total and (maybe) its gradient."""

    x: Tensor
    values: dict[str, float]
    total: float
    grad: Tensor | None

    @property
    def finite(self) -> bool:
        """The total loss (and gradient, when there is one) are finite."""
        if not math.isfinite(self.total):
            return False
        return self.grad is None or bool(torch.isfinite(self.grad).all())


class Evaluator:
    """Evaluate an objective at flat parameter vectors, counting the work (see module doc).

    Args:
        params: the tensors ``θ`` is split into (written in place at each evaluation).
        memory: how many evaluations to remember.
    """

    def __init__(self, params: Sequence[Tensor], *, memory: int = 4) -> None:
        self.params = list(params)
        self.memory = memory
        self.counts = EvaluationCount()
        self._recent: list[Evaluation] = []

    def forget(self) -> None:
        """Drop the remembered evaluations (the points changed)."""
        self._recent.clear()

    def _recall(self, x: Tensor, gradient: bool) -> Evaluation | None:
        for ev in self._recent:
            if (ev.grad is not None or not gradient) and torch.equal(ev.x, x):
                return ev
        return None

    def evaluate(
        self, objective: Objective, x: Tensor | None = None, *, gradient: bool = True
    ) -> Evaluation:
        """The objective at ``x`` (default: the current parameters); the parameters are left at
        ``x``.  With ``gradient`` the flat gradient of the weighted total comes too."""
        if x is None:
            x = flat_params(self.params)
        else:
            assign_flat(self.params, x)
        remembered = self._recall(x, gradient)
        if remembered is not None:
            return remembered
        with torch.enable_grad():
            losses = objective.losses(objective.batch)
            check_scalar_losses(losses)
            total = objective.total(losses)
            grad = None
            if gradient:
                grads = torch.autograd.grad(total, self.params, allow_unused=True)
                grad = flat_gradient(grads, self.params).detach()
                self.counts.gradients += 1
        self.counts.functions += 1
        ev = Evaluation(
            x=x.detach().clone(),
            values=loss_values(losses),
            total=float(total.detach()),
            grad=grad,
        )
        self.remember(ev)
        return ev

    def remember(self, ev: Evaluation) -> None:
        """Keep ``ev`` as the most recent evaluation."""
        self._recent.insert(0, ev)
        del self._recent[self.memory :]

    def state_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts.as_dict(),
            "recent": [
                {"x": e.x, "values": dict(e.values), "total": e.total, "grad": e.grad}
                for e in self._recent
            ],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.counts = EvaluationCount(**state["counts"])
        ref = self.params[0]
        self._recent = [
            Evaluation(
                x=e["x"].to(ref.device, ref.dtype),
                values=dict(e["values"]),
                total=float(e["total"]),
                grad=None if e["grad"] is None else e["grad"].to(ref.device, ref.dtype),
            )
            for e in state["recent"]
        ]
