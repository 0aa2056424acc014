"""The front half every multi-loss step shares: names → scalars → non-finite policy → gradients.

Every optimizer and method of the library (AutoBalance, the pre-combine methods, the summed loss,
MTAdam, MultiAdam, M-ConFIG) starts a step the same way:

1. the loss names: the first successful step fixes them (and their order); later steps must give
   the same names, in any order (:func:`~autobalance.losses.check_loss_names`);
2. the losses must be scalar tensors (:func:`~autobalance.losses.check_scalar_losses`), whose
   values are read with one device synchronisation;
3. a NaN/Inf loss (or gradient) either raises :class:`~autobalance.errors.NonFiniteLossError`
   naming the loss and the step (``nonfinite="raise"``) or skips the step, leaving parameters
   and states untouched (``nonfinite="skip"``);
4. per-loss gradients come from :mod:`autobalance.gradients`.

With a ``process_group`` (data-parallel training, :mod:`autobalance.distributed`) the loss values
of step 2 are the averages over the ranks (so every rank takes the same decision in step 3), and
:meth:`LossBatch.per_loss_gradients` returns the per-loss gradients averaged over the ranks (one
flat all-reduce).  Without one (``None``, the default) nothing changes.

:class:`StepFront` holds what this needs between steps (the names, the step count, the policy);
:class:`LossBatch` is what a step's back half receives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import Tensor

from autobalance.distributed import RankAverage, check_process_group
from autobalance.errors import HyperparameterError
from autobalance.gradients import PerLossGradients, per_loss_gradients
from autobalance.losses import (
    LossDict,
    check_loss_names,
    check_scalar_losses,
    find_nonfinite,
    loss_values,
    nonfinite_error,
)
from autobalance.state_checks import check_count, check_names, require_keys
from autobalance.step_info import StepInfo, build_step_info

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

__all__ = ["NONFINITE_POLICIES", "LossBatch", "StepFront", "check_nonfinite_policy"]

#: What to do with a NaN/Inf loss or gradient.
NONFINITE_POLICIES = ("raise", "skip")


def check_nonfinite_policy(nonfinite: str) -> str:
    """Return ``nonfinite`` if it is a known policy, else raise :class:`HyperparameterError`."""
    if nonfinite not in NONFINITE_POLICIES:
        raise HyperparameterError(f"nonfinite must be 'raise' or 'skip', got {nonfinite!r}")
    return nonfinite


@dataclass
class LossBatch:
    """The checked losses of one step, in the order fixed at the first step.

    Attributes:
        step: the number this step gets if it is taken (1-based).
        names: the loss names, in order.
        values: the loss values (Python floats, before the step).
        losses: the scalar loss tensors, in order, still attached to their graphs.
        original: the mapping as given (e.g. a :class:`~autobalance.losses.NamedLosses` that
            carries pointwise terms).
        ranks: the averaging over the ranks of a process group, ``None`` in one process (then
            ``values`` are already averages over the ranks).
    """

    step: int
    names: list[str]
    values: dict[str, float]
    losses: dict[str, Tensor]
    original: LossDict
    ranks: RankAverage | None = None

    def per_loss_gradients(
        self, params: Sequence[Tensor], *, retain_graph: bool | None = None
    ) -> PerLossGradients:
        """``∇L_k`` for every loss, one backward pass each (see
        :func:`~autobalance.gradients.per_loss_gradients`), averaged over the ranks if any."""
        per_loss = per_loss_gradients(
            self.names, list(self.losses.values()), params, retain_graph=retain_graph
        )
        return per_loss if self.ranks is None else self.ranks.per_loss_gradients(per_loss, params)


class StepFront:
    """Loss names, step count and non-finite policy of one multi-loss optimizer or method.

    Args:
        nonfinite: "raise" (default) or "skip" (see the module docstring).
        process_group: average losses and gradients over the ranks of this
            ``torch.distributed`` group (:mod:`autobalance.distributed`); ``None``: one process.
    """

    def __init__(
        self, nonfinite: str = "raise", *, process_group: ProcessGroup | None = None
    ) -> None:
        self.nonfinite = check_nonfinite_policy(nonfinite)
        group = check_process_group(process_group)
        #: The averaging over the ranks, ``None`` in one process.
        self.ranks = None if group is None else RankAverage(group)
        #: The loss names fixed at the first successful step (``None`` before it).
        self.names: list[str] | None = None
        #: Steps taken (skipped steps are not counted).
        self.steps = 0

    def order(self, given: Sequence[str]) -> list[str]:
        """The names of this step in the fixed order; :class:`LossNameError` if they differ."""
        if self.names is None:
            return list(given)
        check_loss_names(list(given), self.names, step=self.steps + 1)
        return list(self.names)

    def start(self, losses: LossDict) -> LossBatch:
        """Check the losses (scalars, names) and read their values (averaged over the ranks)."""
        check_scalar_losses(losses)
        names = self.order(list(losses))
        ordered = {n: losses[n] for n in names}
        if self.ranks is None:
            return LossBatch(self.steps + 1, names, loss_values(ordered), ordered, losses)
        if self.names is None:
            self.ranks.agree("loss names (in order)", names)
        values = self.ranks.loss_values(ordered)
        return LossBatch(self.steps + 1, names, values, ordered, losses, self.ranks)

    def average(self, per_loss: PerLossGradients, params: Sequence[Tensor]) -> PerLossGradients:
        """Per-loss gradients averaged over the ranks (unchanged in one process)."""
        return per_loss if self.ranks is None else self.ranks.per_loss_gradients(per_loss, params)

    def nonfinite_loss(
        self, batch: LossBatch, *, states: str | Sequence[str] = ""
    ) -> StepInfo | None:
        """The skipped step (or the error) when a loss value is NaN/Inf, else ``None``."""
        bad = find_nonfinite(batch.values)
        if bad is None:
            return None
        return self.refuse(batch.values, bad, batch.values[bad], states=states)

    def refuse(
        self,
        values: Mapping[str, float],
        name: str,
        value: float,
        *,
        what: str = "loss",
        states: str | Sequence[str] = "",
    ) -> StepInfo:
        """Apply the policy to the non-finite ``what`` of loss ``name``: raise, or a skipped step.

        ``states`` names the state that owns each loss (or one name for all) in the info.
        """
        step = self.steps + 1
        if self.nonfinite == "raise":
            raise nonfinite_error(name, value, step=step, what=what)
        reason = f"{what} {name!r} is {value} at step {step}"
        return build_step_info(self.steps, values, states=states, skipped_reason=reason)

    def finish(self, names: Sequence[str]) -> int:
        """Record a step taken with ``names`` (fixing them at the first one); its number."""
        self.names = list(names)
        self.steps += 1
        return self.steps

    def state_dict(self) -> dict[str, Any]:
        return {"names": None if self.names is None else list(self.names), "steps": self.steps}

    @staticmethod
    def check_state_dict(state: Any, what: str = "the state dict") -> tuple[list[str] | None, int]:
        """The loss names and step count of a :meth:`state_dict`, checked; changes nothing.

        Raises:
            StateDictError: a key is missing, the names are not distinct strings, or the step
                count is not an integer ``>= 0``.
        """
        require_keys(what, state, ("names", "steps"))
        names = check_names(f"{what}: 'names'", state["names"])
        return names, check_count(f"{what}: 'steps'", state["steps"])

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`state_dict`; checked first (:meth:`check_state_dict`)."""
        self.names, self.steps = self.check_state_dict(state)
