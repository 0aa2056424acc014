"""Periodic Fourier pseudo-spectral solver in 1D with ETDRK4 time stepping, and its dense output.

Solves semilinear evolution equations on a periodic interval ``[x0, x0 + length)``::

    u_t = L u + N(u),        u(x, 0) = u0(x),

where ``L`` is linear, constant-coefficient and therefore diagonal in Fourier space (symbol
``L(k)``, e.g. ``−ν k²`` for diffusion, ``ε² (−k²) + 1`` for the linear part of Allen–Cahn) and
``N`` is a pointwise nonlinearity evaluated in physical space (e.g. ``ρ u (1 − u)``,
``u − u³``).  Space: ``n`` equispaced nodes ``x_j = x0 + j·length/n`` and the real FFT
(``numpy.fft.rfft``, ``n // 2 + 1`` non-negative wavenumbers).  Time: the fourth-order exponential
time-differencing Runge–Kutta scheme ETDRK4 of Cox & Matthews, whose coefficients (the
``φ``-functions of ``hL``) are computed by the contour-integral average of Kassam & Trefethen,
which avoids the cancellation of the direct formulas for small ``|hL|``.  The linear part is
integrated exactly, so stiff diffusion needs no small step.

Dense output: :class:`PeriodicSolution` stores the Fourier coefficients at saved times and
evaluates ``u(x, t)`` at **any** points: exactly spectral (the trigonometric interpolant) in ``x``,
and in ``t`` by ETDRK4 steps from the previous saved time to the exact ``t`` (no interpolation in
time, so the accuracy at arbitrary times is that of the scheme).

Sources: S. M. Cox, P. C. Matthews, "Exponential time differencing for stiff systems",
J. Comput. Phys. 176 (2002) 430–455; A.-K. Kassam, L. N. Trefethen, "Fourth-order time-stepping
for stiff PDEs", SIAM J. Sci. Comput. 26(4) (2005) 1214–1233.  Written from the equations in
those papers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from autobalance.errors import ConfigError

__all__ = [
    "ETDRK4Coefficients",
    "PeriodicSolution",
    "etdrk4_coefficients",
    "etdrk4_step",
    "evaluate_periodic",
    "nodes",
    "solve_periodic",
    "wavenumbers",
]

#: ``N(u)``: a pointwise nonlinearity acting on physical values of shape ``(..., n)``.
Nonlinearity = Callable[[np.ndarray], np.ndarray]
#: ``L(k)``: the Fourier symbol of the linear operator at wavenumbers ``k``.
LinearSymbol = Callable[[np.ndarray], np.ndarray]


def nodes(n: int, length: float = 2 * math.pi, x0: float = 0.0) -> np.ndarray:
    """The ``n`` equispaced periodic nodes ``x0 + j·length/n``, ``j = 0..n−1``."""
    return x0 + length * np.arange(n) / n


def wavenumbers(n: int, length: float = 2 * math.pi) -> np.ndarray:
    """Angular wavenumbers ``2π m / length``, ``m = 0..n//2``, of the real FFT of ``n`` values."""
    return 2 * math.pi / length * np.arange(n // 2 + 1, dtype=np.float64)


@dataclass(frozen=True)
class ETDRK4Coefficients:
    """Diagonal ETDRK4 coefficients for step ``h`` (arrays broadcast over the wavenumbers).

    ``e = exp(hL)``, ``e2 = exp(hL/2)``, ``q = h·φ1(hL/2)/…`` and ``f1, f2, f3`` of Cox & Matthews
    (eq. 26 of Kassam & Trefethen), each of the shape of ``h·L``.
    """

    e: np.ndarray
    e2: np.ndarray
    q: np.ndarray
    f1: np.ndarray
    f2: np.ndarray
    f3: np.ndarray


def etdrk4_coefficients(
    linear: np.ndarray, h: float | np.ndarray, *, n_contour: int = 64
) -> ETDRK4Coefficients:
    """ETDRK4 coefficients for the diagonal operator ``linear`` (``L(k)``) and step(s) ``h``.

    ``h`` is a float or an array broadcasting against ``linear`` (e.g. ``(B, 1)`` for a batch
    of step sizes).  Where ``|hL| < 1/2`` the ``φ``-functions are averaged over ``n_contour``
    points of the unit circle centred at ``hL`` (Kassam & Trefethen, Sec. 3), elsewhere the direct
    formulas are used (no cancellation there); for real ``L`` the real part is taken.
    ``h = 0`` gives the identity step.
    """
    lin = np.asarray(linear)
    h_arr = np.asarray(h, dtype=np.float64)
    hl = h_arr * lin
    h_full = np.broadcast_to(h_arr, hl.shape)
    # Direct formulas where |hL| >= 1/2 (little cancellation there), the contour average (whose
    # points then stay >= 1/2 away from 0) elsewhere.
    small = np.abs(hl) < 0.5
    z = np.where(small, 1.0, hl)
    phis = _phi_direct(z)
    if small.any():
        zs = hl[small][:, None] + np.exp(
            2j * math.pi * (np.arange(1, n_contour + 1) - 0.5) / n_contour
        )
        for phi, contour in zip(phis, _phi_direct(zs), strict=True):
            mean = contour.mean(axis=-1)
            phi[small] = mean if np.iscomplexobj(phi) else mean.real
    q, f1, f2, f3 = (h_full * phi for phi in phis)
    return ETDRK4Coefficients(np.exp(hl), np.exp(hl / 2), q, f1, f2, f3)


def _phi_direct(z: np.ndarray) -> list[np.ndarray]:
    """``[(e^{z/2} − 1)/z, (−4 − z + e^z(4 − 3z + z²))/z³, (2 + z + e^z(z − 2))/z³,
    (−4 − 3z − z² + e^z(4 − z))/z³]``: the ETDRK4 weights divided by ``h`` (accurate for
    ``|z| >= 1/2``; averaged over a circle around ``z`` for smaller ``|z|``)."""
    ez, z3 = np.exp(z), z**3
    return [
        (np.exp(z / 2) - 1) / z,
        (-4 - z + ez * (4 - 3 * z + z**2)) / z3,
        (2 + z + ez * (z - 2)) / z3,
        (-4 - 3 * z - z**2 + ez * (4 - z)) / z3,
    ]


def _nonlinear_hat(nonlinear: Nonlinearity, n: int) -> Callable[[np.ndarray], np.ndarray]:
    """``v̂ ↦ rfft(N(irfft(v̂)))`` along the last axis."""

    def apply(v_hat: np.ndarray) -> np.ndarray:
        return np.fft.rfft(nonlinear(np.fft.irfft(v_hat, n=n, axis=-1)), axis=-1)

    return apply


def etdrk4_step(
    v_hat: np.ndarray, n_hat: Callable[[np.ndarray], np.ndarray], c: ETDRK4Coefficients
) -> np.ndarray:
    """One ETDRK4 step of ``v̂' = L v̂ + N̂(v̂)`` (Cox & Matthews, eq. 26 of Kassam & Trefethen)."""
    nv = n_hat(v_hat)
    a = c.e2 * v_hat + c.q * nv
    na = n_hat(a)
    b = c.e2 * v_hat + c.q * na
    nb = n_hat(b)
    cc = c.e2 * a + c.q * (2 * nb - nv)
    nc = n_hat(cc)
    return c.e * v_hat + c.f1 * nv + 2 * c.f2 * (na + nb) + c.f3 * nc


def evaluate_periodic(
    coefficients: np.ndarray, n: int, x: np.ndarray, length: float = 2 * math.pi, x0: float = 0.0
) -> np.ndarray:
    """The trigonometric interpolant of real-FFT ``coefficients`` at arbitrary ``x``.

    ``coefficients`` has shape ``(n//2 + 1,)`` (one function for every ``x``) or
    ``(len(x), n//2 + 1)`` (one function per point).  For even ``n`` the Nyquist mode enters as
    ``cos``, the real interpolant of minimal degree; at the nodes the values are reproduced exactly
    (to rounding).
    """
    c = np.asarray(coefficients)
    xs = np.asarray(x, dtype=np.float64)
    k = wavenumbers(n, length)
    weights = np.full(k.shape, 2.0)
    weights[0] = 1.0
    if n % 2 == 0:
        weights[-1] = 1.0
    phase = np.exp(1j * np.outer(xs - x0, k))  # (P, K)
    if c.ndim == 1:
        return (phase @ (weights * c)).real / n
    return np.einsum("pk,pk->p", phase, weights * c).real / n


def solve_periodic(
    u0: np.ndarray,
    *,
    linear: LinearSymbol,
    nonlinear: Nonlinearity,
    t_end: float,
    n_steps: int,
    save_every: int = 1,
    length: float = 2 * math.pi,
    x0: float = 0.0,
) -> PeriodicSolution:
    """Integrate ``u_t = L u + N(u)`` from ``u0`` (values at :func:`nodes`) to ``t_end``.

    Args:
        u0: initial values at the ``n`` periodic nodes (``n = len(u0)``, even, >= 4).
        linear: the Fourier symbol ``L(k)`` at angular wavenumbers ``k``.
        nonlinear: the pointwise nonlinearity ``N(u)`` (vectorised over a leading batch axis).
        t_end: final time (> 0).
        n_steps: number of ETDRK4 steps of size ``t_end / n_steps``.
        save_every: keep the coefficients every ``save_every`` steps (``n_steps`` divisible by
            it); times between are reached by fresh ETDRK4 steps on evaluation.
        length, x0: the period and the left end of the interval.

    Returns:
        A :class:`PeriodicSolution` on ``[0, t_end]``.
    """
    values = np.asarray(u0, dtype=np.float64)
    n = values.shape[-1]
    if values.ndim != 1 or n < 4 or n % 2:
        raise ConfigError(f"spectral solver: u0 must be 1D with an even length >= 4, got {n}")
    if not (t_end > 0 and n_steps >= 1 and save_every >= 1 and n_steps % save_every == 0):
        raise ConfigError(
            "spectral solver: need t_end > 0, n_steps >= 1 and n_steps divisible by save_every "
            f"(got t_end={t_end}, n_steps={n_steps}, save_every={save_every})"
        )
    lin = np.asarray(linear(wavenumbers(n, length)))
    dt = t_end / n_steps
    coeffs = etdrk4_coefficients(lin, dt)
    n_hat = _nonlinear_hat(nonlinear, n)
    v = np.fft.rfft(values)
    saved = [v]
    for step in range(1, n_steps + 1):
        v = etdrk4_step(v, n_hat, coeffs)
        if step % save_every == 0:
            saved.append(v)
    return PeriodicSolution(
        coefficients=np.stack(saved),
        times=np.linspace(0.0, t_end, n_steps // save_every + 1),
        n=n,
        substeps=save_every,
        linear=lin,
        nonlinear=nonlinear,
        length=length,
        x0=x0,
    )


class PeriodicSolution:
    """Saved Fourier coefficients of a periodic solution, evaluable at any ``(x, t)``.

    ``coefficients[j]`` (real-FFT, ``n//2 + 1`` entries) is the solution at ``times[j]``
    (equispaced, from 0).  :meth:`__call__` reaches an arbitrary ``t`` from the last saved time
    ``t_j <= t`` with ``substeps`` ETDRK4 steps of size ``(t − t_j)/substeps`` (no larger than the
    solver's step), then evaluates the trigonometric interpolant at ``x``.
    """

    def __init__(
        self,
        *,
        coefficients: np.ndarray,
        times: np.ndarray,
        n: int,
        substeps: int,
        linear: np.ndarray,
        nonlinear: Nonlinearity,
        length: float = 2 * math.pi,
        x0: float = 0.0,
        chunk: int = 16,
    ) -> None:
        self.coefficients = np.asarray(coefficients)
        self.times = np.asarray(times, dtype=np.float64)
        self.n, self.substeps, self.length, self.x0 = n, substeps, length, x0
        self.linear = np.asarray(linear)
        self.nonlinear = nonlinear
        self.chunk = chunk

    @property
    def t_end(self) -> float:
        """The last saved time."""
        return float(self.times[-1])

    def coefficients_at(self, t: np.ndarray) -> np.ndarray:
        """Real-FFT coefficients at each time in ``t`` (``0 <= t <= t_end``), ``(len(t), K)``."""
        ts = np.asarray(t, dtype=np.float64).reshape(-1)
        tol = 1e-12 * max(1.0, self.t_end)
        if ts.size and (ts.min() < -tol or ts.max() > self.t_end + tol):
            raise ValueError(f"times must lie in [0, {self.t_end}], got [{ts.min()}, {ts.max()}]")
        ts = np.clip(ts, 0.0, self.t_end)
        dt_save = self.times[1] - self.times[0] if len(self.times) > 1 else 1.0
        j = np.clip(np.floor(ts / dt_save + 1e-12).astype(np.int64), 0, len(self.times) - 1)
        h = np.maximum(ts - self.times[j], 0.0)
        out = self.coefficients[j].copy()
        n_hat = _nonlinear_hat(self.nonlinear, self.n)
        moving = np.flatnonzero(h > 0)
        for start in range(0, moving.size, self.chunk):
            rows = moving[start : start + self.chunk]
            step = (h[rows] / self.substeps)[:, None]
            c = etdrk4_coefficients(self.linear, step)
            v = out[rows]
            for _ in range(self.substeps):
                v = etdrk4_step(v, n_hat, c)
            out[rows] = v
        return out

    def __call__(self, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        """``u(x_i, t_i)`` for paired arrays ``x`` and ``t`` of the same length."""
        xs = np.asarray(x, dtype=np.float64).reshape(-1)
        ts = np.asarray(t, dtype=np.float64).reshape(-1)
        if xs.shape != ts.shape:
            raise ValueError(f"x and t must have the same length, got {xs.size} and {ts.size}")
        out = np.empty(xs.shape, dtype=np.float64)
        unique, inverse = np.unique(ts, return_inverse=True)
        coeffs = self.coefficients_at(unique)
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(unique.size + 1))
        for u_idx in range(unique.size):
            sel = order[bounds[u_idx] : bounds[u_idx + 1]]
            out[sel] = evaluate_periodic(coeffs[u_idx], self.n, xs[sel], self.length, self.x0)
        return out
