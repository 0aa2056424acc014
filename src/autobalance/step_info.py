"""What one optimisation step reports: per-loss statistics and cost accounting."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["LossStats", "StepInfo"]


@dataclass(frozen=True)
class LossStats:
    """Statistics of one named loss at one step.

    Attributes:
        value: the loss value at the parameters before the step.
        grad_norm: Euclidean norm of the loss's raw gradient ``‖∇L_k‖``.
        update_norm: norm of the preconditioned update ``‖u_k‖`` of the state that owns this loss
            (learning rate included, combine weight excluded); NaN when the method has no
            per-loss update (e.g. one optimizer on the summed loss).
        cosine: cosine between the raw gradient ``∇L_k`` and the combined update ``Δ`` where the
            parameters move as ``θ ← θ − Δ``.  Positive means the step decreases ``L_k`` to first
            order.  NaN where unknown or where either vector is zero.
        state: name of the optimizer state that owns this loss (the loss name itself unless
            losses are grouped).
        weight: the weight the method gave this loss at this step (weighting methods; NaN
            where the method has no per-loss weight).
    """

    value: float
    grad_norm: float = math.nan
    update_norm: float = math.nan
    cosine: float = math.nan
    state: str = ""
    weight: float = math.nan


@dataclass(frozen=True)
class StepInfo:
    """Result of ``step(losses)``.

    Attributes:
        step: number of steps taken so far, this one included (skipped steps are not counted).
        losses: per-loss statistics, in the order the losses were given.
        update_norm: norm of the combined update ``‖Δ‖`` (weight decay excluded).
        backward_passes: backward passes this step used (cost accounting).
        needs_grad_matrix: whether the method needed every loss's full gradient.
        skipped: ``True`` when the step was skipped because a loss was not finite.
        reason: why the step was skipped, empty otherwise.
        grad_cosines: ``K × K`` cosines between the raw loss gradients, ``cos(∇L_i, ∇L_j)``, in
            loss order (empty where the method does not compute per-loss gradients; NaN where a
            gradient is zero).
        update_cosines: ``S × S`` cosines between the per-state updates ``cos(u_s, u_r)``, in
            state order (empty for methods without per-loss updates).
    """

    step: int
    losses: dict[str, LossStats] = field(default_factory=dict)
    update_norm: float = math.nan
    backward_passes: int = 0
    needs_grad_matrix: bool = False
    skipped: bool = False
    reason: str = ""
    grad_cosines: tuple[tuple[float, ...], ...] = ()
    update_cosines: tuple[tuple[float, ...], ...] = ()

    @property
    def values(self) -> dict[str, float]:
        """Loss values by name."""
        return {name: s.value for name, s in self.losses.items()}

    @property
    def weights(self) -> dict[str, float]:
        """Per-loss weights by name (NaN where the method has none)."""
        return {name: s.weight for name, s in self.losses.items()}

    @property
    def total_loss(self) -> float:
        """Sum of the loss values."""
        return math.fsum(s.value for s in self.losses.values())
