"""Method arguments: a method never silently becomes another one, and closure-only bases get
their reason whether given as a class or by name."""

from __future__ import annotations

import pytest
import torch

from autobalance import AutoBalance, methods
from autobalance.errors import BaseOptimizerError, HyperparameterError, UnknownNameError
from autobalance.methods.single import SummedLoss


def _params() -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.tensor([1.0, 2.0]))]


@pytest.mark.parametrize("name", ["lbfgs", "LBFGS", "LbFgS"])
def test_lbfgs_by_name_gets_the_closure_explanation(name: str) -> None:
    with pytest.raises(BaseOptimizerError, match="LBFGS cannot be used.*closure"):
        AutoBalance(_params(), base=name)
    with pytest.raises(BaseOptimizerError, match="closure"):
        methods.create("pcgrad", _params(), base=name)


def test_sparse_adam_by_name_gets_its_reason() -> None:
    with pytest.raises(BaseOptimizerError, match="SparseAdam needs sparse gradients"):
        AutoBalance(_params(), base="sparseadam")


def test_an_unregistered_torch_optimizer_by_name_says_to_pass_the_class() -> None:
    with pytest.raises(UnknownNameError, match=r"pass the class itself: base=torch.optim.ASGD"):
        AutoBalance(_params(), base="asgd")
    assert AutoBalance(_params(), base=torch.optim.ASGD).base is torch.optim.ASGD
    with pytest.raises(UnknownNameError, match="unknown base optimizer 'adamz'.*'adam'") as e:
        AutoBalance(_params(), base="adamz")
    assert "pass the class" not in str(e.value)


@pytest.mark.parametrize(("method", "base"), [("adam", "adamw"), ("adamw", "sgd")])
def test_a_fixed_base_cannot_be_overridden(method: str, base: str) -> None:
    """``--method adam --base adamw`` used to run AdamW silently (once: a raw TypeError)."""
    with pytest.raises(HyperparameterError, match=f"method '{method}' fixes base='{method}'"):
        methods.create(method, _params(), base=base)


def test_the_same_value_as_the_fixed_one_is_accepted() -> None:
    opt = methods.create("adam", _params(), base="Adam", lr=0.1)
    assert isinstance(opt, SummedLoss) and type(opt.optimizer) is torch.optim.Adam


def test_a_default_base_can_be_chosen() -> None:
    assert methods.create("autobalance", _params(), base="adam").base is torch.optim.Adam
    assert isinstance(methods.create("pcgrad", _params(), base="sgd").optimizer, torch.optim.SGD)


@pytest.mark.parametrize(
    ("method", "kwargs", "match"),
    [
        ("mtadam", {"base": "adam"}, "method 'mtadam' has no parameter 'base'; its parameters"),
        ("multiadam", {"bettas": (0.9, 0.9)}, "method 'multiadam' has no parameter 'bettas'"),
        ("pcgrad", {"aggregator": "mgda"}, "runs the aggregator 'pcgrad'; it takes no"),
        ("dwa", {"weighting": "ew"}, "method 'dwa' is its own weighting"),
    ],
)
def test_arguments_a_method_cannot_take_are_named(method: str, kwargs: dict, match: str) -> None:
    with pytest.raises(HyperparameterError, match=match):
        methods.create(method, _params(), **kwargs)


def test_check_arguments_builds_nothing_and_agrees_with_create() -> None:
    methods.check_arguments("autobalance", {"base": "adam", "lr": 1e-3})
    with pytest.raises(HyperparameterError, match="fixes base='adam'"):
        methods.check_arguments("adam", {"base": "rmsprop"})
    with pytest.raises(UnknownNameError, match="unknown method 'adamm'"):
        methods.check_arguments("adamm", {})
