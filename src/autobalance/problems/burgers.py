"""1D viscous Burgers equation with a shock, reference by the Cole–Hopf integral."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from autobalance._params import AtLeast, Finite, MultipleOf, Positive, param
from autobalance.derivatives import gradients
from autobalance.losses import NamedLosses
from autobalance.problems.base import Batch, Model, SpaceTimeProblem, on_input_columns
from autobalance.problems.domain import Box

__all__ = ["Burgers", "cole_hopf_solution"]

#: Points per vectorised block of the quadrature (memory: block × nodes doubles).
_BLOCK = 2048


def cole_hopf_solution(
    x: np.ndarray, t: np.ndarray, nu: float, *, n_nodes: int = 200
) -> np.ndarray:
    """``u(x, t)`` of Burgers with ``u0 = −sin πx`` on the real line (periodic, period 2).

    Cole–Hopf (Basdevant et al. 1986, eq. for the exact solution)::

        u(x, t) = − ∫ sin π(x−η) f(x−η) exp(−η²/4νt) dη / ∫ f(x−η) exp(−η²/4νt) dη,
        f(y) = exp(−cos(πy) / (2πν)).

    Substituting ``η = 2√(νt)·s`` turns the Gaussian into ``exp(−s²)``; the integrals are
    evaluated by the trapezoidal rule with ``n_nodes`` equispaced nodes on ``[−S, S]``,
    ``S = √(1/(πν) + 45)``, beyond which the integrand is below ``e^{−45}`` of its maximum.  The
    rule converges geometrically for such smooth, fast-decaying integrands (the log-integrand has
    curvature ``≤ 2 + 2πt``, independent of ν): 100 and 200 nodes agree to 3e-15 for the default
    ``ν = 0.01/π`` on ``[−1, 1] × [0, 1]``.  Exponents are shifted by their maximum per point
    (log-sum-exp) so nothing overflows for small ν.  At ``t = 0`` it returns ``−sin πx`` and at
    ``x = ±1`` zero, to rounding (the node set is symmetric).

    Args:
        x, t: arrays of the same size (any shape; flattened), ``t >= 0``.
        nu: viscosity ``> 0``.
        n_nodes: quadrature nodes (>= 16).
    """
    xs = np.asarray(x, dtype=np.float64).reshape(-1)
    ts = np.asarray(t, dtype=np.float64).reshape(-1)
    if xs.shape != ts.shape:
        raise ValueError(f"x and t must have the same size, got {xs.size} and {ts.size}")
    if nu <= 0 or n_nodes < 16:
        raise ValueError(f"need nu > 0 and n_nodes >= 16, got nu={nu}, n_nodes={n_nodes}")
    if ts.size and ts.min() < 0:
        raise ValueError(f"times must be >= 0, got {ts.min()}")
    half_width = math.sqrt(1.0 / (math.pi * nu) + 45.0)
    s = np.linspace(-half_width, half_width, n_nodes)
    out = np.empty_like(xs)
    for start in range(0, xs.size, _BLOCK):
        block = slice(start, start + _BLOCK)
        y = xs[block, None] - 2.0 * np.sqrt(nu * ts[block, None]) * s  # x − η
        exponent = -(s**2) - np.cos(math.pi * y) / (2.0 * math.pi * nu)
        weight = np.exp(exponent - exponent.max(axis=1, keepdims=True))
        out[block] = -(weight * np.sin(math.pi * y)).sum(axis=1) / weight.sum(axis=1)
    return out


@dataclass(eq=False, kw_only=True)
class Burgers(SpaceTimeProblem):
    """1D viscous Burgers: u_t + u·u_x − ν·u_xx = 0 on [−1,1]×[0,1], u0 = −sin πx (shock at 0).

    Equation::

        u_t + u u_x − ν u_xx = 0,        x ∈ [−1, 1], t ∈ [0, 1]
        u(x, 0) = −sin(πx),              u(−1, t) = u(1, t) = 0

    Inputs ``(x, t)``, output ``u``.  A steep front (a viscous shock) forms at ``x = 0`` after
    ``t = 1/π``; its slope peaks at ``u_x(0, 1.6037/π) = −152.00516`` (Basdevant et al. 1986).

    Losses (each from its own forward pass):

    * ``"residual"``: mean of ``(u_t + u u_x − ν u_xx)²`` over ``n_residual`` interior points,
    * ``"initial"``: mean of ``(u(x, 0) + sin πx)²`` over ``n_initial`` points on ``t = 0``,
    * ``"boundary"``: mean of ``u²`` over ``n_boundary`` points on ``x = ±1`` (half on each).

    Reference: the Cole–Hopf integral by quadrature at any points (:func:`cole_hopf_solution`,
    ``n_quad`` nodes; about 0.1 s for the default evaluation grid, so it is not cached).

    Defaults: ``ν = 0.01/π``, 1024 residual, 256 initial and 256 boundary points per step, a
    256 × 101 evaluation grid in ``(x, t)`` (the 256 ``x`` nodes of Raissi et al.'s data, ``t``
    every 0.01 from 0 to 1).

    Sources: M. Raissi, P. Perdikaris, G. E. Karniadakis, "Physics-informed neural networks",
    J. Comput. Phys. 378 (2019) 686–707, Sec. 3.1; C. Basdevant et al., "Spectral and finite
    difference solutions of the Burgers equation", Comput. Fluids 14(1) (1986) 23–41.
    """

    name = "burgers"
    input_names = ("x", "t")
    output_names = ("u",)
    loss_names = ("residual", "initial", "boundary")
    domain = Box(lower=(-1.0, 0.0), upper=(1.0, 1.0))

    nu: float = param(0.01 / math.pi, Finite(), Positive("viscosity"))
    n_residual: int = param(1024, AtLeast(1))
    n_initial: int = param(256, AtLeast(1))
    n_boundary: int = param(256, AtLeast(1), MultipleOf(2, "half on x = −1, half on x = 1"))
    n_eval_x: int = param(256, AtLeast(2))
    n_eval_t: int = param(101, AtLeast(2))
    n_quad: int = param(200, AtLeast(16))

    def initial_condition(self, points: Tensor) -> Tensor:
        """``u0 = −sin(πx)``, shape ``(N, 1)``."""
        return -torch.sin(math.pi * points[:, 0:1])

    #: The hard constraint enforces the initial and the boundary conditions exactly.
    hard_constrained_losses = ("initial", "boundary")

    def hard_constraint(self, points: Tensor, output: Tensor) -> Tensor:
        """``u = −sin(πx) + t (1 − x²) · N(x, t)``: exact at ``t = 0`` and at ``x = ±1``.

        Used by the ``"hard_constraint"`` variant (Lagaris, Likas & Fotiadis 1998, Eq. 11).
        """
        x, t = points[:, 0:1], points[:, 1:2]
        return self.initial_condition(points) + t * (1 - x * x) * output

    def reference(self, points: Tensor) -> Tensor:
        """Cole–Hopf solution at ``points`` ``(N, 2)`` by quadrature, shape ``(N, 1)``."""
        return self.numpy_reference(
            points, lambda x, t: cole_hopf_solution(x, t, self.nu, n_nodes=self.n_quad)
        )

    def residual_terms(self, model: Model, points: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Pointwise ``u_t + u u_x − ν u_xx`` at ``points``, ``(N, 1)``, and the input columns."""
        u, (x, t) = on_input_columns(model, points)
        u_x, u_t = gradients(u, (x, t))
        u_xx = gradients(u_x, (x,))[0]
        return u_t + u * u_x - self.nu * u_xx, [x, t]

    def losses(self, model: Model, batch: Batch) -> NamedLosses:
        """``{"residual", "initial", "boundary"}``, each the mean square of its pointwise term."""
        residual, coords = self.residual_terms(model, batch["residual"])
        initial = batch["initial"]
        pointwise = {
            "residual": residual,
            "initial": model(initial) - self.initial_condition(initial),
            "boundary": model(batch["boundary"]),
        }
        return self.mean_square_losses(pointwise, batch, coords={"residual": coords})
