"""2D Helmholtz equation on the square, with a manufactured exact solution."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from autobalance._params import AtLeast, Finite, MultipleOf, param
from autobalance.derivatives import laplacian
from autobalance.errors import ConfigError
from autobalance.losses import NamedLosses
from autobalance.problems.base import Batch, BoundaryValueProblem, Model, on_input_columns
from autobalance.problems.domain import Box

__all__ = ["HELMHOLTZ_PRESETS", "Helmholtz"]

#: Named coefficient sets: ``problems.create("helmholtz", **HELMHOLTZ_PRESETS["hard"])``.
#: ``"standard"`` are the defaults (Wang, Teng & Perdikaris 2021); ``"hard"`` raises the
#: frequency in both directions (``|q|`` up to ``|1 − 32π²| ≈ 315``, 16 half-waves per side),
#: a harder, more imbalanced variant (our choice; AutoBalance's exact coefficients are not
#: published).
HELMHOLTZ_PRESETS: dict[str, dict[str, float]] = {
    "standard": {"a1": 1.0, "a2": 4.0, "k": 1.0},
    "hard": {"a1": 4.0, "a2": 4.0, "k": 1.0},
}


@dataclass(eq=False, kw_only=True)
class Helmholtz(BoundaryValueProblem):
    """2D Helmholtz: Δu + k²u = q on [-1,1]², u = 0 on the boundary (exact sin·sin solution).

    Equation::

        u_xx + u_yy + k² u = q(x, y),            (x, y) ∈ Ω = [-1, 1]²
        u = 0                                    on ∂Ω
        q(x, y) = (k² − (a1·π)² − (a2·π)²) · sin(a1·π·x) · sin(a2·π·y)

    Exact solution ``u(x, y) = sin(a1·π·x) · sin(a2·π·y)``, which vanishes on ∂Ω for integer
    ``a1``, ``a2`` (required).

    Losses (each from its own forward pass):

    * ``"residual"``: mean of ``(Δu + k²u − q)²`` over ``n_residual`` fresh uniform interior points,
    * ``"boundary"``: mean of ``u²`` over ``n_boundary`` fresh uniform boundary points (the same
      number on each of the four edges).

    Defaults: ``a1 = 1``, ``a2 = 4``, ``k = 1``, 1024 residual and 256 boundary points per step,
    a 201×201 evaluation grid (preset ``"standard"``; ``HELMHOLTZ_PRESETS["hard"]`` is
    ``a1 = a2 = 4``).  With these coefficients ``|q|`` reaches ``|1 − 17π²| ≈ 167``, so
    the residual loss dwarfs the boundary loss: the standard example of imbalanced PINN losses.

    Source: S. Wang, Y. Teng, P. Perdikaris, "Understanding and mitigating gradient flow
    pathologies in physics-informed neural networks", SIAM J. Sci. Comput. 43(5), 2021
    (arXiv:2001.04536), Sec. 2.1 (a1 = 1, a2 = 4, k = 1); also a benchmark of AutoBalance
    (An et al. 2025, arXiv:2510.06684), whose exact coefficients are not published.
    """

    name = "helmholtz"
    input_names = ("x", "y")
    output_names = ("u",)
    loss_names = ("residual", "boundary")
    domain = Box(lower=(-1.0, -1.0), upper=(1.0, 1.0))

    a1: float = 1.0
    a2: float = 4.0
    k: float = param(1.0, Finite())
    n_residual: int = param(1024, AtLeast(1))
    n_boundary: int = param(256, AtLeast(1), MultipleOf(4, "equal points per edge"))
    n_eval: int = param(201, AtLeast(2))

    def __post_init__(self) -> None:
        super().__post_init__()
        for key, value in (("a1", self.a1), ("a2", self.a2)):
            if not value.is_integer() or value == 0:
                raise ConfigError(
                    f"{self.where}: parameter {key!r} must be a nonzero integer (got "
                    f"{value!r}) so that the exact solution vanishes on the boundary and is not "
                    "identically zero (its relative error would be undefined)"
                )

    def _sines(self, points: Tensor) -> Tensor:
        """``sin(a1·π·x) · sin(a2·π·y)`` as an ``(N, 1)`` column."""
        x, y = points[:, 0:1], points[:, 1:2]
        return torch.sin(self.a1 * math.pi * x) * torch.sin(self.a2 * math.pi * y)

    def source(self, points: Tensor) -> Tensor:
        """``q = (k² − (a1π)² − (a2π)²) · sin(a1πx) · sin(a2πy)``, shape ``(N, 1)``."""
        scale = self.k**2 - (self.a1 * math.pi) ** 2 - (self.a2 * math.pi) ** 2
        return scale * self._sines(points)

    def reference(self, points: Tensor) -> Tensor:
        """Exact solution ``u = sin(a1πx) · sin(a2πy)``, shape ``(N, 1)``."""
        return self._sines(points)

    #: The hard constraint enforces u = 0 on ∂Ω exactly: the boundary loss is redundant.
    hard_constrained_losses = ("boundary",)

    def hard_constraint(self, points: Tensor, output: Tensor) -> Tensor:
        """``u = (1 − x²)(1 − y²) · N(x, y)``: zero on the whole boundary of ``[-1, 1]²``.

        The distance-like factor vanishes exactly on the four edges (Lagaris, Likas & Fotiadis,
        IEEE Trans. Neural Netw. 9(5), 1998, Eq. 11; Sukumar & Srivastava, CMAME 389, 2022).
        """
        x, y = points[:, 0:1], points[:, 1:2]
        return (1 - x * x) * (1 - y * y) * output

    def residual_terms(self, model: Model, points: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Pointwise residual ``Δu + k²u − q`` at ``points``, ``(N, 1)``, and the input columns."""
        u, (x, y) = on_input_columns(model, points)
        residual = laplacian(u, (x, y)) + self.k**2 * u - self.source(points.detach())
        return residual, [x, y]

    def losses(self, model: Model, batch: Batch) -> NamedLosses:
        """``{"residual": mean (Δu + k²u − q)², "boundary": mean u²}``, separate forward passes.

        The pointwise terms (``Δu + k²u − q`` and ``u`` on the boundary), their points and the
        residual's input columns ride along in the :class:`~autobalance.losses.NamedLosses`.
        """
        residual, coords = self.residual_terms(model, batch["residual"])
        pointwise = {"residual": residual, "boundary": model(batch["boundary"])}
        return self.mean_square_losses(pointwise, batch, coords={"residual": coords})
