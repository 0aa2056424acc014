"""Analysis of a set of runs: grouping, statistics, ranks and AutoBalance-versus-baseline tests.

Shared by ``autobalance report`` (:mod:`autobalance.experiments.report`) and the table that
``autobalance compare`` / ``bench`` print, so both group and label runs the same way.

Grouping (:func:`group_runs`).  A *problem* is its name and its full parameter set
(``config.json``); its label adds the parameters that differ between the problems of that name
found (``helmholtz(a2=4)``).  A *method label* is the method's name with the method parameters
given in the run's configuration (``autobalance(base=adam)``), plus any training setting (network,
its parameters, learning rate, its decay, steps, dtype) that differs between runs of that method
on that problem, so runs that are not comparable are not pooled, followed by the run's training
phases (``adam → ssbroyden:iters=3000``), which also split groups.  A ``"label"`` string in
``metrics.json`` replaces the method label.  The seeds of a group are its runs.

Statistics.  Successful runs (``status == "ok"``) give the statistics; failed runs are counted,
never averaged.  A successful run whose ``metrics.json`` lacks a tabulated metric or holds one
that is null or not a number is *flagged* (:func:`flag_runs`): left out of that metric's
statistics and listed, never dropped without a word.  Methods are ranked per problem by the
median of the ranking metric, competition ranking (:func:`assign_ranks`: ``rank = 1 + #{groups
with a lower median}``, so equal medians share a rank).  Every method label starting with
:data:`AUTOBALANCE_PREFIX` is compared with every other label on the same problem
(:func:`compare_groups`): a win is a lower median with ``p < α``, a loss a higher median with
``p < α``, anything else a tie.  The test is the paired Wilcoxon signed-rank test when both
groups hold exactly the same seeds, else the Mann–Whitney U test; Welch's t test on log errors
is reported alongside (:func:`autobalance.experiments.stats.compare`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autobalance.experiments import stats
from autobalance.experiments.runs import COMPLETE_STATUSES, ReportError, RunRecord, number

__all__ = [
    "AUTOBALANCE_PREFIX",
    "COSTS",
    "DEFAULT_METRICS",
    "Analysis",
    "ComparisonRow",
    "Criteria",
    "FlaggedRun",
    "MethodGroup",
    "analyze",
    "assign_ranks",
    "canonical_json",
    "compare_groups",
    "extra_metrics",
    "flag_runs",
    "format_value",
    "group_runs",
    "metric_issues",
    "ordered",
]

DEFAULT_METRICS = ("rel_l2", "rel_l1", "mse", "linf")
#: Method labels starting with this are AutoBalance variants, compared with every other label.
AUTOBALANCE_PREFIX = "autobalance"

#: Costs of a run reported as means: (key of ``metrics.json``, title, decimals shown).
COSTS = (
    ("wall_s", "wall-clock [s]", 1),
    ("step_ms", "ms/step", 2),
    ("backward_passes", "backward passes", 0),
    ("peak_rss_mb", "peak RSS [MiB]", 0),
    ("peak_gpu_mb", "peak GPU [MiB]", 0),
    ("n_params", "parameters", 0),
    ("phase_iterations", "phase iterations", 0),
    ("phase_functions", "phase function evals", 0),
    ("phase_gradients", "phase gradient evals", 0),
    ("phase_jacobians", "phase Jacobians", 0),
)

#: Training settings that split a method's runs into separate groups when they differ.
_SETTINGS = ("net", "net_params", "lr", "lr_decay", "lr_decay_steps", "steps", "dtype")


# ------------------------------------------------------------------------------------- labels
def canonical_json(value: Any) -> str:
    """``value`` as JSON with sorted keys: equal values give equal text (a grouping key)."""
    return json.dumps(value, sort_keys=True, default=str)


def format_value(value: Any) -> str:
    """A parameter value in a label: ``0.001``, ``(0.9, 0.99)``, ``a=1, b=2``."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(format_value(v) for v in value) + ")"
    if isinstance(value, dict):
        return ", ".join(f"{k}={format_value(v)}" for k, v in sorted(value.items()))
    return str(value)


def _label(name: str, params: Mapping[str, Any]) -> str:
    if not params:
        return name
    return f"{name}({', '.join(f'{k}={format_value(v)}' for k, v in params.items())})"


def _varying(dicts: Sequence[Mapping[str, Any]]) -> list[str]:
    """Keys whose values are not all equal across ``dicts`` (absent counts as a value)."""
    keys = sorted({k for d in dicts for k in d})
    return [k for k in keys if len({canonical_json(d.get(k)) for d in dicts}) > 1]


def _flat_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _SETTINGS:
        value = config.get(name)
        if name == "net_params" and isinstance(value, dict):
            out.update({k: v for k, v in sorted(value.items())})
        else:
            out[name] = value
    return out


# ------------------------------------------------------------------------------------- groups
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
            if run.seed is None or canonical_json(run.seed) in map(canonical_json, out):
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
    """Group the complete runs: problem label → its method groups (labels set on the records).

    Problems in label order; a problem's groups in method-label order.
    """
    complete = [r for r in runs if r.status in COMPLETE_STATUSES]
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
        method_params = canonical_json(run.config.get("method_params", {})) + run.recipe
        key = (run.problem_label, run.config["method"], method_params)
        by_method.setdefault(key, []).append(run)
    for (problem_label, method, _), members in by_method.items():
        varying = _varying([_flat_settings(r.config) for r in members])
        for run in members:
            label = run.metrics.get("label")
            if not isinstance(label, str) or not label:
                params = dict(sorted(run.config.get("method_params", {}).items()))
                settings = _flat_settings(run.config)
                label = _label(method, {**params, **{k: settings[k] for k in varying}})
                label += run.recipe
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


def assign_ranks(groups: Sequence[MethodGroup], metric: str) -> None:
    """Competition ranking by median ``metric`` (1 = lowest; equal medians share a rank)."""
    medians = {id(g): s.median for g in groups if (s := g.summary(metric)) is not None}
    for group in groups:
        if id(group) not in medians:
            group.rank = None
            continue
        mine = medians[id(group)]
        group.rank = 1 + sum(1 for m in medians.values() if m < mine)


def ordered(groups: Sequence[MethodGroup]) -> list[MethodGroup]:
    """By rank (unranked last), then by method label."""
    return sorted(groups, key=lambda g: (g.rank is None, g.rank or 0, g.method_label))


# -------------------------------------------------------------------------------- comparisons
@dataclass(frozen=True)
class ComparisonRow:
    """An AutoBalance label against one baseline label on one problem.

    ``comparison`` is None when one side has no successful run (``note`` says so); ``paired``
    tells which test decided; ``note`` also flags an exact test that cannot reach ``p < α``.
    """

    problem: str
    autobalance: str
    baseline: str
    comparison: stats.Comparison | None
    paired: bool
    note: str = ""


def compare_groups(a: MethodGroup, b: MethodGroup, metric: str, alpha: float) -> ComparisonRow:
    """Test ``a`` against ``b`` on ``metric`` (paired when both hold exactly the same seeds)."""
    va, vb = a.seeded_values(metric), b.seeded_values(metric)
    paired = va is not None and vb is not None and len(va) > 0 and set(va) == set(vb)
    if paired:
        assert va is not None and vb is not None
        seeds = sorted(va, key=canonical_json)
        xs, ys = [va[s] for s in seeds], [vb[s] for s in seeds]
    else:
        xs, ys = a.values(metric), b.values(metric)
    if not xs or not ys:
        return ComparisonRow(
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
    return ComparisonRow(a.problem_label, a.method_label, b.method_label, comparison, paired, note)


def _comparisons(
    problems: Mapping[str, Sequence[MethodGroup]], metric: str, alpha: float
) -> list[ComparisonRow]:
    rows = []
    for groups in problems.values():
        for a in groups:
            if a.is_autobalance:
                rows += [
                    compare_groups(a, b, metric, alpha) for b in groups if not b.is_autobalance
                ]
    return rows


def extra_metrics(runs: Sequence[RunRecord], metrics: Sequence[str]) -> list[str]:
    """Keys such as ``rel_l2_a`` (a metric name, ``_``, a suffix) with a number in some run."""
    found = {
        key
        for run in runs
        if run.status == "ok"
        for key, value in run.metrics.items()
        if key not in metrics
        and any(key.startswith(f"{m}_") for m in metrics)
        and math.isfinite(number(value))
    }
    return sorted(found)


# ------------------------------------------------------------------------------ flagged runs
@dataclass(frozen=True)
class FlaggedRun:
    """A successful run whose ``metrics.json`` lacks a tabulated metric, or holds one that is
    null, not a number or not finite: it is left out of that metric's statistics, and listed."""

    run: RunRecord
    issues: tuple[str, ...]


def metric_issues(run: RunRecord, metrics: Sequence[str]) -> list[str]:
    """What is wrong with ``run``'s values of ``metrics``: ``"rel_l2 is 'abc', not a number"``,
    ``"rel_l1 missing"``, ``"mse is null"``, ``"linf is nan"``; empty when every one is fine."""
    issues = []
    for m in metrics:
        if m not in run.metrics:
            issues.append(f"{m} missing")
            continue
        value = run.metrics[m]
        if value is None:
            issues.append(f"{m} is null")
        elif math.isnan(number(value)) and not isinstance(value, float):
            issues.append(f"{m} is {value!r}, not a number")
        elif not math.isfinite(number(value)):
            issues.append(f"{m} is {value}")
    return issues


def flag_runs(runs: Iterable[RunRecord], metrics: Sequence[str]) -> list[FlaggedRun]:
    """The successful runs with :func:`metric_issues` (failed runs have no errors to report)."""
    flagged = []
    for run in runs:
        if run.status == "ok" and (issues := metric_issues(run, metrics)):
            flagged.append(FlaggedRun(run, tuple(issues)))
    return flagged


# ----------------------------------------------------------------------------------- analysis
@dataclass(frozen=True)
class Criteria:
    """What is tabulated and how methods are judged: the metrics, the ranking metric and α."""

    metrics: tuple[str, ...]
    metric: str
    alpha: float

    @classmethod
    def of(
        cls,
        metrics: Sequence[str] = DEFAULT_METRICS,
        metric: str | None = None,
        alpha: float = 0.05,
    ) -> Criteria:
        """Checked criteria: ``metric`` defaults to ``metrics[0]`` and is put first if missing.

        Raises:
            ReportError: no metric at all, or ``alpha`` outside ``(0, 1)``.
        """
        names = list(dict.fromkeys(metrics))
        if not names and metric is None:
            raise ReportError("give at least one metric")
        metric = metric or names[0]
        if metric not in names:
            names.insert(0, metric)
        if not 0.0 < alpha < 1.0:
            raise ReportError(f"alpha must be in (0, 1), got {alpha}")
        return cls(tuple(names), metric, alpha)


@dataclass
class Analysis:
    """Runs grouped, ranked and compared (:func:`analyze`).

    Attributes:
        runs: every run record (incomplete ones included).
        metrics: the metrics tabulated (those some run records, and the ranking metric).
        extras: further error keys found (``rel_l2_a``, ...).
        metric, alpha: the ranking metric and the significance level.
        problems: problem label → its method groups, ranked.
        comparisons: every AutoBalance-versus-baseline row.
        flagged: the successful runs with missing or non-numeric metrics (:func:`flag_runs`).
    """

    runs: list[RunRecord]
    metrics: list[str]
    extras: list[str]
    metric: str
    alpha: float
    problems: dict[str, list[MethodGroup]]
    comparisons: list[ComparisonRow]
    flagged: list[FlaggedRun] = field(default_factory=list)

    def with_status(self, status: str) -> list[RunRecord]:
        """The runs of one status (``"ok"``, ``"failed"``, ``"incomplete"``)."""
        return [r for r in self.runs if r.status == status]


def analyze(runs: Sequence[RunRecord], criteria: Criteria) -> Analysis:
    """Group, rank and compare ``runs`` under ``criteria``; flag the successful runs whose
    tabulated metrics are missing or not numbers (:func:`flag_runs`).

    A default metric that no run records (runs made before it existed) is left out rather than
    shown as a column of n/a; the ranking metric must be recorded by some complete run.

    Raises:
        ReportError: no runs at all, or the ranking metric is in no complete run's
            ``metrics.json``.
    """
    if not runs:
        raise ReportError("no run directories to report (no config.json or metrics.json found)")
    metric = criteria.metric
    complete = [r for r in runs if r.status in COMPLETE_STATUSES]
    if complete and not any(metric in r.metrics for r in complete):
        known = sorted(
            {k for r in complete for k, v in r.metrics.items() if math.isfinite(number(v))}
        )
        raise ReportError(
            f"metric {metric!r} is in no run's metrics.json; numeric keys: {', '.join(known)}"
        )
    metrics = [
        m
        for m in criteria.metrics
        if m == metric or not complete or any(m in r.metrics for r in complete)
    ]
    problems = group_runs(runs)
    for groups in problems.values():
        assign_ranks(groups, metric)
    return Analysis(
        runs=list(runs),
        metrics=metrics,
        extras=extra_metrics(runs, metrics),
        metric=metric,
        alpha=criteria.alpha,
        problems=problems,
        comparisons=_comparisons(problems, metric, criteria.alpha),
        flagged=flag_runs(runs, metrics),
    )
