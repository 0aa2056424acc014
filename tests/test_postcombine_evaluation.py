"""``benchmarks/postcombine_evaluation.py``: sources merged, reproductions checked, target ratio."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from benchmark_modules import benchmark_fixture

evaluation = benchmark_fixture("postcombine_evaluation")


def _write(path: Path, rows: list[tuple[str, str, int, float]], *, runs_table: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if runs_table:
            writer.writerow(["path", "status", "problem_label", "method", "seed", "rel_l2"])
            writer.writerows([("x", "ok", p, m, s, v) for p, m, s, v in rows])
            writer.writerow(("y", "failed", "toy", "adam", 9, ""))  # skipped: not ok
        else:
            writer.writerow(["problem", "method", "seed", "steps", "rel_l2"])
            writer.writerows([(p, m, s, 15000, v) for p, m, s, v in rows])


def test_sources_are_merged_later_tables_win_and_disagreements_are_listed(
    evaluation, tmp_path
) -> None:
    _write(
        tmp_path / "default-budget/runs.csv",
        [("toy", "adam", 0, 0.2), ("toy", "autobalance", 0, 0.1), ("toy", "adam", 4, 9.0)],
        runs_table=True,
    )
    _write(
        tmp_path / "postcombine-eval/runs.csv",
        [
            ("toy", "adam", 0, 0.2000001),  # reproduced within 5e-6
            ("toy", "autobalance", 1, 0.3),
            ("toy", "autobalance-consensus-mean", 0, 0.11),
        ],
        runs_table=True,
    )
    _write(
        tmp_path / "postcombine-balanced/runs.csv",
        [
            ("toy", "autobalance", 0, 0.12),  # a re-run that differs: this record wins
            ("toy", "adam", 1, 0.4),
            ("toy", "autobalance-balanced-consensus", 0, 0.1),
            ("toy", "autobalance-balanced-consensus", 1, 0.2),
        ],
        runs_table=True,
    )
    sota = tmp_path / "sota/runs.csv"
    sota.parent.mkdir(parents=True)
    sota.write_text(
        "path,status,problem_label,method,seed,rel_l2,phase_iterations\n"
        "a,ok,toy,adam,2,0.5,0\n"  # a default run of the sota sweep: read
        "b,ok,toy,adam,3,0.001,1500\n",  # a preset run (it has phases): not read
        encoding="utf-8",
    )
    errors, checks = evaluation.collect(tmp_path)
    assert errors[("toy", "adam")] == {0: 0.2000001, 1: 0.4, 2: 0.5}  # seed 4: not one of 0-2
    assert errors[("toy", "autobalance")] == {0: 0.12, 1: 0.3}
    assert sum(c.endswith("reproduced") for c in checks) == 1
    assert any("toy/autobalance/seed 0" in c and "DIFFERS" in c for c in checks)
    assert any(c.endswith("missing") for c in checks)  # the other sources do not exist here

    lines, records = evaluation.table(errors, "autobalance-balanced-consensus")
    # new mean 0.15; min(Adam 0.3666667, paper 0.21) = 0.21 -> 0.714, which meets <= 1.1
    assert records[0]["problem"] == "toy"
    assert float(records[0]["ratio_to_min_adam_paper"]) == pytest.approx(0.15 / 0.21, rel=1e-3)
    assert records[0]["meets"] == "yes"
    assert "| toy |" in lines[2] and "0.71" in lines[2]
    assert lines[0].startswith("| problem | `autobalance-balanced-consensus` |")
    # the previous round's rule evaluated the same way: 0.11 / 0.21 = 0.52
    _, previous = evaluation.table(errors, "autobalance-consensus-mean")
    assert float(previous[0]["ratio_to_min_adam_paper"]) == pytest.approx(0.11 / 0.21, rel=1e-3)


def test_summary_counts_outcomes_and_compares_helmholtz_with_the_best(evaluation) -> None:
    errors = {
        ("helmholtz", "autobalance-balanced-consensus"): {0: 0.03, 1: 0.03, 2: 0.03},
        ("helmholtz", "adam"): {0: 0.3, 1: 0.3, 2: 0.3},
        ("helmholtz", "autobalance"): {0: 0.031, 1: 0.031, 2: 0.031},
        ("helmholtz", "imtl-g"): {0: 0.01, 1: 0.01, 2: 0.01},
        ("helmholtz", "lucky"): {0: 0.0001},  # one seed only: not a candidate for the best
    }
    new = "autobalance-balanced-consensus"
    lines = evaluation.summary(errors, new)
    assert lines[0].startswith("- against `autobalance-balanced-anneal`: 0 wins")
    assert lines[1].startswith("- against `autobalance-balanced-concede`: 0 wins")
    assert "- against `adam`: 1 wins, 0 ties, 0 losses" in lines[3]
    assert "- against `autobalance`: 0 wins, 1 ties, 0 losses" in lines[4]
    assert "- against `multiadam`: 0 wins, 0 ties, 0 losses (ratio rule; 1 problems" in lines[5]
    assert lines[-1].startswith("- Helmholtz: the best method over seeds 0-2 is `imtl-g`")
    assert "3.00× it, which misses" in lines[-1]
    errors[("helmholtz", "imtl-g")] = {0: 0.02, 1: 0.02, 2: 0.02}
    assert "1.50× it, which meets" in evaluation.summary(errors, new)[-1]
    assert evaluation.best_method({}, "helmholtz")[0] == ""


def test_ratio_outcomes_use_the_margin_both_ways(evaluation) -> None:
    new = {0: 1.0, 1: 1.0}
    assert evaluation._outcome(new, {0: 1.2, 1: 1.2})[0] == "win"  # 1/1.2 < 1/1.1
    assert evaluation._outcome(new, {0: 1.05, 1: 1.05})[0] == "tie"
    assert evaluation._outcome(new, {0: 0.8, 1: 0.8})[0] == "loss"  # 1.25 > 1.1
    assert evaluation._outcome(new, {}) == ("–", "–")
    # two shared seeds: the paired test runs, and with n = 2 it cannot be significant
    assert evaluation._outcome(new, {0: 2.0, 1: 2.0})[1].startswith("tie")


def test_round_7s_rule_is_the_default_and_is_compared_with_round_6s(evaluation) -> None:
    errors = {
        ("toy", "autobalance-balanced-anneal"): {0: 0.1, 1: 0.1, 2: 0.1},
        ("toy", "autobalance-balanced-concede"): {0: 0.3, 1: 0.3, 2: 0.3},
        ("toy", "adam"): {0: 0.2, 1: 0.2, 2: 0.2},
        ("toy", "autobalance"): {0: 0.4, 1: 0.4, 2: 0.4},
    }
    lines, records = evaluation.table(errors)
    assert lines[0].startswith(
        "| problem | `autobalance-balanced-anneal` | `autobalance-balanced-concede` |"
    )
    assert float(records[0]["ratio_to_min_adam_paper"]) == pytest.approx(0.5)
    summary = evaluation.summary(errors)
    assert summary[0].startswith("- against `autobalance-balanced-concede`: 1 wins, 0 ties")


def _write_report_rows(path: Path, rows: str) -> None:
    """A report's runs.csv with the columns the evaluation reads, ``rows`` below its header."""
    path.parent.mkdir(parents=True)
    header = "path,status,problem_label,method_label,method,seed,rel_l2\n"
    path.write_text(header + rows, encoding="utf-8")


def test_rounds_6_and_7_are_read_by_method_label_and_their_screen_runs_are_the_rule(
    evaluation, tmp_path
) -> None:
    """The screens ran each rule as ``autobalance-balanced-consensus`` + ``combine=``."""
    _write_report_rows(
        tmp_path / evaluation.ROUND6,
        "a,ok,burgers(nu=0.0031831),autobalance-balanced-consensus(combine=balanced-concede),"
        "autobalance-balanced-consensus,0,0.014\n"
        "b,ok,burgers(nu=0.0063662),autobalance-balanced-concede,autobalance-balanced-concede,0,0.006\n"
        "c,ok,reaction-diffusion(rho=5),autobalance-balanced-concede,autobalance-balanced-concede,1,0.004\n"
        "d,failed,wave,autobalance-balanced-concede,autobalance-balanced-concede,0,\n",
    )
    _write(
        tmp_path / "postcombine-balanced/runs.csv",
        [("burgers", "autobalance-balanced-consensus", 0, 0.0186)],
        runs_table=True,
    )
    errors, checks = evaluation.collect(tmp_path)
    assert errors[("burgers", "autobalance-balanced-concede")] == {0: 0.014}
    assert errors[("burgers(nu=0.0063662)", "autobalance-balanced-concede")] == {0: 0.006}
    # a bare reaction-diffusion label there is today's problem (both periodicity conditions)
    assert errors[("reaction-diffusion", "autobalance-balanced-concede")] == {1: 0.004}
    assert errors[("burgers", "autobalance-balanced-consensus")] == {0: 0.0186}  # not replaced
    assert ("wave", "autobalance-balanced-concede") not in errors
    assert not any("DIFFERS" in c for c in checks)
    assert "postcombine-round7/runs.csv: missing" in checks
    # round 7's report the same way, its screen runs its rule
    _write_report_rows(
        tmp_path / evaluation.ROUND7,
        "a,ok,helmholtz,"
        '"autobalance-balanced-consensus(combine=balanced-persistent:beta=0.99,warm_start=true)",'
        "autobalance-balanced-consensus,2,0.0116\n"
        "b,ok,helmholtz,autobalance-balanced-consensus(combine=balanced-persistent),"
        "autobalance-balanced-consensus,2,0.0116\n",
    )
    errors, checks = evaluation.collect(tmp_path)
    assert errors[("helmholtz", "autobalance-balanced-anneal")] == {2: 0.0116}
    # round 7's first candidate keeps its label: it is not the chosen rule
    assert ("helmholtz", "autobalance-balanced-consensus(combine=balanced-persistent)") in errors
    assert errors[("burgers", "autobalance-balanced-concede")] == {0: 0.014}
    assert "postcombine-round7/runs.csv: missing" not in checks


def test_old_reaction_diffusion_rows_get_the_old_boundary_loss(evaluation, tmp_path) -> None:
    """Rows before round 5 had u periodic only (the default until 2026-12-01); round 5 names it."""
    label = evaluation.problem_label
    assert label("reaction-diffusion") == "reaction-diffusion(boundary_derivative=False)"
    assert label("reaction-diffusion(rho=5)") == "reaction-diffusion(boundary_derivative=False)"
    assert (
        label("reaction-diffusion(rho=3)") == "reaction-diffusion(boundary_derivative=False, rho=3)"
    )
    assert label("reaction-diffusion(boundary_derivative=True, rho=5)") == "reaction-diffusion"
    assert label("reaction-diffusion(boundary_derivative=False, rho=5)") == label(
        "reaction-diffusion"
    )
    assert label("helmholtz(a2=4)") == "helmholtz"
    _write(
        tmp_path / "default-budget/runs.csv",
        [("reaction-diffusion", "adam", 0, 0.09)],
        runs_table=True,
    )
    _write(
        tmp_path / "postcombine-round5/runs.csv",
        [
            ("reaction-diffusion(boundary_derivative=True, rho=5)", "adam", 0, 0.002),
            ("reaction-diffusion(boundary_derivative=False, rho=5)", "adam", 0, 0.09),
        ],
        runs_table=True,
    )
    errors, checks = evaluation.collect(tmp_path)
    assert errors[("reaction-diffusion", "adam")] == {0: 0.002}
    assert errors[("reaction-diffusion(boundary_derivative=False)", "adam")] == {0: 0.09}
    assert any("boundary_derivative=False)/adam/seed 0" in c and "reproduced" in c for c in checks)
