"""Checks of a state dict against the optimizer or method that loads it, before anything changes.

Every ``load_state_dict`` of the library is transactional: it first checks the whole state dict
against the object that loads it, then applies it, so a state dict that does not fit raises
:class:`~autobalance.errors.StateDictError` and leaves the object exactly as it was.  The checks:

* structure: the keys each part must have (:func:`require_keys`), the loss names and the step
  count (:func:`check_names`, :func:`check_count`);
* parameters: the number and sizes of the parameter groups, and which saved state belongs to
  which parameter, as ``torch.optim.Optimizer.load_state_dict`` pairs them
  (:func:`saved_param_states`); the hyperparameters of every saved group, as the base
  optimizer's constructor checks them (:func:`check_group_hyperparameters`);
* tensors: the key set of every parameter's state as the base optimizer keeps it, and the shape
  and dtype of every tensor in it (:func:`base_state_kinds`, :func:`check_base_state`,
  :func:`check_tensor`), named by the parameter's index in optimizer order and its shape;
* per-loss data of weightings and aggregators: one value per loss (:func:`check_per_loss`).

:func:`restore_on_error` is the safety net around the apply phase: should applying a checked
state still fail, the object is put back and the failure reported as a ``StateDictError``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from autobalance.errors import AutoBalanceError, StateDictError
from autobalance.optim.bases import make_base_optimizer

__all__ = [
    "base_state_kinds",
    "check_base_state",
    "check_count",
    "check_group_hyperparameters",
    "check_names",
    "check_per_loss",
    "check_tensor",
    "describe_param",
    "require_keys",
    "restore_on_error",
    "saved_param_states",
]

#: Constructor switches that change how a base optimizer computes, not what state it keeps;
#: turned off for the probe step of :func:`base_state_kinds` (some need a GPU).
_PROBE_SWITCHES = ("foreach", "fused", "capturable", "differentiable")


def require_keys(what: str, value: Any, keys: Iterable[str] = ()) -> Mapping[str, Any]:
    """``value`` if it is a mapping holding every key of ``keys``, else :class:`StateDictError`."""
    if not isinstance(value, Mapping):
        raise StateDictError(f"{what} must be a mapping, got {type(value).__name__}")
    missing = [k for k in keys if k not in value]
    if missing:
        has = ", ".join(map(repr, value)) or "none"
        raise StateDictError(f"{what} lacks {', '.join(map(repr, missing))} (its keys: {has})")
    return value


def check_names(what: str, value: Any) -> list[str] | None:
    """Loss names: ``None`` (before the first step) or a list of distinct strings."""
    if value is None:
        return None
    if not isinstance(value, list | tuple) or not all(isinstance(n, str) for n in value):
        raise StateDictError(f"{what} must be a list of loss names, got {value!r}")
    if len(set(value)) != len(value):
        raise StateDictError(f"{what} repeats a loss name: {list(value)}")
    return list(value)


def check_count(what: str, value: Any) -> int:
    """A count of steps: an integer ``>= 0`` (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StateDictError(f"{what} must be an integer >= 0, got {value!r}")
    return value


def describe_param(index: int, param: Tensor) -> str:
    """``"parameter 3 (shape (12, 2))"``: a parameter by its index in optimizer order."""
    return f"parameter {index} (shape {tuple(param.shape)})"


def check_tensor(what: str, value: Any, shape: Sequence[int], *, floating: bool = True) -> Tensor:
    """``value`` if it is a tensor of ``shape`` (floating point unless ``floating=False``)."""
    need = tuple(shape)
    if not isinstance(value, Tensor):
        raise StateDictError(f"{what} must be a tensor of shape {need}, got {type(value).__name__}")
    if tuple(value.shape) != need:
        raise StateDictError(
            f"{what} has shape {tuple(value.shape)} in the state dict, but this optimizer needs "
            f"shape {need}"
        )
    if floating and not (value.is_floating_point() or value.is_complex()):
        raise StateDictError(f"{what} has dtype {value.dtype}; a floating-point tensor is needed")
    return value


def saved_param_states(
    what: str, saved: Any, param_groups: Sequence[Mapping[str, Any]]
) -> dict[int, Mapping[str, Any]]:
    """The saved state of each parameter, by the parameter's index in optimizer order.

    ``saved`` is a torch-style optimizer state dict (``{"state": ..., "param_groups": ...}``);
    its groups must have the sizes of ``param_groups``, and every state must belong to a
    parameter one of its groups lists (the pairing of ``torch.optim.Optimizer.load_state_dict``:
    the ``i``-th listed id is the ``i``-th parameter).  Parameters without a state are left out.
    """
    require_keys(what, saved, ("state", "param_groups"))
    groups = saved["param_groups"]
    if not isinstance(groups, list | tuple) or not all(
        isinstance(g, Mapping) and isinstance(g.get("params"), list | tuple) for g in groups
    ):
        raise StateDictError(f"{what}: 'param_groups' must be a list of groups with 'params'")
    saved_sizes = [len(g["params"]) for g in groups]
    sizes = [len(g["params"]) for g in param_groups]
    if saved_sizes != sizes:
        raise StateDictError(
            f"{what} has {len(saved_sizes)} parameter group(s) of {saved_sizes} parameter(s), but "
            f"this optimizer has {len(sizes)} group(s) of {sizes} parameter(s)"
        )
    ids = [pid for g in groups for pid in g["params"]]
    index: dict[Any, int] = {}
    for i, pid in enumerate(ids):
        try:
            if pid in index:
                raise StateDictError(f"{what} lists parameter id {pid!r} twice")
        except TypeError:
            raise StateDictError(f"{what}: parameter id {pid!r} is not a valid key") from None
        index[pid] = i
    states = require_keys(f"{what}: 'state'", saved["state"])
    out: dict[int, Mapping[str, Any]] = {}
    for pid, state in states.items():
        if pid not in index:
            raise StateDictError(
                f"{what} holds a state for parameter id {pid!r}, which none of its groups lists"
            )
        out[index[pid]] = require_keys(f"{what}: the state of parameter {index[pid]}", state)
    return out


def _hyperparameters(base: type[torch.optim.Optimizer], group: Mapping[str, Any]) -> dict[str, Any]:
    accepted = set(inspect.signature(base.__init__).parameters) - {"self", "params"}
    return {k: v for k, v in group.items() if k in accepted}


def check_group_hyperparameters(
    what: str, base: type[torch.optim.Optimizer], groups: Sequence[Mapping[str, Any]]
) -> None:
    """Every saved group's hyperparameters must be valid for ``base`` (its constructor decides)."""
    for i, group in enumerate(groups):
        try:
            make_base_optimizer(
                base, [torch.zeros(1, requires_grad=True)], _hyperparameters(base, group)
            )
        except AutoBalanceError as exc:
            raise StateDictError(f"{what}: parameter group {i}: {exc}") from None


def base_state_kinds(
    base: type[torch.optim.Optimizer], group: Mapping[str, Any], ndim: int = 1
) -> dict[str, bool | None] | None:
    """The keys of one parameter's state as ``base`` keeps it with ``group``'s hyperparameters
    for a parameter of ``ndim`` dimensions, each mapped to ``True`` when it holds one value per
    element (a tensor of the parameter's shape), ``False`` for a scalar such as ``step``, and
    ``None`` for a tensor of another shape (Shampoo's ``d × d`` preconditioners) or a list.

    Read from one step of ``base`` on a probe of shape ``(2, 3, ...)[:ndim]`` (``ndim`` matters:
    Shampoo keeps one preconditioner per dimension); ``None`` when that step fails (then only
    the shapes of the tensors are checked).
    """
    hyper = _hyperparameters(base, group)
    for switch in _PROBE_SWITCHES:
        if switch in hyper:
            hyper[switch] = False
    shape = tuple(range(2, 2 + max(ndim, 1)))
    probe = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
    try:
        optimizer = base([probe], **hyper)
        probe.grad = torch.zeros_like(probe)
        optimizer.step()
    except Exception:  # a base this probe cannot run: fall back to the shape checks
        return None

    def kind(value: Any) -> bool | None:
        if isinstance(value, Tensor):
            if value.shape == probe.shape:
                return True
            return False if value.numel() == 1 else None
        return None if isinstance(value, list | tuple) else False

    return {key: kind(value) for key, value in optimizer.state[probe].items()}


def _tensor_lists(value: Any) -> bool:
    """``value`` is a tensor, ``None``, or a (nested) list of them."""
    if value is None or isinstance(value, Tensor):
        return True
    return isinstance(value, list | tuple) and all(_tensor_lists(v) for v in value)


def check_base_state(
    what: str,
    state: Mapping[str, Any],
    param: Tensor,
    kinds: Mapping[str, bool | None] | None,
    base_name: str,
) -> None:
    """One parameter's saved state for a stock optimizer: its keys, and each value's shape.

    An empty state (the parameter has not been stepped yet) always fits.  A per-element entry
    must be a floating tensor of the parameter's shape, a scalar entry a number or a one-element
    tensor; ``None`` passes (torch keeps e.g. an unused momentum buffer as ``None``), and so does
    a (nested) list of tensors, whose shapes are the base's business (SOAP's Kronecker factors
    ``GG`` and eigenbases ``Q``).
    """
    if not state:
        return
    if kinds is not None and set(state) != set(kinds):
        raise StateDictError(
            f"{what} has state keys {sorted(map(str, state))}, but {base_name} keeps "
            f"{sorted(kinds)} (a state dict of another optimizer?)"
        )
    for key, value in state.items():
        if value is None:
            continue
        if isinstance(value, list | tuple):
            if not _tensor_lists(value):
                raise StateDictError(f"{what}: {key!r} must be a list of tensors")
            continue
        if kinds is not None and kinds[key] is None:  # a tensor of the base's own shape
            if not isinstance(value, Tensor):
                raise StateDictError(f"{what}: {key!r} must be a tensor, got {_short(value)}")
            continue
        per_element = (
            kinds[key] if kinds is not None else isinstance(value, Tensor) and value.dim() > 0
        )
        if per_element:
            check_tensor(f"{what}: {key!r}", value, param.shape)
        elif not (
            (isinstance(value, int | float) and not isinstance(value, bool))
            or (isinstance(value, Tensor) and value.numel() == 1)
        ):
            raise StateDictError(f"{what}: {key!r} must be a scalar, got {_short(value)}")


def check_per_loss(what: str, value: Any, num_losses: int | None) -> None:
    """Per-loss data of a weighting or an aggregator holds one value per loss.

    A list of numbers and a 1-D floating tensor are per-loss vectors: empty or of length
    ``num_losses``; a list of lists (a window of past loss vectors, pairwise targets) is checked
    list by list.  A mapping (a learnable vector's ``{"values": ..., "optimizer": ...}``, an
    aggregator's state) is checked entry by entry, one level deep: the state dict of an inner
    optimizer is left to that optimizer.  Other values (counts, generator states) pass.  Nothing
    is checked while ``num_losses`` is ``None`` (a state saved before the first step).
    """
    if num_losses is None:
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(item, Mapping):
                check_per_loss(f"{what}[{key!r}]", item, num_losses)
        return
    if isinstance(value, Tensor):
        if value.dim() == 1 and value.is_floating_point() and value.numel() not in (0, num_losses):
            raise StateDictError(
                f"{what} has shape {tuple(value.shape)} in the state dict, but there are "
                f"{num_losses} losses: shape ({num_losses},) is needed"
            )
        return
    if not isinstance(value, list) or not value:
        return
    if all(isinstance(v, list) for v in value):
        for i, item in enumerate(value):
            check_per_loss(f"{what}[{i}]", item, num_losses)
        return
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        raise StateDictError(f"{what} must hold numbers, got {_short(value)}")
    if len(value) != num_losses:
        raise StateDictError(
            f"{what} holds {len(value)} values in the state dict, but there are {num_losses} "
            "losses (one value per loss is needed)"
        )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@contextmanager
def restore_on_error(what: str, restore: Callable[[], None]) -> Iterator[None]:
    """Run the apply phase of a checked load; on failure call ``restore`` and raise
    :class:`StateDictError` (the object is as it was before the load)."""
    try:
        yield
    except BaseException as exc:
        restore()
        if isinstance(exc, StateDictError) or not isinstance(exc, Exception):
            raise
        raise StateDictError(
            f"{what} could not be loaded ({type(exc).__name__}: {exc}); nothing was changed"
        ) from exc
