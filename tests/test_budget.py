"""Equal-budget accounting: steps, backward passes, wall-clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from autobalance.errors import ConfigError
from autobalance.experiments import RunConfig, train
from autobalance.experiments.budget import Budget, parse_budget, step_cap


def tiny(**overrides: Any) -> RunConfig:
    fields: dict[str, Any] = {
        "problem_params": {"a2": 1, "n_residual": 64, "n_boundary": 32, "n_eval": 21},
        "net_params": {"width": 10, "depth": 2},
        "method": "adam",
        "steps": 40,
        "eval_every": 10,
        "log_every": 5,
        "checkpoint_every": 0,
        "device": "cpu",
    }
    fields.update(overrides)
    return RunConfig(**fields)


def test_parse_budget() -> None:
    assert parse_budget("steps=5000") == Budget("steps", 5000)
    assert parse_budget("backward=1e4") == Budget("backward", 10000)
    assert parse_budget("time=2.5").to_spec() == {"kind": "time", "value": 2.5}
    assert Budget.from_spec(None) is None
    assert Budget.from_spec({"kind": "time", "value": 3}) == Budget("time", 3)
    assert step_cap(Budget("backward", 70), 5) == 70 and step_cap(Budget("time", 1), 5) == 5
    for bad, match in [
        ("weeks=3", "budget kind 'weeks'"),
        ("steps", "KIND=VALUE"),
        ("steps=x", "not a number"),
        ("steps=2.5", "whole number"),
        ("time=-1", ">= 0"),
    ]:
        with pytest.raises(ConfigError, match=match):
            parse_budget(bad)
    with pytest.raises(ConfigError, match="unknown budget key 'limit'"):
        Budget.from_spec({"kind": "time", "value": 1, "limit": 2})


def test_equal_backward_budget_gives_fewer_steps_to_per_loss_methods(tmp_path: Path) -> None:
    budget = {"kind": "backward", "value": 30}
    adam = train(tiny(budget=budget), tmp_path / "adam", progress=False)
    per_loss = train(tiny(method="autobalance", budget=budget), tmp_path / "ab", progress=False)
    assert adam["steps"] == 30 and adam["backward_passes"] == 30
    assert per_loss["steps"] == 15 and per_loss["backward_passes"] == 30
    # the last step is logged and evaluated
    assert (tmp_path / "ab" / "eval.csv").read_text().splitlines()[-1].startswith("15,")
    assert (tmp_path / "ab" / "history.csv").read_text().splitlines()[-1].startswith("15,")


def test_steps_budget_and_steps_cap(tmp_path: Path) -> None:
    m = train(tiny(budget={"kind": "steps", "value": 7}), tmp_path / "a", progress=False)
    assert m["steps"] == 7 and m["budget"] == {"kind": "steps", "value": 7}
    m = train(tiny(steps=5, budget={"kind": "steps", "value": 9}), tmp_path / "b", progress=False)
    assert m["steps"] == 5  # steps stays an upper bound


def test_time_budget_stops_on_wall_clock(tmp_path: Path) -> None:
    m = train(tiny(steps=10**6, budget={"kind": "time", "value": 0.3}), tmp_path, progress=False)
    assert 0.3 <= m["wall_s"] < 3.0 and 0 < m["steps"] < 10**6


def test_budget_resume_stops_at_the_same_step(tmp_path: Path) -> None:
    budget = {"kind": "backward", "value": 25}
    full = train(tiny(method="autobalance", budget=budget), tmp_path / "full", progress=False)
    train(tiny(method="autobalance", budget=budget, steps=5), tmp_path / "split", progress=False)
    resumed = train(
        tiny(method="autobalance", budget=budget), tmp_path / "split", progress=False, resume=True
    )
    assert full["steps"] == resumed["steps"] == 12
    assert full["rel_l2"] == resumed["rel_l2"]


def test_invalid_budget_in_run_config() -> None:
    with pytest.raises(ConfigError, match="budget"):
        tiny(budget="time=3").validate()
    with pytest.raises(ConfigError, match="budget.value"):
        tiny(budget={"kind": "steps", "value": -1}).validate()
