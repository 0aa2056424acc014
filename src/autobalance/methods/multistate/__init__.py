"""Multi-state baselines: per-loss optimizer states, combined after preconditioning."""

from autobalance.methods.multistate import mconfig, mtadam, multiadam

__all__ = ["mconfig", "mtadam", "multiadam"]
