"""The AutoBalance update for an Adam/AdamW base: every state keeps its own moments.

For each state ``s`` (one loss, or one group of losses) with gradient ``g_s``, at that state's
own step count ``t_s`` (Kingma & Ba 2015, Alg. 1; Loshchilov & Hutter 2019 for AdamW)::

    m_s ← β1 m_s + (1 − β1) g_s
    v_s ← β2 v_s + (1 − β2) g_s²                 (AMSGrad: v̄_s ← max(v̄_s, v_s))
    u_s = lr · (m_s / (1 − β1^t_s)) / (sqrt(v_s / (1 − β2^t_s)) + eps)

and AutoBalance moves the parameters by ``θ ← θ − Σ_s w_s u_s`` (An et al. 2025, Eq. for the
post-combine update; ``w_s = 1`` for "sum").  All states of a bucket live in ``(S, N)`` tensors,
so the whole update is a few vectorised ops.  The arithmetic follows ``torch.optim.Adam`` op for
op, so with one loss it reproduces Adam bit for bit (tested).

:func:`multi_state_adam` is the update as a pure function on tensors (as ``torch.optim``'s
``_multi_tensor_adam``): it advances the moment buffers and step counters passed to it, in place,
and returns the updates.  :class:`AdamRule` is the thin :class:`~autobalance.optim.state_rule.
StateRule` over it that keeps each bucket's buffers and reads the hyperparameters of its group.

A state that a parameter's gradient does not reach (``None``) leaves that parameter's moments and
step count untouched and contributes no update to it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from autobalance.errors import StateDictError
from autobalance.optim.buckets import Bucket
from autobalance.state_checks import check_tensor

__all__ = ["AdamRule", "AdamStates", "multi_state_adam"]

#: The keys of one parameter's state, and the optional AMSGrad one.
_STATE_KEYS = ("step", "exp_avg", "exp_avg_sq")
_ALL_KEYS = (*_STATE_KEYS, "max_exp_avg_sq")


def multi_state_adam(
    grads: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    max_exp_avg_sq: Tensor | None,
    steps: Tensor,
    reached: Tensor,
    *,
    sizes: Sequence[int],
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float = 0.0,
    params: Tensor | None = None,
    maximize: bool = False,
) -> Tensor:
    """One Adam step of every state (see the module docstring); returns the ``(S, N)`` updates.

    Args:
        grads: ``(S, N)``: row ``s`` is state ``s``'s gradient over the ``N`` flat coordinates.
        exp_avg, exp_avg_sq, max_exp_avg_sq: ``(S, N)`` moment buffers, updated in place
            (``max_exp_avg_sq`` only with AMSGrad, else ``None``).
        steps: ``(S, P)`` float32 CPU step counts of each state for each of the ``P`` parameters,
            updated in place.
        reached: ``(S, P)`` bool CPU: whether state ``s`` has a gradient for parameter ``j``;
            where it has not, the moments and the count stay and the update is zero.
        sizes: the number of coordinates of each parameter (they sum to ``N``).
        lr, beta1, beta2, eps: Adam's hyperparameters.
        weight_decay: coupled L2 decay ``g ← g + λθ`` (0 for AdamW: decoupled decay belongs to
            the parameters, not to a state).
        params: the ``(N,)`` flat parameters, needed only when ``weight_decay != 0``.
        maximize: ascend instead of descend, as ``torch.optim.Adam(maximize=True)``.
    """
    full = bool(reached.all())
    if maximize:
        grads = -grads
    if weight_decay != 0:
        assert params is not None, "coupled weight decay needs the parameters"
        grads = grads.add(params, alpha=weight_decay)
    # Unreached (state, parameter) pairs: runs of coordinates whose moments are put back after
    # the in-place update of all of them, and whose update is zeroed.
    rows = None if full else _rows(reached)
    missed = [] if rows is None else _unreached_runs(tuple(sizes), rows)
    kept = [(exp_avg[s, a:b].clone(), exp_avg_sq[s, a:b].clone()) for s, a, b in missed]
    exp_avg.lerp_(grads, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grads, grads, value=1 - beta2)
    for (s, a, b), (m, v) in zip(missed, kept, strict=True):
        exp_avg[s, a:b] = m
        exp_avg_sq[s, a:b] = v
    steps += 1 if full else reached.to(torch.float32)
    second = exp_avg_sq
    if max_exp_avg_sq is not None:
        torch.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        second = max_exp_avg_sq
    step_size, bc2_sqrt = _bias_corrections(steps, sizes, exp_avg, lr, beta1, beta2, reached=rows)
    denom = second.sqrt().div_(bc2_sqrt).add_(eps)
    update = exp_avg.mul(step_size).div_(denom)
    for s, a, b in missed:
        update[s, a:b] = 0
    return update


def _rows(reached: Tensor) -> tuple[tuple[bool, ...], ...]:
    return tuple(map(tuple, reached.tolist()))


@functools.lru_cache(maxsize=64)
def _unreached_runs(
    sizes: tuple[int, ...], reached: tuple[tuple[bool, ...], ...]
) -> list[tuple[int, int, int]]:
    """``(state, start, stop)`` for each run of consecutive parameters a state does not reach,
    as coordinate ranges of the flat buffers (cached: a loss that misses a parameter, e.g. a
    residual of derivatives only and the output bias, misses it at every step)."""
    runs: list[tuple[int, int, int]] = []
    offsets = [0]
    for n in sizes:
        offsets.append(offsets[-1] + n)
    for s, row in enumerate(reached):
        j = 0
        while j < len(row):
            if row[j]:
                j += 1
                continue
            start = j
            while j < len(row) and not row[j]:
                j += 1
            runs.append((s, offsets[start], offsets[j]))
    return runs


def _expand(sizes: Sequence[int], per_param: Tensor) -> Tensor:
    """``(S, P)`` per-parameter values repeated over each parameter's elements: ``(S, N)``."""
    return per_param.repeat_interleave(torch.tensor(sizes, dtype=torch.long), dim=1)


def _bias_corrections(
    steps: Tensor,
    sizes: Sequence[int],
    like: Tensor,
    lr: float,
    beta1: float,
    beta2: float,
    reached: Sequence[Sequence[bool]] | None = None,
) -> tuple[Tensor, Tensor]:
    """``lr / (1 − β1^t)`` and ``sqrt(1 − β2^t)`` per state (``(S, 1)``) or per element.

    One scalar per state when each state's count is the same for every parameter (the usual
    case), else one value per element; both are cast to ``like``'s device and dtype.  With
    ``reached`` (``(S, P)``: the elements a state updates this step; its updates elsewhere are
    discarded), only the counts of the reached parameters need to agree: each state then gets the
    per-parameter value of its reached parameters, the same numbers as the per-element values
    there.
    """
    device, dtype = like.device, like.dtype
    counts: list[list[float]] = steps.tolist()
    if all(row.count(row[0]) == len(row) for row in counts):
        state_step_size: list[float] = []
        state_bc2_sqrt: list[float] = []
        for count in (row[0] for row in counts):
            bc1_value, bc2_value = 1 - beta1**count, 1 - beta2**count
            state_step_size.append(lr / bc1_value if bc1_value > 0 else 0.0)
            state_bc2_sqrt.append(bc2_value**0.5 if bc2_value > 0 else 1.0)
        return _per_state_columns(state_step_size, state_bc2_sqrt, device, dtype)
    t = steps.to(torch.float64)
    powers = (beta1**t, beta2**t)  # per element: these are the values the updates must see
    if reached is not None:
        first = [list(hits).index(True) if True in hits else 0 for hits in reached]
        if all(
            all(c == row[j] for c, hit in zip(row, hits, strict=True) if hit)
            for row, hits, j in zip(counts, reached, first, strict=True)
        ):
            # One value per state: its first reached element's, finished in Python with the
            # float64 operations the tensor code below performs (``lr / bc1`` on a tensor is
            # ``bc1.reciprocal() * lr``), each correctly rounded: bit for bit the per-element
            # values, in 3 device ops instead of ~20.
            p1, p2 = torch.stack(powers).tolist()
            step_size_rows, bc2_sqrt_rows = [], []
            for s, j in enumerate(first):
                bc1_value, bc2_value = 1 - p1[s][j], 1 - p2[s][j]
                step_size_rows.append((1 / bc1_value) * lr if bc1_value > 0 else 0.0)
                bc2_sqrt_rows.append(math.sqrt(bc2_value) if bc2_value > 0 else 1.0)
            return _per_state_columns(step_size_rows, bc2_sqrt_rows, device, dtype)
    bc1, bc2 = 1 - powers[0], 1 - powers[1]
    step_size = torch.where(bc1 > 0, lr / bc1, torch.zeros_like(bc1))
    bc2_sqrt = torch.where(bc2 > 0, bc2.sqrt(), torch.ones_like(bc2))
    return (
        _expand(sizes, step_size).to(device=device, dtype=dtype),
        _expand(sizes, bc2_sqrt).to(device=device, dtype=dtype),
    )


def _per_state_columns(
    step_size: list[float], bc2_sqrt: list[float], device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """The two ``(S, 1)`` columns of per-state values, from one host-to-device copy."""
    both = torch.tensor([step_size, bc2_sqrt], device=device, dtype=dtype).unsqueeze(2)
    return both[0], both[1]


@dataclass
class AdamStates:
    """Moments of all states of one bucket (rows = states) and their step counts."""

    exp_avg: Tensor  # (S, N)
    exp_avg_sq: Tensor  # (S, N)
    max_exp_avg_sq: Tensor | None  # (S, N) with AMSGrad
    steps: Tensor  # (S, P) float32 on the CPU: step count of each state for each parameter

    def per_param_views(self, bucket: Bucket) -> list[dict[str, Any]]:
        """Torch-style per-parameter states (``step``, ``exp_avg``, ...) as views; rows = states."""
        views: list[dict[str, Any]] = [
            {"step": self.steps[:, j], "exp_avg": m, "exp_avg_sq": v}
            for j, (m, v) in enumerate(
                zip(bucket.split(self.exp_avg), bucket.split(self.exp_avg_sq), strict=True)
            )
        ]
        if self.max_exp_avg_sq is not None:
            for view, vmax in zip(views, bucket.split(self.max_exp_avg_sq), strict=True):
                view["max_exp_avg_sq"] = vmax
        return views


class AdamRule:
    """Adam / AdamW moments for every state, stored flat (see module docstring)."""

    name = "adam"

    def __init__(self, decoupled: bool) -> None:
        self.decoupled = decoupled

    def init(
        self, bucket: Bucket, group: dict[str, Any], state_names: Sequence[str]
    ) -> tuple[AdamStates, list[dict[str, Any]]]:
        """Zero moments and counts for ``len(state_names)`` states."""
        shape = (len(state_names), bucket.numel)
        device, dtype = bucket.device, bucket.dtype
        states = AdamStates(
            exp_avg=torch.zeros(shape, device=device, dtype=dtype),
            exp_avg_sq=torch.zeros(shape, device=device, dtype=dtype),
            max_exp_avg_sq=(
                torch.zeros(shape, device=device, dtype=dtype) if group["amsgrad"] else None
            ),
            steps=torch.zeros(len(state_names), len(bucket.params), dtype=torch.float32),
        )
        return states, states.per_param_views(bucket)

    def load(
        self, bucket: Bucket, group: dict[str, Any], per_param: Sequence[dict[str, Any]]
    ) -> tuple[AdamStates, list[dict[str, Any]]]:
        """Rebuild flat states from per-parameter states (after ``load_state_dict``)."""
        rows = per_param[0]["exp_avg"].shape[0]

        def flat(key: str) -> Tensor:
            return torch.cat(
                [s[key].reshape(rows, -1).to(bucket.device, bucket.dtype) for s in per_param], dim=1
            ).contiguous()

        if all("max_exp_avg_sq" in s for s in per_param):
            max_exp_avg_sq: Tensor | None = flat("max_exp_avg_sq")
        elif group["amsgrad"]:
            max_exp_avg_sq = torch.zeros(
                rows, bucket.numel, device=bucket.device, dtype=bucket.dtype
            )
        else:
            max_exp_avg_sq = None
        steps = torch.stack([s["step"].to("cpu", torch.float32) for s in per_param], dim=1)
        states = AdamStates(
            exp_avg=flat("exp_avg"),
            exp_avg_sq=flat("exp_avg_sq"),
            max_exp_avg_sq=max_exp_avg_sq,
            steps=steps.contiguous(),
        )
        return states, states.per_param_views(bucket)

    def check_state(
        self,
        what: str,
        param: Tensor,
        state: Mapping[str, Any],
        group: Mapping[str, Any],
        state_names: Sequence[str],
    ) -> None:
        """``step`` ``(S,)`` and ``exp_avg``, ``exp_avg_sq`` (and with AMSGrad
        ``max_exp_avg_sq``) ``(S, *param.shape)``, one row per state (see
        :meth:`AdamStates.per_param_views`)."""
        keys = [str(k) for k in state]
        if any(k not in keys for k in _STATE_KEYS) or any(k not in _ALL_KEYS for k in keys):
            raise StateDictError(
                f"{what} has state keys {sorted(keys)}, but AutoBalance over Adam/AdamW keeps "
                f"{list(_STATE_KEYS)} (and 'max_exp_avg_sq' with AMSGrad)"
            )
        rows = len(state_names)
        check_tensor(f"{what}: 'step'", state["step"], (rows,))
        for key in _ALL_KEYS[1:]:
            if key in state:
                check_tensor(f"{what}: {key!r}", state[key], (rows, *param.shape))

    def updates(
        self,
        bucket: Bucket,
        states: AdamStates,
        grads: Tensor,
        reached: Tensor,
        group: dict[str, Any],
    ) -> Tensor:
        """:func:`multi_state_adam` on the bucket's buffers with its group's hyperparameters."""
        beta1, beta2 = (float(b) for b in group["betas"])
        coupled_decay = 0.0 if self.decoupled else float(group["weight_decay"])
        return multi_state_adam(
            grads,
            states.exp_avg,
            states.exp_avg_sq,
            states.max_exp_avg_sq,
            states.steps,
            reached,
            sizes=bucket.sizes,
            lr=float(group["lr"]),
            beta1=beta1,
            beta2=beta2,
            eps=float(group["eps"]),
            weight_decay=coupled_decay,
            params=bucket.param_vector() if coupled_decay != 0 else None,
            maximize=bool(group.get("maximize", False)),
        )
