"""Input embeddings shared by every network: periodic columns, then random Fourier features.

Every catalogued network takes the same embedding parameters, so an embedding composes with any
architecture (``nets.create("mlp", 2, 1, fourier_features=64)``,
``nets.create("pirate", 2, 1, periodic={"x": 2.0})``):

* ``periodic``: ``{input index or name: period}``: the exact periodic embedding
  (:class:`~autobalance.nets.periodic.PeriodicEmbedding`, Dong & Ni 2021), applied first;
* ``fourier_features`` (``m``, 0: none) and ``fourier_sigma`` (``σ``): random Fourier features
  (:class:`~autobalance.nets.fourier.FourierFeatures`, Tancik et al. 2020) of the result.

The composition order (periodic, then Fourier) follows Wang et al., "An expert's guide to training
physics-informed neural networks", arXiv:2308.08468, 2023, Sec. 5.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import nn

from autobalance.errors import ConfigError
from autobalance.nets.fourier import FourierFeatures
from autobalance.nets.periodic import PeriodicEmbedding, resolve_periods

__all__ = ["make_embedding"]


def make_embedding(
    in_dim: int,
    *,
    fourier_features: int = 0,
    fourier_sigma: float = 1.0,
    periodic: Mapping[str | int, float] | None = None,
    input_names: Sequence[str] | None = None,
) -> tuple[nn.Module, int]:
    """The embedding module and its output width; ``nn.Identity`` (no state) when there is none.

    Raises:
        ConfigError: a negative number of features, or a bad ``periodic`` mapping.
    """
    if fourier_features < 0:
        raise ConfigError(f"'fourier_features' must be >= 0 (0: none), got {fourier_features}")
    parts: list[nn.Module] = []
    width = in_dim
    if periodic is not None:
        embed = PeriodicEmbedding(in_dim, resolve_periods(periodic, in_dim, input_names))
        parts.append(embed)
        width = embed.out_dim
    if fourier_features:
        fourier = FourierFeatures(width, fourier_features, fourier_sigma)
        parts.append(fourier)
        width = fourier.out_dim
    if not parts:
        return nn.Identity(), in_dim
    return (parts[0] if len(parts) == 1 else nn.Sequential(*parts)), width
