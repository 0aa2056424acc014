"""A line search that satisfies the strong Wolfe conditions (Nocedal & Wright, Alg. 3.5/3.6).

Along a descent direction ``p`` from ``x`` let ``φ(α) = f(x + α p)`` with ``φ'(0) < 0``.  A step
``α > 0`` satisfies the strong Wolfe conditions (Nocedal & Wright, *Numerical Optimization*, 2nd
ed., 2006, Eq. 3.7) when::

    φ(α) ≤ φ(0) + c1 α φ'(0)            (sufficient decrease)
    |φ'(α)| ≤ c2 |φ'(0)|                 (curvature),        0 < c1 < c2 < 1.

Algorithm 3.5 brackets an acceptable step by extrapolation, Algorithm 3.6 ("zoom") shrinks the
bracket with the minimiser of the cubic interpolating ``φ`` and ``φ'`` at its ends (Eq. 3.59),
falling back to bisection when that minimiser is not well inside the bracket.  A non-finite
``φ(α)`` counts as a failed sufficient-decrease test, so the search backs off from overflow.

Written here rather than reusing ``torch.optim.lbfgs._strong_wolfe``, which is private (not a
stable API).  On a quadratic the cubic interpolant is exact, so one zoom step lands on the exact
minimiser along ``p``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from autobalance.errors import ConfigError

__all__ = ["LineSearchResult", "cubic_minimizer", "strong_wolfe"]

#: ``α -> (φ(α), φ'(α))``.
LineFunction = Callable[[float], tuple[float, float]]


@dataclass(frozen=True)
class LineSearchResult:
    """``alpha``: the step (0 when nothing decreased ``φ``); ``value``, ``slope``: ``φ`` and
    ``φ'`` there; ``evaluations``: calls of ``φ``; ``wolfe``: both strong Wolfe conditions hold
    (otherwise ``alpha`` is the best step with sufficient decrease found, or 0)."""

    alpha: float
    value: float
    slope: float
    evaluations: int
    wolfe: bool


def cubic_minimizer(a: float, fa: float, da: float, b: float, fb: float, db: float) -> float:
    """The minimiser of the cubic through ``(a, fa, da)`` and ``(b, fb, db)`` (Nocedal & Wright,
    Eq. 3.59); NaN when the cubic has no minimiser (negative discriminant) or ``a == b``."""
    if a == b:
        return math.nan
    d1 = da + db - 3.0 * (fa - fb) / (a - b)
    disc = d1 * d1 - da * db
    if not disc >= 0.0:  # also catches NaN
        return math.nan
    d2 = math.copysign(math.sqrt(disc), b - a)
    denom = db - da + 2.0 * d2
    if denom == 0.0:
        return math.nan
    return b - (b - a) * (db + d2 - d1) / denom


def _inside(candidate: float, lo: float, hi: float, margin: float) -> float:
    """``candidate`` if it lies in the bracket shrunk by ``margin`` of its width, else the
    midpoint (the safeguard of the zoom step)."""
    left, right = min(lo, hi), max(lo, hi)
    width = right - left
    if math.isfinite(candidate) and left + margin * width <= candidate <= right - margin * width:
        return candidate
    return 0.5 * (lo + hi)


def strong_wolfe(
    phi: LineFunction,
    value0: float,
    slope0: float,
    alpha0: float = 1.0,
    *,
    c1: float = 1e-4,
    c2: float = 0.9,
    max_evaluations: int = 25,
    alpha_max: float = 1e10,
) -> LineSearchResult:
    """Find ``α`` satisfying the strong Wolfe conditions along a descent direction.

    Args:
        phi: ``α -> (φ(α), φ'(α))``; each call is one evaluation.
        value0, slope0: ``φ(0)`` and ``φ'(0) < 0``.
        alpha0: the first trial step (1 for quasi-Newton directions).
        c1, c2: the constants of the conditions, ``0 < c1 < c2 < 1``.
        max_evaluations: the most calls of ``phi``.
        alpha_max: the largest step tried.

    Returns:
        The accepted step; when the budget runs out, the best step with sufficient decrease
        seen (``wolfe=False``), or ``alpha=0`` when there is none.
    """
    if not 0.0 < c1 < c2 < 1.0:
        raise ConfigError(f"line search needs 0 < c1 < c2 < 1, got c1={c1}, c2={c2}")
    if not slope0 < 0.0:
        raise ValueError(f"not a descent direction: φ'(0) = {slope0} must be negative")
    if not alpha0 > 0.0:
        raise ValueError(f"the first trial step must be positive, got {alpha0}")
    evaluations = 0

    def armijo(alpha: float, value: float) -> bool:
        return math.isfinite(value) and value <= value0 + c1 * alpha * slope0

    def curvature(slope: float) -> bool:
        return abs(slope) <= -c2 * slope0

    # Best step with sufficient decrease so far (returned if the budget runs out).
    best = (0.0, value0, slope0)

    def note(alpha: float, value: float, slope: float) -> None:
        nonlocal best
        if armijo(alpha, value) and value < best[1]:
            best = (alpha, value, slope)

    def zoom(lo: tuple[float, float, float], hi: tuple[float, float, float]) -> LineSearchResult:
        nonlocal evaluations
        while evaluations < max_evaluations:
            (a_lo, f_lo, d_lo), (a_hi, f_hi, d_hi) = lo, hi
            if abs(a_hi - a_lo) <= 1e-14 * max(1.0, abs(a_lo)):
                break
            if math.isfinite(f_hi) and math.isfinite(d_hi):
                trial = cubic_minimizer(a_lo, f_lo, d_lo, a_hi, f_hi, d_hi)
            else:
                trial = math.nan
            alpha = _inside(trial, a_lo, a_hi, 0.1)
            value, slope = phi(alpha)
            evaluations += 1
            note(alpha, value, slope)
            if not armijo(alpha, value) or value >= f_lo:
                hi = (alpha, value, slope)
                continue
            if curvature(slope):
                return LineSearchResult(alpha, value, slope, evaluations, True)
            if slope * (a_hi - a_lo) >= 0.0:
                hi = lo
            lo = (alpha, value, slope)
        return LineSearchResult(best[0], best[1], best[2], evaluations, False)

    previous = (0.0, value0, slope0)
    alpha = min(alpha0, alpha_max)
    while evaluations < max_evaluations:
        value, slope = phi(alpha)
        evaluations += 1
        note(alpha, value, slope)
        if not armijo(alpha, value) or (evaluations > 1 and value >= previous[1]):
            return zoom(previous, (alpha, value, slope))
        if curvature(slope):
            return LineSearchResult(alpha, value, slope, evaluations, True)
        if slope >= 0.0:
            return zoom((alpha, value, slope), previous)
        if alpha >= alpha_max:
            break
        previous = (alpha, value, slope)
        alpha = min(2.0 * alpha, alpha_max)
    return LineSearchResult(best[0], best[1], best[2], evaluations, False)
