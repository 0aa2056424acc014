"""What a PDE problem is: data plus functions.

A :class:`Problem` holds its coefficients and offers

* a box :class:`Box` domain and samplers of fresh random collocation points,
* ``losses(model, batch)``: the named loss terms (PDE residual, boundary, initial, data, ...),
  each built from its own forward pass so that an optimizer can take per-loss gradients,
* ``reference(points)``: the reference (exact or precomputed) solution at any points,
* ``evaluation_points(...)``: a held-out uniform grid for the error metrics, never the training
  points.

A model is any callable mapping an ``(N, in_dim)`` tensor to an ``(N, out_dim)`` tensor, with the
columns ordered as :attr:`Problem.input_names` and :attr:`Problem.output_names`.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from autobalance.errors import ConfigError
from autobalance.losses import NamedLosses
from autobalance.metrics import error_metrics
from autobalance.problems.sampling import Sampler, UniformSampler, get_sampler

__all__ = [
    "Batch",
    "Box",
    "Model",
    "Problem",
    "SpaceTimeProblem",
    "box_bubble",
    "check_at_least",
    "check_finite",
    "input_columns",
    "space_time_batch",
    "transfinite_lift",
]

#: Named point sets of one training step, e.g. ``{"residual": (N, d), "boundary": (M, d)}``.
Batch = Mapping[str, Tensor]
#: A network: ``(N, in_dim) -> (N, out_dim)``.
Model = Callable[[Tensor], Tensor]


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

    def _bounds(self, device: torch.device | str, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        lo = torch.tensor(self.lower, device=device, dtype=dtype)
        hi = torch.tensor(self.upper, device=device, dtype=dtype)
        return lo, hi

    def sample_interior(
        self,
        n: int,
        generator: torch.Generator,
        device: torch.device | str,
        dtype: torch.dtype,
        *,
        sampler: str | Sampler = "uniform",
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
        generator: torch.Generator,
        device: torch.device | str,
        dtype: torch.dtype,
        *,
        sampler: str | Sampler = "uniform",
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
        generator: torch.Generator,
        device: torch.device | str,
        dtype: torch.dtype,
        *,
        sampler: str | Sampler = "uniform",
    ) -> Tensor:
        """``n_per_face`` points on each of the ``2·dim`` faces: ``(2·dim·n, dim)``."""
        faces = [
            self.sample_face(axis, side, n_per_face, generator, device, dtype, sampler=sampler)
            for axis in range(self.dim)
            for side in (0, 1)
        ]
        return torch.cat(faces, dim=0)

    def grid(self, shape: Sequence[int], device: torch.device | str, dtype: torch.dtype) -> Tensor:
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


def input_columns(points: Tensor) -> list[Tensor]:
    """Split ``(N, d)`` points into ``d`` fresh ``(N, 1)`` leaves that require grad.

    Feed ``torch.cat(columns, dim=1)`` to the model and differentiate with respect to each column
    (see :mod:`autobalance.derivatives`).
    """
    return [points[:, j : j + 1].detach().clone().requires_grad_() for j in range(points.shape[1])]


def check_finite(where: str, **values: float) -> None:
    """Raise ``ConfigError`` (``"{where}: 'key' must be a finite number, got …"``) for a NaN or
    infinite coefficient; every problem checks its real coefficients with it."""
    for key, value in values.items():
        if not math.isfinite(value):
            raise ConfigError(f"{where}: {key!r} must be a finite number, got {value!r}")


def check_at_least(where: str, minimum: int, **values: int) -> None:
    """Raise ``ConfigError`` (``"{where}: 'key' must be >= minimum, got …"``) for a count below
    ``minimum`` (point counts: 1; evaluation grid sizes: 2)."""
    for key, value in values.items():
        if value < minimum:
            raise ConfigError(f"{where}: {key!r} must be >= {minimum}, got {value}")


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


def space_time_batch(
    box: Box,
    n_residual: int,
    n_initial: int,
    n_boundary: int,
    generator: torch.Generator,
    device: torch.device | str,
    dtype: torch.dtype,
    sampler: Any,
    *,
    periodic: bool = False,
) -> dict[str, Tensor]:
    """Points of a 1D-in-space, time-dependent problem on ``box = [x0, x1] × [0, T]``.

    ``"residual"``: interior points; ``"initial"``: points on ``t = 0``; ``"boundary"``: half of
    ``n_boundary`` on ``x = x0`` then half on ``x = x1`` or, ``periodic``, all on ``x = x0`` (the
    losses pair each with ``x1``); drawn in that order by ``sampler``.
    """
    faces = (0,) if periodic else (0, 1)
    per_face = n_boundary // len(faces)
    return {
        "residual": box.sample_interior(n_residual, generator, device, dtype, sampler=sampler),
        "initial": box.sample_face(1, 0, n_initial, generator, device, dtype, sampler=sampler),
        "boundary": torch.cat(
            [
                box.sample_face(0, side, per_face, generator, device, dtype, sampler=sampler)
                for side in faces
            ]
        ),
    }


class Problem(abc.ABC):
    """A PDE problem: coefficients, domain, samplers, named losses and a reference solution.

    Subclasses set the class attributes, take every coefficient and point count as a keyword
    argument with a default (the registry validates names and types from that signature), and
    implement the abstract methods.  The docstring of a subclass states the equation, domain,
    conditions, defaults and source.

    Sampling: ``sample`` draws its points with :attr:`sampler` (pass ``sampler=self.sampler`` to
    the :class:`Box` samplers); the runner sets it with :meth:`use_sampler` from
    ``RunConfig.sampler``.  It is not a parameter of the problem.

    Inverse problems: :meth:`unknowns` returns the trainable parameters the problem owns (the
    runner adds them to the optimizer and checkpoints them), and :meth:`extra_errors` names the
    errors of every unknown, reported beside the solution errors.  An unknown *field* is simply
    one more output column of the network (its reference in :meth:`reference`).
    """

    #: How :meth:`sample` draws points (uniform unless :meth:`use_sampler` changed it).
    sampler: Sampler = UniformSampler()

    #: Registered name (set by :func:`autobalance.problems.registry.register_problem`).
    name: ClassVar[str] = ""
    #: Names of the input coordinates, in column order.
    input_names: ClassVar[tuple[str, ...]] = ()
    #: Names of the output fields, in column order.
    output_names: ClassVar[tuple[str, ...]] = ()
    #: Names of the loss terms ``losses`` returns, in order.
    loss_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **params: Any) -> None:
        self._params = dict(params)

    @property
    def params(self) -> dict[str, Any]:
        """Every parameter of this instance (defaults included), JSON-serialisable."""
        return dict(self._params)

    @property
    def in_dim(self) -> int:
        """Number of inputs."""
        return len(self.input_names)

    @property
    def out_dim(self) -> int:
        """Number of outputs."""
        return len(self.output_names)

    @property
    @abc.abstractmethod
    def domain(self) -> Box:
        """The box the inputs live in."""

    @property
    @abc.abstractmethod
    def evaluation_shape(self) -> tuple[int, ...]:
        """Shape of the evaluation grid (one entry per input), for plotting."""

    @abc.abstractmethod
    def sample(
        self, generator: torch.Generator, device: torch.device | str, dtype: torch.dtype
    ) -> dict[str, Tensor]:
        """Fresh random collocation points for one step, one point set per loss term."""

    @abc.abstractmethod
    def losses(self, model: Model, batch: Batch) -> NamedLosses:
        """The named scalar loss terms at ``batch`` (ordered as :attr:`loss_names`).

        Returned as :class:`~autobalance.losses.NamedLosses`: a dict of scalar losses whose
        ``pointwise`` attribute holds, per loss, the per-point terms it is the mean square of.
        """

    @abc.abstractmethod
    def reference(self, points: Tensor) -> Tensor:
        """Reference solution at ``points`` ``(N, in_dim)``, shape ``(N, out_dim)``."""

    def use_sampler(self, sampler: str | Sampler) -> None:
        """Draw this instance's points with ``sampler`` (a name from
        :func:`~autobalance.problems.sampling.sampler_names` or a :class:`Sampler`)."""
        self.sampler = get_sampler(sampler)

    def unknowns(self) -> dict[str, torch.nn.Parameter]:
        """Trainable parameters the problem owns (inverse problems); none by default.

        The same objects on every call; the runner moves them to the run's device and dtype in
        place, adds them to the optimizer after the network's parameters and checkpoints them.
        """
        return {}

    def extra_errors(self, prediction: Tensor, reference: Tensor) -> dict[str, float]:
        """Errors besides the combined ``rel_l2``/``mse``/``linf``, by name.

        ``prediction`` and ``reference`` are ``(N, out_dim)`` on the evaluation grid.  By default,
        when there are several output columns, ``rel_l2_<name>``, ``rel_l1_<name>``,
        ``mse_<name>`` and ``linf_<name>`` of each column; problems with :meth:`unknowns` add
        theirs.
        """
        if self.out_dim < 2:
            return {}
        out: dict[str, float] = {}
        for j, name in enumerate(self.output_names):
            out.update(error_metrics(prediction[:, j], reference[:, j], suffix=f"_{name}"))
        return out

    #: Loss terms an exact :meth:`hard_constraint` makes redundant (e.g. ``("boundary",)``); the
    #: ``"hard_constraint"`` variant drops them from the losses.
    hard_constrained_losses: ClassVar[tuple[str, ...]] = ()

    def hard_constraint(self, points: Tensor, output: Tensor) -> Tensor | None:
        """Output transform that satisfies conditions exactly; ``None`` where there is none.

        Hook of the ``"hard_constraint"`` variant (:mod:`autobalance.variants.hard`), which trains
        ``u(x) = hard_constraint(x, N(x))`` instead of the network ``N``.  ``points`` are the
        ``(N, in_dim)`` network inputs (still attached to the input columns, so derivatives of
        the result are taken through the transform) and ``output`` the ``(N, out_dim)`` network
        output.  To add one, return e.g. ``g(x) + d(x) · output`` with ``d = 0`` on the
        constrained boundary and ``g`` the boundary data there, and list the losses it enforces
        in :attr:`hard_constrained_losses`.  Use only differentiable torch operations on
        ``points``.
        """
        return None

    def evaluation_points(self, device: torch.device | str, dtype: torch.dtype) -> Tensor:
        """The held-out uniform evaluation grid, ``(prod(evaluation_shape), in_dim)``."""
        return self.domain.grid(self.evaluation_shape, device, dtype)

    def describe(self) -> str:
        """First line of the class docstring."""
        doc = (type(self).__doc__ or "").strip()
        return doc.splitlines()[0] if doc else type(self).__name__

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        return f"{type(self).__name__}({args})"


class SpaceTimeProblem(Problem):
    """A problem on ``[x0, x1] × [0, T]``: residual, initial and boundary (``x = x0, x1``) points.

    Subclasses set ``self._box`` and the point counts ``n_residual``, ``n_initial`` and
    ``n_boundary`` in ``__init__``; :meth:`sample` draws them with :func:`space_time_batch`.
    A :attr:`periodic` problem draws its boundary points on ``x = x0`` only.
    """

    #: Periodic in ``x``: boundary points on ``x = x0``, paired with ``x = x1`` by the losses.
    periodic: ClassVar[bool] = False

    _box: Box
    n_residual: int
    n_initial: int
    n_boundary: int

    @property
    def domain(self) -> Box:
        return self._box

    def sample(
        self, generator: torch.Generator, device: torch.device | str, dtype: torch.dtype
    ) -> dict[str, Tensor]:
        """Interior points, points on ``t = 0`` and boundary points (see :attr:`periodic`)."""
        return space_time_batch(
            self._box,
            self.n_residual,
            self.n_initial,
            self.n_boundary,
            generator,
            device,
            dtype,
            self.sampler,
            periodic=self.periodic,
        )
