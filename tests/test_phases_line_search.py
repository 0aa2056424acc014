"""The strong Wolfe line search: exact interpolation, the conditions it promises, bad input."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autobalance.errors import ConfigError
from autobalance.phases import cubic_minimizer, strong_wolfe


def test_cubic_minimizer_is_exact_on_a_quadratic() -> None:
    # φ(α) = (α − 0.3)², from α = 0 and α = 1
    assert cubic_minimizer(0.0, 0.09, -0.6, 1.0, 0.49, 1.4) == pytest.approx(0.3, abs=1e-15)


def test_cubic_minimizer_is_exact_on_a_cubic() -> None:
    # φ(α) = α³ − 3α (local minimum at α = 1), from α = 0 and α = 2
    assert cubic_minimizer(0.0, 0.0, -3.0, 2.0, 2.0, 9.0) == pytest.approx(1.0, abs=1e-14)


def test_cubic_minimizer_without_minimum_is_nan() -> None:
    # φ = −α²: a maximum, no minimiser of the interpolating polynomial
    assert math.isnan(cubic_minimizer(-1.0, -1.0, 2.0, 1.0, -1.0, -2.0))


def _check_wolfe(phi, alpha: float, c1: float = 1e-4, c2: float = 0.9) -> None:
    v0, d0 = phi(0.0)
    v, d = phi(alpha)
    assert v <= v0 + c1 * alpha * d0
    assert abs(d) <= -c2 * d0


@given(
    minimum=st.floats(1e-3, 1e3),
    curvature=st.floats(1e-3, 1e3),
    alpha0=st.floats(1e-4, 1e4),
)
def test_convex_quadratics_always_get_a_wolfe_step(
    minimum: float, curvature: float, alpha0: float
) -> None:
    def phi(a: float) -> tuple[float, float]:
        return curvature * (a - minimum) ** 2, 2 * curvature * (a - minimum)

    v0, d0 = phi(0.0)
    result = strong_wolfe(phi, v0, d0, alpha0)
    assert result.wolfe
    _check_wolfe(phi, result.alpha)
    assert result.value == phi(result.alpha)[0]


@given(shift=st.floats(0.05, 5.0), alpha0=st.floats(1e-3, 1e2))
def test_nonconvex_functions_get_a_wolfe_step(shift: float, alpha0: float) -> None:
    # φ(α) = (α − s)⁴ − (α − s)² ... shifted double well, descending at 0 for s > 1/√2
    def phi(a: float) -> tuple[float, float]:
        u = a - shift - 1.0
        return u**4 - u**2 + 0.1 * math.sin(5 * a), 4 * u**3 - 2 * u + 0.5 * math.cos(5 * a)

    v0, d0 = phi(0.0)
    if d0 >= 0:
        return
    result = strong_wolfe(phi, v0, d0, alpha0, max_evaluations=60)
    assert result.wolfe
    _check_wolfe(phi, result.alpha)


def test_overflow_is_backed_off_from() -> None:
    def phi(a: float) -> tuple[float, float]:
        if a > 0.5:
            return math.inf, math.nan
        return (a - 0.2) ** 2, 2 * (a - 0.2)

    result = strong_wolfe(phi, 0.04, -0.4, 1.0)
    assert result.wolfe and 0 < result.alpha <= 0.5
    _check_wolfe(phi, result.alpha)


def test_quadratic_from_a_long_trial_lands_on_the_exact_minimiser() -> None:
    def phi(a: float) -> tuple[float, float]:
        return 3.0 * (a - 0.25) ** 2, 6.0 * (a - 0.25)

    result = strong_wolfe(phi, *phi(0.0), 1.0, c2=0.1)
    assert result.alpha == pytest.approx(0.25, abs=1e-15)
    assert result.evaluations == 2


def test_no_decrease_gives_a_zero_step() -> None:
    calls = []

    def phi(a: float) -> tuple[float, float]:
        calls.append(a)
        return 1.0 + a, 1.0  # claims descent at 0 but rises everywhere

    result = strong_wolfe(phi, 1.0, -1.0, 1.0, max_evaluations=10)
    assert result.alpha == 0.0 and not result.wolfe
    assert result.evaluations == len(calls) <= 10


def test_bad_input_is_refused() -> None:
    def phi(a: float) -> tuple[float, float]:
        return a, 1.0

    with pytest.raises(ConfigError, match="0 < c1 < c2 < 1"):
        strong_wolfe(phi, 0.0, -1.0, c1=0.9, c2=0.5)
    with pytest.raises(ValueError, match="descent"):
        strong_wolfe(phi, 0.0, 1.0)
