"""PirateNet: physics-informed residual adaptive networks.

Wang, Li, Chen & Perdikaris, "PirateNets: physics-informed deep learning with residual adaptive
networks", J. Mach. Learn. Res. 25(402), 2024 (arXiv:2402.00326), Sec. 4, Eq. (4.1)-(4.9).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from autobalance._params import AtLeast, param
from autobalance.errors import ConfigError
from autobalance.nets.network import Network, NetworkConfig, xavier_linear
from autobalance.nets.rwf import RWFLinear

__all__ = ["PirateBlock", "PirateNet"]


class PirateBlock(nn.Module):
    """One adaptive residual block (Eq. 4.4-4.8), with a trainable gate ``α`` starting at 0::

    f = σ(W_1 x + b_1),   z_1 = f ⊙ U + (1 − f) ⊙ V
    g = σ(W_2 z_1 + b_2), z_2 = g ⊙ U + (1 − g) ⊙ V
    h = σ(W_3 z_2 + b_3)
    x ← α h + (1 − α) x
    """

    def __init__(self, embed_dim: int, width: int) -> None:
        super().__init__()
        self.dense1 = xavier_linear(embed_dim, width)
        self.dense2 = xavier_linear(width, width)
        self.dense3 = xavier_linear(width, embed_dim)
        self.alpha = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor, u: Tensor, v: Tensor) -> Tensor:
        f = torch.tanh(self.dense1(x))
        z1 = f * u + (1 - f) * v
        g = torch.tanh(self.dense2(z1))
        z2 = g * u + (1 - g) * v
        h = torch.tanh(self.dense3(z2))
        return self.alpha * h + (1 - self.alpha) * x


class PirateNet(Network):
    """PirateNet (Wang, Li, Chen & Perdikaris 2024): gated residual blocks, gates starting at 0.

    With the embedding ``Φ(x)`` (random Fourier features by default, width ``e``) and
    ``σ = tanh``::

        U = σ(W_u Φ + b_u),   V = σ(W_v Φ + b_v)                     (Eq. 4.2-4.3)
        x⁽¹⁾ = Φ,   x⁽ˡ⁺¹⁾ = PirateBlock_l(x⁽ˡ⁾, U, V),  l = 1..blocks  (Eq. 4.4-4.8)
        y = W_out x⁽ᴸ⁺¹⁾ + b_out                                          (Eq. 4.9)

    Every gate ``α_l`` starts at 0, so at initialisation ``y = W_out Φ(x) + b_out``: a linear
    model of the embedding, whose depth is switched on gradually by training.

    Physics-informed initialisation (Sec. 4.1): :meth:`fit_output_layer` sets ``W_out, b_out``
    by least squares to given data (e.g. the initial condition); the runner does not call it.
    Weights are Xavier-normal, biases zero (the paper also uses RWF: pass ``rwf=True``).
    Parameters: ``2(e·w + w) + blocks · (e·w + w + w² + w + w·e + e + 1) + e·out + out``.

    Hyperparameters (:class:`PirateNet.Config`): ``width``, units ``w`` of the encoders and of
    the two inner layers of each block; ``blocks``, number of residual blocks (>= 1; each has 3
    dense layers); ``fourier_features`` (64 here; 0 makes ``Φ`` the (periodic-embedded) input
    itself) and the other embedding and RWF parameters of
    :class:`~autobalance.nets.network.NetworkConfig`.
    """

    name = "pirate"

    @dataclass(frozen=True)
    class Config(NetworkConfig):
        """Hyperparameters of :class:`PirateNet`."""

        width: int = param(64, AtLeast(1))
        blocks: int = param(3, AtLeast(1))
        fourier_features: int = param(64, kw_only=True)

    config: Config

    def build(self) -> None:
        width, embed_dim = self.config.width, self.embed_dim
        self.encoder_u = xavier_linear(embed_dim, width)
        self.encoder_v = xavier_linear(embed_dim, width)
        self.blocks = nn.ModuleList(
            PirateBlock(embed_dim, width) for _ in range(self.config.blocks)
        )
        self.output = xavier_linear(embed_dim, self.out_dim)

    def features(self, x: Tensor) -> Tensor:
        """The input of the output layer, ``x⁽ᴸ⁺¹⁾``, ``(N, e)``."""
        phi = self.embedding(x)
        u = torch.tanh(self.encoder_u(phi))
        v = torch.tanh(self.encoder_v(phi))
        h = phi
        for block in self.blocks:
            h = block(h, u, v)
        return h

    def forward(self, x: Tensor) -> Tensor:
        """``(N, in_dim) -> (N, out_dim)``."""
        return self.output(self.features(x))

    @torch.no_grad()
    def fit_output_layer(self, points: Tensor, targets: Tensor) -> None:
        """Physics-informed initialisation: least-squares ``W_out, b_out`` so that the network
        matches ``targets`` ``(N, out_dim)`` at ``points`` ``(N, in_dim)`` (Sec. 4.1, Eq. 4.10).

        Solved in float64 by ``torch.linalg.lstsq`` (SVD, minimum norm) on ``[x⁽ᴸ⁺¹⁾, 1]``; at
        initialisation (all ``α = 0``) ``x⁽ᴸ⁺¹⁾ = Φ(points)``.
        """
        if targets.ndim != 2 or targets.shape != (points.shape[0], self.out_dim):
            raise ConfigError(
                f"PirateNet.fit_output_layer: targets must have shape "
                f"({points.shape[0]}, {self.out_dim}), got {tuple(targets.shape)}"
            )
        h = self.features(points).double()
        design = torch.cat([h, torch.ones_like(h[:, :1])], dim=1)
        # SVD-based driver: the default "gelsy" was seen to return 0 on full-rank wide systems.
        solution = torch.linalg.lstsq(design.cpu(), targets.double().cpu(), driver="gelsd").solution
        layer = self.output
        weight = solution[:-1].T.to(layer.bias)
        bias = solution[-1].to(layer.bias)
        if isinstance(layer, RWFLinear):
            layer.set_weight(weight, bias)
        else:
            assert isinstance(layer, nn.Linear)
            layer.weight.copy_(weight)
            layer.bias.copy_(bias)

    def extra_repr(self) -> str:
        return (
            f"in_dim={self.in_dim}, out_dim={self.out_dim}, width={self.config.width}, "
            f"embed_dim={self.embed_dim}, blocks={len(self.blocks)}"
        )
