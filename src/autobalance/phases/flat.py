"""Parameters seen as one flat vector ``θ ∈ R^n``: read, write and gather gradients."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["assign_flat", "flat_gradient", "flat_params", "numel"]


def numel(params: Sequence[Tensor]) -> int:
    """``n``: the number of scalars in ``params``."""
    return sum(p.numel() for p in params)


def flat_params(params: Sequence[Tensor]) -> Tensor:
    """``θ``: a detached copy of ``params`` concatenated in order, shape ``(n,)``."""
    return torch.cat([p.detach().reshape(-1) for p in params])


def assign_flat(params: Sequence[Tensor], vector: Tensor) -> None:
    """Write ``vector`` (``(n,)``) into ``params`` in place, in order."""
    offset = 0
    with torch.no_grad():
        for p in params:
            k = p.numel()
            p.copy_(vector[offset : offset + k].view_as(p))
            offset += k
    if offset != vector.numel():
        raise ValueError(f"vector has {vector.numel()} entries, the parameters {offset}")


def flat_gradient(grads: Sequence[Tensor | None], params: Sequence[Tensor]) -> Tensor:
    """Concatenate ``grads`` (``None``: a parameter the loss does not reach, zeros) to ``(n,)``."""
    return torch.cat(
        [
            (torch.zeros_like(p) if g is None else g).reshape(-1)
            for g, p in zip(grads, params, strict=True)
        ]
    )
