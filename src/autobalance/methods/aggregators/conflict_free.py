"""ConFIG: conflict-free inverse gradients (Liu, Chu & Thuerey, "ConFIG: Towards Conflict-free
Training of Physics Informed Neural Networks", ICLR 2025, Eqs. (2)–(3)).

With the unit gradients ``u_i = g_i / ‖g_i‖`` stacked as ``U`` (``K × P``)::

    d_u = U⁺ p            (p = 1: equal preference; U⁺ the pseudo-inverse)        Eq. (2)
    d   = (Σ_i g_iᵀ d̂_u) · d̂_u,        d̂_u = d_u / ‖d_u‖                        Eq. (3)

``U⁺ p`` is formed as ``Uᵀ (U Uᵀ)⁺ p`` from the ``K × K`` Gram matrix (identical to the
least-squares / pseudo-inverse solution of the paper's code), so ``d = wᵀG`` with
``w_i = (Σ_j g_jᵀ d̂_u) β̂_i / ‖g_i‖``, ``β = (U Uᵀ)⁺ p``.  When ``U`` has full row rank every
``u_i · d̂_u`` equals ``1/‖d_u‖``: ``d`` has the same positive cosine with every gradient.
Degenerate cases: zero rows are left out (``u_i = 0``); all rows zero, or ``d_u = 0``, give
``d = 0`` (``d_u`` at round-off size, e.g. exactly anti-parallel gradients, counts as
``0``).  Permutation invariant and homogeneous (``d(cG) = c·d(G)``, ``c > 0``).  The module is
named after the method's idea, not its acronym, so as not to be mistaken for the experiment
configuration (:mod:`autobalance.experiments.config`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import Tensor

from autobalance.methods.aggregators._base import Aggregator, check_gradient_matrix
from autobalance.methods.aggregators._gram import combine, gram, row_norms, safe_div

__all__ = ["ConFIG", "config_direction", "config_weights"]


def config_weights(M: np.ndarray, preference: np.ndarray | None = None) -> np.ndarray:
    """``w`` with ``d = wᵀG`` from the Gram matrix (Eqs. (2)–(3)); ``preference`` ``p`` = 1."""
    K = M.shape[0]
    p = np.ones(K) if preference is None else np.asarray(preference, np.float64).reshape(K)
    n = row_norms(M)
    inv = safe_div(np.ones(K), n)
    MU = M * np.outer(inv, inv)  # U Uᵀ
    beta = np.linalg.pinv(MU, rcond=1e-12, hermitian=True) @ p
    coef = beta * inv  # d_u = Uᵀ β = Σ (β_i / ‖g_i‖) g_i
    du_sq = float(coef @ M @ coef)
    # U has unit rows, so a consistent U d_u = p needs ‖d_u‖ ≥ ‖p‖ / √K; a d_u at round-off size
    # is p lying in the null space of U Uᵀ (e.g. anti-parallel gradients): no direction, d = 0.
    if not du_sq > 1e-20 * float(p @ p):
        return np.zeros(K)
    coef_hat = coef / np.sqrt(du_sq)  # d̂_u = Σ coef_hat_i g_i
    length = float(np.sum(M @ coef_hat))  # Σ_i g_iᵀ d̂_u
    return length * coef_hat


def config_direction(G: Tensor, preference: Tensor | None = None) -> Tensor:
    """The ConFIG direction of the rows of ``G`` (Eqs. (2)–(3)); ``preference`` defaults to 1."""
    G = check_gradient_matrix(G)
    p = None if preference is None else preference.detach().double().cpu().numpy()
    return combine(config_weights(gram(G), p), G)


@dataclass
class ConFIG(Aggregator):
    """ConFIG (Liu et al. 2025): equal-cosine conflict-free step."""

    name = "config"

    def weights(self, M: np.ndarray, losses: np.ndarray | None = None) -> np.ndarray:
        return config_weights(M)
