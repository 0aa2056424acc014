"""Shared machinery of the pre-combine methods: one base optimizer fed one combined gradient.

Three shapes of method sit behind the :class:`~autobalance.methods.registry.Balancer` protocol
(``info = method.step(losses)``):

* **weighting** (:class:`~autobalance.methods.weighting.base.WeightingMethod`): losses, and
  where needed per-loss gradient statistics, give weights ``w_k``; the base optimizer gets
  ``∇ Σ_k w_k L_k``;
* **aggregator** (:class:`~autobalance.methods.aggregation.AggregatorMethod`): the per-loss
  gradient matrix ``G`` (``K × P``) gives one direction ``d = agg(G)``; the base optimizer gets
  ``d``;
* **multi-state** (:class:`~autobalance.AutoBalance` and the multi-state baselines): per-loss
  gradients feed per-loss states whose updates are combined.

:class:`PreCombineMethod` is the first two shapes (and the plain summed loss): the shared front
half of a step (:class:`~autobalance.step_front.StepFront`: names, scalars, NaN/Inf policy), the
hook :meth:`PreCombineMethod._combine` that writes the combined gradient into ``.grad``, one
base-optimizer step, the statistics (:func:`~autobalance.step_info.build_step_info`), and
checkpoints.  With a ``process_group`` (:mod:`autobalance.distributed`) the loss values, the
per-loss gradients (:meth:`PreCombineMethod.gradients`) and the gradient of one backward pass
(:meth:`PreCombineMethod.backward_weighted`, :meth:`PreCombineMethod.average_grads`) are
averages over the ranks, so every rank combines the same numbers.
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from autobalance.errors import (
    AutoBalanceError,
    HyperparameterError,
    StateDictError,
    check_in_range,
    check_positive,
)
from autobalance.gradients import GradientMatrix, gradient_matrix, per_loss_gradients
from autobalance.optim.bases import make_base_optimizer
from autobalance.state_checks import (
    base_state_kinds,
    check_base_state,
    check_group_hyperparameters,
    describe_param,
    require_keys,
    restore_on_error,
    saved_param_states,
)
from autobalance.step_front import LossBatch, StepFront
from autobalance.step_info import StepInfo, build_step_info

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

__all__ = [
    "CombineResult",
    "GradientMatrix",
    "LossBatch",
    "Params",
    "PreCombineMethod",
    "check_at_least_two",
    "check_in_range",
    "check_positive",
]

Params = Iterable[Tensor] | Iterable[dict[str, Any]]


def check_at_least_two(method: str, names: Sequence[str]) -> None:
    """Raise :class:`HyperparameterError` when a method that balances losses gets only one."""
    if len(names) < 2:
        raise HyperparameterError(
            f"method {method!r} balances several losses but got {len(names)} "
            f"({', '.join(map(repr, names))}); use 'adam' or 'adamw' for a single loss"
        )


@dataclass
class CombineResult:
    """What :meth:`PreCombineMethod._combine` did, for the step's info.

    Attributes:
        backward_passes: backward passes used this step.
        needs_grad_matrix: whether the full per-loss gradient matrix was computed.
        weights: per-loss weights (weighting methods), in loss order, or ``None``.
        gradients: the per-loss gradient matrix when it was computed (gives gradient norms,
            cosines between gradients and with the applied direction).
        direction: the combined gradient ``(P,)`` handed to the base optimizer, when known.
    """

    backward_passes: int
    needs_grad_matrix: bool
    weights: Sequence[float] | None = None
    gradients: GradientMatrix | None = None
    direction: Tensor | None = None

    def step_info(self, step: int, values: dict[str, float], state: str) -> StepInfo:
        """The step's :class:`StepInfo`: statistics from the Gram matrix of ``[G; d]``.

        ``grad_norm_k = ‖G_k‖``, ``grad_cosines = cos(G_i, G_j)`` and ``cosine_k = cos(G_k, d)``
        (the update is ``−lr·precond(d)``; the cosine is with ``d``, the direction the base
        optimizer receives).
        """
        gram = None
        gm = self.gradients
        if gm is not None:
            with torch.no_grad():
                rows = gm.matrix
                if self.direction is not None:
                    rows = torch.cat([rows, self.direction.reshape(1, -1).to(rows)])
                gram = (rows @ rows.T).double().cpu()
        return build_step_info(
            step,
            values,
            gram=gram,
            combined="gradient" if gm is not None and self.direction is not None else None,
            states=state,
            weights=self.weights,
            backward_passes=self.backward_passes,
            needs_grad_matrix=self.needs_grad_matrix,
        )


class PreCombineMethod(abc.ABC):
    """One base optimizer over the parameters, fed a combination of the named losses.

    Subclasses implement :meth:`_combine`, which receives the checked losses and writes the
    gradient to apply into ``.grad`` (from the per-loss gradients, or by one backward of a
    weighted sum), and may keep state in :meth:`extra_state` / :meth:`load_extra_state` for
    checkpoints.

    Args:
        params: parameters or parameter groups.
        base: the base optimizer, a ``torch.optim.Optimizer`` subclass or a registered name
            ("adam" by default, "adamw", "rmsprop", ...), so that every method can be compared on
            the same base.
        nonfinite: "raise" (default) or "skip" when a loss or a gradient is NaN/Inf.
        process_group: a ``torch.distributed`` process group to average losses and gradients
            over (data-parallel training, :mod:`autobalance.distributed`); ``None``: one process.
        **base_kwargs: the base optimizer's hyperparameters (lr, betas, weight_decay, ...).
    """

    #: Registered method name, set by subclasses or per instance (used in error messages).
    method_name: str = ""
    #: Whether the method balances several losses (one loss is an error).
    needs_two_losses: ClassVar[bool] = True
    #: The state every loss reports in ``StepInfo`` (one optimizer state for all).
    state_name: ClassVar[str] = "shared"

    def __init__(
        self,
        params: Params,
        base: type[torch.optim.Optimizer] | str = "adam",
        *,
        nonfinite: str = "raise",
        process_group: ProcessGroup | None = None,
        **base_kwargs: Any,
    ) -> None:
        self._front = StepFront(nonfinite, process_group=process_group)
        self._optimizer = make_base_optimizer(base, params, base_kwargs)
        self._params = [p for g in self._optimizer.param_groups for p in g["params"]]

    # ------------------------------------------------------------------------------ protocol
    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The base optimizer (schedulers act on its ``param_groups``)."""
        return self._optimizer

    @property
    def loss_names(self) -> list[str] | None:
        """The loss names fixed at the first step (``None`` before it)."""
        return None if self._front.names is None else list(self._front.names)

    @property
    def steps_taken(self) -> int:
        return self._front.steps

    @property
    def params(self) -> list[Tensor]:
        """Every parameter, in optimizer order."""
        return list(self._params)

    @property
    def process_group(self) -> ProcessGroup | None:
        """The process group losses and gradients are averaged over (``None``: one process)."""
        return None if self._front.ranks is None else self._front.ranks.group

    def step(self, losses: Mapping[str, Tensor]) -> StepInfo:
        """Combine the named losses, apply one base-optimizer step, report statistics."""
        batch = self._front.start(losses)
        if self._front.names is None:
            if self.needs_two_losses:
                check_at_least_two(self.method_name or type(self).__name__, batch.names)
            self._check_names_first_step(batch.names)
        bad = self._front.nonfinite_loss(batch, states=self.state_name)
        if bad is not None:
            self._optimizer.zero_grad(set_to_none=True)
            return bad
        result = self._combine(batch)
        if isinstance(result, StepInfo):  # a skipped step
            return result
        self._optimizer.step()
        return result.step_info(self._front.finish(batch.names), batch.values, self.state_name)

    # ------------------------------------------------------------------------- to implement
    def _check_names_first_step(self, names: list[str]) -> None:  # noqa: B027
        """Validate the loss names at the first step (e.g. fixed weights must name them all)."""

    @abc.abstractmethod
    def _combine(self, batch: LossBatch) -> CombineResult | StepInfo:
        """Set ``p.grad`` of every parameter to the combined gradient and describe the step.

        ``batch.original`` is the mapping as given (e.g. a
        :class:`~autobalance.losses.NamedLosses` carrying pointwise terms).  Return a
        :class:`StepInfo` only to skip the step (see :meth:`check_gradients_finite`).
        """

    def extra_state(self) -> dict[str, Any]:
        """Method state beyond the base optimizer's (weights, EMAs, ...), for checkpoints."""
        return {}

    def check_extra_state(  # noqa: B027
        self, state: Mapping[str, Any], names: list[str] | None
    ) -> None:
        """Raise :class:`~autobalance.errors.StateDictError` unless :meth:`load_extra_state` can
        load ``state`` for the losses ``names`` (``None``: saved before the first step).
        Changes nothing; :meth:`load_state_dict` calls it before loading anything."""

    def load_extra_state(self, state: dict[str, Any]) -> None:  # noqa: B027
        """Inverse of :meth:`extra_state` (``state`` has passed :meth:`check_extra_state`)."""

    # ------------------------------------------------------------------------------ helpers
    def gradients(
        self, losses: Mapping[str, Tensor], *, retain_graph: bool = False
    ) -> GradientMatrix:
        """Per-loss gradients ``∇L_k`` as a ``(K, P)`` matrix, one backward pass per loss
        (averaged over the ranks of the process group, if any).

        Graphs are freed as soon as no later loss shares them, unless ``retain_graph`` (needed
        when the caller back-propagates the same losses again).
        """
        per_loss = per_loss_gradients(
            list(losses),
            list(losses.values()),
            self._params,
            retain_graph=True if retain_graph else None,
        )
        return gradient_matrix(self._front.average(per_loss, self._params), self._params)

    def set_gradient(self, flat: Tensor, gm: GradientMatrix) -> None:
        """Write the combined gradient ``flat`` (``(P,)``) into ``p.grad``.

        Parameters no loss reaches get ``grad = None`` (the base optimizer leaves them alone).
        Each piece is cast to its parameter's dtype and device (the matrix uses one dtype for
        all parameters, see :meth:`gradients`).
        """
        reached_any = gm.reached.any(dim=0).tolist()
        for p, piece, hit in zip(self._params, gm.split(flat), reached_any, strict=True):
            p.grad = piece.view_as(p).to(device=p.device, dtype=p.dtype, copy=True) if hit else None

    def backward_weighted(self, losses: Mapping[str, Tensor], weights: Sequence[float]) -> None:
        """One backward pass of ``Σ_k w_k L_k`` into ``p.grad`` (previous grads cleared),
        averaged over the ranks of the process group, if any."""
        self._optimizer.zero_grad(set_to_none=True)
        total = sum(w * loss for w, loss in zip(weights, losses.values(), strict=True))
        assert isinstance(total, Tensor)
        total.backward()
        self.average_grads()

    def average_grads(self) -> None:
        """Average every ``p.grad`` over the ranks (one flat all-reduce; nothing in one
        process).  For methods that fill ``.grad`` with one backward pass of their own."""
        if self._front.ranks is not None:
            self._front.ranks.grads_(self._params)

    def check_gradients_finite(
        self, gm: GradientMatrix, batch: LossBatch, names: Sequence[str] | None = None
    ) -> StepInfo | None:
        """A skipped-step info (or an error) when a gradient row is not finite, else ``None``.

        ``names`` are the losses of the rows of ``gm`` (``batch.names`` by default).  Finiteness
        is checked entry by entry: a finite gradient whose squared norm overflows the matrix
        dtype (e.g. entries ~1e20 in float32) is not an error.  The value reported for a bad
        row is its sum of entries (NaN or ±Inf).
        """
        rows = batch.names if names is None else list(names)
        finite = torch.isfinite(gm.matrix).all(dim=1).tolist()
        for k, (name, ok) in enumerate(zip(rows, finite, strict=True)):
            if not ok:
                value = float(gm.matrix[k].double().sum())
                self._optimizer.zero_grad(set_to_none=True)
                return self._front.refuse(
                    batch.values, name, value, what="gradient of loss", states=self.state_name
                )
        return None

    # --------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self._optimizer.state_dict(),
            "base": type(self._optimizer).__name__,
            **self._front.state_dict(),
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a :meth:`state_dict` (copied: the source's tensors are never shared).

        Transactional: the whole state dict is checked first (:meth:`check_state_dict`); one
        that does not fit raises :class:`~autobalance.errors.StateDictError` and leaves the
        method exactly as it was.
        """
        self.check_state_dict(state_dict)
        state_dict = copy.deepcopy(state_dict)
        optimizer = self._optimizer
        before = (optimizer.state, optimizer.param_groups)
        front, extra = self._front.state_dict(), self.extra_state()

        def restore() -> None:
            optimizer.state, optimizer.param_groups = before
            self._front.load_state_dict(front)
            self.load_extra_state(extra)

        with restore_on_error(f"the {self._display_name} state dict", restore):
            self.load_extra_state(state_dict.get("extra", {}))
            optimizer.load_state_dict(state_dict["optimizer"])
            self._front.load_state_dict(state_dict)

    def check_state_dict(self, state_dict: Any) -> None:
        """Raise :class:`~autobalance.errors.StateDictError` unless ``state_dict`` fits this
        method; changes nothing.

        Checked: the keys; the loss names (distinct, accepted by the method) and the step
        count; the base optimizer; the number and sizes of the parameter groups and their
        hyperparameters; every parameter's state keys and tensor shapes as the base optimizer
        keeps them; the method's own state (:meth:`check_extra_state`).
        """
        what = f"the {self._display_name} state dict"
        require_keys(what, state_dict, ("optimizer", "names", "steps"))
        names, _ = StepFront.check_state_dict(state_dict, what)
        if names is not None:
            try:
                if self.needs_two_losses:
                    check_at_least_two(self._display_name, names)
                self._check_names_first_step(names)
            except AutoBalanceError as exc:
                raise StateDictError(f"{what}: its loss names do not fit: {exc}") from None
        base = type(self._optimizer)
        if state_dict.get("base", base.__name__) != base.__name__:
            raise StateDictError(
                f"{what} was saved with base optimizer {state_dict['base']}, but this method's "
                f"base optimizer is {base.__name__}"
            )
        saved = state_dict["optimizer"]
        per_param = saved_param_states(f"{what}: 'optimizer'", saved, self._optimizer.param_groups)
        groups = saved["param_groups"]
        check_group_hyperparameters(what, base, groups)
        kinds: dict[tuple[int, int], Any] = {}  # by (group, parameter dimensions)
        group_of = [gi for gi, g in enumerate(groups) for _ in g["params"]]
        for i, state in per_param.items():
            param = self._params[i]
            key = (group_of[i], param.dim())
            if key not in kinds:
                kinds[key] = base_state_kinds(base, groups[key[0]], param.dim())
            where = f"{what}: {describe_param(i, param)}"
            check_base_state(where, state, param, kinds[key], base.__name__)
        extra = require_keys(f"{what}: 'extra'", state_dict.get("extra", {}))
        self.check_extra_state(extra, names)

    @property
    def _display_name(self) -> str:
        return self.method_name or type(self).__name__

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base={type(self._optimizer).__name__})"
