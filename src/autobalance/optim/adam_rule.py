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

A state that a parameter's gradient does not reach (``None``) leaves that parameter's moments and
step count untouched and contributes no update to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from autobalance.optim.buckets import Bucket

__all__ = ["AdamRule", "AdamStates"]


@dataclass
class AdamStates:
    """Moments of all states of one bucket (rows = states) and their step counts."""

    exp_avg: Tensor  # (S, N)
    exp_avg_sq: Tensor  # (S, N)
    max_exp_avg_sq: Tensor | None  # (S, N) with AMSGrad
    steps: Tensor  # (S, P) float32 on the CPU: step count of each state for each parameter
    uniform: bool  # every row of ``steps`` is constant (bias correction is one scalar per state)


class AdamRule:
    """Adam / AdamW moments for every state, stored flat (see module docstring)."""

    name = "adam"

    def __init__(self, decoupled: bool) -> None:
        self.decoupled = decoupled

    # -- state -----------------------------------------------------------------------------
    def create(self, bucket: Bucket, num_states: int, amsgrad: bool) -> AdamStates:
        shape = (num_states, bucket.numel)
        zeros = {"device": bucket.device, "dtype": bucket.dtype}
        return AdamStates(
            exp_avg=torch.zeros(shape, **zeros),
            exp_avg_sq=torch.zeros(shape, **zeros),
            max_exp_avg_sq=torch.zeros(shape, **zeros) if amsgrad else None,
            steps=torch.zeros(num_states, len(bucket.params), dtype=torch.float32),
            uniform=True,
        )

    def per_param_views(self, bucket: Bucket, states: AdamStates) -> list[dict[str, Tensor]]:
        """Torch-style per-parameter states (``step``, ``exp_avg``, ...) as views; rows = states."""
        views = [
            {"step": states.steps[:, j], "exp_avg": m, "exp_avg_sq": v}
            for j, (m, v) in enumerate(
                zip(bucket.split(states.exp_avg), bucket.split(states.exp_avg_sq), strict=True)
            )
        ]
        if states.max_exp_avg_sq is not None:
            for view, vmax in zip(views, bucket.split(states.max_exp_avg_sq), strict=True):
                view["max_exp_avg_sq"] = vmax
        return views

    def restore(
        self, bucket: Bucket, per_param: Sequence[dict[str, Tensor]], amsgrad: bool
    ) -> AdamStates:
        """Rebuild flat states from per-parameter states (after ``load_state_dict``)."""
        rows = per_param[0]["exp_avg"].shape[0]

        def flat(key: str) -> Tensor:
            return torch.cat(
                [s[key].reshape(rows, -1).to(bucket.device, bucket.dtype) for s in per_param], dim=1
            ).contiguous()

        steps = torch.stack([s["step"].to("cpu", torch.float32) for s in per_param], dim=1)
        has_max = all("max_exp_avg_sq" in s for s in per_param)
        return AdamStates(
            exp_avg=flat("exp_avg"),
            exp_avg_sq=flat("exp_avg_sq"),
            max_exp_avg_sq=(
                flat("max_exp_avg_sq")
                if has_max
                else (
                    torch.zeros(rows, bucket.numel, device=bucket.device, dtype=bucket.dtype)
                    if amsgrad
                    else None
                )
            ),
            steps=steps.contiguous(),
            uniform=bool((steps == steps[:, :1]).all()),
        )

    # -- update ----------------------------------------------------------------------------
    def updates(
        self,
        bucket: Bucket,
        states: AdamStates,
        grads: Tensor,
        reached: Tensor,
        group: dict[str, Any],
    ) -> Tensor:
        """Advance every state with its gradient row and return the ``(S, N)`` updates ``u_s``.

        ``reached`` is an ``(S, P)`` bool CPU tensor: whether state s has a gradient for
        parameter j this step.  Rows of the result are zero where not reached.
        """
        beta1, beta2 = (float(b) for b in group["betas"])
        lr, eps, weight_decay = (
            float(group["lr"]),
            float(group["eps"]),
            float(group["weight_decay"]),
        )
        full = bool(reached.all())
        if group.get("maximize", False):
            grads = -grads
        if weight_decay != 0 and not self.decoupled:
            grads = grads.add(bucket.param_vector(), alpha=weight_decay)
        m, v = states.exp_avg, states.exp_avg_sq
        if full:
            m.lerp_(grads, 1 - beta1)
            v.mul_(beta2).addcmul_(grads, grads, value=1 - beta2)
            states.steps += 1
            mask = None
        else:
            mask = self._expand(bucket, reached).to(bucket.device)
            m.copy_(torch.where(mask, m.lerp(grads, 1 - beta1), m))
            v.copy_(torch.where(mask, (v * beta2).addcmul_(grads, grads, value=1 - beta2), v))
            states.steps += reached.to(torch.float32)
            states.uniform = bool((states.steps == states.steps[:, :1]).all())
        second = v
        if states.max_exp_avg_sq is not None:
            torch.maximum(states.max_exp_avg_sq, v, out=states.max_exp_avg_sq)
            second = states.max_exp_avg_sq
        step_size, bc2_sqrt = self._bias_corrections(bucket, states, lr, beta1, beta2)
        denom = second.sqrt().div_(bc2_sqrt).add_(eps)
        update = m.mul(step_size).div_(denom)
        if mask is not None:
            update = torch.where(
                mask, update, torch.zeros((), dtype=update.dtype, device=update.device)
            )
        return update

    @staticmethod
    def _expand(bucket: Bucket, per_param: Tensor) -> Tensor:
        """``(S, P)`` per-parameter values repeated over each parameter's elements: ``(S, N)``."""
        sizes = torch.tensor(bucket.sizes, dtype=torch.long)
        return per_param.repeat_interleave(sizes, dim=1)

    def _bias_corrections(
        self, bucket: Bucket, states: AdamStates, lr: float, beta1: float, beta2: float
    ) -> tuple[Tensor, Tensor]:
        """``lr / (1 − β1^t)`` and ``sqrt(1 − β2^t)`` per state (``(S, 1)``) or per element."""
        kind = {"device": bucket.device, "dtype": bucket.dtype}
        if states.uniform:
            step_size, bc2_sqrt = [], []
            for t in states.steps[:, 0].tolist():
                bc1, bc2 = 1 - beta1**t, 1 - beta2**t
                step_size.append(lr / bc1 if bc1 > 0 else 0.0)
                bc2_sqrt.append(bc2**0.5 if bc2 > 0 else 1.0)
            return (
                torch.tensor(step_size, **kind).unsqueeze(1),
                torch.tensor(bc2_sqrt, **kind).unsqueeze(1),
            )
        t = states.steps.to(torch.float64)
        bc1, bc2 = 1 - beta1**t, 1 - beta2**t
        step_size = torch.where(bc1 > 0, lr / bc1, torch.zeros_like(bc1))
        bc2_sqrt = torch.where(bc2 > 0, bc2.sqrt(), torch.ones_like(bc2))
        return (
            self._expand(bucket, step_size).to(**kind),
            self._expand(bucket, bc2_sqrt).to(**kind),
        )
