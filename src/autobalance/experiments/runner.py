"""The training runner: one PINN, one problem, one balancing method, one seed.

Each step::

    batch = problem.sample(generator, device, dtype)      # fresh points (every resample_every)
    losses = problem.losses(model, batch)                  # {"residual": ..., "boundary": ...}
    info = balancer.step(losses)                           # StepInfo
    scheduler.step()                                       # lr(t) = lr · decay^(t / decay_steps)

Output directory (every file written atomically):

* ``config.json``: the :class:`RunConfig`, with every default filled in;
* ``history.csv``: every ``log_every`` steps, the learning rate, each loss and, where the method
  reports them, each loss's weight, gradient norm, update norm and cosine with the update;
* ``eval.csv``: relative L2, relative L1, MSE and L∞ errors on the held-out grid vs step and
  training time, plus the problem's ``extra_errors`` (per output column when there are several,
  unknowns);
* ``metrics.json``: final errors, training wall-clock, cost (backward passes, peak memory), status,
  the run's id and the digest of its ``config.json`` (so a report never pairs a configuration with
  another run's metrics);
* ``checkpoint.pt``: model, balancer, scheduler and RNG states, step, config, run id and histories,
  so ``train(config, out_dir, resume=True)`` continues exactly where it stopped (``weights_only``);
* ``solution.png``: reference, prediction and pointwise error on the evaluation grid.

Checkpoints bound the work a crash can lose: one at step 0, then every ``checkpoint_every``
steps *and* every ``checkpoint_seconds`` of wall-clock (default 60 s), and one on SIGINT/SIGTERM
before :class:`~autobalance.experiments.interrupts.RunInterrupted` is raised.  A run killed with
SIGKILL loses at most the steps since its last checkpoint; resumed, it ends bit-identical to an
uninterrupted run on the same machine with the same threads.

A directory is never silently reused: a new run refuses a directory that holds a run's files
(:class:`RunDirectoryError`) unless ``overwrite`` (which first removes exactly those files) or
``resume``.  A resumed run keeps its configuration; only :data:`RESUMABLE_KEYS` may change.

Errors, on the evaluation grid ``{x_i}`` with reference ``u`` and prediction ``û``:
``rel_l2 = ‖û − u‖₂ / ‖u‖₂``, ``rel_l1 = ‖û − u‖₁ / ‖u‖₁``, ``mse = mean (û − u)²``,
``linf = max |û − u|``.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import json
import math
import os
import platform
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from autobalance import methods, nets, problems, variants
from autobalance.errors import AutoBalanceError, ConfigError, NonFiniteLossError
from autobalance.experiments.budget import Budget
from autobalance.experiments.config import RunConfig, resolve_device, resolve_dtype
from autobalance.experiments.history import history_columns, history_row
from autobalance.experiments.interrupts import RunInterrupted, StopFlag, stop_signals
from autobalance.experiments.io import (
    json_digest,
    writable_directory,
    write_csv,
    write_json,
    write_png,
    write_torch,
)
from autobalance.experiments.runs import RunFileError
from autobalance.experiments.solutions import solution_figure
from autobalance.methods import Balancer
from autobalance.metrics import ERROR_NAMES, error_metrics
from autobalance.problems import Problem
from autobalance.step_info import StepInfo

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_SECONDS",
    "RESUMABLE_KEYS",
    "RUN_FILES",
    "ResumeConflictError",
    "RunDirectoryError",
    "RunInterrupted",
    "build_model",
    "checkpoint_interval",
    "errors",
    "load_checkpoint",
    "peak_rss_mb",
    "run_files",
    "train",
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
#: Configuration keys a resumed run may change: they decide when it stops and how often it
#: saves, not what a step does (``steps`` and ``budget`` not below what the checkpoint has done).
RESUMABLE_KEYS = ("steps", "budget", "checkpoint_every")
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


def _brief(exc: BaseException, limit: int) -> str:
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
            f"{_brief(exc, 100)}); {hint}"
        ) from None
    if not isinstance(ckpt, dict):
        raise RunFileError(f"cannot resume: {file} does not hold a checkpoint; {hint}")
    missing = [key for key in (*_CHECKPOINT_KEYS, *_Progress.names()) if key not in ckpt]
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


def errors(prediction: Tensor, reference: Tensor) -> dict[str, float]:
    """``rel_l2``, ``rel_l1``, ``mse`` and ``linf`` over every point and output component
    (:func:`autobalance.metrics.error_metrics`)."""
    return error_metrics(prediction, reference)


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (NaN where unknown)."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return math.nan
    scale = {"Darwin": 1.0 / 2**20}.get(platform.system(), 1.0 / 1024)  # bytes on macOS, else KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _exp_decay(step: int, *, rate: float, every: int) -> float:
    """LR factor ``rate^(step / every)`` (smooth exponential decay)."""
    return rate ** (step / every)


@dataclass
class _Progress:
    """What a checkpoint must carry besides the model and optimizer states."""

    step: int = 0
    wall_s: float = 0.0
    backward_passes: int = 0
    skipped_steps: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    loss_names: list[str] = field(default_factory=list)
    final_losses: dict[str, float] = field(default_factory=dict)

    @classmethod
    def names(cls) -> list[str]:
        """The checkpoint entries of a progress: its field names."""
        return [f.name for f in fields(cls)]

    def entries(self) -> dict[str, Any]:
        """The checkpoint's entries: the fields by name, containers copied."""
        return {f.name: copy.copy(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_checkpoint(cls, ckpt: Mapping[str, Any]) -> _Progress:
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
_RESOLVED_KEYS = ("problem_params", "net_params", "variants")


def _check_same_run(
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


def _check_resumable_limits(
    config: RunConfig, saved: Mapping[str, Any], progress: _Progress, where: Path
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


def _create_balancer(
    config: RunConfig, model: nn.Module, unknowns: Mapping[str, nn.Parameter]
) -> Balancer:
    params = [*model.parameters(), *unknowns.values()]
    try:
        return methods.create(config.method, params, lr=config.lr, **config.method_params)
    except TypeError as exc:
        given = ", ".join(sorted(config.method_params)) or "none"
        raise ConfigError(
            f"method {config.method!r} rejected its parameters (given: lr, {given}): {exc}"
        ) from None


def build_model(
    config: RunConfig, problem: Problem, device: torch.device | str, dtype: torch.dtype
) -> tuple[nn.Module, variants.VariantStack]:
    """The network of ``config`` for ``problem`` on ``device``, wrapped by its variants.

    The model whose ``state_dict`` a checkpoint holds (variants such as hard constraints wrap
    the network), so ``build_model(...)[0].load_state_dict(ckpt["model"])`` rebuilds a run's
    model.  Draws the initial weights from torch's global generator.
    """
    model = nets.create(
        config.net,
        problem.in_dim,
        problem.out_dim,
        input_names=problem.input_names,
        **config.net_params,
    )
    stack = variants.from_specs(config.variants)
    return stack.setup(problem, model.to(device=device, dtype=dtype)), stack


class _Run:
    """The objects of one run and the writing of its outputs."""

    def __init__(self, config: RunConfig, out_dir: Path) -> None:
        config.validate()
        self.out = out_dir
        self.device = resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype)
        if self.device.type == "cuda":  # peak_gpu_mb: this run's peak, not the process's
            torch.cuda.reset_peak_memory_stats(self.device)
        self.problem: Problem = problems.create(config.problem, **config.problem_params)
        self.problem.use_sampler(config.sampler)
        net_params = nets.parameters(config.net)
        net_params.update(config.net_params)
        random.seed(config.seed)
        np.random.seed(config.seed % 2**32)
        torch.manual_seed(config.seed)  # the network's initialisation
        self.model, self.variants = build_model(config, self.problem, self.device, self.dtype)
        # Record every default, so that config.json alone reproduces the run.
        self.config = RunConfig.from_dict(
            {
                **config.to_dict(),
                "problem_params": self.problem.params,
                "net_params": net_params,
                "variants": variants.resolve_specs(config.variants),
            }
        )
        # The problem's own trainable parameters (inverse problems), moved in place.
        self.unknowns = self.problem.unknowns()
        for param in self.unknowns.values():
            param.data = param.data.to(device=self.device, dtype=self.dtype)
        self.balancer = _create_balancer(
            self.config, self.model, {**self.unknowns, **self.variants.named_parameters()}
        )
        decay = partial(_exp_decay, rate=config.lr_decay, every=config.lr_decay_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.balancer.optimizer, decay)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(config.seed)  # the collocation points
        self.eval_points = self.problem.evaluation_points(self.device, self.dtype)
        self.eval_reference = self.problem.reference(self.eval_points)
        self.progress = _Progress()
        #: The current point sets; redrawn every ``resample_every`` steps (0: drawn once).
        self.batch: dict[str, Tensor] | None = None
        #: Names this run in its checkpoint and metrics; kept when the run is resumed.
        self.run_id = uuid.uuid4().hex[:16]

    def next_batch(self) -> dict[str, Tensor]:
        """The points of the coming step: fresh at steps 0, N, 2N, ... (N = resample_every)."""
        every = self.config.resample_every
        if self.batch is None or (every and self.progress.step % every == 0):
            self.batch = self.problem.sample(self.generator, self.device, self.dtype)
        return self.batch

    # ----------------------------------------------------------------------------------- state
    def checkpoint(self) -> dict[str, Any]:
        p = self.progress
        rng: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "generator": self.generator.get_state(),
        }
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "format": CHECKPOINT_FORMAT,
            **p.entries(),
            "run_id": self.run_id,
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "balancer": self.balancer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng,
            "unknowns": {k: v.detach().clone() for k, v in self.unknowns.items()},
            "variants": self.variants.state_dict(),
            # Reused points (resample_every != 1) are stored, so a resumed run reuses them.
            "batch": (
                {k: v.detach().clone() for k, v in self.batch.items()}
                if self.batch is not None and self.config.resample_every != 1
                else None
            ),
        }

    def restore(self, ckpt: Mapping[str, Any], where: Path) -> None:
        """Continue from ``ckpt`` (:func:`load_checkpoint`); ``where``: its file, for messages.

        Raises:
            ConfigError: the run's configuration differs from the checkpoint's in a key not in
                :data:`RESUMABLE_KEYS`, or asks for fewer steps (or a smaller budget) than the
                checkpoint has already done.
            RunFileError: the checkpoint's states do not fit the run (an edited file).
        """
        saved = _check_same_run(self.config, ckpt, where)  # with the defaults filled in
        progress = _Progress.from_checkpoint(ckpt)
        _check_resumable_limits(self.config, saved, progress, where)
        try:
            self.model.load_state_dict(ckpt["model"])
            with torch.no_grad():
                for name, value in ckpt.get("unknowns", {}).items():
                    self.unknowns[name].copy_(value)
            if ckpt.get("batch") is not None:
                self.batch = {
                    k: v.to(device=self.device, dtype=self.dtype) for k, v in ckpt["batch"].items()
                }
            if "variants" in ckpt:
                self.variants.load_state_dict(ckpt["variants"])
            self.balancer.load_state_dict(ckpt["balancer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
            torch.set_rng_state(ckpt["rng"]["torch"])
            self.generator.set_state(ckpt["rng"]["generator"])
            if "cuda" in ckpt["rng"] and self.device.type == "cuda":
                torch.cuda.set_rng_state(ckpt["rng"]["cuda"], self.device)
        except (RuntimeError, KeyError, TypeError, ValueError) as exc:
            raise RunFileError(
                f"cannot resume: the states in {where} do not fit this run's model and "
                f"optimizer ({_brief(exc, 400)})"
            ) from None
        self.progress = progress
        self.run_id = str(ckpt.get("run_id") or self.run_id)

    # ------------------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def predict(self) -> Tensor:
        was_training = self.model.training
        self.model.eval()
        try:
            return self.model(self.eval_points)
        finally:
            self.model.train(was_training)

    def evaluate(self) -> dict[str, float]:
        prediction = self.predict()
        errs = errors(prediction, self.eval_reference)
        errs.update(self.problem.extra_errors(prediction, self.eval_reference))
        p = self.progress
        if p.evals and p.evals[-1]["step"] == p.step:
            p.evals.pop()
        p.evals.append({"step": p.step, "wall_s": p.wall_s, **errs})
        return errs

    # --------------------------------------------------------------------------------- output
    def write_tables(self) -> None:
        p = self.progress
        write_csv(self.out / "history.csv", history_columns(p.history, p.loss_names), p.history)
        columns = ["step", "wall_s", *ERROR_NAMES]
        columns += [k for k in (p.evals[-1] if p.evals else {}) if k not in columns]
        write_csv(self.out / "eval.csv", columns, p.evals)

    def write_checkpoint(self) -> None:
        self.write_tables()
        write_torch(self.out / "checkpoint.pt", self.checkpoint())

    def write_plot(self) -> None:
        figure = solution_figure(
            self.problem,
            self.eval_points.detach().double().cpu().numpy(),
            self.eval_reference.detach().double().cpu().numpy(),
            self.predict().detach().double().cpu().numpy(),
        )
        if figure is not None:
            write_png(self.out / "solution.png", figure)

    def metrics(self, status: str, elapsed_s: float) -> dict[str, Any]:
        p, c = self.progress, self.config
        final = p.evals[-1] if p.evals else {}
        initial = p.evals[0] if p.evals and p.evals[0]["step"] == 0 else {}
        out: dict[str, Any] = {
            "status": status,
            "problem": c.problem,
            "net": c.net,
            "method": c.method,
            "method_params": dict(c.method_params),
            "variants": [v["name"] for v in c.variants],
            "lr": c.lr,
            "seed": c.seed,
            "device": str(self.device),
            "dtype": c.dtype,
            "steps": p.step,
            "steps_requested": c.steps,
            "rel_l2": final.get("rel_l2", math.nan),
            "mse": final.get("mse", math.nan),
            "linf": final.get("linf", math.nan),
            "rel_l1": final.get("rel_l1", math.nan),
            "initial": {k: initial.get(k, math.nan) for k in ERROR_NAMES},
            **{k: v for k, v in final.items() if k not in ("step", "wall_s", *ERROR_NAMES)},
            "wall_s": p.wall_s,
            "step_ms": 1e3 * p.wall_s / p.step if p.step else math.nan,
            "elapsed_s": elapsed_s,
            "final_losses": dict(p.final_losses),
            "backward_passes": p.backward_passes,
            "skipped_steps": p.skipped_steps,
            "n_params": sum(t.numel() for t in self.model.parameters()),
            "peak_rss_mb": peak_rss_mb(),
            "torch": torch.__version__,
            "intra_op_threads": torch.get_num_threads(),
            "deterministic": torch.are_deterministic_algorithms_enabled(),
            "run_id": self.run_id,
            "config_sha256": json_digest(c.to_dict()),
        }
        if self.device.type == "cuda":
            out["peak_gpu_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        return out


def _progress_bar(total: int, initial: int, enabled: bool, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="step",
        file=sys.stderr,
        disable=not enabled,
        dynamic_ncols=True,
        mininterval=0.5,
        leave=True,
    )


@contextlib.contextmanager
def _deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """``torch.use_deterministic_algorithms(True)`` inside the block when ``enabled``.

    On CUDA, cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG`` for deterministic matrix products; it is
    set (``:4096:8``) unless already set.  The previous setting comes back on exit.
    """
    if not enabled:
        yield
        return
    before = torch.are_deterministic_algorithms_enabled()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    try:
        yield
    except RuntimeError as exc:
        if "deterministic" not in str(exc):
            raise
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(
            f"deterministic mode: torch has no deterministic implementation of an operation "
            f"this run needs ({first}); run without --deterministic"
        ) from None
    finally:
        torch.use_deterministic_algorithms(before)


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


def _prepare(out: Path, *, resume: bool, overwrite: bool) -> dict[str, Any] | None:
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


def train(
    config: RunConfig,
    out_dir: str | Path,
    *,
    progress: bool = True,
    resume: bool = False,
    overwrite: bool = False,
    callback: Callable[[StepInfo], None] | None = None,
    checkpoint_seconds: float | None = CHECKPOINT_SECONDS,
    deterministic: bool = False,
) -> dict[str, Any]:
    """Train one PINN and write the run's files to ``out_dir`` (see the module docstring).

    Args:
        config: the run.
        out_dir: created if needed.  A directory holding a run's files is refused unless
            ``resume`` or ``overwrite``.
        progress: show a tqdm progress bar with the current losses on stderr.
        resume: continue from ``out_dir/checkpoint.pt``; ``config`` must be the run's own, except
            for :data:`RESUMABLE_KEYS` (more steps, another budget or checkpoint interval).
        overwrite: remove the run files (:data:`RUN_FILES`) in ``out_dir`` and start afresh.
        callback: called with every step's :class:`StepInfo`.
        checkpoint_seconds: also write a checkpoint whenever this much wall-clock has passed
            since the last one (``None`` or 0: only every ``config.checkpoint_every`` steps).
        deterministic: ``torch.use_deterministic_algorithms(True)`` during the run (changes
            nothing on CPU; on CUDA it trades speed for run-to-run identical results).

    Returns:
        The metrics written to ``metrics.json``.  A divergent run (a loss became NaN or infinite,
        :class:`~autobalance.errors.NonFiniteLossError`) does not raise: its files are written,
        ``status`` is ``"failed"`` and ``error`` holds the step, the loss name and the message.

    Raises:
        AutoBalanceError: invalid configuration (unknown problem, method, parameter, device...);
            :class:`RunDirectoryError` for a directory holding another run; a
            :class:`~autobalance.errors.ConfigError` for a resume whose configuration differs.
        RunFileError: ``resume`` without a readable checkpoint (missing, empty, truncated...).
        OSError: ``out_dir`` is a file, or cannot be created or written (read-only, full);
            its ``filename`` names the path.  Files written before stay intact.
        RunInterrupted: SIGINT or SIGTERM arrived; a checkpoint of the last step was written.
    """
    started = time.perf_counter()
    out = Path(out_dir)
    every_s = checkpoint_interval(checkpoint_seconds)
    ckpt = _prepare(out, resume=resume, overwrite=overwrite)
    if ckpt is not None:  # before anything is built: keys the runner does not resolve
        _check_same_run(config, ckpt, out / "checkpoint.pt", skip=_RESOLVED_KEYS)
    with stop_signals() as stop, _deterministic_algorithms(deterministic):
        run = _Run(config, out)
        if ckpt is not None:
            run.restore(ckpt, out / "checkpoint.pt")
        writable_directory(out)
        # Nothing was changed before this point; now the old results give way to this run's.
        for name in RUN_FILES if overwrite else ("metrics.json",) if resume else ():
            with contextlib.suppress(FileNotFoundError):
                (out / name).unlink()
        metrics = _train_loop(run, ckpt is None, callback, progress, every_s, stop)
        metrics["elapsed_s"] = time.perf_counter() - started
        write_json(out / "metrics.json", metrics)
    return metrics


def _train_loop(
    run: _Run,
    fresh: bool,
    callback: Callable[[StepInfo], None] | None,
    progress: bool,
    every_s: float,
    stop: StopFlag,
) -> dict[str, Any]:
    """The steps of :func:`train` and the files they write; returns the metrics to write."""
    out, cfg, p = run.out, run.config, run.progress
    budget = Budget.from_spec(cfg.budget)  # None: run `steps` steps

    def out_of_budget() -> bool:
        return budget is not None and budget.exhausted(p.step, p.backward_passes, p.wall_s)

    write_json(out / "config.json", cfg.to_dict())
    if not p.evals:
        run.evaluate()
    if fresh:
        run.write_checkpoint()  # step 0: a started run can always be resumed
    saved_at = time.monotonic()

    bar = _progress_bar(cfg.steps, min(p.step, cfg.steps), progress, f"{cfg.problem}/{cfg.method}")
    failure: dict[str, Any] | None = None
    sync = torch.cuda.synchronize if run.device.type == "cuda" else (lambda: None)
    try:
        while p.step < cfg.steps and not out_of_budget() and not stop.requested:
            lr = run.balancer.optimizer.param_groups[0]["lr"]
            tic = time.perf_counter()
            batch = run.variants.transform_batch(run.next_batch(), p.step + 1)
            losses = run.problem.losses(run.model, batch)
            losses = run.variants.transform_losses(losses, p.step + 1)
            try:
                info = run.balancer.step(losses)
            except NonFiniteLossError as exc:
                failure = {"step": p.step + 1, "loss": exc.loss, "message": str(exc)}
                break
            run.variants.after_step(p.step + 1)
            run.scheduler.step()
            p.wall_s += time.perf_counter() - tic  # StepInfo's floats already synchronised
            p.step += 1
            p.backward_passes += info.backward_passes
            p.skipped_steps += int(info.skipped)
            p.final_losses = info.values
            if not p.loss_names:
                p.loss_names = list(info.losses)
            if callback is not None:
                callback(info)
            last = p.step == cfg.steps or out_of_budget()
            if p.step % cfg.log_every == 0 or p.step == 1 or last:
                p.history.append(history_row(info, lr) | {"step": p.step})
                bar.set_postfix_str(
                    " ".join(f"{n}={v:.2e}" for n, v in info.values.items()), refresh=False
                )
            if p.step % cfg.eval_every == 0 or last:
                sync()
                run.evaluate()
            by_steps = cfg.checkpoint_every and p.step % cfg.checkpoint_every == 0
            if not last and (by_steps or time.monotonic() - saved_at >= every_s):
                run.write_checkpoint()
                saved_at = time.monotonic()
            bar.update(1)
    finally:
        bar.close()

    if failure is None and stop.requested and p.step < cfg.steps and not out_of_budget():
        run.write_checkpoint()
        raise RunInterrupted(stop.signal_name, str(out), p.step)
    if failure is not None:
        run.evaluate()  # the parameters before the failing step
    run.write_checkpoint()
    run.write_plot()
    metrics = run.metrics("failed" if failure else "ok", math.nan)
    if failure is not None:
        metrics["error"] = failure
    if budget is not None:
        metrics["budget"] = budget.to_spec()
    return metrics
