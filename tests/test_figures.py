"""The plotting convention: Figure objects, compact atomic PNGs, no global backend; history."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from autobalance.experiments.history import history_columns, loss_columns
from autobalance.experiments.io import MAX_PNG_BYTES, PNG_DPI, write_png


def _noise_figure(width: float, height: float) -> Figure:
    """Random pixels: a figure PNG cannot compress, the worst case for the size bound."""
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(np.random.default_rng(0).random((400, 400, 3)), interpolation="nearest")
    return fig


def test_small_figure_keeps_its_resolution_as_a_palette_png(tmp_path: Path) -> None:
    fig = Figure(figsize=(4, 3))
    fig.subplots().plot([0, 1, 2], [1, 0, 1])
    path = write_png(tmp_path / "sub" / "line.png", fig)  # parents are created
    assert path == tmp_path / "sub" / "line.png"
    with Image.open(path) as image:
        assert image.mode == "P" and image.size == (4 * PNG_DPI, 3 * PNG_DPI)
    assert path.stat().st_size <= MAX_PNG_BYTES


@pytest.mark.parametrize("max_bytes", [40_000, 150_000])
def test_large_figure_is_shrunk_below_the_bound(tmp_path: Path, max_bytes: int) -> None:
    fig = _noise_figure(8, 8)
    path = tmp_path / "noise.png"
    path.write_bytes(b"old")  # replaced, atomically: no temporary file is left behind
    write_png(path, fig, max_bytes=max_bytes)
    size = path.stat().st_size
    assert size <= max_bytes
    assert size > max_bytes / 4  # shrunk about as much as needed, not to a thumbnail
    with Image.open(path) as image:
        assert image.mode == "P" and image.width < 8 * PNG_DPI
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noise.png"]


def test_figures_leave_the_matplotlib_backend_alone(tmp_path: Path) -> None:
    """Drawing and saving every kind of figure neither imports pyplot nor switches backends."""
    study = {
        "loss_names": ["residual", "boundary"],
        "init_spectra": {n: {"eigenvalues": [3.0, 1.0, 0.1]} for n in ("residual", "boundary")},
        "methods": {
            "adam": {
                "final_spectra": {
                    "raw": {
                        "eigenvalues": [2.0, 1.0],
                        "summary": {"kappa_eff": 2.0, "kappa_mass@0.99": 2.0},
                    }
                },
                "checkpoints": [{"step": 1, "boundary": {"raw": {"kappa_mass@0.99": 3.0}}}],
                "history": [{"step": 1, "grad_ratio_residual/boundary": 2.0}],
            }
        },
    }
    script = f"""
import json, sys
import matplotlib
from autobalance.diagnostics.plots import balance_figure, spectra_figure
from autobalance.experiments import report, runner
from autobalance.experiments.io import write_png
study = json.loads({json.dumps(json.dumps(study))})
write_png({str(tmp_path / "a.png")!r}, spectra_figure(study))
write_png({str(tmp_path / "b.png")!r}, balance_figure(study))
print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""
    env = {**os.environ, "MPLBACKEND": "svg", "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["svg", "False"]
    assert (tmp_path / "a.png").stat().st_size > 1000


def test_history_columns_and_loss_columns() -> None:
    rows = [
        {"step": 1, "residual_weight": 0.5, "residual_grad_norm": math.nan, "update_norm": None},
        {"step": 2, "boundary_cosine": 0.1, "residual_update_norm": math.inf},
    ]
    columns = history_columns(rows, ["residual", "boundary"])
    assert columns == [
        "step",
        "lr",
        "total",
        "residual",
        "boundary",
        "residual_weight",  # finite somewhere: kept
        "boundary_cosine",
        "backward_passes",
        "skipped",
    ]
    # The losses of a history are its columns minus the fixed ones and every per-loss statistic
    # (a weighting method's <loss>_weight is not a loss).
    assert loss_columns(columns) == ["residual", "boundary"]
    assert loss_columns({"step": 0, "u_x": 0, "u_x_update_norm": 0, "update_norm": 0}) == ["u_x"]


def test_png_bytes_are_a_valid_image(tmp_path: Path) -> None:
    fig = Figure(figsize=(2, 2))
    fig.subplots().imshow(np.arange(16.0).reshape(4, 4))
    data = write_png(tmp_path / "x.png", fig).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as image:
        image.load()
