"""AutoBalance: a post-combine multi-loss optimizer over any base optimizer.

Every named loss ``L_k`` (or group of losses) keeps its own base-optimizer state ``S_k``.  At each
step, each state turns its own gradient into a preconditioned update and the parameters move by
the sum of those updates (An et al. 2025, "AutoBalance"):

    u_k = base_update(S_k, ∇L_k)              e.g. Adam: lr · m̂_k / (sqrt(v̂_k) + eps)
    θ  ← θ − Σ_k w_k u_k                      w_k = 1 ("sum"), 1/K ("mean") or fixed weights

``combine`` may also name a post-combine rule of :mod:`autobalance.optim.combine` that computes
``Δ`` from the updates (e.g. ``"consensus"``: per coordinate, the updates that agree with the
summed first moment); ``θ ← θ − Δ``.

Decoupled weight decay (AdamW) is a property of the parameters, not of a loss: it is applied
once per step, ``θ ← θ(1 − lr·λ)``, before the combined update, as ``torch.optim.AdamW`` does.

Data-parallel training: with ``process_group=`` every rank's per-loss gradients and loss values
are averaged over the ranks before the states see them (:mod:`autobalance.distributed`).

Usage::

    opt = AutoBalance(model.parameters(), base="adamw", lr=1e-3)
    for _ in range(steps):
        info = opt.step({"residual": loss_r, "boundary": loss_b})
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor

from autobalance.errors import HyperparameterError, LossValueError
from autobalance.gradients import PerLossGradients, checked_gradients
from autobalance.losses import LossDict, check_loss_names
from autobalance.optim.adam_rule import AdamRule
from autobalance.optim.bases import (
    base_defaults,
    make_base_optimizer,
    named_base_defaults,
    nonempty_params,
    resolve_base,
)
from autobalance.optim.buckets import Bucket, make_buckets
from autobalance.optim.combine import CombineRule, MomentRule, rule_for, updates_grads_gram
from autobalance.optim.layout import (
    Combine,
    Groups,
    StateLayout,
    check_combine,
    check_groups,
    resolve_layout,
)
from autobalance.optim.scaled_rules import combine_moments
from autobalance.optim.state_check import STATE_DICT_KEY, checked_state
from autobalance.optim.state_rule import StateRule, select_rule
from autobalance.optim.weight_decay import decay_once
from autobalance.state_checks import restore_on_error
from autobalance.step_front import StepFront
from autobalance.step_info import StepInfo, build_step_info, joint_gram

if TYPE_CHECKING:
    import numpy as np
    from torch.distributed import ProcessGroup

__all__ = ["AutoBalance"]

GradLists = Mapping[str, Sequence[Tensor | None]]
GroupsArg = Groups | Callable[[list[str]], Groups] | None


class AutoBalance(torch.optim.Optimizer):
    """Post-combine multi-loss optimizer: one base-optimizer state per loss, updates summed.

    Args:
        params: parameters or parameter groups, as for any ``torch.optim`` optimizer.
        base: the base optimizer, a ``torch.optim.Optimizer`` subclass or a registered name
            ("adam", "adamw", "rmsprop", "sgd", "nadam", "radam", "adamax", "adagrad",
            "adadelta").  Adam and AdamW run on a fused flat implementation that reproduces
            them exactly; any other base runs as one stock instance per state.
        combine: "sum" (default, the paper's rule), "mean", a mapping from state name to a
            fixed weight, or a post-combine rule of :mod:`autobalance.optim.combine` by name
            ("consensus", "balanced-anneal", "upgrad", ...), by name with its parameters
            ("balanced-persistent:beta=0.9", "guarded:ratio=10") or as an instance.  Rules
            that read the Adam moments ("consensus", "consensus-mean", "balanced-consensus",
            "floor", ...) need an Adam or AdamW base.
        groups: optional mapping from a group name to loss names that share one state
            (MultiAdam-style grouping; also caps memory with many losses).  Losses not listed
            keep a state of their own, named after the loss.  May also be a callable that
            receives the loss names of the first step and returns such a mapping.
        nonfinite: "raise" (default) raises :class:`~autobalance.errors.NonFiniteLossError`
            naming the loss and the step when a loss or its gradient is NaN/Inf; "skip" leaves
            parameters and states untouched and returns an info with ``skipped=True``.
        retain_graph: ``None`` (default) retains a loss's graph only when a later loss shares
            part of it; ``True``/``False`` force it.
        process_group: a ``torch.distributed`` process group: the per-loss gradients and the
            loss values are averaged over its ranks (one flat all-reduce of the gradients per
            step, see :mod:`autobalance.distributed`); ``None`` (default): one process.
        statistics: ``True`` (default): every info carries the per-loss norms and cosines;
            ``False``: only the loss values and cost accounting (the rest NaN), which saves the
            update Gram products (about 3% of a step).  An attribute: a trainer that logs every
            N-th step sets it per step, as the runner does.
        **base_kwargs: hyperparameters of the base optimizer (lr, betas, eps, weight_decay, ...).

    ``step(losses)`` takes a mapping of scalar losses, ``step(grads=...)`` precomputed per-loss
    gradients (one entry per parameter, in ``param_groups`` order, ``None`` allowed), and
    ``step(closure)`` a callable returning the losses.  It returns a
    :class:`~autobalance.step_info.StepInfo`.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        base: type[torch.optim.Optimizer] | str = torch.optim.AdamW,
        *,
        combine: Combine | CombineRule | MomentRule = "sum",
        groups: GroupsArg = None,
        nonfinite: str = "raise",
        retain_graph: bool | None = None,
        process_group: ProcessGroup | None = None,
        statistics: bool = True,
        **base_kwargs: Any,
    ) -> None:
        base_cls = resolve_base(base)
        base_kwargs = {**named_base_defaults(base), **base_kwargs}
        self._combine_rule = rule_for(combine)
        if not isinstance(combine, CombineRule | MomentRule) and self._combine_rule is None:
            check_combine(combine)
        if not callable(groups):
            check_groups(groups)
        self._front = StepFront(nonfinite, process_group=process_group)
        if retain_graph not in (None, True, False):
            raise HyperparameterError(
                f"retain_graph must be None, True or False, got {retain_graph!r}"
            )
        self._base = base_cls
        self._combine = combine
        self._groups: GroupsArg = (
            groups
            if callable(groups) or groups is None
            else {k: list(v) for k, v in groups.items()}
        )
        self._retain_graph = retain_graph
        self.statistics = bool(statistics)
        self._layout: StateLayout | None = None
        self._buckets: list[Bucket] = []
        params = nonempty_params(params, type(self).__name__)
        super().__init__(params, base_defaults(base_cls, base_kwargs))
        self._rule: StateRule = select_rule(base_cls, self.param_groups)
        if isinstance(self._combine_rule, MomentRule) and not isinstance(self._rule, AdamRule):
            raise HyperparameterError(
                f"combine={self._combine_rule.name!r} reads each state's Adam first moment; "
                f"base {base_cls.__name__} runs without one (use an Adam or AdamW base)"
            )

    # -- step -----------------------------------------------------------------------------------
    # deliberately not torch's ``step(closure)`` contract: the losses (or a closure returning
    # them) go in and a StepInfo comes out, so the override is incompatible by design
    def step(  # type: ignore[override]
        self,
        losses: LossDict | Callable[[], LossDict] | None = None,
        *,
        grads: GradLists | None = None,
    ) -> StepInfo:
        """Take one AutoBalance step; see the class docstring."""
        if callable(losses):
            with torch.enable_grad():
                losses = losses()
        if losses is None and grads is None:
            raise LossValueError(
                "step() needs the losses, step(losses), or gradients, step(grads=...)"
            )
        params = self._all_params()
        if losses is not None:
            batch = self._front.start(losses)
            names, values = batch.names, batch.values
            if grads is not None:
                check_loss_names(list(grads), names, step=batch.step)
        else:
            names = self._front.order(_grad_names(grads))
            values = dict.fromkeys(names, math.nan)
        layout = self._layout or resolve_layout(
            names, self._groups_for(names), self._layout_combine
        )
        if losses is not None:
            skipped = self._front.nonfinite_loss(batch, states=layout.owners)
            if skipped is not None:
                return skipped
        if grads is None:
            per_loss = batch.per_loss_gradients(params, retain_graph=self._retain_graph)
        else:
            given = [checked_gradients(n, grads[n], params) for n in names]
            per_loss = self._front.average(given, params)
        if self._layout is None:  # the first step that gets this far fixes the loss names
            self._layout = layout
            self._front.names = list(layout.loss_names)
            self._build_buckets()
        with torch.no_grad():
            return self._apply(layout, per_loss, values, computed=grads is None)

    def _apply(
        self,
        layout: StateLayout,
        per_loss: PerLossGradients,
        values: dict[str, float],
        computed: bool,
    ) -> StepInfo:
        """Advance the states and move the parameters; the statistics come from two Gram matrices.

        Every statistic in the info is a dot product over parameter coordinates, so it is a sum
        over buckets of ``G = M Mᵀ`` (raw gradients ``M``, ``K × N``) and of ``Z [M; Z]ᵀ`` with
        ``Z = [u_1; ...; u_S; Δ]``: two small matrix products and one host copy per bucket
        instead of one reduction per statistic.
        """
        num_losses, num_states = len(layout.loss_names), layout.num_states
        matrices = []
        grad_gram = torch.zeros(num_losses, num_losses, dtype=torch.float64)
        for bucket in self._buckets:
            rows = [[per_loss[k][i] for i in bucket.indices] for k in range(num_losses)]
            matrix = bucket.flatten_rows(rows)
            reached = bucket.reached_rows(rows)
            matrices.append((matrix, reached))
            grad_gram += (matrix @ matrix.T).to(device="cpu", dtype=torch.float64)
        for name, sq in zip(layout.loss_names, grad_gram.diagonal().tolist(), strict=True):
            if not math.isfinite(sq):
                return self._front.refuse(
                    values, name, sq, what="gradient of loss", states=layout.owners
                )

        assign = layout.assignment
        advanced = []
        for bucket, (matrix, reached) in zip(self._buckets, matrices, strict=True):
            group = self.param_groups[bucket.group_index]
            if layout.is_identity:
                state_grads, state_reached = matrix, reached
            else:
                state_grads = assign.to(matrix) @ matrix
                state_reached = (assign @ reached.to(torch.float64)) > 0
            updates = self._rule.updates(
                bucket, bucket.rule_state, state_grads, state_reached, group
            )
            advanced.append((state_grads, state_reached, updates))
        deltas = self._combined(layout, advanced, values)
        update_gram = torch.zeros(num_states + 1, num_losses + num_states + 1, dtype=torch.float64)
        for bucket, (matrix, _), (_, state_reached, updates), delta in zip(
            self._buckets, matrices, advanced, deltas, strict=True
        ):
            group = self.param_groups[bucket.group_index]
            if self._rule.decoupled:
                decay_once(bucket, state_reached, group)
            bucket.subtract(delta)
            if self.statistics:
                stacked = torch.cat([updates, delta.unsqueeze(0)])
                products = stacked @ torch.cat([matrix, stacked]).T  # Z [M; Z]ᵀ in one product
                update_gram += products.to(device="cpu", dtype=torch.float64)
        return build_step_info(
            self._front.finish(layout.loss_names),
            values,
            gram=joint_gram(grad_gram, update_gram) if self.statistics else None,
            num_updates=num_states,
            combined="update",
            update_of_loss=layout.loss_to_state,
            states=layout.owners,
            backward_passes=num_losses if computed else 0,
            needs_grad_matrix=True,
        )

    def _combined(
        self,
        layout: StateLayout,
        advanced: list[tuple[Tensor, Tensor, Tensor]],
        values: dict[str, float],
    ) -> list[Tensor]:
        """Each bucket's ``Δ`` from its ``(state gradients, reached, updates)``.

        Fixed weights: ``Δ = Σ_s w_s u_s``.  A Gram rule: ``Δ = aᵀU + bᵀG`` with ``(a, b)`` from
        the Gram matrix of ``[U; G]`` over all buckets (states' gradients ``G``) and the states'
        loss values (a group's is the sum of its losses').  A moment rule: per coordinate, from
        the updates and the states' first moments.
        """
        rule = self._combine_rule
        if rule is None:
            weights, unit = layout.weight_vector, layout.unit_weights
            return [
                updates.sum(dim=0) if unit else weights.to(updates) @ updates
                for _, _, updates in advanced
            ]
        if isinstance(rule, MomentRule):
            states = [b.rule_state for b in self._buckets]
            pairs = zip(states, advanced, strict=True)
            return combine_moments(rule, [(u, s.exp_avg, s.exp_avg_sq) for s, (_, _, u) in pairs])
        # an optimizer has at least one bucket, so the sum is an array, never sum's start value 0
        gram = cast("np.ndarray", sum(updates_grads_gram(u, g) for g, _, u in advanced))
        state_values = layout.assignment.numpy() @ [values[n] for n in layout.loss_names]
        a, b = rule.coefficients(gram, state_values)
        return [
            torch.as_tensor(a, dtype=u.dtype, device=u.device) @ u
            + torch.as_tensor(b, dtype=g.dtype, device=g.device) @ g
            for g, _, u in advanced
        ]

    @property
    def _layout_combine(self) -> Combine:
        """What the layout's combine weights come from: unit weights under a rule."""
        combine, ruled = self._combine, self._combine_rule is not None
        return "sum" if ruled or isinstance(combine, CombineRule | MomentRule) else combine

    # -- configuration -------------------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        base = self._base
        group = self.param_groups[-1]
        # The base's constructor validates its arguments, not per-group values: re-run it on this
        # group's values so that e.g. {"params": ..., "lr": -1} is refused here, not mid-training.
        accepted = inspect.signature(base.__init__).parameters
        hyper = {k: v for k, v in group.items() if k in accepted and k not in ("self", "params")}
        make_base_optimizer(base, [torch.zeros(1, requires_grad=True)], hyper)
        if self._layout is not None:
            self._build_buckets()

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """Itself: lets AutoBalance stand wherever a method exposes the optimizer to schedule."""
        return self

    @property
    def base(self) -> type[torch.optim.Optimizer]:
        """The base optimizer class."""
        return self._base

    @property
    def layout(self) -> StateLayout | None:
        """Which state owns which loss; ``None`` before the first step."""
        return self._layout

    @property
    def steps_taken(self) -> int:
        """Number of (non-skipped) steps taken."""
        return self._front.steps

    def _all_params(self) -> list[Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    def _groups_for(self, names: Sequence[str]) -> Groups | None:
        """The groups mapping, calling a callable ``groups`` with the loss names."""
        if not callable(self._groups):
            return self._groups
        groups = self._groups(list(names))
        check_groups(groups)
        return groups

    # -- states ----------------------------------------------------------------------------------
    def _build_buckets(self) -> None:
        """Create states for every parameter that has none yet (first step, or a new group)."""
        assert self._layout is not None
        have = {id(p) for b in self._buckets for p in b.params}
        for bucket in make_buckets(self.param_groups):
            if not any(id(p) in have for p in bucket.params):
                group = self.param_groups[bucket.group_index]
                self._attach(bucket, *self._rule.init(bucket, group, self._layout.state_names))

    def _attach(self, bucket: Bucket, rule_state: Any, per_param: list[dict[str, Any]]) -> None:
        """Keep ``bucket`` with its states; ``self.state[p]`` shows them torch-style."""
        for p, state in zip(bucket.params, per_param, strict=True):
            self.state[p] = state
        bucket.rule_state = rule_state
        self._buckets.append(bucket)

    # -- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The torch-style state dict plus the loss layout and step count.

        Per parameter, Adam/AdamW states hold ``step`` (S,), ``exp_avg`` and ``exp_avg_sq``
        (S, *shape) with one row per state, in ``layout.state_names`` order.
        """
        state = super().state_dict()
        state[STATE_DICT_KEY] = {
            "version": 1,
            "rule": self._rule.name,
            "base": self._base.__name__,
            "steps": self._front.steps,
            "layout": self._layout.to_dict() if self._layout is not None else None,
        }
        if self._combine_rule is not None:
            state[STATE_DICT_KEY]["combine_rule"] = {
                "name": self._combine_rule.name,
                "state": self._combine_rule.state_dict(),
            }
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict made by :meth:`state_dict` (states are copied, not shared).

        Transactional: the whole state dict is checked first
        (:func:`~autobalance.optim.state_check.checked_state`: its rule and base, loss layout,
        step count, parameter groups and their hyperparameters, and every parameter's state keys
        and tensor shapes); one that does not fit raises
        :class:`~autobalance.errors.StateDictError`, naming the parameter and both shapes, and
        leaves the optimizer exactly as it was.
        """
        torch_part, layout, steps = checked_state(self, state_dict)
        before = (self.state, self.param_groups, self._buckets, self._layout)
        front = self._front.state_dict()
        rule = self._combine_rule
        rule_before = None if rule is None else copy.deepcopy(rule.state_dict())

        def restore() -> None:
            self.state, self.param_groups, self._buckets, self._layout = before
            self._front.load_state_dict(front)
            if rule is not None and rule_before is not None:
                rule.load_state_dict(rule_before)

        with restore_on_error(f"the {type(self).__name__} state dict", restore):
            super().load_state_dict(torch_part)  # replaces self.state and self.param_groups
            saved_rule = state_dict[STATE_DICT_KEY].get("combine_rule")
            if rule is not None and saved_rule is not None:
                rule.load_state_dict(saved_rule["state"])
            self._buckets, self._layout = [], layout
            names = None if layout is None else list(layout.loss_names)
            self._front.load_state_dict({"names": names, "steps": steps})
            if layout is not None:
                for bucket in make_buckets(self.param_groups):
                    group = self.param_groups[bucket.group_index]
                    per_param = [self.state[p] for p in bucket.params]
                    self._attach(bucket, *self._rule.load(bucket, group, per_param))

    def __repr__(self) -> str:
        states = list(self._layout.state_names) if self._layout else "decided at the first step"
        return (
            f"AutoBalance(base={self._base.__name__}, combine={self._combine!r}, "
            f"states={states}, lr={self.param_groups[0]['lr']})"
        )


def _grad_names(grads: GradLists | None) -> list[str]:
    """The loss names of ``step(grads=...)``; a clear error unless it is a non-empty mapping."""
    if not isinstance(grads, Mapping) or not grads:
        raise LossValueError("grads must be a non-empty mapping from loss name to gradients")
    return list(grads)
