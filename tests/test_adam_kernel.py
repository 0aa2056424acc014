"""The multi-state Adam update as a pure function, and the two state rules behind one protocol."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from autobalance.errors import HyperparameterError
from autobalance.optim.adam_rule import AdamRule, multi_state_adam
from autobalance.optim.buckets import make_buckets
from autobalance.optim.state_rule import select_rule
from autobalance.optim.stock_rule import StockRule

HYPER = {"lr": 0.1, "beta1": 0.9, "beta2": 0.999, "eps": 0.0}


def _buffers(states: int, numel: int, params: int) -> dict[str, torch.Tensor]:
    return {
        "exp_avg": torch.zeros(states, numel),
        "exp_avg_sq": torch.zeros(states, numel),
        "steps": torch.zeros(states, params),
    }


def _step(buffers: dict[str, torch.Tensor], grads: torch.Tensor, reached: torch.Tensor, **kw):
    return multi_state_adam(
        grads,
        buffers["exp_avg"],
        buffers["exp_avg_sq"],
        None,
        buffers["steps"],
        reached,
        sizes=[2, 1],
        **{**HYPER, **kw},
    )


def test_first_step_is_lr_times_sign_and_only_the_buffers_change() -> None:
    # Adam's first step with eps = 0: m̂ = g, v̂ = g², so u = lr·g/|g| = lr·sign(g).
    grads = torch.tensor([[2.0, -3.0, 0.5], [-1.0, 4.0, -2.0]])
    before = grads.clone()
    buffers = _buffers(2, 3, 2)
    reached = torch.ones(2, 2, dtype=torch.bool)
    updates = _step(buffers, grads, reached)
    torch.testing.assert_close(updates, 0.1 * grads.sign())
    assert torch.equal(grads, before)  # inputs other than the buffers are left alone
    torch.testing.assert_close(buffers["exp_avg"], 0.1 * grads)
    assert buffers["steps"].tolist() == [[1.0, 1.0], [1.0, 1.0]]


def test_an_unreached_parameter_keeps_its_moments_count_and_gets_no_update() -> None:
    grads = torch.tensor([[2.0, -3.0, 0.5], [-1.0, 4.0, -2.0]])
    buffers = _buffers(2, 3, 2)
    reached = torch.tensor([[True, True], [True, False]])  # state 1 misses parameter 1
    updates = _step(buffers, grads, reached)
    assert updates[1, 2].item() == 0.0 and buffers["exp_avg"][1, 2].item() == 0.0
    assert buffers["steps"].tolist() == [[1.0, 1.0], [1.0, 0.0]]
    # The next step: state 1 is at t = 2 for parameter 0 and t = 1 for parameter 1 (per-element
    # bias correction), so its first update of parameter 1 is lr·sign(g) again.
    updates = _step(buffers, grads, torch.ones(2, 2, dtype=torch.bool))
    assert updates[1, 2].item() == pytest.approx(-0.1)
    assert buffers["steps"].tolist() == [[2.0, 2.0], [2.0, 1.0]]


def test_coupled_weight_decay_and_maximize() -> None:
    params = torch.tensor([1.0, -1.0, 2.0])
    grads = torch.tensor([[0.5, 0.5, -3.0]])
    buffers = _buffers(1, 3, 2)
    updates = _step(buffers, grads, torch.ones(1, 2, dtype=torch.bool), weight_decay=1.0,
                    params=params)  # fmt: skip
    # g + λθ = (1.5, −0.5, −1): the signs of the decayed gradient.
    torch.testing.assert_close(updates, 0.1 * torch.tensor([[1.0, -1.0, -1.0]]))
    assert buffers["steps"].sum().item() == 2.0
    ascent = _step(_buffers(1, 3, 2), grads, torch.ones(1, 2, dtype=torch.bool), maximize=True)
    torch.testing.assert_close(ascent, -0.1 * grads.sign())


@settings(max_examples=30, deadline=None)
@given(
    states=st.integers(1, 3),
    steps=st.integers(1, 4),
    lr=st.floats(1e-4, 1.0),
    beta1=st.floats(0.0, 0.99),
    beta2=st.floats(0.5, 0.9999),
    eps=st.floats(1e-10, 1e-3),
    amsgrad=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_every_state_is_an_independent_torch_adam(
    states: int, steps: int, lr: float, beta1: float, beta2: float, eps: float, amsgrad: bool,
    seed: int,
) -> None:  # fmt: skip
    """Each row's moments equal those of its own ``torch.optim.Adam``, bit for bit."""
    gen = torch.Generator().manual_seed(seed)
    shapes = [(2, 3), (4,)]
    refs = [[torch.zeros(s, requires_grad=True) for s in shapes] for _ in range(states)]
    opts = [
        torch.optim.Adam(r, lr=lr, betas=(beta1, beta2), eps=eps, amsgrad=amsgrad) for r in refs
    ]
    exp_avg, exp_avg_sq, vmax = (torch.zeros(states, 10) for _ in range(3))
    counts = torch.zeros(states, 2)
    for _ in range(steps):
        grads = torch.randn(states, 10, generator=gen)
        updates = multi_state_adam(
            grads, exp_avg, exp_avg_sq, vmax if amsgrad else None, counts,
            torch.ones(states, 2, dtype=torch.bool), sizes=[6, 4], lr=lr, beta1=beta1,
            beta2=beta2, eps=eps,
        )  # fmt: skip
        for s, (ref, opt) in enumerate(zip(refs, opts, strict=True)):
            before = torch.cat([p.detach().reshape(-1) for p in ref])
            for p, g in zip(ref, grads[s].split([6, 4]), strict=True):
                p.grad = g.view(p.shape).clone()
            opt.step()
            after = torch.cat([p.detach().reshape(-1) for p in ref])
            torch.testing.assert_close(updates[s], before - after, rtol=1e-5, atol=1e-7)
    for s, (ref, opt) in enumerate(zip(refs, opts, strict=True)):
        state = [opt.state[p] for p in ref]
        torch.testing.assert_close(
            exp_avg[s], torch.cat([t["exp_avg"].reshape(-1) for t in state]), rtol=0, atol=0
        )
        torch.testing.assert_close(
            exp_avg_sq[s], torch.cat([t["exp_avg_sq"].reshape(-1) for t in state]), rtol=0, atol=0
        )
    assert counts.eq(steps).all()


def test_select_rule_picks_the_flat_adam_rule_or_the_stock_rule() -> None:
    w = torch.zeros(2, requires_grad=True)
    adamw = select_rule(torch.optim.AdamW, [{"params": [w], "weight_decay": 0.01}])
    assert isinstance(adamw, AdamRule) and adamw.decoupled and adamw.name == "adam"
    assert not select_rule(torch.optim.Adam, [{"params": [w]}]).decoupled
    rmsprop = select_rule(torch.optim.RMSprop, [{"params": [w]}])
    assert isinstance(rmsprop, StockRule) and rmsprop.name == "stock"
    with pytest.raises(HyperparameterError, match="agree on decoupled_weight_decay"):
        select_rule(
            torch.optim.Adam,
            [{"params": [w], "decoupled_weight_decay": True}, {"params": [w]}],
        )


@pytest.mark.parametrize("base", [torch.optim.Adam, torch.optim.RMSprop])
def test_both_rules_keep_states_through_the_same_protocol(base: type) -> None:
    """init → updates → load from the per-parameter dicts: the loaded states continue alike."""
    params = [torch.zeros(2, 2), torch.zeros(3)]
    groups = [{**base([torch.zeros(1)]).defaults, "params": params}]
    (bucket,) = make_buckets(groups)
    rule = select_rule(base, groups)
    state, per_param = rule.init(bucket, groups[0], ["a", "b"])
    assert len(per_param) == 2
    grads = torch.arange(14.0).view(2, 7) - 5
    reached = torch.ones(2, 2, dtype=torch.bool)
    rule.updates(bucket, state, grads, reached, groups[0])
    loaded, _ = rule.load(bucket, groups[0], per_param)
    first = rule.updates(bucket, state, grads, reached, groups[0])
    second = rule.updates(bucket, loaded, grads, reached, groups[0])
    assert first.shape == (2, 7)
    if base is torch.optim.Adam:  # the loaded Adam buffers are copies: they continue alike
        torch.testing.assert_close(first, second, rtol=0, atol=0)
    else:  # the stock instances share the per-parameter dicts: the second step is the third
        assert not torch.equal(first, second)
