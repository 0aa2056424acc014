"""Per-loss gradients: which graphs are retained, and exact values where losses share a graph."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from autobalance import nets, problems
from autobalance.gradients import graph_nodes, per_loss_gradients, retain_flags

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
