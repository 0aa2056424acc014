"""One optimizer step for every seed of a batch, where the method's arithmetic is elementwise.

The general batched step (:mod:`autobalance.seeds.training`) hands each seed's own balancer its
slice of the stacked gradients: S optimizer steps, each a few dozen small tensor operations, a
tenth of a CPU step at S = 8 and S rounds of kernel launches on a GPU.  For the methods below the
update of a coordinate depends only on that coordinate's gradient and state and on scalars shared
by the seeds (learning rate, step count), so one update of the stacked tensors ``θ[s] = θ_s``
(``(S, *shape)``, eq. (1) of :mod:`autobalance.seeds.stacked`) does exactly the arithmetic of the
S separate updates:

* **Adam, AdamW on the summed loss** (:class:`~autobalance.methods.single.SummedLoss` over
  ``torch.optim.Adam`` / ``AdamW``): one ``torch.optim`` instance of the same class and
  hyperparameters over the stacked parameters, fed ``∇θ Σ_s Σ_k L_k^(s)`` (its moments stacked
  the same way);
* **AutoBalance over Adam/AdamW** with fixed weights (``"sum"``, ``"mean"``, a mapping), one state
  per loss: :func:`~autobalance.optim.adam_rule.multi_state_adam` on ``(K, S·N)`` buffers (row
  ``k``: loss ``k``'s moments, seed ``s`` at columns ``s·N … (s+1)·N``), ``θ ← θ(1 − lr·λ) − Σ_k
  w_k u_k``.  Its per-seed statistics (gradient norms, cosines, update norms) come from per-seed
  Gram matrices, batched matrix products ``G_s G_sᵀ`` and ``Z_s [G_s; Z_s]ᵀ`` with
  ``Z_s = [u_1; …; u_K; Δ]`` of seed ``s``.

Each seed's balancer stays the source of its files: the fused state starts from the balancers'
``state_dict`` after the first step (when the loss names and layout are fixed) and is written back
with ``load_state_dict`` (:meth:`FusedSeeds.write_back`) before every checkpoint and at the end;
the seeds' networks get their parameters (:meth:`FusedSeeds.write_models`) before every
evaluation.  A step whose loss or gradient is NaN/Inf for any seed is not taken here
(:meth:`FusedSeeds.step` returns ``None``): the caller writes back and lets every seed's own
balancer take it (its ``nonfinite`` policy, a failure of that seed alone).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from autobalance.methods.base import CombineResult
from autobalance.methods.single import SummedLoss
from autobalance.optim.adam_rule import multi_state_adam
from autobalance.optim.autobalance import AutoBalance
from autobalance.optim.state_check import STATE_DICT_KEY
from autobalance.step_info import StepInfo, build_step_info, joint_gram

__all__ = ["FusedSeeds", "fuse_seeds", "may_fuse"]

_ADAM_FAMILY = (torch.optim.Adam, torch.optim.AdamW)


def may_fuse(balancer: Any) -> bool:
    """Whether ``balancer``'s method is one that :func:`fuse_seeds` fuses (it may still refuse
    a particular set of seeds: see there)."""
    if isinstance(balancer, SummedLoss):
        return type(balancer.optimizer) in _ADAM_FAMILY
    return isinstance(balancer, AutoBalance) and balancer.base in _ADAM_FAMILY


def fuse_seeds(balancers: Sequence[Any]) -> FusedSeeds | None:
    """The fused optimizer of ``balancers`` (one per seed, same method), or ``None`` when their
    method is not elementwise (module docstring), they have not taken a step yet, or their step
    counts or states differ in a way one update cannot carry."""
    first = balancers[0]
    if not may_fuse(first) or any(type(b) is not type(first) for b in balancers):
        return None
    if any(b.steps_taken < 1 for b in balancers) or len({b.steps_taken for b in balancers}) > 1:
        return None
    if isinstance(first, SummedLoss):
        engine: FusedSeeds = _FusedSummed(balancers)
    elif _fixed_weights(first):
        engine = _FusedAutoBalance(balancers)
    else:
        return None
    return engine if engine.ready else None


def _fixed_weights(balancer: AutoBalance) -> bool:
    """One state per loss, weights fixed, no AMSGrad, one process, one parameter group."""
    layout = balancer.layout
    return (
        layout is not None
        and layout.is_identity
        and balancer._combine_rule is None  # a combine rule reads all coordinates at once
        and balancer._front.ranks is None  # one process
        and len(balancer.param_groups) == 1
        and not balancer.param_groups[0].get("amsgrad", False)
        and not balancer.param_groups[0].get("maximize", False)
    )


class FusedSeeds:
    """The stacked parameters ``θ_i`` (``(S, *shape)``, one per parameter of the networks) and
    one optimizer state for the seeds ``balancers`` (module docstring)."""

    def __init__(self, balancers: Sequence[Any]) -> None:
        self.balancers = list(balancers)
        self.seeds = len(self.balancers)
        self.params = [
            [p for g in b.optimizer.param_groups for p in g["params"]] for b in self.balancers
        ]
        with torch.no_grad():
            self.stacked = [
                torch.stack([ps[i].detach() for ps in self.params])
                for i in range(len(self.params[0]))
            ]
        self.steps = self.balancers[0].steps_taken
        self.ready = True
        self._models_stale = False
        #: The loss names, in the order of the per-loss rows (set by each fused kind).
        self.names: list[str] = []

    # ----------------------------------------------------------------------------- protocol
    def step(
        self, grads: Mapping[str, Sequence[Tensor | None]], values: Mapping[str, Tensor]
    ) -> list[StepInfo] | None:
        """One step of every seed from the stacked gradients ``grads`` (per loss, one
        ``(S, *shape)`` tensor per parameter) and the per-seed losses ``values`` (``(S,)`` per
        loss); ``None`` (nothing changed) when a loss or gradient is NaN/Inf for some seed."""
        per_seed = self._finite_loss_values(values)
        if per_seed is None:
            return None
        return self._step(grads, per_seed)

    def _step(
        self, grads: Mapping[str, Sequence[Tensor | None]], per_seed: list[dict[str, float]]
    ) -> list[StepInfo] | None:
        """The fused kind's step, the per-seed loss values already checked finite."""
        raise NotImplementedError

    def write_models(self) -> None:
        """Copy each seed's slice of the stacked parameters into its network."""
        if not self._models_stale:
            return
        with torch.no_grad():
            for s, params in enumerate(self.params):
                for p, theta in zip(params, self.stacked, strict=True):
                    p.copy_(theta[s])
        self._models_stale = False

    def write_back(self) -> None:
        """Write the networks and every seed's balancer state (``load_state_dict``)."""
        self.write_models()
        for s, balancer in enumerate(self.balancers):
            balancer.load_state_dict(self._state_dict(s, balancer.state_dict()))

    def _state_dict(self, seed: int, template: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def _lr(balancer: Any) -> float:
        return float(balancer.optimizer.param_groups[0]["lr"])

    def _finite_loss_values(self, values: Mapping[str, Tensor]) -> list[dict[str, float]] | None:
        """Per seed, ``{name: value}`` in ``self.names`` order (one device synchronisation), or
        ``None`` when a value is NaN or ±∞ (the seeds' own balancers then take the step)."""
        table = torch.stack([values[n].detach() for n in self.names]).tolist()
        per_seed = [
            {n: float(table[k][s]) for k, n in enumerate(self.names)} for s in range(len(table[0]))
        ]
        if not all(math.isfinite(v) for row in per_seed for v in row.values()):
            return None
        return per_seed


class _FusedSummed(FusedSeeds):
    """Adam / AdamW on the summed loss: one ``torch.optim`` instance over the stacked tensors."""

    def __init__(self, balancers: Sequence[Any]) -> None:
        super().__init__(balancers)
        first = balancers[0].optimizer
        group = {k: v for k, v in first.param_groups[0].items() if k != "params"}
        if len(first.param_groups) != 1 or balancers[0].process_group is not None:
            self.ready = False
            return
        self.optimizer = type(first)([dict(group, params=self.stacked)])
        self.names = list(balancers[0].loss_names or [])
        self.state_name = type(balancers[0]).state_name
        states = [b.optimizer.state_dict()["state"] for b in balancers]
        for i, theta in enumerate(self.stacked):
            if not all(i in st for st in states):
                self.ready = self.ready and not any(i in st for st in states)
                continue
            fused: dict[str, Tensor] = {}
            for key, value in states[0][i].items():
                parts = [st[i][key] for st in states]
                if key == "step":
                    if any(not torch.equal(p, value) for p in parts):
                        self.ready = False
                    fused[key] = value.clone()
                else:
                    fused[key] = torch.stack(parts)
            self.optimizer.state[theta] = fused

    def _step(
        self, grads: Mapping[str, Sequence[Tensor | None]], per_seed: list[dict[str, float]]
    ) -> list[StepInfo] | None:
        # the summed loss's gradient rides on the first loss of ``grads`` (its others: zeros)
        total = next(iter(grads.values()))
        self.optimizer.param_groups[0]["lr"] = self._lr(self.balancers[0])
        for theta, g in zip(self.stacked, total, strict=True):
            theta.grad = g
        self.optimizer.step()
        for theta in self.stacked:
            theta.grad = None
        self.steps += 1
        self._models_stale = True
        result = CombineResult(backward_passes=1, needs_grad_matrix=False)
        return [result.step_info(self.steps, row, self.state_name) for row in per_seed]

    def _state_dict(self, seed: int, template: dict[str, Any]) -> dict[str, Any]:
        state = {}
        for i, theta in enumerate(self.stacked):
            fused = self.optimizer.state.get(theta)
            if fused:
                state[i] = {
                    k: v.clone() if k == "step" else v[seed].clone() for k, v in fused.items()
                }
        template["optimizer"]["state"] = state
        template["steps"] = self.steps
        return template


class _FusedAutoBalance(FusedSeeds):
    """AutoBalance over Adam/AdamW with fixed weights, on ``(K, S, N)`` flat buffers."""

    def __init__(self, balancers: Sequence[Any]) -> None:
        super().__init__(balancers)
        first: AutoBalance = balancers[0]
        layout = first.layout
        assert layout is not None
        self.layout = layout
        self.names = list(layout.loss_names)
        self.sizes = [p.numel() for p in self.params[0]]
        self.decoupled = first.base is torch.optim.AdamW
        states = [b.state_dict()["state"] for b in balancers]
        k, n = len(self.names), sum(self.sizes)
        if any(len(st) != len(self.sizes) for st in states):
            self.ready = False
            return

        def flat(st: Mapping[int, Mapping[str, Tensor]], key: str) -> Tensor:
            return torch.cat([st[i][key].reshape(k, -1) for i in range(len(self.sizes))], dim=1)

        self.exp_avg = torch.stack([flat(st, "exp_avg") for st in states], dim=1).reshape(k, -1)
        self.exp_avg_sq = torch.stack([flat(st, "exp_avg_sq") for st in states], dim=1)
        self.exp_avg_sq = self.exp_avg_sq.reshape(k, -1)
        counts = [
            torch.stack([st[i]["step"].to("cpu", torch.float32) for i in range(len(self.sizes))], 1)
            for st in states
        ]
        self.counts = counts[0].clone()  # (K, P): equal for every seed and every parameter
        if any(not torch.equal(c, self.counts) for c in counts) or bool(
            (self.counts != self.counts[:, :1]).any()
        ):
            self.ready = False
        self.reached = torch.ones(k, len(self.sizes), dtype=torch.bool)
        assert self.exp_avg.shape == (k, self.seeds * n)

    def _matrix(self, grads: Mapping[str, Sequence[Tensor | None]]) -> Tensor | None:
        """``(K, S, N)``: row ``k`` holds every seed's flat gradient of loss ``k``."""
        rows = []
        for name in self.names:
            pieces = grads[name]
            if any(g is None for g in pieces):
                return None  # a loss that misses a parameter: the seeds' own balancers handle it
            rows.append(torch.cat([g.reshape(self.seeds, -1) for g in pieces], dim=1))  # type: ignore[union-attr]
        return torch.stack(rows)

    def _step(
        self, grads: Mapping[str, Sequence[Tensor | None]], per_seed: list[dict[str, float]]
    ) -> list[StepInfo] | None:
        with torch.no_grad():
            matrix = self._matrix(grads)
            if matrix is None:
                return None
            by_seed = matrix.transpose(0, 1)  # (S, K, N)
            grad_gram = torch.bmm(by_seed, by_seed.transpose(1, 2)).to(torch.float64).cpu()
            if not bool(torch.isfinite(grad_gram.diagonal(dim1=1, dim2=2)).all()):
                return None
            infos = self._apply(matrix, by_seed, grad_gram, per_seed)
        self._models_stale = True
        return infos

    def _apply(
        self, matrix: Tensor, by_seed: Tensor, grad_gram: Tensor, per_seed: list[dict[str, float]]
    ) -> list[StepInfo]:
        """The update of :meth:`AutoBalance._apply` on the stacked buffers, and each seed's info."""
        k, s = len(self.names), self.seeds
        group = self.balancers[0].param_groups[0]
        lr = self._lr(self.balancers[0])
        beta1, beta2 = (float(b) for b in group["betas"])
        weight_decay = float(group.get("weight_decay", 0.0))
        coupled = 0.0 if self.decoupled else weight_decay
        flat_params = None
        if coupled != 0:
            flat_params = torch.cat([t.reshape(s, -1) for t in self.stacked], dim=1).reshape(-1)
        updates = multi_state_adam(
            matrix.reshape(k, -1),
            self.exp_avg,
            self.exp_avg_sq,
            None,
            self.counts,
            self.reached,
            sizes=self.sizes,
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            eps=float(group["eps"]),
            weight_decay=coupled,
            params=flat_params,
        )
        layout = self.layout
        if layout.unit_weights:
            delta = updates.sum(dim=0)
        else:
            delta = layout.weight_vector.to(updates) @ updates
        if self.decoupled and weight_decay != 0:
            torch._foreach_mul_(self.stacked, 1 - lr * weight_decay)
        pieces = delta.view(s, -1).split(self.sizes, dim=1)
        torch._foreach_sub_(
            self.stacked,
            [p.reshape(t.shape) for p, t in zip(pieces, self.stacked, strict=True)],
        )
        self.steps += 1
        update_gram = None
        if any(b.statistics for b in self.balancers):  # AutoBalance (or MultiAdam)
            rows = torch.cat([updates.view(k, s, -1), delta.view(1, s, -1)]).transpose(0, 1)
            products = torch.cat(
                [torch.bmm(rows, by_seed.transpose(1, 2)), torch.bmm(rows, rows.transpose(1, 2))],
                dim=2,
            )
            update_gram = products.to(torch.float64).cpu()
        return [
            build_step_info(
                self.steps,
                per_seed[i],
                gram=None if update_gram is None else joint_gram(grad_gram[i], update_gram[i]),
                num_updates=layout.num_states,
                combined="update",
                update_of_loss=layout.loss_to_state,
                states=layout.owners,
                backward_passes=k,
                needs_grad_matrix=True,
            )
            for i in range(s)
        ]

    def _state_dict(self, seed: int, template: dict[str, Any]) -> dict[str, Any]:
        k = len(self.names)
        exp_avg = self.exp_avg.view(k, self.seeds, -1)[:, seed].split(self.sizes, dim=1)
        exp_avg_sq = self.exp_avg_sq.view(k, self.seeds, -1)[:, seed].split(self.sizes, dim=1)
        for i, (m, v, p) in enumerate(zip(exp_avg, exp_avg_sq, self.params[seed], strict=True)):
            template["state"][i] = {
                "step": self.counts[:, i].clone(),
                "exp_avg": m.reshape(k, *p.shape).clone(),
                "exp_avg_sq": v.reshape(k, *p.shape).clone(),
            }
        template[STATE_DICT_KEY]["steps"] = self.steps
        return template
