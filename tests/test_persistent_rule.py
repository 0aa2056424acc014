"""Issue 15, round 7: balanced-persistent (balanced-concede times the persistence of its decision).

``Δ = |ĉ| · K · ū`` with ``ĉ`` the bias-corrected EMA of ``σ = sign Σ_k m_k / s_k``."""

from __future__ import annotations

import io

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autobalance import AutoBalance, methods
from autobalance.errors import HyperparameterError
from autobalance.optim.combine import RULES
from autobalance.optim.persistent_rule import BalancedPersistent, decision_persistence
from autobalance.optim.scaled_rules import balanced_concede, loss_scales
from test_scaled_rules import T, close

PROP = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# s = √(Σ_i v / P) = (2, 1); balanced moments (1, −0.5, 0.5) and (−1, 4, 1) sum to (0, 3.5, 1.5):
# coordinate 0 is a tie, coordinates 1 and 2 go the positive way.
U = T([[1.0, -1.0, 0.5], [-0.5, 1.0, 0.5]])
M = T([[2.0, -1.0, 1.0], [-1.0, 4.0, 1.0]])
V = T([[4.0] * 3, [1.0] * 3])


def test_two_steps_by_hand() -> None:
    rule = BalancedPersistent(beta=0.99)
    # step 1: ĉ = σ = (0, 1, 1), balanced-concede itself: a tie keeps nothing; coordinate 1 is
    # loss 1's update twice (loss 0 concedes); coordinate 2 both updates
    close(rule.combine(U, M, V), [0.0, 2.0, 1.0])
    # step 2: the decision flips; c = 0.99 · 0.01 − 0.01 = −1e-4, ĉ = c / (1 − 0.99²) = −1/199
    close(rule.combine(-U, -M, V), [0.0, -2.0 / 199, -1.0 / 199], tol=1e-12)
    assert rule.steps == 2
    close(rule.persistence[0], [0.0, -1e-4, -1e-4], tol=1e-15)
    # step 3, the same way again: c = 0.99 · (−1e-4) − 0.01, ĉ = c / (1 − 0.99³)
    c = (0.99 * -1e-4 - 0.01) / (1 - 0.99**3)
    close(rule.combine(-U, -M, V), [0.0, 2.0 * c, 1.0 * c], tol=1e-12)


def test_warm_start_decays_from_the_first_decision() -> None:
    """balanced-anneal: ``c_1 = σ_1`` and no bias correction."""
    rule = RULES.create("balanced-anneal")
    close(rule.combine(U, M, V), [0.0, 2.0, 1.0])  # c = σ = (0, 1, 1): balanced-concede
    # the decision flips: c = 0.99 · 1 − 0.01 = 0.98 (no bias correction), so 0.98 × concede
    close(rule.combine(-U, -M, V), [0.0, -1.96, -0.98], tol=1e-12)
    # keeps alternating: |c| shrinks by about β per step, slowly, where the corrected one is ~0
    for step in range(3, 41):
        sign = 1.0 if step % 2 else -1.0
        delta = rule.combine(sign * U, sign * M, V)
    assert 0.5 < abs(float(delta[1])) / 2.0 < 0.99**38


def test_decision_persistence_is_one_ema_step() -> None:
    close(decision_persistence(T([0.5, -0.5, 0.0]), M, T([2.0, 1.0]), 0.9), [0.45, -0.35, 0.1])


@PROP
@given(
    st.integers(2, 4),
    st.integers(1, 6),
    st.floats(0.0, 0.999),
    st.integers(0, 2**31 - 1),
)
def test_a_decision_that_never_changes_is_balanced_concede(K, steps, beta, seed) -> None:
    """While ``σ`` keeps its value every step, ``|ĉ| = 1`` and the rule is balanced-concede."""
    gen = torch.Generator().manual_seed(seed)
    U0 = torch.randn(K, 5, generator=gen, dtype=torch.float64)
    M0 = torch.randn(K, 5, generator=gen, dtype=torch.float64)
    V0 = torch.rand(K, 5, generator=gen, dtype=torch.float64) + 0.1
    rule = BalancedPersistent(beta=beta)
    for t in range(steps):
        factor = 1.0 + 0.5 * t  # the moments grow, their signs (and σ) do not change
        delta = rule.combine(U0 * factor, M0 * factor, V0)
        close(delta, balanced_concede(U0 * factor, M0 * factor, loss_scales([V0])), tol=1e-9)


@PROP
@given(st.lists(st.floats(1e-3, 1e3), min_size=2, max_size=2), st.integers(0, 2**31 - 1))
def test_rescaling_a_loss_or_reordering_the_losses_changes_nothing(factors, seed) -> None:
    """``σ`` reads ``m_k / s_k``: a loss scaled by ``c`` moves ``m_k`` and ``s_k`` together."""
    gen = torch.Generator().manual_seed(seed)
    frames = [
        (
            torch.randn(2, 4, generator=gen, dtype=torch.float64),
            torch.randn(2, 4, generator=gen, dtype=torch.float64),
            torch.rand(2, 4, generator=gen, dtype=torch.float64) + 0.1,
        )
        for _ in range(5)
    ]
    c = T(factors).unsqueeze(1)
    plain, scaled, swapped = (BalancedPersistent(0.9) for _ in range(3))
    for u, m, v in frames:
        expected = plain.combine(u, m, v)
        close(scaled.combine(u, m * c, v * c**2), expected, tol=1e-9)
        close(swapped.combine(u.flip(0), m.flip(0), v.flip(0)), expected, tol=1e-12)


def test_parameter_groups_do_not_change_the_trajectory() -> None:
    """The state is per bucket, the decision per coordinate: one group or two, the same steps."""
    scales, centers = T([[1.0, 1.0, 3.0], [50.0, 2.0, 0.5]]), T([[1.0, 1.0, 0.0], [-1, -1, 2]])

    def trajectory(split: bool) -> torch.Tensor:
        a = torch.full((2,), 0.3, dtype=torch.float64, requires_grad=True)
        b = torch.full((1,), 0.3, dtype=torch.float64, requires_grad=True)
        groups = [{"params": [a]}, {"params": [b], "lr": 0.05}] if split else [a, b]
        opt = AutoBalance(groups, base="adam", lr=0.05, combine="balanced-persistent")
        for _ in range(30):
            quad = (scales * (torch.cat([a, b]) - centers) ** 2).sum(1)
            opt.step({"L0": quad[0], "L1": quad[1]})
        return torch.cat([a, b]).detach()

    close(trajectory(True), trajectory(False), tol=1e-12)


def test_the_step_shrinks_at_a_compromise_and_not_before() -> None:
    """Two quadratics pull coordinate 0 apart (loss ``a`` also owns coordinate 1, so the scales
    differ): balanced-concede keeps moving coordinate 0 about ``lr`` per step around the
    compromise; balanced-persistent takes the same first step and later far shorter ones."""

    def moves(combine: str) -> list[float]:
        theta = torch.zeros(2, dtype=torch.float64, requires_grad=True)
        opt = AutoBalance([theta], base="adam", lr=0.01, combine=combine)
        out = []
        for _ in range(600):
            before = float(theta.detach()[0])
            a = 10 * (theta - 1).pow(2).sum()
            opt.step({"a": a, "b": (theta[0] + 1).pow(2)})
            out.append(abs(float(theta.detach()[0]) - before))
        return out

    concede = moves("balanced-concede")
    # step 1: balanced moments −20/20 + 2/√2 > 0, so b wins coordinate 0 and a concedes: 2 · lr
    assert concede[0] == pytest.approx(0.02, abs=1e-9)
    late_concede = sum(concede[-100:]) / 100
    assert late_concede > 0.005
    for combine in ("balanced-persistent", "balanced-anneal"):
        damped = moves(combine)
        assert damped[0] == pytest.approx(0.02, abs=1e-9)
        assert sum(damped[-100:]) / 100 < 0.1 * late_concede


def test_state_survives_a_checkpoint_loaded_with_weights_only() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    x = torch.randn(16, 2)

    def losses(model: torch.nn.Module) -> dict[str, torch.Tensor]:
        out = model(x)
        return {"a": (out - 1).pow(2).mean(), "b": 100 * out.pow(2).mean()}

    opt = AutoBalance(net.parameters(), lr=1e-2, combine="balanced-persistent")
    for _ in range(4):
        opt.step(losses(net))
    buffer = io.BytesIO()
    torch.save({"net": net.state_dict(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    twin = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    twin.load_state_dict(saved["net"])
    resumed = AutoBalance(twin.parameters(), lr=1e-2, combine="balanced-persistent")
    resumed.load_state_dict(saved["opt"])
    for _ in range(4):
        opt.step(losses(net))
        resumed.step(losses(twin))
    for p, q in zip(net.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)


def test_bad_input_is_named() -> None:
    for beta in (1.0, -0.1, float("nan"), "0.9"):
        with pytest.raises(HyperparameterError, match="beta"):
            BalancedPersistent(beta=beta)  # type: ignore[arg-type]
    rule = RULES.create("balanced-persistent")
    with pytest.raises(HyperparameterError, match="warm_start"):
        BalancedPersistent(warm_start=1)  # type: ignore[arg-type]
    with pytest.raises(HyperparameterError, match="'steps'"):
        rule.load_state_dict({"steps": 3})
    with pytest.raises(HyperparameterError, match="'persistence'"):
        rule.load_state_dict({"steps": 1, "persistence": [torch.zeros(2, 2)]})
    rule.combine(U, M, V)
    with pytest.raises(HyperparameterError, match="buckets of \\[3\\] coordinates, got \\[2\\]"):
        rule.combine(U[:, :2], M[:, :2], V[:, :2])


def test_registered_method_is_autobalance_with_the_screened_rule() -> None:
    """``autobalance-balanced-anneal``: AdamW states and ``balanced-anneal``, which is the
    screened ``balanced-persistent:beta=0.99,warm_start=true``, step by step."""
    assert "autobalance-balanced-anneal" in methods.names("multi-state")
    thetas = [torch.zeros(2, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    optimizers = [
        methods.create("autobalance-balanced-anneal", [thetas[0]], lr=0.05),
        AutoBalance([thetas[1]], base="adamw", lr=0.05, combine="balanced-anneal"),
        AutoBalance(
            [thetas[2]],
            base="adamw",
            lr=0.05,
            combine="balanced-persistent:beta=0.99,warm_start=true",
        ),
    ]
    for _ in range(5):
        for param, opt in zip(thetas, optimizers, strict=True):
            losses = {
                "a": (T([1.0, 4.0]) * (param - 1) ** 2).sum(),
                "b": (T([3.0, 1.0]) * (param + 1) ** 2).sum(),
            }
            opt.step(losses)
    close(thetas[0].detach(), thetas[1].detach(), tol=0.0)
    close(thetas[0].detach(), thetas[2].detach(), tol=0.0)
    rule = RULES.create("balanced-anneal")
    assert isinstance(rule, BalancedPersistent) and (rule.beta, rule.warm_start) == (0.99, True)


def test_a_rule_name_carries_its_parameters_and_each_optimizer_gets_its_own_rule() -> None:
    from autobalance.errors import ConfigError
    from autobalance.optim.combine import rule_for

    rule = rule_for("balanced-persistent:beta=0.9, warm_start=true")
    assert isinstance(rule, BalancedPersistent) and (rule.beta, rule.warm_start) == (0.9, True)
    assert rule_for("balanced-persistent:beta=0.9") is not rule_for("balanced-persistent:beta=0.9")
    one, two = (torch.zeros(3, dtype=torch.float64, requires_grad=True) for _ in range(2))
    first = AutoBalance([one], combine="balanced-persistent")
    second = AutoBalance([two], combine="balanced-persistent")
    first.step({"a": (one - 1).pow(2).sum(), "b": (one + 2).pow(2).sum()})
    assert second.state_dict()["autobalance"]["combine_rule"]["state"]["steps"] == 0
    with pytest.raises(ConfigError, match="unknown parameter 'gamma'"):
        rule_for("balanced-persistent:gamma=1")
    with pytest.raises(ConfigError, match="'beta' is not key=value"):
        rule_for("balanced-persistent:beta")
    with pytest.raises(HyperparameterError, match="beta must be a number in"):
        rule_for("balanced-persistent:beta=2")
    with pytest.raises(HyperparameterError, match="optionally with parameters"):
        rule_for("persistent:beta=0.9")


def test_golden_trajectory_of_balanced_anneal() -> None:
    """40 Adam-state steps on two quadratics (float64); values recorded when the rule was
    screened (round 7): a change of the rule or of its state's arithmetic shows here."""
    scales, centers = T([[1.0, 1.0, 3.0], [50.0, 2.0, 0.5]]), T([[1.0, 1.0, 0.0], [-1, -1, 2]])
    theta = torch.full((3,), 0.3, dtype=torch.float64, requires_grad=True)
    opt = AutoBalance([theta], base="adam", lr=0.05, combine="balanced-anneal")
    for _ in range(40):
        quad = (scales * (theta - centers) ** 2).sum(1)
        opt.step({"L0": quad[0], "L1": quad[1]})
    close(theta.detach(), [-0.3360636982935093, 0.9317270545601611, 0.07671970769898516], 1e-12)
    persistence = opt.state_dict()["autobalance"]["combine_rule"]["state"]["persistence"][0]
    assert persistence.abs().lt(1.0).all()  # every coordinate's decision has alternated
    assert opt.state_dict()["autobalance"]["combine_rule"]["state"]["steps"] == 40
