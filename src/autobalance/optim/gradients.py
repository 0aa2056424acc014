"""Per-loss gradients, each from its own backward pass, freeing every graph as soon as possible.

``∇L_k`` for each named loss is one ``torch.autograd.grad`` call.  When two losses share part of
their autograd graph (e.g. one forward pass feeds both), the earlier call must retain the graph;
when they do not (separate forward passes, the usual PINN case), retaining would keep the whole
graph alive until the caller drops the loss, so it is freed instead.  Sharing is detected by
walking the graphs (measured: ~0.03 ms for a 120-node Helmholtz residual graph, <1% of a step).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from autobalance.errors import LossValueError

__all__ = ["graph_nodes", "per_loss_gradients", "retain_flags"]


def graph_nodes(loss: Tensor) -> set[int]:
    """Ids of the autograd nodes that hold buffers, reachable from ``loss``.

    Leaf accumulators (``AccumulateGrad``) are left out: they hold no saved tensors, so sharing
    them (every loss reaches the same parameters) does not require retaining a graph.
    """
    root = loss.grad_fn
    if root is None:
        return set()
    seen: set[int] = {id(root)}
    stack = [root]
    while stack:
        node = stack.pop()
        for child, _ in node.next_functions:
            if child is None or id(child) in seen or hasattr(child, "variable"):
                continue
            seen.add(id(child))
            stack.append(child)
    return seen


def retain_flags(losses: Sequence[Tensor]) -> list[bool]:
    """For each loss, whether its backward must retain the graph for a later loss."""
    flags = [False] * len(losses)
    later: set[int] = set()
    for k in range(len(losses) - 1, -1, -1):
        nodes = graph_nodes(losses[k])
        flags[k] = not later.isdisjoint(nodes)
        later |= nodes
    return flags


def per_loss_gradients(
    names: Sequence[str],
    losses: Sequence[Tensor],
    params: Sequence[Tensor],
    *,
    retain_graph: bool | None = None,
) -> list[list[Tensor | None]]:
    """Return ``grads[k][j] = ∂L_k/∂θ_j`` (``None`` where loss k does not reach parameter j).

    Parameters with ``requires_grad=False`` get ``None``.  ``retain_graph=None`` decides per loss
    whether a later loss needs the graph; ``True`` / ``False`` force it.
    """
    inputs = [p for p in params if p.requires_grad]
    positions = [j for j, p in enumerate(params) if p.requires_grad]
    flags = retain_flags(losses) if retain_graph is None else [retain_graph] * len(losses)
    result: list[list[Tensor | None]] = []
    for name, loss, retain in zip(names, losses, flags, strict=True):
        if not loss.requires_grad or not inputs:
            raise LossValueError(
                f"loss {name!r} has no path to any parameter of this optimizer "
                "(it does not require grad; was it computed under torch.no_grad() or detached?)"
            )
        grads = torch.autograd.grad(
            loss.reshape(()), inputs, retain_graph=retain, allow_unused=True
        )
        if all(g is None for g in grads):
            raise LossValueError(f"loss {name!r} has no path to any parameter of this optimizer")
        full: list[Tensor | None] = [None] * len(params)
        for j, g in zip(positions, grads, strict=True):
            full[j] = g
        result.append(full)
    return result
