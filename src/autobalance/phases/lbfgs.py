"""L-BFGS as a phase: ``torch.optim.LBFGS`` with its strong Wolfe line search.

Limited-memory BFGS (Liu & Nocedal, "On the limited memory BFGS method for large scale
optimization", Math. Program. 45, 1989; Nocedal & Wright, Alg. 7.4–7.5) keeps the last
``history`` pairs ``(s, y)`` and applies the BFGS inverse Hessian by the two-loop recursion,
with ``H₀ = (sᵀy / yᵀy) I``.  The standard finisher after Adam in PINNacle, DeepXDE and PINA.

One phase iteration is one ``LBFGS.step`` with ``max_iter=1`` (torch's own state carries the
history across calls), so a checkpoint can be taken after any iteration.  torch evaluates the
closure at the start of every ``step``, at the point its line search just accepted: the
:class:`~autobalance.phases.evaluator.Evaluator` remembers that evaluation, so it is neither
recomputed nor counted twice.  After a redraw of the points the next curvature pair mixes the
old and new points (torch's behaviour; the history is kept).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from torch import Tensor

from autobalance.errors import ConfigError
from autobalance.phases.base import Phase
from autobalance.phases.evaluator import Evaluation
from autobalance.phases.objective import Objective

__all__ = ["LBFGSPhase"]


class LBFGSPhase(Phase):
    """L-BFGS (torch.optim.LBFGS, strong Wolfe line search) (Liu & Nocedal 1989).

    Args:
        params: the parameters.
        history: pairs ``(s, y)`` kept (torch's ``history_size``).
        lr: step multiplier (torch's ``lr``; 1 is the quasi-Newton step).
        tolerance_grad: stop when ``max |g_i|`` falls to this.
        tolerance_change: torch stops an iteration whose step or loss change is below this.
        max_line_search: the most evaluations of one line search (torch gives its line search
            ``max_eval`` minus the evaluations already made in the step; ``max_eval`` is set to
            one more than this).
    """

    name: ClassVar[str] = "lbfgs"

    def __init__(
        self,
        params: Iterable[Tensor],
        *,
        history: int = 50,
        lr: float = 1.0,
        tolerance_grad: float = 1e-14,
        tolerance_change: float = 1e-16,
        max_line_search: int = 25,
    ) -> None:
        super().__init__(params)
        where = f"phase {self.name!r}"
        if history < 1:
            raise ConfigError(f"{where}: history must be >= 1, got {history}")
        if not lr > 0:
            raise ConfigError(f"{where}: lr must be > 0, got {lr}")
        if tolerance_grad < 0 or tolerance_change < 0:
            raise ConfigError(f"{where}: tolerances must be >= 0")
        if max_line_search < 1:
            raise ConfigError(f"{where}: max_line_search must be >= 1, got {max_line_search}")
        self.optimizer = torch.optim.LBFGS(
            self.params,
            lr=lr,
            max_iter=1,
            max_eval=1 + max_line_search,
            history_size=history,
            tolerance_grad=tolerance_grad,
            tolerance_change=tolerance_change,
            line_search_fn="strong_wolfe",
        )

    def _iterate(self, objective: Objective) -> tuple[Evaluation, float, dict[str, float]]:
        start = self._start(objective)

        def closure() -> float:
            ev = self.evaluator.evaluate(objective)
            assert ev.grad is not None
            offset = 0
            for p in self.params:
                k = p.numel()
                p.grad = ev.grad[offset : offset + k].view_as(p).clone()
                offset += k
            return ev.total

        self.optimizer.step(closure)
        for p in self.params:
            p.grad = None
        after = self.evaluator.evaluate(objective)
        moved = not torch.equal(after.x, start.x)
        state = self.optimizer.state[self.params[0]]
        step = float(state.get("t", 0.0)) if moved else 0.0
        if not moved:
            self.stop_reason = "L-BFGS made no progress (gradient or change below tolerance)"
        elif not after.finite:
            self.stop_reason = "the loss became non-finite"
        return after, step, {}

    def _method_state(self) -> dict[str, Any]:
        return {"lbfgs": self.optimizer.state_dict()}

    def _load_method_state(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["lbfgs"])
