"""ConFIG: conflict-free inverse gradients (Liu, Chu & Thuerey, "ConFIG: Towards Conflict-free
Training of Physics Informed Neural Networks", ICLR 2025, Eqs. (2)–(3)).

With the unit gradients ``u_i = g_i / ‖g_i‖`` stacked as ``U`` (``K × P``)::

    d_u = U⁺ w            (w = 1: equal weights; U⁺ the pseudo-inverse)           Eq. (2)
    d   = (Σ_i g_iᵀ d̂_u) · d̂_u,        d̂_u = d_u / ‖d_u‖                        Eq. (3)

``U⁺ w`` is formed as ``Uᵀ (U Uᵀ)⁺ w`` from the ``K × K`` Gram matrix (identical to the
least-squares / pseudo-inverse solution of the paper's code).  When ``U`` has full row rank every
``u_i · d̂_u`` equals ``1/‖d_u‖``: ``d`` has the same positive cosine with every gradient.
Degenerate cases: zero rows are left out (``u_i = 0``); all rows zero, or ``d_u = 0``, give
``d = 0`` (``d_u`` at round-off size, e.g. exactly anti-parallel gradients, counts as
``0``).  Permutation invariant and homogeneous (``d(cG) = c·d(G)``, ``c > 0``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from autobalance.methods.aggregation import check_gradient_matrix, register_aggregator
from autobalance.methods.aggregators._linalg import gram, row_norms, safe_div

__all__ = ["ConFIG", "config_direction"]


def config_direction(G: Tensor, weights: Tensor | None = None) -> Tensor:
    """The ConFIG direction of the rows of ``G`` (Eqs. (2)–(3)); ``weights`` default to ones."""
    G = check_gradient_matrix(G)
    M = gram(G)
    n = row_norms(M)
    K = G.shape[0]
    w = np.ones(K) if weights is None else weights.detach().double().cpu().numpy().reshape(K)
    inv = safe_div(np.ones(K), n)
    MU = M * np.outer(inv, inv)  # U Uᵀ
    beta = np.linalg.pinv(MU, rcond=1e-12, hermitian=True) @ w
    coef = beta * inv  # d_u = Uᵀ β = Σ (β_i / ‖g_i‖) g_i
    du_sq = float(coef @ M @ coef)
    # U has unit rows, so a consistent U d_u = w needs ‖d_u‖ ≥ ‖w‖ / √K; a d_u at round-off size
    # is w lying in the null space of U Uᵀ (e.g. anti-parallel gradients): no direction, d = 0.
    if not du_sq > 1e-20 * float(w @ w):
        return torch.zeros(G.shape[1], dtype=G.dtype, device=G.device)
    coef_hat = coef / np.sqrt(du_sq)  # d̂_u = Σ coef_hat_i g_i
    length = float(np.sum(M @ coef_hat))  # Σ_i g_iᵀ d̂_u
    c = torch.as_tensor(length * coef_hat, dtype=G.dtype, device=G.device)
    return c @ G


@register_aggregator("config", summary="ConFIG (Liu et al. 2025): equal-cosine conflict-free step.")
class ConFIG:
    def __call__(self, G: Tensor, losses: Tensor | None = None) -> Tensor:
        return config_direction(G)
