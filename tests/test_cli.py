"""The command line in a subprocess: `python -m autobalance ...`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from autobalance import methods
from autobalance.cli.main import GLIBC_TUNABLES, parse_assignments
from autobalance.errors import ConfigError


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_list_names_problems_networks_and_methods() -> None:
    result = _run("-m", "autobalance", "list")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "problems:" in out and "helmholtz" in out
    assert "networks:" in out and "mlp" in out
    for spec in methods.describe():
        assert spec.name in out and spec.family in out


def test_bad_input_exits_2_without_traceback() -> None:
    result = _run("-m", "autobalance", "run", "helmholtz", "--method", "nosuch")
    assert result.returncode == 2
    assert result.stderr.startswith("error: unknown method 'nosuch'")
    assert "Traceback" not in result.stderr


def test_parse_assignments() -> None:
    parsed = parse_assignments(["a2=4", "k=1.5", "flag=true", "betas=(0.9, 0.99)", "s=adamw"], "-p")
    assert parsed == {"a2": 4, "k": 1.5, "flag": True, "betas": (0.9, 0.99), "s": "adamw"}
    assert type(parsed["a2"]) is int
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_assignments(["novalue"], "--param")


def test_flags_parse_values_as_set_does() -> None:
    """--param / --method-param values mean what the same text means after --set."""
    from autobalance.experiments.config_files import parse_value

    texts = ["null", "1_000", ".5", "[0.9, 0.99]", '{"x": 2.0}', "True", "adam"]
    parsed = parse_assignments([f"k{i}={t}" for i, t in enumerate(texts)], "-p")
    assert parsed == {f"k{i}": parse_value(t) for i, t in enumerate(texts)}
    assert parsed["k0"] is None and parsed["k4"] == {"x": 2.0}


_PROBE = (
    "import os; print('TUNABLES=' + str(os.environ.get('GLIBC_TUNABLES'))); "
    "from autobalance.cli.main import main; main({argv})"
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="re-exec is Linux only")
def test_console_command_reexecs_once_with_tunables() -> None:
    drop = ("GLIBC_TUNABLES", "AUTOBALANCE_NO_REEXEC")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    console = _run("-c", _PROBE.format(argv=""), "list", env=env)
    assert console.returncode == 0, console.stderr
    lines = [ln for ln in console.stdout.splitlines() if ln.startswith("TUNABLES=")]
    assert lines == ["TUNABLES=None", f"TUNABLES={GLIBC_TUNABLES}"]
    programmatic = _run("-c", _PROBE.format(argv="['list']"), env=env)
    lines = [ln for ln in programmatic.stdout.splitlines() if ln.startswith("TUNABLES=")]
    assert lines == ["TUNABLES=None"]
    opted_out = _run(
        "-c", _PROBE.format(argv=""), "list", env={**env, "AUTOBALANCE_NO_REEXEC": "1"}
    )
    lines = [ln for ln in opted_out.stdout.splitlines() if ln.startswith("TUNABLES=")]
    assert lines == ["TUNABLES=None"]


def test_run_flags_default_to_the_run_configuration_defaults() -> None:
    """``run PROBLEM`` with no flag gives exactly ``RunConfig(problem=PROBLEM)``."""
    from autobalance.cli.main import build_parser
    from autobalance.cli.run import _config_from_args
    from autobalance.experiments.config import RunConfig

    args = build_parser().parse_args(["run", "burgers"])
    config, out = _config_from_args(args)
    assert config == RunConfig(problem="burgers")
    from autobalance.experiments.sweep import config_hash

    # one directory per configuration: method, base, lr, seed and a hash of the rest
    assert out.as_posix() == f"runs/burgers-autobalance-lr0.001-seed0-{config_hash(config)}"
    args = build_parser().parse_args(["run", "burgers", "--width", "8", "--base", "adam"])
    config, other = _config_from_args(args)
    assert config.net_params == {"width": 8} and config.method_params == {"base": "adam"}
    assert other.name.startswith("burgers-autobalance-adam-lr0.001-seed0-") and other != out


def test_help_lists_every_command() -> None:
    from autobalance.cli.main import COMMANDS, build_parser

    text = " ".join(build_parser().format_help().split())  # help lines are wrapped
    assert list(COMMANDS) == ["run", "list", "diagnose", "report", "compare", "bench"]
    for name, command in COMMANDS.items():
        assert name in text and command.help in text
