"""PCGrad: projecting conflicting gradients (Yu et al., "Gradient Surgery for Multi-Task
Learning", NeurIPS 2020, Algorithm 1).

For every loss ``i``, start from ``g_i^PC = g_i`` and visit the other gradients ``g_j`` in a random
order; whenever ``g_i^PC · g_j < 0``, project onto the normal plane of ``g_j``::

    g_i^PC ← g_i^PC − (g_i^PC · g_j / ‖g_j‖²) g_j          (Algorithm 1, line 6)

and return ``d = Σ_i g_i^PC``.  The order is drawn from a seeded generator kept in the state
(``shuffle=False`` visits ``j = 0, 1, …`` instead).

Guarantees: for ``K = 2`` the result does not conflict with either gradient (``d·g_i ≥ 0``).  For
``K > 2`` PCGrad gives no such guarantee; what holds is that every projected row is no longer than
its gradient and does not conflict with the *last* gradient it was checked against, and that
``d = Σ g_i`` when no pair conflicts.  Homogeneous (``d(cG) = c·d(G)`` for ``c > 0``); not
permutation invariant (the random order).  Zero rows never trigger a projection.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from autobalance.methods.aggregation import check_gradient_matrix, register_aggregator

__all__ = ["PCGrad"]


@register_aggregator("pcgrad", summary="PCGrad (Yu et al. 2020): project out pairwise conflicts.")
class PCGrad:
    """Args: shuffle: random visiting order per row (the paper) or fixed; seed: of that order."""

    def __init__(self, shuffle: bool = True, seed: int = 0) -> None:
        self.shuffle = bool(shuffle)
        self._gen = torch.Generator()
        self._gen.manual_seed(int(seed))
        self.last_orders: list[list[int]] = []

    def project(self, G: Tensor) -> Tensor:
        """The projected rows ``g_i^PC`` (``K × P``)."""
        G = check_gradient_matrix(G)
        K = G.shape[0]
        out = G.clone()
        self.last_orders = []
        for i in range(K):
            order = torch.randperm(K, generator=self._gen).tolist() if self.shuffle else range(K)
            order = [j for j in order if j != i]
            self.last_orders.append(order)
            gi = out[i]
            for j in order:
                gj = G[j]
                dot = torch.dot(gi, gj)
                if dot < 0:
                    gi = gi - (dot / torch.dot(gj, gj)) * gj
            out[i] = gi
        return out

    def __call__(self, G: Tensor, losses: Tensor | None = None) -> Tensor:
        return self.project(G).sum(dim=0)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self._gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._gen.set_state(state["generator"].cpu())  # a CPU generator (map_location may move it)
