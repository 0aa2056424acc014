"""Fully connected tanh network, the standard PINN architecture."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from torch import Tensor, nn

from autobalance._params import AtLeast, param
from autobalance.nets.network import Network, NetworkConfig, xavier_linear

__all__ = ["MLP"]


class MLP(Network):
    """Tanh MLP: ``depth`` hidden layers of ``width`` units, Xavier-normal init, zero biases.

    ``h_0 = x``, ``h_{l+1} = tanh(W_l h_l + b_l)`` for ``l < depth``, output
    ``y = W_depth h_depth + b_depth``.
    Weights are Xavier-normal (``W ~ N(0, 2/(fan_in + fan_out))``, Glorot & Bengio 2010), biases
    zero, as in Raissi et al. (2019) and most PINN benchmarks.

    Hyperparameters (:class:`MLP.Config`): ``width``, units per hidden layer; ``depth``, number
    of hidden layers (``depth + 1`` linear layers in all); and the embedding and RWF parameters
    of :class:`~autobalance.nets.network.NetworkConfig`.
    """

    name = "mlp"

    @dataclass(frozen=True)
    class Config(NetworkConfig):
        """Hyperparameters of :class:`MLP`."""

        width: int = param(50, AtLeast(1))
        depth: int = param(4, AtLeast(0))

    config: Config

    def build(self) -> None:
        depth = self.config.depth
        sizes = [self.embed_dim, *([self.config.width] * depth), self.out_dim]
        layers: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            layers.append(xavier_linear(fan_in, fan_out))
            if i < depth:
                layers.append(nn.Tanh())
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, in_dim) -> (N, out_dim)``."""
        return self.layers(self.embedding(x))
