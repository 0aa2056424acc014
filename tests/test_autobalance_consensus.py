"""Issue 15: AutoBalance with a post-combine rule; the ``autobalance-consensus`` method."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from autobalance import AutoBalance, methods
from autobalance.errors import AutoBalanceError, HyperparameterError, UnknownNameError
from autobalance.optim.combine import RULES, FlooredVotes, ProtectedConsensus

PROP = settings(max_examples=25, deadline=None)


def quadratic_losses(theta: torch.Tensor, scales, centers) -> dict[str, torch.Tensor]:
    """``L_k = Σ_i c_{k,i} (θ_i − a_{k,i})²``."""
    return {
        f"L{k}": (torch.as_tensor(c, dtype=theta.dtype) * (theta - torch.as_tensor(a)) ** 2).sum()
        for k, (c, a) in enumerate(zip(scales, centers, strict=True))
    }


def test_consensus_first_step_closed_form() -> None:
    # L0 = (θ1 − 1)² + (θ2 − 1)², L1 = 10(θ1 + 1)² + 0.1(θ2 + 1)² at θ = 0:
    # g0 = (−2, −2), g1 = (20, 0.2), Σ g = (18, −1.8).  Adam's first step u_k = lr·g/(|g| + ε);
    # coordinate 1 follows L1 (+), coordinate 2 follows L0 (−): Δ = (lr·20/(20+ε), −lr·2/(2+ε)).
    # The paper's sum gives Δ ≈ 0 (each coordinate: +lr − lr).
    lr, eps = 0.1, 1e-8
    scales, centers = [[1.0, 1.0], [10.0, 0.1]], [[1.0, 1.0], [-1.0, -1.0]]
    for combine, expected in (
        ("consensus", [lr * 20 / (20 + eps), -lr * 2 / (2 + eps)]),
        ("sum", [lr * (20 / (20 + eps) - 2 / (2 + eps)), lr * (0.2 / (0.2 + eps) - 2 / (2 + eps))]),
    ):
        theta = torch.zeros(2, dtype=torch.float64, requires_grad=True)
        opt = AutoBalance([theta], base="adam", lr=lr, eps=eps, combine=combine)
        opt.step(quadratic_losses(theta, scales, centers))
        torch.testing.assert_close(
            theta.detach(), -torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-15
        )


def test_floored_votes_first_step_closed_form() -> None:
    # The losses of the test above; √v̂_k = |g_k| at step 1: scales (2, 2) and (20, 0.2).
    # R = 4, coordinate 1: L0's share 2/20 is floored at 1/4; coordinate 2: L1's 0.1 → 1/4.
    lr, eps = 0.1, 1e-8
    scales, centers = [[1.0, 1.0], [10.0, 0.1]], [[1.0, 1.0], [-1.0, -1.0]]
    theta = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = AutoBalance([theta], base="adam", lr=lr, eps=eps, combine=FlooredVotes(ratio=4.0))
    opt.step(quadratic_losses(theta, scales, centers))
    expected = [
        lr * (20 / (20 + eps) - 0.25 * 2 / (2 + eps)),
        lr * (0.25 * 0.2 / (0.2 + eps) - 2 / (2 + eps)),
    ]
    torch.testing.assert_close(
        theta.detach(), -torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-15
    )


def test_protected_consensus_first_step_closed_form() -> None:
    # L0 = (θ1 − 1)² + (θ2 − 1)², L1 = 10(θ1 + 1)² + 0.05(θ2 + 1)² at θ = 0: g0 = (−2, −2),
    # g1 = (20, 0.1), √v̂_k = |g_k|.  R = 15.  Coordinate 1: scales 2 vs 20 (ratio 10 < R), L0
    # opposes Σ g = 18 and is dropped (consensus); coordinate 2: scales 2 vs 0.1 (ratio 20 > R),
    # L1 opposes Σ g = −1.9 but is protected: its update counts, as in the paper's sum.
    lr, eps = 0.1, 1e-8
    scales, centers = [[1.0, 1.0], [10.0, 0.05]], [[1.0, 1.0], [-1.0, -1.0]]
    theta = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = AutoBalance([theta], base="adam", lr=lr, eps=eps, combine=ProtectedConsensus(15.0))
    opt.step(quadratic_losses(theta, scales, centers))
    expected = [lr * 20 / (20 + eps), lr * (0.1 / (0.1 + eps) - 2 / (2 + eps))]
    torch.testing.assert_close(
        theta.detach(), -torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-15
    )


@PROP
@given(
    st.lists(st.floats(0.1, 10.0), min_size=3, max_size=3),
    st.lists(st.floats(-2.0, 2.0), min_size=3, max_size=3),
    st.sampled_from(
        ["consensus", "consensus-mean", "floor", "protected", "balanced-consensus", "guarded"]
    ),
)
def test_moment_rules_with_one_loss_are_adam(scales, centers, combine) -> None:
    theta = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    ref = theta.detach().clone().requires_grad_(True)
    opt = AutoBalance([theta], base="adam", lr=0.05, combine=combine)
    adam = torch.optim.Adam([ref], lr=0.05)
    for _ in range(5):
        opt.step(quadratic_losses(theta, [scales], [centers]))
        adam.zero_grad()
        quadratic_losses(ref, [scales], [centers])["L0"].backward()
        adam.step()
    assert torch.equal(theta.detach(), ref.detach())


@PROP
@given(
    st.lists(st.lists(st.floats(0.1, 10.0), min_size=3, max_size=3), min_size=2, max_size=3),
    st.lists(st.lists(st.floats(-2.0, 2.0), min_size=3, max_size=3), min_size=3, max_size=3),
)
def test_consensus_moves_every_coordinate_as_adam_on_the_sum_would(scales, centers) -> None:
    """Step 1: sign(Δ_i) = sign(Σ_k g_k,i) (Adam's direction) or Δ_i = 0; |Δ_i| ≤ Σ_k |u_k,i|."""
    centers = centers[: len(scales)]
    theta = torch.full((3,), 0.25, dtype=torch.float64, requires_grad=True)
    start = theta.detach().clone()
    opt = AutoBalance([theta], base="adam", lr=0.1, combine="consensus")
    losses = quadratic_losses(theta, scales, centers)
    summed = torch.autograd.grad(sum(losses.values()), theta, retain_graph=True)[0]
    info = opt.step(losses)
    delta = start - theta.detach()
    assert bool((delta * summed >= 0).all())
    assert float(delta.abs().max()) <= 0.1 * len(scales) + 1e-12
    assert info.update_norm == pytest.approx(float(delta.norm()), rel=1e-9)


@pytest.mark.parametrize("combine", sorted(RULES.names()))
def test_state_dict_round_trip_with_a_rule(combine: str) -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    x = torch.randn(32, 2)

    def losses(model: torch.nn.Module) -> dict[str, torch.Tensor]:
        out = model(x)
        return {"a": (out - 1).pow(2).mean(), "b": out.pow(2).mean() * 3, "c": out.mean() ** 2}

    opt = AutoBalance(net.parameters(), lr=1e-2, combine=combine)
    for _ in range(3):
        opt.step(losses(net))
    saved = copy.deepcopy(opt.state_dict())
    twin = copy.deepcopy(net)
    resumed = AutoBalance(twin.parameters(), lr=1e-2, combine=combine)
    resumed.load_state_dict(saved)
    for _ in range(3):
        opt.step(losses(net))
        resumed.step(losses(twin))
    for p, q in zip(net.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize(
    "name",
    [
        "autobalance-consensus",
        "autobalance-consensus-mean",
        "autobalance-floor",
        "autobalance-protected",
    ],
)
def test_method_is_registered_and_trains(name: str) -> None:
    assert name in methods.names("multi-state")
    theta = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    balancer = methods.create(name, [theta], lr=0.05)
    scales, centers = [[1.0, 1.0], [10.0, 0.1]], [[1.0, 1.0], [-1.0, -1.0]]
    first = sum(v.item() for v in quadratic_losses(theta, scales, centers).values())
    for _ in range(200):
        info = balancer.step(quadratic_losses(theta, scales, centers))
    assert info.total_loss < 0.5 * first


def test_rule_errors_are_clear() -> None:
    theta = torch.zeros(2, requires_grad=True)
    with pytest.raises(HyperparameterError, match="combine must be .* consensus"):
        AutoBalance([theta], combine="concensus")
    with pytest.raises(HyperparameterError, match="first moment.*SGD"):
        AutoBalance([theta], base="sgd", lr=0.1, combine="consensus")
    opt = AutoBalance([theta], combine="progress")
    with pytest.raises(HyperparameterError, match="loss values"):
        opt.step(grads={"a": [torch.ones(2)], "b": [torch.ones(2)]})
    summed = AutoBalance([theta], lr=1e-2)
    summed.step({"a": theta.sum() ** 2 + 1, "b": (theta - 1).pow(2).sum()})
    with pytest.raises(AutoBalanceError, match="combine rule"):
        AutoBalance([theta], lr=1e-2, combine="consensus").load_state_dict(summed.state_dict())
    with pytest.raises(UnknownNameError):
        RULES.create("concensus")
