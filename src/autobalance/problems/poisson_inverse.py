"""2D inverse Poisson problem: recover the coefficient ``a(x, y)`` from noisy observations of u."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from autobalance.derivatives import gradient, gradients
from autobalance.errors import ConfigError
from autobalance.losses import NamedLosses
from autobalance.problems.base import (
    Batch,
    Box,
    Model,
    Problem,
    box_bubble,
    check_at_least,
    input_columns,
    transfinite_lift,
)
from autobalance.problems.registry import register_problem

__all__ = ["PoissonInverse"]


@register_problem("poisson-inverse")
class PoissonInverse(Problem):
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

    input_names = ("x", "y")
    output_names = ("u", "a")
    loss_names = ("residual", "data", "boundary_a")

    def __init__(
        self,
        *,
        n_residual: int = 1024,
        n_boundary: int = 256,
        n_data_side: int = 50,
        noise_std: float = 0.1,
        noise_seed: int = 0,
        n_eval: int = 101,
    ) -> None:
        where = "problem 'poisson-inverse'"
        check_at_least(where, 1, n_residual=n_residual, n_boundary=n_boundary)
        if n_boundary % 4:
            raise ConfigError(
                f"{where}: 'n_boundary' must be a multiple of 4 (equal points per edge), "
                f"got {n_boundary}"
            )
        check_at_least(where, 2, n_data_side=n_data_side)
        if not (math.isfinite(noise_std) and noise_std >= 0):
            raise ConfigError(f"{where}: 'noise_std' must be a finite number >= 0, got {noise_std}")
        if noise_seed < 0:
            raise ConfigError(f"{where}: 'noise_seed' must be >= 0, got {noise_seed}")
        check_at_least(where, 2, n_eval=n_eval)
        super().__init__(
            n_residual=int(n_residual),
            n_boundary=int(n_boundary),
            n_data_side=int(n_data_side),
            noise_std=float(noise_std),
            noise_seed=int(noise_seed),
            n_eval=int(n_eval),
        )
        self.n_residual, self.n_boundary, self.n_eval = n_residual, n_boundary, n_eval
        self.n_data_side, self.noise_std, self.noise_seed = (
            n_data_side,
            float(noise_std),
            noise_seed,
        )
        self._box = Box(lower=(0.0, 0.0), upper=(1.0, 1.0))
        # The observations, once, in float64 on the CPU (cast per call).
        self.data_points = self._box.grid((n_data_side, n_data_side), "cpu", torch.float64)
        noise = torch.randn(
            self.data_points.shape[0],
            1,
            generator=torch.Generator().manual_seed(noise_seed),
            dtype=torch.float64,
        )
        self.observations = self.exact_u(self.data_points) + self.noise_std * noise

    @property
    def domain(self) -> Box:
        return self._box

    @property
    def evaluation_shape(self) -> tuple[int, ...]:
        return (self.n_eval, self.n_eval)

    def sample(
        self, generator: torch.Generator, device: torch.device | str, dtype: torch.dtype
    ) -> dict[str, Tensor]:
        """Interior and boundary points drawn by :attr:`sampler`; the fixed observation grid."""
        box, sampler = self._box, self.sampler
        return {
            "residual": box.sample_interior(
                self.n_residual, generator, device, dtype, sampler=sampler
            ),
            "data": self.data_points.to(device=device, dtype=dtype),
            "boundary_a": box.sample_boundary(
                self.n_boundary // 4, generator, device, dtype, sampler=sampler
            ),
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
        a = transfinite_lift(points, self._box, self.exact_a)
        a = a + box_bubble(points, self._box) * output[:, 1:2]
        return torch.cat([output[:, 0:1], a], dim=1)

    def reference(self, points: Tensor) -> Tensor:
        """Exact ``(u, a)`` at ``points``, shape ``(N, 2)``."""
        return torch.cat([self.exact_u(points), self.exact_a(points)], dim=1)

    # ---------------------------------------------------------------------------- losses
    def pde_residual(self, model: Model, points: Tensor) -> Tensor:
        """Pointwise ``−∇·(a∇u) − f`` with ``(u, a)`` from ``model``, shape ``(N, 1)``."""
        return self._residual(model, points)[0]

    def _residual(self, model: Model, points: Tensor) -> tuple[Tensor, list[Tensor]]:
        x, y = input_columns(points)
        out = model(torch.cat([x, y], dim=1))
        u, a = out[:, 0:1], out[:, 1:2]
        u_x, u_y = gradients(u, (x, y))
        divergence = gradient(a * u_x, x) + gradient(a * u_y, y)
        return -divergence - self.source(points.detach()), [x, y]

    def losses(self, model: Model, batch: Batch) -> NamedLosses:
        """``{"residual", "data", "boundary_a"}`` (see the class docstring), separate passes."""
        residual, coords = self._residual(model, batch["residual"])
        data_pts = batch["data"]
        observed = self.observations.to(device=data_pts.device, dtype=data_pts.dtype)
        if observed.shape[0] != data_pts.shape[0]:
            raise ValueError(
                f"poisson-inverse: batch['data'] must be the {observed.shape[0]} observation "
                f"points, got {data_pts.shape[0]}"
            )
        data = model(data_pts)[:, 0:1] - observed
        bnd = batch["boundary_a"]
        boundary_a = model(bnd)[:, 1:2] - self.exact_a(bnd)
        pointwise = {"residual": residual, "data": data, "boundary_a": boundary_a}
        return NamedLosses(
            {name: r.pow(2).mean() for name, r in pointwise.items()},
            pointwise=pointwise,
            points={name: batch[name] for name in pointwise},
            coords={"residual": coords},
        )
