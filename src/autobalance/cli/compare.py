"""``autobalance compare PROBLEM --methods a,b,c --seeds N``: methods side by side, then a report.

Every (method, seed) is one run of a sweep (:mod:`autobalance.experiments.sweep`): each run in
its own directory under ``--out``, executed by ``--workers`` spawned processes (or Ray), skipped
when already complete, resumed from its checkpoint when interrupted.  The command prints, per
method, mean ± standard deviation over seeds of the rel-L2, MSE and L∞ errors, wall-clock,
backward passes and peak memory, then writes the report of ``--out``
(:func:`autobalance.experiments.report.build_report`).

The helpers shared with ``autobalance bench`` (the sweep options, running, the table) live here.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "add_compare_command",
    "add_sweep_options",
    "cmd_compare",
    "executor_from_args",
    "finish_sweep",
    "summary_table",
]


def add_sweep_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``compare`` and ``bench``: budget, execution, output."""
    parser.add_argument("--seeds", type=int, help="seeds 0..N-1 per method")
    parser.add_argument("--steps", type=int, help="optimisation steps per run")
    parser.add_argument(
        "--budget",
        metavar="KIND=VALUE",
        help="equal budget per run: steps=N, backward=N (backward passes) or time=SECONDS",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="DOTTED.KEY=VALUE",
        help="set a configuration key of every run, e.g. method_params.base=adam (repeatable)",
    )
    parser.add_argument(
        "--workers", type=int, help="runs at once (default: the CPU cores; Ray: its CPUs)"
    )
    parser.add_argument(
        "--executor",
        choices=("local", "inline", "ray"),
        default="local",
        help="local worker processes (default), inline (this process), or ray",
    )
    parser.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="join a Ray cluster ('auto' or host:port); default: start a local Ray instance",
    )
    parser.add_argument("--out", metavar="DIR", help="the sweep directory")
    parser.add_argument(
        "--tensorboard",
        action="store_true",
        help="also log each run's losses to RUN/tensorboard (needs the tensorboard package)",
    )
    parser.add_argument("--no-report", action="store_true", help="skip the report")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def add_compare_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``compare`` to the ``autobalance`` parser's sub-parsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "compare",
        help="run several methods over several seeds on one problem and compare them",
        description=(
            "Run every method of --methods for --seeds seeds on PROBLEM (a resumable sweep in "
            "--out), print mean ± std of errors and costs, and write the report."
        ),
    )
    parser.add_argument("problem", help="problem name (see `autobalance list`)")
    parser.add_argument(
        "--methods",
        default="adam,autobalance",
        help="comma-separated method names, or 'all' (default %(default)s)",
    )
    parser.add_argument(
        "--config", metavar="FILE", help="base run configuration (TOML, YAML or JSON)"
    )
    parser.add_argument("--lr", type=float, help="initial learning rate")
    parser.add_argument("--device", help="cpu, cuda, cuda:N or auto (default: the config's)")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="problem parameter, e.g. a2=4 (repeatable)",
    )
    add_sweep_options(parser)
    return parser


def executor_from_args(args: argparse.Namespace) -> Any:
    """The executor named by ``--executor`` / ``--workers`` / ``--ray-address``."""
    from autobalance.experiments.executors import create_executor

    return create_executor(args.executor, workers=args.workers, ray_address=args.ray_address)


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
def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation of the finite numbers (NaN where undefined)."""
    from autobalance.experiments.stats import summarize

    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    summary = summarize(finite)
    return summary.mean, summary.std


def _fmt(mean: float, std: float, style: str) -> str:
    if not math.isfinite(mean):
        return "n/a"
    if style == "e":
        text = f"{mean:.2e}"
        return text if not math.isfinite(std) else f"{text} ± {std:.1e}"
    text = f"{mean:.{style}f}"
    return text if not math.isfinite(std) else f"{text} ± {std:.{style}f}"


def _label(row: dict[str, Any], show_lr: bool) -> str:
    params = row.get("method_params") or {}
    text = row.get("method", "?")
    if params:
        inner = ", ".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in params.items())
        text += f"({inner})"
    if show_lr:
        text += f" lr={row.get('lr', math.nan):g}"
    return text


_COLUMNS = (
    ("rel-L2", "rel_l2", "e"),
    ("rel-L1", "rel_l1", "e"),
    ("MSE", "mse", "e"),
    ("L∞", "linf", "e"),
    ("wall s", "wall_s", "1"),
    ("backward", "backward_passes", "0"),
    ("peak RSS MB", "peak_rss_mb", "0"),
)


def summary_table(rows: Sequence[dict[str, Any]]) -> str:
    """Per problem, one line per method label: ok/total runs and mean ± std of each column."""
    lines: list[str] = []
    by_problem: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_problem.setdefault(str(row.get("problem", "?")), []).append(row)
    for problem, members in by_problem.items():
        show_lr = len({r.get("lr") for r in members}) > 1
        groups: dict[str, list[dict[str, Any]]] = {}
        for row in members:
            groups.setdefault(_label(row, show_lr), []).append(row)
        columns = list(_COLUMNS)
        if any("peak_gpu_mb" in r for r in members):
            columns.append(("peak GPU MB", "peak_gpu_mb", "0"))
        header = ["method", "ok/runs", *[c[0] for c in columns]]
        table = [header]
        for label, runs in groups.items():
            ok = [r for r in runs if r.get("status") == "ok"]
            cells = [label, f"{len(ok)}/{len(runs)}"]
            for _, key, style in columns:
                cells.append(_fmt(*_mean_std([r.get(key, math.nan) for r in ok]), style))
            table.append(cells)
        widths = [max(len(r[i]) for r in table) for i in range(len(header))]
        lines.append(f"{problem} (mean ± std over seeds; failed runs excluded)")
        for i, cells in enumerate(table):
            lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)))
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
        failed = [r for r in members if r.get("status") == "failed"]
        for r in failed:
            err = r.get("error") or {}
            lines.append(
                f"  failed: {r.get('name')} at step {err.get('step')} (loss {err.get('loss')!r})"
            )
        lines.append("")
    return "\n".join(lines).rstrip()


# --------------------------------------------------------------------------------- execution
def finish_sweep(specs: Sequence[Any], out: Path, args: argparse.Namespace) -> int:
    """Run the sweep, print the table, build the report; exit code 1 if a run raised."""
    from autobalance.experiments.sweep import run_sweep

    tensorboard = _tensorboard_ok(args)
    executor = executor_from_args(args)
    try:
        result = run_sweep(
            specs,
            out,
            executor=executor,
            tensorboard=tensorboard,
            stream=None if args.quiet else sys.stderr,
        )
    finally:
        executor.close()
    print(summary_table(result.rows()))
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
    try:
        from autobalance.experiments.report import build_report
    except ImportError:
        print("note: the report module is not available; no report written", file=sys.stderr)
        return
    from autobalance.errors import AutoBalanceError

    try:
        path = build_report(out, out)
    except AutoBalanceError as exc:
        print(f"warning: no report: {exc}", file=sys.stderr)
        return
    print(f"report: {path}")


def cmd_compare(args: argparse.Namespace) -> int:
    """Run ``autobalance compare``."""
    from autobalance import methods
    from autobalance.errors import ConfigError
    from autobalance.experiments.config_files import config_from_dict, load_mapping
    from autobalance.experiments.sweep import RunSpec

    base: dict[str, Any] = load_mapping(args.config) if args.config else {}
    names = (
        methods.names()
        if args.methods.strip() == "all"
        else [m.strip() for m in args.methods.split(",") if m.strip()]
    )
    if not names:
        raise ConfigError("--methods lists no method")
    for name in names:
        methods.spec(name)  # unknown names: an error naming the closest ones
    if args.seeds is not None and args.seeds < 1:
        raise ConfigError(f"invalid --seeds {args.seeds}: must be >= 1")
    common = [f"problem={json.dumps(args.problem)}"]
    if args.lr is not None:
        common.append(f"lr={args.lr!r}")
    if args.device is not None:
        common.append(f"device={json.dumps(args.device)}")
    common += [f"problem_params.{item}" for item in args.param]
    common += budget_items(args)
    specs = []
    for method in names:
        example = dict(methods.spec(method).example_params)
        data = dict(base)
        data["method_params"] = {**example, **base.get("method_params", {})}
        for seed in range(args.seeds or 3):
            items = [*common, f"method={json.dumps(method)}", f"seed={seed}", *args.set]
            specs.append(RunSpec(config_from_dict(data, items), group="compare"))
    out = Path(args.out or f"runs/compare-{args.problem}")
    return finish_sweep(specs, out, args)
