"""1D Allen–Cahn equation (periodic), reference by Fourier pseudo-spectral ETDRK4."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from autobalance._params import AtLeast, EvenAtLeast, Finite, Positive, param
from autobalance.derivatives import gradients
from autobalance.errors import ConfigError
from autobalance.losses import NamedLosses
from autobalance.problems import spectral
from autobalance.problems.base import Batch, Model, SpaceTimeProblem, on_input_columns
from autobalance.problems.cache import cached_arrays
from autobalance.problems.domain import Box

__all__ = ["AllenCahn", "AllenCahnReference"]

_X0, _LENGTH = -1.0, 2.0
#: Oversampling of the FFT that projects ``u0`` onto the retained Fourier modes.
_OVERSAMPLE = 16
#: Points per vectorised block when evaluating at scattered points.
_BLOCK = 1024


def _initial(x: np.ndarray) -> np.ndarray:
    return x**2 * np.cos(math.pi * x)


class AllenCahnReference:
    """The spectral solution of ``u_t = d u_xx + ρ (u − u³)`` on ``[−1, 1)`` from ``x² cos πx``.

    Space: ``n_modes`` periodic Fourier nodes.  ``u0`` has a kink at ``x = ±1`` in its periodic
    extension (``u0'(±1) = ∓2``), so its nodal interpolant carries an ``O(h²)`` aliasing error
    into every mode; the solver therefore starts from the Fourier *projection* of ``u0``
    (an FFT oversampled 16×, truncated).  Time: ETDRK4 (:mod:`autobalance.problems.spectral`)
    with ``n_steps`` steps on ``[0, 1]``; coefficients saved every ``save_every`` steps and
    cached on disk (:func:`~autobalance.problems.cache.cached_arrays`).

    Dense output: between saved times, cubic Hermite interpolation of the Fourier coefficients
    with the exact time derivative ``∂_t v̂ = L v̂ + N̂(v̂)`` from the equation at both ends, then the
    trigonometric interpolant in ``x``.  At ``t = 0`` exactly, ``u0`` itself is returned.

    Accuracy with the defaults (2048 modes, 1000 steps, saved every 5e-3), measured against
    8192 modes: ≤ 3e-7 for ``t ≥ 0.005``; the Hermite interpolation adds ≤ 2e-8 at arbitrary
    times (checked against exact ETDRK4 steps to those times).  For ``0 < t < 0.005`` the
    kink at ``x = ±1`` is not yet smoothed below the grid scale and the error there reaches
    about 3e-4 (any finite Fourier resolution has this).
    """

    def __init__(
        self,
        *,
        diffusion: float,
        reaction: float,
        n_modes: int,
        n_steps: int,
        save_every: int,
    ) -> None:
        self.diffusion, self.reaction = diffusion, reaction
        self.n_modes, self.n_steps, self.save_every = n_modes, n_steps, save_every
        params = {
            "diffusion": diffusion,
            "reaction": reaction,
            "n_modes": n_modes,
            "n_steps": n_steps,
            "save_every": save_every,
            "oversample": _OVERSAMPLE,
            "scheme": "etdrk4-projected-u0",
        }
        arrays = cached_arrays("allen-cahn", params, self._compute)
        self.coefficients = np.asarray(arrays["coefficients"])
        self.times = np.asarray(arrays["times"], dtype=np.float64)
        self.linear = self._linear(spectral.wavenumbers(n_modes, _LENGTH))
        self.rates = self.linear * self.coefficients + self._nonlinear_hat(self.coefficients)

    def _linear(self, k: np.ndarray) -> np.ndarray:
        return -self.diffusion * k**2 + self.reaction

    def _nonlinear(self, u: np.ndarray) -> np.ndarray:
        return -self.reaction * u**3

    def _nonlinear_hat(self, v_hat: np.ndarray) -> np.ndarray:
        values = np.fft.irfft(v_hat, n=self.n_modes, axis=-1)
        return np.fft.rfft(self._nonlinear(values), axis=-1)

    def _compute(self) -> dict[str, np.ndarray]:
        n = self.n_modes
        fine = spectral.nodes(n * _OVERSAMPLE, _LENGTH, _X0)
        projected = np.fft.rfft(_initial(fine))[: n // 2 + 1] / _OVERSAMPLE
        solution = spectral.solve_periodic(
            np.fft.irfft(projected, n=n),
            linear=self._linear,
            nonlinear=self._nonlinear,
            t_end=1.0,
            n_steps=self.n_steps,
            save_every=self.save_every,
            length=_LENGTH,
            x0=_X0,
        )
        return {"coefficients": solution.coefficients, "times": solution.times}

    def _coefficients_at(self, t: np.ndarray) -> np.ndarray:
        """Hermite-interpolated Fourier coefficients at each time in ``t``, ``(len(t), K)``."""
        step = self.times[1] - self.times[0]
        j = np.clip(np.floor(t / step).astype(np.int64), 0, len(self.times) - 2)
        s = ((t - self.times[j]) / step)[:, None]
        h00, h01 = 2 * s**3 - 3 * s**2 + 1, 3 * s**2 - 2 * s**3
        h10, h11 = (s**3 - 2 * s**2 + s) * step, (s**3 - s**2) * step
        c, r = self.coefficients, self.rates
        return h00 * c[j] + h10 * r[j] + h01 * c[j + 1] + h11 * r[j + 1]

    def __call__(self, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        """``u(x_i, t_i)`` for paired arrays (``x ∈ [−1, 1]``, ``t ∈ [0, 1]``)."""
        xs = np.asarray(x, dtype=np.float64).reshape(-1)
        ts = np.asarray(t, dtype=np.float64).reshape(-1)
        if xs.shape != ts.shape:
            raise ValueError(f"x and t must have the same size, got {xs.size} and {ts.size}")
        if ts.size and (ts.min() < 0 or ts.max() > 1 + 1e-12):
            raise ValueError(f"times must lie in [0, 1], got [{ts.min()}, {ts.max()}]")
        ts = np.clip(ts, 0.0, 1.0)
        n = self.n_modes
        ux, x_index = np.unique(xs, return_inverse=True)
        ut, t_index = np.unique(ts, return_inverse=True)
        if ux.size * ut.size <= 4 * xs.size:  # a grid: one table of all pairs
            coeffs = self._coefficients_at(ut)  # (Ut, K)
            k = spectral.wavenumbers(n, _LENGTH)
            weights = np.full(k.shape, 2.0)
            weights[0] = weights[-1] = 1.0  # n even: the Nyquist mode enters once
            phase = np.exp(1j * np.outer(ux - _X0, k))  # (Ux, K)
            table = (phase @ (weights * coeffs).T).real / n  # (Ux, Ut)
            out = table[x_index, t_index]
        else:
            out = np.empty_like(xs)
            for start in range(0, xs.size, _BLOCK):
                block = slice(start, start + _BLOCK)
                coeffs = self._coefficients_at(ts[block])
                out[block] = spectral.evaluate_periodic(coeffs, n, xs[block], _LENGTH, _X0)
        at_start = ts == 0
        out[at_start] = _initial(xs[at_start])
        return out


@dataclass(eq=False, kw_only=True)
class AllenCahn(SpaceTimeProblem):
    """1D Allen–Cahn: u_t − d·u_xx + ρ·u³ − ρ·u = 0 on [−1,1]×[0,1], periodic, u0 = x² cos πx.

    Equation::

        u_t − d u_xx + ρ u³ − ρ u = 0,          x ∈ [−1, 1], t ∈ [0, 1]
        u(x, 0) = x² cos(πx),
        u(−1, t) = u(1, t),  u_x(−1, t) = u_x(1, t)   (periodic)

    Inputs ``(x, t)``, output ``u``.  Losses (each from its own forward pass):

    * ``"residual"``: mean of ``(u_t − d u_xx + ρ u³ − ρ u)²`` over interior points,
    * ``"initial"``: mean of ``(u(x, 0) − x² cos πx)²`` over points on ``t = 0``,
    * ``"boundary"``: the batch holds ``x = −1`` points, each paired with ``(1, t)``; columns
      ``(u(−1,t) − u(1,t), u_x(−1,t) − u_x(1,t))``, the loss is the mean over both.

    Reference: :class:`AllenCahnReference`, a Fourier pseudo-spectral ETDRK4 solution (Kassam &
    Trefethen 2005) computed in the package and cached on disk (first use: about 0.5 s), with
    cubic Hermite dense output in ``t``; accurate to about 3e-7 for ``t ≥ 0.005`` (see there).

    Hard constraint (variant ``"hard_constraint"``): ``u = x² cos πx + t N`` enforces
    ``"initial"`` only (see :meth:`hard_constraint`).

    Defaults: ``d = 1e-4``, ``ρ = 5``; solver ``n_modes = 2048``, ``n_steps = 1000``,
    ``save_every = 5``; 1024 residual, 256 initial and 256 boundary points per step; a
    512 × 201 evaluation grid in ``(x, t)`` (``t`` every 0.005, the saved times).

    Sources: M. Raissi, P. Perdikaris, G. E. Karniadakis, "Physics-informed neural networks",
    J. Comput. Phys. 378 (2019) 686–707, Sec. 4.2; S. Wang, S. Sankaran, H. Wang, P. Perdikaris,
    "An expert's guide to training physics-informed neural networks" (jaxpi), arXiv:2308.08468,
    Allen–Cahn example; A.-K. Kassam, L. N. Trefethen, SIAM J. Sci. Comput. 26(4) (2005).
    """

    name = "allen-cahn"
    periodic = True
    input_names = ("x", "t")
    output_names = ("u",)
    loss_names = ("residual", "initial", "boundary")
    domain = Box(lower=(-1.0, 0.0), upper=(1.0, 1.0))

    d: float = param(1e-4, Finite(), Positive("diffusion"))
    rho: float = param(5.0, Finite())
    n_residual: int = param(1024, AtLeast(1))
    n_initial: int = param(256, AtLeast(1))
    n_boundary: int = param(256, AtLeast(1))
    n_eval_x: int = param(512, AtLeast(2))
    n_eval_t: int = param(201, AtLeast(2))
    n_modes: int = param(2048, EvenAtLeast(16))
    n_steps: int = 1000
    save_every: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        n_steps, save_every = self.n_steps, self.save_every
        if save_every < 1 or n_steps < 2 * save_every or n_steps % save_every:
            raise ConfigError(
                f"{self.where}: 'n_steps' must be a multiple of 'save_every' with at least two "
                f"saved intervals, got n_steps={n_steps}, save_every={save_every}"
            )
        self._solution: AllenCahnReference | None = None

    @property
    def solution(self) -> AllenCahnReference:
        """The spectral reference, computed (or loaded from the cache) on first use."""
        if self._solution is None:
            self._solution = AllenCahnReference(
                diffusion=self.d,
                reaction=self.rho,
                n_modes=self.n_modes,
                n_steps=self.n_steps,
                save_every=self.save_every,
            )
        return self._solution

    def initial_condition(self, points: Tensor) -> Tensor:
        """``u0 = x² cos(πx)``, shape ``(N, 1)``."""
        x = points[:, 0:1]
        return x**2 * torch.cos(math.pi * x)

    #: The hard constraint enforces the initial condition; the periodic boundary stays a loss.
    hard_constrained_losses = ("initial",)

    def hard_constraint(self, points: Tensor, output: Tensor) -> Tensor:
        """``u = u0(x) + t · N(x, t)``, ``u0 = x² cos πx``: ``u(x, 0) = u0`` exactly.

        The periodic boundary condition is not enforced (``N`` need not be periodic, and
        ``u0``'s periodic extension has a kink, ``u0'(±1) = ∓2``), so ``"boundary"`` stays a
        loss.  Lagaris, Likas & Fotiadis, IEEE Trans. Neural Netw. 9(5), 1998, Eq. 11.
        """
        return self.initial_condition(points) + points[:, 1:2] * output

    def reference(self, points: Tensor) -> Tensor:
        """Spectral reference at ``points`` ``(N, 2)``, shape ``(N, 1)``."""
        return self.numpy_reference(points, self.solution)

    def residual_terms(self, model: Model, points: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Pointwise ``u_t − d u_xx + ρ u³ − ρ u`` at ``points``, ``(N, 1)``, and the input
        columns."""
        u, (x, t) = on_input_columns(model, points)
        u_x, u_t = gradients(u, (x, t))
        u_xx = gradients(u_x, (x,))[0]
        return u_t - self.d * u_xx + self.rho * (u**3 - u), [x, t]

    def losses(self, model: Model, batch: Batch) -> NamedLosses:
        """``{"residual", "initial", "boundary"}``; ``"boundary"`` pairs ``x = −1`` with ``1``."""
        residual, coords = self.residual_terms(model, batch["residual"])
        initial, left = batch["initial"], batch["boundary"]
        right = torch.cat([torch.ones_like(left[:, 0:1]), left[:, 1:2]], dim=1)
        u_l, (x_l, _) = on_input_columns(model, left)
        u_r, (x_r, _) = on_input_columns(model, right)
        jump_x = gradients(u_l, (x_l,))[0] - gradients(u_r, (x_r,))[0]
        pointwise = {
            "residual": residual,
            "initial": model(initial) - self.initial_condition(initial),
            "boundary": torch.cat([u_l - u_r, jump_x], dim=1),
        }
        return self.mean_square_losses(pointwise, batch, coords={"residual": coords})
