"""Random Fourier-feature embedding of the inputs.

Tancik et al., "Fourier features let networks learn high frequency functions in low dimensional
domains", NeurIPS 2020, Eq. (5); used for PINNs by Wang, Wang & Perdikaris, "On the eigenvector
bias of Fourier feature networks", CMAME 384, 2021, Eq. (3.1).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from autobalance.errors import ConfigError

__all__ = ["FourierFeatures"]


class FourierFeatures(nn.Module):
    """``γ(x) = [cos(2π B x), sin(2π B x)]`` with a fixed random ``B ~ N(0, σ²)``.

    ``B`` has shape ``(features, in_dim)``, is drawn once from the global torch generator and is
    a non-trainable buffer (saved in the ``state_dict``, moved by ``.to``).  The output has
    ``2 · features`` columns: the cosines, then the sines.

    Args:
        in_dim: number of inputs.
        features: number ``m`` of random frequencies (rows of ``B``).
        sigma: standard deviation ``σ`` of the entries of ``B`` (larger: higher frequencies).
    """

    B: Tensor

    def __init__(self, in_dim: int, features: int, sigma: float = 1.0) -> None:
        super().__init__()
        if in_dim < 1:
            raise ConfigError(f"Fourier features: 'in_dim' must be >= 1, got {in_dim}")
        if features < 1:
            raise ConfigError(f"Fourier features: 'fourier_features' must be >= 1, got {features}")
        if not (math.isfinite(sigma) and sigma > 0):
            raise ConfigError(f"Fourier features: 'fourier_sigma' must be > 0, got {sigma}")
        self.register_buffer("B", sigma * torch.randn(features, in_dim))
        self.in_dim, self.features, self.sigma = in_dim, features, float(sigma)
        self.out_dim = 2 * features

    def forward(self, x: Tensor) -> Tensor:
        """``(N, in_dim) -> (N, 2·features)``."""
        proj = (2.0 * math.pi) * (x @ self.B.T)
        return torch.cat([torch.cos(proj), torch.sin(proj)], dim=1)

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, features={self.features}, sigma={self.sigma}"
