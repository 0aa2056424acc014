"""``--deterministic``: torch's deterministic algorithms for the length of a run."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from autobalance.errors import ConfigError

__all__ = ["deterministic_algorithms"]


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """``torch.use_deterministic_algorithms(True)`` inside the block when ``enabled``.

    On CUDA, cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG`` for deterministic matrix products; it is
    set (``:4096:8``) unless already set.  The previous setting comes back on exit.
    """
    if not enabled:
        yield
        return
    before = torch.are_deterministic_algorithms_enabled()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    try:
        yield
    except RuntimeError as exc:
        if "deterministic" not in str(exc):
            raise
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(
            f"deterministic mode: torch has no deterministic implementation of an operation "
            f"this run needs ({first}); run without --deterministic"
        ) from None
    finally:
        torch.use_deterministic_algorithms(before)
