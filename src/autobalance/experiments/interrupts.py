"""Stopping cleanly on SIGINT and SIGTERM: a flag the training loop and a sweep poll.

Inside :func:`stop_signals` a SIGINT (Ctrl-C) or SIGTERM (``kill``, a batch scheduler's
time limit) does not kill the process: it sets a :class:`StopFlag`.  The training loop checks the
flag after every step, writes a checkpoint and raises :class:`RunInterrupted`; a sweep checks it
between runs, asks its workers to stop the same way (:meth:`StopFlag.on_signal`) and raises it
too.  So an interrupted run loses no step, and ``autobalance run --resume`` (or the same sweep
command again) continues it.

Nested :func:`stop_signals` (a sweep running its runs in this process) share one flag: a signal
stops the run *and* the sweep.  Outside the main thread no handler can be installed; the flag is
then never set and the default behaviour stays.  SIGKILL cannot be caught: what it kills is
bounded by the checkpoint interval (:func:`autobalance.experiments.runner.train`).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

__all__ = ["STOP_SIGNALS", "RunInterrupted", "StopFlag", "stop_signals"]

#: The signals that ask for a clean stop.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunInterrupted(Exception):
    """A run or sweep stopped on a signal after saving what it had done.

    Attributes:
        signal_name: ``"SIGINT"`` or ``"SIGTERM"``.
        where: the run or sweep directory.
        step: the step of the checkpoint written (``None`` for a sweep).
    """

    def __init__(self, signal_name: str, where: str, step: int | None = None) -> None:
        at = f" at step {step}" if step is not None else ""
        super().__init__(f"{signal_name}: stopped {where}{at}")
        self.signal_name = signal_name
        self.where = where
        self.step = step

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across worker processes
        return (type(self), (self.signal_name, self.where, self.step))


@dataclass
class StopFlag:
    """Set when a stop signal arrived (:func:`stop_signals`)."""

    signum: int | None = None
    _callbacks: list[Callable[[int], None]] = field(default_factory=list)

    @property
    def requested(self) -> bool:
        """Whether a stop signal arrived."""
        return self.signum is not None

    @property
    def signal_name(self) -> str:
        """``"SIGINT"``, ``"SIGTERM"`` (empty before a signal)."""
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def on_signal(self, callback: Callable[[int], None]) -> None:
        """Call ``callback(signum)`` when a signal arrives (e.g. to pass it on to workers)."""
        self._callbacks.append(callback)

    def set(self, signum: int) -> None:
        """Record ``signum`` (the first one wins) and run the callbacks."""
        if self.signum is None:
            self.signum = signum
        for callback in list(self._callbacks):
            callback(signum)


_active: StopFlag | None = None


@contextlib.contextmanager
def stop_signals() -> Iterator[StopFlag]:
    """Catch SIGINT and SIGTERM into a :class:`StopFlag` while the block runs.

    The previous handlers come back on exit.  Nested blocks share the outer flag; a block
    outside the main thread gets a flag no signal sets.
    """
    global _active
    if _active is not None:
        yield _active
        return
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        flag.set(signum)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    _active = flag
    try:
        yield flag
    finally:
        _active = None
        for sig, old in previous.items():
            signal.signal(sig, signal.SIG_DFL if old is None else old)
