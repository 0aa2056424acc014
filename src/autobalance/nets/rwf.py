"""Random weight factorisation (RWF) of dense layers.

Wang, Wang, Seidman & Perdikaris, "Random weight factorization improves the training of
continuous neural representations", arXiv:2210.01274, 2022, Eq. (3.2)-(3.4): each weight matrix
is written ``W = diag(exp(s)) · V``, with a trainable per-output scale ``s ~ N(μ, σ)`` and
``V = diag(exp(−s)) · W`` computed from the usual (here Xavier) initialisation of ``W``, so the
factorised network starts as exactly the same function; only the parametrisation (and hence the
gradient-descent dynamics) changes.  Defaults ``μ = 1.0``, ``σ = 0.1`` as in the paper.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional

from autobalance.errors import ConfigError

__all__ = ["RWFLinear", "factorize"]


class RWFLinear(nn.Module):
    """A dense layer ``y = x Wᵀ + b`` with ``W = diag(exp(s)) · V`` (trainable ``s``, ``V``, ``b``).

    Built from an existing :class:`torch.nn.Linear`, whose weight it reproduces (up to rounding):
    ``s`` is drawn from ``N(μ, σ²)`` with the global torch generator, ``V = W / exp(s)`` row-wise.
    Parameters: ``out·in`` (``V``) ``+ out`` (``s``) ``+ out`` (``b``).
    """

    def __init__(self, linear: nn.Linear, mu: float = 1.0, sigma: float = 0.1) -> None:
        super().__init__()
        if not (math.isfinite(mu) and math.isfinite(sigma) and sigma >= 0):
            raise ConfigError(
                f"RWF: need a finite 'rwf_mu' and a finite 'rwf_sigma' >= 0, got {mu}, {sigma}"
            )
        weight = linear.weight.detach()
        s = mu + sigma * torch.randn(weight.shape[0], dtype=weight.dtype, device=weight.device)
        self.s = nn.Parameter(s)
        self.v = nn.Parameter(weight / torch.exp(s)[:, None])
        bias = linear.bias
        self.bias = nn.Parameter(bias.detach().clone() if bias is not None else torch.zeros_like(s))
        self.in_features, self.out_features = linear.in_features, linear.out_features

    @property
    def weight(self) -> Tensor:
        """The effective weight ``diag(exp(s)) · V``, ``(out, in)``."""
        return torch.exp(self.s)[:, None] * self.v

    @torch.no_grad()
    def set_weight(self, weight: Tensor, bias: Tensor) -> None:
        """Set the effective weight (keeping ``s``) and the bias."""
        self.v.copy_(weight / torch.exp(self.s)[:, None])
        self.bias.copy_(bias)

    def forward(self, x: Tensor) -> Tensor:
        return functional.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def factorize(module: nn.Module, mu: float = 1.0, sigma: float = 0.1) -> nn.Module:
    """Replace every :class:`torch.nn.Linear` inside ``module`` by an :class:`RWFLinear`, in place.

    Layers are factorised in ``named_modules`` order, after the whole network was built, so that
    the effective weights equal those of the same network built without RWF from the same seed.
    Returns ``module``.
    """
    targets = [(name, sub) for name, sub in module.named_modules() if isinstance(sub, nn.Linear)]
    for name, linear in targets:
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        if not name:
            raise ConfigError("RWF: factorize the network that contains the layer, not the layer")
        setattr(parent, child, RWFLinear(linear, mu, sigma))
    return module
