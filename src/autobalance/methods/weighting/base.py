"""The weighting role and the method that runs one: statistics → weights ``w`` → ``∇ Σ_k w_k L_k``.

As in TorchJD, a :class:`Weighting` only turns what it sees at a step (:class:`WeightingStep`: the
loss values, and on the steps it asks for them the per-loss gradients) into one weight per loss.
:class:`WeightingMethod` runs any weighting over one base optimizer:

    w = weighting(step)                  (plain floats, one per loss)
    g = Σ_k w_k ∇L_k                     (from the gradient matrix when it was computed,
                                          else one backward pass of Σ_k w_k L_k)
    θ ← base_optimizer(θ, g)

With a ``process_group`` (:mod:`autobalance.distributed`) the weighting sees the loss values and
gradients averaged over the ranks, and ``g`` is averaged too, so every rank takes the same step.

A weighting is a dataclass: its ``init`` fields are its hyperparameters, validated once in
``__post_init__``; the fields declared with :data:`STATE` are the state it keeps between steps
(data, saved in checkpoints by :meth:`Weighting.state_dict`, whatever the weighting).
"""

from __future__ import annotations

import abc
import copy
import dataclasses
import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from autobalance.errors import HyperparameterError, StateDictError
from autobalance.gradients import GradientMatrix
from autobalance.methods.base import CombineResult, Params, PreCombineMethod
from autobalance.state_checks import check_per_loss, require_keys
from autobalance.step_front import LossBatch
from autobalance.step_info import StepInfo

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

__all__ = ["STATE", "Weighting", "WeightingFactory", "WeightingMethod", "WeightingStep"]


#: ``field(init=False, metadata=STATE)`` declares state a weighting keeps between steps (not a
#: hyperparameter).  :meth:`Weighting.state_dict` saves such a field through its own
#: ``state_dict()`` / ``load_state_dict()`` when it has them (e.g. a seeded generator), else as a
#: deep copy (numbers, lists, ``None``).
STATE: Mapping[str, Any] = MappingProxyType({"state": True})


@dataclass
class WeightingStep(LossBatch):
    """What a weighting sees at one step: the checked losses (see
    :class:`~autobalance.step_front.LossBatch`) and

    Attributes:
        params: every parameter of the method, in optimizer order.
        gradients: the per-loss gradient matrix when :meth:`Weighting.wants_gradients` asked for
            it, else ``None``.
        extra_backward_passes: backward passes the weighting spent on its own estimates (e.g.
            NTK traces), added to the step's count.

    A weighting that computes statistics of its own from this rank's points (e.g. NTK traces)
    averages them with ``ranks.floats(...)`` when ``ranks`` is set (data-parallel training).
    """

    params: list[Tensor] = field(default_factory=list)
    gradients: GradientMatrix | None = None
    extra_backward_passes: int = 0


class Weighting(abc.ABC):
    """Statistics of one step → one weight per loss (a dataclass; see the module docstring)."""

    #: The method's name, for messages.
    name: ClassVar[str] = ""

    if TYPE_CHECKING:
        # set by ``@dataclass`` on every concrete weighting; declared for the type checker, so
        # that ``dataclasses.fields`` is known to receive a dataclass
        __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def bind(self, params: Sequence[Tensor], lr: float) -> None:  # noqa: B027
        """Called once by the method with its parameters and its base learning rate."""

    def check_names(self, names: list[str]) -> None:  # noqa: B027
        """Validate the loss names at the first step (e.g. fixed weights must name them all)."""

    def wants_gradients(self, step: int) -> bool:
        """Whether the weighting needs the per-loss gradient matrix at ``step``."""
        return False

    @abc.abstractmethod
    def __call__(self, ctx: WeightingStep) -> Sequence[float]:
        """The weights ``w_k`` of this step, in loss order."""

    def state_dict(self) -> dict[str, Any]:
        """The state fields (see :data:`STATE`), by name."""
        out: dict[str, Any] = {}
        for name in _state_names(self):
            value = getattr(self, name)
            out[name] = value.state_dict() if hasattr(value, "state_dict") else copy.deepcopy(value)
        return out

    def check_state_dict(self, state: Any, names: Sequence[str] | None = None) -> dict[str, Any]:
        """The new values of the state fields that ``state`` names, checked; changes nothing.

        ``state`` may name only state fields; per-loss data must hold one value per loss of
        ``names`` (:func:`~autobalance.state_checks.check_per_loss`; not checked when ``names``
        is ``None``), a number field a number, a list field a list; a field with its own
        ``load_state_dict`` (a generator, a learnable vector) is loaded into a copy.

        Raises:
            StateDictError: naming the field and what is wrong.
        """
        what = f"the {self.name or type(self).__name__} weighting state"
        require_keys(what, state)
        fields = _state_names(self)
        unknown = [str(k) for k in state if k not in fields]
        if unknown:
            raise StateDictError(
                f"{what} has unknown entries {unknown}; its state fields are {fields}"
            )
        num_losses = None if names is None else len(names)
        staged: dict[str, Any] = {}
        for name in (f for f in fields if f in state):
            current, saved = getattr(self, name), state[name]
            where = f"{what}: {name!r}"
            check_per_loss(where, saved, num_losses)
            if hasattr(current, "load_state_dict"):
                staged[name] = copy.deepcopy(current)
                try:
                    staged[name].load_state_dict(saved)
                except Exception as exc:  # each kind of state fails in its own way
                    raise StateDictError(
                        f"{where} does not fit ({type(exc).__name__}: {exc})"
                    ) from None
                continue
            if _is_number(current) and not _is_number(saved):
                raise StateDictError(f"{where} must be a number, got {saved!r}")
            if isinstance(current, list) and not isinstance(saved, list):
                raise StateDictError(f"{where} must be a list, got {saved!r}")
            staged[name] = copy.deepcopy(saved)
        return staged

    def load_state_dict(self, state: dict[str, Any], names: Sequence[str] | None = None) -> None:
        """Inverse of :meth:`state_dict` (fields the dict does not name keep their value).

        Transactional: everything is checked (:meth:`check_state_dict`) before any field is set.
        """
        for name, value in self.check_state_dict(state, names).items():
            setattr(self, name, value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _state_names(weighting: Weighting) -> list[str]:
    return [f.name for f in dataclasses.fields(weighting) if f.metadata.get("state")]


class WeightingMethod(PreCombineMethod):
    """A :class:`Weighting` over one base optimizer (see the module docstring).

    On a step where the weighting wants gradients the combined gradient is ``Σ_k w_k ∇L_k`` from
    the matrix already computed (``K`` backward passes, no extra one); otherwise it is one
    backward of the weighted sum.

    Args:
        params: parameters or parameter groups.
        weighting: the weighting.
        base, nonfinite, process_group, **base_kwargs: see
            :class:`~autobalance.methods.base.PreCombineMethod`.
    """

    def __init__(
        self,
        params: Params,
        weighting: Weighting,
        base: type[torch.optim.Optimizer] | str = "adam",
        *,
        nonfinite: str = "raise",
        process_group: ProcessGroup | None = None,
        **base_kwargs: Any,
    ) -> None:
        self.weighting = weighting
        self.method_name = weighting.name
        super().__init__(
            params, base, nonfinite=nonfinite, process_group=process_group, **base_kwargs
        )
        weighting.bind(self.params, float(self.optimizer.param_groups[0]["lr"]))

    def _check_names_first_step(self, names: list[str]) -> None:
        self.weighting.check_names(names)

    def _combine(self, batch: LossBatch) -> CombineResult | StepInfo:
        gm = self.gradients(batch.losses) if self.weighting.wants_gradients(batch.step) else None
        if gm is not None:
            skipped = self.check_gradients_finite(gm, batch)
            if skipped is not None:
                return skipped
        ctx = WeightingStep(**vars(batch), params=self.params, gradients=gm)
        w = [float(x) for x in self.weighting(ctx)]
        if len(w) != len(batch.names) or not all(math.isfinite(x) for x in w):
            raise FloatingPointError(
                f"{type(self.weighting).__name__} produced invalid weights {w} at step {batch.step}"
            )
        if gm is not None:
            direction = torch.tensor(w, dtype=gm.matrix.dtype, device=gm.matrix.device) @ gm.matrix
            self.set_gradient(direction, gm)
            passes = len(w) + ctx.extra_backward_passes
            return CombineResult(passes, True, w, gm, direction)
        self.backward_weighted(batch.losses, w)
        return CombineResult(1 + ctx.extra_backward_passes, False, w)

    def extra_state(self) -> dict[str, Any]:
        return self.weighting.state_dict()

    def check_extra_state(self, state: Mapping[str, Any], names: list[str] | None) -> None:
        self.weighting.check_state_dict(state, names)

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.weighting.load_state_dict(state)

    def __repr__(self) -> str:
        return f"WeightingMethod({self.weighting!r}, base={type(self.optimizer).__name__})"


class WeightingFactory:
    """``factory(params, **kwargs)``: a :class:`WeightingMethod` over a new ``weighting``.

    The keyword arguments that name a hyperparameter of the weighting go to it; the others
    (``base``, ``nonfinite``, ``process_group``, ``lr``, ...) to :class:`WeightingMethod`.  Its
    signature lists the weighting's hyperparameters with their defaults, so the method catalog
    shows them.
    """

    def __init__(self, weighting: type[Weighting]) -> None:
        self.weighting = weighting
        own = [f for f in dataclasses.fields(weighting) if f.init]
        self.hyperparameters = [f.name for f in own]
        keyword = inspect.Parameter.KEYWORD_ONLY
        self.__signature__ = inspect.Signature(
            [
                inspect.Parameter("params", inspect.Parameter.POSITIONAL_OR_KEYWORD),
                *(inspect.Parameter(f.name, keyword, default=_default(f)) for f in own),
                inspect.Parameter("base", keyword, default="adam"),
                inspect.Parameter("nonfinite", keyword, default="raise"),
                inspect.Parameter("process_group", keyword, default=None),
                inspect.Parameter("base_kwargs", inspect.Parameter.VAR_KEYWORD),
            ]
        )
        self.__doc__ = weighting.__doc__

    def __call__(self, params: Params, **kwargs: Any) -> WeightingMethod:
        if "weighting" in kwargs:
            raise HyperparameterError(
                f"method {self.weighting.name!r} is its own weighting; it takes no 'weighting' "
                f"(got {kwargs['weighting']!r})"
            )
        own = {k: kwargs.pop(k) for k in self.hyperparameters if k in kwargs}
        return WeightingMethod(params, self.weighting(**own), **kwargs)


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return inspect.Parameter.empty
