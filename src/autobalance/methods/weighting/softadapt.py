"""SoftAdapt: weights from a softmax of the losses' recent rates of change.

Heydari, Thompson & Mehmood, "SoftAdapt: Techniques for Adaptive Loss Weighting of Neural
Networks with Multi-Part Loss Functions", arXiv:1912.12355 (2019):

    s_k = L_k(t) − L_k(t−1),                                   (first-order rate of change)
    w_k = exp(β s_k − m) / Σ_i exp(β s_i − m),   m = max_j β s_j          (original SoftAdapt)
    normalised:      s_k ← s_k / (Σ_j |s_j| + ε)
    loss-weighted:   w_k = L_k exp(β s_k − m) / Σ_i L_i exp(β s_i − m)

with ``β = 0.1``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from autobalance.errors import HyperparameterError, check_positive
from autobalance.methods.weighting._common import softmax
from autobalance.methods.weighting.base import STATE, Weighting, WeightingStep

__all__ = ["SoftAdapt"]


@dataclass(eq=False)
class SoftAdapt(Weighting):
    """SoftAdapt (Heydari, Thompson & Mehmood 2019).

    ``s_k = L_k(t) − L_k(t−1)`` from the loss values before this step and before the previous one;
    at the first step ``s = 0``.  ``normalize`` divides ``s`` by ``Σ|s| + ε``; ``loss_weighted``
    multiplies each softmax numerator by ``L_k(t)``; both may be combined (the paper's
    "normalised loss-weighted" variant).  The paper's weights sum to 1; ``sum_to_k=True``
    multiplies them by ``K``.

    Deviation: the paper also considers higher-order finite differences over several past steps;
    only the first-order difference (its default) is implemented.

    Args:
        beta: ``β`` (any finite number; default 0.1; ``β > 0`` favours the loss that decreases
            least or grows).
        normalize: normalise the rates of change (default ``False``).
        loss_weighted: weight by the loss values (default ``False``).
        eps: ``ε > 0`` of the normalisation (default 1e-8).
        sum_to_k: scale the weights by ``K`` (default ``False``).
    """

    name: ClassVar[str] = "softadapt"
    beta: float = 0.1
    normalize: bool = False
    loss_weighted: bool = False
    eps: float = 1e-8
    sum_to_k: bool = False
    previous: list[float] | None = field(default=None, init=False, metadata=STATE)

    def __post_init__(self) -> None:
        beta = float(self.beta)
        if not math.isfinite(beta):
            raise HyperparameterError(f"beta must be a finite number, got {self.beta!r}")
        self.beta = beta
        self.normalize = bool(self.normalize)
        self.loss_weighted = bool(self.loss_weighted)
        self.eps = check_positive("eps", self.eps)
        self.sum_to_k = bool(self.sum_to_k)

    def __call__(self, ctx: WeightingStep) -> Sequence[float]:
        values = [ctx.values[n] for n in ctx.names]
        k = len(values)
        if self.previous is None:
            rates = [0.0] * k
        else:
            rates = [v - p for v, p in zip(values, self.previous, strict=True)]
        self.previous = values
        if self.normalize:
            scale = math.fsum(abs(s) for s in rates) + self.eps
            rates = [s / scale for s in rates]
        w = softmax([self.beta * s for s in rates])
        if self.loss_weighted:
            weighted = [wk * v for wk, v in zip(w, values, strict=True)]
            total = math.fsum(weighted)
            w = [x / total for x in weighted] if total > 0 else [1.0 / k] * k
        factor = float(k) if self.sum_to_k else 1.0
        return [factor * x for x in w]
