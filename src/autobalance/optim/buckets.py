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
    _masks: dict[tuple[tuple[bool, ...], ...], Tensor] = field(
        default_factory=dict, init=False, repr=False
    )
    # Reused buffers and their parameter-shaped views (a view costs ~2-6 µs to create, a
    # copy into an existing one a fraction of that): the gradient matrix by row count, and Δ.
    _matrices: dict[int, tuple[Tensor, list[Tensor]]] = field(
        default_factory=dict, init=False, repr=False
    )
    _vector: tuple[Tensor, list[Tensor]] | None = field(default=None, init=False, repr=False)
    _param_zeros: list[Tensor] | None = field(default=None, init=False, repr=False)
    _reached_params: list[tuple[Tensor, list[Tensor]]] = field(
        default_factory=list, init=False, repr=False
    )

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
        key = tuple(tuple(g is not None for g in row) for row in rows)
        mask = self._masks.get(key)
        if mask is None:
            if len(self._masks) >= 64:  # patterns are few; never let a cache grow unbounded
                self._masks.clear()
                self._reached_params.clear()
            mask = self._masks[key] = torch.tensor(key, dtype=torch.bool)
        return mask

    def reached_params(self, mask: Tensor) -> list[Tensor]:
        """The parameters that some row of the ``(rows, P)`` bool ``mask`` reaches.

        For a mask :meth:`reached_rows` returned (cached, so never modified) the answer is
        cached too; any other mask is read (one host copy).
        """
        if any(mask is cached for cached in self._all_reached.values()):
            return self.params
        cached_lists = self._reached_params
        for known, params in cached_lists:
            if known is mask:
                return params
        hits = mask.any(dim=0).tolist()
        params = [p for p, hit in zip(self.params, hits, strict=True) if hit]
        if any(mask is known for known in self._masks.values()):
            cached_lists.append((mask, params))
        return params

    def flatten(self, tensors: Sequence[Tensor | None]) -> Tensor:
        """Concatenate one tensor per parameter (``None`` counts as zeros) into a vector."""
        return torch.cat(
            [
                t.reshape(-1) if t is not None else self.zeros(n)
                for t, n in zip(tensors, self.sizes, strict=True)
            ]
        )

    def flatten_rows(self, rows: Sequence[Sequence[Tensor | None]]) -> Tensor:
        """Stack :meth:`flatten` of several rows into a ``(len(rows), N)`` matrix in one copy.

        The matrix is a buffer this bucket reuses: it holds these rows until the next call.
        Each entry must be ``None`` or shaped like its parameter.
        """
        buffer, views = self._matrix_buffer(len(rows))
        zeros = self._zeros_like_params()
        sources = [
            t if t is not None else zero for row in rows for t, zero in zip(row, zeros, strict=True)
        ]
        torch._foreach_copy_(views, sources)
        return buffer

    def _matrix_buffer(self, num_rows: int) -> tuple[Tensor, list[Tensor]]:
        """The reused ``(num_rows, N)`` buffer and its views shaped like the parameters."""
        cached = self._matrices.get(num_rows)
        if cached is None:
            buffer = torch.empty(num_rows, self.numel, device=self.device, dtype=self.dtype)
            views = [view for row in buffer for view in self.split(row)]
            cached = self._matrices[num_rows] = (buffer, views)
        return cached

    def _zeros_like_params(self) -> list[Tensor]:
        """Read-only zeros shaped like each parameter (the rows' missing gradients)."""
        if self._param_zeros is None:
            self._param_zeros = [
                torch.zeros_like(p, memory_format=torch.contiguous_format) for p in self.params
            ]
        return self._param_zeros

    def subtract(self, flat: Tensor) -> None:
        """``θ ← θ − flat`` over the bucket's parameters (``flat``: ``(N,)``), bit for bit
        ``torch._foreach_sub_(params, split(flat))`` without creating views at every call."""
        if self._vector is None:
            vector = torch.empty(self.numel, device=self.device, dtype=self.dtype)
            self._vector = (vector, self.split(vector))
        vector, views = self._vector
        vector.copy_(flat)
        torch._foreach_sub_(self.params, views)

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
