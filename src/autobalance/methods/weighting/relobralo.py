"""ReLoBRaLo: Relative Loss Balancing with Random Lookback.

Bischof & Kraus, "Multi-Objective Loss Balancing for Physics-Informed Deep Learning",
arXiv:2110.09813 (2021), the ReLoBRaLo update:

    bal_k(t, t') = K · exp(L_k(t) / (T·L_k(t') + ε)) / Σ_j exp(L_j(t) / (T·L_j(t') + ε)),
    λ_k^bal(t) = ρ·λ_k(t−1) + (1 − ρ)·bal_k(t, 0),          ρ ~ Bernoulli(E[ρ]),
    λ_k(t) = α·λ_k^bal(t) + (1 − α)·bal_k(t, t−1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from autobalance.errors import check_in_range, check_positive
from autobalance.methods.weighting._common import SeededGenerator, softmax
from autobalance.methods.weighting.base import STATE, Weighting, WeightingStep

__all__ = ["ReLoBRaLo"]


@dataclass(eq=False)
class ReLoBRaLo(Weighting):
    """ReLoBRaLo (Bischof & Kraus 2021).

    The first step is ``t = 0``: it records ``L(0)`` and uses ``λ(0) = 1`` exactly (no update,
    no draw).  At every later step the weights ``λ(t)`` are computed from the loss values before
    this step, ``L(t)``, the previous step's ``L(t−1)`` and the first step's ``L(0)``, and used
    at once.  ``ρ`` is drawn once per update (steps ``t ≥ 1``) from the method's own seeded
    ``torch.Generator`` (state saved in checkpoints).

    A zero denominator ``T·L_k(t') + ε`` (only possible with ``ε = 0``) gives the limit of the
    ratio: ``L_k(t)/(T·L_k(t'))`` is taken as ``1/T`` (unchanged) when ``L_k(t) = 0`` too, else
    as ``+∞`` (that term then takes the whole balance ``K``, shared with any other such term).

    Defaults ``α = 0.999``, ``E[ρ] = 0.999``, ``T = 0.1``, ``ε = 1e-8``, as specified for this
    project (issue 4).  The paper tunes these per problem; the authors' Keras code defaults to
    ``E[ρ] = 0.99``, so treat them as a starting point.

    Deviation: the authors' code also uses ``α = 0`` at its second call (``λ(1) = bal(1, 0)``);
    here the paper's update applies from ``t = 1`` on.

    Args:
        alpha: ``α ∈ [0, 1]``, weight of the historical balance (default 0.999).
        expected_rho: ``E[ρ] ∈ [0, 1]``, probability of keeping the history (default 0.999).
        temperature: ``T > 0`` (default 0.1).
        eps: ``ε ≥ 0`` added to the denominators (default 1e-8).
        seed: seed of the generator that draws ``ρ`` (default 0).
    """

    name: ClassVar[str] = "relobralo"
    alpha: float = 0.999
    expected_rho: float = 0.999
    temperature: float = 0.1
    eps: float = 1e-8
    seed: int = 0
    generator: SeededGenerator = field(init=False, metadata=STATE)
    initial: list[float] | None = field(default=None, init=False, metadata=STATE)
    previous: list[float] | None = field(default=None, init=False, metadata=STATE)
    lambdas: list[float] | None = field(default=None, init=False, metadata=STATE)

    def __post_init__(self) -> None:
        self.alpha = check_in_range("alpha", self.alpha, 0.0, 1.0)
        self.expected_rho = check_in_range("expected_rho", self.expected_rho, 0.0, 1.0)
        self.temperature = check_positive("temperature", self.temperature)
        self.eps = check_positive("eps", self.eps, allow_zero=True)
        self.generator = SeededGenerator(self.seed)

    def _ratio(self, now: float, then: float) -> float:
        """``L_k(t) / (T·L_k(t') + ε)``, with the limit when the denominator is 0."""
        denominator = self.temperature * then + self.eps
        if denominator == 0:
            return 1.0 / self.temperature if now == 0 else math.inf
        return now / denominator

    def _balance(self, now: list[float], then: list[float]) -> list[float]:
        """``bal(t, t') = K·softmax_k(L_k(t) / (T·L_k(t') + ε))``."""
        k = len(now)
        logits = [self._ratio(n, p) for n, p in zip(now, then, strict=True)]
        return [k * w for w in softmax(logits)]

    def __call__(self, ctx: WeightingStep) -> Sequence[float]:
        values = [ctx.values[n] for n in ctx.names]
        if self.initial is None or self.previous is None or self.lambdas is None:
            # t = 0: record L(0); λ(0) = 1.
            self.initial, self.previous = values, values
            self.lambdas = [1.0] * len(values)
            return list(self.lambdas)
        draw = torch.rand((), generator=self.generator.generator, dtype=torch.float64).item()
        rho = 1.0 if draw < self.expected_rho else 0.0
        from_start = self._balance(values, self.initial)
        from_last = self._balance(values, self.previous)
        self.lambdas = [
            self.alpha * (rho * lam + (1 - rho) * b0) + (1 - self.alpha) * b1
            for lam, b0, b1 in zip(self.lambdas, from_start, from_last, strict=True)
        ]
        self.previous = values
        return list(self.lambdas)
