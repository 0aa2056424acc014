"""The visiting order of the pairwise gradient surgeries (PCGrad, GradVac).

Row ``i`` visits every other row ``j`` once: in a fresh random order per row, drawn from a
seeded generator kept in the aggregator's state (``shuffle=True``, the papers), or in the fixed
order ``0, 1, …, K − 1``.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["VisitOrder"]


class VisitOrder:
    """``others(K, i)``: the rows ``j ≠ i`` in the order row ``i`` visits them."""

    def __init__(self, shuffle: bool, seed: int) -> None:
        self.shuffle = bool(shuffle)
        self._gen = torch.Generator()
        self._gen.manual_seed(int(seed))

    def others(self, K: int, i: int) -> list[int]:
        order = torch.randperm(K, generator=self._gen).tolist() if self.shuffle else range(K)
        return [j for j in order if j != i]

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self._gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._gen.set_state(state["generator"].cpu())  # a CPU generator (map_location may move it)
