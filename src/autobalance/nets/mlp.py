"""Fully connected tanh network, the standard PINN architecture."""

from __future__ import annotations

import itertools

from torch import Tensor, nn

from autobalance.errors import ConfigError
from autobalance.nets.registry import register_net

__all__ = ["MLP"]


@register_net("mlp")
class MLP(nn.Module):
    """Tanh MLP: ``depth`` hidden layers of ``width`` units, Xavier-normal init, zero biases.

    ``h_0 = x``, ``h_{l+1} = tanh(W_l h_l + b_l)`` for ``l < depth``, output
    ``y = W_depth h_depth + b_depth``.
    Weights are Xavier-normal (``W ~ N(0, 2/(fan_in + fan_out))``, Glorot & Bengio 2010), biases
    zero, as in Raissi et al. (2019) and most PINN benchmarks.

    Args:
        in_dim: number of inputs.
        out_dim: number of outputs.
        width: units per hidden layer.
        depth: number of hidden layers (``depth + 1`` linear layers in all).
    """

    def __init__(self, in_dim: int, out_dim: int, width: int = 50, depth: int = 4) -> None:
        super().__init__()
        for key, value in (("in_dim", in_dim), ("out_dim", out_dim), ("width", width)):
            if value < 1:
                raise ConfigError(f"network 'mlp': {key!r} must be >= 1, got {value}")
        if depth < 0:
            raise ConfigError(f"network 'mlp': 'depth' must be >= 0, got {depth}")
        sizes = [in_dim, *([width] * depth), out_dim]
        layers: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            linear = nn.Linear(fan_in, fan_out)
            nn.init.xavier_normal_(linear.weight)
            nn.init.zeros_(linear.bias)
            layers.append(linear)
            if i < depth:
                layers.append(nn.Tanh())
        self.layers = nn.Sequential(*layers)
        self.in_dim, self.out_dim, self.width, self.depth = in_dim, out_dim, width, depth

    def forward(self, x: Tensor) -> Tensor:
        """``(N, in_dim) -> (N, out_dim)``."""
        return self.layers(x)

    def extra_repr(self) -> str:
        return (
            f"in_dim={self.in_dim}, out_dim={self.out_dim}, width={self.width}, depth={self.depth}"
        )
