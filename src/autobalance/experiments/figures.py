"""The figures of a report, one set per problem, written as compact PNGs.

For each problem (its method groups, :mod:`autobalance.experiments.analysis`):

* ``<slug>_error_vs_step.png`` and ``<slug>_error_vs_time.png``: the ranking metric against the
  step and against training wall-clock, every successful run of each method
  (:func:`autobalance.experiments.curves.error_curves_figure`);
* ``<slug>_losses.png``: each method's loss terms (:func:`~.curves.loss_curves_figure`);
* ``<slug>_solutions.png``: the median-seed run of each method on the evaluation grid
  (:func:`autobalance.experiments.solutions.solution_panels_figure`).

A figure that cannot be drawn (missing files, an exception) is reported, never raised: a figure
must never stop a report.  Every PNG goes through :func:`autobalance.experiments.io.write_png`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autobalance.experiments.analysis import MethodGroup, ordered
from autobalance.experiments.curves import error_curves_figure, loss_curves_figure
from autobalance.experiments.io import write_png
from autobalance.experiments.solutions import solution_panels_figure

__all__ = ["DrawnFigure", "draw_report_figures", "median_runs"]


@dataclass(frozen=True)
class DrawnFigure:
    """One figure of a report.

    Attributes:
        title: what it shows (``"error vs step"``).
        path: the PNG written; None when the figure was not drawn.
        skipped: method label → why it was left out (or, with no path, why nothing was drawn).
        error: the exception that stopped the figure (``"ValueError: ..."``), if any.
    """

    title: str
    path: Path | None
    skipped: dict[str, str] = field(default_factory=dict)
    error: str = ""


def median_runs(groups: Sequence[MethodGroup], metric: str) -> dict[str, Path]:
    """Method label → its median run on ``metric`` (the lower middle one for an even count)."""
    out = {}
    for g in ordered(groups):
        scored = sorted(
            (r for r in g.ok if math.isfinite(r.value(metric))), key=lambda r: r.value(metric)
        )
        if scored:
            out[g.method_label] = scored[(len(scored) - 1) // 2].path
    return out


def draw_report_figures(
    groups: Sequence[MethodGroup], metric: str, fig_dir: Path, slug: str
) -> list[DrawnFigure]:
    """Draw and write the figures of one problem into ``fig_dir`` (module docstring)."""
    all_runs = {g.method_label: [r.path for r in g.ok] for g in ordered(groups) if g.ok}
    jobs: list[tuple[str, str, Callable[[], Any]]] = [
        (
            "error vs step",
            "error_vs_step",
            lambda: error_curves_figure(all_runs, metric=metric, x="step"),
        ),
        (
            "error vs wall-clock",
            "error_vs_time",
            lambda: error_curves_figure(all_runs, metric=metric, x="wall_s"),
        ),
        ("loss terms", "losses", lambda: loss_curves_figure(all_runs)),
        (
            "solutions (median-seed run of each method)",
            "solutions",
            lambda: solution_panels_figure(median_runs(groups, metric)),
        ),
    ]
    drawn = []
    for title, name, draw in jobs:
        try:
            result = draw()
            figure, skipped = result if isinstance(result, tuple) else (result, {})
            path = None if figure is None else write_png(fig_dir / f"{slug}_{name}.png", figure)
        except Exception as exc:  # a figure must never stop the report
            drawn.append(DrawnFigure(title, None, error=f"{type(exc).__name__}: {exc}"))
            continue
        drawn.append(DrawnFigure(title, path, dict(skipped)))
    return drawn
