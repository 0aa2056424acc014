"""Presets: a documented partial configuration per problem, overridden by whatever is given;
the ``sota`` suite built from them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from autobalance import nets, problems
from autobalance.cli.main import main
from autobalance.errors import ConfigError, UnknownNameError
from autobalance.experiments import RunConfig, runner
from autobalance.experiments.suites import expand_suite, load_suite
from autobalance.phases import PHASES, parse_phase
from autobalance.presets import PRESETS, SOTA, preset_config, preset_names


@pytest.fixture(autouse=True)
def _no_solution_figure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner.TrainingRun, "write_plot", lambda self: None)


def test_every_problem_has_a_documented_sota_recipe_that_validates() -> None:
    assert preset_names() == ["sota"] and set(SOTA) == set(problems.names())
    for problem, preset in SOTA.items():
        config = RunConfig.from_dict(preset_config("sota", problem))
        assert config.problem == problem and config.dtype == "float64"
        assert config.phases and len(preset.why) > 40 and preset.target > 0
        # the dense finisher fits its parameter limit
        model = nets.create(
            config.net,
            problems.create(problem).in_dim,
            problems.create(problem).out_dim,
            input_names=problems.create(problem).input_names,
            **config.net_params,
        )
        n = sum(p.numel() for p in model.parameters())
        for entry in config.phases:
            spec = parse_phase(entry)
            limit = spec.options.get("max_params", PHASES.parameters(spec.name).get("max_params"))
            assert limit is None or n <= limit, (problem, n)
    assert SOTA["helmholtz"].measured


def test_preset_configs_are_copies() -> None:
    first = preset_config("sota", "burgers")
    first["net_params"]["width"] = 1
    assert preset_config("sota", "burgers")["net_params"]["width"] == 20


def test_unknown_preset_and_problem_without_a_recipe_are_clear_errors() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'sota'"):
        preset_config("sotta", "burgers")
    with pytest.raises(ConfigError, match="no recipe for problem 'nope'.*helmholtz"):
        PRESETS.get("sota")("nope")


def test_cli_preset_with_overrides(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    argv = ["run", "helmholtz", "--preset", "sota", "--steps", "3", "--width", "5"]
    argv += ["--param", "n_residual=32", "--param", "n_boundary=8", "--param", "n_eval=11"]
    argv += ["--then", "lbfgs:iters=2", "--device", "cpu", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["dtype"], config["lr_decay"], config["resample_every"]) == ("float64", 1.0, 0)
    assert config["net_params"]["width"] == 5 and config["net_params"]["depth"] == 2
    assert config["problem_params"]["n_residual"] == 32 and config["steps"] == 3
    assert config["phases"] == [{"name": "lbfgs", "iters": 2}]  # --then replaces the preset's
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["phase_iterations"] == 2
    assert main(["run", "helmholtz", "--preset", "sotta", "--out", str(tmp_path / "x")]) == 2
    assert "Did you mean 'sota'" in capsys.readouterr().err


def test_the_sota_suite_runs_the_preset_with_adam_and_autobalance_first() -> None:
    suite = load_suite("sota")
    sota_runs = [spec for spec in suite.runs if spec.group.endswith("-sota")]
    assert not suite.skipped and len(sota_runs) == len(problems.names()) * 2 * 3
    groups: dict[str, set[tuple[str, str, int]]] = {}
    for spec in suite.runs:
        c = spec.config
        groups.setdefault(spec.group, set()).add((c.method, c.dtype, len(c.phases)))
        if spec.group.endswith("-sota"):
            assert c.to_dict() | {"method": "adam", "seed": 0, "device": "auto"} == (
                RunConfig.from_dict(
                    preset_config("sota", c.problem) | {"seed": 0, "device": "auto"}
                ).to_dict()
            )
    assert groups["burgers-sota"] == {("adam", "float64", 1), ("autobalance", "float64", 1)}
    # the defaults come from committed tables; only Kovasznay's missing seeds are run here
    defaults = [spec for spec in suite.runs if not spec.group.endswith("-sota")]
    assert {(s.group, s.config.method, s.config.seed) for s in defaults} == {
        ("kovasznay-default", method, seed) for method in ("adam", "autobalance") for seed in (1, 2)
    }
    assert all(s.config.dtype == "float32" and not s.config.phases for s in defaults)


def test_a_suite_experiment_takes_a_preset_under_its_own_keys() -> None:
    data = {
        "defaults": {"device": "cpu", "steps": 7},
        "experiments": [{"name": "x", "problem": "wave", "preset": "sota", "lr": 3e-3}],
    }
    (spec,) = expand_suite(data, "mine").runs
    assert spec.config.method == "adam"  # the preset's method when none is listed
    assert (spec.config.lr, spec.config.steps) == (3e-3, 500)  # the experiment, the preset
    assert spec.config.net_params["width"] == 30
    with pytest.raises(ConfigError, match="experiment 'x'.*preset"):
        expand_suite({"experiments": [{"name": "x", "preset": "nope"}]}, "mine")


DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("problem", sorted(SOTA))
def test_every_sota_preset_builds_and_runs_in_miniature(
    problem: str, device: str, tmp_path: Path
) -> None:
    """Each preset's whole configuration (network, embeddings, variants, dtype, its phase with a
    redraw) built and run for 2 first-order steps and 2 phase iterations on ``device``: the
    path a full run takes, on few points.  On CUDA (the lead's GPU) this checks that nothing
    in the recipe makes CPU-only tensors."""
    preset = preset_config("sota", problem)
    spec = parse_phase(preset["phases"][0])
    tiny_phase = {**spec.to_mapping(), "iters": 2, "redraw_every": 1, "max_seconds": 0.0}
    small = {k: min(v, 64) for k, v in preset["problem_params"].items() if k.startswith("n_")}
    overrides = {
        "steps": 2,
        "phases": [tiny_phase],
        "problem_params": {**preset["problem_params"], **small},
        "device": device,
        "eval_every": 1,
        "log_every": 1,
    }
    config = RunConfig.from_dict({**preset, **overrides})
    metrics = runner.train(config, tmp_path, progress=False)
    assert metrics["status"] == "ok", metrics.get("failure")
    assert metrics["phase_iterations"] == 2 and metrics["phases"][0]["name"] == spec.name
    assert math.isfinite(metrics["rel_l2"])
    saved = json.loads((tmp_path / "config.json").read_text())
    assert (saved["dtype"], saved["device"]) == ("float64", device)
