"""The training runner: output files, metrics, checkpoint/resume, failures, CLI errors."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from autobalance import methods, nets, problems
from autobalance.cli.main import main
from autobalance.errors import ConfigError
from autobalance.experiments import RunConfig, errors, train
from autobalance.experiments.io import atomic_write_text, write_json, write_torch
from autobalance.problems.helmholtz import Helmholtz

OUTPUTS = (
    "config.json",
    "history.csv",
    "eval.csv",
    "metrics.json",
    "checkpoint.pt",
    "solution.png",
)


def small_config(**overrides: Any) -> RunConfig:
    """A smooth Helmholtz (a2 = 1), a small net, few points: trains in well under a second."""
    fields: dict[str, Any] = {
        "problem": "helmholtz",
        "problem_params": {"a2": 1, "n_residual": 128, "n_boundary": 64, "n_eval": 41},
        "net_params": {"width": 20, "depth": 2},
        "method": "adam",
        "lr": 1e-2,
        "steps": 600,
        "eval_every": 200,
        "log_every": 50,
        "checkpoint_every": 0,
        "device": "cpu",
    }
    fields.update(overrides)
    return RunConfig(**fields)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def adam_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("adam_run")
    torch.manual_seed(123)  # train() must not depend on the global seed: it seeds everything
    return out, train(small_config(), out, progress=False)


def test_every_output_file_is_written(adam_run: tuple[Path, dict[str, Any]]) -> None:
    out, _ = adam_run
    for name in OUTPUTS:
        assert (out / name).is_file(), name
        assert (out / name).stat().st_size > 0, name
    assert (out / "solution.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    leftovers = [p.name for p in out.iterdir() if p.name not in OUTPUTS]
    assert leftovers == []  # atomic writes leave no temporary files


def test_metrics_and_tables(adam_run: tuple[Path, dict[str, Any]]) -> None:
    out, returned = adam_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(returned))
    for key in (
        "rel_l2",
        "mse",
        "linf",
        "steps",
        "wall_s",
        "method",
        "seed",
        "final_losses",
        "backward_passes",
        "peak_rss_mb",
        "status",
    ):
        assert key in metrics, key
    assert metrics["status"] == "ok" and metrics["method"] == "adam" and metrics["seed"] == 0
    assert metrics["steps"] == 600 and metrics["backward_passes"] == 600
    assert set(metrics["final_losses"]) == {"residual", "boundary"}
    assert metrics["peak_rss_mb"] > 10 and 0 < metrics["wall_s"] < 60
    assert metrics["mse"] <= metrics["linf"] ** 2
    evals = _rows(out / "eval.csv")
    assert [int(r["step"]) for r in evals] == [0, 200, 400, 600]
    assert float(evals[-1]["rel_l2"]) == pytest.approx(metrics["rel_l2"])
    walls = [float(r["wall_s"]) for r in evals]
    assert walls == sorted(walls) and walls[0] == 0.0
    history = _rows(out / "history.csv")
    assert [int(r["step"]) for r in history] == [1, *range(50, 601, 50)]
    assert {"lr", "residual", "boundary"} <= set(history[0])
    assert float(history[-1]["lr"]) < float(history[0]["lr"])  # the exponential decay
    config = RunConfig.from_json(out / "config.json")
    assert config.problem_params["k"] == 1.0  # defaults are recorded
    assert config.net_params["width"] == 20 and config.net_params["depth"] == 2


def test_training_reduces_the_error(adam_run: tuple[Path, dict[str, Any]]) -> None:
    _, metrics = adam_run
    assert metrics["initial"]["rel_l2"] > 0.9  # an untrained net is far off
    assert metrics["rel_l2"] < 0.5 * metrics["initial"]["rel_l2"]
    assert metrics["mse"] < 0.25 * metrics["initial"]["mse"]


def test_checkpoint_loads_with_weights_only(adam_run: tuple[Path, dict[str, Any]]) -> None:
    out, metrics = adam_run
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 600
    assert ckpt["config"] == json.loads((out / "config.json").read_text())
    assert {"model", "balancer", "scheduler", "rng"} <= set(ckpt)
    # The saved weights reproduce the reported error.
    cfg = RunConfig.from_dict(ckpt["config"])
    problem = problems.create(cfg.problem, **cfg.problem_params)
    model = nets.create(cfg.net, 2, 1, **cfg.net_params)
    model.load_state_dict(ckpt["model"])
    points = problem.evaluation_points("cpu", torch.float32)
    with torch.no_grad():
        errs = errors(model(points), problem.reference(points))
    assert errs["rel_l2"] == pytest.approx(metrics["rel_l2"], rel=1e-6)


@pytest.mark.parametrize("method", methods.names())
def test_every_method_checkpoints_with_weights_only(method: str, tmp_path: Path) -> None:
    example = dict(methods.spec(method).example_params)
    config = small_config(method=method, steps=5, eval_every=5, method_params=example)
    train(config, tmp_path, progress=False)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    net = nets.create("mlp", 2, 1, width=20, depth=2)
    balancer = methods.create(method, net.parameters(), **example)
    balancer.load_state_dict(ckpt["balancer"])


def test_resume_continues_exactly(tmp_path: Path) -> None:
    straight, split = tmp_path / "straight", tmp_path / "split"
    full = train(small_config(steps=120, eval_every=40), straight, progress=False)
    train(small_config(steps=60, eval_every=40), split, progress=False)
    resumed = train(small_config(steps=120, eval_every=40), split, progress=False, resume=True)
    a = torch.load(straight / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(split / "checkpoint.pt", weights_only=True)["model"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-6, atol=1e-7)
    assert resumed["steps"] == 120 and resumed["backward_passes"] == 120
    assert resumed["rel_l2"] == pytest.approx(full["rel_l2"], rel=1e-4)
    assert [r["step"] for r in _rows(split / "eval.csv")] == ["0", "40", "60", "80", "120"]
    with pytest.raises(ConfigError, match="lr"):
        train(small_config(steps=130, lr=1e-3), split, progress=False, resume=True)


class _NanAfter(Helmholtz):
    """Helmholtz whose boundary loss turns NaN at the 4th evaluation."""

    calls = 0

    def losses(self, model: Any, batch: Any) -> dict[str, torch.Tensor]:
        self.calls += 1  # an instance attribute from the first call on
        out = super().losses(model, batch)
        if self.calls >= 4:
            out["boundary"] = out["boundary"] * math.nan
        return out


@pytest.fixture
def nan_problem() -> Iterator[str]:
    problems.CATALOG.add("nan_after", _NanAfter)
    yield "nan_after"
    problems.CATALOG.remove("nan_after")


def test_divergent_run_writes_failed_metrics(nan_problem: str, tmp_path: Path) -> None:
    cfg = small_config(problem=nan_problem, steps=20)
    metrics = train(cfg, tmp_path, progress=False)
    assert metrics["status"] == "failed"
    assert metrics["error"]["step"] == 4 and metrics["error"]["loss"] == "boundary"
    assert metrics["steps"] == 3
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["status"] == "failed" and saved["error"]["loss"] == "boundary"


def test_cli_divergent_run_exits_1(
    nan_problem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = f"run {nan_problem} --method adam --steps 20 --width 8 --depth 1 --param n_eval=11"
    code = main([*argv.split(), "--out", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert "diverged at step 4" in err and "'boundary'" in err and "Traceback" not in err
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "failed"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--method", "adamm"], "unknown method 'adamm'. Did you mean 'adam'"),
        (["--method", "adam", "--param", "a3=2"], "unknown parameter 'a3'"),
        (["--method", "adam", "--param", "k=abc"], "'k' must be a number"),
        (["--method", "adam", "--param", "a2"], "--param expects KEY=VALUE"),
        (["--method", "adam", "--device", "tpu"], "device 'tpu'"),
        (["--method", "adam", "--net-param", "heigth=3"], "unknown parameter 'heigth'"),
    ],
)
def test_cli_bad_input_exits_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["run", "helmholtz", *argv, "--steps", "2", "--out", str(tmp_path), "--no-progress"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "metrics.json").exists()


def test_cli_unknown_problem_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "helmholz", "--method", "adam"]) == 2
    assert "Did you mean 'helmholtz'" in capsys.readouterr().err


def test_cli_run_prints_the_error_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = (
        "run helmholtz --method adam --steps 3 --width 8 --depth 1 --param n_eval=11 "
        "--param n_residual=16 --dtype float64 --no-progress"
    )
    code = main([*argv.split(), "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    for label in ("rel L2", "MSE", "L∞", "wall-clock"):
        assert label in out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["dtype"] == "float64" and metrics["steps"] == 3
    assert f"{metrics['rel_l2']:.3e}" in out


def test_config_round_trip_and_validation() -> None:
    cfg = small_config(method="autobalance", method_params={"base": "adamw", "weight_decay": 0.01})
    assert RunConfig.from_dict(json.loads(cfg.to_json())) == cfg
    with pytest.raises(ConfigError, match="stepz"):
        RunConfig.from_dict({"stepz": 3})
    with pytest.raises(ConfigError, match="RunConfig.lr"):
        small_config(method_params={"lr": 0.1}).validate()
    with pytest.raises(ConfigError, match="Known dtypes: float32, float64"):
        small_config(dtype="float16").validate()


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "data.pt"
    write_torch(target, {"a": torch.ones(2)})
    with pytest.raises(Exception):  # noqa: B017  (pickle's error type varies)
        write_torch(target, {"a": lambda: None})  # not picklable: fails mid-write
    assert torch.equal(torch.load(target, weights_only=True)["a"], torch.ones(2))
    atomic_write_text(tmp_path / "x.txt", "hello")
    write_json(tmp_path / "m.json", {"nan": math.nan, "ok": 1.5})
    assert json.loads((tmp_path / "m.json").read_text()) == {"nan": None, "ok": 1.5}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.pt", "m.json", "x.txt"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_run_records_its_own_peak_gpu_memory(tmp_path: Path) -> None:
    """On CUDA the run writes peak_gpu_mb, the run's own peak (not earlier allocations')."""
    big = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda")  # 256 MiB
    del big
    metrics = train(small_config(device="cuda", steps=10), tmp_path / "gpu", progress=False)
    assert metrics["device"].startswith("cuda") and metrics["status"] == "ok"
    assert 0 < metrics["peak_gpu_mb"] < 256
    resumed = train(
        small_config(device="cuda", steps=20), tmp_path / "gpu", progress=False, resume=True
    )
    assert resumed["steps"] == 20 and resumed["status"] == "ok"


def test_history_logs_the_weights_of_a_weighting_method(tmp_path: Path) -> None:
    config = small_config(method="fixed", method_params={"weights": {"residual": 1, "boundary": 7}})
    train(dataclasses.replace(config, steps=4, log_every=2), tmp_path, progress=False)
    rows = _rows(tmp_path / "history.csv")
    assert [float(r["boundary_weight"]) for r in rows] == [7.0, 7.0, 7.0]
    assert [float(r["residual_weight"]) for r in rows] == [1.0, 1.0, 1.0]
    train(small_config(steps=2), tmp_path / "adam", progress=False)
    assert "boundary_weight" not in _rows(tmp_path / "adam" / "history.csv")[0]
