"""The report: fake run directories with chosen numbers, one tiny real run, the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from autobalance.cli.main import main
from autobalance.experiments import RunConfig, train
from autobalance.experiments.curves import error_curves_figure
from autobalance.experiments.report import ReportError, build_report, discover_runs
from autobalance.experiments.runs import read_table

HELMHOLTZ = {"a1": 1.0, "a2": 1.0, "k": 1.0, "n_residual": 64, "n_boundary": 16, "n_eval": 21}


def make_run(
    root: Path,
    rel: str,
    *,
    method: str,
    seed: int,
    rel_l2: float,
    method_params: dict[str, Any] | None = None,
    problem_params: dict[str, Any] | None = None,
    lr: float = 1e-3,
    failed: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """A run directory as the runner writes it, with chosen final errors and short curves."""
    out = root / rel
    out.mkdir(parents=True)
    config = RunConfig(
        problem="helmholtz",
        problem_params=dict(problem_params or HELMHOLTZ),
        net_params={"width": 8, "depth": 1},
        method=method,
        method_params=dict(method_params or {}),
        lr=lr,
        steps=100,
        seed=seed,
    ).to_dict()
    (out / "config.json").write_text(json.dumps(config))
    metrics: dict[str, Any] = {
        "status": "failed" if failed else "ok",
        "problem": "helmholtz",
        "method": method,
        "seed": seed,
        "rel_l2": rel_l2,
        "mse": rel_l2**2,
        "linf": 2 * rel_l2,
        "wall_s": 1.0 + seed,
        "step_ms": 10.0,
        "backward_passes": 200 if method.startswith("autobalance") else 100,
        "peak_rss_mb": 300.0,
        "n_params": 33,
    }
    if failed:
        metrics["error"] = failed
    metrics.update(extra or {})
    (out / "metrics.json").write_text(json.dumps(metrics))
    with open(out / "eval.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["step", "wall_s", "rel_l2", "mse", "linf"])
        for step, err in ((0, 1.0), (50, (1.0 + rel_l2) / 2), (100, rel_l2)):
            w.writerow([step, step / 100 * (1 + seed), err, err**2, 2 * err])
    with open(out / "history.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["step", "lr", "total", "residual", "boundary", "residual_grad_norm", "skipped"])
        for step in (1, 50, 100):
            w.writerow([step, 1e-3, 3.0 / step, 2.0 / step, 1.0 / step, 0.5, 0])
    return out


def two_methods(root: Path, n_seeds: int = 3) -> None:
    """adam: rel_l2 = 1e-2·(s+1); autobalance(base=adam): 1e-3·(s+1); layouts of any depth."""
    for s in range(n_seeds):
        make_run(root, f"helmholtz/adam/h{s}", method="adam", seed=s, rel_l2=1e-2 * (s + 1))
        make_run(
            root,
            f"deep/er/ab/seed{s}",
            method="autobalance",
            method_params={"base": "adam"},
            seed=s,
            rel_l2=1e-3 * (s + 1),
        )


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_tables_ranks_and_underpowered_tie(tmp_path: Path) -> None:
    two_methods(tmp_path / "runs")
    report = build_report(tmp_path / "runs", tmp_path / "out", figures=False)
    assert report == tmp_path / "out" / "report.md"
    rows = {r["method_label"]: r for r in read_csv(tmp_path / "out" / "results.csv")}
    assert set(rows) == {"adam", "autobalance(base=adam)"}
    ab, adam = rows["autobalance(base=adam)"], rows["adam"]
    assert (ab["rank"], adam["rank"]) == ("1", "2")
    assert (ab["n_runs"], ab["n_ok"], ab["n_failed"], ab["seeds"]) == ("3", "3", "0", "0 1 2")
    assert float(ab["rel_l2_mean"]) == pytest.approx(2e-3)
    assert float(ab["rel_l2_std"]) == pytest.approx(1e-3)
    assert float(ab["rel_l2_median"]) == pytest.approx(2e-3)
    assert float(ab["rel_l2_best"]) == pytest.approx(1e-3)
    assert float(adam["linf_worst"]) == pytest.approx(6e-2)
    assert float(ab["backward_passes_mean"]) == 200
    # Same seeds: paired Wilcoxon, 3 pairs → p = 0.25 at best: a tie, flagged underpowered.
    (cmp,) = read_csv(tmp_path / "out" / "comparisons.csv")
    assert (cmp["autobalance"], cmp["baseline"], cmp["test"]) == (
        "autobalance(base=adam)",
        "adam",
        "wilcoxon",
    )
    assert float(cmp["p_value"]) == pytest.approx(0.25)
    assert cmp["outcome"] == "tie"
    text = report.read_text()
    assert (
        "| 1 | autobalance(base=adam) | 3/0 | 2.000e-03 ± 1.0e-03 | 2.000e-03 | 1.000e-03 |" in text
    )
    assert "tie (not significant); underpowered" in text
    assert "| autobalance(base=adam) | adam | 0 | 1 | 0 |" in text  # summary W/T/L
    assert "## Incomplete run directories\n\nNone." in text


def test_six_seeds_win_and_unpaired_test(tmp_path: Path) -> None:
    two_methods(tmp_path / "runs", n_seeds=6)
    build_report(tmp_path / "runs", figures=False)
    (cmp,) = read_csv(tmp_path / "runs" / "comparisons.csv")
    assert cmp["outcome"] == "win"
    assert float(cmp["p_value"]) == pytest.approx(2 / 64)
    # Drop one adam seed: seeds differ, so the unpaired Mann–Whitney test decides.
    for f in (tmp_path / "runs" / "helmholtz" / "adam" / "h5").iterdir():
        f.unlink()
    (tmp_path / "runs" / "helmholtz" / "adam" / "h5").rmdir()
    build_report(tmp_path / "runs", figures=False)
    (cmp,) = read_csv(tmp_path / "runs" / "comparisons.csv")
    assert (cmp["test"], cmp["paired"], cmp["outcome"]) == ("mann-whitney", "0", "win")


def test_failed_and_incomplete_runs_are_listed_not_averaged(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    two_methods(runs)
    make_run(
        runs,
        "helmholtz/adam/h9",
        method="adam",
        seed=9,
        rel_l2=1e6,
        failed={"step": 37, "loss": "residual", "message": "loss 'residual' is nan"},
    )
    bad = runs / "broken"
    bad.mkdir()
    (bad / "config.json").write_text("{}")
    (bad / "metrics.json").write_text('{"status": "ok", "rel_l2": ')  # half written
    running = runs / "helmholtz" / "running"
    running.mkdir()
    (running / "config.json").write_text(json.dumps(RunConfig(problem="helmholtz").to_dict()))
    (runs / "listy").mkdir()
    (runs / "listy" / "metrics.json").write_text("[1, 2]")
    text = build_report(runs, figures=False).read_text()
    rows = {r["method_label"]: r for r in read_csv(runs / "results.csv")}
    assert (rows["adam"]["n_runs"], rows["adam"]["n_ok"], rows["adam"]["n_failed"]) == (
        "4",
        "3",
        "1",
    )
    assert float(rows["adam"]["rel_l2_mean"]) == pytest.approx(2e-2)  # the 1e6 is left out
    assert "| adam | 9 | 37 | residual | loss 'residual' is nan | helmholtz/adam/h9 |" in text
    assert "6 ok, 1 failed, 3 incomplete" in text
    incomplete = text.split("## Incomplete run directories")[1]
    assert "broken" in incomplete and "not valid JSON" in incomplete
    assert "helmholtz/running" in incomplete and "metrics.json missing" in incomplete
    assert "listy" in incomplete and "JSON object" in incomplete
    statuses = {r["path"]: r["status"] for r in read_csv(runs / "runs.csv")}
    assert statuses["broken"] == statuses["listy"] == "incomplete"
    assert statuses["helmholtz/adam/h9"] == "failed"


def test_grouping_by_problem_params_and_varying_settings(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for s in range(2):
        make_run(runs, f"a/{s}", method="adam", seed=s, rel_l2=0.1)
        make_run(runs, f"b/{s}", method="adam", seed=s, rel_l2=0.2, lr=1e-2)
        make_run(
            runs,
            f"c/{s}",
            method="adam",
            seed=s,
            rel_l2=0.3,
            problem_params={**HELMHOLTZ, "a2": 4.0},
            extra={"rel_l2_a": 0.5 + s},
        )
        make_run(runs, f"d/{s}", method="adam", seed=s, rel_l2=0.4, extra={"label": "tuned"})
    text = build_report(runs, figures=False).read_text()
    assert "## Problem: helmholtz(a2=1)" in text and "## Problem: helmholtz(a2=4)" in text
    labels = {(r["problem_label"], r["method_label"]) for r in read_csv(runs / "results.csv")}
    assert labels == {
        ("helmholtz(a2=1)", "adam(lr=0.001)"),
        ("helmholtz(a2=1)", "adam(lr=0.01)"),
        ("helmholtz(a2=4)", "adam"),
        ("helmholtz(a2=1)", "tuned"),
    }
    assert "No comparison" in text
    # Extra error keys of inverse problems get their own table and columns.
    assert "### Other error metrics" in text and "rel_l2_a mean ± std" in text
    (row,) = [r for r in read_csv(runs / "results.csv") if r["rel_l2_a_mean"]]
    assert float(row["rel_l2_a_mean"]) == pytest.approx(1.0)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="does not exist"):
        build_report(tmp_path / "nope")
    two_methods(tmp_path)
    with pytest.raises(ReportError, match="'rel_l3' is in no run"):
        build_report(tmp_path, metric="rel_l3")
    with pytest.raises(ReportError, match="alpha"):
        build_report(tmp_path, alpha=0.0)
    assert discover_runs(tmp_path / "deep")[0].path.name == "seed0"


def test_figures_from_fake_runs(tmp_path: Path) -> None:
    two_methods(tmp_path / "runs")
    text = build_report(tmp_path / "runs", tmp_path / "out").read_text()
    fig = tmp_path / "out" / "figures"
    for name in ("error_vs_step", "error_vs_time", "losses"):
        assert (fig / f"helmholtz_{name}.png").stat().st_size > 1000
        assert f"](figures/helmholtz_{name}.png)" in text
    # No checkpoints in fake runs: the solution panel is skipped with the reason.
    assert not (fig / "helmholtz_solutions.png").exists()
    assert "solutions (median-seed run of each method): not drawn" in text
    assert "checkpoint.pt does not exist" in text
    assert error_curves_figure({"x": [tmp_path]}) is None
    table = read_table(tmp_path / "runs" / "helmholtz" / "adam" / "h0" / "eval.csv")
    assert table["rel_l2"].tolist() == pytest.approx([1.0, 0.505, 0.01])


def test_real_run_and_cli_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.set_num_threads(1)
    runs = tmp_path / "runs"
    for method in ("adam", "autobalance"):
        config = RunConfig(
            problem="helmholtz",
            problem_params={"n_residual": 64, "n_boundary": 16, "n_eval": 21},
            net_params={"width": 8, "depth": 1},
            method=method,
            steps=20,
            eval_every=10,
            log_every=5,
            device="cpu",
        )
        train(config, runs / method / "0", progress=False)
    code = main(["report", str(runs), "--out", str(tmp_path / "rep"), "--metric", "rel_l2"])
    assert code == 0
    assert "report.md" in capsys.readouterr().out
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "![solutions (median-seed run of each method)](figures/helmholtz_solutions.png)" in text
    assert (tmp_path / "rep" / "figures" / "helmholtz_solutions.png").stat().st_size > 1000
    assert "| autobalance | adam |" in text
    assert main(["report", str(runs), "--metric", "nope", "--no-figures"]) == 2
    assert "'nope' is in no run" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2


def test_solution_panels_rebuild_the_model_as_the_runner_does(tmp_path: Path) -> None:
    """Variants wrapping the network and inputs named in net_params: the same prediction."""
    from autobalance.experiments.runner import errors
    from autobalance.experiments.solutions import predict_run, solution_panels_figure

    torch.set_num_threads(1)
    config = RunConfig(
        problem="helmholtz",
        problem_params={"n_residual": 64, "n_boundary": 16, "n_eval": 21},
        net_params={"width": 8, "depth": 1, "periodic": {"x": 2.0}},
        variants=[{"name": "hard_constraint"}],
        method="adam",
        steps=5,
        eval_every=5,
        device="cpu",
    )
    metrics = train(config, tmp_path / "run", progress=False)
    _, _, reference, prediction = predict_run(tmp_path / "run")
    rebuilt = errors(torch.from_numpy(prediction), torch.from_numpy(reference))
    assert rebuilt["rel_l2"] == pytest.approx(metrics["rel_l2"], rel=1e-5)
    figure, skipped = solution_panels_figure({"adam": tmp_path / "run"})
    assert figure is not None and not skipped


def test_compare_table_groups_and_labels_runs_as_the_report(tmp_path: Path) -> None:
    """``compare``/``bench`` print the report's groups: same labels, same statistics."""
    from autobalance.cli.sweeps import summary_table
    from autobalance.experiments.analysis import group_runs

    runs = tmp_path / "runs"
    two_methods(runs)
    make_run(runs, "x/f", method="adam", seed=7, rel_l2=1.0, failed={"step": 5, "loss": "boundary"})
    table = summary_table(group_runs(discover_runs(runs)))
    lines = table.splitlines()
    assert lines[0] == "helmholtz (mean ± std over seeds; failed runs excluded)"
    rows = {line.split("  ")[0]: line.split() for line in lines[3:5]}
    assert set(rows) == {
        r["method_label"]
        for r in read_csv(build_report(runs, figures=False).parent / "results.csv")
    }
    assert rows["adam"][1:4] == ["3/4", "2.00e-02", "±"] and rows["adam"][4] == "1.0e-02"
    assert rows["autobalance(base=adam)"][1:5] == ["3/3", "2.00e-03", "±", "1.0e-03"]
    assert lines[-1] == "  failed: f at step 5 (loss 'boundary')"


def test_competition_ranks_and_criteria() -> None:
    from autobalance.experiments.analysis import Criteria, MethodGroup, assign_ranks
    from autobalance.experiments.runs import RunRecord

    def group(label: str, *values: float) -> MethodGroup:
        runs = [RunRecord(Path(label), "ok", {}, {"rel_l2": v}) for v in values]
        return MethodGroup("p", label, "p", {}, runs)

    groups = [group("a", 2.0, 1.0, 3.0), group("b", 2.0), group("c", 5.0), group("d")]
    assign_ranks(groups, "rel_l2")
    assert [g.rank for g in groups] == [1, 1, 3, None]  # equal medians share rank 1
    assert Criteria.of(("mse", "linf"), "rel_l2").metrics == ("rel_l2", "mse", "linf")
    assert Criteria.of(("mse", "mse")).metric == "mse"
    with pytest.raises(ReportError, match="at least one metric"):
        Criteria.of(())
    with pytest.raises(ReportError, match="alpha"):
        Criteria.of(alpha=1.0)


def test_runs_table_lists_phase_costs_only_when_a_run_has_phases(tmp_path: Path) -> None:
    phases = {"phase_iterations": 40, "phase_functions": 57, "phase_gradients": 57}
    make_run(tmp_path / "runs", "a", method="adam", seed=0, rel_l2=0.1, extra=phases)
    make_run(tmp_path / "runs", "b", method="adam", seed=1, rel_l2=0.2)
    build_report(tmp_path / "runs", tmp_path / "out", figures=False)
    rows = {r["path"]: r for r in read_csv(tmp_path / "out" / "runs.csv")}
    assert float(rows["a"]["phase_iterations"]) == 40 and float(rows["a"]["phase_functions"]) == 57
    assert rows["b"]["phase_iterations"] == "" and "phase_jacobians" not in rows["a"]
    build_report(tmp_path / "runs" / "b", tmp_path / "plain", figures=False)
    assert "phase_iterations" not in read_csv(tmp_path / "plain" / "runs.csv")[0]
