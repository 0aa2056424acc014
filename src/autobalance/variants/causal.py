"""Causal weighting of the residual loss of time-dependent problems.

Wang, Sankaran & Perdikaris, "Respecting causality for training physics-informed neural
networks", CMAME 421, 2024, Eq. (2.11)-(2.12): with the residual points split into ``M`` time
chunks ``t_1 < ... < t_M`` and ``L_r(t_i)`` the mean squared residual of chunk ``i``::

    L_r = (1/M) Σ_i w_i L_r(t_i),     w_i = exp(−ε Σ_{k<i} L_r(t_k))   (w without gradient)

so a later time only counts once every earlier time is resolved.

The weights depend on the parameters but carry no gradient, so the weighted loss is not an
objective a line search can minimise (its slope is not the derivative of its values): training
phases refuse it (:func:`~autobalance.phases.problem_objective`) and minimise the plain losses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from autobalance._params import AtLeast, Between, param
from autobalance.errors import ConfigError
from autobalance.losses import NamedLosses
from autobalance.variants.base import Variant, pointwise_of, replace_loss

if TYPE_CHECKING:
    from autobalance.problems.base import Problem

__all__ = ["CausalWeighting", "causal_weights"]


def causal_weights(chunk_losses: Tensor, epsilon: float) -> Tensor:
    """``w_i = exp(−ε Σ_{k<i} L_k)`` for the chunk losses ``L`` in time order (no gradient)."""
    losses = chunk_losses.detach()
    before = torch.cumsum(losses, dim=0) - losses
    return torch.exp(-epsilon * before)


@dataclass(eq=False)
class CausalWeighting(Variant):
    """Causal weighting (Wang, Sankaran & Perdikaris 2024): chunk i weighted exp(−ε Σ_{k<i} L_k).

    The points of loss ``loss`` are binned into ``chunks`` equal time intervals of the problem's
    domain (by their ``time`` coordinate), so fresh random points work; an empty chunk has loss
    0.  The loss's pointwise terms become ``r_j · sqrt(w_b N / (M n_b))`` for a point ``j`` in
    chunk ``b`` with ``n_b`` points, whose mean square is exactly the causal loss.  The weights
    of the last step are kept in :attr:`last_weights`.

    Args:
        time: name of the time input (default ``"t"``).
        chunks: number ``M`` of time chunks (>= 1).
        epsilon: causality parameter ``ε >= 0`` (paper: 1.0; 0 gives back the plain loss).
        loss: the loss to weight (default ``"residual"``).

    Raises:
        ConfigError: at setup, when the problem has no input named ``time``.
    """

    name = "causal"
    #: The weights are recomputed from the residuals at each call and carry no gradient.
    defines_phase_objective = False

    time: str = "t"
    chunks: int = param(32, AtLeast(1))
    epsilon: float = param(1.0, Between(0.0))
    loss: str = "residual"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.column = -1
        self.t_range = (0.0, 1.0)
        self.last_weights: Tensor | None = None
        self.last_chunk_losses: Tensor | None = None

    def setup(self, problem: Problem, model: nn.Module) -> nn.Module:
        model = super().setup(problem, model)
        names = list(problem.input_names)
        if self.time not in names:
            raise ConfigError(
                f"{self.where()}: problem {self.problem_name!r} has no time input {self.time!r} "
                f"(inputs: {', '.join(map(repr, names))}); causal weighting needs a "
                "time-dependent problem (or give the name of its time input as 'time')"
            )
        self.column = names.index(self.time)
        box = problem.domain
        self.t_range = (float(box.lower[self.column]), float(box.upper[self.column]))
        return model

    def chunk_index(self, t: Tensor) -> Tensor:
        """The chunk ``0..M−1`` of each time ``t`` ``(N,)`` in the domain's time interval."""
        t0, t1 = self.t_range
        idx = torch.floor((t.detach() - t0) / (t1 - t0) * self.chunks).long()
        return idx.clamp(0, self.chunks - 1)

    def transform_losses(self, losses: NamedLosses, step: int) -> NamedLosses:
        if self.column < 0:
            raise ConfigError(f"{self.where()}: call setup(problem, model) first")
        r = pointwise_of(self.where(), losses, self.loss)
        points = losses.points.get(self.loss)
        if points is None:
            raise ConfigError(f"{self.where()}: loss {self.loss!r} carries no points")
        n = r.shape[0]
        per_point = r.detach().reshape(n, -1).pow(2).mean(dim=1)
        idx = self.chunk_index(points[:, self.column]).to(r.device)
        zeros = torch.zeros(self.chunks, device=r.device, dtype=per_point.dtype)
        counts = zeros.index_add(0, idx, torch.ones_like(per_point))
        chunk_losses = zeros.index_add(0, idx, per_point) / counts.clamp_min(1)
        weights = causal_weights(chunk_losses, self.epsilon)
        self.last_weights, self.last_chunk_losses = weights, chunk_losses
        factor = torch.sqrt(weights * n / (self.chunks * counts.clamp_min(1)))[idx]
        return replace_loss(losses, self.loss, r * factor.reshape(n, *([1] * (r.ndim - 1))))
