"""Per-loss gradients, each from its own backward pass, freeing every graph as soon as possible.

``∇L_k`` for each named loss is one call into torch's autograd engine (:func:`loss_gradient`:
the numbers of ``torch.autograd.grad``, without its per-call argument processing).  When two
losses share part of their autograd graph (e.g. one forward pass feeds both), the earlier call
must retain the graph; when they do not (separate forward passes, the usual PINN case),
retaining would keep the whole graph alive until the caller drops the loss, so it is freed
instead.  Sharing is detected by walking the graphs once (:func:`retain_flags`: ~75 µs for
convection's 82 nodes, about half of it creating the Python objects of the nodes; 2-3% of that
problem's step in place).

The walk is not replaced by a cached sharing structure: no cheap test proves that this step's
graphs share what the last step's did, and a wrong guess cannot be undone.  Guessing "not
shared" where a later loss does share frees the buffers that loss needs (its backward then
fails and the graph is gone; the gradients are never wrong, the step is lost); guessing
"shared" for every loss is always exact but keeps the earlier losses' graphs alive until the
caller drops the losses, i.e. through the runner's evaluation and next forward pass.

What it costs (``benchmarks/step_time.py``, one CPU thread, 4×50 MLP, default points):

* losses from separate forward passes (every shipped problem but Kovasznay): the K calls
  traverse disjoint graphs, every node once, as one backward of the summed loss does
  (``nodes Σ/∪ = flops Σ/∪ = 1``); with the direct engine calls the K backward passes take
  0.98-1.00× ``torch.autograd.grad`` of the sum, and the walk adds 2-3% on the smallest
  problem (convection) and less on the others;
* losses that share a forward pass (Kovasznay's ``momentum_x``, ``momentum_y``,
  ``continuity``): the shared part (the network and its derivative fields) is traversed once per
  loss that reaches it.  That is the arithmetic of K separate cotangents, not overhead: counted
  on the default problem, ``Σ_k |graph_k| = 335`` nodes against ``|∪_k graph_k| = 260``, and
  1.07e9 against 7.56e8 matrix-product FLOPs in the backward passes (1.415×); measured, K plain
  backward passes take 1.345× the one of the sum (40.3 against 30.4 ms, forward pass 16.0 ms).
  An AutoBalance step there therefore costs at least ``1 + 0.345 × 30.4 / 47 ≈ 1.22``× an Adam
  step on the sum (47 ms) on this CPU, whatever the optimizer's own overhead: the ≤ 1.05 target
  is not reachable with exact per-loss gradients for Kovasznay.  The alternative, one batched
  vector-Jacobian product (``autograd.grad(stack(L), θ, eye(K), is_grads_batched=True)``),
  measured 2-3.6× the backward of the sum on Kovasznay at 16 to 2048 points and ~4× on the
  disjoint problems (vmap carries all K rows through every node, those only one loss reaches
  included, and adds copies), so it is not used; ``benchmarks/step_time.py --batched``
  measures it again (e.g. on a GPU), and its ``nodes Σ/∪``, ``flops Σ/∪`` and ``bound``
  columns recount the bound.

Every multi-loss optimizer and method takes its per-loss gradients from here:
:func:`per_loss_gradients` (one backward pass per loss), :func:`checked_gradients` (gradients the
caller computed), and :func:`gradient_matrix` (the ``K × P`` matrix ``G`` that pre-combine methods
weigh or aggregate).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.autograd.graph import Node
from torch.overrides import has_torch_function

from autobalance.errors import LossValueError

__all__ = [
    "GradientMatrix",
    "checked_gradients",
    "gradient_matrix",
    "graph_nodes",
    "loss_gradient",
    "per_loss_gradients",
    "retain_flags",
]

PerLossGradients = list[list[Tensor | None]]


@functools.cache
def _leaf_node_type() -> type:
    """The class of the nodes that accumulate into leaf tensors (``AccumulateGrad``)."""
    leaf = torch.zeros(1, requires_grad=True)
    node = (leaf * 1).grad_fn
    assert node is not None  # the product of a tensor that requires grad has a backward node
    return type(node.next_functions[0][0])


def graph_nodes(loss: Tensor) -> set[Node]:
    """The autograd nodes reachable from ``loss`` that may hold buffers.

    Leaf accumulators (``AccumulateGrad``) are left out: they hold no saved tensors, so sharing
    them (every loss reaches the same parameters) does not require retaining a graph.  The
    nodes themselves are returned (not their ids): Python wraps a node on demand and a wrapper
    lives only as long as the graph, so only the objects compare safely.
    """
    root = loss.grad_fn
    if root is None:
        return set()
    leaf_type = _leaf_node_type()
    seen: set[Node] = {root}
    stack = [root]
    pop, push, add = stack.pop, stack.append, seen.add
    while stack:
        for child, _ in pop().next_functions:
            if child is None or child in seen or type(child) is leaf_type:
                continue
            add(child)
            push(child)
    return seen


def retain_flags(losses: Sequence[Tensor]) -> list[bool]:
    """For each loss, whether its backward must retain the graph for a later loss.

    The graphs are walked from the last loss to the first; a walk does not descend into a node
    that a later loss's graph holds (its whole subgraph is there too), so a part shared by
    several losses is walked once, and the first loss's walk stops at its first shared node.
    """
    flags = [False] * len(losses)
    if len(losses) < 2:
        return flags
    # Every node walked so far and the loss whose walk reached it first: one dictionary lookup
    # per edge tells "new", "mine" and "a later loss's" apart.
    owner: dict[Node, int] = {}
    seen_by = owner.get
    leaf_type = _leaf_node_type()
    for k in range(len(losses) - 1, -1, -1):
        root = losses[k].grad_fn
        if root is None:
            continue
        if root in owner:
            flags[k] = True
            continue
        owner[root] = k
        stack = [root]
        pop, push = stack.pop, stack.append
        while stack:
            for child, _ in pop().next_functions:
                if child is None:
                    continue
                by = seen_by(child)
                if by is None:
                    if type(child) is not leaf_type:
                        owner[child] = k
                        push(child)
                elif by != k:
                    flags[k] = True
                    if k == 0:  # nothing walks after the first loss
                        return flags
    return flags


#: torch's C++ autograd engine (what ``torch.autograd.grad`` ends in), ``None`` if this torch
#: does not expose it; :func:`loss_gradient` then takes the public route.
_ENGINE = getattr(torch.autograd.Variable, "_execution_engine", None)
#: The logger ``torch.autograd.grad`` attaches per-node logging hooks for at level DEBUG.
_AUTOGRAD_LOG = logging.getLogger("torch.autograd.graph")


def loss_gradient(
    loss: Tensor, inputs: tuple[Tensor, ...], *, retain: bool
) -> tuple[Tensor | None, ...]:
    """``torch.autograd.grad(loss, inputs, retain_graph=retain, allow_unused=True)``, the same
    numbers, from one call into the autograd engine.

    For a one-element CPU loss (no tensor subclass, autograd logging off) the engine is called
    directly with the cotangent ``1``: what ``torch.autograd.grad`` does after its argument
    processing, which costs 15-50 µs a call (measured: 3-5% of a convection step with K = 3).
    Anything else (a GPU loss, whose backward runs on device threads that need the caller's
    context; a non-scalar or complex loss, which ``torch.autograd.grad`` refuses) goes through
    ``torch.autograd.grad`` itself.
    """
    if (
        _ENGINE is None
        or loss.numel() != 1
        or not loss.is_floating_point()
        or loss.device.type != "cpu"
        or has_torch_function((loss, *inputs))
        or _AUTOGRAD_LOG.isEnabledFor(logging.DEBUG)
    ):
        return torch.autograd.grad(loss, inputs, retain_graph=retain, allow_unused=True)
    return _ENGINE.run_backward(
        (loss,), (torch.ones_like(loss),), retain, False, inputs, True, False
    )


def per_loss_gradients(
    names: Sequence[str],
    losses: Sequence[Tensor],
    params: Sequence[Tensor],
    *,
    retain_graph: bool | None = None,
) -> PerLossGradients:
    """Return ``grads[k][j] = ∂L_k/∂θ_j`` (``None`` where loss k does not reach parameter j).

    Parameters with ``requires_grad=False`` get ``None``.  ``retain_graph=None`` decides per loss
    whether a later loss needs the graph; ``True`` / ``False`` force it.
    """
    inputs = tuple(p for p in params if p.requires_grad)
    positions = [j for j, p in enumerate(params) if p.requires_grad]
    flags = retain_flags(losses) if retain_graph is None else [retain_graph] * len(losses)
    result: PerLossGradients = []
    for name, loss, retain in zip(names, losses, flags, strict=True):
        if not loss.requires_grad or not inputs:
            raise LossValueError(
                f"loss {name!r} has no path to any parameter of this optimizer "
                "(it does not require grad; was it computed under torch.no_grad() or detached?)"
            )
        # A one-element loss of any shape gets the cotangent 1 (no reshape: it would add a node).
        grads = loss_gradient(loss, inputs, retain=retain)
        if all(g is None for g in grads):
            raise LossValueError(f"loss {name!r} has no path to any parameter of this optimizer")
        full: list[Tensor | None] = [None] * len(params)
        for j, g in zip(positions, grads, strict=True):
            full[j] = g
        result.append(full)
    return result


def checked_gradients(
    name: str, grads: Sequence[Tensor | None], params: Sequence[Tensor]
) -> list[Tensor | None]:
    """Validate gradients given for loss ``name``: one entry per parameter, ``None`` or its shape.

    Returns them detached and cast to each parameter's dtype; :class:`LossValueError` names the
    loss and the entry otherwise.
    """
    if isinstance(grads, Tensor) or not isinstance(grads, Sequence) or len(grads) != len(params):
        raise LossValueError(
            f"grads[{name!r}] must be a list with one entry (tensor or None) per parameter: "
            f"expected {len(params)}, got "
            f"{len(grads) if isinstance(grads, Sequence) else type(grads).__name__}"
        )
    checked: list[Tensor | None] = []
    for j, (g, p) in enumerate(zip(grads, params, strict=True)):
        if g is not None and (not isinstance(g, Tensor) or g.shape != p.shape):
            shape = tuple(g.shape) if isinstance(g, Tensor) else type(g).__name__
            raise LossValueError(
                f"grads[{name!r}][{j}] has shape {shape}; parameter {j} has shape {tuple(p.shape)}"
            )
        checked.append(None if g is None else g.detach().to(p.dtype))
    if all(g is None for g in checked):
        raise LossValueError(f"grads[{name!r}] is None for every parameter")
    return checked


@dataclass
class GradientMatrix:
    """Per-loss gradients of one step, flattened: ``matrix[k]`` is ``∇L_k`` over every parameter.

    Attributes:
        matrix: ``(K, P)`` tensor on the parameters' device (zeros where a loss does not reach a
            parameter); the parameters are laid end to end in optimizer order.
        reached: ``(K, n_params)`` bool: whether loss k reaches parameter j.
        sizes: number of elements of each parameter.
    """

    matrix: Tensor
    reached: Tensor
    sizes: list[int]

    def split(self, flat: Tensor) -> list[Tensor]:
        """Cut a ``(P,)`` vector back into per-parameter pieces (flat views)."""
        return list(flat.split(self.sizes))


def gradient_matrix(per_loss: PerLossGradients, params: Sequence[Tensor]) -> GradientMatrix:
    """Lay out :func:`per_loss_gradients` as a ``(K, P)`` matrix (zeros where ``None``).

    The matrix has one dtype: the promotion of the parameters' dtypes (float32 and float64
    parameters give a float64 matrix, never a lossy cast to the first one's).
    """
    sizes = [p.numel() for p in params]
    device = params[0].device
    dtype = functools.reduce(torch.promote_types, (p.dtype for p in params))
    zeros: dict[int, Tensor] = {}
    rows: list[Tensor] = []
    for grads in per_loss:
        for g, n in zip(grads, sizes, strict=True):
            if g is None:
                if n not in zeros:
                    zeros[n] = torch.zeros(n, device=device, dtype=dtype)
                rows.append(zeros[n])
            else:
                rows.append(g.reshape(-1).to(device=device, dtype=dtype))
    matrix = (
        torch.cat(rows).view(len(per_loss), sum(sizes))
        if rows
        else torch.zeros(0, 0, device=device, dtype=dtype)
    )
    reached = torch.tensor([[g is not None for g in grads] for grads in per_loss])
    return GradientMatrix(matrix=matrix, reached=reached, sizes=sizes)
