"""Dynamic Weight Average (DWA).

Liu, Johns & Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019, the
Dynamic Weight Average rule:

    w_k(t) = K · exp(r_k(t−1)/T) / Σ_j exp(r_j(t−1)/T),    r_k(t−1) = L_k(t−1) / L_k(t−2),

with temperature ``T = 2`` and ``w_k(t) = 1`` for ``t = 1, 2``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from autobalance.methods.base import WeightingMethod, WeightingStep, check_positive
from autobalance.methods.weighting._common import check_every, softmax

__all__ = ["DynamicWeightAverage"]


class DynamicWeightAverage(WeightingMethod):
    """Dynamic Weight Average of Liu, Johns & Davison (CVPR 2019).

    ``w_k = K·softmax_k(r/T)`` with ``r_k = L̄_k(e−1) / L̄_k(e−2)``, where ``L̄_k(e)`` is the mean
    of loss ``k`` over "epoch" ``e``; the weights are ``1`` during the first two epochs.

    Deviation: the paper's epoch is one pass over the data; PINNs resample points every step, so
    an "epoch" here is a window of ``every`` consecutive steps (default 1: per-step loss values,
    ``r_k = L_k(t−1)/L_k(t−2)``).  The weights of a window are computed from the two preceding
    complete windows and held for the whole window.  When ``L̄_k(e−2) = 0`` the ratio is undefined
    and is taken as ``r_k = 1``.

    Args:
        params: parameters or parameter groups.
        temperature: ``T > 0`` (default 2, the paper's).
        every: steps per averaging window (default 1).
        base, nonfinite, **base_kwargs: see :class:`~autobalance.methods.base.PreCombineMethod`.
    """

    method_name = "dwa"

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        temperature: float = 2.0,
        every: int = 1,
        base: type[torch.optim.Optimizer] | str = "adam",
        **kwargs: Any,
    ) -> None:
        self.temperature = check_positive("temperature", temperature)
        self.every = check_every(every)
        super().__init__(params, base, **kwargs)
        self._window_sum: list[float] = []
        self._window_count = 0
        self._averages: list[list[float]] = []  # the last two complete window means, oldest first
        self._current: list[float] | None = None

    def weights(self, ctx: WeightingStep) -> Sequence[float]:
        k = len(ctx.names)
        used = list(self._current) if self._current is not None else [1.0] * k
        values = [ctx.values[n] for n in ctx.names]
        if not self._window_sum:
            self._window_sum = [0.0] * k
        self._window_sum = [s + v for s, v in zip(self._window_sum, values, strict=True)]
        self._window_count += 1
        if self._window_count == self.every:
            mean = [s / self.every for s in self._window_sum]
            self._averages = [*self._averages, mean][-2:]
            self._window_sum, self._window_count = [0.0] * k, 0
            if len(self._averages) == 2:
                older, newer = self._averages
                ratios = [n / o if o != 0 else 1.0 for n, o in zip(newer, older, strict=True)]
                self._current = [k * w for w in softmax([r / self.temperature for r in ratios])]
        return used

    def extra_state(self) -> dict[str, Any]:
        return {
            "window_sum": list(self._window_sum),
            "window_count": self._window_count,
            "averages": [list(a) for a in self._averages],
            "current": None if self._current is None else list(self._current),
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self._window_sum = [float(x) for x in state.get("window_sum", [])]
        self._window_count = int(state.get("window_count", 0))
        self._averages = [[float(x) for x in a] for a in state.get("averages", [])]
        current = state.get("current")
        self._current = None if current is None else [float(x) for x in current]
