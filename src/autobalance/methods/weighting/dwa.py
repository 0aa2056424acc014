"""Dynamic Weight Average (DWA).

Liu, Johns & Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019, the
Dynamic Weight Average rule:

    w_k(t) = K · exp(r_k(t−1)/T) / Σ_j exp(r_j(t−1)/T),    r_k(t−1) = L_k(t−1) / L_k(t−2),

with temperature ``T = 2`` and ``w_k(t) = 1`` for ``t = 1, 2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from autobalance.errors import check_positive
from autobalance.methods.weighting._common import check_every, softmax
from autobalance.methods.weighting.base import STATE, Weighting, WeightingStep

__all__ = ["DynamicWeightAverage"]


@dataclass(eq=False)
class DynamicWeightAverage(Weighting):
    """Dynamic Weight Average of Liu, Johns & Davison (CVPR 2019).

    ``w_k = K·softmax_k(r/T)`` with ``r_k = L̄_k(e−1) / L̄_k(e−2)``, where ``L̄_k(e)`` is the mean
    of loss ``k`` over "epoch" ``e``; the weights are ``1`` during the first two epochs.

    Deviation: the paper's epoch is one pass over the data; PINNs resample points every step, so
    an "epoch" here is a window of ``every`` consecutive steps (default 1: per-step loss values,
    ``r_k = L_k(t−1)/L_k(t−2)``).  The weights of a window are computed from the two preceding
    complete windows and held for the whole window.  When ``L̄_k(e−2) = 0`` the ratio is undefined
    and is taken as ``r_k = 1``.

    Args:
        temperature: ``T > 0`` (default 2, the paper's).
        every: steps per averaging window (default 1).
    """

    name: ClassVar[str] = "dwa"
    temperature: float = 2.0
    every: int = 1
    window_sum: list[float] = field(default_factory=list, init=False, metadata=STATE)
    window_count: int = field(default=0, init=False, metadata=STATE)
    #: The last two complete window means, oldest first.
    averages: list[list[float]] = field(default_factory=list, init=False, metadata=STATE)
    current: list[float] | None = field(default=None, init=False, metadata=STATE)

    def __post_init__(self) -> None:
        self.temperature = check_positive("temperature", self.temperature)
        self.every = check_every(self.every)

    def __call__(self, ctx: WeightingStep) -> Sequence[float]:
        k = len(ctx.names)
        used = list(self.current) if self.current is not None else [1.0] * k
        values = [ctx.values[n] for n in ctx.names]
        if not self.window_sum:
            self.window_sum = [0.0] * k
        self.window_sum = [s + v for s, v in zip(self.window_sum, values, strict=True)]
        self.window_count += 1
        if self.window_count == self.every:
            mean = [s / self.every for s in self.window_sum]
            self.averages = [*self.averages, mean][-2:]
            self.window_sum, self.window_count = [0.0] * k, 0
            if len(self.averages) == 2:
                older, newer = self.averages
                ratios = [n / o if o != 0 else 1.0 for n, o in zip(newer, older, strict=True)]
                self.current = [k * w for w in softmax([r / self.temperature for r in ratios])]
        return used
