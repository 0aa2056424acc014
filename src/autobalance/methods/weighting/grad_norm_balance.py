"""Gradient-norm balancing of the PINN expert's guide.

Wang, Sankaran, Wang & Perdikaris, "An Expert's Guide to Training Physics-Informed Neural
Networks", arXiv:2308.08468 (2023), the global (gradient-norm) loss-balancing algorithm:

    λ̂_k = (Σ_j ‖∇_θ L_j‖) / ‖∇_θ L_k‖,    λ_k ← α·λ_k + (1 − α)·λ̂_k,

``α = 0.9``, updated every ``f = 1000`` steps, weights starting at 1.  The weighted gradients
``λ̂_k ∇L_k`` all have the norm ``Σ_j ‖∇L_j‖``.

The authors' jaxpi library differs from the paper in the numerator: it uses the *mean*
``(1/K)·Σ_j ‖∇L_j‖`` (weights ``K`` times smaller) and adds ``1e-5·mean`` to the denominator;
here the paper's sum is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from autobalance.errors import check_in_range
from autobalance.methods.weighting._common import check_every, is_update_step
from autobalance.methods.weighting.base import STATE, Weighting, WeightingStep

__all__ = ["GradientNormBalancing"]


@dataclass(eq=False)
class GradientNormBalancing(Weighting):
    """Global gradient-norm weights of the expert's guide (Wang et al. 2023).

    On update steps (``1, 1 + every, …``) the per-loss gradients are computed (``K`` backward
    passes), ``λ̂`` is formed from the unweighted gradients, the running weights are updated and
    used at once for that step's update ``Σ_k λ_k ∇L_k``; other steps use one backward pass of
    ``Σ_k λ_k L_k`` with the held weights.  The first step is an update step, so training starts
    from ``α·1 + (1 − α)·λ̂``; ``warm_start=True`` sets ``λ = λ̂`` at the first update instead.
    A term whose gradient is zero keeps its weight.

    Deviation (timing): jaxpi takes its optimizer step first and then updates the weights (at
    steps ``0, f, 2f, …``, from the new parameters), so its first step uses ``λ = 1`` and each
    update acts from the next step on; here an update is used by the step that computes it.

    Args:
        alpha: ``α ∈ [0, 1)``, the weight of the old value (default 0.9).
        every: update period ``f`` in steps (default 1000).
        warm_start: start from ``λ̂`` at the first update instead of from 1 (default ``False``).
    """

    name: ClassVar[str] = "grad-norm"
    alpha: float = 0.9
    every: int = 1000
    warm_start: bool = False
    lambdas: list[float] | None = field(default=None, init=False, metadata=STATE)

    def __post_init__(self) -> None:
        self.alpha = check_in_range("alpha", self.alpha, 0.0, 1.0, closed="[)")
        self.every = check_every(self.every)
        self.warm_start = bool(self.warm_start)

    def wants_gradients(self, step: int) -> bool:
        return is_update_step(step, self.every)

    def __call__(self, ctx: WeightingStep) -> Sequence[float]:
        first = self.lambdas is None
        if self.lambdas is None:
            self.lambdas = [1.0] * len(ctx.names)
        if ctx.gradients is not None:
            norms = ctx.gradients.matrix.double().norm(dim=1).tolist()
            total = sum(norms)
            alpha = 0.0 if first and self.warm_start else self.alpha
            self.lambdas = [
                alpha * lam + (1 - alpha) * total / n if n > 0 else lam
                for lam, n in zip(self.lambdas, norms, strict=True)
            ]
        return list(self.lambdas)
