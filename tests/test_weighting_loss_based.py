"""Weighting methods driven by loss values only: DWA, SoftAdapt, ReLoBRaLo, RLW, uncertainty.

Each closed-form test feeds prescribed loss values (``L_k = v_k + 0·Σθ``, so the parameters do not
matter) and checks the weights against the paper's formula worked out by hand.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from autobalance import methods

THETA_SIZE = 2


def _value_losses(theta: torch.Tensor, values: dict[str, float]) -> dict[str, torch.Tensor]:
    return {name: v + 0.0 * theta.sum() for name, v in values.items()}


def _weights_for(method: str, sequence: list[dict[str, float]], **kw) -> list[dict[str, float]]:
    theta = torch.nn.Parameter(torch.zeros(THETA_SIZE, dtype=torch.float64))
    m = methods.create(method, [theta], base="sgd", lr=0.1, **kw)
    return [m.step(_value_losses(theta, values)).weights for values in sequence]


# ---------------------------------------------------------------------------------------- DWA
def test_dwa_closed_form_per_step() -> None:
    seq = [{"a": 4.0, "b": 1.0}, {"a": 2.0, "b": 1.0}, {"a": 1.0, "b": 3.0}, {"a": 1.0, "b": 1.0}]
    w = _weights_for("dwa", seq)
    assert w[0] == {"a": 1.0, "b": 1.0} and w[1] == {"a": 1.0, "b": 1.0}
    # step 3: r = (2/4, 1/1) = (0.5, 1), T = 2: w_a = 2·e^0.25/(e^0.25 + e^0.5) = 2/(1 + e^0.25)
    assert w[2]["a"] == pytest.approx(2 / (1 + math.exp(0.25)), rel=1e-12)
    assert w[2]["b"] == pytest.approx(2 / (1 + math.exp(-0.25)), rel=1e-12)
    # step 4: r = (1/2, 3/1) = (0.5, 3): w_a = 2/(1 + e^((3 − 0.5)/2))
    assert w[3]["a"] == pytest.approx(2 / (1 + math.exp(1.25)), rel=1e-12)


def test_dwa_averages_over_windows_of_every_steps() -> None:
    seq = [
        {"a": 4.0, "b": 1.0},
        {"a": 2.0, "b": 1.0},  # window 1 mean (3, 1)
        {"a": 1.0, "b": 2.0},
        {"a": 2.0, "b": 2.0},  # window 2 mean (1.5, 2)
        {"a": 9.0, "b": 9.0},
        {"a": 9.0, "b": 9.0},
    ]
    w = _weights_for("dwa", seq, every=2, temperature=1.0)
    assert all(x == {"a": 1.0, "b": 1.0} for x in w[:4])
    # r = (1.5/3, 2/1) = (0.5, 2), T = 1 → w_a = 2/(1 + e^1.5), held for the whole window
    expected = 2 / (1 + math.exp(1.5))
    assert w[4]["a"] == pytest.approx(expected, rel=1e-12) and w[5] == w[4]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.floats(0.01, 100.0), min_size=3, max_size=3), min_size=3, max_size=6))
def test_dwa_weights_sum_to_k_and_favour_the_slowest_descent(rows: list[list[float]]) -> None:
    seq = [dict(zip("abc", row, strict=True)) for row in rows]
    w = _weights_for("dwa", seq)[-1]
    assert math.fsum(w.values()) == pytest.approx(3.0, rel=1e-12)
    ratios = {n: seq[-2][n] / seq[-3][n] for n in "abc"}
    slowest = max(ratios, key=ratios.get)
    assert w[slowest] == pytest.approx(max(w.values()), rel=1e-12)


# ----------------------------------------------------------------------------------- SoftAdapt
def test_softadapt_closed_form_and_variants() -> None:
    seq = [{"a": 1.0, "b": 1.0}, {"a": 3.0, "b": 0.5}]
    w = _weights_for("softadapt", seq)
    assert w[0] == pytest.approx({"a": 0.5, "b": 0.5})
    # s = (2, −0.5), β = 0.1: w_a = 1/(1 + e^(0.1·(−0.5 − 2)))
    assert w[1]["a"] == pytest.approx(1 / (1 + math.exp(-0.25)), rel=1e-12)

    w = _weights_for("softadapt", seq, normalize=True, beta=2.0, eps=1e-8)
    ns = (2 / (2.5 + 1e-8), -0.5 / (2.5 + 1e-8))
    assert w[1]["a"] == pytest.approx(1 / (1 + math.exp(2 * (ns[1] - ns[0]))), rel=1e-12)

    w = _weights_for("softadapt", seq, loss_weighted=True, sum_to_k=True)
    ea, eb = 3.0 * math.exp(0.2), 0.5 * math.exp(-0.05)
    assert w[1]["a"] == pytest.approx(2 * ea / (ea + eb), rel=1e-12)
    assert w[0]["a"] == pytest.approx(2 * 1 / 2, rel=1e-12)  # s = 0: w ∝ L = (1, 1)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0.0, 50.0), min_size=6, max_size=6), st.floats(0.01, 5.0))
def test_softadapt_weights_are_a_distribution_favouring_growth(vals: list[float], beta) -> None:
    seq = [{"a": vals[0], "b": vals[1], "c": vals[2]}, {"a": vals[3], "b": vals[4], "c": vals[5]}]
    w = _weights_for("softadapt", seq, beta=beta)[-1]
    assert math.fsum(w.values()) == pytest.approx(1.0, rel=1e-12)
    growth = {n: seq[1][n] - seq[0][n] for n in "abc"}
    assert w[max(growth, key=growth.get)] == pytest.approx(max(w.values()), rel=1e-12)


# ----------------------------------------------------------------------------------- ReLoBRaLo
def _bal(now: list[float], then: list[float], t: float) -> list[float]:
    exps = [math.exp(n / (t * p)) for n, p in zip(now, then, strict=True)]
    return [len(now) * e / sum(exps) for e in exps]


def test_relobralo_closed_form_with_deterministic_lookback() -> None:
    seq = [{"a": 1.0, "b": 2.0}, {"a": 0.5, "b": 1.0}, {"a": 0.25, "b": 0.8}]
    alpha, temp = 0.9, 1.0
    w = _weights_for("relobralo", seq, alpha=alpha, expected_rho=1.0, temperature=temp, eps=0.0)
    assert w[0] == pytest.approx({"a": 1.0, "b": 1.0}, rel=1e-12)
    lam = [1.0, 1.0]
    for t in (1, 2):
        now = [seq[t]["a"], seq[t]["b"]]
        prev = [seq[t - 1]["a"], seq[t - 1]["b"]]
        b1 = _bal(now, prev, temp)
        lam = [alpha * x + (1 - alpha) * y for x, y in zip(lam, b1, strict=True)]  # ρ = 1
        assert [w[t]["a"], w[t]["b"]] == pytest.approx(lam, rel=1e-12)
    # ρ = 0 always: λ = α·bal(t, 0) + (1 − α)·bal(t, t−1)
    w = _weights_for("relobralo", seq, alpha=alpha, expected_rho=0.0, temperature=temp, eps=0.0)
    now, first, prev = [0.25, 0.8], [1.0, 2.0], [0.5, 1.0]
    expected = [
        alpha * x + (1 - alpha) * y
        for x, y in zip(_bal(now, first, temp), _bal(now, prev, temp), strict=True)
    ]
    assert [w[2]["a"], w[2]["b"]] == pytest.approx(expected, rel=1e-12)


def test_relobralo_draws_rho_from_its_seeded_generator() -> None:
    seq = [{"a": 1.0 + 0.1 * i, "b": 2.0 / (1 + i)} for i in range(20)]
    kw = {"alpha": 0.5, "expected_rho": 0.5, "temperature": 1.0, "eps": 0.0, "seed": 7}
    w = _weights_for("relobralo", seq, **kw)
    gen = torch.Generator().manual_seed(7)
    lam = [1.0, 1.0]
    assert list(w[0].values()) == lam  # t = 0: λ(0) = 1, no draw
    for t, values in enumerate(seq[1:], start=1):
        now = list(values.values())
        first = list(seq[0].values())
        prev = list(seq[t - 1].values())
        rho = 1.0 if torch.rand((), generator=gen, dtype=torch.float64).item() < 0.5 else 0.0
        b0, b1 = _bal(now, first, 1.0), _bal(now, prev, 1.0)
        lam = [
            0.5 * (rho * x + (1 - rho) * y) + 0.5 * z for x, y, z in zip(lam, b0, b1, strict=True)
        ]
        assert list(w[t].values()) == pytest.approx(lam, rel=1e-12)
    assert _weights_for("relobralo", seq, **kw) == w
    assert _weights_for("relobralo", seq, **{**kw, "seed": 8}) != w


def test_relobralo_first_step_is_exactly_one_whatever_the_losses() -> None:
    # With ε > 0 the balance of L(0) against itself is not 1 for tiny losses:
    # 1e-6/(0.1·1e-6 + 1e-8) ≈ 9.09 vs 1/(0.1 + 1e-8) ≈ 10; λ(0) must still be 1.
    seq = [{"a": 1e-6, "b": 1.0}, {"a": 1e-6, "b": 0.5}]
    w = _weights_for("relobralo", seq, alpha=0.5, expected_rho=1.0)
    assert w[0] == {"a": 1.0, "b": 1.0}
    # t = 1, ρ = 1: λ = ½·1 + ½·bal(1, 0), logits L(1)/(T·L(0) + ε)
    logits = [1e-6 / (0.1 * 1e-6 + 1e-8), 0.5 / (0.1 * 1.0 + 1e-8)]
    exps = [math.exp(x - max(logits)) for x in logits]
    b1 = [2 * e / sum(exps) for e in exps]
    assert [w[1]["a"], w[1]["b"]] == pytest.approx([0.5 + 0.5 * b for b in b1], rel=1e-12)


def test_relobralo_zero_denominator_takes_the_limit() -> None:
    # ε = 0 and L_a(0) = 0: no ZeroDivisionError.  t = 1: L_a stays 0 → logit 1/T (unchanged);
    # t = 2: L_a grows from 0 → logit +∞, so a takes the whole balance K = 2.
    seq = [{"a": 0.0, "b": 1.0}, {"a": 0.0, "b": 0.5}, {"a": 0.25, "b": 0.5}]
    w = _weights_for("relobralo", seq, alpha=0.0, expected_rho=1.0, temperature=1.0, eps=0.0)
    assert w[0] == {"a": 1.0, "b": 1.0}
    # α = 0: λ(t) = bal(t, t−1); t = 1: logits (1/T, 0.5/1) = (1, 0.5)
    assert w[1]["a"] == pytest.approx(2 / (1 + math.exp(-0.5)), rel=1e-12)
    assert w[2] == {"a": 2.0, "b": 0.0}


def test_dwa_and_softadapt_overflowing_logits_take_the_limit() -> None:
    # DWA: r_a = 1/1e-310 overflows to +∞ → w = (K, 0) instead of NaN
    seq = [{"a": 1e-310, "b": 1.0}, {"a": 1.0, "b": 1.0}, {"a": 1.0, "b": 1.0}]
    assert _weights_for("dwa", seq)[2] == {"a": 2.0, "b": 0.0}
    # SoftAdapt: β·s = 1e308·(2, −0.5) = (+∞, −∞) → w = (1, 0)
    seq = [{"a": 1.0, "b": 1.0}, {"a": 3.0, "b": 0.5}]
    assert _weights_for("softadapt", seq, beta=1e308)[1] == {"a": 1.0, "b": 0.0}


# ----------------------------------------------------------------------------------------- RLW
@pytest.mark.parametrize("sum_to_k", [False, True])
def test_rlw_is_softmax_of_seeded_normal_draws(sum_to_k: bool) -> None:
    seq = [{"a": 1.0, "b": 2.0, "c": 3.0}] * 4
    w = _weights_for("rlw", seq, seed=3, sum_to_k=sum_to_k)
    gen = torch.Generator().manual_seed(3)
    for weights in w:
        eps = torch.randn(3, generator=gen, dtype=torch.float64)
        expected = torch.softmax(eps, dim=0) * (3 if sum_to_k else 1)
        assert list(weights.values()) == pytest.approx(expected.tolist(), rel=1e-12)
        assert math.fsum(weights.values()) == pytest.approx(3.0 if sum_to_k else 1.0)
    assert w[0] != w[1]
    assert _weights_for("rlw", seq, seed=4)[0] != w[0]


# --------------------------------------------------------------------------------- uncertainty
def test_uncertainty_closed_form_with_sgd_on_log_variances() -> None:
    seq = [{"a": 3.0, "b": 0.5}, {"a": 3.0, "b": 0.5}]
    w = _weights_for("uncertainty", seq, weight_optimizer="sgd", weight_lr=0.2)
    assert w[0] == {"a": 0.5, "b": 0.5}  # s = 0
    # ∂/∂s_k (½e^(−s)L + ½s) at s = 0: ½ − ½L_k; s_k ← −0.2·(½ − ½L_k)
    s = [-0.2 * (0.5 - 0.5 * 3.0), -0.2 * (0.5 - 0.5 * 0.5)]
    assert [w[1]["a"], w[1]["b"]] == pytest.approx([0.5 * math.exp(-x) for x in s], rel=1e-12)


def test_uncertainty_converges_to_half_inverse_losses() -> None:
    theta = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    m = methods.create(
        "uncertainty", [theta], base="sgd", lr=0.1, weight_optimizer="sgd", weight_lr=0.5
    )
    for _ in range(200):
        info = m.step(_value_losses(theta, {"a": 4.0, "b": 0.25}))
    # stationary point s_k = log L_k, i.e. w_k = 1/(2 L_k)
    assert m.weighting.log_variances.tolist() == pytest.approx(
        [math.log(4.0), math.log(0.25)], abs=1e-9
    )
    assert info.weights["a"] == pytest.approx(0.125, rel=1e-6)
    assert info.weights["b"] == pytest.approx(2.0, rel=1e-6)


def test_uncertainty_network_gradient_is_weighted_sum() -> None:
    theta = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    m = methods.create("uncertainty", [theta], base="sgd", lr=0.1, init=math.log(2.0))
    info = m.step({"a": theta.square().sum(), "b": (theta - 1).square().sum()})
    # w = ½e^(−log 2) = ¼ each: g = ¼·(2θ + 2(θ − 1)) = ¼·((2, −4) + (0, −6)) = (0.5, −2.5)
    assert info.weights == pytest.approx({"a": 0.25, "b": 0.25}, rel=1e-15)
    torch.testing.assert_close(
        theta.detach(), torch.tensor([1.0 - 0.1 * 0.5, -2.0 + 0.1 * 2.5], dtype=torch.float64)
    )
