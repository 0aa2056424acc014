"""Multi-state baselines: per-loss optimizer states, combined after preconditioning."""

from autobalance.methods.multistate import mtadam, multiadam

__all__ = ["mtadam", "multiadam"]
