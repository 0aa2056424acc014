"""The trivial aggregators: the sum and the mean of the per-loss gradients.

``d = Σ_k g_k`` (``w = 1``; equals one backward of the summed loss, at ``K`` backward passes) and
``d = (1/K) Σ_k g_k`` (``w = 1/K``).  They are the reference point of every other aggregator and
of the equal-budget comparisons.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autobalance.methods.aggregators._base import Aggregator

__all__ = ["MeanAggregator", "SumAggregator"]


@dataclass
class SumAggregator(Aggregator):
    """Sum of the per-loss gradients (K backward passes)."""

    name = "sum"

    def weights(self, M: np.ndarray, losses: np.ndarray | None = None) -> np.ndarray:
        return np.ones(M.shape[0])


@dataclass
class MeanAggregator(Aggregator):
    """Mean of the per-loss gradients (K backward passes)."""

    name = "mean"

    def weights(self, M: np.ndarray, losses: np.ndarray | None = None) -> np.ndarray:
        return np.full(M.shape[0], 1.0 / M.shape[0])
