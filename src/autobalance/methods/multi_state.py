"""Multi-state optimizers: one optimizer state per loss, updates combined after preconditioning."""

from __future__ import annotations

from typing import Any

from autobalance.methods.registry import register
from autobalance.optim.autobalance import AutoBalance

__all__: list[str] = []


@register(
    "autobalance",
    family="multi-state",
    summary="AutoBalance: one base-optimizer state per loss, preconditioned updates summed.",
)
def _autobalance(params: Any, *, base: Any = "adamw", **kwargs: Any) -> AutoBalance:
    return AutoBalance(params, base=base, **kwargs)
