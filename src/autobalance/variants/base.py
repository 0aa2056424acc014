"""What a PINN variant is: a transformation of the network or of the named losses.

A variant (hard constraints, residual-based attention, causal weighting, gPINN, self-adaptive
weights, ...) is not a solver or a trainer subclass.  It acts at four points of a training step,
all optional, so that variants stack in any order and every balancer, optimizer or baseline
downstream sees only ordinary named losses::

    model = variant.setup(problem, model)                 # once: bind, maybe wrap the network
    batch = variant.transform_batch(batch, step)          # e.g. keep a fixed point set
    losses = problem.losses(model, batch)
    losses = variant.transform_losses(losses, step)       # reweight, add or drop named losses
    info = balancer.step(losses)
    variant.after_step(step)                              # e.g. a gradient-ascent step

:class:`~autobalance.variants.stack.VariantStack` applies a list of them in order.

**Invariant.**  :class:`~autobalance.losses.NamedLosses` carries per-point terms ``r`` with
``L = mean(r²)``.  A variant that reweights a loss also replaces its pointwise terms (e.g. by
``λ ⊙ r``), so that the invariant holds and the next variant composes with the reweighted terms.

**State.**  :meth:`Variant.state_dict` holds every tensor the variant needs to continue exactly
(multipliers, fixed points, its own optimizer), saved in the runner's checkpoints.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from autobalance._params import validate
from autobalance.errors import ConfigError
from autobalance.losses import NamedLosses

if TYPE_CHECKING:
    from autobalance.problems.base import Problem

__all__ = [
    "FixedPoints",
    "Variant",
    "copy_losses",
    "pointwise_of",
    "replace_loss",
]


class Variant:
    """Base class of the variants: every hook is optional and does nothing by default.

    A variant is a dataclass, ``@dataclass(eq=False)``, whose fields are its parameters, each
    written once with its default and rules (:func:`~autobalance._params.param`);
    :meth:`__post_init__` coerces and checks them in one place and sets up the run state (a
    subclass with state of its own extends it, calling ``super().__post_init__()`` first).
    """

    #: The name the variant is catalogued under (``variants.create(name)``).
    name: ClassVar[str] = ""
    #: Whether :meth:`transform_losses` is a function of the parameters whose gradient autograd
    #: returns, so that a training phase (line searches, quasi-Newton pairs) can minimise the
    #: transformed losses.  ``False`` for weights recomputed from the residuals at every call
    #: and detached (causal weighting): the loss a line search sees then moves with the
    #: parameters but its gradient does not follow.
    defines_phase_objective: ClassVar[bool] = True

    def __post_init__(self) -> None:
        validate(self.where(), self)
        self.problem_name = "?"
        self.device: torch.device = torch.device("cpu")
        self.dtype: torch.dtype = torch.get_default_dtype()

    def setup(self, problem: Problem, model: nn.Module) -> nn.Module:
        """Bind to ``problem`` (check what the variant needs) and return the model to train.

        Called once, after the network was moved to its device and dtype and before the
        optimizer is built.  Subclasses call ``super().setup`` first; it records the problem's
        name and the parameters' device and dtype.
        """
        self.problem_name = problem.name or type(problem).__name__
        first = next(iter(model.parameters()), None)
        if first is not None:
            self.device, self.dtype = first.device, first.dtype
        return model

    def transform_batch(self, batch: Mapping[str, Tensor], step: int) -> dict[str, Tensor]:
        """The point sets of step ``step`` (1-based) the losses will be computed at."""
        return dict(batch)

    def transform_losses(self, losses: NamedLosses, step: int) -> NamedLosses:
        """The named losses of step ``step`` handed on (a new object; ``losses`` is unchanged)."""
        return losses

    def parameters(self) -> list[nn.Parameter]:
        """Extra parameters the balancer should train with the network's (none by default)."""
        return []

    def after_step(self, step: int) -> None:
        """Called after the balancer updated the parameters at step ``step``."""

    def state_dict(self) -> dict[str, Any]:
        """Tensors and numbers to continue exactly after a resume (weights-only loadable)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`state_dict`, after :meth:`setup`."""

    def where(self) -> str:
        """``"variant 'rba'"``, for messages."""
        return f"variant {self.name or type(self).__name__!r}"


def copy_losses(losses: NamedLosses) -> NamedLosses:
    """A shallow copy: new dicts, the same tensors."""
    return NamedLosses(
        dict(losses),
        pointwise=dict(losses.pointwise),
        points=dict(losses.points),
        coords=dict(losses.coords),
    )


def pointwise_of(where: str, losses: NamedLosses, name: str) -> Tensor:
    """The pointwise terms of loss ``name``, or a :class:`ConfigError` naming what is missing."""
    if name not in losses:
        raise ConfigError(
            f"{where}: there is no loss {name!r} (losses: {', '.join(map(repr, losses))})"
        )
    if not isinstance(losses, NamedLosses) or name not in losses.pointwise:
        raise ConfigError(
            f"{where}: loss {name!r} carries no pointwise terms (NamedLosses.pointwise); the "
            "problem must return them"
        )
    return losses.pointwise[name]


def replace_loss(losses: NamedLosses, name: str, pointwise: Tensor) -> NamedLosses:
    """A copy with loss ``name`` set to ``mean(pointwise²)`` and its pointwise terms replaced."""
    out = copy_losses(losses)
    out[name] = pointwise.pow(2).mean()
    out.pointwise[name] = pointwise
    return out


class FixedPoints:
    """Keeps the point set of one loss fixed: the first batch's points, then always those.

    Per-point state (RBA multipliers, self-adaptive weights) needs index-aligned points; the
    problem's sampler still runs every step (its random stream is unchanged), only this loss's
    points are replaced by the stored ones.  The points are part of the variant's state.
    """

    def __init__(self, where: str, loss: str) -> None:
        self.where, self.loss = where, loss
        self.points: Tensor | None = None

    def apply(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        if self.loss not in batch:
            raise ConfigError(
                f"{self.where}: the problem samples no points for loss {self.loss!r} (point "
                f"sets: {', '.join(map(repr, batch))})"
            )
        fresh = batch[self.loss]
        if self.points is None:
            self.points = fresh.detach().clone()
        elif self.points.device != fresh.device or self.points.dtype != fresh.dtype:
            self.points = self.points.to(device=fresh.device, dtype=fresh.dtype)
        return {**batch, self.loss: self.points}

    def check(self, n: int, expected: int) -> None:
        """Raise when a loss has ``n`` points but the per-point state has ``expected``."""
        if n != expected:
            raise ConfigError(
                f"{self.where}: loss {self.loss!r} has {n} points but the per-point state has "
                f"{expected}; its points must stay fixed (apply the variant's transform_batch)"
            )
