"""The modified MLP: two encoders gate every hidden layer.

Wang, Teng & Perdikaris, "Understanding and mitigating gradient flow pathologies in
physics-informed neural networks", SIAM J. Sci. Comput. 43(5), 2021, Eq. (4.1)-(4.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from autobalance._params import AtLeast, param
from autobalance.nets.mlp import MLP
from autobalance.nets.network import Network, xavier_linear

__all__ = ["ModifiedMLP"]


class ModifiedMLP(Network):
    """Modified MLP (Wang, Teng & Perdikaris 2021): hidden layers gated by two input encoders.

    With ``X`` the (embedded) input and ``σ = tanh``::

        U = σ(X W_u + b_u),   V = σ(X W_v + b_v)
        H_0 = X
        Z_k = σ(H_{k-1} W_k + b_k),   H_k = (1 − Z_k) ⊙ U + Z_k ⊙ V,   k = 1..depth
        y = H_depth W_out + b_out

    The paper's extra first layer ``H^(1) = σ(X W¹ + b¹)`` is folded into the first gate (as in
    the authors' later reference implementation, jaxpi's ``ModifiedMlp``); ``depth`` counts the
    gated layers.  Xavier-normal weights, zero biases.  Parameters:
    ``2(e·w + w) + (e·w + w) + (depth − 1)(w² + w) + (w·out + out)`` for embedding width ``e``.

    Hyperparameters (:class:`ModifiedMLP.Config`, those of :class:`~autobalance.nets.mlp.MLP`):
    ``width``, units ``w`` of every hidden layer and of the encoders; ``depth``, number of gated
    hidden layers (>= 1); and the embedding and RWF parameters of
    :class:`~autobalance.nets.network.NetworkConfig`.
    """

    name = "modified_mlp"

    @dataclass(frozen=True)
    class Config(MLP.Config):
        """Hyperparameters of :class:`ModifiedMLP`: those of the MLP, at least one gated layer."""

        depth: int = param(4, AtLeast(1))

    config: Config

    def build(self) -> None:
        width, embed_dim = self.config.width, self.embed_dim
        self.encoder_u = xavier_linear(embed_dim, width)
        self.encoder_v = xavier_linear(embed_dim, width)
        self.hidden = nn.ModuleList(
            xavier_linear(embed_dim if k == 0 else width, width) for k in range(self.config.depth)
        )
        self.output = xavier_linear(width, self.out_dim)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, in_dim) -> (N, out_dim)``."""
        h = self.embedding(x)
        u = torch.tanh(self.encoder_u(h))
        v = torch.tanh(self.encoder_v(h))
        for layer in self.hidden:
            z = torch.tanh(layer(h))
            h = (1 - z) * u + z * v
        return self.output(h)
