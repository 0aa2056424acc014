"""Gradient Vaccine (Wang, Tsvetkov, Firat & Cao, "Gradient Vaccine: Investigating and Improving
Multi-task Optimization in Massively Multilingual Models", ICLR 2021, Eq. (6), Algorithm 1).

Keeps an EMA target ``φ̂_ij`` of the cosine similarity of every ordered pair (initially 0).  For
every loss ``i``, ``g_i' = g_i``; visiting the other losses ``j`` in random order, with
``φ_ij = cos(g_i', g_j)``::

    if φ_ij < φ̂_ij:
        g_i' ← g_i' + ‖g_i'‖ (φ̂_ij √(1 − φ_ij²) − φ_ij √(1 − φ̂_ij²)) / (‖g_j‖ √(1 − φ̂_ij²)) · g_j
    φ̂_ij ← (1 − β) φ̂_ij + β φ_ij                                        (β = 0.01, the paper)

and ``d = Σ_i g_i'``.  The adjustment makes ``cos(g_i', g_j) = φ̂_ij`` exactly.  Granularity: the
whole parameter vector (the paper also applies it per layer; not here).  Degenerate pairs (a zero
gradient, or ``|φ̂_ij| = 1``) are neither adjusted nor counted in the EMA.  The order comes from a
seeded generator (``shuffle=False``: fixed order); generator and targets are in the state.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from autobalance.errors import HyperparameterError
from autobalance.methods.aggregation import check_gradient_matrix, register_aggregator
from autobalance.methods.base import check_in_range

__all__ = ["GradVac"]


@register_aggregator("gradvac", summary="GradVac (Wang et al. 2021): EMA cosine targets per pair.")
class GradVac:
    def __init__(self, beta: float = 0.01, shuffle: bool = True, seed: int = 0) -> None:
        self.beta = check_in_range("gradvac beta", beta, 0.0, 1.0, closed="(]")
        self.shuffle = bool(shuffle)
        self._gen = torch.Generator()
        self._gen.manual_seed(int(seed))
        self.targets: list[list[float]] | None = None

    def adjust(self, G: Tensor) -> Tensor:
        """The adjusted rows ``g_i'`` (updates the targets)."""
        G = check_gradient_matrix(G)
        K = G.shape[0]
        if self.targets is None:
            self.targets = [[0.0] * K for _ in range(K)]
        elif len(self.targets) != K:
            raise HyperparameterError(f"gradvac was used with {len(self.targets)} losses, now {K}")
        norms = G.double().norm(dim=1).tolist()
        out = G.clone()
        for i in range(K):
            order = torch.randperm(K, generator=self._gen).tolist() if self.shuffle else range(K)
            gi = out[i]
            for j in (j for j in order if j != i):
                ni = float(gi.double().norm())
                if ni == 0.0 or norms[j] == 0.0:
                    continue
                phi = float(torch.dot(gi.double(), G[j].double())) / (ni * norms[j])
                phi = min(1.0, max(-1.0, phi))
                target = self.targets[i][j]
                root_t = math.sqrt(max(1.0 - target * target, 0.0))
                if root_t == 0.0:
                    continue
                if phi < target:
                    root_p = math.sqrt(max(1.0 - phi * phi, 0.0))
                    coef = ni * (target * root_p - phi * root_t) / (norms[j] * root_t)
                    gi = gi + coef * G[j]
                self.targets[i][j] = (1.0 - self.beta) * target + self.beta * phi
            out[i] = gi
        return out

    def __call__(self, G: Tensor, losses: Tensor | None = None) -> Tensor:
        return self.adjust(G).sum(dim=0)

    def state_dict(self) -> dict[str, Any]:
        targets = None if self.targets is None else [list(r) for r in self.targets]
        return {"generator": self._gen.get_state(), "targets": targets}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._gen.set_state(state["generator"].cpu())  # a CPU generator (map_location may move it)
        t = state["targets"]
        self.targets = None if t is None else [[float(x) for x in r] for r in t]
