"""Python 3.10: TOML is read with tomli; every shipped suite loads through that path.

The suite files are TOML, and ``tomllib`` only exists from Python 3.11 on.  These tests run the
3.10 code path on any Python: ``tomllib`` is hidden (as on 3.10) and the loader is asked for the
3.10 parser, so a suite that only ``tomllib`` could read, or a loader that imports ``tomllib``
directly, fails here.  The packaging tests check that tomli is declared where 3.10 needs it.
"""

from __future__ import annotations

import functools
import re
import sys
from importlib import resources
from pathlib import Path
from types import ModuleType

import pytest

from autobalance.errors import ConfigError
from autobalance.experiments import config_files
from autobalance.experiments.suites import load_suite, suite_names

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = resources.files("autobalance.experiments").joinpath("suites")


def _python310(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Hide ``tomllib`` and make the loader pick the 3.10 parser; returns the parsers it used."""
    used: list[str] = []
    as_on_310 = functools.partial(config_files.toml_module, (3, 10))

    def spy() -> ModuleType:
        module = as_on_310()
        used.append(module.__name__)
        return module

    monkeypatch.setitem(sys.modules, "tomllib", None)  # `import tomllib` raises, as on 3.10
    monkeypatch.setattr(config_files, "toml_module", spy)
    return used


def test_the_parser_is_tomllib_from_311_and_tomli_before() -> None:
    assert config_files.toml_module((3, 10)).__name__ == "tomli"
    if sys.version_info >= (3, 11):
        assert config_files.toml_module((3, 11)).__name__ == "tomllib"
        assert config_files.toml_module().__name__ == "tomllib"


def test_without_tomli_python_310_gets_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tomli", None)
    with pytest.raises(ConfigError, match=r"Python 3\.10 needs tomli \(pip install tomli\)"):
        config_files.toml_module((3, 10))
    _python310(monkeypatch)
    with pytest.raises(ConfigError, match="needs tomli"):
        load_suite("quick")


def test_the_shipped_suites_are_the_toml_files_of_the_package() -> None:
    files = sorted(p.name[: -len(".toml")] for p in SHIPPED.iterdir() if p.name.endswith(".toml"))
    assert files == sorted(suite_names())
    assert len(files) >= 3  # quick, paper, ablations: the parametrisation below is not empty


@pytest.mark.parametrize("name", suite_names())
def test_every_shipped_suite_loads_through_the_python310_path(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    native = load_suite(name)
    used = _python310(monkeypatch)
    old = load_suite(name)
    assert used == ["tomli"]
    assert old.runs, f"suite {name!r} expanded to no runs"
    assert old.runs == native.runs
    assert (old.description, old.skipped) == (native.description, native.skipped)


def test_a_suite_file_given_by_path_loads_through_the_python310_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(SHIPPED.joinpath("quick.toml").read_text(encoding="utf-8"), encoding="utf-8")
    native = load_suite(path)
    used = _python310(monkeypatch)
    assert load_suite(path).runs == native.runs
    assert used == ["tomli"]


def _pyproject() -> dict:
    return config_files.toml_module().loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _split(requirement: str) -> tuple[str, str]:
    """``name[extras]`` (lower case) and the environment marker ('' when there is none)."""
    spec, _, marker = requirement.partition(";")
    match = re.match(r"\s*([A-Za-z0-9_.-]+(\[[^\]]*\])?)", spec)
    assert match is not None, requirement
    return match.group(1).lower(), marker.strip()


def test_tomli_is_declared_for_python_before_311_and_in_dev() -> None:
    project = _pyproject()["project"]
    runtime = dict(_split(r) for r in project["dependencies"])
    assert runtime.get("tomli") == "python_version < '3.11'"
    dev = dict(_split(r) for r in project["optional-dependencies"]["dev"])
    assert dev.get("tomli") == ""  # unconditional, so these tests run the 3.10 path on 3.11+


def test_the_all_extra_installs_every_optional_extra_but_dev_and_docs() -> None:
    extras = _pyproject()["project"]["optional-dependencies"]
    assert "all" in extras
    named: set[str] = set()
    for requirement in extras["all"]:
        name, _ = _split(requirement)
        match = re.fullmatch(r"autobalance\[([^\]]*)\]", name)
        if match:
            named.update(part.strip() for part in match.group(1).split(","))
        else:
            named.update(e for e, reqs in extras.items() if name in {_split(r)[0] for r in reqs})
    # dev and docs are development tools (tests, lint; the documentation site), not features
    assert named == set(extras) - {"all", "dev", "docs"}
