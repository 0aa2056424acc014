"""Issue 15, round 6: balanced-concede (K × balanced-consensus) and balanced-graded (scaled_rules).

Their first step of AutoBalance and their scale and order invariance are tested with round 5's
rules (test_scaled_rules_round5).

balanced-graded is ``(1 + (K − 1) λ)`` × balanced-consensus, ``λ`` the decisiveness."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings

from autobalance import AutoBalance, methods
from autobalance.optim.combine import RULES
from autobalance.optim.scaled_rules import (
    balanced_concede,
    balanced_consensus,
    balanced_graded,
    decisiveness,
    loss_scales,
)
from test_scaled_rules import T, close, moment_triples

PROP = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# s = (2, 1); balanced moments (2, −1, 0.5) and (−1, −1, 0.5) sum to (1, −2, 1).  Coordinate 0:
# loss 0 wins the conflict and loss 1 concedes; coordinates 1 and 2: both agree.
U = T([[1.0, -0.5, 0.25], [-0.75, -1.0, 0.5]])
M = T([[4.0, -2.0, 1.0], [-1.0, -1.0, 0.5]])
S = T([2.0, 1.0])


def test_closed_form() -> None:
    # coordinate 0: the winner's 1.0 plus the conceded 1.0; elsewhere the paper's sum
    close(balanced_concede(U, M, S), [2.0, -1.5, 0.75])
    close(
        RULES.create("balanced-concede").combine(U, M, T([[4.0] * 3, [1.0] * 3])), [2.0, -1.5, 0.75]
    )
    # three losses, two agree with the balanced direction: K · their mean
    U3 = T([[0.5], [0.25], [-1.0]])
    M3 = T([[1.0], [1.0], [-1.0]])
    close(balanced_concede(U3, M3, T([1.0, 1.0, 1.0])), [3 * 0.375])
    # a tie keeps nothing
    close(balanced_concede(T([[1.0], [-1.0]]), T([[1.0], [-2.0]]), T([1.0, 2.0])), [0.0])


def test_graded_closed_form() -> None:
    # λ = (1/3, 1, 1) (test_scaled_rules_round5); balanced-consensus (1, −0.75, 0.375) times
    # 1 + λ: coordinate 0, a conflict loss 0 wins narrowly, is lengthened by a third only
    close(balanced_graded(U, M, S), [4 / 3, -1.5, 0.75])
    close(
        RULES.create("balanced-graded").combine(U, M, T([[4.0] * 3, [1.0] * 3])),
        [4 / 3, -1.5, 0.75],
    )
    # a balanced tie broken by a hair keeps balanced-consensus' single update: λ → 0
    near_tie = (T([[1.0], [-0.5]]), T([[1.0], [-1.999]]), T([1.0, 2.0]))
    close(balanced_graded(*near_tie), [1.0 + 0.0005 / 1.9995], tol=1e-12)


@PROP
@given(moment_triples())
def test_k_times_balanced_consensus_and_the_paper_sum_where_all_agree(UMV) -> None:
    U, M, V = UMV
    s = loss_scales([V])
    K = U.shape[0]
    delta = balanced_concede(U, M, s)
    close(delta, K * balanced_consensus(U, M, s), tol=1e-12)
    agree = (U.sign() == (M / s.unsqueeze(1)).sum(0).sign()).all(0)
    close(delta[agree], U.sum(0)[agree], tol=1e-9)
    assert bool((delta.abs() <= K * U.abs().max(0).values + 1e-12).all())


@PROP
@given(moment_triples())
def test_graded_lies_between_consensus_and_concede(UMV) -> None:
    """Δ = (1 + (K − 1)λ) · balanced-consensus: the paper's sum where all agree, ≤ concede."""
    U, M, V = UMV
    s = loss_scales([V])
    K = U.shape[0]
    graded, mean = balanced_graded(U, M, s), balanced_consensus(U, M, s)
    close(graded, (1 + (K - 1) * decisiveness(M, s)) * mean, tol=1e-12)
    assert bool((mean.abs() <= graded.abs() + 1e-15).all())
    assert bool((graded.abs() <= balanced_concede(U, M, s).abs() + 1e-12).all())
    agree = (U.sign() == (M / s.unsqueeze(1)).sum(0).sign()).all(0)
    close(graded[agree], U.sum(0)[agree], tol=1e-9)


def test_trajectory_is_k_times_the_step_of_balanced_consensus() -> None:
    """20 steps of balanced-concede at lr equal 20 steps of balanced-consensus at K · lr."""
    scales, centers = T([[1.0, 1.0, 3.0], [50.0, 2.0, 0.5]]), T([[1.0, 1.0, 0.0], [-1, -1, 2]])

    def trajectory(combine: str, lr: float, factor: float = 1.0) -> torch.Tensor:
        theta = torch.full((3,), 0.3, dtype=torch.float64, requires_grad=True)
        opt = AutoBalance([theta], base="adam", lr=lr, eps=1e-30, combine=combine)
        for _ in range(20):
            quad = (scales * (theta - centers) ** 2).sum(1)
            opt.step({"L0": factor * quad[0], "L1": quad[1]})
        return theta.detach()

    close(trajectory("balanced-concede", 0.05), trajectory("balanced-consensus", 0.1), 1e-9)
    for combine in ("balanced-concede", "balanced-graded"):
        close(trajectory(combine, 0.05, 1000.0), trajectory(combine, 0.05), 1e-9)


def test_registered_method_is_autobalance_with_the_rule() -> None:
    """``autobalance-balanced-concede``: AdamW states, balanced-concede, the same first step."""
    assert "autobalance-balanced-concede" in methods.names("multi-state")
    theta = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    twin = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    registered = methods.create("autobalance-balanced-concede", [theta], lr=0.05)
    direct = AutoBalance([twin], base="adamw", lr=0.05, combine="balanced-concede")
    for param, opt in ((theta, registered), (twin, direct)):
        losses = {
            "a": (T([1.0, 4.0]) * (param - 1) ** 2).sum(),
            "b": (T([3.0, 1.0]) * (param + 1) ** 2).sum(),
        }
        opt.step(losses)
    close(theta.detach(), twin.detach(), tol=0.0)
    # gradients (−2, −8) and (6, 2): coordinate 0 goes to b, coordinate 1 to a, 2 · lr each
    close(theta.detach(), T([-0.1, 0.1]), tol=1e-6)
