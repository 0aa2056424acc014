"""How many CPU threads a training process uses: a policy that cannot collapse.

torch's intra-op pool spin-waits for work.  With the default two threads on a two-core machine
and one other busy process, a 4×50 tanh PINN step (about 1k points) went from 12 ms to 2150 ms:
the two threads of a parallel region wait for each other while the scheduler gives one of them
to the other process.  One thread was as fast on a quiet machine for these network sizes
(``benchmarks/busy_core.py`` measures both and the crossover by width and points).  Hence:

* :func:`available_cores` — the cores this process may really use: its CPU affinity, the
  cgroup CPU quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us / cpu.cfs_period_us``, rounded down,
  at least 1) and an ``OMP_NUM_THREADS`` already set by the user or a parent process;
* :func:`choose_threads` — one thread unless more are asked for, and never more than
  ``available_cores() // workers`` (at least 1), so parallel workers cannot oversubscribe;
* :func:`apply_threads` — sets torch's intra-op threads, its inter-op threads while torch still
  allows it, and ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` for child processes;
* :func:`using_threads` — :func:`apply_threads` for the length of a ``with`` block, then the
  intra-op count and the environment as they were (what the runner and ``diagnose`` use, so a
  library call leaves the caller's process as it found it).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

from autobalance.errors import ConfigError

__all__ = [
    "ThreadCounts",
    "apply_threads",
    "available_cores",
    "cgroup_cpu_limit",
    "choose_threads",
    "using_threads",
]

CGROUP_ROOT = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")
#: The environment variables :func:`apply_threads` sets for child processes.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
_V1_CPU_MOUNTS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _chain(mount: Path, own: str) -> list[Path]:
    """``mount/own`` and its ancestors up to ``mount`` (an ancestor's quota binds too).

    In a container without its own cgroup namespace ``own`` names a host path that does not
    exist under ``mount``; then only ``mount`` (the container's own cgroup) is read.
    """
    here = mount / own.strip("/")
    if not here.is_dir():
        return [mount]
    return [here, *[p for p in here.parents if mount in (p, *p.parents)]]


def _own_paths(self_cgroup: Path) -> tuple[str, str]:
    """This process's cgroup v2 path and cgroup v1 ``cpu`` controller path ('/' if unknown)."""
    v2 = v1 = "/"
    for line in (_read(self_cgroup) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        number, controllers, path = parts
        if number == "0" and controllers == "":
            v2 = path
        elif "cpu" in controllers.split(","):
            v1 = path
    return v2, v1


def cgroup_cpu_limit(
    root: str | os.PathLike[str] = CGROUP_ROOT, self_cgroup: str | os.PathLike[str] = SELF_CGROUP
) -> float | None:
    """CPUs the cgroup quota allows this process (quota / period), or None when unlimited.

    Reads cgroup v2 ``cpu.max`` (``"max 100000"`` or ``"150000 100000"``) and cgroup v1
    ``cpu/cpu.cfs_quota_us`` and ``cpu.cfs_period_us`` (quota ``-1``: unlimited) in this
    process's cgroup (from ``self_cgroup``, ``/proc/self/cgroup``) and its ancestors under
    ``root``; the smallest quota wins.  Missing or unreadable files mean no limit.
    """
    root = Path(root)
    own_v2, own_v1 = _own_paths(Path(self_cgroup))
    limits: list[float] = []
    for folder in _chain(root, own_v2):
        fields = (_read(folder / "cpu.max") or "").split()
        if len(fields) == 2 and fields[0] != "max":
            limits.append(_ratio(fields[0], fields[1]))
    for mount in (root / name for name in _V1_CPU_MOUNTS):
        if not mount.is_dir():
            continue
        for folder in _chain(mount, own_v1):
            quota = _read(folder / "cpu.cfs_quota_us")
            period = _read(folder / "cpu.cfs_period_us")
            if quota is not None and period is not None and quota.isdigit():  # not -1
                limits.append(_ratio(quota, period))
    positive = [limit for limit in limits if limit > 0]
    return min(positive) if positive else None


def _ratio(quota: str, period: str) -> float:
    try:
        return int(quota) / int(period) if int(period) > 0 else 0.0
    except ValueError:
        return 0.0  # not a number: ignored like a missing file


def _omp_threads(environ: Mapping[str, str]) -> int | None:
    """The outer level of ``OMP_NUM_THREADS`` (``"4"`` or ``"4,2"``), or None if unset/invalid."""
    first = environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(first) if first.isdigit() and int(first) > 0 else None


def available_cores(
    *,
    environ: Mapping[str, str] | None = None,
    cgroup_root: str | os.PathLike[str] = CGROUP_ROOT,
    self_cgroup: str | os.PathLike[str] = SELF_CGROUP,
) -> int:
    """The number of cores this process may use (at least 1).

    The smallest of: the CPUs in its affinity mask (``os.sched_getaffinity``; ``os.cpu_count``
    where there is none), the cgroup quota :func:`cgroup_cpu_limit` rounded down, and
    ``OMP_NUM_THREADS`` from ``environ`` (default ``os.environ``) when it is set to a positive
    integer (its first value for a nested list such as ``"4,2"``; other values are ignored).
    """
    environ = os.environ if environ is None else environ
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity API (macOS, Windows)
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_limit(cgroup_root, self_cgroup)
    if quota is not None:
        cores = min(cores, math.floor(quota))
    omp = _omp_threads(environ)
    if omp is not None:
        cores = min(cores, omp)
    return max(1, cores)


def _positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}")
    return value


def choose_threads(requested: int | None, workers: int = 1, *, cores: int | None = None) -> int:
    """Intra-op threads for each of ``workers`` processes: ``min(requested, cores // workers)``.

    ``requested=None`` gives 1, the choice that cannot collapse when another process is busy.
    The result is never more than ``cores // workers`` (``cores`` defaults to
    :func:`available_cores`), and at least 1.  Raises :class:`~autobalance.errors.ConfigError`
    for a ``requested`` or ``workers`` that is not a positive integer.
    """
    workers = _positive_int(workers, "the number of workers")
    if requested is None:
        return 1
    requested = _positive_int(requested, "the number of threads")
    cores = available_cores() if cores is None else _positive_int(cores, "the number of cores")
    return max(1, min(requested, cores // workers))


@dataclass(frozen=True)
class ThreadCounts:
    """The thread counts torch uses after :func:`apply_threads`."""

    intra_op: int
    inter_op: int


def apply_threads(n: int, *, environ: MutableMapping[str, str] | None = None) -> ThreadCounts:
    """Use ``n`` threads in this process and in the processes it starts.

    Sets ``torch.set_num_threads(n)``; ``torch.set_num_interop_threads(n)`` too while torch still
    allows it (only before its first inter-op parallel work: later it is left as it is); and
    ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` in ``environ`` (default ``os.environ``), which
    child processes inherit.  Returns the counts in effect.
    """
    import torch

    n = _positive_int(n, "the number of threads")
    torch.set_num_threads(n)
    # refused once inter-op work has started or the count was set before: then left as it is
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(n)
    environ = os.environ if environ is None else environ
    for name in THREAD_VARIABLES:
        environ[name] = str(n)
    return ThreadCounts(torch.get_num_threads(), torch.get_num_interop_threads())


@contextlib.contextmanager
def using_threads(
    n: int, *, environ: MutableMapping[str, str] | None = None
) -> Iterator[ThreadCounts]:
    """:func:`apply_threads` ``(n)`` inside the ``with`` block; yields the counts in effect.

    On leaving, torch's intra-op thread count and ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` in
    ``environ`` (default ``os.environ``) are put back as they were (a variable that was unset is
    removed again), so a count chosen for one run does not cap the next one through
    :func:`available_cores`.  The inter-op count cannot be changed back once torch has used it:
    it keeps what :func:`apply_threads` could set.
    """
    import torch

    environ = os.environ if environ is None else environ
    before = torch.get_num_threads()
    saved = {name: environ.get(name) for name in THREAD_VARIABLES}
    counts = apply_threads(n, environ=environ)  # validates n before anything is changed
    try:
        yield counts
    finally:
        torch.set_num_threads(before)
        for name, value in saved.items():
            if value is None:
                environ.pop(name, None)
            else:
                environ[name] = value
