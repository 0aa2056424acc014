"""A run directory's checkpoint and files: what a checkpoint holds, reading one back, and the
rules a resumed or overwritten run must follow.

* :class:`Progress`: what a checkpoint carries besides the model and optimizer states.
* :func:`load_checkpoint`: ``checkpoint.pt`` read with ``weights_only=True``, its layout checked;
  every problem is a :class:`~autobalance.experiments.runs.RunFileError` naming the path.
* :func:`check_same_run`: a resumed run keeps its configuration; only :data:`RESUMABLE_KEYS`
  may change (a :class:`ResumeConflictError` names every other key that differs).
* :func:`prepare_run_directory`: a directory holding a run is refused unless resumed or
  overwritten (:class:`RunDirectoryError`).
"""

from __future__ import annotations

import copy
import errno
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from autobalance.errors import AutoBalanceError, ConfigError
from autobalance.experiments.budget import Budget
from autobalance.experiments.config import RunConfig
from autobalance.experiments.runs import RunFileError

if TYPE_CHECKING:
    from autobalance.step_info import StepInfo

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_SECONDS",
    "RESOLVED_KEYS",
    "RESUMABLE_KEYS",
    "RUN_FILES",
    "Progress",
    "ResumeConflictError",
    "RunDirectoryError",
    "brief",
    "check_resumable_limits",
    "check_same_run",
    "checkpoint_interval",
    "load_checkpoint",
    "prepare_run_directory",
    "run_files",
]

#: Version of the checkpoint layout.
CHECKPOINT_FORMAT = 1
#: Default wall-clock seconds between checkpoints (besides ``RunConfig.checkpoint_every`` steps).
CHECKPOINT_SECONDS = 60.0
#: The files a run writes, in the order ``overwrite`` removes them (metrics first: a run
#: directory caught half-cleared reads as incomplete, never as finished).
RUN_FILES = (
    "metrics.json",
    "config.json",
    "checkpoint.pt",
    "history.csv",
    "eval.csv",
    "solution.png",
)
#: Configuration keys a resumed run may change: they decide when it stops, how often it saves
#: and how many threads it uses, not what a step does (``steps`` and ``budget`` not below what
#: the checkpoint has done).
RESUMABLE_KEYS = ("steps", "budget", "checkpoint_every", "threads")
#: Entries every checkpoint holds.
_CHECKPOINT_KEYS = ("format", "step", "config", "model", "balancer", "scheduler", "rng")


class RunDirectoryError(ConfigError):
    """The output directory already holds a run, and neither resume nor overwrite was asked."""


class ResumeConflictError(ConfigError):
    """A resumed run was given a configuration that differs from its checkpoint's."""


def run_files(out_dir: str | os.PathLike[str]) -> list[str]:
    """The names of :data:`RUN_FILES` present in ``out_dir`` (none when it does not exist)."""
    out = Path(out_dir)
    return [name for name in RUN_FILES if (out / name).exists()] if out.is_dir() else []


def brief(exc: BaseException, limit: int) -> str:
    """``Type: message`` on one line, at most about ``limit`` characters of the message."""
    text = " ".join(str(exc).split())
    text = text if len(text) <= limit else text[:limit].rstrip() + "..."
    return f"{type(exc).__name__}: {text}"


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a run's ``checkpoint.pt`` (``weights_only``) and check its layout.

    Raises:
        RunFileError: naming the path: the run directory or the file does not exist, or the file
            is empty, truncated, not a checkpoint, or of an unknown format.
    """
    file = Path(path)
    if not file.parent.is_dir():
        raise RunFileError(f"cannot resume: run directory {str(file.parent)!r} does not exist")
    if not file.is_file():
        raise RunFileError(
            f"cannot resume: {file} does not exist (the run stopped before its first checkpoint, "
            f"or {str(file.parent)!r} is not a run directory); start the run again (--overwrite)"
        )
    hint = "delete it and start the run again (--overwrite), or restore it from a backup"
    if file.stat().st_size == 0:
        raise RunFileError(f"cannot resume: {file} is empty; {hint}")
    try:
        # RNG states must stay CPU tensors; model and balancer states move to the parameters'
        # device in their load_state_dict (as torch.optim optimizers do).
        ckpt = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, random bytes, unpickling error, EINVAL on seek...
        raise RunFileError(
            f"cannot resume: {file} is not a readable checkpoint (truncated or corrupted: "
            f"{brief(exc, 100)}); {hint}"
        ) from None
    if not isinstance(ckpt, dict):
        raise RunFileError(f"cannot resume: {file} does not hold a checkpoint; {hint}")
    missing = [key for key in (*_CHECKPOINT_KEYS, *Progress.names()) if key not in ckpt]
    if missing:
        raise RunFileError(
            f"cannot resume: {file} is not a run checkpoint (no {', '.join(missing)}); {hint}"
        )
    if ckpt["format"] != CHECKPOINT_FORMAT:
        raise RunFileError(
            f"cannot resume: {file} has checkpoint format {ckpt['format']!r}; this version "
            f"reads format {CHECKPOINT_FORMAT}"
        )
    counts = {k: ckpt[k] for k in ("step", "backward_passes", "skipped_steps")}
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts.values()):
        raise RunFileError(f"cannot resume: {file} holds invalid step counts {counts}; {hint}")
    return ckpt


@dataclass
class Progress:
    """What a checkpoint must carry besides the model and optimizer states."""

    step: int = 0
    wall_s: float = 0.0
    backward_passes: int = 0
    skipped_steps: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    loss_names: list[str] = field(default_factory=list)
    final_losses: dict[str, float] = field(default_factory=dict)

    def advance(self, info: StepInfo, seconds: float) -> None:
        """Count one more step that took ``seconds``: its backward passes, skip and losses."""
        self.wall_s += seconds
        self.step += 1
        self.backward_passes += info.backward_passes
        self.skipped_steps += int(info.skipped)
        self.final_losses = info.values
        if not self.loss_names:
            self.loss_names = list(info.losses)

    @classmethod
    def names(cls) -> list[str]:
        """The checkpoint entries of a progress: its field names."""
        return [f.name for f in fields(cls)]

    def entries(self) -> dict[str, Any]:
        """The checkpoint's entries: the fields by name, containers copied."""
        return {f.name: copy.copy(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_checkpoint(cls, ckpt: Mapping[str, Any]) -> Progress:
        """The progress a checkpoint holds (:meth:`entries`), containers copied."""
        return cls(**{f.name: copy.copy(ckpt[f.name]) for f in fields(cls)})


_MISSING = object()


def _differences(saved: Mapping[str, Any], given: Mapping[str, Any], prefix: str = "") -> list[str]:
    """``"key (saved X, given Y)"`` for every key whose values differ; dicts key by key."""
    out = []
    for key in sorted({*saved, *given}):
        a, b = saved.get(key, _MISSING), given.get(key, _MISSING)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            shown = ["(none)" if v is _MISSING else json.dumps(v) for v in (a, b)]
            out.append(f"{prefix}{key} (saved {shown[0]}, given {shown[1]})")
    return out


#: Keys the runner fills with defaults (``problem_params``, ...) before it records them.
RESOLVED_KEYS = ("problem_params", "net_params", "variants", "phases")


def check_same_run(
    config: RunConfig, ckpt: Mapping[str, Any], where: Path, *, skip: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The checkpoint's configuration; a :class:`ResumeConflictError` naming every key (but
    :data:`RESUMABLE_KEYS` and ``skip``) in which ``config`` differs from it."""
    try:  # fills in keys added since the checkpoint was written with their defaults
        saved = RunConfig.from_dict(dict(ckpt["config"])).to_dict()
    except (AutoBalanceError, TypeError, ValueError) as exc:
        message = f"cannot resume: {where} holds an invalid configuration: {exc}"
        raise RunFileError(message) from None
    ignored = (*RESUMABLE_KEYS, *skip)
    differ = _differences(
        {k: v for k, v in saved.items() if k not in ignored},
        {k: v for k, v in config.to_dict().items() if k not in ignored},
    )
    if differ:
        raise ResumeConflictError(
            f"cannot resume {str(where.parent)!r}: its run was started with another "
            f"configuration: {'; '.join(differ)}.  A resumed run keeps its configuration; "
            f"only {', '.join(RESUMABLE_KEYS)} may change"
        )
    return saved


def check_resumable_limits(
    config: RunConfig, saved: Mapping[str, Any], progress: Progress, where: Path
) -> None:
    """``steps`` and ``budget`` of a resumed run must leave room beyond the checkpoint."""
    done = (
        f"the checkpoint in {where} is at step {progress.step} "
        f"({progress.backward_passes} backward passes, {progress.wall_s:.1f} s of training)"
    )
    if config.steps < progress.step:
        raise ConfigError(
            f"cannot resume with steps={config.steps}: {done}; steps may not fall below it"
        )
    if config.budget != saved.get("budget"):
        budget = Budget.from_spec(config.budget)
        if budget is not None and budget.exhausted(
            progress.step, progress.backward_passes, progress.wall_s
        ):
            raise ConfigError(f"cannot resume with budget {budget}: {done}, already beyond it")


def checkpoint_interval(seconds: float | None) -> float:
    """``checkpoint_seconds`` of :func:`train` as a number (``inf``: no checkpoints by time).

    Raises:
        ConfigError: not a number > 0, nor 0 or None (off).
    """
    if seconds is None or seconds == 0:
        return math.inf
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        raise ConfigError(
            f"invalid checkpoint_seconds {seconds!r}: must be a number > 0 (or 0/None: off)"
        )
    return float(seconds)


def prepare_run_directory(out: Path, *, resume: bool, overwrite: bool) -> dict[str, Any] | None:
    """Check ``out`` before anything is built; the checkpoint to resume from, if any."""
    if resume and overwrite:
        raise ConfigError("resume and overwrite exclude each other: continue the run or replace it")
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "exists and is not a directory", str(out))
    if resume:
        return load_checkpoint(out / "checkpoint.pt")
    found = run_files(out)
    if found and not overwrite:
        raise RunDirectoryError(
            f"{str(out)!r} already holds a run ({', '.join(found)}); continue it with "
            "--resume (resume=True), replace it with --overwrite (overwrite=True), or choose "
            "another output directory"
        )
    return None
