"""Exact periodic embedding of chosen input coordinates.

Dong & Ni, "A method for representing periodic functions and enforcing exactly periodic boundary
conditions with deep neural networks", J. Comput. Phys. 435, 2021, Sec. 2.1: a coordinate ``x``
of period ``P`` enters the network only through ``cos(ωx)`` and ``sin(ωx)``, ``ω = 2π/P``, so the
network is exactly ``P``-periodic in ``x`` (with all derivatives).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from autobalance.errors import ConfigError

__all__ = ["PeriodicEmbedding", "resolve_periods"]


def resolve_periods(
    periodic: Mapping[str | int, float],
    in_dim: int,
    input_names: Sequence[str] | None = None,
) -> dict[int, float]:
    """``{column index: period}`` from keys that are input indices (``0``, ``"0"``) or names.

    Names (e.g. ``"x"``) need ``input_names`` (the problem's, which the runner passes).

    Raises:
        ConfigError: an unknown name or index, a repeated column, or a period that is not > 0.
    """
    if not isinstance(periodic, Mapping) or not periodic:
        raise ConfigError(
            f"'periodic' must be a non-empty mapping {{input index or name: period}}, "
            f"got {periodic!r}"
        )
    names = list(input_names or ())
    out: dict[int, float] = {}
    for key, period in periodic.items():
        if isinstance(key, int) and not isinstance(key, bool):
            index = key
        elif isinstance(key, str) and key.isdigit():
            index = int(key)
        elif isinstance(key, str) and key in names:
            index = names.index(key)
        else:
            known = f"inputs {names}" if names else "no input names were given"
            raise ConfigError(
                f"'periodic': unknown input {key!r} (use an index 0..{in_dim - 1} or a name; "
                f"{known})"
            )
        if not 0 <= index < in_dim:
            raise ConfigError(f"'periodic': input index {index} is out of range 0..{in_dim - 1}")
        if index in out:
            raise ConfigError(f"'periodic': input {index} is given twice")
        if isinstance(period, bool) or not isinstance(period, (int, float)):
            raise ConfigError(f"'periodic': the period of input {key!r} must be a number")
        if not (math.isfinite(period) and period > 0):
            raise ConfigError(f"'periodic': the period of input {key!r} must be > 0, got {period}")
        out[index] = float(period)
    return out


class PeriodicEmbedding(nn.Module):
    """Replace each periodic column ``x_j`` by ``[cos(ω_j x_j), sin(ω_j x_j)]``, ``ω_j = 2π/P_j``.

    The other columns pass through unchanged; column order is kept (a periodic column becomes its
    cosine followed by its sine), so the output has ``in_dim + len(periods)`` columns.

    Args:
        in_dim: number of inputs.
        periods: ``{column index: period P_j}`` (see :func:`resolve_periods`).
    """

    def __init__(self, in_dim: int, periods: Mapping[int, float]) -> None:
        super().__init__()
        self.periods = dict(sorted(periods.items()))
        self.in_dim = in_dim
        self.out_dim = in_dim + len(self.periods)
        # Python floats, not a buffer: exact in every dtype (a float32 buffer cast to float64
        # would break exact periodicity at 1e-7).
        self.omega = {j: 2.0 * math.pi / p for j, p in self.periods.items()}

    def forward(self, x: Tensor) -> Tensor:
        """``(N, in_dim) -> (N, in_dim + number of periodic columns)``."""
        parts: list[Tensor] = []
        for j in range(self.in_dim):
            col = x[:, j : j + 1]
            if j in self.omega:
                angle = self.omega[j] * col
                parts += [torch.cos(angle), torch.sin(angle)]
            else:
                parts.append(col)
        return torch.cat(parts, dim=1)

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, periods={self.periods}"
