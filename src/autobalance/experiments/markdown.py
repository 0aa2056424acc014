"""``report.md``: an :class:`~autobalance.experiments.analysis.Analysis` as markdown.

Per problem: an error table (for each metric: mean ± sample standard deviation, median and best
over the successful runs), a table of the other error keys found, a cost table (means), the
AutoBalance-versus-baseline tests, the failed runs and the figures; then the wins / ties / losses
over problems, the incomplete run directories and the successful runs whose metrics are missing
or not numbers (left out of those metrics' statistics).  Numbers: errors ``%.3e``, p-values ``%.3f``
(``%.2e`` below 10⁻³), ``—`` for a missing value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from autobalance.experiments.analysis import (
    AUTOBALANCE_PREFIX,
    COSTS,
    Analysis,
    ComparisonRow,
    FlaggedRun,
    MethodGroup,
    format_value,
    ordered,
)
from autobalance.experiments.figures import DrawnFigure
from autobalance.experiments.runs import RunRecord, relative_path

__all__ = ["markdown_table", "render_markdown", "slug"]


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


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """The lines of a markdown table (``|`` in cells escaped, newlines folded)."""
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def slug(text: str) -> str:
    """``text`` as a file-name stem: runs of other characters than ``A-Za-z0-9._=-`` → ``_``."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_") or "problem"


def _error_table(groups: Sequence[MethodGroup], metrics: Sequence[str]) -> list[str]:
    header = ["rank", "method", "runs ok/failed"]
    for m in metrics:
        header += [f"{m} mean ± std", f"{m} median", f"{m} best"]
    rows = []
    for g in ordered(groups):
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
    return markdown_table(header, rows)


def _cost_table(groups: Sequence[MethodGroup]) -> list[str]:
    present = [c for c in COSTS if any(g.values(c[0]) for g in groups)]
    header = ["method", *(f"{title} (mean)" for _, title, _ in present)]
    rows = [
        [g.method_label, *(_f(g.mean(key), digits) for key, _, digits in present)]
        for g in ordered(groups)
    ]
    return markdown_table(header, rows)


def _comparison_cells(r: ComparisonRow) -> list[Any]:
    c = r.comparison
    if c is None:
        return [r.autobalance, r.baseline, *["—"] * 7, f"n/a ({r.note})"]
    ratio = c.median_a / c.median_b if c.median_b else math.nan
    test = ("Wilcoxon signed-rank (paired)" if r.paired else "Mann–Whitney U") + (
        ", exact" if c.test.exact else ", normal approx."
    )
    n = f"{c.test.n[0]}" if r.paired else f"{c.test.n[0]} vs {c.test.n[1]}"
    outcome = c.outcome if c.outcome != "tie" else "tie (not significant)"
    if r.note:
        outcome += f"; {r.note}"
    welch = _p(c.welch_log.p_value) if c.welch_log is not None else "—"
    medians = (_e(c.median_a), _e(c.median_b), _f(ratio, 3))
    return [r.autobalance, r.baseline, *medians, test, n, _p(c.test.p_value), welch, outcome]


def _comparison_table(rows: Sequence[ComparisonRow]) -> list[str]:
    header = ["AutoBalance", "baseline", "median AB", "median baseline", "ratio", "test", "n"]
    header += ["p", "Welch log p", "outcome"]
    return markdown_table(header, [_comparison_cells(r) for r in rows])


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
            relative_path(r.path, root),
        ]
        for r in failed
    ]
    return markdown_table(["method", "seed", "step", "loss", "message", "run"], rows)


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


def _figure_lines(drawn: Sequence[DrawnFigure], out_dir: Path) -> list[str]:
    lines = []
    for fig in drawn:
        if fig.path is None:
            why = fig.error or "; ".join(f"{k}: {v}" for k, v in fig.skipped.items()) or "no data"
            lines.append(f"- {fig.title}: not drawn ({why})")
            continue
        lines += [f"**{fig.title}**", "", f"![{fig.title}]({relative_path(fig.path, out_dir)})", ""]
        lines += [f"- {label}: left out ({why})" for label, why in fig.skipped.items()]
    return lines


def _summary_lines(rows: Sequence[ComparisonRow]) -> list[str]:
    tally: dict[tuple[str, str], list[int]] = {}
    for r in rows:
        if r.comparison is None:
            continue
        counts = tally.setdefault((r.autobalance, r.baseline), [0, 0, 0])
        counts[("win", "tie", "loss").index(r.comparison.outcome)] += 1
    if not tally:
        return ["No AutoBalance-versus-baseline comparison (need both on one problem)."]
    body = [[a, b, *c] for (a, b), c in sorted(tally.items())]
    return markdown_table(["AutoBalance", "baseline", "wins", "ties", "losses"], body)


def _incomplete_lines(incomplete: Sequence[RunRecord], root: Path) -> list[str]:
    if not incomplete:
        return ["None."]
    rows = [
        [
            relative_path(r.path, root),
            r.recorded("problem", "?"),
            r.recorded("method", "?"),
            r.reason,
        ]
        for r in incomplete
    ]
    return markdown_table(["run", "problem", "method", "reason"], rows)


def _flagged_lines(flagged: Sequence[FlaggedRun], root: Path) -> list[str]:
    if not flagged:
        return ["None."]
    rows = [
        [
            relative_path(f.run.path, root),
            f.run.problem_label or f.run.recorded("problem", "?"),
            f.run.method_label or f.run.recorded("method", "?"),
            f.run.seed,
            "; ".join(f.issues),
        ]
        for f in flagged
    ]
    return markdown_table(["run", "problem", "method", "seed", "left out because"], rows)


def _problem_lines(
    analysis: Analysis,
    problem_label: str,
    root: Path,
    out_dir: Path,
    drawn: Sequence[DrawnFigure] | None,
) -> list[str]:
    groups = analysis.problems[problem_label]
    first = groups[0]
    lines = [
        f"## Problem: {problem_label}",
        "",
        f"Parameters of `{first.problem}`: " + (format_value(first.problem_params) or "defaults"),
        "",
        "### Errors",
        "",
        *_error_table(groups, analysis.metrics),
        "",
    ]
    extras = [m for m in analysis.extras if any(g.values(m) for g in groups)]
    if extras:
        lines += ["### Other error metrics", "", *_error_table(groups, extras), ""]
    lines += ["### Cost", "", *_cost_table(groups), ""]
    mine = [r for r in analysis.comparisons if r.problem == problem_label]
    lines += ["### AutoBalance against the baselines", ""]
    lines += (
        _comparison_table(mine)
        if mine
        else ["No comparison: AutoBalance and a baseline are not both present."]
    )
    lines += ["", "### Failed runs", "", *_failed_lines(groups, root), ""]
    if drawn is not None:
        lines += ["### Figures", "", *_figure_lines(drawn, out_dir), ""]
    return lines


def render_markdown(
    analysis: Analysis,
    root: Path,
    out_dir: Path,
    figures: Mapping[str, Sequence[DrawnFigure]] | None = None,
) -> str:
    """The text of ``report.md``.

    Args:
        analysis: the runs, grouped, ranked and compared.
        root: the runs directory (run paths are shown relative to it).
        out_dir: where ``report.md`` goes (figure links are relative to it).
        figures: problem label → its drawn figures; None: no figure sections.
    """
    incomplete = analysis.with_status("incomplete")
    flagged_note = (
        f" ({len(analysis.flagged)} with missing or non-numeric metrics, listed below)"
        if analysis.flagged
        else ""
    )
    lines = [
        "# AutoBalance experiment report",
        "",
        f"Runs directory: `{root}` — {len(analysis.runs)} run directories: "
        f"{len(analysis.with_status('ok'))} ok{flagged_note}, "
        f"{len(analysis.with_status('failed'))} failed, "
        f"{len(incomplete)} incomplete; {len(analysis.problems)} problem(s). Ranking and tests on "
        f"`{analysis.metric}`.",
        "",
        *_method_lines(analysis.alpha, analysis.metric),
    ]
    for label in analysis.problems:
        drawn = None if figures is None else figures.get(label, ())
        lines += _problem_lines(analysis, label, root, out_dir, drawn)
    lines += [
        "## Summary: AutoBalance wins / ties / losses over problems",
        "",
        *_summary_lines(analysis.comparisons),
        "",
        "## Incomplete run directories",
        "",
        *_incomplete_lines(incomplete, root),
        "",
        "## Runs with missing or non-numeric metrics",
        "",
        *_flagged_lines(analysis.flagged, root),
        "",
    ]
    return "\n".join(lines)
