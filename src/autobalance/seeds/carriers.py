"""Gradient carriers: a scalar loss whose value and gradient are given, so that an unchanged
balancer takes one seed's step from gradients computed for all seeds at once.

A batched backward pass gives, per loss ``k``, the stacked gradients ``G_k[s] = ∂L_k^(s)/∂θ_s``
(eq. (1) of :mod:`autobalance.seeds.stacked`).  Each seed's balancer is the very object a
separate run would build (its own states, weights, generators, checkpoints); it is handed, per
loss, the carrier

    ℓ_k^(s)(θ_s) = L_k^(s)    with    ∂ℓ_k^(s)/∂θ_s = G_k[s]                          (2)

whose backward returns ``grad_output · G_k[s]`` (so ``∇ Σ_k w_k ℓ_k = Σ_k w_k G_k[s]`` for any
weights the method applies).  What the method computes from losses and their first derivatives
is exactly what it computes in a separate run.  Second derivatives through a carrier are zero,
and a carrier has no pointwise terms: methods that need those are refused
(:data:`autobalance.seeds.support.UNSUPPORTED_METHODS`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["carrier"]


class _Carrier(torch.autograd.Function):
    """``value`` forward; ``grad_output · g_p`` backward for each parameter ``p`` (eq. (2))."""

    @staticmethod
    def forward(ctx: Any, value: Tensor, grads: Sequence[Tensor], *params: Tensor) -> Tensor:
        ctx.grads = grads
        return value.detach().clone()

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        return (None, None, *(grad_output * g for g in ctx.grads))


def carrier(value: Tensor, params: Sequence[Tensor], grads: Sequence[Tensor | None]) -> Tensor:
    """The scalar loss ``value`` whose gradient with respect to ``params`` is ``grads`` (eq. (2)).

    A parameter whose gradient is ``None`` (the loss does not reach it) is left out of the graph,
    so ``autograd.grad(..., allow_unused=True)`` reports it unreached, as in a separate run.  A
    loss that reaches no parameter is ``value`` itself, detached.
    """
    reached = [(p, g) for p, g in zip(params, grads, strict=True) if g is not None]
    if not reached:
        return value.detach().clone()
    return _Carrier.apply(value, [g for _, g in reached], *(p for p, _ in reached))
