"""With one loss, AutoBalance(base=X) reproduces X step for step."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from autobalance import AutoBalance


class _SubclassedAdam(torch.optim.Adam):
    """A user subclass: AutoBalance must not assume it is plain Adam (stock path)."""


class _SubclassedAdamW(torch.optim.AdamW):
    """Decoupled decay through the stock path: applied once by AutoBalance."""


def _model(dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    torch.manual_seed(1)
    return torch.nn.Sequential(
        torch.nn.Linear(3, 16),
        torch.nn.Tanh(),
        torch.nn.Linear(16, 16),
        torch.nn.Tanh(),
        torch.nn.Linear(16, 2),
    ).to(dtype)


def _loss(model: torch.nn.Module, step: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(step)
    dtype = next(model.parameters()).dtype
    x = torch.randn(64, 3, generator=gen, dtype=dtype)
    target = torch.sin(x[:, :2] * 2)
    return (model(x) - target).pow(2).mean()


def _run_pair(base: type[torch.optim.Optimizer], steps: int, dtype=torch.float32, **kw):
    ref_model = _model(dtype)
    ab_model = copy.deepcopy(ref_model)
    ref = base(ref_model.parameters(), **kw)
    ab = AutoBalance(ab_model.parameters(), base=base, **kw)
    for t in range(steps):
        ref.zero_grad()
        _loss(ref_model, t).backward()
        ref.step()
        ab.step({"only": _loss(ab_model, t)})
    return list(ref_model.parameters()), list(ab_model.parameters())


@pytest.mark.parametrize(
    ("base", "kwargs"),
    [
        (torch.optim.Adam, {"lr": 1e-2}),
        (torch.optim.Adam, {"lr": 1e-2, "weight_decay": 0.1}),
        (torch.optim.Adam, {"lr": 1e-2, "amsgrad": True, "betas": (0.8, 0.95)}),
        (torch.optim.Adam, {"lr": 1e-2, "maximize": True}),
        (torch.optim.AdamW, {"lr": 1e-2}),
        (torch.optim.AdamW, {"lr": 3e-3, "weight_decay": 0.5, "eps": 1e-6}),
    ],
)
def test_single_loss_reproduces_adam_bit_for_bit(base, kwargs) -> None:
    ref, ab = _run_pair(base, 30, **kwargs)
    for p, q in zip(ref, ab, strict=True):
        assert torch.equal(p, q), (p - q).abs().max()


@pytest.mark.parametrize(
    ("base", "kwargs"),
    [
        (torch.optim.RMSprop, {"lr": 1e-3}),
        (
            torch.optim.RMSprop,
            {"lr": 1e-3, "momentum": 0.9, "centered": True, "weight_decay": 0.01},
        ),
        (torch.optim.SGD, {"lr": 1e-2, "momentum": 0.9, "nesterov": True}),
        (torch.optim.NAdam, {"lr": 1e-2, "decoupled_weight_decay": True, "weight_decay": 0.1}),
        (torch.optim.Adagrad, {"lr": 1e-2}),
        (_SubclassedAdam, {"lr": 1e-2, "weight_decay": 0.1}),  # runs on the stock path
        (_SubclassedAdamW, {"lr": 1e-2, "weight_decay": 0.1}),  # decoupled decay on the stock path
    ],
)
def test_single_loss_reproduces_any_base(base, kwargs) -> None:
    ref, ab = _run_pair(base, 30, dtype=torch.float64, **kwargs)
    for p, q in zip(ref, ab, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)


def test_registered_base_names_are_the_torch_classes() -> None:
    ref, _ = _run_pair(torch.optim.RMSprop, 5, dtype=torch.float64, lr=1e-3)
    model = _model(torch.float64)
    opt = AutoBalance(model.parameters(), base="rmsprop", lr=1e-3)
    for t in range(5):
        opt.step({"only": _loss(model, t)})
    for p, q in zip(ref, model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(
    lr=st.floats(1e-4, 1e-1),
    beta1=st.floats(0.0, 0.99),
    beta2=st.floats(0.5, 0.9999),
    weight_decay=st.floats(0.0, 0.5),
    amsgrad=st.booleans(),
    decoupled=st.booleans(),
)
def test_single_loss_matches_adam_for_any_hyperparameters(
    lr, beta1, beta2, weight_decay, amsgrad, decoupled
) -> None:
    base = torch.optim.AdamW if decoupled else torch.optim.Adam
    ref, ab = _run_pair(
        base, 8, lr=lr, betas=(beta1, beta2), weight_decay=weight_decay, amsgrad=amsgrad
    )
    for p, q in zip(ref, ab, strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize("base", [torch.optim.Adam, torch.optim.AdamW])
def test_scalar_parameters_follow_the_base_optimizer(base: type[torch.optim.Optimizer]) -> None:
    """0-d parameters (PirateNet's gates) work and match the base optimizer (two losses)."""
    torch.manual_seed(0)
    ref_params = [torch.nn.Parameter(torch.tensor(0.5)), torch.nn.Parameter(torch.randn(3))]
    ab_params = [torch.nn.Parameter(p.detach().clone()) for p in ref_params]
    x = torch.randn(8, 3)

    def losses(a: torch.Tensor, w: torch.Tensor) -> dict[str, torch.Tensor]:
        pred = a * torch.tanh(x @ w)
        return {"fit": (pred - 1).pow(2).mean(), "small": 0.1 * a.pow(2)}

    ref = base(ref_params, lr=1e-2)
    ab = AutoBalance(ab_params, base=base, lr=1e-2)
    for _ in range(5):
        ab.step(losses(*ab_params))
    # One loss through AutoBalance equals the base optimizer on it: check with "fit" only.
    ab_one = [torch.nn.Parameter(p.detach().clone()) for p in ref_params]
    opt_one = AutoBalance(ab_one, base=base, lr=1e-2)
    for _ in range(5):
        ref.zero_grad()
        losses(*ref_params)["fit"].backward()
        ref.step()
        opt_one.step({"fit": losses(*ab_one)["fit"]})
    assert ab_params[0].shape == torch.Size([])
    for p, q in zip(ref_params, ab_one, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    assert not torch.equal(ab_params[0], ref_params[0])
