"""What a PDE problem is: data plus functions.

A :class:`Problem` is a dataclass of its parameters (coefficients and point counts) and offers

* a box :class:`~autobalance.problems.domain.Box` domain and samplers of fresh random
  collocation points,
* ``losses(model, batch)``: the named loss terms (PDE residual, boundary, initial, data, ...),
  each built from its own forward pass so that an optimizer can take per-loss gradients,
* ``reference(points)``: the reference (exact or precomputed) solution at any points,
* ``evaluation_points(...)``: a held-out uniform grid for the error metrics, never the training
  points.

A model is any callable mapping an ``(N, in_dim)`` tensor to an ``(N, out_dim)`` tensor, with the
columns ordered as :attr:`Problem.input_names` and :attr:`Problem.output_names`.

What the problems share lives here: the two shapes of point sets (:class:`SpaceTimeProblem`:
residual, initial and boundary points; :class:`BoundaryValueProblem`: residual and boundary
points), the square evaluation grid (:class:`SquareGrid`), the forward pass through fresh input
columns (:func:`on_input_columns`), the assembly of mean-square losses
(:meth:`Problem.mean_square_losses`) and the evaluation of NumPy references
(:meth:`Problem.numpy_reference`).  The box domain and the geometry of hard constraints live in
:mod:`autobalance.problems.domain` (re-exported here).
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from autobalance._params import validate
from autobalance.losses import NamedLosses
from autobalance.metrics import error_metrics
from autobalance.problems.domain import Box, box_bubble, transfinite_lift
from autobalance.problems.sampling import (
    Device,
    DType,
    Sampler,
    SamplerChoice,
    UniformSampler,
    get_sampler,
)

__all__ = [
    "Batch",
    "BoundaryValueProblem",
    "Box",
    "Model",
    "Problem",
    "SpaceTimeProblem",
    "SquareGrid",
    "box_bubble",
    "input_columns",
    "on_input_columns",
    "transfinite_lift",
]

#: Named point sets of one training step, e.g. ``{"residual": (N, d), "boundary": (M, d)}``.
Batch = Mapping[str, Tensor]
#: A network: ``(N, in_dim) -> (N, out_dim)``.
Model = Callable[[Tensor], Tensor]


def input_columns(points: Tensor) -> list[Tensor]:
    """Split ``(N, d)`` points into ``d`` fresh ``(N, 1)`` leaves that require grad.

    Feed ``torch.cat(columns, dim=1)`` to the model and differentiate with respect to each column
    (see :mod:`autobalance.derivatives`).
    """
    return [points[:, j : j + 1].detach().clone().requires_grad_() for j in range(points.shape[1])]


def on_input_columns(model: Model, points: Tensor) -> tuple[Tensor, list[Tensor]]:
    """``model`` at ``points`` through fresh input columns (:func:`input_columns`): the output
    and the columns, with respect to which its derivatives are then taken."""
    columns = input_columns(points)
    return model(torch.cat(columns, dim=1)), columns


class Problem(abc.ABC):
    """A PDE problem: coefficients, domain, samplers, named losses and a reference solution.

    A concrete problem is a dataclass, ``@dataclass(eq=False, kw_only=True)``, whose fields are
    its parameters, each written once with its default and the rules its value must satisfy
    (:func:`~autobalance._params.param`, e.g. ``n_eval: int = param(101, AtLeast(2))``).
    :meth:`__post_init__` coerces and checks them all, in one place; a subclass that adds a
    check or derived state extends it (calling ``super().__post_init__()`` first).  The catalog
    (``problems.create``) reads the parameters from the same fields.  Subclasses set the class
    attributes (:attr:`name`, the input, output and loss names, the :attr:`domain`) and implement
    the abstract methods; the docstring states the equation, domain, conditions, defaults and
    source.

    Sampling: ``sample`` draws its points with :attr:`sampler` (pass ``sampler=self.sampler`` to
    the :class:`~autobalance.problems.domain.Box` samplers); the runner sets it with
    :meth:`use_sampler` from ``RunConfig.sampler``.  It is not a parameter of the problem.

    Inverse problems: :meth:`unknowns` returns the trainable parameters the problem owns (the
    runner adds them to the optimizer and checkpoints them), and :meth:`extra_errors` names the
    errors of every unknown, reported beside the solution errors.  An unknown *field* is simply
    one more output column of the network (its reference in :meth:`reference`).
    """

    #: How :meth:`sample` draws points (uniform unless :meth:`use_sampler` changed it).
    sampler: Sampler = UniformSampler()

    #: The name the problem is catalogued under (``problems.create(name)``).
    name: ClassVar[str] = ""
    #: Names of the input coordinates, in column order.
    input_names: ClassVar[tuple[str, ...]] = ()
    #: Names of the output fields, in column order.
    output_names: ClassVar[tuple[str, ...]] = ()
    #: Names of the loss terms ``losses`` returns, in order.
    loss_names: ClassVar[tuple[str, ...]] = ()

    if TYPE_CHECKING:
        # set by ``@dataclass`` on every concrete problem (see above); declared for the type
        # checker, so that ``dataclasses.fields(self)`` is known to receive a dataclass
        __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def __post_init__(self) -> None:
        """Coerce every parameter to the type of its default and check its rules."""
        validate(self.where, self)

    @property
    def where(self) -> str:
        """``"problem 'helmholtz'"``, for messages."""
        return f"problem {self.name!r}"

    @property
    def params(self) -> dict[str, Any]:
        """Every parameter of this instance (defaults included), JSON-serialisable."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}

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
        """The box the inputs live in (a class attribute in the problems here)."""

    @property
    @abc.abstractmethod
    def evaluation_shape(self) -> tuple[int, ...]:
        """Shape of the evaluation grid (one entry per input), for plotting."""

    @abc.abstractmethod
    def sample(self, generator: torch.Generator, device: Device, dtype: DType) -> dict[str, Tensor]:
        """Fresh random collocation points for one step, one point set per loss term."""

    @abc.abstractmethod
    def losses(self, model: Model, batch: Batch) -> NamedLosses:
        """The named scalar loss terms at ``batch`` (ordered as :attr:`loss_names`).

        Returned as :class:`~autobalance.losses.NamedLosses`: a dict of scalar losses whose
        ``pointwise`` attribute holds, per loss, the per-point terms it is the mean square of.
        """

    @staticmethod
    def mean_square_losses(
        pointwise: dict[str, Tensor],
        batch: Batch,
        *,
        coords: Mapping[str, Sequence[Tensor]] | None = None,
        points: Mapping[str, Tensor] | None = None,
    ) -> NamedLosses:
        """``L_k = mean(r_k²)`` for each pointwise term ``r_k`` (all its columns), in order.

        The :class:`~autobalance.losses.NamedLosses` carry the terms, the points each was
        evaluated at (``points``, by default ``batch[k]``) and the input columns it was
        differentiated with (``coords``, where a variant such as gPINN needs them).
        """
        return NamedLosses(
            {name: r.pow(2).mean() for name, r in pointwise.items()},
            pointwise=pointwise,
            points=points if points is not None else {name: batch[name] for name in pointwise},
            coords=coords,
        )

    @abc.abstractmethod
    def reference(self, points: Tensor) -> Tensor:
        """Reference solution at ``points`` ``(N, in_dim)``, shape ``(N, out_dim)``."""

    @staticmethod
    def numpy_reference(
        points: Tensor, solution: Callable[[np.ndarray, np.ndarray], np.ndarray]
    ) -> Tensor:
        """``solution(x, t)``, a reference computed in float64 NumPy from the two coordinate
        columns of ``points`` ``(N, 2)``, as an ``(N, 1)`` tensor on the device and in the dtype
        of ``points``."""
        pts = points.detach().to("cpu", torch.float64).numpy()
        u = solution(pts[:, 0], pts[:, 1])
        return torch.from_numpy(u).reshape(-1, 1).to(device=points.device, dtype=points.dtype)

    def residual_terms(self, model: Model, points: Tensor) -> tuple[Tensor, list[Tensor]]:
        """The pointwise PDE residual of ``model`` at ``points``, ``(N, k)``, and the input
        columns it was differentiated with (:func:`on_input_columns`).

        Every problem here implements it and builds its residual loss from it; a problem without
        a pointwise residual raises ``NotImplementedError``.
        """
        raise NotImplementedError(f"{self.where} defines no pointwise PDE residual")

    def pde_residual(self, model: Model, points: Tensor) -> Tensor:
        """The pointwise PDE residual of ``model`` at ``points``, ``(N, k)`` (the equation in the
        class docstring, left side minus right side)."""
        return self.residual_terms(model, points)[0]

    def use_sampler(self, sampler: SamplerChoice) -> None:
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

    def evaluation_points(self, device: Device, dtype: DType) -> Tensor:
        """The held-out uniform evaluation grid, ``(prod(evaluation_shape), in_dim)``."""
        return self.domain.grid(self.evaluation_shape, device, dtype)

    def describe(self) -> str:
        """First line of the class docstring."""
        doc = (type(self).__doc__ or "").strip()
        return doc.splitlines()[0] if doc else type(self).__name__


class SpaceTimeProblem(Problem):
    """A problem on ``[x0, x1] × [0, T]`` with residual, initial and boundary points.

    Subclasses have the parameters ``n_residual``, ``n_initial``, ``n_boundary`` and ``n_eval_x``,
    ``n_eval_t`` (or, with :class:`SquareGrid` first among the bases, ``n_eval``);
    :meth:`sample` draws, in that order, interior points, points on ``t = 0`` and boundary points:
    half of ``n_boundary`` on ``x = x0`` then half on ``x = x1`` or, for a :attr:`periodic`
    problem, all on ``x = x0`` (the losses pair each with ``x1``).
    """

    #: Periodic in ``x``: boundary points on ``x = x0``, paired with ``x = x1`` by the losses.
    periodic: ClassVar[bool] = False

    n_residual: int
    n_initial: int
    n_boundary: int
    n_eval_x: int
    n_eval_t: int

    @property
    def evaluation_shape(self) -> tuple[int, ...]:
        """``(n_eval_x, n_eval_t)`` (the parameters of most space-time problems)."""
        return (self.n_eval_x, self.n_eval_t)

    def sample(self, generator: torch.Generator, device: Device, dtype: DType) -> dict[str, Tensor]:
        """Interior points, points on ``t = 0`` and boundary points (see :attr:`periodic`)."""
        box, sampler = self.domain, self.sampler
        faces = (0,) if self.periodic else (0, 1)
        per_face = self.n_boundary // len(faces)
        return {
            "residual": box.sample_interior(
                self.n_residual, generator, device, dtype, sampler=sampler
            ),
            "initial": box.sample_face(
                1, 0, self.n_initial, generator, device, dtype, sampler=sampler
            ),
            "boundary": torch.cat(
                [
                    box.sample_face(0, side, per_face, generator, device, dtype, sampler=sampler)
                    for side in faces
                ]
            ),
        }


class SquareGrid(Problem):
    """A problem whose evaluation grid has ``n_eval`` nodes (a parameter) along every axis."""

    n_eval: int

    @property
    def evaluation_shape(self) -> tuple[int, ...]:
        return (self.n_eval,) * self.domain.dim


class BoundaryValueProblem(SquareGrid):
    """A steady problem on a box with residual points inside and boundary points on its faces.

    Subclasses have the parameters ``n_residual``, ``n_boundary`` (a multiple of the number of
    faces) and ``n_eval``; :meth:`sample` draws the interior points, then ``n_boundary`` points
    equally on every face, under the loss name :attr:`boundary_loss`.
    """

    #: The name of the boundary point set (and loss).
    boundary_loss: ClassVar[str] = "boundary"

    n_residual: int
    n_boundary: int

    def sample(self, generator: torch.Generator, device: Device, dtype: DType) -> dict[str, Tensor]:
        """Fresh interior points and boundary points (equal per face), drawn by :attr:`sampler`."""
        box, sampler = self.domain, self.sampler
        per_face = self.n_boundary // (2 * box.dim)
        return {
            "residual": box.sample_interior(
                self.n_residual, generator, device, dtype, sampler=sampler
            ),
            self.boundary_loss: box.sample_boundary(
                per_face, generator, device, dtype, sampler=sampler
            ),
        }
