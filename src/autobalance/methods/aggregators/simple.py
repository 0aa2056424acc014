"""The trivial aggregators: the sum and the mean of the per-loss gradients.

``d = Σ_k g_k`` (equals one backward of the summed loss, at ``K`` backward passes) and
``d = (1/K) Σ_k g_k``.  They are the reference point of every other aggregator and of the
equal-budget comparisons.
"""

from __future__ import annotations

from torch import Tensor

from autobalance.methods.aggregation import check_gradient_matrix, register_aggregator

__all__ = ["MeanAggregator", "SumAggregator"]


@register_aggregator("sum", summary="Sum of the per-loss gradients (K backward passes).")
class SumAggregator:
    """``d = Σ_k g_k``."""

    def __call__(self, G: Tensor, losses: Tensor | None = None) -> Tensor:
        return check_gradient_matrix(G).sum(dim=0)


@register_aggregator("mean", summary="Mean of the per-loss gradients (K backward passes).")
class MeanAggregator:
    """``d = (1/K) Σ_k g_k``."""

    def __call__(self, G: Tensor, losses: Tensor | None = None) -> Tensor:
        return check_gradient_matrix(G).mean(dim=0)
