"""Figures comparing methods on one problem, drawn from run directories (matplotlib Agg, PNG).

* :func:`plot_error_curves`: an error metric against the step or against training wall-clock,
  one line per method: at each evaluated step, the median over the method's runs (seeds), with a
  band from the minimum to the maximum over runs; log scale.  Against wall-clock, a step's
  abscissa is the median over runs of the training time at that step.
* :func:`plot_loss_curves`: one panel per method, one line per loss term: the median over runs of
  the loss at each logged step; log scale.
* :func:`plot_solution_panels`: one row per method (and output field): reference, prediction and
  ``|prediction − reference|`` on the evaluation grid, for problems with two inputs (``(x, y)`` or
  ``(x, t)``).  Predictions come from each run's ``checkpoint.pt``; reference and prediction share
  one symmetric colour scale, the error panels share another, so rows are comparable.

Every function writes its PNG atomically and returns its path, or ``None`` when there is nothing
to draw.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from autobalance.errors import AutoBalanceError
from autobalance.experiments.plots import render_png as _render

__all__ = [
    "FigureDataError",
    "loss_columns",
    "plot_error_curves",
    "plot_loss_curves",
    "plot_solution_panels",
    "predict_run",
    "read_table",
]

_NON_LOSS_COLUMNS = frozenset({"step", "lr", "total", "update_norm", "backward_passes", "skipped"})
_STAT_SUFFIXES = ("_grad_norm", "_update_norm", "_cosine")


class FigureDataError(AutoBalanceError):
    """A run directory lacks, or holds an unreadable, file a figure needs."""


def read_table(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """A CSV with a header (as the runner writes) as float64 columns; empty cells are NaN.

    Raises:
        FigureDataError: the file is missing, empty or holds a non-numeric cell.
    """
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise FigureDataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not rows:
        raise FigureDataError(f"{path} is empty")
    header, body = rows[0], [r for r in rows[1:] if r]
    try:
        data = np.array(
            [[float(c) if c.strip() else math.nan for c in r] for r in body], dtype=np.float64
        ).reshape(len(body), len(header))
    except ValueError as exc:
        raise FigureDataError(f"{path}: not a numeric table ({exc})") from None
    return {name: data[:, j] for j, name in enumerate(header)}


def loss_columns(history: Mapping[str, np.ndarray]) -> list[str]:
    """The loss-value columns of a ``history.csv`` table (not step, lr, total or statistics)."""
    return [c for c in history if c not in _NON_LOSS_COLUMNS and not c.endswith(_STAT_SUFFIXES)]


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


def plot_error_curves(
    path: str | os.PathLike[str],
    runs: Mapping[str, Sequence[str | os.PathLike[str]]],
    *,
    metric: str = "rel_l2",
    x: str = "step",
    title: str = "",
) -> Path | None:
    """Error ``metric`` of ``eval.csv`` vs ``x`` (``"step"`` or ``"wall_s"``), one line per method.

    Args:
        path: the PNG to write.
        runs: method label → its run directories (seeds); unreadable ``eval.csv`` files are
            skipped.
        metric: a column of ``eval.csv``.
        x: ``"step"`` or ``"wall_s"`` (training wall-clock).
        title: the figure title.

    Returns:
        The path, or ``None`` when no run has a finite value of ``metric``.
    """
    if x not in ("step", "wall_s"):
        raise FigureDataError(f"x must be 'step' or 'wall_s', got {x!r}")
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
    return _render(fig, path)


def _readable(paths: Sequence[Path]) -> list[dict[str, np.ndarray]]:
    tables = []
    for p in paths:
        try:
            tables.append(read_table(p))
        except FigureDataError:
            continue
    return tables


def plot_loss_curves(
    path: str | os.PathLike[str],
    runs: Mapping[str, Sequence[str | os.PathLike[str]]],
    *,
    title: str = "",
) -> Path | None:
    """Each loss of ``history.csv`` (median over runs) vs step, one panel per method.

    Args:
        path: the PNG to write.
        runs: method label → its run directories; unreadable ``history.csv`` files are skipped.
        title: the figure title.

    Returns:
        The path, or ``None`` when no method has a readable history.
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
    return _render(fig, path)


def predict_run(run_dir: str | os.PathLike[str]) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
    """Rebuild a run's problem and network from ``checkpoint.pt`` and predict on its grid.

    Returns:
        ``(problem, points, reference, prediction)``, arrays of shape ``(N, in_dim)`` and
        ``(N, out_dim)`` in float64.

    Raises:
        FigureDataError: no readable checkpoint, or one whose configuration cannot be rebuilt.
    """
    import torch

    from autobalance import problems
    from autobalance.experiments.config import RunConfig, resolve_dtype
    from autobalance.experiments.runner import build_model

    path = Path(run_dir) / "checkpoint.pt"
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        config = RunConfig.from_dict(ckpt["config"])
        dtype = resolve_dtype(config.dtype)
        problem = problems.create(config.problem, **config.problem_params)
        # As the runner builds it: input names for the network, variants wrapping it.
        model, _ = build_model(config, problem, "cpu", dtype)
        model.load_state_dict(ckpt["model"])
    except FileNotFoundError:
        raise FigureDataError(f"{path} does not exist") from None
    except (AutoBalanceError, OSError, RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise FigureDataError(f"cannot rebuild the model of {path}: {exc}") from None
    model.eval()
    with torch.no_grad():
        points = problem.evaluation_points("cpu", dtype)
        reference = problem.reference(points)
        prediction = model(points)
    return (
        problem,
        points.double().numpy(),
        reference.double().numpy(),
        prediction.double().numpy(),
    )


def plot_solution_panels(
    path: str | os.PathLike[str],
    runs: Mapping[str, str | os.PathLike[str]],
    *,
    title: str = "",
) -> tuple[Path | None, dict[str, str]]:
    """Reference / prediction / ``|error|`` heatmaps, one row per method (and output field).

    Args:
        path: the PNG to write.
        runs: method label → the run directory to show (e.g. its median-seed run).
        title: the figure title.

    Returns:
        ``(path or None, skipped)``: ``skipped`` maps the labels left out to the reason (no
        checkpoint, not two inputs, ...).  ``None`` when no row could be drawn.
    """
    rows: list[tuple[str, Any, np.ndarray, np.ndarray]] = []
    skipped: dict[str, str] = {}
    for label, run_dir in runs.items():
        try:
            problem, _, reference, prediction = predict_run(run_dir)
        except FigureDataError as exc:
            skipped[label] = str(exc)
            continue
        if problem.in_dim != 2:
            skipped[label] = f"problem has {problem.in_dim} input(s); heatmaps need 2"
            continue
        rows.append((label, problem, reference, prediction))
    if not rows:
        return None, skipped
    problem, reference = rows[0][1], rows[0][2]
    n_out = reference.shape[1]
    shape = problem.evaluation_shape
    box = problem.domain
    extent = (box.lower[0], box.upper[0], box.lower[1], box.upper[1])
    top = [
        max(float(np.abs(r[2][:, k]).max()), float(np.abs(r[3][:, k]).max()))
        for k in range(n_out)
        for r in rows
    ]
    scale = [max(top[k * len(rows) : (k + 1) * len(rows)]) or 1.0 for k in range(n_out)]
    err_top = [
        max(float(np.abs(r[3][:, k] - r[2][:, k]).max()) for r in rows) or 1.0 for k in range(n_out)
    ]
    nrows = len(rows) * n_out
    fig = Figure(figsize=(13, 3.4 * nrows), layout="constrained")
    axes = fig.subplots(nrows, 3, squeeze=False)
    for i, (label, prob, ref, pred) in enumerate(rows):
        for k in range(n_out):
            ax_row = axes[i * n_out + k]
            fields = (ref[:, k], pred[:, k], np.abs(pred[:, k] - ref[:, k]))
            names = ("reference", "prediction", "|prediction − reference|")
            for col, (ax, values, name) in enumerate(zip(ax_row, fields, names, strict=True)):
                style: dict[str, Any] = (
                    {"vmin": -scale[k], "vmax": scale[k], "cmap": "RdBu_r"}
                    if col < 2
                    else {"vmin": 0.0, "vmax": err_top[k], "cmap": "magma"}
                )
                # Grid index (i, j) is (x_i, y_j): transpose so that the second input runs up.
                image = values.reshape(shape).T
                im = ax.imshow(image, origin="lower", extent=extent, aspect="auto", **style)
                fig.colorbar(im, ax=ax)
                ax.set_title(f"{label} — {prob.output_names[k]}: {name}", fontsize="medium")
                ax.set_xlabel(prob.input_names[0])
                ax.set_ylabel(prob.input_names[1])
    fig.suptitle(title or f"{problem.name}: solutions on the evaluation grid")
    return _render(fig, path), skipped
