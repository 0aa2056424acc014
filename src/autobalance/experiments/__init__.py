"""Training runs: a :class:`RunConfig` and ``train(config, out_dir)``, which writes its files."""

from __future__ import annotations

from autobalance.experiments.config import DEFAULT_STEPS, RunConfig, resolve_device, resolve_dtype
from autobalance.experiments.runner import errors, train

__all__ = ["DEFAULT_STEPS", "RunConfig", "errors", "resolve_device", "resolve_dtype", "train"]
