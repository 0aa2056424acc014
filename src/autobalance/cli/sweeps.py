"""What ``autobalance compare`` and ``autobalance bench`` share: sweep flags, running, the table.

Both build a list of runs and hand it to :func:`finish_sweep`, which runs it as a resumable sweep
(:mod:`autobalance.experiments.sweep`) on the executor of ``--executor`` / ``--workers``
(``--threads`` CPU threads per run, :mod:`autobalance.threads`), prints
:func:`summary_table` and writes the report of ``--out``
(:func:`autobalance.experiments.report.build_report`).  The table groups and labels runs as the
report does (:func:`autobalance.experiments.analysis.group_runs`).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from autobalance.cli.console import text_table
from autobalance.cli.options import OUT_DIR, THREADS, Flag
from autobalance.experiments.analysis import MethodGroup

__all__ = [
    "SWEEP_FLAGS",
    "budget_items",
    "executor_from_args",
    "finish_sweep",
    "summary_table",
    "thread_items",
]

#: Flags of ``compare`` and ``bench``: budget, execution, output.
SWEEP_FLAGS = (
    Flag.of("--seeds", type=int, help="seeds 0..N-1 per method"),
    Flag.of("--steps", type=int, help="optimisation steps per run"),
    Flag.of(
        "--budget",
        metavar="KIND=VALUE",
        help="equal budget per run: steps=N, backward=N (backward passes) or time=SECONDS",
    ),
    Flag.of(
        "--set",
        action="append",
        default=[],
        metavar="DOTTED.KEY=VALUE",
        help="set a configuration key of every run, e.g. method_params.base=adam (repeatable)",
    ),
    Flag.of(
        "--workers",
        type=int,
        help="runs at once (default: the CPU cores this process may use // --threads; Ray: its "
        "CPUs // --threads)",
    ),
    THREADS.but(
        help="CPU threads per run (default 1), capped so that workers × threads never exceeds "
        "the cores this process may use (affinity, cgroup quota, OMP_NUM_THREADS)"
    ),
    Flag.of(
        "--executor",
        choices=("local", "inline", "ray"),
        default="local",
        help="local worker processes (default), inline (this process), or ray",
    ),
    Flag.of(
        "--gpus-per-run",
        type=float,
        metavar="G",
        help="GPUs per run: a fraction (0.5: two runs share a GPU) or a whole number; local "
        "workers each get their own CUDA_VISIBLE_DEVICES (default: spread over the visible "
        "GPUs), Ray tasks of CUDA runs ask for num_gpus=G (default 1)",
    ),
    Flag.of(
        "--ray-address",
        metavar="ADDRESS",
        help="join a Ray cluster ('auto' or host:port); default: start a local Ray instance",
    ),
    OUT_DIR.but(help="the sweep directory"),
    Flag.switch(
        "--tensorboard",
        "also log each run's losses to RUN/tensorboard (needs the tensorboard package)",
    ),
    Flag.of(
        "--checkpoint-seconds",
        type=float,
        metavar="SECONDS",
        help="also checkpoint each run every SECONDS of wall-clock (default 60; 0: off)",
    ),
    Flag.switch("--deterministic", "torch.use_deterministic_algorithms(True) in every run"),
    Flag.of(
        "--batch-seeds",
        choices=("auto", "on", "off"),
        default="auto",
        help="train the seeds of one configuration as one batched model in one process: on, "
        "off, or auto (default: when supported and measured faster here)",
    ),
    Flag.switch("--no-report", "skip the report"),
    Flag.switch("--quiet", "no progress lines"),
)


def executor_from_args(args: argparse.Namespace, threads: int | None = None) -> Any:
    """The executor named by ``--executor`` / ``--workers`` / ``--ray-address``.

    ``threads``: the intra-op threads each run asks for (None: the policy's one thread); each
    worker gets :func:`autobalance.threads.choose_threads` ``(threads, workers)``.
    """
    from autobalance.experiments.executors import create_executor

    return create_executor(
        args.executor,
        workers=args.workers,
        ray_address=args.ray_address,
        threads=threads,
        gpus_per_run=getattr(args, "gpus_per_run", None),
    )


def thread_items(args: argparse.Namespace) -> list[str]:
    """``--set`` items for ``--threads`` (every run asks for that many threads)."""
    return [] if args.threads is None else [f"threads={args.threads}"]


def budget_items(args: argparse.Namespace) -> list[str]:
    """``--set`` items for ``--steps`` and ``--budget`` (a budget also bounds ``steps``)."""
    from autobalance.experiments.budget import parse_budget, step_cap

    items: list[str] = []
    budget = parse_budget(args.budget) if args.budget else None
    if budget is not None:
        items.append(f"budget={json.dumps(budget.to_spec())}")
    if args.steps is not None:
        items.append(f"steps={args.steps}")
    elif budget is not None:
        items.append(f"steps={step_cap(budget, 10**9)}")
    return items


def _tensorboard_ok(args: argparse.Namespace) -> bool:
    if not args.tensorboard:
        return False
    if importlib.util.find_spec("tensorboard") is None:
        print(
            "warning: --tensorboard ignored: the tensorboard package is not installed "
            "(pip install tensorboard); the runs' history.csv and eval.csv are written anyway",
            file=sys.stderr,
        )
        return False
    return True


# ------------------------------------------------------------------------------------- table
#: Columns of the table: (header, key of metrics.json, format: "e" or decimals).
_COLUMNS = (
    ("rel-L2", "rel_l2", "e"),
    ("rel-L1", "rel_l1", "e"),
    ("MSE", "mse", "e"),
    ("L∞", "linf", "e"),
    ("wall s", "wall_s", "1"),
    ("backward", "backward_passes", "0"),
    ("peak RSS MB", "peak_rss_mb", "0"),
)
_GPU_COLUMN = ("peak GPU MB", "peak_gpu_mb", "0")


def _mean_std(group: MethodGroup, key: str, style: str) -> str:
    """``mean ± std`` of ``key`` over the group's successful runs (``n/a`` without values)."""
    summary = group.summary(key)
    if summary is None:
        return "n/a"
    if style == "e":
        mean, std = f"{summary.mean:.2e}", f"{summary.std:.1e}"
    else:
        mean, std = f"{summary.mean:.{style}f}", f"{summary.std:.{style}f}"
    return mean if not math.isfinite(summary.std) else f"{mean} ± {std}"


def summary_table(problems: Mapping[str, Sequence[MethodGroup]]) -> str:
    """Per problem, one line per method group: ok/total runs and mean ± std of each column.

    Problems and groups in the order given; failed runs are listed under their problem.
    """
    blocks = []
    for problem, groups in problems.items():
        columns = list(_COLUMNS)
        if any("peak_gpu_mb" in r.metrics for g in groups for r in g.runs):
            columns.append(_GPU_COLUMN)
        rows = [["method", "ok/runs", *(c[0] for c in columns)]]
        rows += [
            [
                g.method_label,
                f"{len(g.ok)}/{len(g.runs)}",
                *(_mean_std(g, k, s) for _, k, s in columns),
            ]
            for g in groups
        ]
        lines = [f"{problem} (mean ± std over seeds; failed runs excluded)"]
        lines.append(text_table(rows, header_rule=True))
        lines += [
            f"  failed: {r.path.name} at step {r.error.get('step')} (loss {r.error.get('loss')!r})"
            for g in groups
            for r in g.failed
        ]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _in_run_order(
    problems: Mapping[str, Sequence[MethodGroup]], paths: Sequence[Path]
) -> dict[str, list[MethodGroup]]:
    """Problems and their groups ordered by the first of their runs in ``paths``."""
    position = {path: i for i, path in enumerate(paths)}

    def first(group: MethodGroup) -> int:
        return min(position[r.path] for r in group.runs)

    ordered = {label: sorted(groups, key=first) for label, groups in problems.items()}
    return dict(sorted(ordered.items(), key=lambda item: first(item[1][0])))


# --------------------------------------------------------------------------------- execution
def finish_sweep(specs: Sequence[Any], out: Path, args: argparse.Namespace) -> int:
    """Run the sweep, print the table, build the report; exit code 1 if a run raised."""
    from autobalance.experiments.analysis import group_runs
    from autobalance.experiments.runs import load_run
    from autobalance.experiments.sweep import run_sweep

    tensorboard = _tensorboard_ok(args)
    # the most threads a run asks for (--threads, or a `threads` key of the configurations)
    asked = [spec.config.threads for spec in specs if spec.config.threads is not None]
    executor = executor_from_args(args, threads=max(asked, default=None))
    try:
        result = run_sweep(
            specs,
            out,
            executor=executor,
            tensorboard=tensorboard,
            stream=None if args.quiet else sys.stderr,
            checkpoint_seconds=args.checkpoint_seconds,
            deterministic=args.deterministic,
            batch_seeds=args.batch_seeds,
        )
    finally:
        executor.close()
    paths = [out / spec.name for spec in result.specs]
    print(summary_table(_in_run_order(group_runs(load_run(p) for p in paths), paths)))
    for name, message in result.errors.items():
        last = message.strip().splitlines()[-1] if message.strip() else "unknown error"
        print(f"error: run {name} did not complete: {last}", file=sys.stderr)
    print(
        f"runs: {len(result.specs)} ({len(result.executed)} run now, {len(result.skipped)} "
        f"already complete, {len(result.errors)} errors) in {out}"
    )
    if not args.no_report:
        _report(out)
    return 1 if result.errors else 0


def _report(out: Path) -> None:
    from autobalance.errors import AutoBalanceError
    from autobalance.experiments.report import build_report

    try:
        path = build_report(out, out)
    except AutoBalanceError as exc:
        print(f"warning: no report: {exc}", file=sys.stderr)
        return
    print(f"report: {path}")
