"""One optimizer on the summed loss: the plain baseline every balancing method must beat.

Update: ``θ ← opt(∇ Σ_k L_k)`` — one backward pass of the summed loss, one optimizer state.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch

from autobalance.errors import HyperparameterError
from autobalance.losses import (
    LossDict,
    check_loss_names,
    check_scalar_losses,
    find_nonfinite,
    loss_values,
    nonfinite_error,
)
from autobalance.methods.registry import register
from autobalance.optim.bases import make_base_optimizer
from autobalance.step_info import LossStats, StepInfo

__all__ = ["SummedLoss"]


class SummedLoss:
    """``base`` optimizer on ``Σ_k L_k`` (one backward of the sum per step).

    Args:
        params: parameters or parameter groups.
        base: a ``torch.optim.Optimizer`` subclass or a registered base name ("adam", ...).
        nonfinite: "raise" (default) or "skip" when a loss is NaN/Inf.
        **base_kwargs: the base optimizer's hyperparameters.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        base: type[torch.optim.Optimizer] | str = "adam",
        *,
        nonfinite: str = "raise",
        **base_kwargs: Any,
    ) -> None:
        if nonfinite not in ("raise", "skip"):
            raise HyperparameterError(f"nonfinite must be 'raise' or 'skip', got {nonfinite!r}")
        self._optimizer = make_base_optimizer(base, params, base_kwargs)
        self._nonfinite = nonfinite
        self._names: list[str] | None = None
        self._steps = 0

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self._optimizer

    def step(self, losses: LossDict) -> StepInfo:
        check_scalar_losses(losses)
        if self._names is None:
            self._names = list(losses)
        check_loss_names(list(losses), self._names, step=self._steps + 1)
        values = loss_values(losses)
        bad = find_nonfinite(values)
        if bad is not None:
            if self._nonfinite == "raise":
                raise nonfinite_error(bad, values[bad], step=self._steps + 1)
            return StepInfo(
                step=self._steps,
                losses={n: LossStats(value=values[n], state="sum") for n in self._names},
                backward_passes=0,
                skipped=True,
                reason=f"loss {bad!r} is {values[bad]}",
            )
        total = sum(losses[n] for n in self._names)
        self._optimizer.zero_grad(set_to_none=True)
        total.backward()
        self._optimizer.step()
        self._steps += 1
        return StepInfo(
            step=self._steps,
            losses={n: LossStats(value=values[n], state="sum") for n in self._names},
            backward_passes=1,
            needs_grad_matrix=False,
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self._optimizer.state_dict(),
            "names": self._names,
            "steps": self._steps,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a :meth:`state_dict` (copied: the source's tensors are never shared)."""
        state_dict = copy.deepcopy(state_dict)
        self._optimizer.load_state_dict(state_dict["optimizer"])
        self._names = state_dict["names"]
        self._steps = int(state_dict["steps"])


def _summed(base: str) -> Any:
    def factory(params: Any, **kwargs: Any) -> SummedLoss:
        return SummedLoss(params, base, **kwargs)

    return factory


register("adam", family="single-optimizer", summary="Adam on the summed loss (one backward).")(
    _summed("adam")
)
register("adamw", family="single-optimizer", summary="AdamW on the summed loss (one backward).")(
    _summed("adamw")
)
