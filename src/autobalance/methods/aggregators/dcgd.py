"""DCGD: dual cone gradient descent (Hwang & Lim, "Dual Cone Gradient Descent for Training
Physics-Informed Neural Networks", NeurIPS 2024, §4, Algorithms 2–4).

For the residual gradient ``g_r`` and the boundary gradient ``g_b`` (total ``g = g_r + g_b``) the
update lies in the dual cone ``K* = {v : v·g_r ≥ 0, v·g_b ≥ 0}``:

* ``"center"`` (the authors' default): ``c = g_r/‖g_r‖ + g_b/‖g_b‖`` (the cone's bisector),
  ``d = (g·c / ‖c‖²) c``;
* ``"proj"``: ``d = g`` if ``g ∈ K*``; else ``g`` projected onto the normal plane of the gradient
  it conflicts with: ``g·g_b < 0 → d = g_r − (g_r·g_b/‖g_b‖²) g_b``, else
  ``g·g_r < 0 → d = g_b − (g_r·g_b/‖g_r‖²) g_r``;
* ``"average"``: ``d = g`` if ``g ∈ K*``; else the mean of the two projections above.

``K > 2`` (the authors' code, documented generalisation): the first ``num_pde`` losses are summed
into ``g_r`` and the rest into ``g_b``; with the group matrix ``C`` (``2 × K``) the pair's Gram
matrix is ``C M Cᵀ``, and ``w_k`` is ``a`` or ``b`` by group (``d = a g_r + b g_b``).  Degenerate
cases: a zero ``g_r`` or ``g_b`` has no unit vector and contributes none; anti-parallel gradients
make ``c = 0`` and ``"center"`` returns ``d = 0`` (the cone is then the normal hyperplane, whose
"centre" is undefined).  Permutation invariant within each group; homogeneous.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autobalance.errors import HyperparameterError
from autobalance.methods.aggregators._base import Aggregator, check_positive_int
from autobalance.methods.aggregators._gram import safe_div

__all__ = ["DCGD", "VARIANTS", "dcgd_pair_weights"]

VARIANTS = ("center", "proj", "average")


def dcgd_pair_weights(M2: np.ndarray, variant: str) -> np.ndarray:
    """``(a, b)`` with ``d = a g_r + b g_b`` from the 2 × 2 Gram matrix of ``(g_r, g_b)``."""
    rr, bb, rb = float(M2[0, 0]), float(M2[1, 1]), float(M2[0, 1])
    if variant == "center":
        inv = safe_div(np.ones(2), np.sqrt(np.clip([rr, bb], 0.0, None)))
        c = inv  # c = inv_r g_r + inv_b g_b
        cc = float(c @ M2 @ c)
        if cc <= 1e-12 * float(c @ np.diag(np.diag(M2)) @ c) or cc <= 0:
            return np.zeros(2)
        gc = float(np.ones(2) @ M2 @ c)
        return (gc / cc) * c
    g_r, g_b = rr + rb, bb + rb  # g·g_r, g·g_b
    proj_b = np.array([1.0, -float(safe_div(np.array(rb), np.array(bb)))])
    proj_r = np.array([-float(safe_div(np.array(rb), np.array(rr))), 1.0])
    if g_r >= 0 and g_b >= 0:
        return np.ones(2)
    if variant == "proj":
        return proj_b if g_b < 0 else proj_r
    return 0.5 * (proj_b + proj_r)


@dataclass
class DCGD(Aggregator):
    """DCGD (Hwang & Lim 2024): update inside the dual cone."""

    name = "dcgd"
    variant: str = "center"
    num_pde: int = 1

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise HyperparameterError(
                f"dcgd variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}"
            )
        self.num_pde = check_positive_int("dcgd num_pde", self.num_pde)

    def weights(self, M: np.ndarray, losses: np.ndarray | None = None) -> np.ndarray:
        K = M.shape[0]
        if K < 2 or self.num_pde >= K:
            raise HyperparameterError(
                f"dcgd needs a residual group (the first num_pde={self.num_pde} losses) and a "
                f"boundary group (the rest); got {K} losses"
            )
        C = np.zeros((2, K))
        C[0, : self.num_pde] = 1.0
        C[1, self.num_pde :] = 1.0
        ab = dcgd_pair_weights(C @ M @ C.T, self.variant)
        return np.where(np.arange(K) < self.num_pde, ab[0], ab[1])
