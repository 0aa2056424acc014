"""The progress of a sweep: counts of its runs, a one-line display and an ETA.

The ETA is ``remaining runs × mean run time / min(workers, remaining)``, the mean over the runs
this session saw finish (``ok`` or ``failed``; errors stop early and would make it optimistic).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from autobalance.experiments.executors import Outcome

__all__ = [
    "SweepProgress",
    "progress_bar",
]


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


@dataclass
class SweepProgress:
    """Counts of a sweep and a one-line display: done / running / failed, ETA.

    ``running`` counts the runs handed to a worker and not finished yet (:meth:`start` /
    :meth:`record`).  Run durations are measured here, from :meth:`start` to :meth:`record`, so
    they include a worker's start-up (a fresh process per run imports torch), which the
    ``seconds`` a worker reports leaves out; ``seconds`` is the fallback for a run whose start
    was not seen.
    """

    total: int
    workers: int = 1
    stream: TextIO | None = None
    skipped: int = 0
    done: int = 0
    failed: int = 0
    errors: int = 0
    running: int = 0
    _seconds: list[float] = field(default_factory=list)
    _started: dict[str, float] = field(default_factory=dict)

    def eta_s(self) -> float:
        """Remaining runs × mean run time (this session) / workers; NaN before the first.

        A run that ended in an error (retried on the next start) is not counted in the mean: it
        usually stops early and would make the estimate too optimistic.
        """
        remaining = self.total - self.skipped - self.done - self.failed - self.errors
        if remaining <= 0:
            return 0.0
        if not self._seconds:
            return math.nan
        mean = sum(self._seconds) / len(self._seconds)
        return mean * remaining / max(1, min(self.workers, remaining))

    def line(self, last: str = "") -> str:
        """``[sweep] 5/12 complete (3 skipped), 2 running, 1 failed, 0 errors, ETA 1m05s``."""
        finished = self.skipped + self.done + self.failed + self.errors
        text = (
            f"[sweep] {finished}/{self.total} complete ({self.skipped} skipped), "
            f"{self.running} running, {self.failed} failed, {self.errors} errors, "
            f"ETA {_duration(self.eta_s())}"
        )
        return f"{text} | {last}" if last else text

    def show(self, last: str = "") -> None:
        """Print :meth:`line` to ``stream`` (nothing when ``stream`` is None)."""
        if self.stream is not None:
            print(self.line(last), file=self.stream, flush=True)

    def start(self, name: str) -> None:
        """Count run ``name`` as running (it was handed to a worker)."""
        self.running += 1
        self._started[name] = time.perf_counter()

    def record(self, outcome: Outcome, name: str | None = None) -> None:
        """Count a finished job (``name``: the run, as given to :meth:`start`)."""
        started = self._started.pop(name, None) if name is not None else None
        if started is not None:
            self.running = max(0, self.running - 1)
        status = outcome.get("status")
        if status == "skipped":
            self.skipped += 1
            return
        if started is None:  # a run whose start was not counted
            self.running = max(0, self.running - 1)
        seconds = time.perf_counter() - started if started is not None else outcome.get("seconds")
        if status == "ok":
            self.done += 1
        elif status == "failed":
            self.failed += 1
        elif status == "interrupted":  # stopped on a signal with a checkpoint: not an error
            return
        else:
            self.errors += 1
            return
        if isinstance(seconds, (int, float)) and math.isfinite(seconds):
            self._seconds.append(float(seconds))


def progress_bar(total: int, initial: int, enabled: bool, desc: str) -> Any:
    """A tqdm bar on stderr for a run's steps (disabled: a silent stand-in)."""
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
