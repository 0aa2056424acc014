"""The ``K × K`` Gram matrix ``M = G Gᵀ`` of the per-loss gradients, and small helpers on it.

Everything here works on float64 NumPy arrays of size ``K`` (a handful of losses); the ``(K, P)``
gradient matrix itself stays on its own device (see :func:`gram` and :func:`combine`).  The Gram
matrix is always accumulated in float64: formed in float32 its entries carry errors of about
``1e-7 · ‖g_i‖ ‖g_j‖``, which swamp the small eigenvalues of nearly parallel or rank-deficient
(``K > P``) gradient systems, so every pseudo-inverse, rank decision and QP on it (calibrated for
float64) would work on noise.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["combine", "gram", "row_norms", "safe_div"]


def gram(G: Tensor) -> np.ndarray:
    """``M = G Gᵀ`` accumulated in float64, as a symmetric float64 array.

    The product runs on ``G``'s device (on the CPU for devices without float64, e.g. MPS); only
    the ``K × K`` result is copied to the host.  The entries of a float32 ``G`` are exact in
    float64, so ``M`` is the Gram matrix of the given rows to float64 round-off.
    """
    with torch.no_grad():
        Gd = G.detach()
        if Gd.device.type == "mps":  # no float64 there
            Gd = Gd.cpu()
        Gd = Gd.to(torch.float64)
        M = (Gd @ Gd.T).cpu().numpy()
    return 0.5 * (M + M.T)


def combine(weights: np.ndarray, G: Tensor) -> Tensor:
    """``d = Σ_k w_k G_k`` in ``G``'s dtype and device."""
    w = torch.as_tensor(np.asarray(weights, dtype=np.float64), dtype=G.dtype, device=G.device)
    return w @ G


def row_norms(M: np.ndarray) -> np.ndarray:
    """``‖g_k‖`` from the Gram matrix."""
    return np.sqrt(np.clip(np.diag(M), 0.0, None))


def safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``den`` is 0 (zero rows stay zero, never NaN)."""
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den > 0)
    return out
