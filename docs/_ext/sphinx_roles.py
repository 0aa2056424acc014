"""A griffe extension for the API reference: Sphinx roles in docstrings become inline code.

The docstrings cite other objects the Sphinx way (``:class:`~autobalance.errors.ConfigError```,
``:func:`shard_points```); MkDocs renders Markdown, where the role would show as text.  This
rewrites each role to inline code of the object's name, shortened as ``~`` asks (the last
component).  Loaded by ``mkdocs.yml`` (``extensions`` of the mkdocstrings Python handler).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const):`(~?)([^`]+)`")


def _replace(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2).strip()
    if short:
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


def plain_roles(text: str) -> str:
    """``text`` with every Sphinx cross-reference role replaced by inline code."""
    return ROLE.sub(_replace, text)


class SphinxRoles(griffe.Extension):
    """Rewrite the Sphinx roles of every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = plain_roles(obj.docstring.value)
