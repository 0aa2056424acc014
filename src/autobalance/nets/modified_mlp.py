"""The modified MLP: two encoders gate every hidden layer.

Wang, Teng & Perdikaris, "Understanding and mitigating gradient flow pathologies in
physics-informed neural networks", SIAM J. Sci. Comput. 43(5), 2021, Eq. (4.1)-(4.5).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from autobalance.nets._init import check_sizes, xavier_linear
from autobalance.nets.embedding import make_embedding
from autobalance.nets.registry import register_net
from autobalance.nets.rwf import factorize

__all__ = ["ModifiedMLP"]


@register_net("modified_mlp")
class ModifiedMLP(nn.Module):
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

    Args:
        in_dim, out_dim: inputs and outputs.
        width: units ``w`` of every hidden layer and of the encoders.
        depth: number of gated hidden layers (>= 1).
        fourier_features, fourier_sigma, periodic: input embedding
            (:mod:`autobalance.nets.embedding`).
        rwf, rwf_mu, rwf_sigma: random weight factorisation of every dense layer.
        input_names: the problem's input names (filled in by ``nets.create``).
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
            "modified_mlp",
            {
                "in_dim": (in_dim, 1),
                "out_dim": (out_dim, 1),
                "width": (width, 1),
                "depth": (depth, 1),
            },
        )
        self.embedding, embed_dim = make_embedding(
            in_dim,
            fourier_features=fourier_features,
            fourier_sigma=fourier_sigma,
            periodic=periodic,
            input_names=input_names,
        )
        self.encoder_u = xavier_linear(embed_dim, width)
        self.encoder_v = xavier_linear(embed_dim, width)
        self.hidden = nn.ModuleList(
            xavier_linear(embed_dim if k == 0 else width, width) for k in range(depth)
        )
        self.output = xavier_linear(width, out_dim)
        if rwf:
            factorize(self, rwf_mu, rwf_sigma)
        self.in_dim, self.out_dim, self.width, self.depth = in_dim, out_dim, width, depth

    def forward(self, x: Tensor) -> Tensor:
        """``(N, in_dim) -> (N, out_dim)``."""
        h = self.embedding(x)
        u = torch.tanh(self.encoder_u(h))
        v = torch.tanh(self.encoder_v(h))
        for layer in self.hidden:
            z = torch.tanh(layer(h))
            h = (1 - z) * u + z * v
        return self.output(h)

    def extra_repr(self) -> str:
        return (
            f"in_dim={self.in_dim}, out_dim={self.out_dim}, width={self.width}, depth={self.depth}"
        )
