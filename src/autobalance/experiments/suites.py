"""Benchmark suites: named sets of runs shipped with the package, or a user's TOML/YAML/JSON file.

A suite file (``autobalance/experiments/suites/<name>.toml`` for the shipped ones)::

    description = "one line"
    seeds = 3                        # seeds 0..2, or an explicit list [0, 1, 2]

    [defaults]                       # RunConfig fields shared by every run
    device = "cpu"
    steps = 2000

    [[experiments]]
    name = "helmholtz"               # also the group of its runs
    problem = "helmholtz"            # any RunConfig field, merged over [defaults]
    methods = "all"                  # every registered method, or a list of names
    problem_params = {a2 = 4}
    grid = {lr = [1e-3, 3e-3], "method_params.combine" = ["sum", "mean"]}   # all combinations
    preset = "sota"                  # optional: a preset's recipe for the problem
                                     # (autobalance.presets) between [defaults] and these keys

Each experiment gives ``methods × grid × seeds`` runs.  Nested tables (``problem_params``,
``method_params``, ...) are merged key by key over the defaults; ``grid`` keys are dotted keys as
for ``--set``.  A method's ``example_params`` (e.g. the weights of ``fixed``) fill the method
parameters it is not given.  Problems and methods that are not registered when the suite is
expanded are skipped and listed (:attr:`Suite.skipped`), so a suite names methods that may or
may not be installed.  Without ``methods``, an experiment runs the method of its preset (or of
its keys).
"""

from __future__ import annotations

import copy
import itertools
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from autobalance.errors import AutoBalanceError, ConfigError, unknown_name_message
from autobalance.experiments.config_files import (
    CONFIG_SUFFIXES,
    config_from_dict,
    load_mapping,
    parse_text,
    parse_value,
)
from autobalance.experiments.sweep import RunSpec
from autobalance.presets import preset_config

__all__ = ["Suite", "expand_suite", "load_suite", "suite_names"]

_SUITE_KEYS = ("description", "seeds", "defaults", "experiments")
_EXPERIMENT_KEYS = ("name", "methods", "grid", "seeds", "preset")


@dataclass
class Suite:
    """An expanded suite: its runs and what was skipped (with the reason)."""

    name: str
    description: str
    runs: list[RunSpec]
    skipped: list[str] = field(default_factory=list)


def _shipped() -> Any:
    return resources.files("autobalance.experiments").joinpath("suites")


def suite_names() -> list[str]:
    """Names of the suites shipped with the package."""
    folder = _shipped()
    if not folder.is_dir():
        return []
    return sorted(
        entry.name.rsplit(".", 1)[0] for entry in folder.iterdir() if entry.name.endswith(".toml")
    )


def _seeds(value: Any, where: str) -> list[int]:
    if isinstance(value, bool):
        raise ConfigError(f"invalid {where} {value!r}: a count or a list of integers")
    if isinstance(value, int):
        if value < 1:
            raise ConfigError(f"invalid {where} {value!r}: must be >= 1")
        return list(range(value))
    if (
        isinstance(value, list)
        and value
        and all(isinstance(s, int) and not isinstance(s, bool) for s in value)
    ):
        return list(value)
    raise ConfigError(f"invalid {where} {value!r}: a count or a non-empty list of integers")


def _merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``, merging nested dicts key by key."""
    out = copy.deepcopy(dict(base))
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _override_text(key: str, value: Any) -> str:
    """A ``--set`` item for ``key`` that :func:`parse_value` turns back into ``value``."""
    text = json.dumps(value)
    if parse_value(text) != value:  # cannot happen for JSON data; guard anyway
        raise ConfigError(f"grid value {value!r} of {key!r} cannot be represented")
    return f"{key}={text}"


def _grid(grid: Any, where: str) -> list[list[str]]:
    """Every combination of the grid as a list of ``--set`` items."""
    if grid is None:
        return [[]]
    if not isinstance(grid, Mapping):
        raise ConfigError(f"invalid {where}.grid: a table of DOTTED.KEY = [values]")
    axes = []
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"invalid {where}.grid.{key}: a non-empty list of values")
        axes.append([_override_text(key, v) for v in values])
    return [list(combo) for combo in itertools.product(*axes)]


def _methods(value: Any, where: str) -> list[str]:
    from autobalance import methods

    if value == "all":
        return methods.names()
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(m, str) for m in value):
        return list(value)
    raise ConfigError(f"invalid {where}.methods {value!r}: 'all' or a list of method names")


def expand_suite(
    data: Mapping[str, Any],
    name: str = "suite",
    *,
    overrides: Sequence[str] = (),
    seeds: int | Sequence[int] | None = None,
    only_methods: Iterable[str] | None = None,
) -> Suite:
    """The runs of a suite mapping (module docstring).

    Args:
        data: the suite (as read from its file).
        name: its name (for messages).
        overrides: ``DOTTED.KEY=VALUE`` items applied to every run, after the suite's values.
        seeds: replaces the suite's seeds (a count or a list).
        only_methods: keep only these methods (others are listed as skipped).
    """
    from autobalance import methods, problems

    for key in data:
        if key not in _SUITE_KEYS:
            raise ConfigError(unknown_name_message(f"key of suite {name!r}", key, _SUITE_KEYS))
    defaults = data.get("defaults", {})
    if not isinstance(defaults, Mapping):
        raise ConfigError(f"invalid suite {name!r}: [defaults] must be a table")
    experiments = data.get("experiments")
    if not isinstance(experiments, list) or not experiments:
        raise ConfigError(f"suite {name!r} has no [[experiments]]")
    suite_seeds = _seeds(data.get("seeds", 1), f"{name}.seeds")
    if seeds is not None:
        suite_seeds = _seeds(list(seeds) if not isinstance(seeds, int) else seeds, "--seeds")
    keep = set(only_methods) if only_methods is not None else None
    known_methods = set(methods.names())
    known_problems = set(problems.names())
    runs: list[RunSpec] = []
    skipped: list[str] = []
    for index, experiment in enumerate(experiments):
        if not isinstance(experiment, Mapping):
            raise ConfigError(f"invalid {name}.experiments[{index}]: must be a table")
        label = str(experiment.get("name", f"experiment{index}"))
        where = f"{name}.{label}"
        fields = {k: v for k, v in experiment.items() if k not in _EXPERIMENT_KEYS}
        base = _merge(defaults, fields)
        problem = base.get("problem", "helmholtz")
        if problem not in known_problems:
            skipped.append(f"{label}: problem {problem!r} is not registered")
            continue
        if "preset" in experiment:  # defaults, then the preset, then the experiment's keys
            try:
                preset = preset_config(experiment["preset"], problem)
            except AutoBalanceError as exc:
                raise ConfigError(f"suite {name!r}, experiment {label!r}: {exc}") from None
            base = _merge(_merge(defaults, preset), fields)
        exp_seeds = suite_seeds
        if "seeds" in experiment and seeds is None:
            exp_seeds = _seeds(experiment["seeds"], f"{where}.seeds")
        method_list = _methods(experiment.get("methods", base.get("method", "autobalance")), where)
        for method in method_list:
            if method not in known_methods:
                skipped.append(f"{label}: method {method!r} is not registered")
                continue
            if keep is not None and method not in keep:
                continue
            example = dict(methods.spec(method).example_params)
            cfg = _merge(base, {"method": method})
            cfg["method_params"] = _merge(example, cfg.get("method_params", {}))
            for combo in _grid(experiment.get("grid"), where):
                for seed in exp_seeds:
                    items = [*combo, f"seed={seed}", *overrides]
                    try:
                        config = config_from_dict(cfg, items)
                    except ConfigError as exc:
                        raise ConfigError(f"suite {name!r}, experiment {label!r}: {exc}") from None
                    runs.append(RunSpec(config, group=label))
    if keep is not None:
        for method in sorted(keep - known_methods):
            skipped.append(f"--methods: method {method!r} is not registered")
    return Suite(name, str(data.get("description", "")), runs, skipped)


def load_suite(
    name_or_path: str | os.PathLike[str],
    *,
    overrides: Sequence[str] = (),
    seeds: int | Sequence[int] | None = None,
    only_methods: Iterable[str] | None = None,
) -> Suite:
    """A shipped suite by name (:func:`suite_names`) or a suite file (TOML, YAML, JSON)."""
    text = str(name_or_path)
    path = Path(text)
    if path.suffix.lower() in CONFIG_SUFFIXES or path.exists():
        data = load_mapping(path)
        name = path.stem
    else:
        resource = _shipped().joinpath(f"{text}.toml")
        if not resource.is_file():
            raise ConfigError(unknown_name_message("suite", text, suite_names()))
        data = parse_text(resource.read_text(encoding="utf-8"), ".toml")
        name = text
    return expand_suite(data, name, overrides=overrides, seeds=seeds, only_methods=only_methods)
