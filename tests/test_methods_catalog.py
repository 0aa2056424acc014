"""The method catalog: every method by name, its family and parameters; weightings by name."""

from __future__ import annotations

import math

import pytest
import torch

from autobalance import methods
from autobalance.catalog import Catalog
from autobalance.errors import HyperparameterError, UnknownNameError
from autobalance.methods import registry

FAMILIES = {"single-optimizer", "weighting", "aggregator", "multi-state"}


def test_every_method_is_in_one_catalog_with_a_family_and_a_summary() -> None:
    assert isinstance(methods.METHODS, Catalog) and methods.METHODS is registry.METHODS
    entries = methods.describe()
    assert [e.name for e in entries] == sorted(
        methods.names(), key=lambda n: (methods.spec(n).family, n)
    )
    assert {e.family for e in entries} == FAMILIES
    assert all(e.summary for e in entries)
    assert set(methods.names("multi-state")) == {
        "autobalance",
        "autobalance-balanced-anneal",
        "autobalance-balanced-concede",
        "autobalance-balanced-consensus",
        "autobalance-consensus",
        "autobalance-consensus-mean",
        "autobalance-floor",
        "autobalance-protected",
        "m-config",
        "mtadam",
        "multiadam",
    }
    assert {"adam", "adamw", "shampoo", "soap"} == set(methods.names("single-optimizer"))
    assert methods.spec("fixed").example_params == {"weights": {"residual": 1.0, "boundary": 10.0}}


def test_unknown_method_names_the_closest() -> None:
    with pytest.raises(UnknownNameError, match="unknown method 'autobalanse'.*'autobalance'"):
        methods.create("autobalanse", [torch.zeros(1, requires_grad=True)])


def test_weighting_parameters_are_read_from_their_fields() -> None:
    assert methods.METHODS.parameters("dwa") == {
        "temperature": 2.0,
        "every": 1,
        "base": "adam",
        "nonfinite": "raise",
    }
    assert methods.METHODS.parameters("relobralo")["seed"] == 0
    assert methods.METHODS.parameters("adamw") == {"base": "adamw", "nonfinite": "raise"}


def test_weighting_factory_routes_hyperparameters_and_base_arguments() -> None:
    theta = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    m = methods.create("dwa", [theta], temperature=3.0, base="sgd", lr=0.5)
    assert isinstance(m, methods.WeightingMethod)
    assert m.weighting.temperature == 3.0 and m.optimizer.param_groups[0]["lr"] == 0.5
    assert isinstance(m.optimizer, torch.optim.SGD)
    with pytest.raises(HyperparameterError, match="SGD has no hyperparameter 'temprature'"):
        methods.create("dwa", [theta], temprature=3.0, base="sgd", lr=0.5)
    with pytest.raises(HyperparameterError, match="temperature must be a finite number > 0"):
        methods.create("dwa", [theta], temperature=-1.0)


def test_weighting_state_is_data_saved_by_field_name() -> None:
    theta = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    m = methods.create("relobralo", [theta], base="sgd", lr=0.01)
    for _ in range(3):
        m.step({"residual": theta.square().sum(), "boundary": (theta.sum() - 1) ** 2})
    state = m.state_dict()["extra"]
    assert set(state) == {"generator", "initial", "previous", "lambdas"}
    assert isinstance(state["generator"], torch.Tensor) and len(state["lambdas"]) == 2
    state["lambdas"].append(99.0)  # a copy: the method's own list is not touched
    assert len(m.weighting.lambdas) == 2


def test_methods_catalog_add_is_found_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    fresh: Catalog = Catalog("method")
    monkeypatch.setattr(registry, "METHODS", fresh)
    factory = methods.WeightingFactory(methods.weighting.EqualWeights)
    assert registry.METHODS.add("ew2", factory, family="weighting", summary="EW again") is factory
    assert registry.names() == ["ew2"] and registry.spec("ew2").summary == "EW again"


def test_summed_loss_reports_one_backward_and_the_sum_state() -> None:
    theta = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    m = methods.create("adam", [theta], lr=0.1, nonfinite="skip")
    info = m.step({"only": theta.square().sum()})  # one loss is fine for the summed loss
    assert info.backward_passes == 1 and info.losses["only"].state == "sum"
    assert math.isnan(info.losses["only"].grad_norm) and info.grad_cosines == ()
    skipped = m.step({"only": theta.sum() * math.nan})
    assert skipped.skipped and skipped.reason == "loss 'only' is nan at step 2"
    assert m.state_dict()["steps"] == 1
