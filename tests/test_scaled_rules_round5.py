"""Issue 15, round 5: the rules that read how decisive the balanced conflict is (scaled_rules)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autobalance import AutoBalance
from autobalance.optim.combine import RULES
from autobalance.optim.scaled_rules import (
    BalancedBlend,
    BalancedConcede,
    BalancedDiscount,
    BalancedGraded,
    BalancedSum,
    balanced_blend,
    balanced_consensus,
    balanced_discount,
    balanced_sum,
    decisiveness,
    loss_scales,
)
from test_scaled_rules import T, close, moment_triples

PROP = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROUND5 = (BalancedSum, BalancedBlend, BalancedDiscount)
#: Every rule with balanced-consensus' decision and another step (rounds 5 and 6).
LATER = (*ROUND5, BalancedConcede, BalancedGraded)


# ------------------------------------------------------------------------------ closed forms
# s = (2, 1).  m / s per coordinate: (2, −1, 0.5) and (−1, −1, 0.5); balanced sums (1, −2, 1),
# spreads (3, 2, 1): λ = (1/3, 1, 1).  Coordinate 0: loss 0 agrees, loss 1 dissents.
U = T([[1.0, -0.5, 0.25], [-0.75, -1.0, 0.5]])
M = T([[4.0, -2.0, 1.0], [-1.0, -1.0, 0.5]])
S = T([2.0, 1.0])


def test_decisiveness_closed_form() -> None:
    close(decisiveness(M, S), [1 / 3, 1.0, 1.0])
    close(decisiveness(T([[1.0], [-2.0]]), T([1.0, 2.0])), [0.0])  # a balanced tie
    close(decisiveness(T([[0.0], [0.0]]), T([1.0, 1.0])), [0.0])  # no gradient at all


def test_balanced_sum_closed_form() -> None:
    close(balanced_sum(U, M, S), [1.0, -1.5, 0.75])
    close(balanced_consensus(U, M, S), [1.0, -0.75, 0.375])  # round 4: the mean of the same
    close(RULES.create("balanced-sum").combine(U, M, T([[4.0] * 3, [1.0] * 3])), [1.0, -1.5, 0.75])


def test_balanced_blend_closed_form() -> None:
    # coordinate 0: 1/3 · 1 + 2/3 · (1 − 0.75)/2; coordinates 1, 2: the mean of both updates
    close(balanced_blend(U, M, S), [1 / 3 + (2 / 3) * 0.125, -0.75, 0.375])


def test_balanced_discount_closed_form() -> None:
    # coordinate 0: Σu = 0.25, the dissenter −0.75 discounted by 1/3: 0.25 + 0.25
    close(balanced_discount(U, M, S), [0.5, -1.5, 0.75])
    # a balanced tie keeps the paper's sum; a decisive conflict drops the dissenter
    tie = (T([[1.0], [-0.25]]), T([[1.0], [-2.0]]), T([1.0, 2.0]))
    close(balanced_discount(*tie), [0.75])
    close(balanced_blend(*tie), [0.375])


def test_first_step_of_autobalance() -> None:
    # L0 = (θ1 − 1)² + (θ2 − 1)², L1 = 50(θ1 + 1)² + 2(θ2 + 1)² at θ = 0: g0 = (−2, −2),
    # g1 = (100, 4), RMS scales 2 and √5008; Adam's first updates u0 ≈ −lr, u1 ≈ +lr (both
    # coordinates).  Balanced moment per coordinate: −1 + g1/√5008.
    lr = 0.1
    s1 = math.sqrt(5008.0)
    lam = [abs(-1 + 100 / s1) / (1 + 100 / s1), abs(-1 + 4 / s1) / (1 + 4 / s1)]
    expected = {
        "balanced-sum": [lr, -lr],  # coordinate 0 goes to L1, coordinate 1 to L0
        "balanced-blend": [lam[0] * lr, -lam[1] * lr],  # the mean of ±lr is 0
        "balanced-discount": [lam[0] * lr, -lam[1] * lr],  # Σu = 0, the dissenter discounted
        "balanced-concede": [2 * lr, -2 * lr],  # round 6: the loser follows the winner
        "balanced-graded": [(1 + lam[0]) * lr, -(1 + lam[1]) * lr],  # the winner, 1 + λ long
    }
    for combine, delta in expected.items():
        theta = torch.zeros(2, dtype=torch.float64, requires_grad=True)
        opt = AutoBalance([theta], base="adam", lr=lr, eps=1e-12, combine=combine)
        curvature, centers = T([[1.0, 1.0], [50.0, 2.0]]), T([[1.0, 1.0], [-1.0, -1.0]])
        quad = (curvature * (theta - centers) ** 2).sum(1)
        opt.step({"L0": quad[0], "L1": quad[1]})
        close(theta.detach(), -T(delta), tol=1e-9)


# -------------------------------------------------------------------------------- properties
@PROP
@given(moment_triples())
def test_each_rule_is_its_mixture(UMV) -> None:
    """blend = λ·balanced-consensus + (1 − λ)·mean; discount = λ·balanced-sum + (1 − λ)·sum."""
    U, M, V = UMV
    s = loss_scales([V])
    lam = decisiveness(M, s)
    assert bool(((lam >= 0) & (lam <= 1 + 1e-12)).all())
    mix = lam * balanced_consensus(U, M, s) + (1 - lam) * U.mean(0)
    close(balanced_blend(U, M, s), mix, tol=1e-9)
    close(balanced_discount(U, M, s), lam * balanced_sum(U, M, s) + (1 - lam) * U.sum(0), 1e-9)
    # lengths: blend within one update, the sums within K updates
    top = U.abs().max(0).values
    assert bool((balanced_blend(U, M, s).abs() <= top + 1e-12).all())
    assert bool((balanced_discount(U, M, s).abs() <= U.shape[0] * top + 1e-12).all())


@PROP
@given(moment_triples(), st.lists(st.floats(1e-3, 1e3), min_size=4, max_size=4))
@pytest.mark.parametrize("rule", LATER)
def test_rules_ignore_how_each_loss_is_scaled(rule, UMV, factors) -> None:
    """Loss k times c: m_k → c·m_k, v_k → c²·v_k, u_k unchanged; Δ unchanged (off exact ties)."""
    U, M, V = UMV
    c = T(factors[: U.shape[0]]).unsqueeze(1)
    balanced = M / loss_scales([V]).unsqueeze(1)
    tied = balanced.sum(0).abs() < 1e-9 * balanced.abs().sum(0)
    base, scaled = rule().combine(U, M, V), rule().combine(U, M * c, V * c**2)
    close(scaled[~tied], base[~tied], tol=1e-8)


@PROP
@given(moment_triples())
@pytest.mark.parametrize("rule", LATER)
def test_one_loss_is_adam_and_order_does_not_matter(rule, UMV) -> None:
    U, M, V = UMV
    close(rule().combine(U[:1], M[:1], V[:1]), U[0])
    perm = torch.randperm(U.shape[0])
    close(rule().combine(U[perm], M[perm], V[perm]), rule().combine(U, M, V), tol=1e-9)


@pytest.mark.parametrize("combine", ["balanced-sum", "balanced-blend", "balanced-discount"])
def test_autobalance_trajectory_is_invariant_to_loss_scale(combine: str) -> None:
    """20 steps: L0 and 1000·L0 give the same parameters (Adam's ε made negligible)."""
    scales, centers = T([[1.0, 1.0, 3.0], [50.0, 2.0, 0.5]]), T([[1.0, 1.0, 0.0], [-1, -1, 2]])

    def trajectory(factor: float) -> torch.Tensor:
        theta = torch.full((3,), 0.3, dtype=torch.float64, requires_grad=True)
        opt = AutoBalance([theta], base="adam", lr=0.05, eps=1e-30, combine=combine)
        for _ in range(20):
            quad = (scales * (theta - centers) ** 2).sum(1)
            opt.step({"L0": factor * quad[0], "L1": quad[1]})
        return theta.detach()

    close(trajectory(1000.0), trajectory(1.0), 1e-9)
