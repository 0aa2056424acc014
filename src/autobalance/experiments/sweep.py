"""Sweeps: many runs, each in its own deterministic directory, resumable after any crash.

Layout of a sweep directory ``OUT``::

    OUT/sweep.json                               # the plan: every run's name and configuration
    OUT/<problem>-<method>-seed<S>-<hash>/       # one run (files of autobalance.experiments.runner)
        attempts.jsonl                           # one line per start: when, resumed from which step

The run directory's name ends with a hash of the run's non-default configuration fields (a
field added later with a default keeps old names): one configuration, one directory.

Resume rules, applied to each run when a sweep (re)starts:

* ``metrics.json`` readable with a ``status`` (``ok`` or ``failed``), written by the run of
  ``config.json`` (its configuration digest), and readable tables: complete, never redone;
* else a readable ``checkpoint.pt``: continued from it (``train(..., resume=True)``), which on
  CPU ends bit-identical to an uninterrupted run;
* else (nothing, half-written or unreadable files): reported and run from scratch.

Every file of a run is written atomically, and a run writes a checkpoint at step 0, then every
``checkpoint_every`` steps and every ``checkpoint_seconds`` of wall-clock, so a sweep killed with
SIGKILL at any point loses no completed run and, of each unfinished run, at most the work since
its last checkpoint.  On SIGINT or SIGTERM the sweep starts no new run, asks its running runs to
write a checkpoint and stop, and raises
:class:`~autobalance.experiments.interrupts.RunInterrupted`.  A run that diverges is recorded as
``failed`` (its step and loss) and the sweep goes on; a run that raises is reported as an error,
left incomplete, and retried on restart.  A lock file (``OUT/.sweep.lock``) keeps out a second
sweep.  ``batch_seeds`` may train the seeds of one configuration as one model.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import re
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from autobalance.errors import ConfigError
from autobalance.experiments.config import RunConfig
from autobalance.experiments.executors import Executor, InlineExecutor, Job, Outcome
from autobalance.experiments.interrupts import RunInterrupted, stop_signals
from autobalance.experiments.io import write_json
from autobalance.experiments.progress import SweepProgress
from autobalance.experiments.runs import COMPLETE_STATUSES, RunFileError, load_run, read_table

__all__ = [
    "COMPLETE_STATUSES",
    "RunSpec",
    "RunState",
    "SweepProgress",
    "SweepResult",
    "config_hash",
    "execute_job",
    "inspect_run",
    "run_sweep",
]


def _config_key(config: RunConfig) -> dict[str, Any]:
    """The fields of ``config`` that differ from the defaults (JSON form)."""
    defaults = RunConfig().to_dict()
    return {k: v for k, v in config.to_dict().items() if defaults.get(k, object()) != v}


def config_hash(config: RunConfig) -> str:
    """A 10-hex-digit digest of the non-default fields of ``config`` (canonical JSON)."""
    text = json.dumps(_config_key(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "x"


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: its configuration and the experiment it belongs to."""

    config: RunConfig
    group: str = ""

    @property
    def name(self) -> str:
        """``<problem>-<method>-seed<S>-<hash>``: the run's directory name."""
        c = self.config
        return f"{_slug(c.problem)}-{_slug(c.method)}-seed{c.seed}-{config_hash(c)}"


@dataclass(frozen=True)
class RunState:
    """What a run directory holds (:func:`inspect_run`).

    ``kind``: ``"new"`` (nothing there), ``"complete"`` (``metrics.json`` with a status),
    ``"resumable"`` (a readable checkpoint at ``step``) or ``"broken"`` (files, but neither;
    ``reason`` says what is wrong).  ``status`` is the metrics' status of a complete run.
    """

    kind: str
    reason: str = ""
    step: int = 0
    status: str = ""


def _read_metrics(path: Path) -> tuple[dict[str, Any] | None, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return None, f"metrics.json unreadable ({type(exc).__name__})"
    if not isinstance(data, dict) or data.get("status") not in COMPLETE_STATUSES:
        return None, "metrics.json has no status"
    return data, ""


def _finished(run_dir: Path) -> tuple[str, str]:
    """``(status, "")`` for a finished run whose files agree, else ``("", reason)``.

    Finished: ``metrics.json`` with a status, of the run of ``config.json``
    (:func:`~autobalance.experiments.runs.load_run`), and readable tables.
    """
    metrics, reason = _read_metrics(run_dir / "metrics.json")
    if metrics is None:
        return "", reason
    record = load_run(run_dir)
    if record.status not in COMPLETE_STATUSES:
        return "", record.reason
    for name in ("history.csv", "eval.csv"):
        try:
            read_table(run_dir / name)
        except RunFileError as exc:
            return "", str(exc)
    return record.status, ""


def inspect_run(run_dir: Path) -> RunState:
    """Classify ``run_dir`` by the resume rules of the module docstring; never raises."""
    if not run_dir.is_dir():
        return RunState("new")
    reasons: list[str] = []
    if (run_dir / "metrics.json").exists():
        status, reason = _finished(run_dir)
        if status:
            return RunState("complete", status=status)
        reasons.append(reason)
    ckpt_path = run_dir / "checkpoint.pt"
    if ckpt_path.exists():
        from autobalance.experiments.checkpoints import load_checkpoint

        try:  # as a resume reads it: layout, format and step counts checked
            ckpt = load_checkpoint(ckpt_path)
            return RunState("resumable", step=ckpt["step"], reason="; ".join(reasons))
        except RunFileError as exc:  # truncated zip, unpickling error, missing key...
            detail = str(exc).removeprefix("cannot resume: ").split("; delete it")[0]
            reasons.append(f"checkpoint.pt unreadable: {detail}")
    if any(p.name not in ("attempts.jsonl",) for p in run_dir.iterdir()):
        return RunState("broken", reason="; ".join(reasons) or "started, no checkpoint yet")
    return RunState("new")


# --------------------------------------------------------------------------------- the worker
def _log_attempt(run_dir: Path, record: dict[str, Any]) -> None:
    """Append one line to ``attempts.jsonl`` (a log: a torn last line is harmless)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "attempts.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _tensorboard_callback(run_dir: Path, start_step: int, log_every: int) -> tuple[Any, Any]:
    """A ``train`` callback logging losses to ``run_dir/tensorboard``, and the writer."""
    from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

    writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step + 1)
    step = start_step

    def callback(info: Any) -> None:
        nonlocal step
        step += 1
        if step % log_every == 0 or step == 1:
            writer.add_scalar("loss/total", info.total_loss, step)
            for name, value in info.values.items():
                writer.add_scalar(f"loss/{name}", value, step)

    return callback, writer


def execute_job(job: Job) -> Outcome:
    """Run (or resume, or skip) one run of a sweep; the function the executors call.

    ``job``: ``{"name", "run_dir", "config" (RunConfig dict), "tensorboard" (bool)}`` and
    optionally ``"checkpoint_seconds"`` and ``"deterministic"`` (:func:`~.runner.train`).
    Returns ``{"name", "status" ("ok"/"failed"/"skipped"/"interrupted"), "resumed_from",
    "seconds", ...}``; an interrupted run (SIGINT/SIGTERM) also gives the ``step`` it saved.
    """
    from autobalance.experiments.runner import CHECKPOINT_SECONDS, ResumeConflictError, train

    started = time.perf_counter()
    run_dir = Path(job["run_dir"])
    config = RunConfig.from_dict(job["config"])
    state = inspect_run(run_dir)
    if state.kind == "complete":
        return {"name": job["name"], "status": "skipped", "run_status": state.status}
    resume = state.kind == "resumable"
    _log_attempt(
        run_dir,
        {
            "started": time.time(),
            "pid": os.getpid(),
            "state": state.kind,
            "resumed_from": state.step if resume else None,
            "reason": state.reason,
        },
    )

    def attempt(from_step: int | None) -> dict[str, Any]:
        """``train``, resumed from the checkpoint at ``from_step`` (None: from scratch)."""
        callback, writer = None, None
        if job.get("tensorboard"):
            with contextlib.suppress(ImportError):
                callback, writer = _tensorboard_callback(run_dir, from_step or 0, config.log_every)
        try:
            return train(
                config,
                run_dir,
                progress=False,
                resume=from_step is not None,
                overwrite=from_step is None,  # the sweep owns its run directories
                callback=callback,
                checkpoint_seconds=job.get("checkpoint_seconds", CHECKPOINT_SECONDS),
                deterministic=bool(job.get("deterministic", False)),
            )
        finally:
            if writer is not None:
                writer.close()

    restarted = ""
    try:
        try:
            metrics = attempt(state.step if resume else None)
        except (ResumeConflictError, RunFileError) as exc:
            if not resume:
                raise
            # a checkpoint of another configuration, or whose states do not fit: start again
            resume, restarted = False, str(exc)
            _log_attempt(
                run_dir,
                {"started": time.time(), "pid": os.getpid(), "state": "broken",
                 "resumed_from": None, "reason": restarted},
            )  # fmt: skip
            metrics = attempt(None)
    except RunInterrupted as exc:
        return {
            "name": job["name"],
            "status": "interrupted",
            "step": exc.step,
            "seconds": time.perf_counter() - started,
        }
    return {
        "name": job["name"],
        "status": metrics["status"],
        "resumed_from": state.step if resume else None,
        "seconds": time.perf_counter() - started,
        "rel_l2": metrics.get("rel_l2"),
        "error": metrics.get("error"),
        "restarted": restarted,
    }


# ------------------------------------------------------------------------------------ sweeps
@dataclass
class SweepResult:
    """The runs of a sweep after it ran: their directories, metrics and this session's errors."""

    out_dir: Path
    specs: list[RunSpec]
    metrics: dict[str, dict[str, Any]]
    errors: dict[str, str]
    skipped: list[str]
    executed: list[str]

    def rows(self) -> list[dict[str, Any]]:
        """One dict per complete run: its metrics plus ``name`` and ``group``."""
        out = []
        for spec in self.specs:
            metrics = self.metrics.get(spec.name)
            if metrics is not None:
                out.append({**metrics, "name": spec.name, "group": spec.group})
        return out


@contextlib.contextmanager
def _lock(out_dir: Path) -> Iterator[None]:
    """Hold ``out_dir/.sweep.lock`` (POSIX ``flock``; released by the kernel on any exit)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    fh = (out_dir / ".sweep.lock").open("a+")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"another sweep is running in {str(out_dir)!r} (it holds .sweep.lock)"
            ) from None
        yield
    finally:
        fh.close()


def _dedupe(specs: Sequence[RunSpec]) -> list[RunSpec]:
    seen: dict[str, RunSpec] = {}
    for spec in specs:
        seen.setdefault(spec.name, spec)
    return list(seen.values())


def _describe_outcome(name: str, outcome: Outcome) -> str:
    status = outcome.get("status")
    if status == "ok":
        rel = outcome.get("rel_l2")
        rel_text = f"rel_l2={rel:.2e}" if isinstance(rel, float) else "rel_l2=n/a"
        resumed = outcome.get("resumed_from")
        how = f", resumed from step {resumed}" if resumed else ""
        if outcome.get("restarted"):
            how += f", run again from step 0: {outcome['restarted']}"
        return f"{name}: ok {rel_text} ({outcome.get('seconds', math.nan):.1f} s{how})"
    if status == "failed":
        err = outcome.get("error") or {}
        return f"{name}: FAILED at step {err.get('step')} (loss {err.get('loss')!r})"
    if status == "interrupted":
        return f"{name}: interrupted, checkpoint at step {outcome.get('step')}"
    first = str(outcome.get("error", "")).strip().splitlines()
    return f"{name}: ERROR {first[-1] if first else ''}"


def run_sweep(
    specs: Sequence[RunSpec],
    out_dir: str | os.PathLike[str],
    *,
    executor: Executor | None = None,
    tensorboard: bool = False,
    stream: TextIO | None = sys.stderr,
    checkpoint_seconds: float | None = None,
    deterministic: bool = False,
    batch_seeds: str = "off",
) -> SweepResult:
    """Run every spec not yet complete under ``out_dir`` (module docstring), then collect them.

    Args:
        specs: the runs (duplicates, by directory name, run once).
        out_dir: the sweep directory (created).
        executor: where the runs execute (default: :class:`InlineExecutor`); not closed here.
        tensorboard: also log each run's losses to ``<run>/tensorboard`` (needs tensorboard).
        stream: where the progress lines go (``None``: silent).
        checkpoint_seconds: wall-clock between a run's checkpoints (default: ``train``'s).
        deterministic: run with ``torch.use_deterministic_algorithms(True)``.
        batch_seeds: ``"off"``, ``"on"``, ``"auto"``: seeds as one model (:mod:`autobalance.seeds`).

    Raises:
        RunInterrupted: SIGINT or SIGTERM arrived; no run was started after it, and the runs
            in progress wrote a checkpoint (local workers and this process; Ray tasks finish).
        OSError: ``out_dir`` cannot be created or written.
    """
    from autobalance.experiments.io import writable_directory
    from autobalance.experiments.runner import checkpoint_interval
    from autobalance.seeds.sweep_jobs import execute_sweep_job, plan_seed_groups, split_outcome

    if checkpoint_seconds is not None:
        checkpoint_interval(checkpoint_seconds)  # a bad value fails here, not in every run
    out = writable_directory(out_dir)
    specs = _dedupe(specs)
    executor = executor or InlineExecutor()
    options: dict[str, Any] = {"deterministic": deterministic}
    if checkpoint_seconds is not None:
        options["checkpoint_seconds"] = checkpoint_seconds
    with _lock(out), stop_signals() as stop:
        stop.on_signal(lambda signum: executor.interrupt())
        write_json(
            out / "sweep.json",
            {
                "runs": [
                    {"name": s.name, "group": s.group, "config": s.config.to_dict()} for s in specs
                ]
            },
        )
        progress = SweepProgress(total=len(specs), workers=executor.workers, stream=stream)
        jobs: list[Job] = []
        skipped: list[str] = []
        for spec in specs:
            state = inspect_run(out / spec.name)
            if state.kind == "complete":
                skipped.append(spec.name)
                progress.record({"status": "skipped"})
                continue
            if state.kind == "broken" or state.reason:
                progress.show(f"{spec.name}: {state.reason}; running it again")
            jobs.append(
                {
                    "name": spec.name,
                    "run_dir": str(out / spec.name),
                    "config": spec.config.to_dict(),
                    "tensorboard": tensorboard,
                    **options,
                }
            )
        runs, jobs = len(jobs), plan_seed_groups(jobs, batch_seeds, progress.show, executor)
        grouped = f" as {len(jobs)} jobs" if len(jobs) != runs else ""
        progress.show(f"starting {runs} run(s){grouped}" if jobs else "every run is complete")

        def on_start(job: Job) -> None:
            for run in job.get("seed_group", [job]):  # a group of batched seeds: each run
                progress.start(run["name"])
            progress.show(f"{job['name']}: started")

        errors: dict[str, str] = {}
        executed: list[str] = []
        # After a stop signal no run starts; those running finish (interrupted) first.
        wanted = itertools.takewhile(lambda job: not stop.requested, jobs)
        outcomes = executor.run(execute_sweep_job, wanted, on_start)
        for job, outcome in (pair for group in outcomes for pair in split_outcome(*group)):
            progress.record(outcome, job["name"])
            status = outcome.get("status")
            if status == "skipped":  # completed meanwhile (not by this sweep)
                skipped.append(job["name"])
                continue
            if status == "error":
                errors[job["name"]] = str(outcome.get("error", ""))
            elif status != "interrupted":
                executed.append(job["name"])
            progress.show(_describe_outcome(job["name"], outcome))
        if stop.requested:
            progress.show(f"{stop.signal_name}: stopped; run the same command again to resume")
            raise RunInterrupted(stop.signal_name, str(out))
    metrics: dict[str, dict[str, Any]] = {}
    for spec in specs:
        data, _ = _read_metrics(out / spec.name / "metrics.json")
        if data is not None:
            metrics[spec.name] = data
    return SweepResult(out, list(specs), metrics, errors, skipped, executed)
