"""Merge the compact run tables of several sweeps into one sample per (problem, method, seed).

Sweeps commit their runs as a CSV table (``autobalance report`` writes ``runs.csv``: one row per
run with ``status``, ``problem_label`` or ``problem``, ``method``, ``seed`` and the final metrics;
older hand-made tables carry ``problem, method, seed, rel_l2``).  A study that needs more seeds
than one sweep made (issue 15's evaluation, issue 18's five seeds) reads several tables and keeps
one value per ``(problem, method, seed)``.

A run found in two tables was made twice by the same runner and configuration, which is
deterministic on the CPU, so the two values must agree; some tables keep 6 significant digits,
so *agree* means a relative difference ``≤ 5e-6``.  Every such pair is reported (``reproduced`` or
``DIFFERS``); the later table's values are kept, and the earlier's fill the columns the later
lacks (a wall time, say).  Failed runs (``status`` other than ``ok``) are kept
apart, never averaged, so that a report can show them.

A report labels a problem ``name(k=v, ...)`` when its runs used several parameter sets;
:func:`canonical_problem_label` turns a label whose parameters are all the problem's defaults
back into ``name``, so that such a table merges with tables of default runs.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from autobalance.errors import AutoBalanceError

__all__ = [
    "AGREEMENT",
    "DEFAULT_BUDGET_TABLES",
    "MergedRuns",
    "RunRow",
    "canonical_problem_label",
    "merge_run_tables",
    "read_run_table",
]

#: The committed run tables (paths under ``docs/results``) that hold default-budget runs
#: (15,000 steps, 4×50 tanh MLP, float32, CPU, the runner's schedule), in the order they were made.
DEFAULT_BUDGET_TABLES = (
    "default-budget/runs.csv",
    "burgers-3-seeds/runs.csv",
    "wave-3-seeds/runs.csv",
    "postcombine/default_budget.csv",
    "postcombine-eval/runs.csv",
)

#: Largest relative difference of two records of one run that still counts as reproduced.
AGREEMENT = 5e-6


@dataclass(frozen=True)
class RunRow:
    """One run of a table: its identity, status and the values of the table's numeric columns."""

    problem: str
    method: str
    seed: int
    status: str
    values: dict[str, float]
    source: str


@dataclass
class MergedRuns:
    """Runs merged over tables.

    Attributes:
        ok: ``(problem, method) → seed → RunRow`` of the successful runs.
        failed: the runs whose status is not ``ok`` (a NaN/Inf loss, an error), in table order.
        checks: one line per run found in two tables: ``reproduced`` or ``DIFFERS``; and one
            ``<source>: missing`` line per table that does not exist.
    """

    ok: dict[tuple[str, str], dict[int, RunRow]] = field(default_factory=lambda: defaultdict(dict))
    failed: list[RunRow] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)

    def values(self, problem: str, method: str, key: str = "rel_l2") -> dict[int, float]:
        """``seed → value of key`` of the successful runs of one method on one problem."""
        runs = self.ok.get((problem, method), {})
        return {seed: row.values[key] for seed, row in sorted(runs.items()) if key in row.values}

    @property
    def differing(self) -> list[str]:
        """The checks whose two records of a run disagree."""
        return [c for c in self.checks if c.endswith("DIFFERS")]


def _number(text: str | None) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        return None


def read_run_table(path: Path, *, source: str | None = None) -> list[RunRow]:
    """The rows of one run table (``runs.csv`` of a report, or ``problem, method, seed, ...``).

    The problem is ``problem_label`` where the table has it (it names changed parameters), else
    ``problem``.  Every column that parses as a number becomes a value.  Raises
    :class:`AutoBalanceError` naming the file and the missing columns when a table lacks
    ``method`` or ``seed`` or a problem column.
    """
    name = source or str(path)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or ())
        missing = [c for c in ("method", "seed") if c not in columns]
        if not {"problem", "problem_label"} & columns:
            missing.append("problem")
        if missing:
            raise AutoBalanceError(f"run table {name}: missing column(s) {', '.join(missing)}")
        rows = []
        for record in reader:
            problem = record.get("problem_label") or record.get("problem") or ""
            values = {k: v for k, text in record.items() if (v := _number(text)) is not None}
            values.pop("seed", None)
            rows.append(
                RunRow(
                    problem=problem,
                    method=record["method"],
                    seed=int(record["seed"]),
                    status=record.get("status") or "ok",
                    values=values,
                    source=name,
                )
            )
    return rows


def canonical_problem_label(label: str) -> str:
    """``label`` without the parameters at their problem's default (``name`` if none is left).

    ``helmholtz(a2=4)`` → ``helmholtz``; ``helmholtz(a1=1, a2=2)`` → ``helmholtz(a2=2)``.
    Values compare as a report writes them (``format_value``: 6 significant digits).  Any other
    label (a plain name, an unknown problem or parameter) is returned as is.  A label names only
    the parameters that varied in its report, so the default is today's: a table made before a
    default changed needs the old value added first (``benchmarks/postcombine_evaluation.py``).
    """
    from autobalance import problems  # (the problems import torch; tables alone do not need it)
    from autobalance.experiments.analysis import format_value

    name, _, rest = label.partition("(")
    if not rest.endswith(")") or name not in problems.CATALOG:
        return label
    defaults = problems.CATALOG.parameters(name)
    kept = []
    for item in rest[:-1].split(", "):
        key, _, value = item.partition("=")
        if key not in defaults:
            return label
        if format_value(defaults[key]) != value:
            kept.append(item)
    return f"{name}({', '.join(kept)})" if kept else name


def merge_run_tables(
    root: Path,
    sources: Iterable[str],
    *,
    relabel: Callable[[str], str] | Mapping[str, Callable[[str], str]] | None = None,
) -> MergedRuns:
    """Read ``root / source`` for every source in order and merge them (module docstring).

    ``relabel`` maps each row's problem label first (e.g. :func:`canonical_problem_label`); a
    mapping gives each source its own (a source it does not name is left as it is).
    """
    merged = MergedRuns()
    for source in sources:
        path = root / source
        if not path.is_file():
            merged.checks.append(f"{source}: missing")
            continue
        label = relabel.get(source) if isinstance(relabel, Mapping) else relabel
        for row in read_run_table(path, source=source):
            if label is not None:
                row = replace(row, problem=label(row.problem))
            if row.status != "ok" or "rel_l2" not in row.values:
                merged.failed.append(row)
                continue
            seen = merged.ok[(row.problem, row.method)].get(row.seed)
            if seen is not None:
                a, b = seen.values["rel_l2"], row.values["rel_l2"]
                agree = abs(a - b) <= AGREEMENT * max(abs(a), abs(b))
                merged.checks.append(
                    f"{row.problem}/{row.method}/seed {row.seed}: {a:.6g} ({seen.source}) vs "
                    f"{b:.6g} ({source}): {'reproduced' if agree else 'DIFFERS'}"
                )
                row = replace(row, values={**seen.values, **row.values})
            merged.ok[(row.problem, row.method)][row.seed] = row
    return merged
