"""The box domain of a problem: random points inside and on its faces, uniform grids, and the
two geometric pieces of hard constraints (the bubble that vanishes on the boundary and the
transfinite lift of boundary data)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Generator, Tensor

from autobalance.problems.sampling import Device, DType, SamplerChoice, get_sampler

__all__ = ["Box", "box_bubble", "transfinite_lift"]


@dataclass(frozen=True)
class Box:
    """The box ``[lower_1, upper_1] × ... × [lower_d, upper_d]``."""

    lower: tuple[float, ...]
    upper: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.lower) != len(self.upper) or not self.lower:
            raise ValueError("lower and upper must be non-empty and of the same length")
        if any(lo >= hi for lo, hi in zip(self.lower, self.upper, strict=True)):
            raise ValueError(f"empty box: lower {self.lower} must be below upper {self.upper}")

    @property
    def dim(self) -> int:
        """Number of coordinates."""
        return len(self.lower)

    def _bounds(self, device: Device, dtype: DType) -> tuple[Tensor, Tensor]:
        lo = torch.tensor(self.lower, device=device, dtype=dtype)
        hi = torch.tensor(self.upper, device=device, dtype=dtype)
        return lo, hi

    def sample_interior(
        self,
        n: int,
        generator: Generator,
        device: Device,
        dtype: DType,
        *,
        sampler: SamplerChoice = "uniform",
    ) -> Tensor:
        """``n`` points in the box drawn by ``sampler`` (uniform by default), shape ``(n, dim)``."""
        lo, hi = self._bounds(device, dtype)
        u = get_sampler(sampler).unit(n, self.dim, generator, device, dtype)
        return lo + (hi - lo) * u

    def sample_face(
        self,
        axis: int,
        side: int,
        n: int,
        generator: Generator,
        device: Device,
        dtype: DType,
        *,
        sampler: SamplerChoice = "uniform",
    ) -> Tensor:
        """``n`` points on the face ``x_axis = lower`` (``side=0``) or ``= upper`` (1).

        ``"uniform"`` draws ``(n, dim)`` and overwrites column ``axis`` (the historical draws);
        other samplers draw in the ``dim − 1`` free coordinates.
        """
        chosen = get_sampler(sampler)
        value = (self.lower, self.upper)[side][axis]
        if chosen.name == "uniform" or self.dim == 1:
            pts = self.sample_interior(n, generator, device, dtype)
            pts[:, axis] = value
            return pts
        lo, hi = self._bounds(device, dtype)
        free = [j for j in range(self.dim) if j != axis]
        pts = torch.full((n, self.dim), value, device=device, dtype=dtype)
        u = chosen.unit(n, self.dim - 1, generator, device, dtype)
        pts[:, free] = lo[free] + (hi[free] - lo[free]) * u
        return pts

    def sample_boundary(
        self,
        n_per_face: int,
        generator: Generator,
        device: Device,
        dtype: DType,
        *,
        sampler: SamplerChoice = "uniform",
    ) -> Tensor:
        """``n_per_face`` points on each of the ``2·dim`` faces: ``(2·dim·n, dim)``."""
        faces = [
            self.sample_face(axis, side, n_per_face, generator, device, dtype, sampler=sampler)
            for axis in range(self.dim)
            for side in (0, 1)
        ]
        return torch.cat(faces, dim=0)

    def grid(self, shape: Sequence[int], device: Device, dtype: DType) -> Tensor:
        """The uniform grid with ``shape[j]`` nodes along axis ``j`` (ends included), flattened
        to ``(prod(shape), dim)`` in C order (``indexing="ij"``)."""
        if len(shape) != self.dim:
            raise ValueError(f"grid shape {tuple(shape)} does not match dimension {self.dim}")
        axes = [
            torch.linspace(lo, hi, n, device=device, dtype=dtype)
            for lo, hi, n in zip(self.lower, self.upper, shape, strict=True)
        ]
        mesh = torch.meshgrid(*axes, indexing="ij")
        return torch.stack([m.reshape(-1) for m in mesh], dim=1)


def box_bubble(points: Tensor, box: Box) -> Tensor:
    """``∏_j 4 (x_j − lo_j)(hi_j − x_j) / (hi_j − lo_j)²``: zero exactly on every face of ``box``,
    1 at its centre, positive inside; shape ``(N, 1)``.

    The distance-like factor of a hard constraint (Lagaris, Likas & Fotiadis, IEEE Trans. Neural
    Netw. 9(5), 1998, Eq. 11): on a face one factor is ``lo_j − lo_j = 0`` or ``hi_j − hi_j = 0``.
    """
    out = torch.ones_like(points[:, 0:1])
    for j, (lo, hi) in enumerate(zip(box.lower, box.upper, strict=True)):
        x = points[:, j : j + 1]
        out = out * (4.0 / (hi - lo) ** 2) * ((x - lo) * (hi - x))
    return out


def transfinite_lift(points: Tensor, box: Box, boundary: Callable[[Tensor], Tensor]) -> Tensor:
    """The transfinite (Coons) interpolant of boundary data on a 2D rectangle, ``(N, k)``.

    ``boundary`` gives the Dirichlet data; it is called only at points on ``∂box`` (the
    projections of ``points`` on the four edges and the four corners), so the lift uses the
    boundary data alone, never interior values.  With ``s = (x − x0)/(x1 − x0)``,
    ``r = (y − y0)/(y1 − y0)`` and ``B`` the data (Gordon & Hall, Int. J. Numer. Methods Eng. 7(4),
    1973, 461–477)::

        g = (1 − r) B(x, y0) + r B(x, y1)
            + (1 − s) [B(x0, y) − (1 − r) B(x0, y0) − r B(x0, y1)]
            + s [B(x1, y) − (1 − r) B(x1, y0) − r B(x1, y1)]

    ``g = B`` on the edges ``y = y0, y1`` bit for bit and on ``x = x0, x1`` to rounding.  It is
    differentiable in ``points`` (torch operations only).
    """
    if box.dim != 2:
        raise ValueError(f"transfinite_lift needs a 2D box, got dimension {box.dim}")
    (x0, y0), (x1, y1) = box.lower, box.upper
    x, y = points[:, 0:1], points[:, 1:2]
    s, r = (x - x0) / (x1 - x0), (y - y0) / (y1 - y0)

    def data(xs: Tensor | float, ys: Tensor | float) -> Tensor:
        xc = xs if isinstance(xs, Tensor) else torch.full_like(x, xs)
        yc = ys if isinstance(ys, Tensor) else torch.full_like(y, ys)
        return boundary(torch.cat([xc, yc], dim=1))

    left = data(x0, y) - (1 - r) * data(x0, y0) - r * data(x0, y1)
    right = data(x1, y) - (1 - r) * data(x1, y0) - r * data(x1, y1)
    return (1 - r) * data(x, y0) + r * data(x, y1) + (1 - s) * left + s * right
