"""Flat buffers: the parameters of one param group, one device and one dtype, laid end to end.

Per-loss gradients of a bucket form a ``(K, N)`` matrix and the per-state updates a ``(S, N)``
matrix, so one step is a handful of vectorised ops whatever the number of parameter tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = ["Bucket", "make_buckets"]


@dataclass
class Bucket:
    """Parameters ``params`` (of param group ``group_index``) viewed as one flat vector."""

    group_index: int
    params: list[Tensor]
    indices: list[int]  # position of each parameter in the optimizer's flat parameter list
    sizes: list[int] = field(init=False)
    numel: int = field(init=False)
    rule_state: Any = None
    _zeros: dict[int, Tensor] = field(default_factory=dict, init=False, repr=False)
    _all_reached: dict[int, Tensor] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.sizes = [p.numel() for p in self.params]
        self.numel = sum(self.sizes)

    @property
    def device(self) -> torch.device:
        return self.params[0].device

    @property
    def dtype(self) -> torch.dtype:
        return self.params[0].dtype

    def zeros(self, size: int) -> Tensor:
        """A cached read-only zero vector standing in for a missing gradient."""
        z = self._zeros.get(size)
        if z is None:
            z = self._zeros[size] = torch.zeros(size, device=self.device, dtype=self.dtype)
        return z

    def reached_rows(self, rows: Sequence[Sequence[Tensor | None]]) -> Tensor:
        """``(len(rows), P)`` bool CPU mask: whether each row has a gradient for each parameter.

        The all-true mask of the common case (every loss reaches every parameter) is cached;
        callers must not modify the result.
        """
        if all(g is not None for row in rows for g in row):
            mask = self._all_reached.get(len(rows))
            if mask is None:
                mask = torch.ones(len(rows), len(self.params), dtype=torch.bool)
                self._all_reached[len(rows)] = mask
            return mask
        return torch.tensor([[g is not None for g in row] for row in rows], dtype=torch.bool)

    def is_all_reached(self, mask: Tensor) -> bool:
        """Whether ``mask`` is the cached all-true mask of :meth:`reached_rows` (no device op)."""
        return any(mask is cached for cached in self._all_reached.values())

    def flatten(self, tensors: Sequence[Tensor | None]) -> Tensor:
        """Concatenate one tensor per parameter (``None`` counts as zeros) into a vector."""
        return torch.cat(
            [
                t.reshape(-1) if t is not None else self.zeros(n)
                for t, n in zip(tensors, self.sizes, strict=True)
            ]
        )

    def flatten_rows(self, rows: Sequence[Sequence[Tensor | None]]) -> Tensor:
        """Stack :meth:`flatten` of several rows into a ``(len(rows), N)`` matrix in one copy."""
        pieces = [
            t.reshape(-1) if t is not None else self.zeros(n)
            for row in rows
            for t, n in zip(row, self.sizes, strict=True)
        ]
        return torch.cat(pieces).view(len(rows), self.numel)

    def split(self, flat: Tensor) -> list[Tensor]:
        """Views of a ``(..., N)`` tensor shaped like the parameters (leading dims kept)."""
        lead = flat.shape[:-1]
        return [
            piece.view((*lead, *p.shape))
            for piece, p in zip(flat.split(self.sizes, dim=-1), self.params, strict=True)
        ]

    def param_vector(self) -> Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.params])


def make_buckets(param_groups: Sequence[dict[str, Any]]) -> list[Bucket]:
    """One bucket per (param group, device, dtype), parameters in group order."""
    buckets: list[Bucket] = []
    offset = 0
    for gi, group in enumerate(param_groups):
        by_kind: dict[tuple[torch.device, torch.dtype], tuple[list[Tensor], list[int]]] = {}
        for j, p in enumerate(group["params"]):
            params, idx = by_kind.setdefault((p.device, p.dtype), ([], []))
            params.append(p)
            idx.append(offset + j)
        offset += len(group["params"])
        for params, idx in by_kind.values():
            buckets.append(Bucket(group_index=gi, params=params, indices=idx))
    return buckets
