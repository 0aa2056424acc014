"""GradNorm: learnable loss weights that equalise gradient norms at training-rate-dependent targets.

Chen, Badrinarayanan, Lee & Rabinovich, "GradNorm: Gradient Normalization for Adaptive Loss
Balancing in Deep Multitask Networks", ICML 2018, Sec. 3.2 and Algorithm 1:

    G_k = ‖∇_W (w_k L_k)‖ = w_k ‖∇_W L_k‖,    Ḡ = mean_k G_k,
    L̃_k = L_k(t) / L_k(0),    r_k = L̃_k / mean_j L̃_j,
    L_grad = Σ_k |G_k − Ḡ · r_k^α|        (eq. 2; the target Ḡ·r_k^α is a constant),

so ``∂L_grad/∂w_k = sign(G_k − Ḡ r_k^α)·‖∇_W L_k‖``; after each update the weights are
renormalised to ``Σ_k w_k = K``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from torch import Tensor

from autobalance.errors import HyperparameterError, check_positive
from autobalance.methods.weighting._common import LearnableVector
from autobalance.methods.weighting.base import STATE, Weighting, WeightingStep

__all__ = ["GradNorm"]

#: Floor of a weight before renormalisation (keeps every weight positive).
MIN_WEIGHT = 1e-6


def _sign(x: float) -> float:
    return (x > 0) - (x < 0)


@dataclass(eq=False)
class GradNorm(Weighting):
    """GradNorm (Chen et al., ICML 2018), Algorithm 1.

    Each step uses the per-loss gradient matrix (``K`` backward passes; the combined gradient
    ``Σ_k w_k(t) ∇L_k`` is formed from it with no extra pass).  The network is updated with the
    current weights ``w(t)``; the weights then take one step of their own optimizer on
    ``∂L_grad/∂w`` (target held constant), are floored at ``1e-6`` and renormalised to sum to
    ``K``, giving ``w(t+1)``.  ``L_k(0)`` is the loss at the first step.

    Deviations: the weights have their own optimizer (Adam by default, ``weight_lr`` defaulting
    to the base learning rate) rather than sharing the network's; the floor at ``1e-6`` (the
    paper does not say what happens to a weight driven below zero); ``L̃_k = 1`` when
    ``L_k(0) = 0``.

    Args:
        alpha: asymmetry ``α ≥ 0`` (default 1.5, the paper's value for most of its experiments).
        shared_param: index, in optimizer order, of the shared layer ``W`` (default: the last
            parameter tensor with at least 2 dimensions).
        weight_lr: learning rate of the weights (default: the base optimizer's first group's lr).
        weight_optimizer: ``"adam"`` (default) or ``"sgd"``.
    """

    name: ClassVar[str] = "gradnorm"
    alpha: float = 1.5
    shared_param: int | None = None
    weight_lr: float | None = None
    weight_optimizer: str = "adam"
    #: The learnable weights ``w`` (made by :meth:`bind`, when the base learning rate is known).
    weights: LearnableVector = field(init=False, metadata=STATE)
    initial_losses: list[float] | None = field(default=None, init=False, metadata=STATE)
    #: Index, in optimizer order, of the shared layer ``W`` (set by :meth:`bind`).
    shared_index: int = field(default=-1, init=False)

    def __post_init__(self) -> None:
        self.alpha = check_positive("alpha", self.alpha, allow_zero=True)

    def bind(self, params: Sequence[Tensor], lr: float) -> None:
        self.shared_index = self._resolve_shared(self.shared_param, params)
        weight_lr = lr if self.weight_lr is None else self.weight_lr
        self.weights = LearnableVector("gradnorm weights", weight_lr, self.weight_optimizer)

    @staticmethod
    def _resolve_shared(shared_param: int | None, params: Sequence[Tensor]) -> int:
        if shared_param is None:
            matrices = [i for i, p in enumerate(params) if p.dim() >= 2]
            if not matrices:
                raise HyperparameterError(
                    "method 'gradnorm' needs a shared layer: no parameter has >= 2 dimensions; "
                    "pass shared_param=<index of the parameter>"
                )
            return matrices[-1]
        if isinstance(shared_param, bool) or not isinstance(shared_param, int):
            raise HyperparameterError(f"shared_param must be an integer, got {shared_param!r}")
        if not -len(params) <= shared_param < len(params):
            raise HyperparameterError(
                f"shared_param={shared_param} is out of range: there are {len(params)} parameters"
            )
        return shared_param % len(params)

    def wants_gradients(self, step: int) -> bool:
        return True

    def __call__(self, ctx: WeightingStep) -> Sequence[float]:
        assert ctx.gradients is not None
        k = len(ctx.names)
        values = [ctx.values[n] for n in ctx.names]
        if not self.weights.ready:
            self.weights.create([1.0] * k)
        if self.initial_losses is None:
            self.initial_losses = values
        used = self.weights.tolist()
        gm = ctx.gradients
        start = sum(gm.sizes[: self.shared_index])
        shared = gm.matrix[:, start : start + gm.sizes[self.shared_index]].double()
        shared_norms = shared.norm(dim=1).tolist()
        g = [w * n for w, n in zip(used, shared_norms, strict=True)]
        g_mean = math.fsum(g) / k
        rel = [
            v / v0 if v0 != 0 else 1.0 for v, v0 in zip(values, self.initial_losses, strict=True)
        ]
        rel_mean = math.fsum(rel) / k
        rates = [r / rel_mean if rel_mean != 0 else 1.0 for r in rel]
        targets = [g_mean * r**self.alpha for r in rates]
        grad = [_sign(gk - tk) * n for gk, tk, n in zip(g, targets, shared_norms, strict=True)]
        self.weights.apply_gradient(grad)
        floored = [max(w, MIN_WEIGHT) for w in self.weights.tolist()]
        total = math.fsum(floored)
        self.weights.assign([k * w / total for w in floored])
        return used
