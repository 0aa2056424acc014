"""Training curves of several methods on one problem, read from their run directories' tables.

* :func:`error_curves_figure`: an error metric against the step or against training wall-clock,
  one line per method: at each evaluated step, the median over the method's runs (seeds), with a
  band from the minimum to the maximum over runs; log scale.  Against wall-clock, a step's
  abscissa is the median over runs of the training time at that step.
* :func:`loss_curves_figure`: one panel per method, one line per loss term: the median over runs
  of the loss at each logged step; log scale.

Each returns a :class:`~matplotlib.figure.Figure` (save it with
:func:`autobalance.experiments.io.write_png`), or ``None`` when there is nothing to draw.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from autobalance.errors import AutoBalanceError
from autobalance.experiments.history import loss_columns
from autobalance.experiments.runs import RunFileError, read_table

__all__ = ["error_curves_figure", "loss_curves_figure"]


def _by_step(
    tables: Sequence[Mapping[str, np.ndarray]], column: str
) -> dict[float, list[tuple[int, float]]]:
    """``step → [(table index, value), ...]`` over the tables holding a finite ``column``."""
    out: dict[float, list[tuple[int, float]]] = {}
    for i, table in enumerate(tables):
        if column not in table or "step" not in table:
            continue
        for step, value in zip(table["step"], table[column], strict=True):
            if math.isfinite(step) and math.isfinite(value):
                out.setdefault(float(step), []).append((i, float(value)))
    return dict(sorted(out.items()))


def _median_band(
    tables: Sequence[Mapping[str, np.ndarray]], column: str, x: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Abscissa, median, minimum and maximum of ``column`` over the tables, step by step."""
    xs, med, lo, hi = [], [], [], []
    for step, entries in _by_step(tables, column).items():
        values = np.array([v for _, v in entries])
        if x == "step":
            xs.append(step)
        else:
            times = [tables[i][x][tables[i]["step"] == step] for i, _ in entries]
            finite = [float(t[0]) for t in times if t.size and math.isfinite(t[0])]
            if not finite:
                continue
            xs.append(float(np.median(finite)))
        med.append(float(np.median(values)))
        lo.append(float(values.min()))
        hi.append(float(values.max()))
    return np.array(xs), np.array(med), np.array(lo), np.array(hi)


def _positive(values: np.ndarray) -> np.ndarray:
    """Values for a log axis: non-positive entries become NaN (gaps)."""
    return np.where(values > 0, values, np.nan)


def error_curves_figure(
    runs: Mapping[str, Sequence[str | os.PathLike[str]]],
    *,
    metric: str = "rel_l2",
    x: str = "step",
    title: str = "",
) -> Figure | None:
    """Error ``metric`` of ``eval.csv`` vs ``x`` (``"step"`` or ``"wall_s"``), one line per method.

    Args:
        runs: method label → its run directories (seeds); unreadable ``eval.csv`` files are
            skipped.
        metric: a column of ``eval.csv``.
        x: ``"step"`` or ``"wall_s"`` (training wall-clock).
        title: the figure title.

    Returns:
        The figure, or ``None`` when no run has a finite value of ``metric``.
    """
    if x not in ("step", "wall_s"):
        raise AutoBalanceError(f"x must be 'step' or 'wall_s', got {x!r}")
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.subplots()
    drawn = False
    for label, dirs in runs.items():
        tables = _readable([Path(d) / "eval.csv" for d in dirs])
        xs, med, lo, hi = _median_band(tables, metric, x)
        if xs.size == 0:
            continue
        (line,) = ax.plot(xs, _positive(med), lw=1.6, label=f"{label} (n={len(tables)})")
        if len(tables) > 1:
            ax.fill_between(xs, _positive(lo), _positive(hi), color=line.get_color(), alpha=0.2)
        drawn = True
    if not drawn:
        return None
    ax.set_yscale("log")
    ax.set_xlabel("step" if x == "step" else "training wall-clock [s]")
    ax.set_ylabel(metric)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title(title or f"{metric}: median over seeds, band min–max")
    return fig


def _readable(paths: Sequence[Path]) -> list[dict[str, np.ndarray]]:
    """The tables that can be read; each one left out is named in a ``RuntimeWarning``."""
    tables = []
    for p in paths:
        try:
            tables.append(read_table(p))
        except RunFileError as exc:
            if p.exists():  # a missing table is the run's own (incomplete) state, reported
                warnings.warn(f"{exc}; left out of the figures", RuntimeWarning, stacklevel=2)
    return tables


def loss_curves_figure(
    runs: Mapping[str, Sequence[str | os.PathLike[str]]],
    *,
    title: str = "",
) -> Figure | None:
    """Each loss of ``history.csv`` (median over runs) vs step, one panel per method.

    Args:
        runs: method label → its run directories; unreadable ``history.csv`` files are skipped.
        title: the figure title.

    Returns:
        The figure, or ``None`` when no method has a readable history.
    """
    panels: list[tuple[str, list[dict[str, np.ndarray]]]] = []
    for label, dirs in runs.items():
        tables = _readable([Path(d) / "history.csv" for d in dirs])
        if tables:
            panels.append((label, tables))
    if not panels:
        return None
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(4.6 * ncols, 3.6 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    for ax, (label, tables) in zip(axes.flat, panels, strict=False):
        for name in loss_columns(tables[0]):
            xs, med, _, _ = _median_band(tables, name, "step")
            if xs.size:
                ax.plot(xs, _positive(med), lw=1.3, label=name)
        ax.set_yscale("log")
        ax.set_title(f"{label} (n={len(tables)})", fontsize="medium")
        ax.set_xlabel("step")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    axes[0][0].set_ylabel("loss (median over seeds)")
    fig.suptitle(title or "loss terms: median over seeds")
    return fig
