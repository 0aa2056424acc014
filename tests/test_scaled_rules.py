"""Issue 15, round 4: the rules that read each loss's gradient scale (``optim/scaled_rules``)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autobalance import AutoBalance, methods
from autobalance.errors import HyperparameterError
from autobalance.optim.combine import RULES
from autobalance.optim.moment_rules import averaged_consensus
from autobalance.optim.scaled_rules import (
    BalancedConsensus,
    GuardedConsensus,
    balanced_consensus,
    combine_moments,
    damped_consensus,
    guarded_consensus,
    loss_scales,
)

PROP = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def T(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def close(a: torch.Tensor, b, tol: float = 1e-12) -> None:
    torch.testing.assert_close(a, b if isinstance(b, torch.Tensor) else T(b), rtol=tol, atol=tol)


def quadratic_losses(theta: torch.Tensor, scales, centers) -> dict[str, torch.Tensor]:
    """``L_k = Σ_i c_{k,i} (θ_i − a_{k,i})²`` (``theta`` may be a list of scalars' tensor)."""
    return {
        f"L{k}": (torch.as_tensor(c, dtype=theta.dtype) * (theta - torch.as_tensor(a)) ** 2).sum()
        for k, (c, a) in enumerate(zip(scales, centers, strict=True))
    }


# ------------------------------------------------------------------------------ closed forms
def test_loss_scales_are_rms_over_every_bucket() -> None:
    v = T([[1.0, 9.0, 4.0], [0.0, 0.0, 3.0]])
    close(loss_scales([v]), [math.sqrt(14 / 3), 1.0])
    close(loss_scales([v[:, :1], v[:, 1:]]), loss_scales([v]))  # split into buckets: the same
    close(loss_scales([T([[-1.0, 4.0]])]), [math.sqrt(2.0)])  # negatives clamped to zero
    with pytest.raises(HyperparameterError, match="at least one"):
        loss_scales([])


def test_balanced_consensus_closed_form() -> None:
    # s = (4, 1); m / s = (1, −1) and (−2, 0.5): balanced moment (−1, −0.5).  Coordinate 0 keeps
    # loss 2 alone (the raw Σ m = (2, −3.5) would keep loss 1: consensus-mean gives 1 there).
    u = T([[1.0, -1.0], [-2.0, 0.5]])
    m = T([[4.0, -4.0], [-2.0, 0.5]])
    s = T([4.0, 1.0])
    close(balanced_consensus(u, m, s), [-2.0, -1.0])
    close(averaged_consensus(u, m), [1.0, -1.0])
    v = T([[16.0, 16.0], [1.0, 1.0]])  # the same scales from second moments
    close(RULES.create("balanced-consensus").combine(u, m, v), [-2.0, -1.0])
    # every update agrees: their mean; a tie: nothing; a loss with s = 0 and m = 0: no vote
    close(balanced_consensus(T([[1.0], [3.0]]), T([[1.0], [2.0]]), T([1.0, 1.0])), [2.0])
    close(balanced_consensus(T([[1.0], [-1.0]]), T([[2.0], [-1.0]]), T([2.0, 1.0])), [0.0])
    close(balanced_consensus(T([[0.5], [0.0]]), T([[1.0], [0.0]]), T([1.0, 0.0])), [0.5])


def test_balanced_consensus_first_step_of_autobalance() -> None:
    # L0 = (θ1 − 1)² + (θ2 − 1)², L1 = 50(θ1 + 1)² + 2(θ2 + 1)² at θ = 0: g0 = (−2, −2),
    # g1 = (100, 4); RMS scales 2 and √5008.  Coordinate 1: raw Σ g = +2 follows L1, but the
    # balanced moment −1 + 4/√5008 < 0 follows L0.  Adam's first step u_k = lr·g/(|g| + ε).
    lr, eps = 0.1, 1e-8
    scales, centers = [[1.0, 1.0], [50.0, 2.0]], [[1.0, 1.0], [-1.0, -1.0]]
    for combine, expected in (
        ("balanced-consensus", [lr * 100 / (100 + eps), -lr * 2 / (2 + eps)]),
        ("consensus-mean", [lr * 100 / (100 + eps), lr * 4 / (4 + eps)]),
    ):
        theta = torch.zeros(2, dtype=torch.float64, requires_grad=True)
        opt = AutoBalance([theta], base="adam", lr=lr, eps=eps, combine=combine)
        opt.step(quadratic_losses(theta, scales, centers))
        close(theta.detach(), -T(expected))


def test_scales_are_global_across_parameter_groups() -> None:
    # The example above with θ1 and θ2 in two groups (two buckets).  Bucket θ2 alone would have
    # scales 2 and 4 and a tie (−1 + 1 = 0: no step); over both buckets L0 wins there.
    lr, eps = 0.1, 1e-8
    a = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = AutoBalance(
        [{"params": [a]}, {"params": [b]}],
        base="adam",
        lr=lr,
        eps=eps,
        combine="balanced-consensus",
    )
    opt.step(quadratic_losses(torch.cat([a, b]), [[1.0, 1.0], [50.0, 2.0]], [[1, 1], [-1, -1]]))
    close(torch.cat([a, b]).detach(), -T([lr * 100 / (100 + eps), -lr * 2 / (2 + eps)]))


def test_guarded_consensus_closed_form() -> None:
    # scales (100, 1, 0.5); R = 10: loss 3 (0.5 < 100/10) is protected, loss 2 (1) too.
    u = T([[1.0, -1.0], [-0.5, 0.5], [0.25, 0.25]])
    m = T([[3.0, -1.0], [-5.0, 2.0], [1.0, 1.0]])
    s = T([100.0, 1.0, 0.5])
    # comparable: loss 1 alone → its update; protected: losses 2, 3 summed in
    close(guarded_consensus(u, m, s, 10.0), [1.0 - 0.5 + 0.25, -1.0 + 0.5 + 0.25])
    # R = 1000: all comparable: Σ m = (−1, 2): coordinate 0 keeps loss 2, coordinate 1 losses 2, 3
    close(guarded_consensus(u, m, s, 1000.0), [-0.5, 0.75])
    close(guarded_consensus(u, m, s, 1000.0, mean=True), [-0.5, 0.375])
    assert RULES.create("guarded").ratio == 100.0 and not RULES.create("guarded").mean
    assert RULES.create("guarded-mean").mean


def test_damped_consensus_closed_form() -> None:
    # coordinate 0: Σ m = 2 of Σ|m| = 6 → 1/3 of consensus-mean's step; coordinate 1: agreement 1
    u = T([[1.0, 1.0], [-0.5, 2.0]])
    m = T([[4.0, 1.0], [-2.0, 3.0]])
    close(damped_consensus(u, m), [1.0 / 3.0, 1.5])


# -------------------------------------------------------------------------------- properties
def moment_triples(min_k: int = 1, max_k: int = 4, max_p: int = 6):
    @st.composite
    def draw(draw_value):
        k = draw_value(st.integers(min_k, max_k))
        p = draw_value(st.integers(1, max_p))
        el = st.floats(-10, 10, allow_nan=False, allow_infinity=False, width=32)
        pos = st.floats(0.0625, 64.0, allow_nan=False, allow_infinity=False, width=32)
        m = T(draw_value(st.lists(el, min_size=k * p, max_size=k * p))).reshape(k, p)
        v = T(draw_value(st.lists(pos, min_size=k * p, max_size=k * p))).reshape(k, p)
        return m / v.sqrt(), m, v

    return draw()


@PROP
@given(moment_triples(), st.lists(st.floats(1e-3, 1e3), min_size=4, max_size=4))
def test_balanced_consensus_ignores_how_each_loss_is_scaled(UMV, factors) -> None:
    """Loss k times c: m_k → c·m_k, v_k → c²·v_k, u_k unchanged; Δ unchanged."""
    U, M, V = UMV
    c = T(factors[: U.shape[0]]).unsqueeze(1)
    base = BalancedConsensus().combine(U, M, V)
    scaled = BalancedConsensus().combine(U, M * c, V * c**2)
    direction = (M / loss_scales([V]).unsqueeze(1)).sum(0)
    tied = direction.abs() < 1e-9 * (M / loss_scales([V]).unsqueeze(1)).abs().sum(0)
    close(scaled[~tied], base[~tied], tol=1e-9)


@PROP
@given(moment_triples(min_k=2))
def test_balanced_consensus_is_a_mean_of_agreeing_updates(UMV) -> None:
    U, M, V = UMV
    d = BalancedConsensus().combine(U, M, V)
    direction = (M / loss_scales([V]).unsqueeze(1)).sum(0).sign()
    assert bool((d.abs() <= U.abs().max(0).values + 1e-12).all())
    assert bool((d * direction >= 0).all())
    perm = torch.randperm(U.shape[0])
    close(BalancedConsensus().combine(U[perm], M[perm], V[perm]), d, tol=1e-9)
    # one loss: its own update (Adam)
    close(BalancedConsensus().combine(U[:1], M[:1], V[:1]), U[0])


@PROP
@given(moment_triples(), st.floats(1.0, 1e4))
def test_guarded_consensus_ends(UMV, ratio) -> None:
    U, M, V = UMV
    s = loss_scales([V])
    huge = 1e30  # nobody protected: the consensus among all (sum or mean)
    agree = (U.sign() == M.sum(0).sign()).to(U.dtype)
    close(guarded_consensus(U, M, s, huge), (U * agree).sum(0), tol=1e-9)
    close(guarded_consensus(U, M, s, huge, True), averaged_consensus(U, M), tol=1e-9)
    # the largest-scale loss is never protected; with ratio 1 every smaller one is (their sum)
    d = guarded_consensus(U, M, s, 1.0)
    small = s < s.max()
    top = ~small
    top_agree = (U[top].sign() == M[top].sum(0).sign()).to(U.dtype)
    close(d, (U[top] * top_agree).sum(0) + U[small].sum(0), tol=1e-9)
    assert isinstance(ratio, float)


def test_autobalance_balanced_consensus_is_invariant_to_loss_scale() -> None:
    """Several steps: L0 and 1000·L0 give the same parameters; consensus-mean does not."""
    scales, centers = [[1.0, 1.0, 3.0], [50.0, 2.0, 0.5]], [[1.0, 1.0, 0.0], [-1.0, -1.0, 2.0]]

    def trajectory(combine: str, factor: float) -> torch.Tensor:
        theta = torch.full((3,), 0.3, dtype=torch.float64, requires_grad=True)
        opt = AutoBalance([theta], base="adam", lr=0.05, eps=1e-30, combine=combine)
        for _ in range(20):
            losses = quadratic_losses(theta, scales, centers)
            opt.step({"L0": factor * losses["L0"], "L1": losses["L1"]})
        return theta.detach()

    close(trajectory("balanced-consensus", 1000.0), trajectory("balanced-consensus", 1.0), 1e-9)
    assert not torch.allclose(trajectory("consensus-mean", 1000.0), trajectory("consensus-mean", 1))


def test_method_is_registered_and_reaches_a_balanced_stationary_point() -> None:
    """The method does not minimise the plain sum: it stops where Σ_k ∇L_k / s_k vanishes."""
    assert "autobalance-balanced-consensus" in methods.names("multi-state")
    theta = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    balancer = methods.create("autobalance-balanced-consensus", [theta], lr=0.05)
    scales, centers = [[1.0, 1.0], [10.0, 0.1]], [[1.0, 1.0], [-1.0, -1.0]]
    start = {k: v.item() for k, v in quadratic_losses(theta, scales, centers).items()}
    for _ in range(1000):
        info = balancer.step(quadratic_losses(theta, scales, centers))
    assert all(info.losses[k].value < 0.96 * start[k] for k in start)  # both losses fell
    losses = quadratic_losses(theta, scales, centers)
    grads = torch.stack([torch.autograd.grad(v, theta)[0] for v in losses.values()])
    balanced = (grads / grads.pow(2).mean(dim=1, keepdim=True).sqrt()).sum(0)
    assert float(balanced.abs().max()) < 0.05 * float(grads.abs().max())
    # the plain sum's minimiser is elsewhere: θ* = (−9/11, 9/11)
    assert float((theta.detach() - T([-9 / 11, 9 / 11])).abs().max()) > 0.3


def test_combine_moments_without_scales_is_per_bucket() -> None:
    u, m, v = T([[1.0, -1.0]]), T([[1.0, -1.0]]), T([[1.0, 1.0]])
    out = combine_moments(RULES.create("consensus-mean"), [(u, m, v), (u, m, v)])
    assert len(out) == 2 and all(torch.equal(o, u[0]) for o in out)


def test_errors_are_clear() -> None:
    for bad in (0.5, math.inf, math.nan):
        with pytest.raises(HyperparameterError, match="ratio"):
            GuardedConsensus(ratio=bad)
        with pytest.raises(HyperparameterError, match="ratio"):
            guarded_consensus(T([[1.0]]), T([[1.0]]), T([1.0]), bad)
    with pytest.raises(HyperparameterError, match="mean"):
        GuardedConsensus(mean="yes")  # type: ignore[arg-type]
    with pytest.raises(HyperparameterError, match="first moment.*SGD"):
        AutoBalance([torch.zeros(1, requires_grad=True)], base="sgd", combine="balanced-consensus")
