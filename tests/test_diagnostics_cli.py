"""End-to-end tests of `autobalance diagnose` at a tiny budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autobalance.cli.main import main
from autobalance.diagnostics.helmholtz_study import StudyConfig, run_study
from autobalance.errors import LossNameError


def test_diagnose_quadratic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["diagnose", "quadratic", "--out", str(tmp_path), "--n", "4", "--seeds", "1"]
    args += ["--c-max", "1", "--steps", "20", "--linear-steps", "50"]
    assert main(args) == 0
    data = json.loads((tmp_path / "quadratic.json").read_text())
    assert {r["kind"] for r in data["rows"]} == {"rotated", "diagonal"}
    assert (tmp_path / "quadratic_kappa.png").exists()
    assert "κ AutoBal" in capsys.readouterr().out


def test_diagnose_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["diagnose", "helmholtz", "--method", "autobalance", "--method", "adam"]
    args += ["--steps", "6", "--width", "4", "--depth", "1", "--log-every", "3"]
    args += ["--checkpoints", "1", "--param", "n_residual=32", "--param", "n_boundary=16"]
    args += ["--hessian-param", "n_residual=16", "--out", str(tmp_path)]
    assert main(args) == 0
    data = json.loads((tmp_path / "study.json").read_text())
    assert set(data["methods"]) == {"autobalance", "adam"}
    assert (tmp_path / "fig1_spectra.png").exists() and (tmp_path / "fig2_balance.png").exists()
    assert "residual/boundary" in capsys.readouterr().out


def test_diagnose_unknown_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diagnose", "helmholz", "--out", str(tmp_path)]) == 2
    assert "helmholtz" in capsys.readouterr().err


def test_study_unknown_loss_lists_the_real_ones() -> None:
    cfg = StudyConfig(steps=1, losses=("residual", "bc"), problem_params={"n_residual": 8})
    with pytest.raises(LossNameError, match="'residual', 'boundary'"):
        run_study(cfg)
