"""Homoscedastic uncertainty weighting.

Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene
Geometry and Semantics", CVPR 2018, Sec. 3.2, the objective for regression (Gaussian) terms:

    L(θ, σ) = Σ_k 1/(2σ_k²) · L_k(θ) + log σ_k.

With the learnable ``s_k = log σ_k²`` (the paper's own parametrisation, Sec. 3.2, chosen for
numerical stability) this is

    L(θ, s) = Σ_k ½·exp(−s_k)·L_k(θ) + ½·s_k,

so the network gets ``∇_θ L = Σ_k w_k ∇L_k`` with ``w_k = ½·exp(−s_k)``, and
``∂L/∂s_k = ½ − ½·exp(−s_k)·L_k``.  PINN losses are mean squares (Gaussian likelihoods), hence
the regression form; its stationary point is ``s_k = log L_k``, i.e. ``w_k = 1/(2 L_k)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from torch import Tensor

from autobalance.errors import HyperparameterError
from autobalance.methods.weighting._common import LearnableVector
from autobalance.methods.weighting.base import STATE, Weighting, WeightingStep

__all__ = ["UncertaintyWeighting"]

#: Smallest initial log-variance: ``exp(−s)`` overflows a float for ``s < −709.78``.
MIN_INIT = -700.0


@dataclass(eq=False)
class UncertaintyWeighting(Weighting):
    """Learned homoscedastic-uncertainty weights ``w_k = ½·exp(−s_k)`` (Kendall et al. 2018).

    Each step: the network gets ``Σ_k ½·exp(−s_k(t))·∇L_k`` (one backward pass), then the
    log-variances take one step of their own optimizer with the exact gradient
    ``∂L/∂s_k = ½ − ½·exp(−s_k(t))·L_k(t)`` — the simultaneous update of (θ, s) of joint training.

    Deviation: the paper trains ``s`` with the network's optimizer; here ``s`` has its own
    optimizer (Adam by default, with ``weight_lr`` defaulting to the base learning rate, which for
    an Adam base with default betas equals joint training) so that any base optimizer can be used
    and checkpoints stay independent of the base's parameter groups.  A learning-rate scheduler on
    the base optimizer does not act on ``s``.

    Args:
        init: initial ``s_k`` (default 0, i.e. ``w_k = ½``; at least ``−700``).
        weight_lr: learning rate of ``s`` (default: the base optimizer's first group's lr).
        weight_optimizer: ``"adam"`` (default) or ``"sgd"``.
    """

    name: ClassVar[str] = "uncertainty"
    init: float = 0.0
    weight_lr: float | None = None
    weight_optimizer: str = "adam"
    #: The learnable log-variances ``s`` (made by :meth:`bind`, when the base learning rate is
    #: known); ``log_variances.tolist()`` reads them after the first step.
    log_variances: LearnableVector = field(init=False, metadata=STATE)

    def __post_init__(self) -> None:
        init = float(self.init)
        if not (math.isfinite(init) and init >= MIN_INIT):
            raise HyperparameterError(
                f"init (initial log-variance) must be finite and >= {MIN_INIT} "
                f"(w = ½·exp(−init) must be a finite float), got {self.init!r}"
            )
        self.init = init

    def bind(self, params: Sequence[Tensor], lr: float) -> None:
        weight_lr = lr if self.weight_lr is None else self.weight_lr
        self.log_variances = LearnableVector(
            "uncertainty log-variances", weight_lr, self.weight_optimizer
        )

    def __call__(self, ctx: WeightingStep) -> Sequence[float]:
        if not self.log_variances.ready:
            self.log_variances.create([self.init] * len(ctx.names))
        s = self.log_variances.tolist()
        used = [0.5 * math.exp(-sk) for sk in s]
        grad = [0.5 - wk * ctx.values[n] for wk, n in zip(used, ctx.names, strict=True)]
        self.log_variances.apply_gradient(grad)
        return used
