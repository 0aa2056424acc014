"""Balance and conflict statistics of per-loss gradients and per-loss updates.

For losses ``k = 1..K`` with raw gradients ``g_k = ∇L_k`` and per-loss updates ``u_k`` (for
AutoBalance ``u_k = lr·m̂_k/(sqrt(v̂_k)+eps)``; for a single preconditioned optimizer the
preconditioned gradient ``lr·g_k/P``), one step's statistics are

* norms ``‖g_k‖``, ``‖u_k‖``;
* **norm ratios** relative to the first loss (the reference, e.g. the PDE residual):
  ``‖g_k‖/‖g_1‖`` and ``‖u_k‖/‖u_1‖``, and the spread ``max_k ‖·‖ / min_k ‖·‖`` (1 = balanced);
* **cosines** ``cos(a, b) = aᵀb / (‖a‖‖b‖)`` between every pair: gradient–gradient
  ``cos(g_i, g_j)`` (negative = the losses conflict) and update–update ``cos(u_i, u_j)``.

:class:`BalanceLogger` records them from the :class:`~autobalance.step_info.StepInfo` a method
returns (which already holds the norms and the cosine matrices, so logging costs nothing extra);
pass it as ``train(config, out, callback=logger)``.
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from autobalance.errors import AutoBalanceError, LossValueError
from autobalance.step_info import StepInfo

__all__ = ["BalanceLogger", "balance_stats", "stats_from_step_info"]


def _cos(a: Tensor, b: Tensor) -> float:
    na, nb = float(a.norm()), float(b.norm())
    return float(a @ b) / (na * nb) if na * nb > 0 else math.nan


def _flat(value: Tensor | Sequence[Tensor | None]) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach().double().reshape(-1).cpu()
    return torch.cat(
        [t.detach().double().reshape(-1).cpu() for t in value if t is not None]
        or [torch.zeros(0, dtype=torch.float64)]
    )


def _pair_stats(
    prefix: str, names: list[str], norms: list[float], cosines: Sequence[Sequence[float]]
) -> dict[str, float]:
    out: dict[str, float] = {}
    ref = norms[0]
    for name, norm in zip(names, norms, strict=True):
        out[f"{name}_{prefix}_norm"] = norm
    for name, norm in zip(names[1:], norms[1:], strict=True):
        out[f"{prefix}_ratio_{names[0]}/{name}"] = ref / norm if norm > 0 else math.nan
    positive = [n for n in norms if math.isfinite(n)]
    out[f"{prefix}_spread"] = (
        max(positive) / min(positive) if positive and min(positive) > 0 else math.nan
    )
    for i, j in itertools.combinations(range(len(names)), 2):
        out[f"{prefix}_cos_{names[i]}/{names[j]}"] = float(cosines[i][j])
    return out


def balance_stats(
    grads: Mapping[str, Tensor | Sequence[Tensor | None]],
    updates: Mapping[str, Tensor | Sequence[Tensor | None]] | None = None,
) -> dict[str, float]:
    """Norms, ratios (first loss over each other), spread and pairwise cosines; see module doc.

    Keys: ``{loss}_grad_norm``, ``grad_ratio_{ref}/{loss}``, ``grad_spread``,
    ``grad_cos_{a}/{b}`` and the same with ``update`` when ``updates`` are given.  Gradients may
    be flat tensors or per-parameter lists (``None`` entries skipped).
    """
    if not grads:
        raise LossValueError("balance_stats needs at least one loss gradient")
    names = list(grads)
    flat = {n: _flat(g) for n, g in grads.items()}
    sizes = {v.numel() for v in flat.values()}
    if len(sizes) != 1:
        raise LossValueError(f"the gradients have different lengths: {sorted(sizes)}")
    g_norms = [float(flat[n].norm()) for n in names]
    g_cos = [[_cos(flat[a], flat[b]) for b in names] for a in names]
    out = _pair_stats("grad", names, g_norms, g_cos)
    if updates is not None:
        if list(updates) != names:
            raise LossValueError(
                f"updates are for losses {list(updates)} but gradients for {names}"
            )
        uflat = {n: _flat(u) for n, u in updates.items()}
        u_norms = [float(uflat[n].norm()) for n in names]
        u_cos = [[_cos(uflat[a], uflat[b]) for b in names] for a in names]
        out.update(_pair_stats("update", names, u_norms, u_cos))
    return out


def _select(matrix: Sequence[Sequence[float]], index: list[int], size: int) -> list[list[float]]:
    """Rows and columns ``index`` of a ``size × size`` matrix; NaN when it has another size."""
    if len(matrix) != size or any(len(row) != size for row in matrix):
        return [[math.nan] * len(index) for _ in index]
    return [[float(matrix[i][j]) for j in index] for i in index]


def stats_from_step_info(info: StepInfo, names: Sequence[str] | None = None) -> dict[str, float]:
    """The statistics of :func:`balance_stats` read from a ``StepInfo`` (NaN where unknown).

    ``names`` picks and orders the losses (the first is the reference of the ratios); all of
    ``info.losses`` in their order by default.  Update cosines are per state; they are mapped to
    losses when every loss owns its own state (otherwise NaN).
    """
    all_names = list(info.losses)
    names = all_names if names is None else list(names)
    missing = [n for n in names if n not in info.losses]
    if missing:
        raise LossValueError(
            f"the step has no loss {', '.join(map(repr, missing))}; its losses are: "
            f"{', '.join(map(repr, all_names))}"
        )
    index = [all_names.index(n) for n in names]
    stats = [info.losses[n] for n in names]
    size = len(all_names)
    out = {"step": float(info.step)}
    grad_cos = _select(info.grad_cosines, index, size)
    out.update(_pair_stats("grad", names, [s.grad_norm for s in stats], grad_cos))
    own_states = [info.losses[n].state or n for n in all_names] == all_names
    upd_cos = _select(info.update_cosines if own_states else [], index, size)
    out.update(_pair_stats("update", names, [s.update_norm for s in stats], upd_cos))
    return out


class BalanceLogger:
    """A ``train(..., callback=...)`` callback recording balance statistics every ``every`` steps.

    Statistics come from the step's ``StepInfo`` only (no extra backward pass).  Rows are kept in
    :attr:`rows` and written by :meth:`write_csv`.
    """

    def __init__(self, every: int = 10) -> None:
        if every < 1:
            raise AutoBalanceError(f"every must be >= 1, got {every}")
        self.every = int(every)
        self.rows: list[dict[str, float]] = []

    def __call__(self, info: StepInfo) -> None:
        if info.step == 1 or info.step % self.every == 0:
            self.rows.append(stats_from_step_info(info))

    def columns(self) -> list[str]:
        """Every key of every row, first-seen order."""
        seen: dict[str, None] = {}
        for row in self.rows:
            seen.update(dict.fromkeys(row))
        return list(seen)

    def write_csv(self, path: str | Path) -> Path:
        """Write :attr:`rows` to ``path`` (CSV with a header)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        columns = self.columns()
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            for row in self.rows:
                writer.writerow({k: row.get(k, math.nan) for k in columns})
        return path

    def summary(self) -> dict[str, Any]:
        """Median of every statistic over the logged steps (NaN ignored)."""
        out: dict[str, Any] = {}
        for key in self.columns():
            values = sorted(r[key] for r in self.rows if math.isfinite(r.get(key, math.nan)))
            out[key] = values[len(values) // 2] if values else math.nan
        return out
