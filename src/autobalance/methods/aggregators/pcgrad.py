"""PCGrad: projecting conflicting gradients (Yu et al., "Gradient Surgery for Multi-Task
Learning", NeurIPS 2020, Algorithm 1).

For every loss ``i``, start from ``g_i^PC = g_i`` and visit the other gradients ``g_j`` in a random
order; whenever ``g_i^PC · g_j < 0``, project onto the normal plane of ``g_j``::

    g_i^PC ← g_i^PC − (g_i^PC · g_j / ‖g_j‖²) g_j          (Algorithm 1, line 6)

and return ``d = Σ_i g_i^PC``.  Every ``g_i^PC`` stays a combination ``Σ_j C_ij g_j`` of the
original rows, and every product above is read off the Gram matrix (``g_i^PC · g_j = (C M)_ij``),
so the weights are ``w = 1ᵀC``.  The order is drawn from a seeded generator kept in the state
(``shuffle=False`` visits ``j = 0, 1, …`` instead); ``last_orders`` keeps the orders of the last
call.

Guarantees: for ``K = 2`` the result does not conflict with either gradient (``d·g_i ≥ 0``).  For
``K > 2`` PCGrad gives no such guarantee; what holds is that every projected row is no longer than
its gradient and does not conflict with the *last* gradient it was checked against, and that
``d = Σ g_i`` when no pair conflicts.  Homogeneous (``d(cG) = c·d(G)`` for ``c > 0``); not
permutation invariant (the random order).  Zero rows never trigger a projection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from autobalance.methods.aggregators._base import Aggregator, check_gradient_matrix
from autobalance.methods.aggregators._gram import gram
from autobalance.methods.aggregators._order import VisitOrder

__all__ = ["PCGrad"]


@dataclass
class PCGrad(Aggregator):
    """PCGrad (Yu et al. 2020): project out pairwise conflicts.

    Args: shuffle: random visiting order per row (the paper) or fixed; seed: of that order.
    """

    name = "pcgrad"
    shuffle: bool = True
    seed: int = 0
    _order: VisitOrder = field(init=False, repr=False, compare=False)
    last_orders: list[list[int]] = field(default_factory=list, init=False, compare=False)

    def __post_init__(self) -> None:
        self._order = VisitOrder(self.shuffle, self.seed)

    def coefficients(self, M: np.ndarray) -> np.ndarray:
        """``C`` (``K × K``) with ``g_i^PC = Σ_j C_ij g_j`` (draws this call's orders)."""
        K = M.shape[0]
        C = np.eye(K)
        self.last_orders = []
        for i in range(K):
            order = self._order.others(K, i)
            self.last_orders.append(order)
            for j in order:
                dot = float(C[i] @ M[:, j])  # g_i^PC · g_j
                if dot < 0:
                    C[i, j] -= dot / M[j, j]
        return C

    def project(self, G: Tensor) -> Tensor:
        """The projected rows ``g_i^PC`` (``K × P``)."""
        C = self.coefficients(gram(check_gradient_matrix(G)))
        return torch.as_tensor(C, dtype=G.dtype, device=G.device) @ G

    def weights(self, M: np.ndarray, losses: np.ndarray | None = None) -> np.ndarray:
        return self.coefficients(M).sum(axis=0)

    def state_dict(self) -> dict[str, Any]:
        return self._order.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._order.load_state_dict(state)
