"""Checking an AutoBalance state dict against the optimizer that loads it, changing nothing.

:meth:`AutoBalance.load_state_dict` is transactional: :func:`checked_state` validates the whole
state dict first (rule, base, combine rule, loss layout, step count, parameter groups and their
hyperparameters, every parameter's state keys and tensor shapes) and raises
:class:`~autobalance.errors.StateDictError` naming what does not fit; only then is anything loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autobalance.errors import AutoBalanceError, StateDictError
from autobalance.optim.layout import StateLayout, resolve_layout
from autobalance.optim.weight_decay import is_decoupled
from autobalance.state_checks import (
    check_count,
    check_group_hyperparameters,
    check_names,
    describe_param,
    require_keys,
    saved_param_states,
)

if TYPE_CHECKING:
    from autobalance.optim.autobalance import AutoBalance

__all__ = ["STATE_DICT_KEY", "checked_state"]

#: The key of AutoBalance's own entry in its state dict.
STATE_DICT_KEY = "autobalance"


def checked_state(
    opt: AutoBalance, state_dict: Any
) -> tuple[dict[str, Any], StateLayout | None, int]:
    """The torch part, the loss layout and the step count of ``state_dict``, checked against
    this optimizer without changing it (see :meth:`AutoBalance.load_state_dict`)."""
    what = f"the {type(opt).__name__} state dict"
    require_keys(what, state_dict)
    if STATE_DICT_KEY not in state_dict:
        raise StateDictError("this state dict was not made by AutoBalance.state_dict()")
    meta = require_keys(f"{what}: {STATE_DICT_KEY!r}", state_dict[STATE_DICT_KEY])
    require_keys(f"{what}: {STATE_DICT_KEY!r}", meta, ("rule", "steps", "layout"))
    if meta["rule"] != opt._rule.name:
        raise StateDictError(
            f"the state dict holds {meta['rule']!r} states but this optimizer keeps "
            f"{opt._rule.name!r} states (different base optimizer?)"
        )
    if meta.get("base", opt._base.__name__) != opt._base.__name__:
        raise StateDictError(
            f"the state dict was saved by AutoBalance over {meta['base']} but this "
            f"optimizer's base optimizer is {opt._base.__name__}"
        )
    mine = None if opt._combine_rule is None else opt._combine_rule.name
    saved_rule = meta.get("combine_rule")
    if (saved_rule or {}).get("name") != mine:
        raise StateDictError(
            f"the state dict was saved with combine rule "
            f"{(saved_rule or {}).get('name')!r} but this optimizer uses {mine!r}"
        )
    steps = check_count(f"{what}: 'steps'", meta["steps"])
    layout = _checked_layout(opt, meta["layout"])
    torch_part = {k: v for k, v in state_dict.items() if k != STATE_DICT_KEY}
    per_param = saved_param_states(what, torch_part, opt.param_groups)
    saved_groups = torch_part["param_groups"]
    check_group_hyperparameters(what, opt._base, saved_groups)
    for i, group in enumerate(saved_groups):
        if is_decoupled(opt._base, group) != opt._rule.decoupled:
            raise StateDictError(
                f"{what}: parameter group {i} has decoupled_weight_decay="
                f"{not opt._rule.decoupled}, but this optimizer's is {opt._rule.decoupled}"
            )
    params = opt._all_params()
    if layout is None:
        if any(per_param.values()):
            raise StateDictError(
                f"{what} holds states of parameter(s) {sorted(per_param)} but no loss layout"
            )
        return torch_part, None, steps
    missing = [i for i in range(len(params)) if not per_param.get(i)]
    if missing:
        raise StateDictError(f"the state dict has no state for parameter(s) {missing}")
    group_of = [gi for gi, g in enumerate(saved_groups) for _ in g["params"]]
    for i, p in enumerate(params):
        opt._rule.check_state(
            f"{what}: {describe_param(i, p)}",
            p,
            per_param[i],
            {**saved_groups[group_of[i]], "params": None},
            layout.state_names,
        )
    return torch_part, layout, steps


def _checked_layout(opt: AutoBalance, saved: Any) -> StateLayout | None:
    """The layout this optimizer's ``groups``/``combine`` give the saved loss names, which
    must be the saved layout."""
    if saved is None:
        return None
    what = "the AutoBalance state dict's layout"
    require_keys(what, saved, ("loss_names", "state_names", "loss_to_state", "weights"))
    names = check_names(f"{what}: 'loss_names'", saved["loss_names"])
    if not names:
        raise StateDictError(f"{what} names no loss")
    try:
        layout = resolve_layout(names, opt._groups_for(names), opt._layout_combine)
    except StateDictError:
        raise
    except AutoBalanceError as exc:
        raise StateDictError(f"{what} does not fit this optimizer: {exc}") from None
    if layout.to_dict() != saved:
        raise StateDictError(
            f"the state dict was saved with states {saved['state_names']} (weights "
            f"{saved['weights']}) but this optimizer's groups/combine give states "
            f"{list(layout.state_names)} (weights {list(layout.weights)})"
        )
    return layout
