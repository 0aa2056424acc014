"""How the per-loss states of one bucket are kept and advanced: one small protocol, two rules.

:class:`~autobalance.optim.adam_rule.AdamRule` keeps Adam/AdamW moments of every state in flat
``(S, N)`` buffers and advances them with one vectorised kernel;
:class:`~autobalance.optim.stock_rule.StockRule` runs one stock instance of any other base
optimizer per state.  :class:`~autobalance.AutoBalance` sees only :class:`StateRule`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor

from autobalance.errors import HyperparameterError
from autobalance.optim.adam_rule import AdamRule
from autobalance.optim.buckets import Bucket
from autobalance.optim.stock_rule import StockRule
from autobalance.optim.weight_decay import is_decoupled

__all__ = ["StateRule", "select_rule"]

#: Bases that the flat Adam rule reproduces exactly.
NATIVE_BASES = (torch.optim.Adam, torch.optim.AdamW)


class StateRule(Protocol):
    """The per-state update of one base optimizer over the buckets of an AutoBalance."""

    #: Saved in state dicts: a state dict is loaded only by the rule that wrote it.
    name: str
    #: Whether weight decay is decoupled (applied once per step by AutoBalance, not per state).
    decoupled: bool

    def init(
        self, bucket: Bucket, group: dict[str, Any], state_names: Sequence[str]
    ) -> tuple[Any, list[dict[str, Any]]]:
        """Fresh states of ``bucket``: the rule's own state and torch-style per-parameter dicts
        (what ``optimizer.state[p]`` holds, so ``state_dict()`` saves it)."""
        ...

    def load(
        self, bucket: Bucket, group: dict[str, Any], per_param: Sequence[dict[str, Any]]
    ) -> tuple[Any, list[dict[str, Any]]]:
        """The states of ``bucket`` from the per-parameter dicts ``load_state_dict`` produced."""
        ...

    def check_state(
        self,
        what: str,
        param: Tensor,
        state: Mapping[str, Any],
        group: Mapping[str, Any],
        state_names: Sequence[str],
    ) -> None:
        """Raise :class:`~autobalance.errors.StateDictError` unless ``state`` (one parameter's
        entry of a state dict, ``what`` names it) holds the states ``state_names`` of ``param``
        with the keys and tensor shapes this rule keeps.  Changes nothing."""
        ...

    def updates(
        self, bucket: Bucket, state: Any, grads: Tensor, reached: Tensor, group: dict[str, Any]
    ) -> Tensor:
        """Advance every state with its ``(S, N)`` gradient rows; return the ``(S, N)`` updates.

        ``reached`` (``(S, P)`` bool, CPU) says which parameters each state's gradient reaches;
        the others keep their state and get a zero update.
        """
        ...


def select_rule(
    base: type[torch.optim.Optimizer], param_groups: Sequence[dict[str, Any]]
) -> StateRule:
    """The flat Adam rule for Adam/AdamW on floating parameters, else the stock rule."""
    decoupled = {is_decoupled(base, g) for g in param_groups}
    if len(decoupled) > 1:
        raise HyperparameterError("all param groups must agree on decoupled_weight_decay")
    native = (
        base in NATIVE_BASES
        and all(not g.get("differentiable", False) for g in param_groups)
        and all(p.is_floating_point() for g in param_groups for p in g["params"])
    )
    (decoupled_decay,) = decoupled
    return AdamRule(decoupled_decay) if native else StockRule(base, decoupled_decay)
