"""Run configurations from TOML/YAML/JSON files, dotted overrides, errors naming the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autobalance.cli.main import main
from autobalance.errors import ConfigError
from autobalance.experiments.config_files import (
    apply_overrides,
    config_from_dict,
    load_config,
    parse_value,
)

TOML = """
problem = "helmholtz"
method = "autobalance"
steps = 12
device = "cpu"
eval_every = 6
budget = "backward=15"

[problem_params]
a2 = 1
n_residual = 64
n_boundary = 32
n_eval = 21

[net_params]
width = 10
depth = 2

[method_params]
base = "adam"
betas = [0.9, 0.99]
"""


def test_parse_value() -> None:
    assert parse_value("5e-4") == 5e-4
    assert parse_value("3") == 3 and isinstance(parse_value("3"), int)
    assert parse_value(".5") == 0.5
    assert parse_value("true") is True and parse_value("null") is None
    assert parse_value("[0.9, 0.99]") == [0.9, 0.99]
    assert parse_value("(0.9, 0.99)") == (0.9, 0.99)
    assert parse_value('{"kind": "time", "value": 60}') == {"kind": "time", "value": 60}
    assert parse_value("adamw") == "adamw"


def test_toml_file_with_overrides(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text(TOML)
    config = load_config(path, ["method_params.base=adamw", "problem_params.a2=2", "lr=5e-4"])
    assert config.method_params == {"base": "adamw", "betas": [0.9, 0.99]}
    assert config.problem_params["a2"] == 2 and config.lr == 5e-4
    assert config.budget == {"kind": "backward", "value": 15}


def test_json_and_yaml_files(tmp_path: Path) -> None:
    data = {"problem": "helmholtz", "steps": 5, "method_params": {"base": "adam"}}
    (tmp_path / "run.json").write_text(json.dumps(data))
    assert load_config(tmp_path / "run.json").steps == 5
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed")
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(data))
    assert load_config(tmp_path / "run.yaml").method_params == {"base": "adam"}


@pytest.mark.parametrize(
    ("data", "overrides", "match"),
    [
        ({"stepz": 5}, [], "'stepz'.*Did you mean 'steps'"),
        ({}, ["method_parms.base=adam"], "'method_parms'"),
        ({}, ["steps=abc"], "'steps': expected an integer, got 'abc'"),
        ({}, ["lr=fast"], "'lr': expected a number"),
        ({}, ["steps=-1"], "steps must be >= 0"),
        ({}, ["problem_params.a3=1"], "problem_params.a3"),
        ({}, ["method=adamm"], "unknown method 'adamm'"),
        ({}, ["budget.kind=weeks", "budget.value=1"], "budget kind 'weeks'"),
        ({}, ["budget.kind=time"], "budget.value is missing"),
        ({}, ["budget=time=-3"], "budget.value"),
        ({"steps": 5}, ["steps.x=1"], "'steps' is 5, not a table"),
        ({}, ["noequals"], "DOTTED.KEY=VALUE"),
        ({}, ["net_params.widht=3"], "'net_params'.*'widht'.*Did you mean 'width'"),
        ({}, ["net_params.width=wide"], "'net_params'.*'width' must be an integer"),
        ({}, ['variants=[{"name": "rbaa"}]'], "'variants'.*unknown variant 'rbaa'"),
        ({}, ['variants=[{"name": "rba", "etaa": 1}]'], "'variants'.*'etaa'"),
        ({}, ["lr=Infinity"], "lr must be a finite number > 0"),
        ({}, ['budget={"kind": [1], "value": 3}'], "budget kind"),
    ],
)
def test_errors_name_the_key(data: dict, overrides: list[str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        config_from_dict(data, overrides)


def test_bad_files(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("steps = = 3")
    with pytest.raises(ConfigError, match="not valid toml"):
        load_config(tmp_path / "bad.toml")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="table of keys"):
        load_config(tmp_path / "list.json")
    with pytest.raises(ConfigError, match="unknown format"):
        load_config(tmp_path / "run.ini")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_apply_overrides_does_not_mutate() -> None:
    data = {"method_params": {"base": "adam"}}
    out = apply_overrides(data, ["method_params.betas=[0.9, 0.9]"])
    assert data == {"method_params": {"base": "adam"}}
    assert out["method_params"] == {"base": "adam", "betas": [0.9, 0.9]}


def test_cli_run_with_config_set_and_budget(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text(TOML)
    out = tmp_path / "out"
    argv = ["run", "--config", str(path), "--set", "method_params.base=adamw", "--seed", "2"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    saved = json.loads((out / "config.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert saved["method_params"]["base"] == "adamw" and saved["seed"] == 2
    # backward=15 with 2 losses: 7 steps (14 passes); the 8th would exceed the budget
    assert metrics["steps"] == 7 and metrics["backward_passes"] == 14
    assert metrics["budget"] == {"kind": "backward", "value": 15}


def test_cli_run_config_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "run.toml"
    path.write_text(TOML)
    assert main(["run", "--config", str(path), "--set", "seedd=1"]) == 2
    assert "'seedd'" in capsys.readouterr().err
    assert main(["run"]) == 2
    assert "PROBLEM" in capsys.readouterr().err


def test_cli_run_of_a_config_naming_no_problem_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty (or cut) configuration file does not start the default problem."""
    path = tmp_path / "run.toml"
    path.write_text("")
    assert main(["run", "--config", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "names no problem" in capsys.readouterr().err and not (tmp_path / "o").exists()
    assert main(["run", "--set", "steps=3", "--out", str(tmp_path / "o")]) == 2
