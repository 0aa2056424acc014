"""Where weight decay goes: into each loss's gradient (coupled L2) or once on the parameters."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["is_decoupled"]


def is_decoupled(base: type[torch.optim.Optimizer], group: dict[str, Any]) -> bool:
    """Whether ``base`` with ``group``'s settings applies decoupled weight decay (AdamW-style).

    Decoupled decay ``θ ← θ(1 − lr·λ)`` belongs to the parameters, not to a loss, so AutoBalance
    applies it once per step.  Coupled decay (Adam, RMSprop, SGD) adds ``λθ`` to the gradient
    that each state preconditions, exactly as each stock optimizer would.
    """
    return bool(group.get("decoupled_weight_decay", False)) or issubclass(base, torch.optim.AdamW)
