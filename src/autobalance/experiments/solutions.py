"""Solutions on the evaluation grid: reference, prediction and pointwise error, as figures.

* :func:`solution_figure`: one run (the runner's ``solution.png``): one row per output field;
  heatmaps for two inputs, curves for one input.
* :func:`solution_panels_figure`: several methods on one two-input problem (``(x, y)`` or
  ``(x, t)``), one row per method and output field.  Predictions come from each run's
  ``checkpoint.pt`` (:func:`predict_run`); reference and prediction share one symmetric colour
  scale per output, the error panels another, so rows are comparable.

Each returns a :class:`~matplotlib.figure.Figure` (save it with
:func:`autobalance.experiments.io.write_png`), or ``None`` when there is nothing to draw.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from autobalance.errors import AutoBalanceError
from autobalance.experiments.runs import RunFileError
from autobalance.problems import Problem

__all__ = ["load_run_model", "predict_run", "solution_figure", "solution_panels_figure"]

_PANELS = ("reference", "prediction", "|prediction − reference|")


def _heatmap_row(
    fig: Figure,
    axes: Sequence[Any],
    problem: Problem,
    fields: tuple[np.ndarray, np.ndarray],
    *,
    scale: float,
    error_max: float | None,
    prefix: str,
    **title_style: Any,
) -> None:
    """Reference and prediction (colours ``±scale``) and ``|prediction − reference|`` heatmaps.

    ``error_max``: the top of the error colour scale (from 0); None: the error's own range.
    """
    reference, prediction = fields
    box = problem.domain
    extent = (box.lower[0], box.upper[0], box.lower[1], box.upper[1])
    values = (reference, prediction, np.abs(prediction - reference))
    styles: tuple[dict[str, Any], ...] = (
        {"vmin": -scale, "vmax": scale, "cmap": "RdBu_r"},
        {"vmin": -scale, "vmax": scale, "cmap": "RdBu_r"},
        {"cmap": "magma"}
        if error_max is None
        else {"vmin": 0.0, "vmax": error_max, "cmap": "magma"},
    )
    for ax, field, style, name in zip(axes, values, styles, _PANELS, strict=True):
        # Grid index (i, j) is (x_i, y_j): transpose so that the second input runs up.
        image = field.reshape(problem.evaluation_shape).T
        im = ax.imshow(image, origin="lower", extent=extent, aspect="auto", **style)
        fig.colorbar(im, ax=ax)
        ax.set_title(f"{prefix}{name}", **title_style)
        ax.set_xlabel(problem.input_names[0])
        ax.set_ylabel(problem.input_names[1])


def _top(*arrays: np.ndarray) -> float:
    """The largest ``|value|`` over ``arrays``; 1 when all are zero (a usable colour scale)."""
    return max(float(np.abs(a).max()) for a in arrays) or 1.0


def solution_figure(
    problem: Problem, points: np.ndarray, reference: np.ndarray, prediction: np.ndarray
) -> Figure | None:
    """Reference, prediction and pointwise ``|prediction − reference|`` side by side.

    One row per output field.  2D inputs give heatmaps on the evaluation grid (the first input on
    the horizontal axis; one symmetric colour scale for reference and prediction, zero in the
    middle), 1D inputs give curves; other dimensions give no figure (``None``).

    Args:
        problem: gives the grid shape, the domain and the input/output names.
        points: the evaluation points ``(N, in_dim)``, in the order of
            :meth:`Problem.evaluation_points`.
        reference: ``(N, out_dim)``.
        prediction: ``(N, out_dim)``.
    """
    if problem.in_dim not in (1, 2):
        return None
    n_out = reference.shape[1]
    fig = Figure(figsize=(13, 3.8 * n_out), layout="constrained")
    axes = fig.subplots(n_out, 3, squeeze=False)
    for row in range(n_out):
        ref, pred = reference[:, row], prediction[:, row]
        name = problem.output_names[row]
        if problem.in_dim == 2:
            scale = _top(ref, pred)
            _heatmap_row(
                fig,
                axes[row],
                problem,
                (ref, pred),
                scale=scale,
                error_max=None,
                prefix=f"{name}: ",
            )
            continue
        x = points[:, 0]
        axes[row][0].plot(x, ref, label="reference")
        axes[row][1].plot(x, ref, "k--", lw=1, label="reference")
        axes[row][1].plot(x, pred, label="prediction")
        axes[row][2].semilogy(x, np.maximum(np.abs(pred - ref), 1e-300))
        for ax, panel in zip(axes[row], _PANELS, strict=True):
            ax.set_title(f"{name}: {panel}")
            ax.set_xlabel(problem.input_names[0])
        axes[row][1].legend()
    fig.suptitle(f"{problem.name}: solution on the evaluation grid")
    return fig


def load_run_model(run_dir: str | os.PathLike[str]) -> tuple[Any, Any]:
    """Rebuild a run's problem and network (in eval mode, on the CPU) from ``checkpoint.pt``.

    Raises:
        RunFileError: no readable checkpoint, or one whose configuration cannot be rebuilt.
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
        raise RunFileError(f"{path} does not exist") from None
    except (AutoBalanceError, OSError, RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise RunFileError(f"cannot rebuild the model of {path}: {exc}") from None
    model.eval()
    return problem, model


def predict_run(run_dir: str | os.PathLike[str]) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
    """Rebuild a run's problem and network from ``checkpoint.pt`` and predict on its grid.

    Returns:
        ``(problem, points, reference, prediction)``, arrays of shape ``(N, in_dim)`` and
        ``(N, out_dim)`` in float64.

    Raises:
        RunFileError: no readable checkpoint, or one whose configuration cannot be rebuilt.
    """
    import torch

    problem, model = load_run_model(run_dir)
    dtype = next(model.parameters()).dtype
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


def solution_panels_figure(
    runs: Mapping[str, str | os.PathLike[str]], *, title: str = ""
) -> tuple[Figure | None, dict[str, str]]:
    """Reference / prediction / ``|error|`` heatmaps, one row per method (and output field).

    Args:
        runs: method label → the run directory to show (e.g. its median-seed run).
        title: the figure title.

    Returns:
        ``(figure or None, skipped)``: ``skipped`` maps the labels left out to the reason (no
        checkpoint, not two inputs, ...).  ``None`` when no row could be drawn.
    """
    rows: list[tuple[str, Any, np.ndarray, np.ndarray]] = []
    skipped: dict[str, str] = {}
    for label, run_dir in runs.items():
        try:
            problem, _, reference, prediction = predict_run(run_dir)
        except RunFileError as exc:
            skipped[label] = str(exc)
            continue
        if problem.in_dim != 2:
            skipped[label] = f"problem has {problem.in_dim} input(s); heatmaps need 2"
            continue
        rows.append((label, problem, reference, prediction))
    if not rows:
        return None, skipped
    problem = rows[0][1]
    n_out = rows[0][2].shape[1]
    scale = [
        _top(*(a[:, out] for _, _, ref, pred in rows for a in (ref, pred))) for out in range(n_out)
    ]
    error_max = [_top(*(r[3][:, out] - r[2][:, out] for r in rows)) for out in range(n_out)]
    fig = Figure(figsize=(13, 3.4 * len(rows) * n_out), layout="constrained")
    axes = fig.subplots(len(rows) * n_out, 3, squeeze=False)
    for i, (label, prob, ref, pred) in enumerate(rows):
        for out in range(n_out):
            _heatmap_row(
                fig,
                axes[i * n_out + out],
                prob,
                (ref[:, out], pred[:, out]),
                scale=scale[out],
                error_max=error_max[out],
                prefix=f"{label} — {prob.output_names[out]}: ",
                fontsize="medium",
            )
    fig.suptitle(title or f"{problem.name}: solutions on the evaluation grid")
    return fig, skipped
