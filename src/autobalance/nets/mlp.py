"""Fully connected tanh network, the standard PINN architecture."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from autobalance.nets._init import check_sizes
from autobalance.nets.embedding import make_embedding
from autobalance.nets.registry import register_net
from autobalance.nets.rwf import factorize

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
        fourier_features, fourier_sigma, periodic: input embedding applied before the first
            layer (see :mod:`autobalance.nets.embedding`); none by default.
        rwf, rwf_mu, rwf_sigma: random weight factorisation of every linear layer
            (:mod:`autobalance.nets.rwf`); off by default.
        input_names: the problem's input names, to give ``periodic`` by name (passed by
            :func:`~autobalance.nets.registry.create`, not a configurable parameter).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        width: int = 50,
        depth: int = 4,
        fourier_features: int = 0,
        fourier_sigma: float = 1.0,
        periodic: Mapping[str | int, float] | None = None,
        rwf: bool = False,
        rwf_mu: float = 1.0,
        rwf_sigma: float = 0.1,
        *,
        input_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        check_sizes(
            "mlp",
            {
                "in_dim": (in_dim, 1),
                "out_dim": (out_dim, 1),
                "width": (width, 1),
                "depth": (depth, 0),
            },
        )
        self.embedding, embed_dim = make_embedding(
            in_dim,
            fourier_features=fourier_features,
            fourier_sigma=fourier_sigma,
            periodic=periodic,
            input_names=input_names,
        )
        sizes = [embed_dim, *([width] * depth), out_dim]
        layers: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            linear = nn.Linear(fan_in, fan_out)
            nn.init.xavier_normal_(linear.weight)
            nn.init.zeros_(linear.bias)
            layers.append(linear)
            if i < depth:
                layers.append(nn.Tanh())
        self.layers = nn.Sequential(*layers)
        if rwf:
            factorize(self.layers, rwf_mu, rwf_sigma)
        self.in_dim, self.out_dim, self.width, self.depth = in_dim, out_dim, width, depth

    def forward(self, x: Tensor) -> Tensor:
        """``(N, in_dim) -> (N, out_dim)``."""
        return self.layers(self.embedding(x))

    def extra_repr(self) -> str:
        return (
            f"in_dim={self.in_dim}, out_dim={self.out_dim}, width={self.width}, depth={self.depth}"
        )
