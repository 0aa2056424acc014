"""MGDA: the minimum-norm element of the convex hull of the gradients (Désidéri, "Multiple-
gradient descent algorithm (MGDA) for multiobjective optimization", C. R. Math. 2012; Sener &
Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018, Eq. (3)).

Solves ``α* = argmin_{α ∈ Δ} ‖Σ_k α_k ĝ_k‖²`` **exactly** (Sener & Koltun use Frank–Wolfe with a
closed-form line search; here every face of the simplex is solved as a small KKT system — see
:mod:`._linalg` — which is exact, ``K ≤ 12``) on the Gram matrix of the normalised gradients
``ĝ_k = g_k / n_k``, with ``n_k`` (Sener & Koltun §3.3 / their code's gradient normalisers):

* ``"none"``: 1 (default: ``d`` *is* the min-norm point of the hull of the raw gradients);
* ``"l2"``: ``‖g_k‖``;  ``"loss"``: ``L_k``;  ``"loss+"``: ``L_k ‖g_k‖``.

The direction is ``d = Σ_k α*_k g_k`` on the *raw* gradients (as the authors' training code
back-propagates ``Σ_k α_k L_k``); the weights sum to 1, so ``d`` is **not** scaled by ``K``.
``last_weights`` reports ``α*``.  Zero-norm rows keep ``n_k = 1``.  With ``"none"`` or ``"l2"``:
permutation invariant; ``"none"`` is homogeneous.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from autobalance.errors import HyperparameterError
from autobalance.methods.aggregation import check_gradient_matrix, register_aggregator
from autobalance.methods.aggregators._linalg import combine, gram, min_norm_simplex, row_norms

__all__ = ["MGDA", "NORMALIZATIONS"]

NORMALIZATIONS = ("none", "l2", "loss", "loss+")


@register_aggregator(
    "mgda", summary="MGDA (Sener & Koltun 2018): exact min-norm point of the hull."
)
class MGDA:
    def __init__(self, normalize: str = "none") -> None:
        if normalize not in NORMALIZATIONS:
            raise HyperparameterError(
                f"mgda normalize must be one of {', '.join(NORMALIZATIONS)}, got {normalize!r}"
            )
        self.normalize = normalize
        self.last_weights: list[float] | None = None

    def _factors(self, M: np.ndarray, losses: Tensor | None) -> np.ndarray:
        K = M.shape[0]
        if self.normalize == "none":
            return np.ones(K)
        n = row_norms(M) if self.normalize != "loss" else np.ones(K)
        if self.normalize in ("loss", "loss+"):
            if losses is None or losses.numel() != K:
                raise HyperparameterError(
                    f"mgda normalize={self.normalize!r} needs the {K} loss values (losses=...)"
                )
            L = losses.detach().double().cpu().numpy().reshape(-1)
            if np.any(L < 0) or not np.all(np.isfinite(L)):
                raise HyperparameterError(
                    f"mgda normalize={self.normalize!r} needs finite non-negative losses, got {L}"
                )
            n = n * L
        return np.where(n > 0, n, 1.0)

    def weights(self, G: Tensor, losses: Tensor | None = None) -> np.ndarray:
        """``α*`` (sums to 1)."""
        M = gram(check_gradient_matrix(G))
        n = self._factors(M, losses)
        return min_norm_simplex(M / np.outer(n, n))

    def __call__(self, G: Tensor, losses: Tensor | None = None) -> Tensor:
        alpha = self.weights(G, losses)
        self.last_weights = [float(a) for a in alpha]
        return combine(alpha, G)
