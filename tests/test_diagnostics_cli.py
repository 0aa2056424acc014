"""End-to-end tests of `autobalance diagnose` at a tiny budget."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

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
    printed = capsys.readouterr().out
    assert "residual/boundary" in printed and "κ_m(0.99)" in printed


def test_diagnose_unknown_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diagnose", "helmholz", "--out", str(tmp_path)]) == 2
    assert "helmholtz" in capsys.readouterr().err


def test_study_unknown_loss_lists_the_real_ones() -> None:
    cfg = StudyConfig(steps=1, losses=("residual", "bc"), problem_params={"n_residual": 8})
    with pytest.raises(LossNameError, match="'residual', 'boundary'"):
        run_study(cfg)


def test_diagnose_quadratic_c_max_zero_has_one_row_per_kind(tmp_path: Path) -> None:
    args = ["diagnose", "quadratic", "--out", str(tmp_path), "--n", "3", "--seeds", "1"]
    args += ["--c-max", "0", "--steps", "0", "--linear-steps", "5"]
    assert main(args) == 0
    rows = json.loads((tmp_path / "quadratic.json").read_text())["rows"]
    assert [(r["kind"], r["c"]) for r in rows] == [("rotated", 0.0), ("diagonal", 0.0)]


def _tiny_study(**kw: object) -> dict:
    cfg = StudyConfig(
        steps=4,
        width=4,
        depth=1,
        log_every=2,
        hessian_checkpoints=1,
        problem_params={"n_residual": 16, "n_boundary": 8},
        hessian_params={"n_residual": 8, "n_boundary": 8},
        **kw,  # type: ignore[arg-type]
    )
    return run_study(cfg)


def _check_measures(result: dict) -> None:
    for method in ("autobalance", "adam"):
        res = result["methods"][method]
        for kind in ("raw", "pre"):
            s = res["final_spectra"][kind]["summary"]
            for key in ("kappa_eff@0.01", "kappa_eff@1e-06", "kappa_mass@0.9", "median_spread"):
                assert math.isfinite(s[key]) and s[key] >= 1.0
            assert 1.0 <= s["kappa_mass@0.9"] <= s["kappa_mass@0.99"]
            assert 0.0 <= s["negative_mass"] <= 1.0
            assert "kappa_mass@0.99" in res["checkpoints"][-1]["boundary"][kind]
        # update statistics of both methods (the preconditioners could be read)
        assert math.isfinite(res["history"][-1]["update_ratio_residual/boundary"])


def test_study_dense_and_lanczos_paths_record_the_measures() -> None:
    dense = _tiny_study()
    assert dense["hessian"] == "dense"
    _check_measures(dense)
    sparse = _tiny_study(max_params=10, lanczos_iters=12)
    assert sparse["hessian"].startswith("lanczos")
    _check_measures(sparse)
    spec = sparse["methods"]["adam"]["final_spectra"]["pre"]
    assert len(spec["eigenvalues"]) == len(spec["weights"]) == 12
    assert sum(spec["weights"]) == pytest.approx(1.0)
    # The Lanczos extremes agree with the dense spectrum (same parameters, same batch).
    d, s = dense["init_spectra"]["residual"], sparse["init_spectra"]["residual"]
    assert s["summary"]["lambda_max"] == pytest.approx(d["summary"]["lambda_max"], rel=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_study_runs_on_cuda() -> None:
    result = _tiny_study(device="cuda")
    assert result["device"].startswith("cuda")
    _check_measures(result)
    _check_measures(_tiny_study(device="cuda", max_params=10, lanczos_iters=12))
