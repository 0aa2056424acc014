"""Aligned-MTL: aligning the gradient system by its condition number (Senushkin et al.,
"Independent Component Alignment for Multi-Task Learning", CVPR 2023, §4, Eqs. (9)–(11)).

With the eigendecomposition of the Gram matrix ``M = G Gᵀ = V Λ Vᵀ`` restricted to its numerical
rank ``R`` (eigenvalues above ``max(λ)·K·eps``, the authors' rule, with float64's ``eps`` as ``M``
is accumulated in float64 — see :func:`._linalg.gram`)::

    B = √λ_min · V_R Λ_R^{-1/2} V_Rᵀ,       Ĝ = B G,       d = Ĝᵀ w = Σ_k (B w)_k g_k

where ``λ_min`` is the smallest retained eigenvalue (``scale="min"``, the paper's default;
``"median"`` and ``"rmse"`` — ``√mean(λ)`` — as in the code) and ``w`` the task weights (ones:
the rows of ``Ĝ`` are summed, as in the authors' balancer).  For full rank the aligned rows are
orthogonal with equal norms ``√λ_min`` (``Ĝ Ĝᵀ = λ_min I``).  Variant: the full-parameter
version, *without* the upper-bound (Aligned-MTL-UB, encoder-feature) trick.  Rank-deficient
systems are aligned inside their range; all-zero ``G`` gives ``d = 0``.  Permutation invariant
and homogeneous; the weights are ``B w``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autobalance.errors import HyperparameterError
from autobalance.methods.aggregators._base import Aggregator

__all__ = ["AlignedMTL", "aligned_mtl_weights"]

SCALES = ("min", "median", "rmse")


def aligned_mtl_weights(M: np.ndarray, scale: str = "min") -> np.ndarray:
    """``B · 1`` from the Gram matrix (see the module docstring)."""
    K = M.shape[0]
    lam, V = np.linalg.eigh(M)
    top = float(lam.max()) if K else 0.0
    if not top > 0:
        return np.zeros(K)
    keep = lam > top * K * np.finfo(np.float64).eps
    lam, V = lam[keep], V[:, keep]
    if scale == "min":
        sigma = float(lam.min())
    elif scale == "median":
        sigma = float(np.median(lam))
    else:
        sigma = float(lam.mean())
    B = (V * np.sqrt(sigma / lam)[None, :]) @ V.T
    return B @ np.ones(K)


@dataclass
class AlignedMTL(Aggregator):
    """Aligned-MTL (Senushkin et al. 2023): condition G to 1."""

    name = "aligned-mtl"
    scale: str = "min"

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise HyperparameterError(
                f"aligned-mtl scale must be one of {', '.join(SCALES)}, got {self.scale!r}"
            )

    def weights(self, M: np.ndarray, losses: np.ndarray | None = None) -> np.ndarray:
        return aligned_mtl_weights(M, self.scale)
