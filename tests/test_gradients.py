"""Per-loss gradients: which graphs are retained, and exact values where losses share a graph."""

from __future__ import annotations

import logging

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from autobalance import gradients, nets, problems
from autobalance.gradients import graph_nodes, loss_gradient, per_loss_gradients, retain_flags

F64 = torch.float64


def test_graph_nodes_are_the_non_leaf_nodes() -> None:
    x = torch.tensor([0.3, -1.2], requires_grad=True)
    loss = (x * 2).sin().sum()  # SumBackward ← SinBackward ← MulBackward ← AccumulateGrad(x)
    names = sorted(type(node).__name__ for node in graph_nodes(loss))
    assert names == ["MulBackward0", "SinBackward0", "SumBackward0"]
    assert graph_nodes(x.detach().sum()) == set()


def test_retain_flags_mark_exactly_the_losses_that_share_a_later_graph() -> None:
    x = torch.tensor([0.3, -1.2], requires_grad=True)
    h = (x * 2).sin()  # one intermediate feeding a and c, not b
    a, b, c = h.sum(), x.pow(2).sum(), h.exp().sum()
    assert retain_flags([a, b, c]) == [True, False, False]
    assert retain_flags([b, a, c]) == [False, True, False]
    assert retain_flags([c, a, b]) == [True, False, False]
    assert retain_flags([a, b]) == [False, False]
    assert retain_flags([a]) == [False] and retain_flags([]) == []
    assert retain_flags([a, a.detach()]) == [False, False]  # a detached loss has no graph
    # Only the leaf is shared: nothing to retain.
    assert retain_flags([x.sin().sum(), x.cos().sum(), x.sum()]) == [False, False, False]


# Shared intermediates of one "forward pass" of θ; each loss combines some of them.
_SHARED = (
    lambda t: (t * 1.5).sin(),
    lambda t: t.pow(3).cumsum(0),
    lambda t: t.tanh() * t[0],
)
_HEADS = (
    lambda h: h.pow(2).mean(),
    lambda h: (h - 0.3).abs().sum(),
    lambda h: h.exp().mean(),
)


def _losses(theta: torch.Tensor, recipe: list[tuple[list[int], int]]) -> list[torch.Tensor]:
    shared = [f(theta) for f in _SHARED]
    return [_HEADS[head](sum(shared[i] for i in uses) + theta) for uses, head in recipe]


@settings(max_examples=40, deadline=None)
@given(
    recipe=st.lists(
        st.tuples(st.lists(st.integers(0, 2), max_size=3, unique=True), st.integers(0, 2)),
        min_size=1,
        max_size=4,
    ),
    seed=st.integers(0, 2**16),
)
def test_per_loss_gradients_equal_separate_graphs_for_any_sharing(
    recipe: list[tuple[list[int], int]], seed: int
) -> None:
    """Whatever the losses share, each gradient is the one of its own graph, bit for bit, and
    the last loss's backward frees its graph (no later loss needs it)."""
    theta = torch.randn(4, generator=torch.Generator().manual_seed(seed), dtype=F64)
    theta.requires_grad_()
    losses = _losses(theta, recipe)
    got = per_loss_gradients([f"L{k}" for k in range(len(losses))], losses, [theta])
    for k, grads in enumerate(got):
        (expected,) = torch.autograd.grad(_losses(theta, recipe)[k], [theta])
        assert torch.equal(grads[0], expected)
    with pytest.raises(RuntimeError, match="second time"):  # every head saves tensors
        torch.autograd.grad(losses[-1], [theta])


def test_kovasznay_residual_terms_share_one_graph_and_get_their_own_gradients() -> None:
    """The three PDE terms of Kovasznay come from one forward pass (retained for the later ones);
    each gradient equals that of the term rebuilt from a fresh forward pass, bit for bit."""
    problem = problems.create("kovasznay", n_residual=32, n_boundary=16)
    torch.manual_seed(0)
    net = nets.create("mlp", problem.in_dim, problem.out_dim, width=8, depth=2).double()
    params = list(net.parameters())
    batch = problem.sample(torch.Generator().manual_seed(1), "cpu", F64)
    losses = problem.losses(net, batch)
    assert retain_flags(list(losses.values())) == [True, True, False, False]
    got = per_loss_gradients(list(losses), list(losses.values()), params)
    for k, name in enumerate(losses):
        expected = torch.autograd.grad(problem.losses(net, batch)[name], params, allow_unused=True)
        for g, e in zip(got[k], expected, strict=True):
            assert (g is None and e is None) or torch.equal(g, e)
    # The continuity residual u_x + v_y does not reach the output layer's bias.
    assert got[2][-1] is None and all(g is not None for g in got[0])


class _Spy:
    """Stands in for torch's engine: counts the calls, then forwards them."""

    def __init__(self, engine: object) -> None:
        self.engine, self.calls = engine, 0

    def run_backward(self, *args: object) -> object:
        self.calls += 1
        return self.engine.run_backward(*args)  # type: ignore[attr-defined]


def test_loss_gradient_is_autograd_grad_bit_for_bit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The direct engine call gives autograd.grad's tensors (None for an unused input), frees
    the graph unless told to retain it, and is the path taken for a scalar CPU loss."""
    spy = _Spy(gradients._ENGINE)
    monkeypatch.setattr(gradients, "_ENGINE", spy)
    x = torch.tensor([0.3, -1.2, 2.0], dtype=F64, requires_grad=True)
    unused = torch.ones(2, dtype=F64, requires_grad=True)
    for shape in ((), (1,), (1, 1)):
        loss = (x.sin() * x).sum().reshape(shape)
        got = loss_gradient(loss, (x, unused), retain=True)
        expected = torch.autograd.grad(loss, (x, unused), retain_graph=True, allow_unused=True)
        assert torch.equal(got[0], expected[0]) and got[1] is None and expected[1] is None
    assert spy.calls == 3
    loss_gradient(loss, (x,), retain=False)
    with pytest.raises(RuntimeError, match="second time"):
        torch.autograd.grad(loss, (x,))


def test_loss_gradient_leaves_other_cases_to_autograd_grad(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A loss with several elements is refused as autograd.grad refuses it; with autograd's
    debug logging on, autograd.grad runs (and logs); neither reaches the direct call."""
    spy = _Spy(gradients._ENGINE)
    monkeypatch.setattr(gradients, "_ENGINE", spy)
    x = torch.tensor([0.3, -1.2], dtype=F64, requires_grad=True)
    with pytest.raises(RuntimeError, match="only for scalar outputs"):
        loss_gradient(x * 2, (x,), retain=False)
    with pytest.raises(RuntimeError, match="real scalar outputs"):
        loss_gradient((x * 1j).sum(), (x,), retain=False)
    log = gradients._AUTOGRAD_LOG
    level = log.level
    log.setLevel(logging.DEBUG)  # setLevel, not the attribute: it clears the logger's cache
    try:
        (got,) = loss_gradient((x * x).sum(), (x,), retain=False)
    finally:
        log.setLevel(level)
    assert torch.equal(got, 2 * x.detach())
    assert spy.calls == 0
