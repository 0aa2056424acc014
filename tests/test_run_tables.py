"""``autobalance.experiments.run_tables``: tables merged, reproductions checked, failures kept."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from autobalance.errors import AutoBalanceError
from autobalance.experiments.run_tables import (
    canonical_problem_label,
    merge_run_tables,
    read_run_table,
)


def _write(path: Path, header: list[str], rows: list[list[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def test_a_report_table_and_a_hand_made_table_merge_by_problem_method_seed(tmp_path) -> None:
    header = ["path", "status", "problem_label", "problem", "method", "seed", "rel_l2", "wall_s"]
    _write(
        tmp_path / "a/runs.csv",
        header,
        [
            ["r0", "ok", "toy(a=2)", "toy", "adam", 0, 0.5, 10.0],
            ["r1", "ok", "toy(a=2)", "toy", "adam", 1, 0.25, 12.0],
            ["r2", "failed", "toy(a=2)", "toy", "sgd", 0, "", 1.0],
        ],
    )
    _write(
        tmp_path / "b.csv",
        ["problem", "method", "seed", "steps", "rel_l2"],
        [["toy(a=2)", "adam", 1, 15000, 0.2500001], ["toy(a=2)", "adam", 2, 15000, 0.125]],
    )
    merged = merge_run_tables(tmp_path, ["a/runs.csv", "b.csv", "absent.csv"])
    # the problem label (which names changed parameters) is the problem
    assert merged.values("toy(a=2)", "adam") == {0: 0.5, 1: 0.2500001, 2: 0.125}
    assert merged.values("toy(a=2)", "adam", "wall_s") == {0: 10.0, 1: 12.0}  # b.csv has none
    assert [(r.method, r.status) for r in merged.failed] == [("sgd", "failed")]
    assert merged.checks[0].endswith("reproduced") and "seed 1" in merged.checks[0]
    assert merged.checks[-1] == "absent.csv: missing"
    assert merged.differing == []


def test_a_run_that_does_not_reproduce_is_reported_and_the_later_value_kept(tmp_path) -> None:
    header = ["problem", "method", "seed", "rel_l2"]
    _write(tmp_path / "a.csv", header, [["toy", "adam", 0, 0.5]])
    _write(tmp_path / "b.csv", header, [["toy", "adam", 0, 0.5001]])  # 2e-4 relative
    merged = merge_run_tables(tmp_path, ["a.csv", "b.csv"])
    assert merged.differing and "DIFFERS" in merged.differing[0]
    assert merged.values("toy", "adam") == {0: 0.5001}


def test_a_table_without_a_seed_column_is_refused_by_name(tmp_path) -> None:
    _write(tmp_path / "bad.csv", ["problem", "method", "rel_l2"], [["toy", "adam", 0.5]])
    with pytest.raises(AutoBalanceError, match=r"bad\.csv.*seed"):
        read_run_table(tmp_path / "bad.csv")


def test_labels_of_default_parameters_become_the_problem_name() -> None:
    assert canonical_problem_label("helmholtz(a2=4)") == "helmholtz"  # a2 = 4 is the default
    assert canonical_problem_label("helmholtz(a1=1, a2=4)") == "helmholtz"
    assert canonical_problem_label("burgers(nu=0.0031831)") == "burgers"  # 0.01/π as written
    assert canonical_problem_label("helmholtz(a2=2)") == "helmholtz(a2=2)"  # changed: kept
    assert canonical_problem_label("helmholtz(a1=1, a2=2)") == "helmholtz(a2=2)"  # a1 default
    assert canonical_problem_label("helmholtz(width=4)") == "helmholtz(width=4)"  # not a param
    assert canonical_problem_label("toy(a=2)") == "toy(a=2)"  # not a problem
    assert canonical_problem_label("wave") == "wave"


def test_relabelled_tables_merge_default_runs_across_labels(tmp_path) -> None:
    header = ["problem", "method", "seed", "rel_l2"]
    _write(tmp_path / "a.csv", header, [["helmholtz", "adam", 0, 0.5]])
    _write(
        tmp_path / "b.csv",
        header,
        [["helmholtz(a2=4)", "adam", 0, 0.25], ["helmholtz(a2=2)", "adam", 0, 0.125]],
    )
    plain = merge_run_tables(tmp_path, ["a.csv", "b.csv"])
    assert plain.values("helmholtz", "adam") == {0: 0.5} and not plain.checks
    merged = merge_run_tables(tmp_path, ["a.csv", "b.csv"], relabel=canonical_problem_label)
    assert merged.values("helmholtz", "adam") == {0: 0.25}  # the later record wins
    assert merged.values("helmholtz(a2=2)", "adam") == {0: 0.125}
    assert merged.differing and "helmholtz/adam/seed 0" in merged.differing[0]
    # one relabelling per source: a.csv's labels kept, b.csv's made canonical
    per_source = merge_run_tables(
        tmp_path, ["a.csv", "b.csv"], relabel={"b.csv": canonical_problem_label}
    )
    assert per_source.values("helmholtz", "adam") == {0: 0.25}
    assert per_source.values("helmholtz(a2=2)", "adam") == {0: 0.125}
    kept = merge_run_tables(tmp_path, ["b.csv"], relabel={"a.csv": canonical_problem_label})
    assert kept.values("helmholtz(a2=4)", "adam") == {0: 0.25}
