"""Which optimizer state owns which loss, and how the states' updates are combined.

A *state* is one base-optimizer state (e.g. one pair of Adam moments).  By default every loss
owns one state; ``groups`` lets several losses share one (MultiAdam's "PDE terms vs the rest").
The parameter update is ``Δ = Σ_s w_s u_s`` over states ``s`` with weights ``w`` from ``combine``:
"sum" (``w_s = 1``, the AutoBalance rule), "mean" (``w_s = 1/S``) or a mapping of fixed weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from autobalance.errors import HyperparameterError, LossNameError

__all__ = ["Combine", "Groups", "StateLayout", "check_combine", "check_groups", "resolve_layout"]

Combine = str | Mapping[str, float]
Groups = Mapping[str, Sequence[str]]


@dataclass(frozen=True)
class StateLayout:
    """The fixed assignment of losses to states, decided at the first step."""

    loss_names: tuple[str, ...]
    state_names: tuple[str, ...]
    loss_to_state: tuple[int, ...]
    weights: tuple[float, ...]

    @property
    def num_states(self) -> int:
        return len(self.state_names)

    @cached_property
    def owners(self) -> tuple[str, ...]:
        """The name of the state that owns each loss, in loss order."""
        return tuple(self.state_names[s] for s in self.loss_to_state)

    @cached_property
    def is_identity(self) -> bool:
        """Every loss owns its own state, in loss order."""
        return self.loss_to_state == tuple(range(len(self.loss_names)))

    @cached_property
    def unit_weights(self) -> bool:
        """Every state's combine weight is 1 (the "sum" rule)."""
        return all(w == 1.0 for w in self.weights)

    @cached_property
    def weight_vector(self) -> Tensor:
        """The combine weights ``w_s`` as a float64 CPU vector ``(S,)``."""
        return torch.tensor(self.weights, dtype=torch.float64)

    @cached_property
    def assignment(self) -> Tensor:
        """``A[s, k] = 1`` where loss ``k`` belongs to state ``s`` (float64 CPU, ``S × K``)."""
        matrix = torch.zeros(self.num_states, len(self.loss_names), dtype=torch.float64)
        matrix[list(self.loss_to_state), list(range(len(self.loss_names)))] = 1.0
        return matrix

    def to_dict(self) -> dict[str, list[str] | list[int] | list[float]]:
        return {
            "loss_names": list(self.loss_names),
            "state_names": list(self.state_names),
            "loss_to_state": list(self.loss_to_state),
            "weights": list(self.weights),
        }


def check_combine(combine: Combine) -> None:
    """Validate the ``combine`` argument without knowing the loss names yet."""
    if isinstance(combine, str):
        if combine not in ("sum", "mean"):
            raise HyperparameterError(
                f"combine must be 'sum', 'mean' or a mapping of weights, got {combine!r}"
            )
        return
    if not isinstance(combine, Mapping):
        raise HyperparameterError(
            f"combine must be 'sum', 'mean' or a mapping of weights, got {type(combine).__name__}"
        )
    for name, weight in combine.items():
        if not isinstance(weight, int | float) or not math.isfinite(weight) or weight < 0:
            raise HyperparameterError(
                f"combine weight of {name!r} must be a finite number >= 0, got {weight!r}"
            )


def check_groups(groups: Groups | None) -> None:
    """Validate the ``groups`` argument without knowing the loss names yet."""
    if groups is None:
        return
    if not isinstance(groups, Mapping):
        raise HyperparameterError(
            f"groups must map a group name to a list of loss names, got {type(groups).__name__}"
        )
    owner: dict[str, str] = {}
    for group, members in groups.items():
        if isinstance(members, str) or not isinstance(members, Sequence) or len(members) == 0:
            raise HyperparameterError(
                f"group {group!r} must list at least one loss name, got {members!r}"
            )
        for loss in members:
            if loss in owner:
                raise HyperparameterError(
                    f"loss {loss!r} is listed in two groups: {owner[loss]!r} and {group!r}"
                )
            owner[loss] = group


def resolve_layout(
    loss_names: Sequence[str], groups: Groups | None, combine: Combine
) -> StateLayout:
    """Assign each loss to a state (its group, or a state of its own) and weigh the states.

    States are ordered by the first loss that belongs to them.
    """
    known = set(loss_names)
    group_of: dict[str, str] = {}
    for group, members in (groups or {}).items():
        for loss in members:
            if loss not in known:
                raise LossNameError(
                    f"group {group!r} lists loss {loss!r}, which is not among the losses "
                    f"{', '.join(map(repr, loss_names))}"
                )
            group_of[loss] = group
    state_names: list[str] = []
    loss_to_state: list[int] = []
    for loss in loss_names:
        state = group_of.get(loss, loss)
        if state not in state_names:
            state_names.append(state)
        loss_to_state.append(state_names.index(state))
    ungrouped = {loss for loss in loss_names if loss not in group_of}
    clash = ungrouped & set(groups or {})
    if clash:
        raise LossNameError(
            f"group name(s) {', '.join(map(repr, sorted(clash)))} equal the name of a loss that is "
            "not in that group; rename the group"
        )
    num = len(state_names)
    if combine == "sum":
        weights = [1.0] * num
    elif combine == "mean":
        weights = [1.0 / num] * num
    else:
        assert isinstance(combine, Mapping)
        unknown = [k for k in combine if k not in state_names]
        missing = [s for s in state_names if s not in combine]
        if unknown or missing:
            raise LossNameError(
                "combine weights must name every state exactly once: "
                + (f"unknown {', '.join(map(repr, unknown))}; " if unknown else "")
                + (f"missing {', '.join(map(repr, missing))}; " if missing else "")
                + f"the states are {', '.join(map(repr, state_names))}"
            )
        weights = [float(combine[s]) for s in state_names]
    return StateLayout(
        loss_names=tuple(loss_names),
        state_names=tuple(state_names),
        loss_to_state=tuple(loss_to_state),
        weights=tuple(weights),
    )
