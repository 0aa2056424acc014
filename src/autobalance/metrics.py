"""Errors of a prediction against a reference solution on the held-out evaluation grid."""

from __future__ import annotations

import math
import platform

from torch import Tensor

__all__ = [
    "ERROR_NAMES",
    "error_metrics",
    "peak_rss_mb",
]

#: The errors every run reports, combined over all outputs and (for several outputs) per output.
ERROR_NAMES = ("rel_l2", "rel_l1", "mse", "linf")


def error_metrics(prediction: Tensor, reference: Tensor, suffix: str = "") -> dict[str, float]:
    """``rel_l2 = ‖e‖₂/‖u‖₂``, ``rel_l1 = ‖e‖₁/‖u‖₁``, ``mse = mean e²``, ``linf = max |e|``.

    ``e = prediction − reference`` over every point and component, computed in float64; each key
    gets ``suffix`` appended (e.g. ``"_u"`` for one output column).
    """
    diff = (prediction.detach().double() - reference.detach().double()).reshape(-1)
    ref = reference.detach().double().reshape(-1)
    values = {
        "rel_l2": (diff.norm() / ref.norm()).item(),
        "rel_l1": (diff.abs().sum() / ref.abs().sum()).item(),
        "mse": diff.pow(2).mean().item(),
        "linf": diff.abs().max().item(),
    }
    return {f"{name}{suffix}": value for name, value in values.items()}


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (NaN where unknown)."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return math.nan
    scale = {"Darwin": 1.0 / 2**20}.get(platform.system(), 1.0 / 1024)  # bytes on macOS, else KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
