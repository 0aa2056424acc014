"""Checkpoints, schedulers, closures, precomputed gradients and graph handling."""

from __future__ import annotations

import copy
import io

import pytest
import torch

from autobalance import AutoBalance
from autobalance.errors import AutoBalanceError


def _net() -> torch.nn.Module:
    torch.manual_seed(7)
    return torch.nn.Sequential(torch.nn.Linear(2, 12), torch.nn.Tanh(), torch.nn.Linear(12, 1))


def _losses(net: torch.nn.Module, step: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(step)
    x = torch.rand(32, 2, generator=gen)
    xb = torch.rand(8, 2, generator=gen).round()
    return {
        "residual": (net(x) - torch.sin(3 * x[:, :1])).pow(2).mean(),
        "boundary": 100 * net(xb).pow(2).mean(),
    }


def _roundtrip(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize(
    "options",
    [
        {"base": "adamw", "lr": 1e-2},
        {"base": "adam", "lr": 1e-2, "amsgrad": True, "weight_decay": 1e-3},
        {"base": "adamw", "lr": 1e-2, "groups": {"all": ["residual", "boundary"]}},
        {"base": "rmsprop", "lr": 1e-3, "momentum": 0.5},
        {"base": "sgd", "lr": 1e-3, "momentum": 0.9},
    ],
)
def test_state_dict_round_trip_is_bit_identical(options) -> None:
    straight = _net()
    opt = AutoBalance(straight.parameters(), **options)
    for t in range(20):
        opt.step(_losses(straight, t))

    first = _net()
    opt1 = AutoBalance(first.parameters(), **options)
    for t in range(10):
        opt1.step(_losses(first, t))
    saved_model = _roundtrip(first.state_dict())
    saved_opt = _roundtrip(opt1.state_dict())

    resumed = _net()
    with torch.no_grad():
        for p in resumed.parameters():
            p.add_(1.0)  # make sure the values come from the checkpoint
    resumed.load_state_dict(saved_model)
    opt2 = AutoBalance(resumed.parameters(), **options)
    opt2.load_state_dict(saved_opt)
    assert opt2.steps_taken == 10
    for t in range(10, 20):
        opt2.step(_losses(resumed, t))
    for p, q in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q)


def test_loaded_state_is_a_copy_not_shared_with_the_dict() -> None:
    net = _net()
    opt = AutoBalance(net.parameters(), lr=1e-2)
    opt.step(_losses(net, 0))
    saved = copy.deepcopy(opt.state_dict())
    before = saved["state"][0]["exp_avg"].clone()
    opt2 = AutoBalance(net.parameters(), lr=1e-2)
    opt2.load_state_dict(saved)
    opt2.step(_losses(net, 1))
    assert torch.equal(saved["state"][0]["exp_avg"], before)


def test_state_dict_with_other_groups_is_refused() -> None:
    net = _net()
    opt = AutoBalance(net.parameters(), lr=1e-2)
    opt.step(_losses(net, 0))
    other = AutoBalance(net.parameters(), lr=1e-2, groups={"all": ["residual", "boundary"]})
    with pytest.raises(AutoBalanceError, match="states"):
        other.load_state_dict(opt.state_dict())
    stock = AutoBalance(net.parameters(), base="rmsprop", lr=1e-2)
    with pytest.raises(AutoBalanceError, match="base optimizer"):
        stock.load_state_dict(opt.state_dict())
    with pytest.raises(AutoBalanceError, match="not made by AutoBalance"):
        opt.load_state_dict(torch.optim.Adam(net.parameters()).state_dict())


def test_lr_scheduler_acts_on_every_state() -> None:
    net_ref, net_ab = _net(), _net()
    ref = torch.optim.Adam(net_ref.parameters(), lr=1e-2)
    ab = AutoBalance(net_ab.parameters(), base="adam", lr=1e-2)
    sched_ref = torch.optim.lr_scheduler.StepLR(ref, step_size=3, gamma=0.1)
    sched_ab = torch.optim.lr_scheduler.StepLR(ab, step_size=3, gamma=0.1)
    for t in range(10):
        ref.zero_grad()
        _losses(net_ref, t)["residual"].backward()
        ref.step()
        ab.step({"residual": _losses(net_ab, t)["residual"]})
        sched_ref.step()
        sched_ab.step()
    assert ab.param_groups[0]["lr"] == pytest.approx(1e-5)
    for p, q in zip(net_ref.parameters(), net_ab.parameters(), strict=True):
        assert torch.equal(p, q)


def test_zero_lr_from_a_scheduler_freezes_parameters() -> None:
    net = _net()
    opt = AutoBalance(net.parameters(), lr=1e-2, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.0 if t >= 1 else 1.0)
    opt.step(_losses(net, 0))
    sched.step()
    frozen = [p.detach().clone() for p in net.parameters()]
    opt.step(_losses(net, 1))
    for p, q in zip(net.parameters(), frozen, strict=True):
        assert torch.equal(p, q)


def test_precomputed_grads_and_closure_equal_losses() -> None:
    nets = [_net(), _net(), _net()]
    opts = [AutoBalance(n.parameters(), lr=1e-2) for n in nets]
    for t in range(5):
        opts[0].step(_losses(nets[0], t))
        losses = _losses(nets[1], t)
        params = list(nets[1].parameters())
        grads = {k: list(torch.autograd.grad(v, params)) for k, v in losses.items()}
        opts[1].step(grads=grads)
        opts[2].step(lambda t=t: _losses(nets[2], t))
    for a, b, c in zip(*(n.parameters() for n in nets), strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_shared_graph_is_retained_and_separate_graphs_are_freed() -> None:
    net = _net()
    opt = AutoBalance(net.parameters(), lr=1e-2)
    x = torch.rand(16, 2)
    u = net(x)  # one forward pass feeding both losses: the graph must be retained once
    shared = {"a": u.pow(2).mean(), "b": (u - 1).pow(2).mean()}
    opt.step(shared)

    separate = {"a": net(x).pow(2).mean(), "b": (net(x) - 1).pow(2).mean()}
    opt.step(separate)
    for loss in separate.values():  # freed right after their own backward pass
        with pytest.raises(RuntimeError, match="second time"):
            torch.autograd.grad(loss, list(net.parameters()))


def test_add_param_group_after_first_step_gets_fresh_states() -> None:
    net = _net()
    extra = torch.nn.Parameter(torch.tensor([0.5]))
    opt = AutoBalance(net.parameters(), lr=1e-2)
    opt.step(_losses(net, 0))
    opt.add_param_group({"params": [extra], "lr": 0.1})
    losses = _losses(net, 1)
    losses["residual"] = losses["residual"] + extra.pow(2).sum()
    opt.step(losses)
    assert opt.state[extra]["step"].tolist() == [1.0, 0.0]
    # AdamW: decay once with the new group's lr, then the first Adam step lr·sign(g).
    assert extra.item() == pytest.approx(0.5 * (1 - 0.1 * 0.01) - 0.1, rel=1e-6)
