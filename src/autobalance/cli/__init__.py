"""The ``autobalance`` command line (``python -m autobalance``)."""

from __future__ import annotations

__all__: list[str] = []
