"""Issue 15: post-combine rules on the per-loss updates — closed forms, properties, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from autobalance.errors import HyperparameterError, UnknownNameError
from autobalance.optim.combine import (
    RULES,
    adam_blend,
    averaged_consensus,
    combine,
    floored_votes,
    protected_consensus,
    shared_second_moment,
    sign_consensus,
    updates_grads_gram,
)

PROP = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LINEAR = ["sum", "upgrad", "config", "descent-cone", "precedence", "progress"]
MOMENTS = [
    "balanced-anneal",
    "balanced-blend",
    "balanced-concede",
    "balanced-consensus",
    "balanced-discount",
    "balanced-graded",
    "balanced-persistent",
    "balanced-sum",
    "consensus",
    "consensus-mean",
    "damped-consensus",
    "floor",
    "guarded",
    "guarded-mean",
    "protected",
]


def T(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def close(a: torch.Tensor, b, tol: float = 1e-9) -> None:
    torch.testing.assert_close(a, b if isinstance(b, torch.Tensor) else T(b), rtol=tol, atol=tol)


def combine_moments(
    name: str, U: torch.Tensor, M: torch.Tensor, V: torch.Tensor | None = None, **kw
) -> torch.Tensor:
    return RULES.create(name, **kw).combine(U, M, torch.ones_like(U) if V is None else V)


def run(name: str, U, G=None, values=None, **kw) -> torch.Tensor:
    U = T(U) if not isinstance(U, torch.Tensor) else U
    G = U.clone() if G is None else (T(G) if not isinstance(G, torch.Tensor) else G)
    values = np.ones(U.shape[0]) if values is None else values
    return combine(RULES.create(name, **kw), U, G, values)


# ------------------------------------------------------------------------------ closed forms
def test_sum_is_the_papers_rule() -> None:
    close(run("sum", [[1, 0], [0, 1]], [[5, 5], [-3, 1]]), [1, 1])


def test_upgrad_projects_each_update_onto_the_dual_cone() -> None:
    # u1·u2 = -1: π(u1) = u1 + u2/2 = (.5, .5), π(u2) = u2 + u1 = (0, 1); Δ = their sum
    close(run("upgrad", [[1, 0], [-1, 1]]), [0.5, 1.5])


def test_config_on_the_updates_closed_form() -> None:
    # unit rows (1, 0), (−1, 1)/√2: d_u = (1, 1 + √2), Δ = (1 + √2)/‖d_u‖² · d_u = d_u / (2√2)
    r2 = math.sqrt(2)
    close(run("config", [[1, 0], [-1, 1]]), [1 / (2 * r2), (1 + r2) / (2 * r2)])
    close(run("config", [[1, 0], [0, 1]]), [1, 1])


def test_descent_cone_closed_form() -> None:
    # s = (1, 1); g2·s = −0.5 < 0: s − (g2·s/‖g2‖²) g2 = (1, 1) + 0.4·(−1, 0.5) = (0.6, 1.2)
    close(run("descent-cone", [[1, 0], [0, 1]], [[1, 0], [-1, 0.5]]), [0.6, 1.2])


def test_descent_cone_keeps_the_sum_when_no_loss_rises() -> None:
    close(run("descent-cone", [[1, 0], [0, 1]], [[1, 0], [1, 0.5]]), [1, 1])


def test_precedence_closed_form() -> None:
    # ‖g_1‖ > ‖g_0‖: u_0 yields its part along u_1: u_0' = (1, 0) + ½(−1, 1) = (½, ½)
    close(run("precedence", [[1, 0], [-1, 1]], [[1, 0], [0, 5]]), [-0.5, 1.5])
    # ‖g_0‖ > ‖g_1‖: u_1 yields: u_1' = (−1, 1) + (1, 0) = (0, 1)
    close(run("precedence", [[1, 0], [-1, 1]], [[5, 0], [0, 1]]), [1.0, 1.0])
    # anti-parallel updates: the larger gradient's update is the step
    close(run("precedence", [[1, 0], [-1, 0]], [[3, 0], [0, 1]]), [1.0, 0.0])
    # no conflict: the sum
    close(run("precedence", [[1, 0], [1, 1]], [[1, 0], [0, 5]]), [2.0, 1.0])


def test_progress_weights_closed_form() -> None:
    rule = RULES.create("progress")
    U, G = T([[1, 0], [0, 1]]), T([[1, 0], [0, 1]])
    close(combine(rule, U, G, [2.0, 1.0]), [1, 1])  # the first step fixes the references
    # r = (1/2, 1/4): w = 2 r / Σ r = (4/3, 2/3)
    close(combine(rule, U, G, [1.0, 0.25]), [4 / 3, 2 / 3])


def test_progress_temperature_sharpens() -> None:
    rule = RULES.create("progress", temperature=0.5)  # w ∝ r²: (1/4, 1/16) → 2·(4/5, 1/5)
    U = T([[1, 0], [0, 1]])
    combine(rule, U, U, [2.0, 1.0])
    close(combine(rule, U, U, [1.0, 0.25]), [8 / 5, 2 / 5])


def test_shared_second_moment_closed_form() -> None:
    eps = 1e-8
    v = T([[1.0], [4.0]])
    u = T([[1.0], [2.0]]) / (v.sqrt() + eps)  # lr·m̂ = (1, 2)
    close(shared_second_moment(u, v, eps), T([3.0 / (math.sqrt(5.0) + eps)]))


def test_sign_consensus_closed_form() -> None:
    u = T([[1.0, -1.0], [-0.5, 2.0]])
    # first moments = updates: Σ m = (0.5, 1) > 0 keeps the positive entries
    close(sign_consensus(u, u.clone()), [1.0, 2.0])
    # loss 2's first moment is larger at coordinate 0: its (smaller) update is the consensus
    m = T([[1.0, -1.0], [-5.0, 2.0]])
    close(sign_consensus(u, m), [-0.5, 2.0])
    close(combine_moments("consensus", u, m), [-0.5, 2.0])
    # a tie keeps nothing
    close(sign_consensus(T([[1.0], [-1.0]]), T([[1.0], [-1.0]])), [0.0])


def test_floored_votes_closed_form() -> None:
    # √v: loss 1 (2, 1), loss 2 (0.1, 1); R = 10: w2 = (max(0.1/2, 1/10), 1) = (0.1, 1), w1 = 1
    u = T([[1.0, -1.0], [-0.5, 2.0]])
    v = T([[4.0, 1.0], [0.01, 1.0]])
    close(floored_votes(u, v, 10.0), [1.0 - 0.05, 1.0])
    close(combine_moments("floor", u, u, v, ratio=10.0), [0.95, 1.0])
    # R large: Adam-like, every update scaled by √v_k / max_j √v_j: (1 − 0.5·0.05, −1 + 2)
    close(floored_votes(u, v, 1e6), [1.0 - 0.025, 1.0])
    # R = 1: the paper's sum
    close(floored_votes(u, v, 1.0), u.sum(0))
    # a coordinate nobody reaches (v = 0 for every loss) has zero updates and moves by 0
    close(floored_votes(T([[0.0], [0.0]]), T([[0.0], [0.0]]), 10.0), [0.0])
    assert RULES.create("floor").ratio == 10.0


def test_averaged_consensus_closed_form() -> None:
    # Σ m = (−3.5, 4): coordinate 0 keeps loss 2 alone, coordinate 1 the mean of losses 2 and 3
    u = T([[1.0, -1.0], [-0.5, 2.0], [0.5, 3.0]])
    m = T([[1.0, -1.0], [-5.0, 2.0], [0.5, 3.0]])
    close(averaged_consensus(u, m), [-0.5, 2.5])
    close(combine_moments("consensus-mean", u, m), [-0.5, 2.5])
    close(averaged_consensus(T([[1.0], [-1.0]]), T([[1.0], [-1.0]])), [0.0])  # a tie: nothing


def test_protected_consensus_closed_form() -> None:
    # Σ m = (−4, 1): coordinate 0 follows loss 2, coordinate 1 loss 1 (as in the consensus test)
    u = T([[1.0, -1.0], [-0.5, 2.0]])
    m = T([[1.0, -1.0], [-5.0, 2.0]])
    # comparable scales (√v: 1 and 2 at coordinate 0; 1 and 1 at 1): the consensus, R = 10
    close(protected_consensus(u, m, T([[1.0, 1.0], [4.0, 1.0]]), 10.0), [-0.5, 2.0])
    # loss 1's scale at coordinate 0 is 1/20 of loss 2's: protected, its update counts (sum)
    close(protected_consensus(u, m, T([[0.01, 1.0], [4.0, 1.0]]), 10.0), [0.5, 2.0])
    close(combine_moments("protected", u, m, T([[0.01, 1.0], [4.0, 1.0]])), [0.5, 2.0])
    # ... but not at R = 50: the consensus again
    close(protected_consensus(u, m, T([[0.01, 1.0], [4.0, 1.0]]), 50.0), [-0.5, 2.0])


def test_adam_blend_ends() -> None:
    eps = 1e-8
    v = T([[1.0, 4.0], [4.0, 1.0]])
    u = T([[1.0, -1.0], [2.0, 0.5]]) / (v.sqrt() + eps)
    v_sum = T([9.0, 0.25])
    close(adam_blend(u, v, v_sum, eps, 1.0), u.sum(0))
    close(adam_blend(u, v, v_sum, eps, 0.0), T([3.0 / (3.0 + eps), -0.5 / (0.5 + eps)]))
    close(
        adam_blend(u, v, v_sum, eps, 0.25),
        0.75 * adam_blend(u, v, v_sum, eps, 0.0) + 0.25 * u.sum(0),
    )


def test_joint_gram_layout() -> None:
    U, G = T([[1, 0]]), T([[0, 2]])
    np.testing.assert_allclose(updates_grads_gram(U, G), [[1, 0], [0, 4]])


# -------------------------------------------------------------------------------- properties
def matrices(min_k: int = 2, max_k: int = 4, min_p: int = 2, max_p: int = 6):
    @st.composite
    def draw(draw_value):
        k = draw_value(st.integers(min_k, max_k))
        p = draw_value(st.integers(min_p, max_p))
        el = st.floats(-10, 10, allow_nan=False, allow_infinity=False, width=32)
        U = np.array(draw_value(st.lists(el, min_size=k * p, max_size=k * p))).reshape(k, p)
        G = np.array(draw_value(st.lists(el, min_size=k * p, max_size=k * p))).reshape(k, p)
        return torch.tensor(U, dtype=torch.float64), torch.tensor(G, dtype=torch.float64)

    return draw()


def _nonzero_rows(M: torch.Tensor) -> bool:
    return bool((M.norm(dim=1) > 1e-3).all())


@PROP
@given(matrices())
def test_sign_consensus_moves_with_the_summed_moment(UG) -> None:
    U, G = UG
    m = U * (G.abs() + 0.1)  # first moments: the updates' signs, other magnitudes
    d = sign_consensus(U, m)
    summed = m.sum(0)
    assert bool((d * summed >= 0).all())
    same = (U > 0).all(0) | (U < 0).all(0)
    close(d[same], U.sum(0)[same])


@PROP
@given(matrices(), st.floats(1.0, 1e3))
def test_floored_votes_weights_lie_between_the_floor_and_one(UG, ratio) -> None:
    """Δ = Σ_k w_k ⊙ u_k with 1/R ≤ w ≤ 1 and w = 1 for the largest scale; rows permute freely."""
    U, G = UG
    V = G**2 + 1e-3
    d = floored_votes(U, V, ratio)
    w = torch.clamp(V.sqrt() / V.sqrt().max(0).values, min=1 / ratio)
    assert bool((w >= 1 / ratio - 1e-12).all()) and bool((w <= 1.0).all())
    assert bool((w.max(0).values == 1.0).all())
    close(d, (w * U).sum(0), tol=1e-9)
    perm = torch.randperm(U.shape[0])
    close(floored_votes(U[perm], V[perm], ratio), d, tol=1e-9)
    close(floored_votes(U[:1], V[:1], ratio), U[0])  # one loss: its own update (Adam)


@PROP
@given(matrices())
def test_floored_votes_without_a_floor_decide_as_the_summed_moment(UG) -> None:
    """R → ∞ and u_k = m_k/√v_k: Δ = Σ_k m_k / max_j √v_j, the direction of Σ_k m_k."""
    M, G = UG
    V = G**2 + 1e-3
    ratio = 1e9  # below every share here (√v ≥ 0.03, ≤ 10)
    d = floored_votes(M / V.sqrt(), V, ratio)
    close(d, M.sum(0) / V.sqrt().max(0).values, tol=1e-9)
    assert bool((d * M.sum(0) >= 0).all())


@PROP
@given(matrices())
def test_averaged_consensus_has_the_consensus_direction_and_one_updates_length(UG) -> None:
    U, G = UG
    m = U * (G.abs() + 0.1)
    d = averaged_consensus(U, m)
    assert bool((d * sign_consensus(U, m) >= 0).all())
    assert bool((d.abs() <= U.abs().max(0).values + 1e-12).all())
    agree = (U.sign() == m.sum(0).sign()).sum(0)
    close(d * agree.clamp(min=1), sign_consensus(U, m))
    same = (U > 0).all(0) | (U < 0).all(0)
    close(d[same], U.mean(0)[same])


@PROP
@given(matrices(), st.floats(1.0, 1e3))
def test_protected_consensus_lies_between_the_consensus_and_the_sum(UG, ratio) -> None:
    """Each coordinate keeps the consensus' updates plus some opposing ones: the protected."""
    U, G = UG
    m = U * (G.abs() + 0.1)
    V = G**2 + 1e-3  # an update with a zero second moment cannot occur
    d = protected_consensus(U, m, V, ratio)
    scale = V.sqrt()
    kept = (U.sign() == m.sum(0).sign()) | (ratio * scale < scale.max(0).values)
    close(d, (U * kept).sum(0))
    close(protected_consensus(U, m, V, 1e300), sign_consensus(U, m))
    close(protected_consensus(U[:1], m[:1], V[:1], ratio), U[0])  # one loss: Adam
    # the largest-scale loss is never protected: a coordinate whose scales are all equal is the
    # consensus there
    equal = (scale == scale.max(0).values).all(0)
    close(d[equal], sign_consensus(U, m)[equal])


@PROP
@given(matrices(max_k=2))
def test_precedence_keeps_the_larger_gradients_update(UG) -> None:
    U, G = UG
    assume(_nonzero_rows(U) and _nonzero_rows(G))
    top = int(torch.argmax(G.norm(dim=1)))
    d = run("precedence", U, G)
    other = U.sum(0) - U[top]
    # Δ = u_top + (the other update, minus its part opposing u_top): ⟨Δ, u_top⟩ ≥ ‖u_top‖²
    assert float(d @ U[top]) >= float(U[top] @ U[top]) * (1 - 1e-9) - 1e-9
    if float(other @ U[top]) >= 0:
        close(d, U.sum(0), tol=1e-9)


@PROP
@given(matrices())
def test_upgrad_never_opposes_an_update(UG) -> None:
    U, G = UG
    d = run("upgrad", U, G)
    scale = float(U.norm(dim=1).max()) ** 2 + 1.0
    assert bool((U @ d >= -1e-9 * scale * U.shape[0]).all())


@PROP
@given(matrices())
def test_upgrad_equals_sum_without_conflict(UG) -> None:
    U, G = UG
    U = U.abs()  # nonnegative rows never conflict
    close(run("upgrad", U, G), U.sum(0), tol=1e-8)


@PROP
@given(matrices(max_p=8))
def test_config_equal_cosines(UG) -> None:
    U, G = UG
    assume(_nonzero_rows(U))
    unit = U / U.norm(dim=1, keepdim=True)
    assume(U.shape[0] <= U.shape[1])
    assume(torch.linalg.svdvals(unit)[-1] > 1e-2)  # full row rank (K ≤ P)
    d = run("config", U, G)
    assume(d.norm() > 1e-9)
    cos = unit @ d / d.norm()
    close(cos, cos.mean().expand_as(cos).clone(), tol=1e-6)
    assert bool((cos > 0).all())


@PROP
@given(matrices())
def test_descent_cone_is_the_projection_onto_the_gradient_cone(UG) -> None:
    U, G = UG
    assume(_nonzero_rows(G))
    s = U.sum(0)
    d = run("descent-cone", U, G)
    scale = (float(G.norm(dim=1).max()) + 1.0) * (float(s.norm()) + 1.0)
    assert bool((G @ d >= -1e-8 * scale).all())  # no loss rises to first order
    # KKT of min ‖d − s‖² s.t. G d ≥ 0: d − s = Gᵀλ, λ ≥ 0, λ_k (G d)_k = 0
    lam = torch.linalg.lstsq(G.T, (d - s).unsqueeze(1)).solution.squeeze(1)
    close(G.T @ lam, d - s, tol=1e-6 * scale)
    active = (G @ d).abs() <= 1e-6 * scale
    assert bool(
        (lam[~active].abs() <= 1e-5 * scale).all() or torch.linalg.matrix_rank(G) < G.shape[0]
    )


@PROP
@given(matrices(), st.floats(0.1, 10.0), st.floats(0.1, 10.0))
def test_descent_cone_ignores_the_gradient_scales(UG, a, b) -> None:
    U, G = UG
    assume(_nonzero_rows(G))
    scales = torch.ones(G.shape[0], 1, dtype=G.dtype)
    scales[0], scales[-1] = a, b
    d1 = run("descent-cone", U, G)
    d2 = run("descent-cone", U, G * scales)
    close(d1, d2, tol=1e-6 * (float(d1.norm()) + 1.0))


@PROP
@given(matrices(), st.data())
@pytest.mark.parametrize("name", ["sum", "upgrad", "config", "descent-cone"])
def test_rules_are_permutation_invariant(name: str, UG, data) -> None:
    U, G = UG
    assume(_nonzero_rows(U) and _nonzero_rows(G))
    perm = data.draw(st.permutations(list(range(U.shape[0]))))
    d1, d2 = run(name, U, G), run(name, U[perm], G[perm])
    close(d1, d2, tol=1e-6 * (float(d1.norm()) + 1.0))


@PROP
@given(matrices(), st.floats(0.01, 100.0))
@pytest.mark.parametrize("name", LINEAR)
def test_rules_are_linear_under_scaling_of_the_updates(name: str, UG, c: float) -> None:
    U, G = UG
    assume(_nonzero_rows(U))
    d1, d2 = run(name, U, G), run(name, c * U, G)
    close(d2, c * d1, tol=1e-6 * c * (float(d1.norm()) + 1.0))


@PROP
@given(matrices(), st.lists(st.floats(1e-3, 1e3), min_size=4, max_size=4))
def test_progress_weights_sum_to_k(UG, values) -> None:
    U, G = UG
    K = U.shape[0]
    rule = RULES.create("progress")
    a, b = rule.coefficients(updates_grads_gram(U, G), np.ones(K))
    np.testing.assert_allclose(a, np.ones(K))  # first step: the sum
    a, b = rule.coefficients(updates_grads_gram(U, G), np.asarray(values[:K]))
    assert a.sum() == pytest.approx(K) and (a > 0).all() and not b.any()


def test_progress_state_round_trip() -> None:
    rule = RULES.create("progress")
    U = T([[1, 0], [0, 1]])
    combine(rule, U, U, [2.0, 1.0])
    again = RULES.create("progress")
    again.load_state_dict(rule.state_dict())
    close(combine(again, U, U, [1.0, 0.25]), combine(rule, U, U, [1.0, 0.25]))


# ------------------------------------------------------------------------------------ errors
def test_bad_inputs_are_named() -> None:
    with pytest.raises(HyperparameterError, match="updates"):
        run("sum", T([1.0, 2.0]).reshape(1, 1, 2))
    with pytest.raises(HyperparameterError, match="must have one row"):
        combine(RULES.create("sum"), T([[1, 0]]), T([[1, 0, 0]]), [1.0])
    with pytest.raises(HyperparameterError, match="NaN"):
        run("sum", [[math.nan, 0]])
    with pytest.raises(HyperparameterError, match="one loss value per row"):
        combine(RULES.create("sum"), T([[1, 0]]), T([[1, 0]]), [1.0, 2.0])
    with pytest.raises(HyperparameterError, match="temperature"):
        RULES.create("progress", temperature=0)
    with pytest.raises(HyperparameterError, match="alpha"):
        adam_blend(T([[1.0]]), T([[1.0]]), T([1.0]), 1e-8, 1.5)
    with pytest.raises(UnknownNameError, match="upgrad"):
        RULES.create("upgrd")
    for bad in (0.5, math.inf, math.nan):
        with pytest.raises(HyperparameterError, match="ratio"):
            RULES.create("floor", ratio=bad)
        with pytest.raises(HyperparameterError, match="ratio"):
            floored_votes(T([[1.0]]), T([[1.0]]), bad)
        with pytest.raises(HyperparameterError, match="ratio"):
            RULES.create("protected", ratio=bad)
    with pytest.raises(HyperparameterError, match="ratio"):
        floored_votes(T([[1.0]]), T([[1.0]]), "10")  # type: ignore[arg-type]
    with pytest.raises(HyperparameterError, match="keeps no state"):
        RULES.create("sum").load_state_dict({"x": 1})


def test_every_rule_is_catalogued() -> None:
    assert RULES.names("gram") == sorted(LINEAR)
    assert RULES.names("moments") == MOMENTS
