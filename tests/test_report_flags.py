"""The report never drops a run silently: runs with missing or non-numeric metrics are flagged
in ``report.md`` and on stderr, and a directory without runs is an error."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from autobalance.cli.main import main
from autobalance.experiments.analysis import metric_issues
from autobalance.experiments.report import ReportError, build_report
from autobalance.experiments.runs import RunRecord
from test_report import make_run, read_csv, two_methods

SECTION = "## Runs with missing or non-numeric metrics"


def _edit_metrics(run_dir: Path, **changes: Any) -> None:
    path = run_dir / "metrics.json"
    metrics = json.loads(path.read_text())
    for key, value in changes.items():
        if value is _DROP:
            del metrics[key]
        else:
            metrics[key] = value
    path.write_text(json.dumps(metrics))


_DROP = object()


@pytest.mark.parametrize(
    ("changes", "issue"),
    [
        ({"rel_l2": "abc"}, "rel_l2 is 'abc', not a number"),
        ({"rel_l2": None}, "rel_l2 is null"),
        ({"rel_l2": math.nan}, "rel_l2 is nan"),
        ({"mse": _DROP}, "mse missing"),
        ({"linf": [1.0]}, "linf is [1.0], not a number"),
        ({"rel_l2": True}, "rel_l2 is True, not a number"),
    ],
)
def test_a_run_with_a_bad_metric_is_flagged_in_the_report_and_warned(
    changes: dict[str, Any], issue: str, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    two_methods(runs)
    bad = make_run(runs, "helmholtz/adam/h7", method="adam", seed=7, rel_l2=5.0)
    _edit_metrics(bad, **changes)
    warnings: list[str] = []
    text = build_report(runs, figures=False, warn=warnings.append).read_text()
    section = text.split(SECTION)[1]
    assert "helmholtz/adam/h7" in section and issue in section
    assert "7 ok (1 with missing or non-numeric metrics, listed below)" in text
    assert warnings == [f"helmholtz/adam/h7: {issue} (left out of those statistics)"]
    # The statistics of the flagged metric use the other runs only (seeds 0–2 of adam).
    adam = {r["method_label"]: r for r in read_csv(runs / "results.csv")}["adam"]
    metric = issue.split()[0]
    assert float(adam[f"{metric}_best"]) < 1.0


def test_clean_runs_flag_nothing(tmp_path: Path) -> None:
    two_methods(tmp_path)
    warnings: list[str] = []
    text = build_report(tmp_path, figures=False, warn=warnings.append).read_text()
    assert f"{SECTION}\n\nNone." in text and warnings == []
    assert "6 ok," in text


def test_failed_runs_are_not_flagged_for_their_missing_errors(tmp_path: Path) -> None:
    two_methods(tmp_path)
    failed = make_run(
        tmp_path, "f/1", method="adam", seed=5, rel_l2=1.0, failed={"step": 3, "loss": "residual"}
    )
    _edit_metrics(failed, rel_l2=math.nan)
    text = build_report(tmp_path, figures=False).read_text()
    assert f"{SECTION}\n\nNone." in text


def test_metric_issues_lists_every_problem_of_a_run() -> None:
    run = RunRecord(
        Path("r"), "ok", {}, {"rel_l2": "abc", "mse": None, "linf": math.inf, "rel_l1": 0.1}
    )
    assert metric_issues(run, ["rel_l2", "mse", "linf", "rel_l1", "wall_s"]) == [
        "rel_l2 is 'abc', not a number",
        "mse is null",
        "linf is inf",
        "wall_s missing",
    ]


def test_empty_directory_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(ReportError, match="no run directories under .*empty"):
        build_report(tmp_path / "empty")
    assert not (tmp_path / "empty" / "report.md").exists()
    code = main(["report", str(tmp_path / "empty"), "--no-figures"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: no run directories under")


def test_cli_report_prints_the_flags_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    two_methods(tmp_path)
    _edit_metrics(tmp_path / "helmholtz" / "adam" / "h1", rel_l2="abc")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    code = main(["report", str(tmp_path), "--no-figures"])
    captured = capsys.readouterr()
    assert code == 0 and "report:" in captured.out
    lines = captured.err.splitlines()
    assert (
        "warning: helmholtz/adam/h1: rel_l2 is 'abc', not a number (left out of those "
        "statistics)" in lines
    )
    assert any(line.startswith("warning: broken: incomplete (") for line in lines)
