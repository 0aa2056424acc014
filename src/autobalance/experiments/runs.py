"""Loading run directories: what a finished (or unfinished) run left on disk.

A *run directory* is any directory holding a ``config.json`` or a ``metrics.json`` (the files of
:mod:`autobalance.experiments.runner`).  :func:`load_run` reads one into a :class:`RunRecord`;
:func:`discover_runs` finds every run directory under a root, at any depth (the layout does not
matter: a sweep's flat directory, hand-made trees, a copy of ``docs/results``).

:func:`read_table` reads a run's ``eval.csv`` or ``history.csv`` as numeric columns.

A record's ``status`` is ``"ok"`` or ``"failed"`` (the run finished; a failed run's loss became
non-finite) or ``"incomplete"``: ``metrics.json`` or ``config.json`` missing, unreadable or
malformed, with the reason in ``reason``.  Loading never raises for bad contents.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autobalance.errors import AutoBalanceError

__all__ = [
    "COMPLETE_STATUSES",
    "TEXT_COLUMNS",
    "ReportError",
    "RunFileError",
    "RunRecord",
    "discover_runs",
    "load_run",
    "number",
    "read_table",
    "recipe_suffix",
    "relative_path",
]

#: ``metrics.json`` statuses of a finished run.
COMPLETE_STATUSES = ("ok", "failed")

_RUN_FILES = ("config.json", "metrics.json")


class ReportError(AutoBalanceError):
    """Runs cannot be reported (no such runs directory, unknown metric, bad α)."""


class RunFileError(AutoBalanceError):
    """A run directory lacks a file that is needed, or holds an unreadable one."""


def number(value: Any) -> float:
    """``value`` as a float when it is an int or a float (not a bool); NaN otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def relative_path(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` in POSIX form (``"."`` for ``root``); else ``path`` as is."""
    try:
        return path.relative_to(root).as_posix() or "."
    except ValueError:
        return str(path)


@dataclass
class RunRecord:
    """One run directory.

    Attributes:
        path: the directory.
        status: ``"ok"``, ``"failed"`` or ``"incomplete"``.
        config: ``config.json`` (empty when unreadable).
        metrics: ``metrics.json`` (empty when unreadable).
        reason: why the run is incomplete (empty otherwise).
        problem_label, method_label: set by :func:`autobalance.experiments.analysis.group_runs`.
    """

    path: Path
    status: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    reason: str = ""
    problem_label: str = ""
    method_label: str = ""

    @property
    def seed(self) -> Any:
        """The seed (from the configuration, else the metrics; None when unknown)."""
        return self.config.get("seed", self.metrics.get("seed"))

    def value(self, key: str) -> float:
        """``metrics[key]`` as a float (NaN when absent, null or not a number)."""
        return number(self.metrics.get(key))

    @property
    def error(self) -> dict[str, Any]:
        """The ``error`` entry of a failed run's metrics (``{}`` when none)."""
        err = self.metrics.get("error")
        return err if isinstance(err, dict) else {}

    @property
    def recipe(self) -> str:
        """The run's training phases as a label suffix (:func:`recipe_suffix`)."""
        return recipe_suffix(self.config)

    def recorded(self, key: str, default: Any = None) -> Any:
        """``key`` from the configuration, else from the metrics (e.g. ``"problem"``)."""
        return self.config.get(key, self.metrics.get(key, default))


def _read_json(path: Path) -> tuple[dict[str, Any] | None, str]:
    """``(object, "")`` or ``(None, reason)``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, f"{path.name} missing"
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"{path.name} unreadable ({exc})"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"{path.name} is not valid JSON ({exc.msg} at line {exc.lineno})"
    if not isinstance(data, dict):
        return None, f"{path.name} does not hold a JSON object"
    return data, ""


def _other_run(config: dict[str, Any], metrics: dict[str, Any]) -> list[str]:
    """Why ``metrics.json`` is not the metrics of ``config.json``'s run (empty: it is).

    The runner records the digest of the run's ``config.json`` in ``metrics.json``
    (``config_sha256``); files without one (older runs) are not checked.
    """
    from autobalance.experiments.io import json_digest

    recorded = metrics.get("config_sha256")
    if recorded is None or recorded == json_digest(config):
        return []
    return [
        "metrics.json belongs to another run than config.json (their configuration digests "
        "differ): a run was restarted or overwritten here without finishing; not merged"
    ]


def load_run(path: str | os.PathLike[str]) -> RunRecord:
    """Read one run directory; never raises for bad contents (the record is ``incomplete``)."""
    run_dir = Path(path)
    config, config_reason = _read_json(run_dir / "config.json")
    metrics, metrics_reason = _read_json(run_dir / "metrics.json")
    reasons = []
    if metrics is None and metrics_reason.endswith("missing"):
        metrics_reason = "metrics.json missing (run still going, or stopped before the end)"
    reasons += [r for r in (metrics_reason, config_reason) if r]
    if metrics is not None and metrics.get("status") not in COMPLETE_STATUSES:
        reasons.append(f"metrics.json has status {metrics.get('status')!r}, not 'ok' or 'failed'")
    if config is not None and metrics is not None:
        reasons += _other_run(config, metrics)
    if config is not None:
        for key, kind in (("problem", str), ("method", str), ("problem_params", dict)):
            if not isinstance(config.get(key), kind):
                reasons.append(f"config.json lacks a valid {key!r}")
        if not isinstance(config.get("method_params", {}), dict):
            reasons.append("config.json has a malformed 'method_params'")
    status = "incomplete" if reasons else str((metrics or {})["status"])
    return RunRecord(run_dir, status, config or {}, metrics or {}, "; ".join(reasons))


def discover_runs(runs_dir: str | os.PathLike[str]) -> list[RunRecord]:
    """Every run directory under ``runs_dir`` (``runs_dir`` itself included), sorted by path.

    A run directory is one holding ``config.json`` or ``metrics.json``; the search does not
    descend into run directories nor into hidden directories.

    Raises:
        ReportError: ``runs_dir`` is not a directory.
    """
    root = Path(runs_dir)
    if not root.is_dir():
        raise ReportError(f"runs directory {str(root)!r} does not exist or is not a directory")
    found: list[RunRecord] = []
    for dirpath, dirnames, filenames in os.walk(root):
        if any(name in filenames for name in _RUN_FILES):
            found.append(load_run(dirpath))
            dirnames[:] = []
        else:
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    return sorted(found, key=lambda r: str(r.path))


def recipe_suffix(config: Mapping[str, Any]) -> str:
    """``" → lbfgs:iters=5000 → ..."`` for a ``config.json`` with training phases (their
    mapping form, non-default values only), else ``""``."""

    def text(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        return f"{value:g}" if isinstance(value, float) else str(value)

    out = ""
    for phase in config.get("phases") or []:
        if not isinstance(phase, Mapping):
            out += f" → {phase}"
            continue
        body = ",".join(f"{k}={text(v)}" for k, v in phase.items() if k != "name")
        out += f" → {phase.get('name')}" + (f":{body}" if body else "")
    return out


#: Text columns of the runner's tables (the training phase of a row), left out by
#: :func:`read_table`.
TEXT_COLUMNS = ("phase",)


def read_table(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """A CSV with a header (as the runner writes) as float64 columns; empty cells are NaN; the
    :data:`TEXT_COLUMNS` are left out.

    Raises:
        RunFileError: the file is missing, empty or holds a non-numeric cell.
    """
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise RunFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise RunFileError(f"{path}: not a CSV table ({exc})") from None
    if not rows:
        raise RunFileError(f"{path} is empty")
    header, body = rows[0], [r for r in rows[1:] if r]
    keep = [j for j, name in enumerate(header) if name not in TEXT_COLUMNS]
    if len(keep) < len(header):
        header = [header[j] for j in keep]
        body = [[r[j] for j in keep] if len(r) > max(keep, default=-1) else r for r in body]
    try:
        data = np.array(
            [[float(c) if c.strip() else math.nan for c in r] for r in body], dtype=np.float64
        ).reshape(len(body), len(header))
    except ValueError as exc:
        raise RunFileError(f"{path}: not a numeric table ({exc})") from None
    return {name: data[:, j] for j, name in enumerate(header)}
