"""Plain-text tables for the terminal."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["text_table"]


def text_table(rows: Sequence[Sequence[str]], *, header_rule: bool = False) -> str:
    """``rows`` as left-aligned columns two spaces apart (no trailing spaces).

    ``header_rule``: a line of dashes under the first row, as wide as each column.
    """
    if not rows:
        return ""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    if header_rule:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
