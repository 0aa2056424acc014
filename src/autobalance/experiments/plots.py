"""Figures of a run, drawn with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from autobalance.experiments.io import atomic_write_bytes
from autobalance.problems.base import Problem

__all__ = ["plot_solution", "render_png"]


def render_png(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Save ``fig`` as a 100-dpi PNG at ``path`` atomically; returns the path."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return atomic_write_bytes(path, buf.getvalue())


def plot_solution(
    path: str | os.PathLike[str],
    problem: Problem,
    points: np.ndarray,
    reference: np.ndarray,
    prediction: np.ndarray,
) -> Path | None:
    """Draw reference, prediction and pointwise ``|prediction − reference|`` side by side.

    One row per output field.  2D inputs give heatmaps on the evaluation grid (the first input on
    the horizontal axis), 1D inputs give curves; other dimensions give no figure (``None``).

    Args:
        path: the PNG to write (atomically).
        problem: gives the grid shape, the domain and the input/output names.
        points: the evaluation points ``(N, in_dim)``, in the order of
            :meth:`Problem.evaluation_points`.
        reference: ``(N, out_dim)``.
        prediction: ``(N, out_dim)``.
    """
    shape = problem.evaluation_shape
    n_out = reference.shape[1]
    error = np.abs(prediction - reference)
    titles = ("reference", "prediction", "|prediction − reference|")
    fig = Figure(figsize=(13, 3.8 * n_out), layout="constrained")
    axes = fig.subplots(n_out, 3, squeeze=False)
    if problem.in_dim == 2:
        box = problem.domain
        extent = (box.lower[0], box.upper[0], box.lower[1], box.upper[1])
        for row in range(n_out):
            fields = (reference[:, row], prediction[:, row], error[:, row])
            # One symmetric colour scale for reference and prediction, zero in the middle.
            top = float(max(np.abs(reference[:, row]).max(), np.abs(prediction[:, row]).max()))
            top = top if top > 0 else 1.0
            for col, (ax, values, title) in enumerate(zip(axes[row], fields, titles, strict=True)):
                # Grid index (i, j) is (x_i, y_j): transpose so that y runs vertically.
                image = values.reshape(shape).T
                kwargs = (
                    {"vmin": -top, "vmax": top, "cmap": "RdBu_r"} if col < 2 else {"cmap": "magma"}
                )
                im = ax.imshow(image, origin="lower", extent=extent, aspect="auto", **kwargs)
                fig.colorbar(im, ax=ax)
                ax.set_title(f"{problem.output_names[row]}: {title}")
                ax.set_xlabel(problem.input_names[0])
                ax.set_ylabel(problem.input_names[1])
    elif problem.in_dim == 1:
        x = points[:, 0]
        for row in range(n_out):
            name = problem.output_names[row]
            axes[row][0].plot(x, reference[:, row], label="reference")
            axes[row][1].plot(x, reference[:, row], "k--", lw=1, label="reference")
            axes[row][1].plot(x, prediction[:, row], label="prediction")
            axes[row][2].semilogy(x, np.maximum(error[:, row], 1e-300))
            for ax, title in zip(axes[row], titles, strict=True):
                ax.set_title(f"{name}: {title}")
                ax.set_xlabel(problem.input_names[0])
            axes[row][1].legend()
    else:
        return None
    fig.suptitle(f"{problem.name}: solution on the evaluation grid")
    return render_png(fig, path)
