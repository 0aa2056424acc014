"""Inverse-Hessian updates of the self-scaled Broyden family: the update rules as functions.

Notation (one iteration of a quasi-Newton method with inverse-Hessian estimate ``H``): the step
``s = x⁺ − x = α p`` along ``p = −H g``, the change of gradient ``y = g⁺ − g`` (``yᵀs > 0`` under
the Wolfe conditions), and::

    b = sᵀH⁻¹s / yᵀs = −α sᵀg / yᵀs       h = yᵀHy / yᵀs       a = b h − 1 ≥ 0
    v = s / yᵀs − Hy / yᵀHy

The self-scaled Broyden family (Al-Baali, "Numerical experience with a class of self-scaling
quasi-Newton algorithms", J. Optim. Theory Appl. 96, 1998; Al-Baali & Khalfan, Comput. Optim.
Appl. 2012) scales ``H`` by ``1/τ`` and mixes BFGS and DFP with ``φ``::

    H⁺ = (1/τ) [H − Hy yᵀH / yᵀHy + φ (yᵀHy) v vᵀ] + s sᵀ / yᵀs                 (★)

``τ = 1, φ = 1`` is BFGS, ``φ = 0`` DFP.  Every member satisfies the secant equation
``H⁺y = s`` (``vᵀy = 0``).  The choices used for PINNs by Urbán, Stefanou & Pons ("Unveiling the
optimization process of physics informed neural networks: How accurate and competitive can
PINNs be?", J. Comput. Phys. 523, 2025, Eqs. 11 and 13–23) and Kiyani et al. ("Optimizing the
optimizer for physics-informed neural networks and Kolmogorov–Arnold networks",
arXiv:2501.16371, CMAME 446, 2025):

* SSBFGS: ``φ = 1``, ``τ = min(1, 1/b)`` (Al-Baali's scaling);
* SSBroyden: with ``ρ⁻ = min(1, h (1 − sqrt(a/(1+a))))``, ``θ⁻ = (ρ⁻ − 1)/a``,
  ``θ⁺ = 1/ρ⁻``, ``θ = max(θ⁻, min(θ⁺, (1 − b)/b))``, ``σ = 1 + aθ``, ``ρ̃ = min(1, 1/b)``::

      τ = min(ρ̃ σ^{1/(1−n)}, σ)        if θ ≤ 0
      τ = ρ̃ min(σ^{1/(1−n)}, 1/θ)     if θ > 0
      φ = (1 − θ) / (1 + aθ)

  (``θ`` is the Broyden parameter of the direct update, ``φ`` that of the inverse one).

When ``a`` vanishes (``Hy ∥ s``) every member coincides (``v = 0``); ``θ = 0`` is used there.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "BroydenScalars",
    "bfgs_update",
    "broyden_scalars",
    "scaled_broyden_update",
    "ssbfgs_update",
    "ssbroyden_parameters",
    "ssbroyden_update",
]


class BroydenScalars:
    """The scalars ``yᵀs``, ``yᵀHy``, ``b``, ``h``, ``a`` and the vector ``Hy`` of one update."""

    def __init__(self, H: Tensor, s: Tensor, y: Tensor, g: Tensor, alpha: float) -> None:
        self.Hy = H @ y
        self.ys = float(y @ s)
        self.yHy = float(y @ self.Hy)
        self.b = -alpha * float(s @ g) / self.ys
        self.h = self.yHy / self.ys
        self.a = max(self.b * self.h - 1.0, 0.0)


def broyden_scalars(H: Tensor, s: Tensor, y: Tensor, g: Tensor, alpha: float) -> BroydenScalars:
    """:class:`BroydenScalars` of the step ``s = α p`` taken from gradient ``g``."""
    return BroydenScalars(H, s, y, g, alpha)


def scaled_broyden_update(
    H: Tensor, s: Tensor, y: Tensor, *, tau: float, phi: float, Hy: Tensor | None = None
) -> Tensor:
    """``H⁺`` of the self-scaled Broyden family, Eq. (★) of the module docstring.

    With ``u = Hy`` and ``ρ = 1/yᵀs``, (★) is the symmetric rank-2 update::

        H⁺ = H/τ + (φ − 1)/(τ yᵀHy) u uᵀ − φρ/τ (s uᵀ + u sᵀ) + (φ ρ² yᵀHy/τ + ρ) s sᵀ

    computed in one pass over ``H`` (``addmm`` with the ``n × 2`` matrix ``[u s]``); ``H⁺`` is
    symmetric to rounding.
    """
    if Hy is None:
        Hy = H @ y
    rho = 1.0 / float(y @ s)
    yHy = float(y @ Hy)
    a = (phi - 1.0) / (tau * yHy)
    c = -phi * rho / tau
    d = phi * rho * rho * yHy / tau + rho
    U = torch.stack([Hy, s], dim=1)
    M = torch.tensor([[a, c], [c, d]], dtype=H.dtype, device=H.device)
    return torch.addmm(H, U, M @ U.T, beta=1.0 / tau)


def bfgs_update(H: Tensor, s: Tensor, y: Tensor) -> Tensor:
    """BFGS: ``H⁺ = (I − ρ s yᵀ) H (I − ρ y sᵀ) + ρ s sᵀ``, ``ρ = 1/yᵀs`` (Nocedal & Wright,
    Eq. 6.17); Eq. (★) with ``τ = φ = 1``."""
    return scaled_broyden_update(H, s, y, tau=1.0, phi=1.0)


def ssbfgs_update(H: Tensor, s: Tensor, y: Tensor, g: Tensor, alpha: float) -> Tensor:
    """Self-scaled BFGS: Eq. (★) with ``φ = 1``, ``τ = min(1, 1/b)`` (Al-Baali 1998; Urbán et
    al. 2025, Eq. 11)."""
    k = broyden_scalars(H, s, y, g, alpha)
    tau = min(1.0, 1.0 / k.b)
    return scaled_broyden_update(H, s, y, tau=tau, phi=1.0, Hy=k.Hy)


def ssbroyden_parameters(k: BroydenScalars, n: int) -> tuple[float, float]:
    """``(τ, φ)`` of the self-scaled Broyden update (Urbán et al. 2025, Eqs. 13–23)."""
    b, h, a = k.b, k.h, k.a
    rho_tilde = min(1.0, 1.0 / b)
    if a <= 1e-12:
        theta = 0.0
    else:
        rho_minus = min(1.0, h * (1.0 - math.sqrt(a / (1.0 + a))))
        theta_minus = (rho_minus - 1.0) / a
        theta_plus = 1.0 / rho_minus
        theta = max(theta_minus, min(theta_plus, (1.0 - b) / b))
    sigma = 1.0 + a * theta
    root = abs(sigma) ** (1.0 / (1.0 - n)) if n > 1 else 1.0
    tau = min(rho_tilde * root, sigma) if theta <= 0.0 else rho_tilde * min(root, 1.0 / theta)
    phi = (1.0 - theta) / (1.0 + a * theta)
    return tau, phi


def ssbroyden_update(H: Tensor, s: Tensor, y: Tensor, g: Tensor, alpha: float) -> Tensor:
    """Self-scaled Broyden: Eq. (★) with ``τ, φ`` of :func:`ssbroyden_parameters`."""
    k = broyden_scalars(H, s, y, g, alpha)
    tau, phi = ssbroyden_parameters(k, H.shape[0])
    return scaled_broyden_update(H, s, y, tau=tau, phi=phi, Hy=k.Hy)
