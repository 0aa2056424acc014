"""What a phase minimises: the weighted sum of named losses on one fixed point set.

An :class:`Objective` is data plus functions: the current point sets (``batch``), a function
that turns point sets into named scalar losses, optionally a function that turns them into the
per-point residuals those losses are the mean squares of (for Gauss–Newton), and optional loss
weights.  A phase evaluates it as often as it needs; redrawing points is a new ``batch``
(:meth:`Objective.with_batch`), never a hidden side effect.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from torch import Tensor

from autobalance.errors import ConfigError

if TYPE_CHECKING:
    from autobalance.variants.stack import VariantStack

__all__ = ["Batch", "HasLosses", "LossesFn", "Objective", "ResidualsFn", "problem_objective"]

#: Named point sets, e.g. ``{"residual": (N, d), "boundary": (M, d)}``; may be empty.
Batch = Mapping[str, Tensor]
#: ``batch -> {name: scalar loss}``, attached to the autograd graph of the parameters.
LossesFn = Callable[[Batch], Mapping[str, Tensor]]
#: ``batch -> {name: per-point residuals r}`` with ``loss[name] = mean(r²)``.
ResidualsFn = Callable[[Batch], Mapping[str, Tensor]]


@dataclass(frozen=True)
class Objective:
    """``L(θ) = Σ_k w_k L_k(θ)`` on the point sets ``batch``.

    Args:
        losses: named scalar losses at a batch (every phase uses it, except Gauss–Newton).
        batch: the current point sets; ``{}`` for objectives that take no points.
        residuals: per-point residuals ``r_k`` at a batch with ``L_k = mean(r_k²)`` (Gauss–Newton
            needs it).  Each row of ``r_k`` must depend on the same row of the point set only,
            so that the Jacobian can be assembled chunk by chunk.
        weights: ``w_k`` by loss name; a name not given weighs 1.  Default: the plain sum.
    """

    losses: LossesFn
    batch: Batch = field(default_factory=dict)
    residuals: ResidualsFn | None = None
    weights: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        for name, w in (self.weights or {}).items():
            if not (isinstance(w, (int, float)) and w >= 0 and w == w and w != float("inf")):
                raise ConfigError(f"loss weight {name!r} must be a finite number >= 0, got {w!r}")

    def weight(self, name: str) -> float:
        """``w_k`` of loss ``name`` (1 when not given)."""
        return float((self.weights or {}).get(name, 1.0))

    def total(self, losses: Mapping[str, Tensor]) -> Tensor:
        """``Σ_k w_k L_k`` in the order of ``losses``."""
        terms = [self.weight(name) * loss for name, loss in losses.items()]
        out = terms[0]
        for term in terms[1:]:
            out = out + term
        return out

    def with_batch(self, batch: Batch) -> Objective:
        """The same objective on new point sets."""
        return dataclasses.replace(self, batch=batch)


class HasLosses(Protocol):
    """Anything with ``losses(model, batch)``, e.g. a :class:`~autobalance.problems.Problem`."""

    def losses(
        self, model: Callable[[Tensor], Tensor], batch: Batch, /
    ) -> Mapping[str, Tensor]: ...


def problem_objective(
    problem: HasLosses,
    model: Callable[[Tensor], Tensor],
    batch: Batch,
    *,
    weights: Mapping[str, float] | None = None,
    variants: VariantStack | None = None,
) -> Objective:
    """The :class:`Objective` of a PDE problem (``autobalance.problems``) and a network.

    ``losses(batch) = problem.losses(model, batch)``, transformed by ``variants`` when given
    (their ``transform_losses`` at step 0: e.g. RBA's multipliers, fixed during the phase), and
    ``residuals(batch)`` its ``pointwise`` terms (a :class:`~autobalance.losses.NamedLosses`
    carries them).

    Raises:
        ConfigError: a variant's losses are no objective a phase can minimise (causal
            weighting: weights recomputed at every evaluation, without gradient).
    """
    if variants is not None:
        variants.check_phase_objective("training phase objective")

    def losses_of(net: Callable[[Tensor], Tensor], points: Batch) -> Mapping[str, Tensor]:
        named = problem.losses(net, points)
        return named if variants is None else variants.transform_losses(named, 0)  # type: ignore[arg-type]

    def losses(points: Batch) -> Mapping[str, Tensor]:
        return losses_of(model, points)

    def residuals(points: Batch) -> Mapping[str, Tensor]:
        named = losses_of(model, points)
        pointwise = getattr(named, "pointwise", None)
        if not pointwise or set(pointwise) != set(named):
            raise ConfigError(
                f"{type(problem).__name__}.losses gives no per-point residual for every loss "
                f"(losses {sorted(named)}, residuals {sorted(pointwise or {})}); Gauss–Newton "
                "needs them"
            )
        return {name: pointwise[name] for name in named}

    return Objective(losses=losses, batch=dict(batch), residuals=residuals, weights=weights)
