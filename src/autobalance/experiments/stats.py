"""Statistics for comparing methods over a handful of seeds, without scipy.

Descriptive statistics (:func:`summarize`): for a sample ``x_1..x_n``, the mean
``x̄ = Σ x_i / n``, the sample standard deviation ``s = √(Σ (x_i − x̄)² / (n − 1))``, the median
and quartiles (linear interpolation between order statistics, numpy's default), the minimum and
the maximum.

Two-sample tests (two-sided; ``p`` is the probability, under the null hypothesis, of a statistic
at least as extreme as the one observed):

* :func:`mann_whitney_u`: Mann–Whitney U (Wilcoxon rank-sum).  Pool both samples and rank them
  (ties get their mean rank); ``U = R_x − n_x(n_x + 1)/2`` with ``R_x`` the rank sum of ``x``,
  i.e. ``U = #{x_i > y_j} + ½ #{x_i = y_j}``.  Null: both samples come from one distribution, so
  every split of the pooled ranks into groups of sizes ``n_x, n_y`` is equally likely.  Exact
  (the permutation distribution of the rank sum, ties included, counted by dynamic programming)
  for ``n_x + n_y ≤ 50``; otherwise the normal approximation ``E U = n_x n_y / 2``,
  ``Var U = n_x n_y/12 · (N + 1 − Σ_k (t_k³ − t_k) / (N(N − 1)))`` (``t_k``: sizes of the tie
  groups, ``N = n_x + n_y``) with a continuity correction of ½.
* :func:`wilcoxon_signed_rank`: paired samples.  ``d_i = x_i − y_i``; zero differences are
  dropped; the ``|d_i|`` are ranked (mean ranks for ties) and ``W⁺`` is the sum of the ranks of the
  positive ``d_i``.  Null: each sign is + or − with probability ½ independently.  Exact (all
  ``2ⁿ`` sign patterns, counted by dynamic programming) for ``n ≤ 50``; otherwise normal with
  ``E W⁺ = n(n+1)/4``, ``Var W⁺ = n(n+1)(2n+1)/24 − Σ_k (t_k³ − t_k)/48`` and a continuity
  correction of ½.
* :func:`welch_t_test`: Welch's unequal-variance t test,
  ``t = (x̄ − ȳ) / √(s_x²/n_x + s_y²/n_y)`` with the Welch–Satterthwaite degrees of freedom
  ``ν = (s_x²/n_x + s_y²/n_y)² / ((s_x²/n_x)²/(n_x − 1) + (s_y²/n_y)²/(n_y − 1))`` and
  ``p = 2 P(T_ν ≥ |t|) = I_{ν/(ν+t²)}(ν/2, ½)``.  Errors of PINNs spread over orders of
  magnitude, so :func:`compare` applies it to ``log`` errors.

Exact two-sided p-values double the smaller one-sided tail, capped at 1.  Exact rank tests with
few samples cannot reach small p at all: with 3 seeds against 3 the smallest two-sided
Mann–Whitney p is ``2/C(6, 3) = 0.1`` and the smallest paired Wilcoxon p is ``2/2³ = 0.25``, so
no such comparison is significant at α = 0.05.  :attr:`TestResult.min_p` reports that floor.

Decision rule (:func:`compare`): ``a`` *wins* against ``b`` when ``median(a) < median(b)`` and the
primary test gives ``p < α``; it *loses* when ``median(a) > median(b)`` and ``p < α``; otherwise
it is a *tie* (not significant).  Lower is better (errors).  The primary test is the paired
Wilcoxon signed-rank test when the caller pairs the samples (same seeds), else Mann–Whitney U.
No correction for multiple comparisons is applied.

Special functions: the regularised incomplete beta function ``I_x(a, b)`` is evaluated by its
continued fraction (modified Lentz algorithm), which gives the Student t distribution function.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np

from autobalance.errors import AutoBalanceError

__all__ = [
    "EXACT_MAX_N",
    "Comparison",
    "Sample",
    "SampleError",
    "Summary",
    "TestResult",
    "compare",
    "mann_whitney_u",
    "normal_cdf",
    "rankdata",
    "regularized_incomplete_beta",
    "student_t_cdf",
    "student_t_sf",
    "summarize",
    "welch_t_test",
    "wilcoxon_signed_rank",
]

#: Largest total sample size (Mann–Whitney) or number of non-zero pairs (Wilcoxon) for which the
#: exact null distribution is used.  Counts stay below 2⁵³, so float64 holds them exactly.
EXACT_MAX_N = 50

#: One sample of values: a sequence of floats or a NumPy array (flattened).
Sample: TypeAlias = Sequence[float] | np.ndarray


class SampleError(AutoBalanceError):
    """A sample is empty, too small for the statistic, or holds non-finite values."""


# ---------------------------------------------------------------------------------- descriptive
@dataclass(frozen=True)
class Summary:
    """Descriptive statistics of one sample (``std`` uses ``n − 1``; NaN when ``n < 2``)."""

    n: int
    mean: float
    std: float
    median: float
    q1: float
    q3: float
    minimum: float
    maximum: float


def _sample(values: Sample, name: str, min_n: int = 1) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size < min_n:
        raise SampleError(f"sample {name!r} needs at least {min_n} value(s), got {x.size}")
    if not np.all(np.isfinite(x)):
        raise SampleError(f"sample {name!r} holds non-finite values: {x.tolist()}")
    return x


def summarize(values: Sample) -> Summary:
    """Mean, sample standard deviation, median, quartiles, minimum and maximum of ``values``."""
    x = _sample(values, "values")
    q1, median, q3 = np.quantile(x, [0.25, 0.5, 0.75])
    return Summary(
        n=int(x.size),
        mean=float(x.mean()),
        std=float(x.std(ddof=1)) if x.size > 1 else math.nan,
        median=float(median),
        q1=float(q1),
        q3=float(q3),
        minimum=float(x.min()),
        maximum=float(x.max()),
    )


def rankdata(values: Sample) -> np.ndarray:
    """Ranks ``1..n`` of ``values``; tied values share the mean of the ranks they span."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(x.size, dtype=np.float64)
    sorted_x = x[order]
    start = 0
    while start < x.size:
        stop = start + 1
        while stop < x.size and sorted_x[stop] == sorted_x[start]:
            stop += 1
        ranks[order[start:stop]] = 0.5 * (start + 1 + stop)  # mean of ranks start+1..stop
        start = stop
    return ranks


def _tie_sizes(values: np.ndarray) -> np.ndarray:
    _, counts = np.unique(values, return_counts=True)
    return counts.astype(np.float64)


# ------------------------------------------------------------------------------ special functions
def normal_cdf(z: float) -> float:
    """Standard normal distribution function ``Φ(z) = ½ erfc(−z/√2)``."""
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of ``I_x(a, b)`` (converges fast for ``x < (a + 1)/(a + b + 2)``).

    ``I_x(a, b) = x^a (1 − x)^b / (a B(a, b)) · 1/(1 + d_1/(1 + d_2/(1 + ...)))`` with
    ``d_{2m+1} = −(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1))`` and
    ``d_{2m} = m (b − m) x / ((a + 2m − 1)(a + 2m))``, evaluated by the modified Lentz method.
    """
    tiny = 1e-300
    c = 1.0
    d = 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        for coeff in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + coeff * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + coeff / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            return h
    return h  # pragma: no cover - the fraction converges in O(√max(a, b)) terms


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """``I_x(a, b) = B(x; a, b) / B(a, b)``, with ``B(x; a, b) = ∫₀ˣ t^(a−1) (1 − t)^(b−1) dt``.

    The distribution function of the Beta(a, b) distribution.  Uses the symmetry
    ``I_x(a, b) = 1 − I_{1−x}(b, a)`` to evaluate the continued fraction where it converges fast.

    Raises:
        SampleError: ``a`` or ``b`` not positive, or ``x`` outside ``[0, 1]``.
    """
    if not (a > 0 and b > 0):
        raise SampleError(f"incomplete beta needs a > 0 and b > 0, got a={a}, b={b}")
    if not 0.0 <= x <= 1.0:
        raise SampleError(f"incomplete beta needs 0 <= x <= 1, got x={x}")
    if x == 0.0 or x == 1.0:
        return x
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def student_t_sf(t: float, df: float) -> float:
    """``P(T_ν > t)`` for Student's t with ``ν = df > 0`` degrees of freedom.

    For ``t ≥ 0``: ``P(T_ν > t) = ½ I_{ν/(ν + t²)}(ν/2, ½)``; by symmetry for ``t < 0``.
    """
    if not df > 0:
        raise SampleError(f"the t distribution needs df > 0, got {df}")
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    tail = 0.5 * regularized_incomplete_beta(0.5 * df, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


def student_t_cdf(t: float, df: float) -> float:
    """``P(T_ν ≤ t)`` for Student's t with ``ν = df`` degrees of freedom."""
    return 1.0 - student_t_sf(t, df) if t >= 0 else student_t_sf(-t, df)


# ------------------------------------------------------------------------------------------ tests
@dataclass(frozen=True)
class TestResult:
    """The outcome of a two-sided test.

    Attributes:
        name: ``"mann-whitney"``, ``"wilcoxon"`` or ``"welch-t"``.
        statistic: ``U`` of the first sample, ``W⁺``, or ``t``.
        p_value: two-sided p-value.
        n: sample sizes (``(n_x, n_y)``; for Wilcoxon ``(pairs, non-zero pairs)``).
        exact: the exact null distribution was used (rank tests).
        df: degrees of freedom (Welch), else NaN.
        min_p: the smallest p-value the test can give at these sample sizes without ties (exact
            rank tests; 0 for the others): when ``min_p ≥ α`` no outcome can be significant.
    """

    __test__ = False  # not a pytest class

    name: str
    statistic: float
    p_value: float
    n: tuple[int, int]
    exact: bool
    df: float = math.nan
    min_p: float = 0.0


def _two_sided_from_counts(counts: np.ndarray, observed: int) -> float:
    """``min(1, 2 min(P(S ≤ s), P(S ≥ s)))`` for integer-valued ``S`` with ``counts[s]``."""
    total = counts.sum()
    lower = counts[: observed + 1].sum() / total
    upper = counts[observed:].sum() / total
    return float(min(1.0, 2.0 * min(lower, upper)))


def _subset_sum_counts(weights: np.ndarray, k: int) -> np.ndarray:
    """``counts[s]``: how many ``k``-element subsets of the integer ``weights`` sum to ``s``."""
    total = int(weights.sum())
    dp = np.zeros((k + 1, total + 1), dtype=np.float64)
    dp[0, 0] = 1.0
    for i, w in enumerate(int(v) for v in weights):
        for j in range(min(i + 1, k), 0, -1):  # each weight used at most once
            dp[j, w:] += dp[j - 1, : total + 1 - w]
    return dp[k]


def mann_whitney_u(x: Sample, y: Sample) -> TestResult:
    """Two-sided Mann–Whitney U test of ``x`` against ``y`` (see the module docstring).

    Raises:
        SampleError: an empty sample or a non-finite value.
    """
    xs, ys = _sample(x, "x"), _sample(y, "y")
    n1, n2 = xs.size, ys.size
    n = n1 + n2
    ranks = rankdata(np.concatenate([xs, ys]))
    u = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2)
    min_p = min(1.0, 2.0 / math.comb(n, n1))
    if n <= EXACT_MAX_N:
        doubled = np.rint(2 * ranks).astype(np.int64)  # mean ranks are multiples of ½
        counts = _subset_sum_counts(doubled, n1)
        p = _two_sided_from_counts(counts, int(doubled[:n1].sum()))
        return TestResult("mann-whitney", u, p, (n1, n2), True, min_p=min_p)
    ties = _tie_sizes(ranks)
    var = n1 * n2 / 12.0 * ((n + 1) - float(np.sum(ties**3 - ties)) / (n * (n - 1)))
    p = _normal_two_sided(u - n1 * n2 / 2.0, var)
    return TestResult("mann-whitney", u, p, (n1, n2), False, min_p=min_p)


def _normal_two_sided(deviation: float, var: float) -> float:
    """Two-sided normal p-value of ``deviation`` from the mean, continuity correction ½."""
    if var <= 0:
        return 1.0
    z = max(0.0, abs(deviation) - 0.5) / math.sqrt(var)
    return float(min(1.0, 2.0 * (1.0 - normal_cdf(z))))


def wilcoxon_signed_rank(x: Sample, y: Sample) -> TestResult:
    """Two-sided Wilcoxon signed-rank test of the pairs ``(x_i, y_i)`` (module docstring).

    With no non-zero difference, ``W⁺ = 0`` and ``p = 1``.

    Raises:
        SampleError: samples of different lengths, empty, or with non-finite values.
    """
    xs, ys = _sample(x, "x"), _sample(y, "y")
    if xs.size != ys.size:
        raise SampleError(f"paired samples need equal lengths, got {xs.size} and {ys.size}")
    d = xs - ys
    d = d[d != 0]
    n = int(d.size)
    if n == 0:
        return TestResult("wilcoxon", 0.0, 1.0, (int(xs.size), 0), True, min_p=1.0)
    ranks = rankdata(np.abs(d))
    w_plus = float(ranks[d > 0].sum())
    min_p = min(1.0, 2.0 / 2**n)
    if n <= EXACT_MAX_N:
        doubled = np.rint(2 * ranks).astype(np.int64)
        total = int(doubled.sum())
        counts = np.zeros(total + 1, dtype=np.float64)
        counts[0] = 1.0
        for w in (int(v) for v in doubled):  # each rank enters W⁺ or not
            shifted = np.zeros_like(counts)
            shifted[w:] = counts[: total + 1 - w]
            counts = counts + shifted
        p = _two_sided_from_counts(counts, int(doubled[d > 0].sum()))
        return TestResult("wilcoxon", w_plus, p, (int(xs.size), n), True, min_p=min_p)
    ties = _tie_sizes(ranks)
    var = n * (n + 1) * (2 * n + 1) / 24.0 - float(np.sum(ties**3 - ties)) / 48.0
    p = _normal_two_sided(w_plus - n * (n + 1) / 4.0, var)
    return TestResult("wilcoxon", w_plus, p, (int(xs.size), n), False, min_p=min_p)


def welch_t_test(x: Sample, y: Sample) -> TestResult:
    """Two-sided Welch t test of equal means (module docstring).

    When both samples have zero variance, ``t`` is ±∞ (p = 0) if the means differ, else 0
    (p = 1).

    Raises:
        SampleError: a sample with fewer than 2 values or a non-finite value.
    """
    xs, ys = _sample(x, "x", 2), _sample(y, "y", 2)
    n1, n2 = xs.size, ys.size
    v1, v2 = xs.var(ddof=1) / n1, ys.var(ddof=1) / n2
    diff = float(xs.mean() - ys.mean())
    se2 = float(v1 + v2)
    if se2 == 0.0:
        t = 0.0 if diff == 0 else math.copysign(math.inf, diff)
        p = 1.0 if diff == 0 else 0.0
        return TestResult("welch-t", t, p, (n1, n2), False, df=float(n1 + n2 - 2))
    t = diff / math.sqrt(se2)
    df = se2**2 / (v1**2 / (n1 - 1) + v2**2 / (n2 - 1))
    p = float(min(1.0, 2.0 * student_t_sf(abs(t), df)))
    return TestResult("welch-t", t, p, (n1, n2), False, df=float(df))


# ------------------------------------------------------------------------------------ comparison
@dataclass(frozen=True)
class Comparison:
    """``a`` against ``b`` (lower is better) under the decision rule of the module docstring.

    Attributes:
        outcome: ``"win"``, ``"tie"`` or ``"loss"`` for ``a``.
        median_a, median_b: the sample medians.
        test: the primary test (Wilcoxon when paired, else Mann–Whitney).
        welch_log: Welch's t test on ``log`` values (None when a sample has < 2 values or a
            value ≤ 0); reported, not used for the decision.
        alpha: the significance level.
    """

    outcome: str
    median_a: float
    median_b: float
    test: TestResult
    welch_log: TestResult | None
    alpha: float

    @property
    def significant(self) -> bool:
        """``p < α``."""
        return self.test.p_value < self.alpha


def compare(a: Sample, b: Sample, *, alpha: float = 0.05, paired: bool = False) -> Comparison:
    """Compare sample ``a`` with sample ``b`` (lower is better), see the module docstring.

    Args:
        a, b: the samples (e.g. final errors over seeds).
        alpha: significance level, in ``(0, 1)``.
        paired: ``a[i]`` and ``b[i]`` belong together (same seed); uses the Wilcoxon
            signed-rank test instead of Mann–Whitney U.

    Raises:
        SampleError: an empty sample, a non-finite value, unequal lengths when paired, or an
            ``alpha`` outside ``(0, 1)``.
    """
    if not 0.0 < alpha < 1.0:
        raise SampleError(f"alpha must be in (0, 1), got {alpha}")
    xs, ys = _sample(a, "a"), _sample(b, "b")
    test = wilcoxon_signed_rank(xs, ys) if paired else mann_whitney_u(xs, ys)
    welch = None
    if xs.size >= 2 and ys.size >= 2 and np.all(xs > 0) and np.all(ys > 0):
        welch = welch_t_test(np.log(xs), np.log(ys))
    med_a, med_b = float(np.median(xs)), float(np.median(ys))
    outcome = "tie"
    if test.p_value < alpha and med_a < med_b:
        outcome = "win"
    elif test.p_value < alpha and med_a > med_b:
        outcome = "loss"
    return Comparison(outcome, med_a, med_b, test, welch, alpha)
