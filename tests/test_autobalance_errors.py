"""Every bad input gets an AutoBalanceError whose message names the problem."""

from __future__ import annotations

import math

import pytest
import torch

from autobalance import AutoBalance, NonFiniteLossError
from autobalance.errors import (
    BaseOptimizerError,
    HyperparameterError,
    LossNameError,
    LossValueError,
    UnknownNameError,
)
from autobalance.methods.multistate import MTAdam


@pytest.fixture
def setup():
    torch.manual_seed(0)
    net = torch.nn.Linear(2, 1)
    x = torch.randn(8, 2)
    return net, x


def _two(net, x):
    return {"residual": net(x).pow(2).mean(), "boundary": (net(x) - 1).pow(2).mean()}


def test_loss_name_not_present_at_first_step(setup) -> None:
    net, x = setup
    opt = AutoBalance(net.parameters())
    opt.step(_two(net, x))
    losses = _two(net, x)
    losses["data"] = losses.pop("boundary")
    with pytest.raises(
        LossNameError, match=r"step 2.*unknown loss name\(s\) 'data'.*missing.*'boundary'"
    ):
        opt.step(losses)


def test_missing_loss(setup) -> None:
    net, x = setup
    opt = AutoBalance(net.parameters())
    opt.step(_two(net, x))
    with pytest.raises(LossNameError, match="missing loss name.*'boundary'"):
        opt.step({"residual": net(x).pow(2).mean()})


def test_non_scalar_loss(setup) -> None:
    net, x = setup
    opt = AutoBalance(net.parameters())
    with pytest.raises(LossValueError, match=r"'residual' is not a scalar: shape \(8, 1\)"):
        opt.step({"residual": net(x).pow(2), "boundary": net(x).mean()})


def test_loss_without_path_to_parameters(setup) -> None:
    net, x = setup
    opt = AutoBalance(net.parameters())
    other = torch.nn.Parameter(torch.ones(1))
    with pytest.raises(LossValueError, match="'detached' has no path"):
        opt.step({"ok": net(x).mean(), "detached": net(x).mean().detach()})
    with pytest.raises(LossValueError, match="'foreign' has no path"):
        opt.step({"ok": net(x).mean(), "foreign": other.sum()})


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nonfinite_loss_names_loss_and_step(setup, bad) -> None:
    net, x = setup
    opt = AutoBalance(net.parameters())
    opt.step(_two(net, x))
    before = [p.detach().clone() for p in net.parameters()]
    losses = _two(net, x)
    losses["boundary"] = losses["boundary"] * bad
    with pytest.raises(NonFiniteLossError, match="loss 'boundary' is (nan|inf) at step 2") as err:
        opt.step(losses)
    assert err.value.loss == "boundary" and err.value.step == 2
    for p, q in zip(net.parameters(), before, strict=True):
        assert torch.equal(p, q)


def test_nonfinite_gradient_is_caught(setup) -> None:
    net, x = setup
    opt = AutoBalance(net.parameters())
    w = next(net.parameters())
    with pytest.raises(NonFiniteLossError, match="gradient of loss 'sqrt'"):
        opt.step({"ok": net(x).mean(), "sqrt": (w - w.detach()).abs().sum().sqrt()})


def test_nonfinite_skip_leaves_everything_untouched(setup) -> None:
    net, x = setup
    opt = AutoBalance(net.parameters(), nonfinite="skip")
    opt.step(_two(net, x))
    state = {k: v.clone() for k, v in opt.state[net.weight].items()}
    before = [p.detach().clone() for p in net.parameters()]
    losses = _two(net, x)
    losses["residual"] = losses["residual"] * math.nan
    info = opt.step(losses)
    assert info.skipped and "residual" in info.reason and info.step == 1
    assert opt.steps_taken == 1
    for p, q in zip(net.parameters(), before, strict=True):
        assert torch.equal(p, q)
    for k, v in opt.state[net.weight].items():
        assert torch.equal(v, state[k])


def test_unknown_base_lists_known_ones(setup) -> None:
    net, _ = setup
    with pytest.raises(UnknownNameError, match="'adamm'.*Did you mean 'adam'.*Known.*rmsprop"):
        AutoBalance(net.parameters(), base="adamm")


def test_closure_optimizer_is_refused(setup) -> None:
    net, _ = setup
    with pytest.raises(BaseOptimizerError, match="LBFGS.*closure"):
        AutoBalance(net.parameters(), base=torch.optim.LBFGS)
    with pytest.raises(BaseOptimizerError, match="Optimizer subclass"):
        AutoBalance(net.parameters(), base=torch.nn.Linear)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"lr": -1.0}, "learning rate"),
        ({"betas": (1.5, 0.9)}, "beta"),
        ({"eps": -1.0}, "epsilon"),
        ({"lrr": 1e-3}, "no hyperparameter 'lrr'.*lr, betas"),
        ({"combine": "median"}, "combine must be"),
        ({"combine": {"residual": -1.0}}, "finite number >= 0"),
        ({"groups": {"pde": []}}, "at least one loss"),
        ({"groups": {"a": ["x"], "b": ["x"]}}, "two groups"),
        ({"nonfinite": "ignore"}, "nonfinite"),
    ],
)
def test_invalid_hyperparameters(setup, kwargs, pattern) -> None:
    net, _ = setup
    with pytest.raises(HyperparameterError, match=pattern):
        AutoBalance(net.parameters(), **kwargs)


def test_invalid_per_group_hyperparameter(setup) -> None:
    net, _ = setup
    with pytest.raises(HyperparameterError, match="learning rate"):
        AutoBalance([{"params": [net.weight], "lr": -0.5}, {"params": [net.bias]}])


def test_groups_and_weights_must_name_real_losses(setup) -> None:
    net, x = setup
    opt = AutoBalance(net.parameters(), groups={"pde": ["residul"]})
    with pytest.raises(LossNameError, match="'residul', which is not among the losses"):
        opt.step(_two(net, x))
    opt = AutoBalance(net.parameters(), combine={"residual": 1.0})
    with pytest.raises(LossNameError, match="missing 'boundary'"):
        opt.step(_two(net, x))


def test_bad_precomputed_grads(setup) -> None:
    net, _ = setup
    opt = AutoBalance(net.parameters())
    with pytest.raises(
        LossValueError, match=r"grads\['a'\] must be a list with one entry.*expected 2"
    ):
        opt.step(grads={"a": [torch.zeros(1, 2)]})
    with pytest.raises(LossValueError, match=r"grads\['a'\]\[1\] has shape \(3,\)"):
        opt.step(grads={"a": [torch.zeros(1, 2), torch.zeros(3)]})
    with pytest.raises(LossValueError, match="needs the losses"):
        opt.step()


def test_errors_are_value_errors_not_torch_internals(setup) -> None:
    net, _ = setup
    opt = AutoBalance(net.parameters())
    with pytest.raises(ValueError):
        opt.step({"residual": "not a tensor"})  # type: ignore[dict-item]


@pytest.mark.parametrize("make", [AutoBalance, MTAdam], ids=["AutoBalance", "MTAdam"])
def test_no_parameters_is_a_named_error_not_torchs(make) -> None:
    with pytest.raises(HyperparameterError, match="given no parameters to optimise"):
        make([])
    with pytest.raises(HyperparameterError, match="given no parameters to optimise"):
        make(p for p in ())  # an exhausted generator, as model.parameters() of no model
