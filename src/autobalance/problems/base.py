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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from autobalance.losses import NamedLosses

__all__ = ["Batch", "Box", "Model", "Problem", "input_columns"]

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
        self, n: int, generator: torch.Generator, device: torch.device | str, dtype: torch.dtype
    ) -> Tensor:
        """``n`` points drawn uniformly in the box, shape ``(n, dim)``."""
        lo, hi = self._bounds(device, dtype)
        u = torch.rand(n, self.dim, generator=generator, device=device, dtype=dtype)
        return lo + (hi - lo) * u

    def sample_face(
        self,
        axis: int,
        side: int,
        n: int,
        generator: torch.Generator,
        device: torch.device | str,
        dtype: torch.dtype,
    ) -> Tensor:
        """``n`` points uniform on the face ``x_axis = lower`` (``side=0``) or ``= upper`` (1)."""
        pts = self.sample_interior(n, generator, device, dtype)
        pts[:, axis] = (self.lower, self.upper)[side][axis]
        return pts

    def sample_boundary(
        self,
        n_per_face: int,
        generator: torch.Generator,
        device: torch.device | str,
        dtype: torch.dtype,
    ) -> Tensor:
        """``n_per_face`` uniform points on each of the ``2·dim`` faces: ``(2·dim·n, dim)``."""
        faces = [
            self.sample_face(axis, side, n_per_face, generator, device, dtype)
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


class Problem(abc.ABC):
    """A PDE problem: coefficients, domain, samplers, named losses and a reference solution.

    Subclasses set the class attributes, take every coefficient and point count as a keyword
    argument with a default (the registry validates names and types from that signature), and
    implement the abstract methods.  The docstring of a subclass states the equation, domain,
    conditions, defaults and source.
    """

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
