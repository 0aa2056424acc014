"""MGDA: the minimum-norm element of the convex hull of the gradients (Désidéri, "Multiple-
gradient descent algorithm (MGDA) for multiobjective optimization", C. R. Math. 2012; Sener &
Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018, Eq. (3)).

Solves ``α* = argmin_{α ∈ Δ} ‖Σ_k α_k ĝ_k‖²`` **exactly** at any ``K`` (Sener & Koltun use
Frank–Wolfe with a closed-form line search; here quadprog, then an exact active-set refinement on
the unridged Gram matrix — see :mod:`._qp` — and, for ``K = 2``, their closed form
``α_1 = clip((ĝ_2 − ĝ_1)·ĝ_2 / ‖ĝ_1 − ĝ_2‖², 0, 1)``) on the Gram matrix of the normalised
gradients ``ĝ_k = g_k / n_k``, with ``n_k`` (Sener & Koltun §3.3 / their code's normalisers):

* ``"none"``: 1 (default: ``d`` *is* the min-norm point of the hull of the raw gradients);
* ``"l2"``: ``‖g_k‖``;  ``"loss"``: ``L_k``;  ``"loss+"``: ``L_k ‖g_k‖``.

The direction is ``d = Σ_k α*_k g_k`` on the *raw* gradients (as the authors' training code
back-propagates ``Σ_k α_k L_k``); the weights are ``w = α*`` and sum to 1, so ``d`` is **not**
scaled by ``K``.  Zero-norm rows keep ``n_k = 1``.  With ``"none"`` or ``"l2"``: permutation
invariant; ``"none"`` is homogeneous.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autobalance.errors import HyperparameterError
from autobalance.methods.aggregators._base import Aggregator
from autobalance.methods.aggregators._gram import row_norms
from autobalance.methods.aggregators._qp import min_norm_simplex

__all__ = ["MGDA", "NORMALIZATIONS"]

NORMALIZATIONS = ("none", "l2", "loss", "loss+")


@dataclass
class MGDA(Aggregator):
    """MGDA (Sener & Koltun 2018): exact min-norm point of the hull."""

    name = "mgda"
    normalize: str = "none"

    def __post_init__(self) -> None:
        if self.normalize not in NORMALIZATIONS:
            raise HyperparameterError(
                f"mgda normalize must be one of {', '.join(NORMALIZATIONS)}, got {self.normalize!r}"
            )

    def _factors(self, M: np.ndarray, losses: np.ndarray | None) -> np.ndarray:
        K = M.shape[0]
        if self.normalize == "none":
            return np.ones(K)
        n = row_norms(M) if self.normalize != "loss" else np.ones(K)
        if self.normalize in ("loss", "loss+"):
            if losses is None:
                raise HyperparameterError(
                    f"mgda normalize={self.normalize!r} needs the {K} loss values (losses=...)"
                )
            if np.any(losses < 0) or not np.all(np.isfinite(losses)):
                raise HyperparameterError(
                    f"mgda normalize={self.normalize!r} needs finite non-negative losses, "
                    f"got {losses}"
                )
            n = n * losses
        return np.where(n > 0, n, 1.0)

    def weights(self, M: np.ndarray, losses: np.ndarray | None = None) -> np.ndarray:
        """``α*`` (sums to 1)."""
        n = self._factors(M, losses)
        return min_norm_simplex(M / np.outer(n, n))
