"""What the fault-injection tests share: a tiny run, result comparison, the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from autobalance.experiments import RunConfig
from autobalance.experiments.run_compare import run_differences

#: A Helmholtz problem small enough for a step of about a millisecond.
TINY_PROBLEM = {"a2": 1, "n_residual": 32, "n_boundary": 16, "n_eval": 11}
#: The same run as command-line flags (with ``run helmholtz``).
TINY_FLAGS = [
    *(arg for key, value in TINY_PROBLEM.items() for arg in ("--param", f"{key}={value}")),
    *("--width", "8", "--depth", "1", "--device", "cpu", "--no-progress"),
]


def tiny(**overrides: Any) -> RunConfig:
    """A run of a few milliseconds a step; ``overrides`` replace its fields."""
    fields: dict[str, Any] = {
        "problem": "helmholtz",
        "problem_params": dict(TINY_PROBLEM),
        "net_params": {"width": 8, "depth": 1},
        "method": "adam",
        "lr": 1e-2,
        "steps": 40,
        "eval_every": 10,
        "log_every": 5,
        "checkpoint_every": 0,
        "device": "cpu",
    }
    fields.update(overrides)
    return RunConfig(**fields)


def snapshot(run_dir: Path) -> dict[str, bytes]:
    """The bytes of every file in ``run_dir`` (to check that a refused command changed none)."""
    return {p.name: p.read_bytes() for p in sorted(run_dir.iterdir()) if p.is_file()}


def assert_same_results(a: Path, b: Path) -> None:
    """Two run directories hold bit-identical results: metrics, tables, weights, optimizer."""
    assert run_differences(a, b) == []


def cli(*args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    """``python -m autobalance ARGS`` started in its own process group (stdout/stderr piped)."""
    env = {**os.environ, "AUTOBALANCE_NO_REEXEC": "1", "OMP_NUM_THREADS": "1"}
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return subprocess.Popen(
        [sys.executable, "-m", "autobalance", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )


def history_rows(run_dir: Path) -> int:
    """Rows of the ``history.csv`` written with the last checkpoint (0 when none)."""
    try:
        return max(0, len((run_dir / "history.csv").read_text().splitlines()) - 1)
    except OSError:
        return 0
