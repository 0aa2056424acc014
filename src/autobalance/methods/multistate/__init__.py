"""Multi-state baselines: per-loss optimizer states, combined after preconditioning."""

__all__: list[str] = []
