"""Optimizers: AutoBalance and the per-loss machinery it is built from."""

from autobalance.optim.autobalance import AutoBalance
from autobalance.optim.bases import BASE_OPTIMIZERS, resolve_base
from autobalance.optim.layout import StateLayout

__all__ = ["BASE_OPTIMIZERS", "AutoBalance", "StateLayout", "resolve_base"]
