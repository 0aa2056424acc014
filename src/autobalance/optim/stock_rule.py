"""AutoBalance over any ``torch.optim.Optimizer``: one stock optimizer instance per state.

Each state ``s`` owns an instance of the base optimizer over *scratch* copies of the parameters.
To turn ``g_s`` into ``u_s``: copy ``θ`` into the scratch tensors, set their ``.grad`` to ``g_s``,
call the stock ``step()``, and read ``u_s = θ − θ_scratch``.  The arithmetic is then exactly the
base optimizer's, whatever it is (RMSprop, SGD with momentum, NAdam, ...).  Decoupled weight
decay is switched off in the instances and applied once by :class:`AutoBalance`.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from autobalance.errors import StateDictError
from autobalance.optim.buckets import Bucket
from autobalance.state_checks import base_state_kinds, check_base_state, require_keys

__all__ = ["StockRule", "StockStates"]


@dataclass
class StockStates:
    """Scratch parameters of one bucket and one base-optimizer instance per state."""

    scratch: Tensor  # (N,)
    views: list[Tensor]  # scratch views shaped like the parameters (the instances' params)
    optimizers: list[torch.optim.Optimizer]


class StockRule:
    """Per-state instances of an arbitrary base optimizer."""

    name = "stock"

    def __init__(self, base: type[torch.optim.Optimizer], decoupled: bool) -> None:
        self.base = base
        self.decoupled = decoupled
        self._accepted = set(inspect.signature(base.__init__).parameters) - {"self", "params"}
        self._kinds: dict[str, dict[str, bool] | None] = {}  # base_state_kinds by hyperparameters

    def _hyper(self, group: dict[str, Any]) -> dict[str, Any]:
        hyper = {k: v for k, v in group.items() if k != "params"}
        if self.decoupled and "weight_decay" in hyper:
            hyper["weight_decay"] = 0.0
        return hyper

    def init(
        self, bucket: Bucket, group: dict[str, Any], state_names: Sequence[str]
    ) -> tuple[StockStates, list[dict[str, Any]]]:
        """One fresh base-optimizer instance per state.

        Each parameter's torch-style state is ``{"per_state": {state name: stock state}}``.
        """
        per_param: list[dict[str, Any]] = [
            {"per_state": {name: {} for name in state_names}} for _ in bucket.params
        ]
        return self.load(bucket, group, per_param)

    def load(
        self, bucket: Bucket, group: dict[str, Any], per_param: Sequence[dict[str, Any]]
    ) -> tuple[StockStates, list[dict[str, Any]]]:
        """Instances over the stock states held in ``per_param`` (made by :meth:`init`)."""
        scratch = torch.zeros(bucket.numel, device=bucket.device, dtype=bucket.dtype)
        views = bucket.split(scratch)
        per_state = [list(state["per_state"].values()) for state in per_param]
        num_states = len(per_state[0]) if per_state else 0
        optimizers = []
        for s in range(num_states):
            hyper = self._hyper(group)
            opt = self.base(views, **{k: v for k, v in hyper.items() if k in self._accepted})
            opt.param_groups[0].update(hyper)
            for view, states in zip(views, per_state, strict=True):
                opt.state[view] = states[s]
            optimizers.append(opt)
        return StockStates(scratch=scratch, views=views, optimizers=optimizers), list(per_param)

    def check_state(
        self,
        what: str,
        param: Tensor,
        state: Mapping[str, Any],
        group: Mapping[str, Any],
        state_names: Sequence[str],
    ) -> None:
        """``{"per_state": {name: stock state}}`` with the states ``state_names`` in order, each
        with the keys and shapes the base optimizer keeps (:func:`base_state_kinds`)."""
        if [str(k) for k in state] != ["per_state"]:
            raise StateDictError(
                f"{what} has state keys {sorted(map(str, state))}, but AutoBalance over "
                f"{self.base.__name__} keeps ['per_state']"
            )
        per_state = require_keys(f"{what}: 'per_state'", state["per_state"])
        if list(per_state) != list(state_names):
            raise StateDictError(
                f"{what} holds the states {list(per_state)}, but this optimizer keeps "
                f"{list(state_names)}"
            )
        hyper = self._hyper(dict(group))
        key = repr(sorted(hyper.items()))
        if key not in self._kinds:
            self._kinds[key] = base_state_kinds(self.base, hyper)
        for name, stock in per_state.items():
            check_base_state(
                f"{what}, state {name!r}",
                require_keys(f"{what}, state {name!r}", stock),
                param,
                self._kinds[key],
                self.base.__name__,
            )

    def updates(
        self,
        bucket: Bucket,
        states: StockStates,
        grads: Tensor,
        reached: Tensor,
        group: dict[str, Any],
    ) -> Tensor:
        """Step every state's stock optimizer on its gradient row; return the ``(S, N)`` updates."""
        params = bucket.param_vector()
        grads = grads.clone()  # a stock optimizer may modify .grad in place
        updates = torch.empty_like(grads)
        hyper = self._hyper(group)
        reached_rows = reached.tolist()
        with torch.no_grad():
            for s, opt in enumerate(states.optimizers):
                opt.param_groups[0].update(hyper)
                states.scratch.copy_(params)
                for view, grad, hit in zip(
                    states.views, bucket.split(grads[s]), reached_rows[s], strict=True
                ):
                    view.grad = grad if hit else None
                opt.step()
                torch.sub(params, states.scratch, out=updates[s])
                for view in states.views:
                    view.grad = None
        return updates
