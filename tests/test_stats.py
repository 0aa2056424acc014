"""Statistics of the report against closed forms, hand enumeration and textbook values."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from autobalance.errors import AutoBalanceError
from autobalance.experiments import stats
from autobalance.experiments.stats import (
    SampleError,
    compare,
    mann_whitney_u,
    rankdata,
    regularized_incomplete_beta,
    student_t_cdf,
    student_t_sf,
    summarize,
    welch_t_test,
    wilcoxon_signed_rank,
)

# ------------------------------------------------------------------------- incomplete beta / t


@pytest.mark.parametrize("x", [0.0, 0.01, 0.2, 0.5, 0.77, 0.99, 1.0])
def test_incomplete_beta_closed_forms(x: float) -> None:
    assert regularized_incomplete_beta(1, 1, x) == pytest.approx(x, abs=1e-14)
    assert regularized_incomplete_beta(3.5, 1, x) == pytest.approx(x**3.5, abs=1e-13)
    assert regularized_incomplete_beta(1, 4, x) == pytest.approx(1 - (1 - x) ** 4, abs=1e-13)
    assert regularized_incomplete_beta(2, 2, x) == pytest.approx(3 * x**2 - 2 * x**3, abs=1e-13)
    # I_x(a, b) = 1 − I_{1−x}(b, a)
    assert regularized_incomplete_beta(2.5, 7.0, x) == pytest.approx(
        1 - regularized_incomplete_beta(7.0, 2.5, 1 - x), abs=1e-13
    )


def test_incomplete_beta_known_points() -> None:
    for a in (0.5, 3.0, 40.0):
        assert regularized_incomplete_beta(a, a, 0.5) == pytest.approx(0.5, abs=1e-13)
    # I_x(½, ½) = (2/π) asin(√x)  (the arcsine distribution)
    for x in (0.1, 0.3, 0.9):
        assert regularized_incomplete_beta(0.5, 0.5, x) == pytest.approx(
            2 / math.pi * math.asin(math.sqrt(x)), abs=1e-13
        )


@pytest.mark.parametrize(("a", "b", "x"), [(0, 1, 0.5), (1, -1, 0.5), (1, 1, 1.5), (1, 1, -0.1)])
def test_incomplete_beta_rejects_bad_arguments(a: float, b: float, x: float) -> None:
    with pytest.raises(SampleError):
        regularized_incomplete_beta(a, b, x)


@pytest.mark.parametrize("t", [-7.0, -1.3, 0.0, 0.4, 2.0, 25.0])
def test_student_t_cdf_closed_forms(t: float) -> None:
    # ν = 1: Cauchy; ν = 2: ½ + t / (2√(2 + t²)); ν = 4: textbook closed form.
    assert student_t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-13)
    assert student_t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-13)
    s = t / math.sqrt(4 + t * t)
    assert student_t_cdf(t, 4) == pytest.approx(0.5 + 0.75 * s - 0.25 * s**3, abs=1e-13)
    assert student_t_cdf(t, 3.3) + student_t_sf(t, 3.3) == pytest.approx(1.0, abs=1e-14)


def test_student_t_quantiles_and_normal_limit() -> None:
    # Tabulated two-sided 95% critical values.
    assert student_t_cdf(2.228138851986, 10) == pytest.approx(0.975, abs=1e-10)
    assert student_t_cdf(12.7062047361747, 1) == pytest.approx(0.975, abs=1e-10)
    assert student_t_cdf(2.0085591121, 50) == pytest.approx(0.975, abs=1e-9)
    assert student_t_cdf(1.959963984540054, 1e7) == pytest.approx(0.975, abs=1e-7)
    assert student_t_sf(math.inf, 3) == 0.0


# ---------------------------------------------------------------------------------------- welch


def test_welch_known_example() -> None:
    # x̄ − ȳ = −3, s² = 1 each, se = √(2/3), ν = 4; R: t = −3.6742, df = 4, p = 0.02131.
    r = welch_t_test([1, 2, 3], [4, 5, 6])
    assert r.statistic == pytest.approx(-3 / math.sqrt(2 / 3))
    assert r.df == pytest.approx(4.0)
    s = 3.674234614174767 / math.sqrt(4 + 3.674234614174767**2)
    assert r.p_value == pytest.approx(2 * (0.5 - 0.75 * s + 0.25 * s**3), rel=1e-10)
    assert r.p_value == pytest.approx(0.02131, abs=5e-6)


def test_welch_unequal_variances_by_hand() -> None:
    x, y = [10.0, 12.0, 14.0, 16.0], [9.0, 9.5, 10.0]
    vx, vy = np.var(x, ddof=1) / 4, np.var(y, ddof=1) / 3  # 20/12, 0.25/3
    t = (13.0 - 9.5) / math.sqrt(vx + vy)
    df = (vx + vy) ** 2 / (vx**2 / 3 + vy**2 / 2)
    r = welch_t_test(x, y)
    assert r.statistic == pytest.approx(t)
    assert r.df == pytest.approx(df)
    assert r.p_value == pytest.approx(2 * student_t_sf(t, df))
    assert 3 < df < 3.5


def test_welch_degenerate_and_bad_input() -> None:
    assert welch_t_test([1, 1], [1, 1]).p_value == 1.0
    assert welch_t_test([1, 1], [2, 2]).p_value == 0.0
    with pytest.raises(SampleError, match="at least 2"):
        welch_t_test([1.0], [1.0, 2.0])
    with pytest.raises(SampleError, match="non-finite"):
        welch_t_test([1.0, math.nan], [1.0, 2.0])
    assert issubclass(SampleError, AutoBalanceError)


# ---------------------------------------------------------------------------------- rank tests


def test_rankdata_mean_ranks() -> None:
    np.testing.assert_array_equal(rankdata([3.0, 1.0, 3.0, 2.0, 3.0]), [4, 1, 4, 2, 4])


def test_mann_whitney_hand_enumerated() -> None:
    # 3 vs 3: the C(6, 3) = 20 splits of ranks 1..6 are equally likely under the null.
    # x = {1,2,3}: U = 0, the most extreme split, P(U ≤ 0) = 1/20, two-sided p = 0.1.
    r = mann_whitney_u([1, 2, 3], [4, 5, 6])
    assert (r.statistic, r.p_value, r.exact, r.min_p) == (0.0, pytest.approx(0.1), True, 0.1)
    # x = {1,2,4}: U = 1 (4 > 3); U ≤ 1 for ranks {1,2,3} and {1,2,4}: p = 2·2/20 = 0.2.
    r = mann_whitney_u([1, 2, 4], [3, 5, 6])
    assert r.statistic == 1.0
    assert r.p_value == pytest.approx(0.2)
    # Symmetric in the samples; identical samples give p = 1.
    assert mann_whitney_u([3, 5, 6], [1, 2, 4]).p_value == pytest.approx(0.2)
    assert mann_whitney_u([1, 2], [1, 2]).p_value == 1.0


def _brute_mann_whitney(x: list[float], y: list[float]) -> float:
    """Two-sided p by listing every split of the pooled midranks (the permutation null)."""
    ranks = rankdata(x + y)
    observed = ranks[: len(x)].sum()
    sums = [ranks[list(c)].sum() for c in itertools.combinations(range(len(ranks)), len(x))]
    lower = np.mean([s <= observed + 1e-9 for s in sums])
    upper = np.mean([s >= observed - 1e-9 for s in sums])
    return min(1.0, 2 * min(lower, upper))


def test_mann_whitney_matches_enumeration_with_ties() -> None:
    rng = np.random.default_rng(3)
    for _ in range(25):
        n1, n2 = rng.integers(1, 6, size=2)
        x = rng.integers(0, 5, size=n1).astype(float).tolist()  # many ties
        y = rng.integers(1, 6, size=n2).astype(float).tolist()
        assert mann_whitney_u(x, y).p_value == pytest.approx(_brute_mann_whitney(x, y), abs=1e-12)


def test_mann_whitney_textbook_example() -> None:
    # Hollander & Wolfe, as in R's wilcox.test examples: W = 35, one-sided p = 0.1272.
    x = [0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46]
    y = [1.15, 0.88, 0.90, 0.74, 1.21]
    r = mann_whitney_u(x, y)
    assert r.statistic == 35.0
    assert r.p_value == pytest.approx(2 * 0.1272, abs=2e-4)


def test_mann_whitney_normal_approximation_close_to_exact(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=25), rng.normal(0.2, size=25)
    exact = mann_whitney_u(x, y)
    monkeypatch.setattr(stats, "EXACT_MAX_N", 0)
    approx = mann_whitney_u(x, y)
    assert exact.exact and not approx.exact
    assert approx.statistic == exact.statistic
    assert approx.p_value == pytest.approx(exact.p_value, abs=2e-3)  # 0.0361 vs 0.0353


def test_wilcoxon_hand_enumerated_and_textbook() -> None:
    # 3 positive differences: W⁺ = 6 is the largest of 2³ equally likely sign patterns.
    r = wilcoxon_signed_rank([2, 3, 4], [1, 1, 1])
    assert (r.statistic, r.p_value, r.min_p) == (6.0, pytest.approx(0.25), 0.25)
    # Hollander & Wolfe depression data (R: V = 40, p-value = 0.03906 = 20/512).
    x = [1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30]
    y = [0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29]
    r = wilcoxon_signed_rank(x, y)
    assert r.statistic == 40.0
    assert r.p_value == pytest.approx(20 / 512)
    # Zero differences are dropped; no non-zero difference gives p = 1.
    assert wilcoxon_signed_rank([1, 2, 5], [1, 2, 4]).n == (3, 1)
    assert wilcoxon_signed_rank([1, 2], [1, 2]).p_value == 1.0
    with pytest.raises(SampleError, match="equal lengths"):
        wilcoxon_signed_rank([1, 2], [1])


def test_wilcoxon_matches_enumeration_with_ties() -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        n = int(rng.integers(1, 8))
        d = rng.integers(-3, 4, size=n).astype(float)
        d = d[d != 0]
        if d.size == 0:
            continue
        ranks = rankdata(np.abs(d))
        observed = ranks[d > 0].sum()
        sums = [
            sum(r for r, s in zip(ranks, signs, strict=True) if s)
            for signs in itertools.product((0, 1), repeat=d.size)
        ]
        lower = np.mean([s <= observed + 1e-9 for s in sums])
        upper = np.mean([s >= observed - 1e-9 for s in sums])
        expected = min(1.0, 2 * min(lower, upper))
        got = wilcoxon_signed_rank(d.tolist(), [0.0] * d.size).p_value
        assert got == pytest.approx(expected, abs=1e-12)


# ------------------------------------------------------------------------- summary / decisions


def test_summarize() -> None:
    s = summarize([1.0, 2.0, 4.0, 9.0])
    assert (s.n, s.mean, s.median, s.minimum, s.maximum) == (4, 4.0, 3.0, 1.0, 9.0)
    assert s.std == pytest.approx(math.sqrt((9 + 4 + 0 + 25) / 3))
    assert math.isnan(summarize([2.0]).std)
    with pytest.raises(SampleError):
        summarize([])


def test_compare_decision_rule() -> None:
    good, bad = [1e-3, 2e-3, 3e-3], [1e-2, 2e-2, 3e-2]
    # 3 vs 3 seeds: perfectly separated, yet p = 0.1 ≥ 0.05: a tie, not a win.
    c = compare(good, bad)
    assert (c.outcome, c.test.name, c.test.min_p) == ("tie", "mann-whitney", 0.1)
    assert c.welch_log is not None and c.welch_log.p_value < 0.05  # Welch reported, not used
    # 6 vs 6 separated: p = 2/924 → win, and the mirror image is a loss.
    good6, bad6 = [1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]
    assert compare(good6, bad6).outcome == "win"
    assert compare(bad6, good6).outcome == "loss"
    assert compare(good6, bad6).test.p_value == pytest.approx(2 / math.comb(12, 6))
    # Paired: 6 seeds, every difference negative: p = 2/2⁶ = 0.03125 → win.
    c = compare(good6, bad6, paired=True)
    assert (c.outcome, c.test.name) == ("win", "wilcoxon")
    assert c.test.p_value == pytest.approx(2 / 64)
    assert compare(good6, bad6, paired=True, alpha=0.01).outcome == "tie"
    # Non-positive values: no Welch on logs.
    assert compare([0.0, 1.0], [1.0, 2.0]).welch_log is None
    with pytest.raises(SampleError, match="alpha"):
        compare(good, bad, alpha=1.5)
