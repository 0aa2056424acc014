"""Random Loss Weighting (RLW).

Lin, Ye, Xu, Shi & Zhang, "Reasonable Effectiveness of Random Weighting: A Litmus Test for
Multi-Task Learning", TMLR 2022, random loss weighting with the standard normal
distribution:

    w = softmax(ε),    ε ~ N(0, I_K)   drawn afresh every step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from autobalance.methods.weighting._common import SeededGenerator, softmax
from autobalance.methods.weighting.base import STATE, Weighting, WeightingStep

__all__ = ["RandomLossWeighting"]


@dataclass(eq=False)
class RandomLossWeighting(Weighting):
    """Random weights ``w = softmax(ε)``, ``ε ~ N(0, I)``, drawn each step (Lin et al. 2022).

    The draws come from the method's own seeded ``torch.Generator`` (its state is saved in
    checkpoints), so runs are reproducible and independent of the global RNG.  As in the paper
    the weights sum to 1; ``sum_to_k=True`` multiplies them by ``K`` (sum ``K``, the scale of
    equal weights, so the base learning rate means the same as for EW).

    Args:
        seed: seed of the generator (default 0).
        sum_to_k: scale the weights by ``K`` (default ``False``: the paper's sum of 1).
    """

    name: ClassVar[str] = "rlw"
    seed: int = 0
    sum_to_k: bool = False
    generator: SeededGenerator = field(init=False, metadata=STATE)

    def __post_init__(self) -> None:
        self.generator = SeededGenerator(self.seed)
        self.sum_to_k = bool(self.sum_to_k)

    def __call__(self, ctx: WeightingStep) -> Sequence[float]:
        k = len(ctx.names)
        eps = torch.randn(k, generator=self.generator.generator, dtype=torch.float64).tolist()
        scale = float(k) if self.sum_to_k else 1.0
        return [scale * w for w in softmax(eps)]
