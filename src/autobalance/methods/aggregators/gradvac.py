"""Gradient Vaccine (Wang, Tsvetkov, Firat & Cao, "Gradient Vaccine: Investigating and Improving
Multi-task Optimization in Massively Multilingual Models", ICLR 2021, Eq. (6), Algorithm 1).

Keeps an EMA target ``φ̂_ij`` of the cosine similarity of every ordered pair (initially 0).  For
every loss ``i``, ``g_i' = g_i``; visiting the other losses ``j`` in random order, with
``φ_ij = cos(g_i', g_j)``::

    if φ_ij < φ̂_ij:
        g_i' ← g_i' + ‖g_i'‖ (φ̂_ij √(1 − φ_ij²) − φ_ij √(1 − φ̂_ij²)) / (‖g_j‖ √(1 − φ̂_ij²)) · g_j
    φ̂_ij ← (1 − β) φ̂_ij + β φ_ij                                        (β = 0.01, the paper)

and ``d = Σ_i g_i'``.  The adjustment makes ``cos(g_i', g_j) = φ̂_ij`` exactly.  Granularity: the
whole parameter vector (the paper also applies it per layer; not here).  Every ``g_i'`` stays a
combination ``Σ_j C_ij g_j`` of the original rows and every product is read off the Gram matrix,
so the weights are ``w = 1ᵀC``.  Degenerate pairs (a zero
gradient, or ``|φ̂_ij| = 1``) are neither adjusted nor counted in the EMA.  The order comes from a
seeded generator (``shuffle=False``: fixed order); generator and targets are in the state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autobalance.errors import HyperparameterError
from autobalance.methods.aggregators._base import Aggregator
from autobalance.methods.aggregators._gram import row_norms
from autobalance.methods.aggregators._order import VisitOrder
from autobalance.methods.base import check_in_range

__all__ = ["GradVac"]


@dataclass
class GradVac(Aggregator):
    """GradVac (Wang et al. 2021): EMA cosine targets per pair."""

    name = "gradvac"
    beta: float = 0.01
    shuffle: bool = True
    seed: int = 0
    _order: VisitOrder = field(init=False, repr=False, compare=False)
    targets: list[list[float]] | None = field(default=None, init=False, compare=False)

    def __post_init__(self) -> None:
        self.beta = check_in_range("gradvac beta", self.beta, 0.0, 1.0, closed="(]")
        self._order = VisitOrder(self.shuffle, self.seed)

    def coefficients(self, M: np.ndarray) -> np.ndarray:
        """``C`` (``K × K``) with ``g_i' = Σ_j C_ij g_j`` (updates the targets)."""
        K = M.shape[0]
        if self.targets is None:
            self.targets = [[0.0] * K for _ in range(K)]
        elif len(self.targets) != K:
            raise HyperparameterError(f"gradvac was used with {len(self.targets)} losses, now {K}")
        norms = row_norms(M).tolist()
        C = np.eye(K)
        for i in range(K):
            for j in self._order.others(K, i):
                ni = math.sqrt(max(float(C[i] @ M @ C[i]), 0.0))
                if ni == 0.0 or norms[j] == 0.0:
                    continue
                phi = min(1.0, max(-1.0, float(C[i] @ M[:, j]) / (ni * norms[j])))
                target = self.targets[i][j]
                root_t = math.sqrt(max(1.0 - target * target, 0.0))
                if root_t == 0.0:
                    continue
                if phi < target:
                    root_p = math.sqrt(max(1.0 - phi * phi, 0.0))
                    C[i, j] += ni * (target * root_p - phi * root_t) / (norms[j] * root_t)
                self.targets[i][j] = (1.0 - self.beta) * target + self.beta * phi
        return C

    def weights(self, M: np.ndarray, losses: np.ndarray | None = None) -> np.ndarray:
        return self.coefficients(M).sum(axis=0)

    def state_dict(self) -> dict[str, Any]:
        targets = None if self.targets is None else [[float(x) for x in r] for r in self.targets]
        return {**self._order.state_dict(), "targets": targets}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._order.load_state_dict(state)
        t = state["targets"]
        self.targets = None if t is None else [[float(x) for x in r] for r in t]
