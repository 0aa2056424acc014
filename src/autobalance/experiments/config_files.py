"""Run configurations from TOML, YAML or JSON files, with dotted ``KEY=VALUE`` overrides.

A configuration file holds the fields of :class:`~autobalance.experiments.config.RunConfig` at
its top level, e.g. in TOML::

    problem = "helmholtz"
    method = "autobalance"
    lr = 1e-3
    steps = 5000
    budget = "backward=10000"        # or {kind = "backward", value = 10000}

    [problem_params]
    a2 = 4

    [method_params]
    base = "adamw"
    betas = [0.9, 0.999]

TOML files are read with the standard library (``tomllib``; ``tomli`` on Python 3.10), YAML files
need PyYAML (``pip install 'autobalance[yaml]'``), JSON files nothing.  Overrides
(``method_params.base=adam``, ``problem_params.a2=4``, ``steps=2000``) set one key each; the
first part of the dotted key must be a configuration field, the rest walks into (and creates)
nested tables.  Values are parsed by :func:`parse_value`.  Unknown keys and values of the wrong
type raise :class:`~autobalance.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import importlib
import json
import math
import os
import sys
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from autobalance.errors import ConfigError, unknown_name_message
from autobalance.experiments.budget import Budget
from autobalance.experiments.config import RunConfig, check_types

__all__ = [
    "CONFIG_SUFFIXES",
    "apply_overrides",
    "check_types",
    "config_from_dict",
    "load_config",
    "load_mapping",
    "parse_override",
    "parse_text",
    "parse_value",
    "toml_module",
]

#: File suffixes understood by :func:`load_mapping`.
CONFIG_SUFFIXES = (".toml", ".yaml", ".yml", ".json")

_WORDS: dict[str, Any] = {"true": True, "false": False, "null": None, "none": None, "~": None}


def parse_value(text: str) -> Any:
    """A command-line value as JSON/YAML would read it.

    ``"5e-4"`` → 0.0005, ``"3"`` → 3, ``"true"`` → True, ``"null"`` → None,
    ``"[0.9, 0.99]"`` → list, ``'{"kind": "time", "value": 60}'`` → dict, ``"(0.9, 0.99)"`` →
    tuple; anything else is the text itself (``adamw``).
    """
    stripped = text.strip()
    if stripped.lower() in _WORDS:
        return _WORDS[stripped.lower()]
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    try:  # YAML-style numbers JSON refuses: 1e3 is fine, but .5, 5., +1, 1_000 are not
        number = float(stripped.replace("_", "")) if stripped else math.nan
        if math.isfinite(number):
            as_int = stripped.lstrip("+-").replace("_", "").isdigit()
            return int(number) if as_int else number
    except ValueError:
        pass
    try:
        value = ast.literal_eval(stripped)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return value if isinstance(value, (tuple, list, dict, set)) else text


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"method_params.base=adam"`` → ``(["method_params", "base"], "adam")``."""
    key, sep, value = item.partition("=")
    parts = [p.strip() for p in key.split(".")]
    if not sep or not all(parts):
        raise ConfigError(
            f"--set expects DOTTED.KEY=VALUE (e.g. method_params.base=adam), got {item!r}"
        )
    return parts, parse_value(value)


def _field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(RunConfig)]


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A deep copy of ``data`` with each ``DOTTED.KEY=VALUE`` of ``overrides`` applied in order."""
    out = copy.deepcopy(dict(data))
    known = _field_names()
    for item in overrides:
        parts, value = parse_override(item)
        if parts[0] not in known:
            raise ConfigError(unknown_name_message("run configuration key", parts[0], known))
        node: dict[str, Any] = out
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                dotted = ".".join(parts[: depth + 1])
                raise ConfigError(
                    f"cannot set {'.'.join(parts)!r}: {dotted!r} is {child!r}, not a table"
                )
            node = child
        node[parts[-1]] = value
    return out


def load_mapping(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML, YAML or JSON file whose top level is a table."""
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in CONFIG_SUFFIXES:
        raise ConfigError(
            f"configuration file {str(file)!r}: unknown format {suffix or '(no suffix)'!r}; "
            f"use one of {', '.join(CONFIG_SUFFIXES)}"
        )
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {str(file)!r}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"configuration file {str(file)!r} is not UTF-8 text (byte {exc.start}: {exc.reason})"
        ) from None
    try:
        data = parse_text(text, suffix)
    except ConfigError:
        raise
    except Exception as exc:  # each parser raises its own error type
        raise ConfigError(
            f"configuration file {str(file)!r} is not valid {suffix[1:]}: {exc}"
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"configuration file {str(file)!r} must hold a table of keys, got {type(data).__name__}"
        )
    return data


def toml_module(python: tuple[int, int] = sys.version_info[:2]) -> types.ModuleType:
    """The TOML parser for Python ``python``: ``tomllib`` from 3.11 on, ``tomli`` before.

    ``tomli`` is the backport of ``tomllib`` (the same ``loads``); the package declares it for
    Python < 3.11.  Tests pass ``(3, 10)`` to read every shipped suite through the 3.10 path.
    """
    name = "tomllib" if python >= (3, 11) else "tomli"
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ConfigError(
            f"reading TOML on Python {python[0]}.{python[1]} needs tomli (pip install tomli)"
        ) from None


def parse_text(text: str, suffix: str) -> Any:
    """Parse ``text`` as ``suffix`` says (``.toml``, ``.yaml``/``.yml`` or ``.json``)."""
    if suffix == ".json":
        return json.loads(text)
    if suffix == ".toml":
        return toml_module().loads(text)
    try:
        import yaml
    except ImportError:
        raise ConfigError(
            "reading YAML needs PyYAML: pip install pyyaml (or 'autobalance[yaml]'), or use a "
            "TOML or JSON file"
        ) from None
    return yaml.safe_load(text)


def config_from_dict(data: Mapping[str, Any], overrides: Iterable[str] = ()) -> RunConfig:
    """A validated :class:`RunConfig` from a mapping plus ``DOTTED.KEY=VALUE`` overrides.

    A ``budget`` given as ``"KIND=VALUE"`` becomes ``{"kind": ..., "value": ...}``; ``betas`` and
    other lists stay lists (the methods accept them).
    """
    merged = apply_overrides(data, overrides)
    if isinstance(merged.get("budget"), str):
        budget = Budget.from_spec(merged["budget"])
        merged["budget"] = None if budget is None else budget.to_spec()
    check_types(merged)
    return RunConfig.from_dict(merged)  # validated at construction


def load_config(path: str | os.PathLike[str], overrides: Iterable[str] = ()) -> RunConfig:
    """Read a configuration file (TOML/YAML/JSON), apply ``overrides`` and validate it."""
    data = load_mapping(path)
    try:
        return config_from_dict(data, overrides)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
