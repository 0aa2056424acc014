"""Which GPUs each run of a sweep sees: ``CUDA_VISIBLE_DEVICES`` per local worker, ``num_gpus``
per Ray task.

A run whose device is ``cuda`` (or ``auto`` where GPUs exist) computes on ``cuda:0`` *of what it
sees*; so the local executor gives each worker process its own ``CUDA_VISIBLE_DEVICES`` before
the run starts (CUDA reads it at initialisation, and each run is a fresh process).  With ``G``
visible GPUs and ``gpus_per_run = g``:

* ``g < 1`` (a fraction, e.g. 0.5 or 0.25): ``floor(1/g)`` runs share each GPU, so at most
  ``G · floor(1/g)`` runs at once, each seeing one GPU;
* ``g >= 1`` (a whole number): each run sees ``g`` GPUs of its own, at most ``floor(G/g)`` runs;
* ``g`` not given: the workers are spread over the GPUs in turn (worker ``i`` sees GPU
  ``i mod G``): several workers per GPU when there are more workers than GPUs.

The visible GPUs are this process's: the ids in its own ``CUDA_VISIBLE_DEVICES`` when set, else
``0 … torch.cuda.device_count() − 1``.  A Ray task asks for ``num_gpus = g`` (default 1; Ray
allows fractions) when its run needs CUDA, and Ray sets its ``CUDA_VISIBLE_DEVICES``.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch

from autobalance.errors import ConfigError

__all__ = ["gpu_slots", "needs_gpu", "visible_gpus"]


def visible_gpus() -> list[str]:
    """The ids of the GPUs this process may hand out (see the module docstring)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [gpu.strip() for gpu in listed.split(",") if gpu.strip() and gpu.strip() != "-1"]
    return [str(i) for i in range(torch.cuda.device_count())]


def gpu_slots(workers: int, gpus_per_run: float | None = None) -> list[str] | None:
    """``CUDA_VISIBLE_DEVICES`` for each of at most ``workers`` concurrent runs, or ``None``
    where no GPU is visible (then nothing is set).  Fewer slots than ``workers`` when
    ``gpus_per_run`` allows fewer runs at once.

    Raises:
        ConfigError: ``gpus_per_run`` is not positive, is above 1 and not a whole number, or
            asks for more GPUs than are visible.
    """
    if gpus_per_run is not None and (
        not gpus_per_run > 0 or (gpus_per_run > 1 and gpus_per_run != int(gpus_per_run))
    ):
        raise ConfigError(
            f"invalid --gpus-per-run {gpus_per_run}: a fraction in (0, 1] (runs sharing a GPU) "
            "or a whole number of GPUs per run"
        )
    gpus = visible_gpus()
    if not gpus:
        if gpus_per_run is not None:
            raise ConfigError(f"--gpus-per-run {gpus_per_run} asked for, but no GPU is visible")
        return None
    if gpus_per_run is None:
        return [gpus[i % len(gpus)] for i in range(workers)]
    if gpus_per_run <= 1:
        per_gpu = math.floor(1 / gpus_per_run + 1e-9)
        slots = [gpu for gpu in gpus for _ in range(per_gpu)]
    else:
        width = int(gpus_per_run)
        if width > len(gpus):
            raise ConfigError(
                f"--gpus-per-run {width} asked for, but only {len(gpus)} GPU(s) are visible"
            )
        slots = [",".join(gpus[i : i + width]) for i in range(0, len(gpus) - width + 1, width)]
    return slots[:workers]


def needs_gpu(job: dict[str, Any], cluster_has_gpus: bool) -> bool:
    """Whether a sweep job's run computes on CUDA: device ``cuda``/``cuda:N``, or ``auto``
    (the default) where the cluster has GPUs."""
    device = str(job.get("config", {}).get("device", "auto"))
    return device.startswith("cuda") or (device == "auto" and cluster_has_gpus)
