"""Learning-rate annealing weights for PINNs.

Wang, Teng & Perdikaris, "Understanding and Mitigating Gradient Flow Pathologies in
Physics-Informed Neural Networks", SIAM J. Sci. Comput. 43(5), 2021, Algorithm 1:

    λ̂_k = max_θ |∇_θ L_r(θ)| / mean_θ |∇_θ L_k(θ)|,    λ_k ← (1 − α)·λ_k + α·λ̂_k,

for every term ``k`` other than the PDE residual ``L_r`` (whose weight stays 1), ``α = 0.9``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from autobalance.errors import HyperparameterError, check_in_range
from autobalance.methods.weighting._common import check_every, is_update_step
from autobalance.methods.weighting.base import STATE, Weighting, WeightingStep

__all__ = ["LearningRateAnnealing", "find_reference"]


def find_reference(names: Sequence[str], reference: str | None, method: str) -> int:
    """Index of the residual (reference) loss: ``reference`` if given, else the first name that
    contains ``"residual"``; :class:`HyperparameterError` when there is none."""
    if reference is not None:
        if reference not in names:
            raise HyperparameterError(
                f"method {method!r}: reference={reference!r} is not one of the losses {list(names)}"
            )
        return list(names).index(reference)
    for i, name in enumerate(names):
        if "residual" in name:
            return i
    raise HyperparameterError(
        f"method {method!r} needs a reference (PDE residual) loss: none of {list(names)} contains "
        "'residual'; pass reference=<loss name>"
    )


@dataclass(eq=False)
class LearningRateAnnealing(Weighting):
    """Learning-rate annealing weights (Wang, Teng & Perdikaris 2021, Algorithm 1).

    On update steps (``1, 1 + every, …``) the per-loss gradients are computed (``K`` backward
    passes), ``λ̂_k`` is formed from the *unweighted* gradients, the running weights are
    updated by the moving average and used at once for that step's update ``Σ_k λ_k ∇L_k``.
    Other steps use one backward pass of ``Σ_k λ_k L_k`` with the held weights.  The weights
    start at 1.

    Using ``∇(λ_k L_k)`` in the denominator (seen in some code) gives ``λ̂_k = target/λ_k``, whose
    fixed point is ``√target``: that is avoided here.

    Degenerate gradients: a term whose gradient is zero keeps its weight (``λ̂_k`` is
    undefined); when the residual's gradient is zero (``max|∇L_r| = 0``, e.g. ``L_r = 0`` at
    initialisation) no weight is updated, since ``λ̂ = 0`` would zero every other term (with
    ``α = 1`` for good: the update would then vanish).

    Deviations from the authors' TensorFlow code, which follows the same rule but: takes the
    statistics over the weight matrices only and averages per-layer means (here ``max`` and
    ``mean`` run over every parameter entry at once, the paper's ``θ``); updates every 10 steps
    (here ``every``, default 1 as in Algorithm 1); and uses 0.9 as the weight of the *old*
    value, where Algorithm 1 (eq. 41) gives ``α = 0.9`` to the new estimate, as here.

    Args:
        alpha: ``α ∈ (0, 1]``, the weight of the new estimate (default 0.9, the paper's).
        every: update period in steps (default 1).
        reference: name of the residual loss (default: the first name containing "residual").
    """

    name: ClassVar[str] = "lr-annealing"
    alpha: float = 0.9
    every: int = 1
    reference: str | None = None
    lambdas: list[float] | None = field(default=None, init=False, metadata=STATE)

    def __post_init__(self) -> None:
        self.alpha = check_in_range("alpha", self.alpha, 0.0, 1.0, closed="(]")
        self.every = check_every(self.every)
        if self.reference is not None and not isinstance(self.reference, str):
            raise HyperparameterError(f"reference must be a loss name, got {self.reference!r}")

    def check_names(self, names: list[str]) -> None:
        find_reference(names, self.reference, self.name)

    def wants_gradients(self, step: int) -> bool:
        return is_update_step(step, self.every)

    def __call__(self, ctx: WeightingStep) -> Sequence[float]:
        ref = find_reference(ctx.names, self.reference, self.name)
        if self.lambdas is None:
            self.lambdas = [1.0] * len(ctx.names)
        if ctx.gradients is not None:
            abs_grads = ctx.gradients.matrix.double().abs()
            max_ref = float(abs_grads[ref].max())
            means = abs_grads.mean(dim=1).tolist()
            lambdas = list(self.lambdas)
            for k, mean_k in enumerate(means):
                if k != ref and mean_k > 0 and max_ref > 0:
                    lambdas[k] = (1 - self.alpha) * lambdas[k] + self.alpha * max_ref / mean_k
            lambdas[ref] = 1.0
            self.lambdas = lambdas
        return list(self.lambdas)
