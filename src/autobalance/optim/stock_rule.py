"""AutoBalance over any ``torch.optim.Optimizer``: one stock optimizer instance per state.

Each state ``s`` owns an instance of the base optimizer over *scratch* copies of the parameters.
To turn ``g_s`` into ``u_s``: copy ``θ`` into the scratch tensors, set their ``.grad`` to ``g_s``,
call the stock ``step()``, and read ``u_s = θ − θ_scratch``.  The arithmetic is then exactly the
base optimizer's, whatever it is (RMSprop, SGD with momentum, NAdam, ...).  Decoupled weight
decay is switched off in the instances and applied once by :class:`AutoBalance`.

A base optimizer may keep state in its parameter group as well (``pytorch_optimizer``'s SOAP
counts its steps in ``param_groups[0]["step"]``).  Those entries (every key of an instance's group
that is not a hyperparameter) are copied after each step into each parameter's state, under
``"groups"`` (``{state name: {key: value}}``), so they are checkpointed with the rest and put back
into the instances when a state dict is loaded; without them a resumed run would restart such a
counter (SOAP would skip a step and redo its bias correction).
"""

from __future__ import annotations

import copy
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
    names: list[str]  # the state of each instance
    per_param: list[dict[str, Any]]  # the torch-style states (they keep the groups' entries)


class StockRule:
    """Per-state instances of an arbitrary base optimizer."""

    name = "stock"

    def __init__(self, base: type[torch.optim.Optimizer], decoupled: bool) -> None:
        self.base = base
        self.decoupled = decoupled
        self._accepted = set(inspect.signature(base.__init__).parameters) - {"self", "params"}
        #: base_state_kinds by hyperparameters and parameter dimensions
        self._kinds: dict[tuple[str, int], dict[str, bool | None] | None] = {}

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
        names = [str(n) for n in per_param[0]["per_state"]] if per_param else []
        saved_groups = per_param[0].get("groups", {}) if per_param else {}
        optimizers = []
        for s, name in enumerate(names):
            hyper = self._hyper(group)
            opt = self.base(views, **{k: v for k, v in hyper.items() if k in self._accepted})
            opt.param_groups[0].update(hyper)
            opt.param_groups[0].update(saved_groups.get(name, {}))
            for view, states in zip(views, per_state, strict=True):
                opt.state[view] = states[s]
            optimizers.append(opt)
        stock = StockStates(scratch, views, optimizers, names, list(per_param))
        return stock, list(per_param)

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
        if [str(k) for k in state if k != "groups"] != ["per_state"]:
            raise StateDictError(
                f"{what} has state keys {sorted(map(str, state))}, but AutoBalance over "
                f"{self.base.__name__} keeps ['per_state'] (and 'groups')"
            )
        if "groups" in state and not (
            isinstance(state["groups"], Mapping)
            and set(state["groups"]) <= set(state_names)
            and all(isinstance(v, Mapping) for v in state["groups"].values())
        ):
            raise StateDictError(
                f"{what}: 'groups' must map state names {list(state_names)} to tables"
            )
        per_state = require_keys(f"{what}: 'per_state'", state["per_state"])
        if list(per_state) != list(state_names):
            raise StateDictError(
                f"{what} holds the states {list(per_state)}, but this optimizer keeps "
                f"{list(state_names)}"
            )
        hyper = self._hyper(dict(group))
        key = (repr(sorted(hyper.items())), param.dim())
        if key not in self._kinds:
            self._kinds[key] = base_state_kinds(self.base, hyper, param.dim())
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
                extras = {
                    k: v for k, v in opt.param_groups[0].items() if k != "params" and k not in hyper
                }
                if extras:  # group-level state of the base (SOAP's step counter): checkpointed
                    for state in states.per_param:
                        state.setdefault("groups", {})[states.names[s]] = copy.deepcopy(extras)
                torch.sub(params, states.scratch, out=updates[s])
                for view in states.views:
                    view.grad = None
        return updates
