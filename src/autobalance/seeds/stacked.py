"""S networks of one architecture evaluated as one batched network, on interleaved point rows.

Seeds are *interleaved* along the point axis: row ``i·S + s`` of a batched point set is point
``i`` of seed ``s`` (:func:`interleave`).  A problem's losses then run unchanged on the batched
points: every operation they apply is row-wise (derivatives with respect to the input columns,
residuals, ``cat`` of point sets and splits at a row count), and a concatenation or a split of
interleaved tensors whose row counts are multiples of ``S`` is again interleaved, so row ``r``
always belongs to seed ``r mod S`` (a split at ``n = S·m`` rows keeps the first ``m`` points of
every seed, as the separate run keeps its first ``m``).

:class:`StackedModel` is the batched network: the parameters of the S networks stacked along a
leading seed axis (``θ[s] = θ_s``, fresh leaves every step), evaluated with batched matrix
products for the plain tanh MLP (``h ← tanh(h W_sᵀ + b_s)``, ``torch.baddbmm``) and with
``torch.func.vmap`` over ``torch.func.functional_call`` for any other network (embeddings,
random weight factorisation, modified MLP, PirateNet).  The seeds share no parameter, so

    ∂/∂θ Σ_s L_k^(s)  =  stack_s ∂L_k^(s)/∂θ_s                                       (1)

and one backward pass per loss gives every seed's gradient of that loss.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

__all__ = ["StackedModel", "interleave", "per_seed_losses"]


def interleave(batches: Sequence[Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """The point sets of S seeds as one batch: row ``i·S + s`` is point ``i`` of seed ``s``.

    Raises:
        ValueError: the seeds' point sets differ in names or shapes.
    """
    names = list(batches[0])
    for s, batch in enumerate(batches):
        if list(batch) != names:
            raise ValueError(f"seed {s}'s point sets {list(batch)} differ from seed 0's {names}")
    out: dict[str, Tensor] = {}
    for name in names:
        shapes = {tuple(b[name].shape) for b in batches}
        if len(shapes) != 1:
            raise ValueError(f"the seeds' {name!r} point sets differ in shape: {sorted(shapes)}")
        stacked = torch.stack([b[name] for b in batches], dim=1)  # (N, S, d)
        out[name] = stacked.reshape(-1, *stacked.shape[2:])
    return out


def per_seed_losses(pointwise: Mapping[str, Tensor], seeds: int) -> dict[str, Tensor]:
    """``L_k^(s) = mean_i r_k[i·S + s]²`` (every column), a ``(S,)`` vector per loss: the
    mean-square loss each seed's separate run would compute from its own rows.

    Raises:
        ValueError: a pointwise term whose row count is not a multiple of ``seeds``.
    """
    out: dict[str, Tensor] = {}
    for name, r in pointwise.items():
        if r.dim() == 0 or r.shape[0] % seeds:
            raise ValueError(
                f"the pointwise term of loss {name!r} has shape {tuple(r.shape)}: its rows are "
                f"not {seeds} interleaved seeds"
            )
        by_seed = r.reshape(r.shape[0] // seeds, seeds, -1).transpose(0, 1)  # (S, N, C)
        out[name] = by_seed.pow(2).mean(dim=(1, 2))
    return out


def _plain_mlp_layers(model: nn.Module) -> list[nn.Linear] | None:
    """The linear layers of an :class:`~autobalance.nets.mlp.MLP` that is ``Linear → Tanh → …
    → Linear`` on an identity embedding (the default MLP); ``None`` for any other network."""
    from autobalance.nets.mlp import MLP

    if type(model) is not MLP or not isinstance(model.embedding, nn.Identity):
        return None
    modules = list(model.layers)
    linears = modules[0::2]
    plain = all(type(m) is nn.Linear for m in linears) and all(
        type(m) is nn.Tanh for m in modules[1::2]
    )
    if not plain or len(modules) % 2 == 0 or len(list(model.parameters())) != 2 * len(linears):
        return None
    return linears  # type: ignore[return-value]


class StackedModel:
    """The networks ``models`` (one per seed, same architecture) as one callable on interleaved
    rows (:func:`interleave`): ``(S·N, in) → (S·N, out)``, row ``i·S + s`` through network ``s``.

    The stacked parameters :attr:`leaves` (``(S, *shape)``, one per parameter of the networks,
    in ``named_parameters`` order) are fresh leaves that require grad: gradients with respect to
    them are the seeds' gradients stacked, eq. (1).  Built anew each step, from the per-seed
    networks (what the per-seed optimizers update) or from ``leaves``, stacked parameters kept
    by one optimizer of all seeds (:mod:`autobalance.seeds.fused`; the leaves share their
    storage, so that optimizer's in-place update is the next step's parameters).

    Raises:
        ValueError: the networks differ in architecture (parameter names or shapes).
    """

    def __init__(self, models: Sequence[nn.Module], leaves: Sequence[Tensor] | None = None) -> None:
        if not models:
            raise ValueError("StackedModel needs at least one network")
        named = [dict(m.named_parameters()) for m in models]
        shapes = [{k: tuple(v.shape) for k, v in n.items()} for n in named]
        for s, shape in enumerate(shapes):
            if shape != shapes[0]:
                raise ValueError(f"network {s} differs in architecture from network 0")
        self.seeds = len(models)
        self.names = list(named[0])
        with torch.no_grad():
            if leaves is None:
                stacked = [torch.stack([n[k].detach() for n in named]) for k in self.names]
            else:
                stacked = [t.detach() for t in leaves]
                if [tuple(t.shape) for t in stacked] != [
                    (self.seeds, *named[0][k].shape) for k in self.names
                ]:
                    raise ValueError("the given stacked parameters do not fit the networks")
            self.leaves = [t.requires_grad_() for t in stacked]
            buffers = [dict(m.named_buffers()) for m in models]
            self.buffers = {k: torch.stack([b[k] for b in buffers]) for k in buffers[0]}
        linears = _plain_mlp_layers(models[0])
        self._bmm = linears is not None
        if not self._bmm:
            self._skeleton = copy.deepcopy(models[0]).to("meta")

    @property
    def uses_bmm(self) -> bool:
        """Whether the batched matrix-product path (plain MLP) is used (else ``vmap``)."""
        return self._bmm

    def __call__(self, x: Tensor) -> Tensor:
        s = self.seeds
        if x.dim() != 2 or x.shape[0] % s:
            raise ValueError(
                f"StackedModel of {s} seeds expects (S·N, in_dim) interleaved rows, got "
                f"{tuple(x.shape)}"
            )
        h = x.reshape(-1, s, x.shape[1]).transpose(0, 1)  # (S, N, in)
        h = self._bmm_forward(h) if self._bmm else self._vmap_forward(h)
        return h.transpose(0, 1).reshape(x.shape[0], h.shape[-1])

    def _bmm_forward(self, h: Tensor) -> Tensor:
        """``h ← tanh(baddbmm(b, h, Wᵀ))`` per hidden layer, linear output (eq. of the MLP)."""
        pairs = list(zip(self.leaves[0::2], self.leaves[1::2], strict=True))
        for i, (weight, bias) in enumerate(pairs):
            h = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
            if i < len(pairs) - 1:
                h = torch.tanh(h)
        return h

    def _vmap_forward(self, h: Tensor) -> Tensor:
        skeleton = self._skeleton

        def one(params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(skeleton, (params, buffers), (x,))

        params = dict(zip(self.names, self.leaves, strict=True))
        return vmap(one)(params, self.buffers, h)
