"""Shared machinery of the pre-combine methods: one base optimizer fed one combined gradient.

Three shapes of method sit behind the :class:`~autobalance.methods.registry.Balancer` protocol
(``info = method.step(losses)``):

* **weighting** (:class:`WeightingMethod`): losses, and where needed per-loss gradient statistics,
  give weights ``w_k``; the base optimizer gets ``∇ Σ_k w_k L_k``;
* **aggregator** (:class:`~autobalance.methods.aggregation.AggregatorMethod`): the per-loss
  gradient matrix ``G`` (``K × P``) gives one direction ``d = agg(G)``; the base optimizer gets
  ``d``;
* **multi-state** (:class:`~autobalance.AutoBalance` and the multi-state baselines): per-loss
  gradients feed per-loss states whose updates are combined.

:class:`PreCombineMethod` does the bookkeeping every pre-combine method shares: checking the names
and values of the losses (the first step fixes the names), NaN/Inf handling, per-loss gradients
(one backward pass each, graphs freed as soon as no later loss needs them), writing the combined
gradient into ``.grad``, stepping the base optimizer, per-step statistics, and checkpoints.
"""

from __future__ import annotations

import abc
import copy
import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from autobalance.errors import HyperparameterError
from autobalance.losses import (
    LossDict,
    check_loss_names,
    check_scalar_losses,
    find_nonfinite,
    loss_values,
    nonfinite_error,
)
from autobalance.optim.bases import make_base_optimizer
from autobalance.optim.gradients import per_loss_gradients
from autobalance.step_info import LossStats, StepInfo

__all__ = [
    "GradientMatrix",
    "PreCombineMethod",
    "WeightingMethod",
    "WeightingStep",
    "check_at_least_two",
    "check_in_range",
    "check_positive",
]

Params = Iterable[Tensor] | Iterable[dict[str, Any]]


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    """Return ``float(value)`` or raise :class:`HyperparameterError` naming ``name``."""
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise HyperparameterError(f"{name} must be a finite number {bound}, got {value!r}")
    return value


def check_in_range(
    name: str, value: float, low: float, high: float, *, closed: str = "[]"
) -> float:
    """``float(value)`` if it lies in the interval; ``closed`` is "[]", "[)", "(]" or "()"."""
    value = float(value)
    lo_ok = value >= low if closed[0] == "[" else value > low
    hi_ok = value <= high if closed[1] == "]" else value < high
    if not (math.isfinite(value) and lo_ok and hi_ok):
        raise HyperparameterError(
            f"{name} must lie in {closed[0]}{low}, {high}{closed[1]}, got {value!r}"
        )
    return value


def check_at_least_two(method: str, names: Sequence[str]) -> None:
    """Raise :class:`HyperparameterError` when a method that balances losses gets only one."""
    if len(names) < 2:
        raise HyperparameterError(
            f"method {method!r} balances several losses but got {len(names)} "
            f"({', '.join(map(repr, names))}); use 'adam' or 'adamw' for a single loss"
        )


@dataclass
class GradientMatrix:
    """Per-loss gradients of one step, flattened: ``matrix[k]`` is ``∇L_k`` over every parameter.

    Attributes:
        matrix: ``(K, P)`` tensor on the parameters' device (zeros where a loss does not reach a
            parameter); the parameters are laid end to end in optimizer order.
        reached: ``(K, n_params)`` bool: whether loss k reaches parameter j.
        sizes: number of elements of each parameter.
    """

    matrix: Tensor
    reached: Tensor
    sizes: list[int]

    def split(self, flat: Tensor) -> list[Tensor]:
        """Cut a ``(P,)`` vector back into per-parameter pieces (flat views)."""
        return list(flat.split(self.sizes))


class PreCombineMethod(abc.ABC):
    """One base optimizer over the parameters, fed a combination of the named losses.

    Subclasses implement :meth:`_combine`, which receives the checked losses and returns the
    gradient to apply (or asks for one backward of a weighted sum), and may keep state in
    :meth:`extra_state` / :meth:`load_extra_state` for checkpoints.

    Args:
        params: parameters or parameter groups.
        base: the base optimizer, a ``torch.optim.Optimizer`` subclass or a registered name
            ("adam" by default, "adamw", "rmsprop", ...), so that every method can be compared on
            the same base.
        nonfinite: "raise" (default) or "skip" when a loss or a gradient is NaN/Inf.
        **base_kwargs: the base optimizer's hyperparameters (lr, betas, weight_decay, ...).
    """

    #: Registered method name, set by subclasses (used in error messages).
    method_name: ClassVar[str] = ""
    #: Whether the method balances several losses (one loss is an error).
    needs_two_losses: ClassVar[bool] = True

    def __init__(
        self,
        params: Params,
        base: type[torch.optim.Optimizer] | str = "adam",
        *,
        nonfinite: str = "raise",
        **base_kwargs: Any,
    ) -> None:
        if nonfinite not in ("raise", "skip"):
            raise HyperparameterError(f"nonfinite must be 'raise' or 'skip', got {nonfinite!r}")
        self._optimizer = make_base_optimizer(base, params, base_kwargs)
        self._params = [p for g in self._optimizer.param_groups for p in g["params"]]
        self._nonfinite = nonfinite
        self._names: list[str] | None = None
        self._steps = 0

    # ------------------------------------------------------------------------------ protocol
    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The base optimizer (schedulers act on its ``param_groups``)."""
        return self._optimizer

    @property
    def loss_names(self) -> list[str] | None:
        """The loss names fixed at the first step (``None`` before it)."""
        return None if self._names is None else list(self._names)

    @property
    def steps_taken(self) -> int:
        return self._steps

    @property
    def params(self) -> list[Tensor]:
        """Every parameter, in optimizer order."""
        return list(self._params)

    def step(self, losses: LossDict) -> StepInfo:
        """Combine the named losses, apply one base-optimizer step, report statistics."""
        check_scalar_losses(losses)
        step_no = self._steps + 1
        if self._names is None:
            names = list(losses)
            if self.needs_two_losses:
                check_at_least_two(self.method_name or type(self).__name__, names)
            self._check_names_first_step(names)
        else:
            check_loss_names(list(losses), self._names, step=step_no)
            names = self._names
        ordered = {n: losses[n] for n in names}
        values = loss_values(ordered)
        bad = find_nonfinite(values)
        if bad is not None:
            return self._nonfinite_step(names, bad, values[bad], values, step_no, "loss")
        result = self._combine(ordered, values, step_no, losses)
        if isinstance(result, StepInfo):  # a skipped step
            return result
        self._names = names
        self._optimizer.step()
        self._steps = step_no
        return result_info(self, result, values)

    # ------------------------------------------------------------------------- to implement
    def _check_names_first_step(self, names: list[str]) -> None:  # noqa: B027
        """Validate the loss names at the first step (e.g. fixed weights must name them all)."""

    @abc.abstractmethod
    def _combine(
        self,
        losses: dict[str, Tensor],
        values: dict[str, float],
        step_no: int,
        original: LossDict,
    ) -> CombineResult | StepInfo:
        """Set ``p.grad`` of every parameter to the combined gradient and describe the step.

        ``original`` is the mapping as given (e.g. a
        :class:`~autobalance.losses.NamedLosses` carrying pointwise terms).  Return a
        :class:`StepInfo` only to skip the step (see :meth:`_nonfinite_step`).
        """

    def extra_state(self) -> dict[str, Any]:
        """Method state beyond the base optimizer's (weights, EMAs, ...), for checkpoints."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:  # noqa: B027
        """Inverse of :meth:`extra_state`."""

    # ------------------------------------------------------------------------------ helpers
    def gradients(
        self, losses: Mapping[str, Tensor], *, retain_graph: bool = False
    ) -> GradientMatrix:
        """Per-loss gradients ``∇L_k`` as a ``(K, P)`` matrix, one backward pass per loss.

        Graphs are freed as soon as no later loss shares them, unless ``retain_graph`` (needed
        when the caller back-propagates the same losses again).
        """
        names = list(losses)
        per_loss = per_loss_gradients(
            names, list(losses.values()), self._params, retain_graph=True if retain_graph else None
        )
        sizes = [p.numel() for p in self._params]
        device = self._params[0].device
        # One dtype for the matrix: the promotion of the parameters' dtypes (e.g. float32 and
        # float64 parameters give a float64 matrix, never a lossy cast to the first one's).
        dtype = functools.reduce(torch.promote_types, (p.dtype for p in self._params))
        zeros: dict[int, Tensor] = {}
        rows: list[Tensor] = []
        for grads in per_loss:
            for g, n in zip(grads, sizes, strict=True):
                if g is None:
                    if n not in zeros:
                        zeros[n] = torch.zeros(n, device=device, dtype=dtype)
                    rows.append(zeros[n])
                else:
                    rows.append(g.reshape(-1).to(device=device, dtype=dtype))
        matrix = (
            torch.cat(rows).view(len(names), sum(sizes))
            if rows
            else torch.zeros(0, 0, device=device, dtype=dtype)
        )
        reached = torch.tensor([[g is not None for g in grads] for grads in per_loss])
        return GradientMatrix(matrix=matrix, reached=reached, sizes=sizes)

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
        """One backward pass of ``Σ_k w_k L_k`` into ``p.grad`` (previous grads cleared)."""
        self._optimizer.zero_grad(set_to_none=True)
        total = sum(w * loss for w, loss in zip(weights, losses.values(), strict=True))
        assert isinstance(total, Tensor)
        total.backward()

    def _nonfinite_step(
        self,
        names: list[str],
        bad: str,
        value: float,
        values: dict[str, float],
        step_no: int,
        what: str,
    ) -> StepInfo:
        if self._nonfinite == "raise":
            raise nonfinite_error(bad, value, step=step_no, what=what)
        self._optimizer.zero_grad(set_to_none=True)
        return StepInfo(
            step=self._steps,
            losses={n: LossStats(value=values[n]) for n in names},
            skipped=True,
            reason=f"{what} {bad!r} is {value} at step {step_no}",
        )

    def check_gradients_finite(
        self, gm: GradientMatrix, names: list[str], values: dict[str, float], step_no: int
    ) -> StepInfo | None:
        """A skipped-step info (or an error) when a gradient row is not finite, else ``None``.

        Finiteness is checked entry by entry: a finite gradient whose squared norm overflows the
        matrix dtype (e.g. entries ~1e20 in float32) is not an error.  The value reported for a
        bad row is its sum of entries (NaN or ±Inf).
        """
        finite = torch.isfinite(gm.matrix).all(dim=1).tolist()
        for k, (name, ok) in enumerate(zip(names, finite, strict=True)):
            if not ok:
                value = float(gm.matrix[k].double().sum())
                return self._nonfinite_step(names, name, value, values, step_no, "gradient of loss")
        return None

    # --------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self._optimizer.state_dict(),
            "names": self._names,
            "steps": self._steps,
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a :meth:`state_dict` (copied: the source's tensors are never shared)."""
        state_dict = copy.deepcopy(state_dict)
        self._optimizer.load_state_dict(state_dict["optimizer"])
        self._names = None if state_dict["names"] is None else list(state_dict["names"])
        self._steps = int(state_dict["steps"])
        self.load_extra_state(state_dict.get("extra", {}))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base={type(self._optimizer).__name__})"


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


def _cosine_table(gram: list[list[float]]) -> tuple[tuple[float, ...], ...]:
    norms = [math.sqrt(max(gram[i][i], 0.0)) for i in range(len(gram))]
    return tuple(
        tuple(
            gram[i][j] / (norms[i] * norms[j]) if norms[i] * norms[j] > 0 else math.nan
            for j in range(len(gram))
        )
        for i in range(len(gram))
    )


def result_info(
    method: PreCombineMethod, result: CombineResult, values: dict[str, float]
) -> StepInfo:
    """Build the :class:`StepInfo` of a pre-combine step.

    With the gradient matrix ``G`` and direction ``d``: ``grad_norm_k = ‖G_k‖``, ``cosine_k =
    cos(G_k, d)`` (the update is ``−lr·precond(d)``; the cosine is with ``d``, the direction the
    base optimizer receives), ``grad_cosines = cos(G_i, G_j)``.
    """
    names = list(values)
    weights = list(result.weights) if result.weights is not None else [math.nan] * len(names)
    grad_norms = [math.nan] * len(names)
    cosines = [math.nan] * len(names)
    grad_cosines: tuple[tuple[float, ...], ...] = ()
    direction_norm = math.nan
    gm = result.gradients
    if gm is not None:
        with torch.no_grad():
            rows = gm.matrix
            if result.direction is not None:
                rows = torch.cat([rows, result.direction.reshape(1, -1).to(rows)])
            gram = (rows @ rows.T).double().cpu().tolist()
        k = len(names)
        grad_cosines = _cosine_table([row[:k] for row in gram[:k]])
        grad_norms = [math.sqrt(max(gram[i][i], 0.0)) for i in range(k)]
        if result.direction is not None:
            direction_norm = math.sqrt(max(gram[k][k], 0.0))
            cosines = [
                gram[i][k] / (grad_norms[i] * direction_norm)
                if grad_norms[i] * direction_norm > 0
                else math.nan
                for i in range(k)
            ]
    return StepInfo(
        step=method.steps_taken,
        losses={
            n: LossStats(
                value=values[n],
                grad_norm=grad_norms[i],
                cosine=cosines[i],
                weight=float(weights[i]),
                state="shared",
            )
            for i, n in enumerate(names)
        },
        update_norm=math.nan,
        backward_passes=result.backward_passes,
        needs_grad_matrix=result.needs_grad_matrix,
        grad_cosines=grad_cosines,
    )


@dataclass
class WeightingStep:
    """What a weighting method sees at one step.

    Attributes:
        step: the step number (1-based).
        names: loss names, in order.
        values: loss values (floats, before the step).
        losses: the scalar loss tensors (still attached to the graph).
        original: the mapping as given (e.g. ``NamedLosses`` with ``pointwise`` terms).
        gradients: the per-loss gradient matrix when :meth:`WeightingMethod.wants_gradients`
            asked for it, else ``None``.
    """

    step: int
    names: list[str]
    values: dict[str, float]
    losses: dict[str, Tensor]
    original: LossDict
    gradients: GradientMatrix | None


class WeightingMethod(PreCombineMethod):
    """Losses (and, where needed, per-loss gradients) → weights ``w`` → ``∇ Σ_k w_k L_k``.

    Subclasses implement :meth:`weights` and, when they need per-loss gradients on some steps,
    override :meth:`wants_gradients`.  On a step with gradients the combined gradient is formed
    as ``Σ_k w_k ∇L_k`` from the matrix already computed (``K`` backward passes, no extra one);
    otherwise it is one backward of the weighted sum.
    """

    def wants_gradients(self, step: int) -> bool:
        """Whether :meth:`weights` needs the per-loss gradient matrix at ``step``."""
        return False

    @abc.abstractmethod
    def weights(self, ctx: WeightingStep) -> Sequence[float]:
        """The weights ``w_k`` of this step, in loss order (plain floats)."""

    def _combine(
        self,
        losses: dict[str, Tensor],
        values: dict[str, float],
        step_no: int,
        original: LossDict,
    ) -> CombineResult | StepInfo:
        names = list(losses)
        gm = self.gradients(losses) if self.wants_gradients(step_no) else None
        if gm is not None:
            skipped = self.check_gradients_finite(gm, names, values, step_no)
            if skipped is not None:
                return skipped
        ctx = WeightingStep(step_no, names, values, losses, original, gm)
        w = [float(x) for x in self.weights(ctx)]
        if len(w) != len(names) or not all(math.isfinite(x) for x in w):
            raise FloatingPointError(
                f"{type(self).__name__} produced invalid weights {w} at step {step_no}"
            )
        if gm is not None:
            direction = torch.tensor(w, dtype=gm.matrix.dtype, device=gm.matrix.device) @ gm.matrix
            self.set_gradient(direction, gm)
            return CombineResult(len(names), True, w, gm, direction)
        self.backward_weighted(losses, w)
        return CombineResult(1, False, w)
