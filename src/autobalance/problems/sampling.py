"""Collocation-point samplers by name: ``"uniform"``, ``"lhs"``, ``"grid"``, ``"sobol"``.

A sampler draws ``n`` points in the unit cube ``[0, 1]^d`` from a ``torch.Generator``; the
:class:`~autobalance.problems.domain.Box` maps them to the box and to its faces (for a face of a
``d``-box the sampler draws in ``d − 1`` dimensions).  Every problem uses the sampler in its
:attr:`~autobalance.problems.base.Problem.sampler` attribute for interior and boundary points,
and the runner sets it from ``RunConfig.sampler``.

* ``"uniform"``: independent uniform points (``torch.rand``), the default.
* ``"lhs"``: Latin hypercube: each axis cut into ``n`` equal strata, one point per stratum, at a
  uniform position inside it, strata paired across axes by independent random permutations
  (McKay, Beckman & Conover, Technometrics 21(2), 1979).
* ``"grid"``: a jittered uniform grid: the nodes ``i/m`` (``m = ⌈n^{1/d}⌉`` per axis) shifted as
  a whole by one uniform random offset in ``[0, 1/m)^d``, and ``n`` of the ``m^d`` nodes kept
  (all when ``n = m^d``, else a random subset).  Every point set is a translated lattice, so
  fixed points (``resample_every = 0``) cover the box evenly.
* ``"sobol"``: scrambled Sobol' points (``torch.quasirandom.SobolEngine``: random linear matrix
  scrambling plus a random digital shift (Matoušek 1998), an Owen-type scrambling, seeded from
  the generator; Sobol', USSR Comput. Math. Math. Phys. 7(4), 1967).

All samplers are deterministic functions of the generator state, so runs are reproducible from
the seed and resumable from a checkpoint of the generator.
"""

from __future__ import annotations

import abc
import math
from typing import ClassVar

import torch
from torch import Generator, Tensor

from autobalance.errors import UnknownNameError, unknown_name_message

__all__ = [
    "DType",
    "Device",
    "GridSampler",
    "LatinHypercubeSampler",
    "Sampler",
    "SamplerChoice",
    "SobolSampler",
    "UniformSampler",
    "get_sampler",
    "sampler_names",
]

#: Where points are made: a device or its name (``"cpu"``, ``"cuda"``).
Device = torch.device | str
#: The floating-point type of the points.
DType = torch.dtype


class Sampler(abc.ABC):
    """Draws points in the unit cube ``[0, 1]^dim`` from a ``torch.Generator``."""

    #: The name it is found by (``get_sampler(name)``).
    name: ClassVar[str] = ""

    @abc.abstractmethod
    def unit(self, n: int, dim: int, generator: Generator, device: Device, dtype: DType) -> Tensor:
        """``n`` points in ``[0, 1]^dim``, shape ``(n, dim)``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class UniformSampler(Sampler):
    """Independent uniform points: ``torch.rand(n, dim)``."""

    name = "uniform"

    def unit(self, n: int, dim: int, generator: Generator, device: Device, dtype: DType) -> Tensor:
        return torch.rand(n, dim, generator=generator, device=device, dtype=dtype)


class LatinHypercubeSampler(Sampler):
    """Latin hypercube: one point in each of the ``n`` strata of every axis."""

    name = "lhs"

    def unit(self, n: int, dim: int, generator: Generator, device: Device, dtype: DType) -> Tensor:
        jitter = torch.rand(n, dim, generator=generator, device=device, dtype=dtype)
        strata = torch.stack(
            [torch.randperm(n, generator=generator, device=device) for _ in range(dim)], dim=1
        )
        return (strata.to(dtype) + jitter) / n


class GridSampler(Sampler):
    """A uniform grid of ``⌈n^{1/dim}⌉`` nodes per axis, shifted as a whole by a random offset."""

    name = "grid"

    def unit(self, n: int, dim: int, generator: Generator, device: Device, dtype: DType) -> Tensor:
        m = max(1, math.ceil(round(n ** (1.0 / dim), 9))) if dim else 1
        while m**dim < n:  # rounding of the root
            m += 1
        axis = torch.arange(m, device=device, dtype=dtype) / m
        mesh = torch.meshgrid(*([axis] * dim), indexing="ij")
        nodes = torch.stack([g.reshape(-1) for g in mesh], dim=1)
        shift = torch.rand(1, dim, generator=generator, device=device, dtype=dtype) / m
        nodes = nodes + shift
        if nodes.shape[0] > n:
            keep = torch.randperm(nodes.shape[0], generator=generator, device=device)[:n]
            nodes = nodes[keep.sort().values]
        return nodes


class SobolSampler(Sampler):
    """Scrambled Sobol' points (linear matrix scrambling and digital shift, seeded from the
    generator); drawn on the CPU in float64, then moved to ``device`` and cast to ``dtype``."""

    name = "sobol"

    def unit(self, n: int, dim: int, generator: Generator, device: Device, dtype: DType) -> Tensor:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=device).item())
        engine = torch.quasirandom.SobolEngine(dim, scramble=True, seed=seed)
        return engine.draw(n, dtype=torch.float64).to(device=device, dtype=dtype)


_SAMPLERS: dict[str, Sampler] = {
    s.name: s for s in (UniformSampler(), LatinHypercubeSampler(), GridSampler(), SobolSampler())
}


def sampler_names() -> list[str]:
    """The sampler names, sorted."""
    return sorted(_SAMPLERS)


#: A sampler or its name.
SamplerChoice = str | Sampler


def get_sampler(sampler: SamplerChoice) -> Sampler:
    """The sampler called ``sampler`` (a :class:`Sampler` is returned as is).

    Raises:
        UnknownNameError: an unknown name (the message lists the known ones).
    """
    if isinstance(sampler, Sampler):
        return sampler
    try:
        return _SAMPLERS[sampler]
    except (KeyError, TypeError):
        raise UnknownNameError(unknown_name_message("sampler", str(sampler), _SAMPLERS)) from None
