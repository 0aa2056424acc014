"""Where the runs of a sweep execute: this process, local worker processes, or a Ray cluster.

An executor takes plain, picklable jobs (dicts) and a module-level function, and yields
``(job, outcome)`` pairs as the jobs finish, in any order.  It never raises for a failing job:
a job whose function raises, or whose worker dies, yields an outcome
``{"status": "error", "error": MESSAGE}``, so the sweep goes on.

* :class:`InlineExecutor`: one job after the other in this process (debugging, tests).
* :class:`LocalExecutor`: ``workers`` processes started with the *spawn* context, each job in a
  fresh process (so ``peak_rss_mb`` is the job's own peak).  A worker dies with the sweep
  (Linux: ``PR_SET_PDEATHSIG``), so a sweep killed with SIGKILL leaves no orphan writing into a
  run directory.
* :class:`RayExecutor`: tasks on a Ray cluster (``pip install 'autobalance[ray]'``); the run
  directories must be on a file system every node sees.

GPUs (:mod:`~autobalance.experiments.gpu_slots`): each local worker gets its own
``CUDA_VISIBLE_DEVICES`` (workers spread over the visible GPUs, or ``gpus_per_run`` GPUs or a
fraction of one per run); a Ray task whose run needs CUDA asks for ``num_gpus=gpus_per_run``
(default 1, fractions allowed).

Threads (:mod:`autobalance.threads`): ``threads`` is what each run asks for (None: one thread);
each worker gets ``choose_threads(threads, workers)`` intra-op threads, never more than its share
of the cores this process may use (affinity, cgroup quota, ``OMP_NUM_THREADS``), and passes that
cap on through ``OMP_NUM_THREADS`` to the runner, which applies the run's own ``threads`` under
it.  The default number of local workers is ``available_cores() // threads``.

Only as many jobs as there are workers are submitted at a time, so "running" is exact and a
killed sweep has started no more runs than it had workers.

:meth:`Executor.interrupt` passes a stop request on to the running jobs (a sweep calls it on
SIGINT/SIGTERM): inline jobs share this process's stop flag, local workers get a SIGINT (idle
workers ignore it, a training run writes a checkpoint and stops), Ray tasks run to their end.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from autobalance.catalog import Catalog
from autobalance.errors import ConfigError
from autobalance.experiments.gpu_slots import gpu_slots, needs_gpu
from autobalance.threads import apply_threads, available_cores, choose_threads

__all__ = [
    "CATALOG",
    "EXECUTORS",
    "Executor",
    "InlineExecutor",
    "Job",
    "LocalExecutor",
    "Outcome",
    "RayExecutor",
    "available_cores",
    "create_executor",
    "default_workers",
]

Job = dict[str, Any]
Outcome = dict[str, Any]
JobFunction = Callable[[Job], Outcome]


class Executor(Protocol):
    """Runs jobs and yields their outcomes as they finish."""

    #: How many jobs run at once.
    workers: int

    def run(
        self, fn: JobFunction, jobs: Iterable[Job], on_start: Callable[[Job], None] | None = None
    ) -> Iterator[tuple[Job, Outcome]]:
        """Run ``fn(job)`` for every job; ``on_start(job)`` when it is handed to a worker."""
        ...

    def interrupt(self) -> None:
        """Ask the running jobs to save their work and stop (module docstring)."""
        ...

    def close(self) -> None:
        """Release the workers."""
        ...


def _error_outcome(message: str) -> Outcome:
    return {"status": "error", "error": message}


def _guarded(fn: JobFunction, job: Job) -> Outcome:
    try:
        return fn(job)
    except Exception:
        return _error_outcome(traceback.format_exc(limit=8))


def _windowed(
    workers: int,
    submit: Callable[[Job], Any],
    collect: Callable[[dict[Any, Job]], Iterator[tuple[Job, Outcome]]],
    jobs: Iterable[Job],
    on_start: Callable[[Job], None] | None,
) -> Iterator[tuple[Job, Outcome]]:
    """Keep at most ``workers`` jobs submitted; yield each outcome as ``collect`` gathers it.

    ``submit(job)`` returns a handle; ``collect(running)`` waits, pops the finished handles from
    ``running`` (handle → job) and yields their ``(job, outcome)``.
    """
    pending = iter(jobs)
    running: dict[Any, Job] = {}
    while True:
        while len(running) < workers and (job := next(pending, None)) is not None:
            running[submit(job)] = job
            if on_start is not None:
                on_start(job)
        if not running:
            return
        yield from collect(running)


class InlineExecutor:
    """Every job in this process, one after the other."""

    workers = 1

    def run(
        self, fn: JobFunction, jobs: Iterable[Job], on_start: Callable[[Job], None] | None = None
    ) -> Iterator[tuple[Job, Outcome]]:
        for job in jobs:
            if on_start is not None:
                on_start(job)
            yield job, _guarded(fn, job)

    def interrupt(self) -> None:
        """Nothing to pass on: an inline run sees this process's signals itself."""

    def close(self) -> None:
        """Nothing to release."""


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (best effort, elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return


def _init_worker(threads: int) -> None:
    """A new worker process: dies with the sweep, uses ``threads`` intra-op threads (and tells
    the runner so through ``OMP_NUM_THREADS``)."""
    _die_with_parent()
    # Ctrl-C reaches every process of the terminal's group: an idle worker ignores it (its death
    # would break the pool), a training run catches it (checkpoint, then stop).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    apply_threads(threads)


class LocalExecutor:
    """``workers`` spawned processes on this machine, a fresh one for each job.

    ``threads``: the intra-op threads a run asks for (None: one); each worker gets
    ``choose_threads(threads, workers)``, kept in :attr:`threads`.  ``gpus_per_run``: see
    :func:`~autobalance.experiments.gpu_slots.gpu_slots`; :attr:`gpu_slots` holds the
    ``CUDA_VISIBLE_DEVICES`` of each concurrent run (``None``: no GPU visible), and there are
    never more workers than slots.
    """

    def __init__(
        self, workers: int, threads: int | None = None, gpus_per_run: float | None = None
    ) -> None:
        if workers < 1:
            raise ConfigError(f"invalid workers {workers}: must be >= 1")
        self.gpu_slots = gpu_slots(workers, gpus_per_run)
        self.workers = workers if self.gpu_slots is None else len(self.gpu_slots)
        self.threads = choose_threads(threads, self.workers)
        self._pool: cf.ProcessPoolExecutor | None = None
        self._free_slots = list(self.gpu_slots or [])
        self._slot_of: dict[Any, str] = {}

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        kwargs: dict[str, Any] = {}
        if sys.version_info >= (3, 11):
            kwargs["max_tasks_per_child"] = 1  # a fresh process per run: honest peak memory
        return cf.ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(self.threads,),
            **kwargs,
        )

    def run(
        self, fn: JobFunction, jobs: Iterable[Job], on_start: Callable[[Job], None] | None = None
    ) -> Iterator[tuple[Job, Outcome]]:
        def submit(job: Job) -> cf.Future[Outcome]:
            if self._pool is None:
                self._pool = self._new_pool()
            if self.gpu_slots is None:
                return self._pool.submit(fn, job)
            slot = self._free_slots.pop(0)
            future = self._pool.submit(_on_gpus, fn, job, slot)
            self._slot_of[future] = slot
            return future

        return _windowed(self.workers, submit, self._collect, jobs, on_start)

    def _collect(self, running: dict[Any, Job]) -> Iterator[tuple[Job, Outcome]]:
        """Wait for the first jobs to finish; on a broken pool, fail the rest and drop it."""
        done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
        broken = False
        for future in done:
            job = running.pop(future)
            self._release(future)
            try:
                outcome = future.result()
            except cf.process.BrokenProcessPool:
                broken = True
                outcome = _error_outcome("the worker process died (killed, or out of memory)")
            except Exception:
                outcome = _error_outcome(traceback.format_exc(limit=8))
            yield job, outcome
        if broken:  # every job still on the broken pool has failed too; start a new pool
            for future, job in list(running.items()):
                running.pop(future)
                self._release(future)
                yield job, _error_outcome("the worker pool broke while this run was running")
            self.close()

    def _release(self, future: Any) -> None:
        slot = self._slot_of.pop(future, None)
        if slot is not None:
            self._free_slots.append(slot)

    def interrupt(self) -> None:
        """SIGINT to every worker process: running runs checkpoint and stop, idle ones ignore it."""
        if self._pool is None:
            return
        processes = getattr(self._pool, "_processes", None) or {}  # private, stable since 3.2
        for pid in list(processes):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGINT)

    def close(self) -> None:
        """Shut the worker processes down."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _on_gpus(fn: JobFunction, job: Job, visible: str) -> Outcome:
    """``fn(job)`` in a fresh worker that sees only the GPUs ``visible`` (before CUDA starts)."""
    os.environ["CUDA_VISIBLE_DEVICES"] = visible
    return fn(job)


class RayExecutor:
    """Ray tasks, ``threads`` CPUs each; locally ``ray.init(num_cpus=cores)``.

    A task whose run needs CUDA (device ``cuda``, or ``auto`` on a cluster with GPUs) asks for
    ``num_gpus=gpus_per_run`` (default 1; a fraction such as 0.25 lets four runs share a GPU),
    so Ray places it on a GPU node and sets its ``CUDA_VISIBLE_DEVICES``.

    Args:
        address: ``None`` starts a local Ray instance; ``"auto"`` or ``"ray://host:port"`` /
            ``"host:port"`` joins a running cluster.
        num_cpus: CPUs of a local instance (default: the cores this process may use,
            :func:`~autobalance.threads.available_cores`).
        threads: CPUs (and intra-op threads) a run asks for (default 1); each task gets
            ``choose_threads(threads, workers)`` of the cluster's CPUs.
        workers: runs in flight at once (default: the cluster's CPUs divided by ``threads``).
        gpus_per_run: GPUs a CUDA run asks for (default 1).
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        threads: int | None = None,
        workers: int | None = None,
        gpus_per_run: float | None = None,
    ) -> None:
        if gpus_per_run is not None and not gpus_per_run > 0:
            raise ConfigError(f"invalid --gpus-per-run {gpus_per_run}: must be > 0")
        self.gpus_per_run = 1.0 if gpus_per_run is None else float(gpus_per_run)
        try:
            import ray
        except ImportError:
            raise ConfigError(
                "--executor ray needs Ray: pip install 'autobalance[ray]' (or pip install ray)"
            ) from None
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            if address is None:
                ray.init(
                    num_cpus=num_cpus or available_cores(),
                    include_dashboard=False,
                    log_to_driver=False,
                )
            else:
                ray.init(address=address, log_to_driver=False)
            self._started = True
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.cluster_gpus = float(ray.cluster_resources().get("GPU", 0))
        if workers is None:
            self.threads = choose_threads(threads, 1, cores=cpus)
            self.workers = max(1, cpus // self.threads)
        else:
            self.workers = max(1, workers)
            self.threads = choose_threads(threads, self.workers, cores=cpus)

    def run(
        self, fn: JobFunction, jobs: Iterable[Job], on_start: Callable[[Job], None] | None = None
    ) -> Iterator[tuple[Job, Outcome]]:
        # max_calls=1: a fresh worker process per run (honest peak memory, no leaked state).
        remote = self._ray.remote(num_cpus=self.threads, max_calls=1, max_retries=0)(_ray_task)

        def submit(job: Job) -> Any:
            gpus = self.gpus_per_run if needs_gpu(job, self.cluster_gpus > 0) else 0
            return remote.options(num_gpus=gpus).remote(fn, job, self.threads)

        return _windowed(
            self.workers,
            submit,
            self._collect,
            jobs,
            on_start,
        )

    def _collect(self, running: dict[Any, Job]) -> Iterator[tuple[Job, Outcome]]:
        """Wait for one task to finish."""
        done, _ = self._ray.wait(list(running), num_returns=1)
        for ref in done:
            job = running.pop(ref)
            try:
                outcome = self._ray.get(ref)
            except Exception as exc:  # RayTaskError, WorkerCrashedError, ...
                outcome = _error_outcome(f"ray task failed: {type(exc).__name__}: {exc}")
            yield job, outcome

    def interrupt(self) -> None:
        """Nothing: Ray tasks run to their end (a sweep starts no new one after a signal)."""

    def close(self) -> None:
        """Shut down the Ray instance this executor started (a joined cluster stays up)."""
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
            self._started = False


def _ray_task(fn: JobFunction, job: Job, threads: int) -> Outcome:
    apply_threads(threads)  # a fresh Ray worker process (max_calls=1)
    return _guarded(fn, job)


def default_workers(threads: int | None = None, *, cores: int | None = None) -> int:
    """Local workers when none are asked for: ``cores // choose_threads(threads)``, at least 1.

    ``cores`` defaults to :func:`~autobalance.threads.available_cores` (affinity, cgroup quota,
    ``OMP_NUM_THREADS``), so the workers' threads together never exceed them.
    """
    cores = available_cores() if cores is None else cores
    return max(1, cores // choose_threads(threads, cores=cores))


def _local(
    workers: int | None, ray_address: str | None, threads: int | None, gpus_per_run: float | None
) -> Executor:
    """Worker processes on this machine (default: available cores // threads per run)."""
    return LocalExecutor(workers or default_workers(threads), threads, gpus_per_run)


def _inline(
    workers: int | None, ray_address: str | None, threads: int | None, gpus_per_run: float | None
) -> Executor:
    """Every run in this process, one after the other."""
    return InlineExecutor()


def _ray(
    workers: int | None, ray_address: str | None, threads: int | None, gpus_per_run: float | None
) -> Executor:
    """Ray tasks (a local instance, or the cluster at ``ray_address``)."""
    return RayExecutor(ray_address, workers=workers, threads=threads, gpus_per_run=gpus_per_run)


#: Executors by name; each factory takes ``(workers, ray_address, threads, gpus_per_run)``.
CATALOG: Catalog[Executor] = Catalog(
    "executor", skip=("workers", "ray_address", "threads", "gpus_per_run")
)
CATALOG.add("local", _local)
CATALOG.add("inline", _inline)
CATALOG.add("ray", _ray)


def create_executor(
    name: str,
    *,
    workers: int | None = None,
    ray_address: str | None = None,
    threads: int | None = None,
    gpus_per_run: float | None = None,
) -> Executor:
    """``"local"`` (default in the CLI), ``"inline"`` or ``"ray"`` (:data:`CATALOG`).

    ``threads``: the intra-op threads each run asks for (None: one).  ``gpus_per_run``: GPUs
    (or a fraction of one) per run (:mod:`~autobalance.experiments.gpu_slots`).  ``workers``
    defaults to the available cores // threads (local, :func:`default_workers`) or to the
    cluster's CPUs // threads (Ray).

    Raises:
        ConfigError: ``workers < 1``.
        UnknownNameError: an unknown name (the message names the known ones).
    """
    if workers is not None and workers < 1:
        raise ConfigError(f"invalid --workers {workers}: must be >= 1")
    return CATALOG.create(
        name, workers=workers, ray_address=ray_address, threads=threads, gpus_per_run=gpus_per_run
    )


#: Executor names accepted by :func:`create_executor`.
EXECUTORS = tuple(CATALOG.names())
