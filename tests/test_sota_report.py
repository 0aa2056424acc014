"""``benchmarks/sota_report.py``: presets apart from defaults, targets, the balancer's effect."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from benchmark_modules import benchmark_fixture

sota = benchmark_fixture("sota_report")

COLUMNS = ["path", "status", "problem", "method", "seed", "rel_l2", "rel_l2_a", "wall_s"]


def _table(path: Path, rows: list[dict[str, object]], phases: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = COLUMNS + (["phase_iterations", "phase_functions"] if phases else [])
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, columns, restval="")
        writer.writeheader()
        writer.writerows(rows)


def _row(problem: str, method: str, seed: int, error: float, **extra: object) -> dict[str, object]:
    row = {"path": "x", "status": "ok", "problem": problem, "method": method, "seed": seed}
    return row | {"rel_l2": error, "wall_s": 10 + seed} | extra


def test_presets_defaults_targets_and_the_balancer_after_the_finisher(sota, tmp_path: Path) -> None:
    _table(
        tmp_path / "default-budget/runs.csv",
        [_row("helmholtz", "adam", s, 0.5 * (1 + s)) for s in range(3)]
        + [_row("helmholtz", "autobalance", s, 0.05 * (1 + s)) for s in range(3)]
        + [_row("kovasznay", "adam", 0, 0.04)],
        phases=False,
    )
    phase = {"phase_iterations": 100, "phase_functions": 150}
    sweep = [_row("helmholtz", "adam", s, 1e-5 * (1 + s), **phase) for s in range(3)]
    sweep += [_row("helmholtz", "autobalance", s, 2e-5 * (1 + s), **phase) for s in range(3)]
    sweep += [_row("kovasznay", "adam", s, 2e-4, **phase) for s in range(3)]
    sweep += [_row("kovasznay", "adam", s, 0.05) for s in (1, 2)]  # default-budget seeds
    sweep += [_row("poisson-inverse", "adam", 0, 0.5, rel_l2_a=5e-3, **phase)]
    _table(tmp_path / "sota/runs.csv", sweep, phases=True)
    runs, checks = sota.collect(tmp_path)
    assert sorted(runs[("default", "kovasznay", "adam")]) == [0, 1, 2]  # merged with the sweep's
    assert sorted(runs[("sota", "kovasznay", "adam")]) == [0, 1, 2]
    assert not [c for c in checks if "DIFFERS" in c or "twice" in c]
    records = {r["problem"]: r for r in sota.summary(runs)}
    helmholtz = records["helmholtz"]
    assert helmholtz["met"] == "yes" and helmholtz["sota_mean"] == pytest.approx(2e-5)
    assert helmholtz["finisher_ratio"] == pytest.approx(2.0)
    assert helmholtz["finisher_lower"] == "0/3"
    assert helmholtz["finisher_p"] == pytest.approx(0.25)  # 3 pairs, all one way: the floor
    assert helmholtz["default_ratio"] == pytest.approx(0.1) and helmholtz["default_lower"] == "3/3"
    assert helmholtz["phase_iterations"] == 100 and helmholtz["wall_s"] == pytest.approx(11)
    assert records["kovasznay"]["met"] == "no"  # 2e-4 > 1e-4
    assert records["poisson-inverse"]["met"] == "yes"  # on a's error, not the solution's
    assert math.isnan(records["wave"]["sota_mean"]) and records["wave"]["met"] == "–"
    assert sota.main(["--root", str(tmp_path)]) == 0
    text = (tmp_path / "sota/summary.md").read_text()
    assert "Below α = 0.05: none" in text and "0.25 with 3 pairs" in text
    with (tmp_path / "sota/summary.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == len(records)


def test_a_run_recorded_twice_in_the_sweep_is_reported(sota, tmp_path: Path) -> None:
    phase = {"phase_iterations": 1}
    sweep = [_row("burgers", "adam", 0, 1e-3, **phase), _row("burgers", "adam", 0, 2e-3, **phase)]
    _table(tmp_path / "sota/runs.csv", sweep, phases=True)
    _, checks = sota.collect(tmp_path)
    assert checks[-1] == "sota burgers/adam/seed 0: recorded twice"
