"""Where weight decay goes: into each loss's gradient (coupled L2) or once on the parameters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from autobalance.optim.buckets import Bucket

__all__ = ["decay_once", "is_decoupled"]


def is_decoupled(base: type[torch.optim.Optimizer], group: dict[str, Any]) -> bool:
    """Whether ``base`` with ``group``'s settings applies decoupled weight decay (AdamW-style).

    Decoupled decay ``θ ← θ(1 − lr·λ)`` belongs to the parameters, not to a loss, so AutoBalance
    applies it once per step.  Coupled decay (Adam, RMSprop, SGD) adds ``λθ`` to the gradient
    that each state preconditions, exactly as each stock optimizer would.
    """
    return bool(group.get("decoupled_weight_decay", False)) or issubclass(base, torch.optim.AdamW)


def decay_once(bucket: Bucket, reached: Tensor, group: dict[str, Any]) -> None:
    """Decoupled weight decay ``θ ← θ(1 − lr·λ)`` on the parameters of ``bucket`` that some
    loss reached this step (``reached``: per state and parameter), once per step whatever the
    number of states."""
    weight_decay = float(group.get("weight_decay", 0.0))
    if weight_decay == 0:
        return
    decayed = bucket.reached_params(reached)
    if decayed:
        torch._foreach_mul_(decayed, 1 - float(group["lr"]) * weight_decay)
