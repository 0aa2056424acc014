"""The report of a set of runs: tables, ranks, significance tests and figures.

:func:`build_report` finds every run directory under ``runs_dir`` (any directory holding a
``config.json`` or a ``metrics.json``, at any depth; the layout does not matter), groups the runs
and writes, atomically, into ``out_dir``:

* ``report.md``: per problem, an error table (for each metric: mean ± sample standard deviation,
  median and best over the successful runs), a cost table (mean wall-clock, ms/step, backward
  passes, peak memory), the rank of each method, AutoBalance against each baseline (win / tie /
  loss with p-values, see :mod:`autobalance.experiments.stats`), the failed runs, figures; then a
  summary of wins, ties and losses over problems and the incomplete run directories;
* ``results.csv``: one row per (problem, method) group with the numbers of the tables;
* ``runs.csv``: one row per run directory (incomplete ones included);
* ``comparisons.csv``: one row per AutoBalance-versus-baseline comparison;
* ``figures/``: the PNGs of :mod:`autobalance.experiments.figures`, linked from ``report.md``
  with relative paths.

Grouping.  A *problem* is its name and its full parameter set (``config.json``); its label adds
the parameters that differ between the problems of that name found (``helmholtz(a2=4)``).  A
*method label* is the method's name with the method parameters given in the run's configuration
(``autobalance(base=adam)``), plus any training setting (network, its parameters, learning rate,
its decay, steps, dtype) that differs between runs of that method on that problem, so runs that
are not comparable are not pooled.  A ``"label"`` string in ``metrics.json`` replaces the method
label.  The seeds of a group are its runs.

Statistics.  Successful runs (``status == "ok"``) give the statistics; failed runs (a loss became
non-finite) are counted and listed with their step and loss, never averaged.  Methods are ranked
per problem by the median of the ranking metric (equal medians share a rank).  Every method label
starting with ``"autobalance"`` is compared with every other label on the same problem: a win is
a lower median with ``p < α``, a loss a higher median with ``p < α``, anything else a tie.  The
test is the paired Wilcoxon signed-rank test when both groups hold exactly the same seeds, else
the Mann–Whitney U test; Welch's t test on log errors is reported alongside.

Robustness.  A run directory whose ``metrics.json`` or ``config.json`` is missing, unreadable or
malformed is listed as *incomplete* with the reason; it never stops the report.  A figure that
cannot be drawn is noted in the report instead.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autobalance.errors import AutoBalanceError
from autobalance.experiments import stats
from autobalance.experiments.io import atomic_write_text, write_csv

__all__ = [
    "AUTOBALANCE_PREFIX",
    "DEFAULT_METRICS",
    "MethodGroup",
    "ReportError",
    "RunRecord",
    "build_report",
    "discover_runs",
    "group_runs",
    "load_run",
]

DEFAULT_METRICS = ("rel_l2", "rel_l1", "mse", "linf")
#: Method labels starting with this are AutoBalance variants, compared with every other label.
AUTOBALANCE_PREFIX = "autobalance"

#: Training settings that split a method's runs into separate groups when they differ.
_SETTINGS = ("net", "net_params", "lr", "lr_decay", "lr_decay_steps", "steps", "dtype")
_RUN_FILES = ("config.json", "metrics.json")
_STATUSES = ("ok", "failed")


class ReportError(AutoBalanceError):
    """The report cannot be built (no such runs directory, unknown metric, bad α)."""


# ------------------------------------------------------------------------------------- the runs
@dataclass
class RunRecord:
    """One run directory.

    Attributes:
        path: the directory.
        status: ``"ok"``, ``"failed"`` or ``"incomplete"``.
        config: ``config.json`` (empty when unreadable).
        metrics: ``metrics.json`` (empty when unreadable).
        reason: why the run is incomplete (empty otherwise).
        problem_label, method_label: set by :func:`group_runs`.
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
        return _number(self.metrics.get(key))

    @property
    def error(self) -> dict[str, Any]:
        """The ``error`` entry of a failed run's metrics (``{}`` when none)."""
        err = self.metrics.get("error")
        return err if isinstance(err, dict) else {}


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


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


def load_run(path: str | os.PathLike[str]) -> RunRecord:
    """Read one run directory; never raises for bad contents (the record is ``incomplete``)."""
    run_dir = Path(path)
    config, config_reason = _read_json(run_dir / "config.json")
    metrics, metrics_reason = _read_json(run_dir / "metrics.json")
    reasons = []
    if metrics is None and metrics_reason.endswith("missing"):
        metrics_reason = "metrics.json missing (run still going, or stopped before the end)"
    reasons += [r for r in (metrics_reason, config_reason) if r]
    if metrics is not None and metrics.get("status") not in _STATUSES:
        reasons.append(f"metrics.json has status {metrics.get('status')!r}, not 'ok' or 'failed'")
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


# ------------------------------------------------------------------------------------- grouping
def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(_format_value(v) for v in value) + ")"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_format_value(v)}" for k, v in sorted(value.items()))
    return str(value)


def _label(name: str, params: Mapping[str, Any]) -> str:
    if not params:
        return name
    return f"{name}({', '.join(f'{k}={_format_value(v)}' for k, v in params.items())})"


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _varying(dicts: Sequence[Mapping[str, Any]]) -> list[str]:
    """Keys whose values are not all equal across ``dicts`` (absent counts as a value)."""
    keys = sorted({k for d in dicts for k in d})
    return [k for k in keys if len({_key(d.get(k)) for d in dicts}) > 1]


def _flat_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _SETTINGS:
        value = config.get(name)
        if name == "net_params" and isinstance(value, dict):
            out.update({k: v for k, v in sorted(value.items())})
        else:
            out[name] = value
    return out


@dataclass
class MethodGroup:
    """The runs of one method label on one problem.

    Attributes:
        problem_label, method_label: the labels (module docstring).
        problem: the problem's name; ``problem_params`` its parameters.
        runs: the run records (ok and failed).
        rank: the method's rank on the problem (None without a successful run).
    """

    problem_label: str
    method_label: str
    problem: str
    problem_params: dict[str, Any]
    runs: list[RunRecord] = field(default_factory=list)
    rank: int | None = None

    @property
    def ok(self) -> list[RunRecord]:
        """The successful runs."""
        return [r for r in self.runs if r.status == "ok"]

    @property
    def failed(self) -> list[RunRecord]:
        """The failed runs."""
        return [r for r in self.runs if r.status == "failed"]

    def values(self, key: str) -> list[float]:
        """The finite values of ``metrics[key]`` over the successful runs."""
        return [v for v in (r.value(key) for r in self.ok) if math.isfinite(v)]

    def seeded_values(self, key: str) -> dict[Any, float] | None:
        """``seed → value`` over the successful runs (None when a seed repeats or is unknown)."""
        out: dict[Any, float] = {}
        for run in self.ok:
            value = run.value(key)
            if not math.isfinite(value):
                continue
            if run.seed is None or _key(run.seed) in map(_key, out):
                return None
            out[run.seed] = value
        return out

    def summary(self, key: str) -> stats.Summary | None:
        """Descriptive statistics of ``key`` over the successful runs (None without values)."""
        values = self.values(key)
        return stats.summarize(values) if values else None

    def mean(self, key: str) -> float:
        """Mean of ``key`` over the successful runs (NaN without values)."""
        values = self.values(key)
        return float(np.mean(values)) if values else math.nan

    @property
    def is_autobalance(self) -> bool:
        """Whether this is an AutoBalance variant."""
        return self.method_label.startswith(AUTOBALANCE_PREFIX)


def group_runs(runs: Iterable[RunRecord]) -> dict[str, list[MethodGroup]]:
    """Group the complete runs: problem label → its method groups (labels set on the records)."""
    complete = [r for r in runs if r.status in _STATUSES]
    by_name: dict[str, list[RunRecord]] = {}
    for run in complete:
        by_name.setdefault(run.config["problem"], []).append(run)
    for name, runs_of_name in by_name.items():
        varying = _varying([r.config["problem_params"] for r in runs_of_name])
        for run in runs_of_name:
            params = run.config["problem_params"]
            run.problem_label = _label(name, {k: params.get(k) for k in varying})
    groups: dict[tuple[str, str], MethodGroup] = {}
    by_method: dict[tuple[str, str, str], list[RunRecord]] = {}
    for run in complete:
        key = (run.problem_label, run.config["method"], _key(run.config.get("method_params", {})))
        by_method.setdefault(key, []).append(run)
    for (problem_label, method, _), members in by_method.items():
        varying = _varying([_flat_settings(r.config) for r in members])
        for run in members:
            label = run.metrics.get("label")
            if not isinstance(label, str) or not label:
                params = dict(sorted(run.config.get("method_params", {}).items()))
                settings = _flat_settings(run.config)
                label = _label(method, {**params, **{k: settings[k] for k in varying}})
            run.method_label = label
            group = groups.get((problem_label, label))
            if group is None:
                group = groups[(problem_label, label)] = MethodGroup(
                    problem_label, label, run.config["problem"], run.config["problem_params"]
                )
            group.runs.append(run)
    out: dict[str, list[MethodGroup]] = {}
    for (problem_label, _), group in sorted(groups.items()):
        out.setdefault(problem_label, []).append(group)
    return out


def _assign_ranks(groups: Sequence[MethodGroup], metric: str) -> None:
    """Competition ranking by median ``metric`` (1 = lowest; equal medians share a rank)."""
    medians = {id(g): s.median for g in groups if (s := g.summary(metric)) is not None}
    for group in groups:
        if id(group) not in medians:
            group.rank = None
            continue
        mine = medians[id(group)]
        group.rank = 1 + sum(1 for m in medians.values() if m < mine)


# ---------------------------------------------------------------------------------- comparisons
@dataclass(frozen=True)
class _Row:
    problem: str
    autobalance: str
    baseline: str
    comparison: stats.Comparison | None
    paired: bool
    note: str = ""


def _compare(a: MethodGroup, b: MethodGroup, metric: str, alpha: float) -> _Row:
    va, vb = a.seeded_values(metric), b.seeded_values(metric)
    paired = va is not None and vb is not None and len(va) > 0 and set(va) == set(vb)
    if paired:
        assert va is not None and vb is not None
        seeds = sorted(va, key=_key)
        xs, ys = [va[s] for s in seeds], [vb[s] for s in seeds]
    else:
        xs, ys = a.values(metric), b.values(metric)
    if not xs or not ys:
        return _Row(
            a.problem_label,
            a.method_label,
            b.method_label,
            None,
            False,
            "no successful run on one side",
        )
    comparison = stats.compare(xs, ys, alpha=alpha, paired=paired)
    note = ""
    if comparison.test.exact and comparison.test.min_p >= alpha:
        note = f"underpowered: p ≥ {comparison.test.min_p:.3g} for any outcome at this n"
    return _Row(a.problem_label, a.method_label, b.method_label, comparison, paired, note)


def _comparisons(
    problems: Mapping[str, Sequence[MethodGroup]], metric: str, alpha: float
) -> list[_Row]:
    rows = []
    for groups in problems.values():
        for a in groups:
            if not a.is_autobalance:
                continue
            rows += [_compare(a, b, metric, alpha) for b in groups if not b.is_autobalance]
    return rows


# ------------------------------------------------------------------------------------ formatting
def _e(value: float) -> str:
    return "—" if not math.isfinite(value) else f"{value:.3e}"


def _f(value: float, digits: int) -> str:
    return "—" if not math.isfinite(value) else f"{value:.{digits}f}"


def _p(value: float) -> str:
    if not math.isfinite(value):
        return "—"
    return f"{value:.2e}" if value < 1e-3 else f"{value:.3f}"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_") or "problem"


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix() or "."
    except ValueError:
        return str(path)


def _ordered(groups: Sequence[MethodGroup]) -> list[MethodGroup]:
    return sorted(groups, key=lambda g: (g.rank is None, g.rank or 0, g.method_label))


def _extra_metrics(runs: Sequence[RunRecord], metrics: Sequence[str]) -> list[str]:
    """Keys such as ``rel_l2_a`` (a metric name, ``_``, a suffix) with a number in some run."""
    found = {
        key
        for run in runs
        if run.status == "ok"
        for key, value in run.metrics.items()
        if key not in metrics
        and any(key.startswith(f"{m}_") for m in metrics)
        and math.isfinite(_number(value))
    }
    return sorted(found)


# ---------------------------------------------------------------------------------------- report
_COST = (
    ("wall_s", "wall-clock [s]", 1),
    ("step_ms", "ms/step", 2),
    ("backward_passes", "backward passes", 0),
    ("peak_rss_mb", "peak RSS [MiB]", 0),
    ("peak_gpu_mb", "peak GPU [MiB]", 0),
    ("n_params", "parameters", 0),
)


def _error_table(groups: Sequence[MethodGroup], metrics: Sequence[str]) -> list[str]:
    header = ["rank", "method", "runs ok/failed"]
    for m in metrics:
        header += [f"{m} mean ± std", f"{m} median", f"{m} best"]
    rows = []
    for g in _ordered(groups):
        row: list[Any] = [
            g.rank if g.rank is not None else "—",
            g.method_label,
            f"{len(g.ok)}/{len(g.failed)}",
        ]
        for m in metrics:
            s = g.summary(m)
            if s is None:
                row += ["—", "—", "—"]
            else:
                std = f" ± {s.std:.1e}" if math.isfinite(s.std) else ""
                row += [f"{_e(s.mean)}{std}", _e(s.median), _e(s.minimum)]
        rows.append(row)
    return _table(header, rows)


def _cost_table(groups: Sequence[MethodGroup]) -> list[str]:
    present = [c for c in _COST if any(g.values(c[0]) for g in groups)]
    header = ["method", *(f"{title} (mean)" for _, title, _ in present)]
    rows = [
        [g.method_label, *(_f(g.mean(key), digits) for key, _, digits in present)]
        for g in _ordered(groups)
    ]
    return _table(header, rows)


def _comparison_table(rows: Sequence[_Row], alpha: float) -> list[str]:
    header = [
        "AutoBalance",
        "baseline",
        "median AB",
        "median baseline",
        "ratio",
        "test",
        "n",
        "p",
        "Welch log p",
        "outcome",
    ]
    body = []
    for r in rows:
        c = r.comparison
        if c is None:
            body.append(
                [r.autobalance, r.baseline, "—", "—", "—", "—", "—", "—", "—", f"n/a ({r.note})"]
            )
            continue
        ratio = c.median_a / c.median_b if c.median_b else math.nan
        test = ("Wilcoxon signed-rank (paired)" if r.paired else "Mann–Whitney U") + (
            ", exact" if c.test.exact else ", normal approx."
        )
        n = f"{c.test.n[0]}" if r.paired else f"{c.test.n[0]} vs {c.test.n[1]}"
        outcome = c.outcome if c.outcome != "tie" else "tie (not significant)"
        if r.note:
            outcome += f"; {r.note}"
        welch = _p(c.welch_log.p_value) if c.welch_log is not None else "—"
        body.append(
            [
                r.autobalance,
                r.baseline,
                _e(c.median_a),
                _e(c.median_b),
                _f(ratio, 3),
                test,
                n,
                _p(c.test.p_value),
                welch,
                outcome,
            ]
        )
    return _table(header, body)


def _failed_lines(groups: Sequence[MethodGroup], root: Path) -> list[str]:
    failed = [r for g in groups for r in g.failed]
    if not failed:
        return ["No failed runs."]
    rows = [
        [
            r.method_label,
            r.seed,
            r.error.get("step", "—"),
            r.error.get("loss", "—"),
            r.error.get("message", ""),
            _rel(r.path, root),
        ]
        for r in failed
    ]
    return _table(["method", "seed", "step", "loss", "message", "run"], rows)


def _method_lines(alpha: float, metric: str) -> list[str]:
    return [
        "## How to read this report",
        "",
        f"- Statistics use the successful runs only; failed runs (a loss became NaN/∞) are "
        f"counted and listed, never averaged. Ranks: by median `{metric}` per problem "
        "(1 = lowest; equal medians share a rank).",
        "- std is the sample standard deviation (n − 1); *best* is the lowest value.",
        f"- AutoBalance (every method label starting with `{AUTOBALANCE_PREFIX}`) is compared "
        f"with each baseline on `{metric}`: **win** = lower median and p < α, **loss** = higher "
        f"median and p < α, otherwise **tie** (not significant); α = {alpha:g}, two-sided.",
        "- Test: the paired Wilcoxon signed-rank test when both methods have exactly the same "
        "seeds, else the Mann–Whitney U test; exact null distributions for small samples. "
        "Welch's t test on log errors is shown for reference and does not decide.",
        "- Power: with few seeds an exact rank test cannot reach small p at all (3 vs 3 seeds: "
        "smallest Mann–Whitney p = 0.1; 3 paired seeds: smallest Wilcoxon p = 0.25). Such "
        "comparisons are marked *underpowered*; a tie there says nothing about equality. "
        "No correction for multiple comparisons.",
        "",
    ]


def _figures(
    groups: Sequence[MethodGroup],
    metric: str,
    fig_dir: Path,
    out_dir: Path,
    slug: str,
) -> list[str]:
    """Draw the problem's figures; the markdown lines linking them (or saying why not)."""
    from autobalance.experiments import figures

    ordered = _ordered(groups)
    all_runs = {g.method_label: [r.path for r in g.ok] for g in ordered if g.ok}
    median_runs = {}
    for g in ordered:
        scored = sorted(
            (r for r in g.ok if math.isfinite(r.value(metric))), key=lambda r: r.value(metric)
        )
        if scored:
            median_runs[g.method_label] = scored[(len(scored) - 1) // 2].path
    jobs = [
        (
            "error vs step",
            f"{slug}_error_vs_step.png",
            lambda p: figures.plot_error_curves(p, all_runs, metric=metric, x="step"),
        ),
        (
            "error vs wall-clock",
            f"{slug}_error_vs_time.png",
            lambda p: figures.plot_error_curves(p, all_runs, metric=metric, x="wall_s"),
        ),
        ("loss terms", f"{slug}_losses.png", lambda p: figures.plot_loss_curves(p, all_runs)),
        (
            "solutions (median-seed run of each method)",
            f"{slug}_solutions.png",
            lambda p: figures.plot_solution_panels(p, median_runs),
        ),
    ]
    lines = []
    for title, name, draw in jobs:
        path = fig_dir / name
        try:
            result = draw(path)
        except Exception as exc:  # a figure must never stop the report
            lines.append(f"- {title}: not drawn ({type(exc).__name__}: {exc})")
            continue
        skipped: dict[str, str] = {}
        if isinstance(result, tuple):
            result, skipped = result
        if result is None:
            why = "; ".join(f"{k}: {v}" for k, v in skipped.items()) or "no data"
            lines.append(f"- {title}: not drawn ({why})")
            continue
        lines += [f"**{title}**", "", f"![{title}]({_rel(path, out_dir)})", ""]
        lines += [f"- {label}: left out ({why})" for label, why in skipped.items()]
    return lines


def _summary_lines(rows: Sequence[_Row]) -> list[str]:
    tally: dict[tuple[str, str], list[int]] = {}
    for r in rows:
        if r.comparison is None:
            continue
        counts = tally.setdefault((r.autobalance, r.baseline), [0, 0, 0])
        counts[("win", "tie", "loss").index(r.comparison.outcome)] += 1
    if not tally:
        return ["No AutoBalance-versus-baseline comparison (need both on one problem)."]
    body = [[a, b, *c] for (a, b), c in sorted(tally.items())]
    return _table(["AutoBalance", "baseline", "wins", "ties", "losses"], body)


def _csv_rows(
    problems: Mapping[str, Sequence[MethodGroup]], metrics: Sequence[str]
) -> tuple[list[str], list[dict[str, Any]]]:
    columns = [
        "problem_label",
        "problem",
        "problem_params",
        "method_label",
        "method",
        "method_params",
        "n_runs",
        "n_ok",
        "n_failed",
        "rank",
        "seeds",
    ]
    for m in metrics:
        columns += [f"{m}_{s}" for s in ("mean", "std", "median", "best", "worst")]
    columns += [f"{key}_mean" for key, _, _ in _COST]
    rows = []
    for groups in problems.values():
        for g in _ordered(groups):
            first = g.runs[0].config
            row: dict[str, Any] = {
                "problem_label": g.problem_label,
                "problem": g.problem,
                "problem_params": _key(g.problem_params),
                "method_label": g.method_label,
                "method": first.get("method"),
                "method_params": _key(first.get("method_params", {})),
                "n_runs": len(g.runs),
                "n_ok": len(g.ok),
                "n_failed": len(g.failed),
                "rank": g.rank,
                "seeds": " ".join(str(r.seed) for r in g.ok),
            }
            for m in metrics:
                s = g.summary(m)
                if s is not None:
                    row.update(
                        {
                            f"{m}_mean": s.mean,
                            f"{m}_std": s.std,
                            f"{m}_median": s.median,
                            f"{m}_best": s.minimum,
                            f"{m}_worst": s.maximum,
                        }
                    )
            row.update({f"{key}_mean": g.mean(key) for key, _, _ in _COST})
            rows.append(row)
    return columns, rows


def _run_rows(
    runs: Sequence[RunRecord], metrics: Sequence[str], root: Path
) -> tuple[list[str], list[dict[str, Any]]]:
    columns = [
        "path",
        "status",
        "problem_label",
        "method_label",
        "problem",
        "method",
        "seed",
        *metrics,
        "wall_s",
        "step_ms",
        "error_step",
        "error_loss",
        "reason",
    ]
    rows = []
    for r in runs:
        row: dict[str, Any] = {
            "path": _rel(r.path, root),
            "status": r.status,
            "problem_label": r.problem_label,
            "method_label": r.method_label,
            "problem": r.config.get("problem", r.metrics.get("problem")),
            "method": r.config.get("method", r.metrics.get("method")),
            "seed": r.seed,
            "error_step": r.error.get("step"),
            "error_loss": r.error.get("loss"),
            "reason": r.reason,
        }
        row.update({k: r.value(k) for k in (*metrics, "wall_s", "step_ms")})
        rows.append(row)
    return columns, rows


def _comparison_rows(rows: Sequence[_Row], metric: str) -> tuple[list[str], list[dict[str, Any]]]:
    columns = [
        "problem_label",
        "autobalance",
        "baseline",
        "metric",
        "median_autobalance",
        "median_baseline",
        "test",
        "paired",
        "exact",
        "statistic",
        "p_value",
        "min_p",
        "welch_log_t",
        "welch_log_df",
        "welch_log_p",
        "alpha",
        "outcome",
        "note",
    ]
    out = []
    for r in rows:
        c = r.comparison
        row: dict[str, Any] = {
            "problem_label": r.problem,
            "autobalance": r.autobalance,
            "baseline": r.baseline,
            "metric": metric,
            "note": r.note,
        }
        if c is not None:
            row.update(
                {
                    "median_autobalance": c.median_a,
                    "median_baseline": c.median_b,
                    "test": c.test.name,
                    "paired": int(r.paired),
                    "exact": int(c.test.exact),
                    "statistic": c.test.statistic,
                    "p_value": c.test.p_value,
                    "min_p": c.test.min_p,
                    "alpha": c.alpha,
                    "outcome": c.outcome,
                }
            )
            if c.welch_log is not None:
                row.update(
                    {
                        "welch_log_t": c.welch_log.statistic,
                        "welch_log_df": c.welch_log.df,
                        "welch_log_p": c.welch_log.p_value,
                    }
                )
        else:
            row["outcome"] = "n/a"
        out.append(row)
    return columns, out


def build_report(
    runs_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    metric: str | None = None,
    alpha: float = 0.05,
    figures: bool = True,
) -> Path:
    """Write ``report.md``, ``results.csv``, ``runs.csv``, ``comparisons.csv`` and figures.

    Args:
        runs_dir: searched recursively for run directories (module docstring).
        out_dir: where to write (created if needed); default ``runs_dir``.
        metrics: the error metrics (keys of ``metrics.json``) tabulated; keys such as
            ``rel_l2_a`` found in the runs are added; one that no run records is left out.
        metric: the metric that ranks methods and decides win/tie/loss (default
            ``metrics[0]``); added to ``metrics`` when missing.
        alpha: significance level of the tests, in ``(0, 1)``.
        figures: draw the figures (they need ``eval.csv``, ``history.csv``, ``checkpoint.pt``).

    Returns:
        The path of ``report.md``.

    Raises:
        ReportError: ``runs_dir`` is not a directory, no metric given, ``metric`` appears in no
            run's ``metrics.json``, or ``alpha`` is outside ``(0, 1)``.
    """
    root = Path(runs_dir)
    out = Path(out_dir) if out_dir is not None else root
    metrics = list(dict.fromkeys(metrics))
    if not metrics and metric is None:
        raise ReportError("give at least one metric")
    metric = metric or metrics[0]
    if metric not in metrics:
        metrics.insert(0, metric)
    if not 0.0 < alpha < 1.0:
        raise ReportError(f"alpha must be in (0, 1), got {alpha}")
    runs = discover_runs(root)
    complete = [r for r in runs if r.status in _STATUSES]
    if complete and not any(metric in r.metrics for r in complete):
        known = sorted(
            {k for r in complete for k, v in r.metrics.items() if math.isfinite(_number(v))}
        )
        raise ReportError(
            f"metric {metric!r} is in no run's metrics.json; numeric keys: {', '.join(known)}"
        )
    # A default metric that no run records (runs made before it existed) is left out, not shown
    # as a column of n/a; the ranking metric was checked above.
    metrics = [
        m for m in metrics if m == metric or not complete or any(m in r.metrics for r in complete)
    ]
    problems = group_runs(runs)
    for groups in problems.values():
        _assign_ranks(groups, metric)
    rows = _comparisons(problems, metric, alpha)
    extras = _extra_metrics(runs, metrics)
    incomplete = [r for r in runs if r.status == "incomplete"]

    n_ok = sum(r.status == "ok" for r in runs)
    n_failed = sum(r.status == "failed" for r in runs)
    lines = [
        "# AutoBalance experiment report",
        "",
        f"Runs directory: `{root}` — {len(runs)} run directories: {n_ok} ok, {n_failed} failed, "
        f"{len(incomplete)} incomplete; {len(problems)} problem(s). Ranking and tests on "
        f"`{metric}`.",
        "",
        *_method_lines(alpha, metric),
    ]
    fig_dir = out / "figures"
    for problem_label, groups in problems.items():
        first = groups[0]
        lines += [
            f"## Problem: {problem_label}",
            "",
            f"Parameters of `{first.problem}`: "
            + (_format_value(first.problem_params) or "defaults"),
            "",
            "### Errors",
            "",
            *_error_table(groups, metrics),
            "",
        ]
        mine_extras = [m for m in extras if any(g.values(m) for g in groups)]
        if mine_extras:
            lines += ["### Other error metrics", "", *_error_table(groups, mine_extras), ""]
        lines += ["### Cost", "", *_cost_table(groups), ""]
        mine = [r for r in rows if r.problem == problem_label]
        lines += ["### AutoBalance against the baselines", ""]
        lines += (
            _comparison_table(mine, alpha)
            if mine
            else ["No comparison: AutoBalance and a baseline are not both present."]
        )
        lines += ["", "### Failed runs", "", *_failed_lines(groups, root), ""]
        if figures:
            lines += [
                "### Figures",
                "",
                *_figures(groups, metric, fig_dir, out, _slug(problem_label)),
                "",
            ]
    lines += [
        "## Summary: AutoBalance wins / ties / losses over problems",
        "",
        *_summary_lines(rows),
        "",
    ]
    lines += ["## Incomplete run directories", ""]
    if incomplete:
        lines += _table(
            ["run", "problem", "method", "reason"],
            [
                [
                    _rel(r.path, root),
                    r.config.get("problem", r.metrics.get("problem", "?")),
                    r.config.get("method", r.metrics.get("method", "?")),
                    r.reason,
                ]
                for r in incomplete
            ],
        )
    else:
        lines.append("None.")
    lines.append("")

    all_metrics = [*metrics, *extras]
    write_csv(out / "results.csv", *_csv_rows(problems, all_metrics))
    write_csv(out / "runs.csv", *_run_rows(runs, all_metrics, root))
    write_csv(out / "comparisons.csv", *_comparison_rows(rows, metric))
    return atomic_write_text(out / "report.md", "\n".join(lines))
