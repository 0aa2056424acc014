"""SOAP and Shampoo from the optional extra: the library's own classes, usable as a plain
optimizer and as AutoBalance's per-loss base."""

from __future__ import annotations

import io
import os
import signal
import sys
from pathlib import Path

import pytest
import torch

from autobalance import AutoBalance, methods
from autobalance.errors import BaseOptimizerError, UnknownNameError
from autobalance.experiments import train
from autobalance.experiments.interrupts import RunInterrupted
from autobalance.phases import OPTIONAL_OPTIMIZERS, SOAP_PINN_DEFAULTS, optional_optimizer
from fault_tools import assert_same_results, tiny

pytorch_optimizer = pytest.importorskip("pytorch_optimizer")


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)
    ).double()


X = torch.linspace(-1, 1, 64, dtype=torch.float64).reshape(32, 2)


def _losses(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    u = net(X)
    return {"fit": (u - X[:, :1] * X[:, 1:]).pow(2).mean(), "anchor": u[:4].pow(2).mean()}


def _train(net: torch.nn.Module, opt: torch.optim.Optimizer, steps: int) -> None:
    for _ in range(steps):
        opt.zero_grad()
        sum(_losses(net).values()).backward()
        opt.step()


def test_the_classes_are_the_librarys_own() -> None:
    assert optional_optimizer("soap") is pytorch_optimizer.SOAP
    assert optional_optimizer("Shampoo") is pytorch_optimizer.Shampoo
    assert set(OPTIONAL_OPTIMIZERS) == {"soap", "shampoo"}


def test_steps_match_the_library_optimizer_exactly() -> None:
    ours, theirs = _net(), _net()
    opt = optional_optimizer("soap")(ours.parameters(), **SOAP_PINN_DEFAULTS)
    ref = pytorch_optimizer.SOAP(
        theirs.parameters(), lr=1e-3, betas=(0.9, 0.999), weight_decay=0.0,
        precondition_frequency=2,
    )  # fmt: skip
    _train(ours, opt, 5)  # the first step only sets up the preconditioner
    _train(theirs, ref, 5)
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(next(ours.parameters()), next(_net().parameters()))


@pytest.mark.parametrize(("name", "lr"), [("soap", 1e-2), ("shampoo", 0.5)])
def test_a_quadratic_decreases(name: str, lr: float) -> None:
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    W = torch.zeros(6, 4, dtype=torch.float64, requires_grad=True)
    opt = optional_optimizer(name)([W], lr=lr)
    start = float((W - A).pow(2).sum().detach())
    for _ in range(300):
        opt.zero_grad()
        (W - A).pow(2).sum().backward()
        opt.step()
    assert float((W - A).pow(2).sum().detach()) < 0.1 * start


def test_soap_resumes_bit_for_bit_as_a_plain_optimizer() -> None:
    net = _net()
    opt = optional_optimizer("soap")(net.parameters(), **SOAP_PINN_DEFAULTS)
    _train(net, opt, 7)
    buffer = io.BytesIO()
    torch.save({"net": net.state_dict(), "opt": opt.state_dict()}, buffer)
    _train(net, opt, 7)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)
    again = _net()
    again.load_state_dict(saved["net"])
    opt2 = optional_optimizer("soap")(again.parameters(), **SOAP_PINN_DEFAULTS)
    opt2.load_state_dict(saved["opt"])
    _train(again, opt2, 7)
    for a, b in zip(net.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)


def test_soap_is_an_autobalance_base() -> None:
    net = _net()
    opt = AutoBalance(net.parameters(), base=optional_optimizer("soap"), **SOAP_PINN_DEFAULTS)
    first = {k: float(v.detach()) for k, v in _losses(net).items()}
    for _ in range(200):
        opt.step(_losses(net))
    last = {k: float(v.detach()) for k, v in _losses(net).items()}
    assert last["fit"] < 0.5 * first["fit"]


def test_autobalance_over_soap_resumes_bit_for_bit() -> None:
    """SOAP keeps its step counter in ``param_groups[0]['step']``: the stock rule checkpoints
    it (``"groups"`` in each parameter's state) and puts it back on load."""

    def make() -> tuple[torch.nn.Module, AutoBalance]:
        net = _net()
        base = optional_optimizer("soap")
        return net, AutoBalance(net.parameters(), base=base, **SOAP_PINN_DEFAULTS)

    net, opt = make()
    for _ in range(6):
        opt.step(_losses(net))
    buffer = io.BytesIO()
    torch.save({"net": net.state_dict(), "opt": opt.state_dict()}, buffer)
    for _ in range(6):
        opt.step(_losses(net))
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    first = next(iter(saved["opt"]["state"].values()))
    assert {g["step"] for g in first["groups"].values()} == {6}
    again, opt2 = make()
    again.load_state_dict(saved["net"])
    opt2.load_state_dict(saved["opt"])
    for _ in range(6):
        opt2.step(_losses(again))
    for a, b in zip(net.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)


def test_unknown_name_and_missing_extra_are_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'soap'"):
        optional_optimizer("soapp")
    monkeypatch.setitem(sys.modules, "pytorch_optimizer", None)  # import raises ImportError
    with pytest.raises(ImportError, match=r"autobalance\[soap\]"):
        optional_optimizer("soap")


def test_soap_method_and_autobalance_base_take_the_pinn_defaults() -> None:
    net = _net()
    plain = methods.create("soap", net.parameters(), lr=1e-3)
    assert isinstance(plain.optimizer, pytorch_optimizer.SOAP)
    auto = methods.create("autobalance", net.parameters(), lr=1e-3, base="soap")
    custom = methods.create("soap", net.parameters(), lr=1e-3, precondition_frequency=5)
    for opt in (plain.optimizer, auto.optimizer):
        group = opt.param_groups[0]
        assert (group["weight_decay"], group["precondition_frequency"]) == (0.0, 2)
        assert tuple(group["betas"]) == (0.9, 0.999)
    assert custom.optimizer.param_groups[0]["precondition_frequency"] == 5
    shampoo = methods.create("shampoo", net.parameters(), lr=1e-3)
    assert isinstance(shampoo.optimizer, pytorch_optimizer.Shampoo)


@pytest.mark.parametrize(("method", "base"), [("soap", None), ("autobalance", "soap")])
def test_soap_runs_resume_bit_for_bit(tmp_path: Path, method: str, base: str | None) -> None:
    params = {"base": base} if base else {}
    config = tiny(method=method, method_params=params, steps=12, dtype="float64")
    split, straight = tmp_path / "split", tmp_path / "straight"
    count = 0

    def stop_at_5(info: object) -> None:
        nonlocal count
        count += 1
        if count == 5:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(RunInterrupted):
        train(config, split, progress=False, callback=stop_at_5)
    train(config, split, progress=False, resume=True)
    metrics = train(config, straight, progress=False)
    assert metrics["status"] == "ok"
    assert_same_results(split, straight)


def test_a_missing_extra_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pytorch_optimizer", None)  # import raises ImportError
    for method, params in (("soap", {}), ("autobalance", {"base": "soap"})):
        with pytest.raises(BaseOptimizerError, match=r"pip install 'autobalance\[soap\]'"):
            methods.create(method, _net().parameters(), lr=1e-3, **params)
