"""``RunConfig`` validates at construction: the API, configuration files and the command line
refuse the same inputs with the same messages, before anything is built or written."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autobalance.cli.main import main
from autobalance.errors import ConfigError, UnknownComponentError, UnknownNameError
from autobalance.experiments import RunConfig
from autobalance.experiments.config_files import config_from_dict

# (RunConfig fields, the same input on the command line, a part of the message)
BAD_INPUTS: list[tuple[dict[str, Any], list[str], str]] = [
    ({"steps": 2.5}, ["--steps", "2.5"], "'steps': expected an integer, got 2.5"),
    ({"steps": -1}, ["--steps", "-1"], "steps must be >= 0"),
    ({"lr": "abc"}, ["--lr", "abc"], "'lr': expected a number, got 'abc'"),
    ({"lr": 0.0}, ["--lr", "0.0"], "lr must be a finite number > 0"),
    ({"lr": -1e-3}, ["--lr=-1e-3"], "lr must be a finite number > 0"),
    ({"lr_decay": 0.0}, ["--lr-decay", "0.0"], "lr_decay must be in (0, 1]"),
    ({"lr_decay": 1.5}, ["--lr-decay", "1.5"], "lr_decay must be in (0, 1]"),
    ({"lr_decay_steps": 0}, ["--lr-decay-steps", "0"], "lr_decay_steps must be >= 1"),
    ({"seed": "one"}, ["--seed", "one"], "'seed': expected an integer, got 'one'"),
    ({"seed": 2**70}, ["--seed", str(2**70)], "seed must lie in"),
    ({"eval_every": 0}, ["--eval-every", "0"], "eval_every must be >= 1"),
    ({"log_every": 1.5}, ["--log-every", "1.5"], "'log_every': expected an integer"),
    ({"checkpoint_every": -5}, ["--checkpoint-every", "-5"], "checkpoint_every must be >= 0"),
    ({"resample_every": -1}, ["--resample-every", "-1"], "resample_every must be >= 0"),
    ({"dtype": "float16"}, ["--dtype", "float16"], "unknown dtype 'float16'"),
    ({"device": "tpu"}, ["--device", "tpu"], "invalid device 'tpu'"),
    ({"device": "cuda:x"}, ["--device", "cuda:x"], "invalid device 'cuda:x'"),
    ({"sampler": "sobel"}, ["--sampler", "sobel"], "unknown sampler 'sobel'"),
    ({"net": "resnet"}, ["--net", "resnet"], "unknown network 'resnet'"),
    ({"method": "adamm"}, ["--method", "adamm"], "unknown method 'adamm'. Did you mean 'adam'"),
    (
        {"method": "adam", "method_params": {"base": "adamw"}},
        ["--method", "adam", "--base", "adamw"],
        "method 'adam' fixes base='adam', so base='adamw' conflicts with it",
    ),
    (
        {"method": "mtadam", "method_params": {"base": "adam"}},
        ["--method", "mtadam", "--base", "adam"],
        "method 'mtadam' has no parameter 'base'",
    ),
    ({"net_params": {"width": "wide"}}, ["--width", "wide"], "'width' must be an integer"),
    ({"net_params": {"depth": 2.5}}, ["--depth", "2.5"], "'depth' must be an integer"),
    (
        {"problem_params": {"a3": 1}},
        ["--param", "a3=1"],
        "problem_params.a3: problem 'helmholtz': unknown parameter 'a3'",
    ),
    ({"problem_params": {"k": "abc"}}, ["--param", "k=abc"], "'k' must be a number"),
    ({"variants": [{"name": "rbaa"}]}, ["--variant", "rbaa"], "unknown variant 'rbaa'"),
]


@pytest.mark.parametrize(
    ("fields", "argv", "message"), BAD_INPUTS, ids=[m for _, _, m in BAD_INPUTS]
)
def test_api_and_cli_refuse_the_same_input_with_the_same_message(
    fields: dict[str, Any],
    argv: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(ConfigError) as caught:
        RunConfig(problem="helmholtz", **fields)
    api = str(caught.value)
    assert message in api
    out = tmp_path / "run"
    code = main(["run", "helmholtz", *argv, "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err == f"error: {api}\n"
    assert not out.exists()  # refused before anything was written
    with pytest.raises(ConfigError) as from_file:  # and the same from a configuration file
        config_from_dict({"problem": "helmholtz", **fields})
    assert str(from_file.value) == api


def test_the_issue_examples() -> None:
    with pytest.raises(ConfigError, match="'steps': expected an integer, got 2.5"):
        RunConfig(steps=2.5)  # used to train 3 steps
    with pytest.raises(ConfigError, match="'lr': expected a number, got 'abc'"):
        RunConfig(lr="abc")  # used to raise a raw TypeError
    with pytest.raises(ConfigError, match="'steps': expected an integer, got True"):
        RunConfig(steps=True)


def test_a_valid_configuration_is_unchanged_by_validation() -> None:
    config = RunConfig(
        problem="burgers",
        net="modified_mlp",
        net_params={"width": 16},
        method="autobalance",
        method_params={"base": "adam", "betas": [0.9, 0.99]},
        lr=1,  # an integer is a number
        device="cuda:3",  # the form is checked here; whether it exists, when the run starts
        variants=[{"name": "rba"}],
        budget={"kind": "time", "value": 60},
    )
    assert config.lr == 1 and isinstance(config.lr, int)
    assert RunConfig.from_dict(config.to_dict()) == config


def test_replace_and_from_dict_validate_too() -> None:
    config = RunConfig()
    with pytest.raises(ConfigError, match="steps must be >= 0"):
        dataclasses.replace(config, steps=-3)
    with pytest.raises(ConfigError, match="'eval_every': expected an integer"):
        RunConfig.from_dict({**config.to_dict(), "eval_every": "often"})


def test_validate_catches_fields_changed_after_construction() -> None:
    config = RunConfig()
    config.steps = 2.5  # type: ignore[assignment]
    with pytest.raises(ConfigError, match="'steps': expected an integer, got 2.5"):
        config.validate()


def test_cli_flag_and_method_param_giving_two_values_conflict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "helmholtz", "--base", "adamw", "--method-param", "base=adam"]
    code = main([*argv, "--out", str(tmp_path / "r"), "--no-progress"])
    assert code == 2
    assert "error: --base adamw conflicts with --method-param base=adam" in capsys.readouterr().err


# --------------------------------------------------------------------------------- properties
_NUMERIC_FIELDS = {
    f.name: f.type
    for f in dataclasses.fields(RunConfig)
    if f.name
    in (
        "lr",
        "lr_decay",
        "lr_decay_steps",
        "steps",
        "seed",
        "eval_every",
        "log_every",
        "checkpoint_every",
        "resample_every",
    )
}
_VALUES = st.one_of(
    st.integers(min_value=-(2**65), max_value=2**65),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from(sorted(_NUMERIC_FIELDS)), value=_VALUES)
def test_api_and_file_accept_and_refuse_the_same_values(field: str, value: Any) -> None:
    """Property: a value is refused by ``RunConfig(**{field: value})`` exactly when a
    configuration file holding it is, with the same message; a refusal is a ConfigError that
    names the field; an accepted value is kept as given."""
    try:
        config = RunConfig(**{field: value})
    except ConfigError as exc:
        assert field in str(exc)
        with pytest.raises(ConfigError) as from_file:
            config_from_dict({field: value})
        assert str(from_file.value) == str(exc)
        return
    assert getattr(config, field) == value
    assert config_from_dict({field: value}) == config


@settings(max_examples=100, deadline=None)
@given(
    field=st.sampled_from(["problem", "net", "method", "sampler", "dtype", "device"]),
    name=st.text(max_size=8),
)
def test_every_name_is_known_or_refused_with_a_config_error(field: str, name: str) -> None:
    """Property: a name field takes a catalogued name or raises ConfigError (never another
    error), and a non-string is refused by type."""
    with contextlib.suppress(ConfigError):
        RunConfig(**{field: name})
    with pytest.raises(ConfigError, match=f"'{field}': expected a string"):
        RunConfig(**{field: 3})


def test_unknown_names_are_both_config_errors_and_unknown_names() -> None:
    for fields in ({"problem": "helmholz"}, {"variants": [{"name": "rbaa"}]}, {"sampler": "x"}):
        with pytest.raises(UnknownComponentError) as caught:
            RunConfig(**fields)
        assert isinstance(caught.value, ConfigError) and isinstance(caught.value, UnknownNameError)


@pytest.mark.parametrize("data", [[1, 2], "steps=3", None, 3])
def test_from_dict_of_what_is_not_a_table_is_a_config_error(data: Any) -> None:
    with pytest.raises(ConfigError, match="must be a table of keys, got"):
        RunConfig.from_dict(data)


def test_train_of_what_is_not_a_run_config_is_a_config_error(tmp_path: Path) -> None:
    from autobalance.experiments import train

    with pytest.raises(ConfigError, match=r"train\(\) needs a RunConfig, got dict"):
        train({"problem": "helmholtz", "steps": 3}, tmp_path / "r")  # type: ignore[arg-type]
    assert not (tmp_path / "r").exists()
