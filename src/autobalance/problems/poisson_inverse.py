"""2D inverse Poisson problem: recover the coefficient ``a(x, y)`` from noisy observations of u."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from autobalance._params import AtLeast, MultipleOf, NonNegative, param
from autobalance.derivatives import gradient, gradients
from autobalance.losses import NamedLosses
from autobalance.problems.base import Batch, BoundaryValueProblem, Model, on_input_columns
from autobalance.problems.domain import Box, box_bubble, transfinite_lift
from autobalance.problems.sampling import Device, DType

__all__ = ["PoissonInverse"]


@dataclass(eq=False, kw_only=True)
class PoissonInverse(BoundaryValueProblem):
    """2D inverse Poisson: −∇·(a∇u) = f on [0,1]², find u and a from noisy u data (PINNacle PInv).

    Equation::

        −∇·(a(x, y) ∇u) = f(x, y),               (x, y) ∈ Ω = [0, 1]²
        u(x, y) = sin(πx) sin(πy)                (exact; observed with noise)
        a(x, y) = 1 / (1 + x² + y² + (x − 1)² + (y − 1)²)   (exact; known on ∂Ω only)

    Writing ``D = 1 + x² + y² + (x − 1)² + (y − 1)²`` (``a = 1/D``, ``∇a = −2a² (2x − 1, 2y − 1)``,
    ``Δu = −2π² u``), the source is, exactly::

        f = −a Δu − ∇a·∇u
          = 2π² a sin(πx) sin(πy) + 2π a² [(2x − 1) cos(πx) sin(πy) + (2y − 1) sin(πx) cos(πy)].

    The network has two outputs, ``("u", "a")``.  Losses (each from its own forward pass):

    * ``"residual"``: mean of ``(−∇·(a∇u) − f)²`` over ``n_residual`` interior points (drawn by
      the problem's sampler),
    * ``"data"``: mean of ``(u − u_obs)²`` over the fixed observation grid: ``n_data_side²``
      points ``linspace(0, 1, n_data_side)²`` (boundary included), ``u_obs = u + ε``,
      ``ε ~ N(0, noise_std²)`` i.i.d., drawn in float64 from ``torch.Generator`` seeded with
      ``noise_seed`` (the same observations in every run with that seed),
    * ``"boundary_a"``: mean of ``(a − a_exact)²`` over ``n_boundary`` boundary points (equal per
      edge).

    No boundary condition on ``u`` (as in PINNacle): ``u`` is pinned by the data.  Errors are
    reported per output (``rel_l2_u``, ``mse_u``, ``linf_u``, ``rel_l2_a``, ...) beside the
    combined ones, on a held-out uniform grid.

    Hard constraint (variant ``"hard_constraint"``): ``a = A + b N_a`` with ``A`` the transfinite
    interpolant of ``a``'s boundary data enforces ``"boundary_a"``; ``u`` is unconstrained (see
    :meth:`hard_constraint`).

    Defaults: 1024 residual and 256 boundary points per step, a 50×50 data grid with
    ``noise_std = 0.1`` and ``noise_seed = 0``, a 101×101 evaluation grid (it meets the data grid
    only at the four corners).

    Source: H. Hao et al., "PINNacle: A comprehensive benchmark of physics-informed neural networks
    for solving PDEs", NeurIPS 2024 Datasets & Benchmarks (arXiv:2306.08827), problem "PInv"
    (Poisson inverse).  As there: the data grid is ``linspace(0, 1, 50)`` in both directions,
    boundary included; the noise ``N(0, 0.1²)`` is added to ``u`` only; ``a`` has a Dirichlet
    condition on the whole boundary.  Unlike there, the noise is seeded (``noise_seed``).
    """

    name = "poisson-inverse"
    input_names = ("x", "y")
    output_names = ("u", "a")
    loss_names = ("residual", "data", "boundary_a")
    domain = Box(lower=(0.0, 0.0), upper=(1.0, 1.0))
    boundary_loss = "boundary_a"

    n_residual: int = param(1024, AtLeast(1))
    n_boundary: int = param(256, AtLeast(1), MultipleOf(4, "equal points per edge"))
    n_data_side: int = param(50, AtLeast(2))
    noise_std: float = param(0.1, NonNegative())
    noise_seed: int = param(0, AtLeast(0))
    n_eval: int = param(101, AtLeast(2))

    def __post_init__(self) -> None:
        super().__post_init__()
        # The observations, once, in float64 on the CPU (cast per call).
        side = self.n_data_side
        self.data_points = self.domain.grid((side, side), "cpu", torch.float64)
        noise = torch.randn(
            self.data_points.shape[0],
            1,
            generator=torch.Generator().manual_seed(self.noise_seed),
            dtype=torch.float64,
        )
        self.observations = self.exact_u(self.data_points) + self.noise_std * noise

    def sample(self, generator: torch.Generator, device: Device, dtype: DType) -> dict[str, Tensor]:
        """Interior and boundary points drawn by :attr:`sampler`; the fixed observation grid."""
        drawn = super().sample(generator, device, dtype)
        return {
            "residual": drawn["residual"],
            "data": self.data_points.to(device=device, dtype=dtype),
            "boundary_a": drawn["boundary_a"],
        }

    # ------------------------------------------------------------------------ exact fields
    @staticmethod
    def exact_u(points: Tensor) -> Tensor:
        """``u = sin(πx) sin(πy)``, shape ``(N, 1)``."""
        x, y = points[:, 0:1], points[:, 1:2]
        return torch.sin(math.pi * x) * torch.sin(math.pi * y)

    @staticmethod
    def exact_a(points: Tensor) -> Tensor:
        """``a = 1 / (1 + x² + y² + (x − 1)² + (y − 1)²)``, shape ``(N, 1)``."""
        x, y = points[:, 0:1], points[:, 1:2]
        return 1 / (1 + x**2 + y**2 + (x - 1) ** 2 + (y - 1) ** 2)

    @classmethod
    def source(cls, points: Tensor) -> Tensor:
        """``f = 2π² a sin πx sin πy + 2π a² [(2x−1) cos πx sin πy + (2y−1) sin πx cos πy]``."""
        x, y = points[:, 0:1], points[:, 1:2]
        a = cls.exact_a(points)
        sx, cx = torch.sin(math.pi * x), torch.cos(math.pi * x)
        sy, cy = torch.sin(math.pi * y), torch.cos(math.pi * y)
        return 2 * math.pi**2 * a * sx * sy + 2 * math.pi * a**2 * (
            (2 * x - 1) * cx * sy + (2 * y - 1) * sx * cy
        )

    #: The hard constraint enforces the Dirichlet condition on ``a`` (the only boundary data).
    hard_constrained_losses = ("boundary_a",)

    def hard_constraint(self, points: Tensor, output: Tensor) -> Tensor:
        """``(u, a) = (N_u, A(x, y) + b(x, y) · N_a)``: ``a`` equals its boundary data on ∂Ω.

        ``A`` is the transfinite (Coons) interpolant of the boundary values of ``a``
        (:func:`~autobalance.problems.base.transfinite_lift`; ``a_exact`` is evaluated only on
        ∂Ω, where it is the given Dirichlet data, so ``N_a = 0`` is *not* the answer: at the
        centre ``A = 0.467`` against ``a = 0.5``) and ``b = 16 x(1 − x) y(1 − y)``
        (:func:`~autobalance.problems.base.box_bubble`).  ``a = a_exact`` holds bit for bit on
        ``y = 0, 1`` and to rounding on ``x = 0, 1``.

        ``u`` is left free: the problem has no boundary condition on ``u`` (as in PINNacle, only
        noisy observations, boundary included), so imposing ``u = 0`` would add knowledge of
        the exact solution that the problem does not give, and no loss would become zero.
        """
        a = transfinite_lift(points, self.domain, self.exact_a)
        a = a + box_bubble(points, self.domain) * output[:, 1:2]
        return torch.cat([output[:, 0:1], a], dim=1)

    def reference(self, points: Tensor) -> Tensor:
        """Exact ``(u, a)`` at ``points``, shape ``(N, 2)``."""
        return torch.cat([self.exact_u(points), self.exact_a(points)], dim=1)

    # ---------------------------------------------------------------------------- losses
    def residual_terms(self, model: Model, points: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Pointwise ``−∇·(a∇u) − f`` with ``(u, a)`` from ``model``, ``(N, 1)``, and the input
        columns."""
        out, (x, y) = on_input_columns(model, points)
        u, a = out[:, 0:1], out[:, 1:2]
        u_x, u_y = gradients(u, (x, y))
        divergence = gradient(a * u_x, x) + gradient(a * u_y, y)
        return -divergence - self.source(points.detach()), [x, y]

    def observed_at(self, points: Tensor) -> Tensor:
        """``u_obs`` at ``points``: the whole observation grid (in its order), or any subset of
        its points (e.g. the chunks of a Gauss–Newton Jacobian), matched to the nearest grid
        point; a point off the grid is a ``ValueError``."""
        observed = self.observations.to(device=points.device, dtype=points.dtype)
        if points.shape[0] == observed.shape[0]:
            return observed
        grid = self.data_points.to(device=points.device)
        distance, index = torch.cdist(points.detach().double(), grid).min(dim=1)
        if points.shape[0] > observed.shape[0] or bool((distance > 1e-6).any()):
            raise ValueError(
                f"poisson-inverse: batch['data'] must be the {observed.shape[0]} observation "
                f"points or some of them, got {points.shape[0]} points not all on the grid"
            )
        return observed[index]

    def losses(self, model: Model, batch: Batch) -> NamedLosses:
        """``{"residual", "data", "boundary_a"}`` (see the class docstring), separate passes."""
        residual, coords = self.residual_terms(model, batch["residual"])
        data_pts = batch["data"]
        data = model(data_pts)[:, 0:1] - self.observed_at(data_pts)
        bnd = batch["boundary_a"]
        boundary_a = model(bnd)[:, 1:2] - self.exact_a(bnd)
        pointwise = {"residual": residual, "data": data, "boundary_a": boundary_a}
        return self.mean_square_losses(pointwise, batch, coords={"residual": coords})
