"""Random Loss Weighting (RLW).

Lin, Ye, Xu, Shi & Zhang, "Reasonable Effectiveness of Random Weighting: A Litmus Test for
Multi-Task Learning", TMLR 2022, random loss weighting with the standard normal
distribution:

    w = softmax(ε),    ε ~ N(0, I_K)   drawn afresh every step.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from autobalance.methods.base import WeightingMethod, WeightingStep
from autobalance.methods.weighting._common import make_generator, softmax

__all__ = ["RandomLossWeighting"]


class RandomLossWeighting(WeightingMethod):
    """Random weights ``w = softmax(ε)``, ``ε ~ N(0, I)``, drawn each step (Lin et al. 2022).

    The draws come from the method's own seeded ``torch.Generator`` (its state is saved in
    checkpoints), so runs are reproducible and independent of the global RNG.  As in the paper
    the weights sum to 1; ``sum_to_k=True`` multiplies them by ``K`` (sum ``K``, the scale of
    equal weights, so the base learning rate means the same as for EW).

    Args:
        params: parameters or parameter groups.
        seed: seed of the generator (default 0).
        sum_to_k: scale the weights by ``K`` (default ``False``: the paper's sum of 1).
        base, nonfinite, **base_kwargs: see :class:`~autobalance.methods.base.PreCombineMethod`.
    """

    method_name = "rlw"

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        seed: int = 0,
        sum_to_k: bool = False,
        base: type[torch.optim.Optimizer] | str = "adam",
        **kwargs: Any,
    ) -> None:
        self._generator = make_generator(seed)
        self.sum_to_k = bool(sum_to_k)
        super().__init__(params, base, **kwargs)

    def weights(self, ctx: WeightingStep) -> Sequence[float]:
        k = len(ctx.names)
        eps = torch.randn(k, generator=self._generator, dtype=torch.float64).tolist()
        scale = float(k) if self.sum_to_k else 1.0
        return [scale * w for w in softmax(eps)]

    def extra_state(self) -> dict[str, Any]:
        return {"generator": self._generator.get_state()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "generator" in state:
            self._generator.set_state(state["generator"].cpu())  # map_location may move it
