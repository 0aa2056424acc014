"""``python -m autobalance``: the command line."""

from __future__ import annotations

from autobalance.cli.main import main

__all__: list[str] = []

if __name__ == "__main__":
    raise SystemExit(main())
