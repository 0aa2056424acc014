"""One optimizer on the summed loss: the plain baseline every balancing method must beat.

Update: ``θ ← opt(∇ Σ_k L_k)`` — one backward pass of the summed loss, one optimizer state.
"""

from __future__ import annotations

from typing import ClassVar, cast

from torch import Tensor

from autobalance.methods.base import CombineResult, PreCombineMethod
from autobalance.step_front import LossBatch

__all__ = ["SummedLoss"]


class SummedLoss(PreCombineMethod):
    """``base`` optimizer on ``Σ_k L_k`` (one backward of the sum per step), any number of losses.

    Args:
        params: parameters or parameter groups.
        base: a ``torch.optim.Optimizer`` subclass or a registered base name ("adam", ...).
        nonfinite: "raise" (default) or "skip" when a loss is NaN/Inf.
        process_group: average the loss values and the gradient over its ranks (data-parallel
            training, :mod:`autobalance.distributed`); ``None``: one process.
        **base_kwargs: the base optimizer's hyperparameters.
    """

    needs_two_losses: ClassVar[bool] = False
    state_name: ClassVar[str] = "sum"

    def _combine(self, batch: LossBatch) -> CombineResult:
        self._optimizer.zero_grad(set_to_none=True)
        # a LossBatch holds at least one loss (losses.check_scalar_losses), so the sum is a tensor
        cast(Tensor, sum(batch.losses.values())).backward()
        self.average_grads()
        return CombineResult(backward_passes=1, needs_grad_matrix=False)
