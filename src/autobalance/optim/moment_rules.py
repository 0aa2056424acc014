"""Post-combine rules that read the per-loss Adam moments and act per coordinate.

AutoBalance keeps one Adam state per loss: first moment ``m_k``, second moment ``v_k`` and the
preconditioned update ``u_k = lr · m̂_k / (√v̂_k + ε)``.  The rules here decide the step ``Δ``
(``θ ← θ − Δ``) per coordinate from ``U``, ``M`` and ``V`` (each ``K × P``), so they are not
linear in the rows as the Gram rules of :mod:`autobalance.optim.combine` are.  They are
catalogued with those in :data:`autobalance.optim.combine.RULES` (family ``"moments"``); the
study that compares them is ``docs/postcombine.md``.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from autobalance.errors import HyperparameterError

__all__ = [
    "AveragedConsensus",
    "FlooredVotes",
    "MomentRule",
    "ProtectedConsensus",
    "SignConsensus",
    "averaged_consensus",
    "floored_votes",
    "protected_consensus",
    "sign_consensus",
]


def _check_ratio(ratio: Any) -> None:
    if not (isinstance(ratio, int | float) and math.isfinite(ratio) and ratio >= 1):
        raise HyperparameterError(f"ratio must be a finite number ≥ 1, got {ratio!r}")


def sign_consensus(updates: Tensor, first_moments: Tensor) -> Tensor:
    """Per coordinate, the sum of the updates that agree in sign with the summed first moment::

        Δ_i = Σ_k u_{k,i} · [sign u_{k,i} = sign Σ_j m_{j,i}]

    ``m_k`` is loss ``k``'s first moment (the EMA of ``∇L_k``; ``K × P`` like ``updates``).  The
    first moment is linear in the gradient, so ``Σ_j m_j`` is the first moment of the summed
    loss, whose sign is the direction of one Adam on the summed loss: every coordinate moves
    that way, by the per-loss normalised updates of the losses that push that way; the losses
    that oppose it are left out at that coordinate.  A tie (``Σ_j m_{j,i} = 0``) keeps only
    zero updates: ``Δ_i = 0``.
    """
    consensus = first_moments.sum(dim=0).sign()
    agree = updates.sign() == consensus
    return (updates * agree).sum(dim=0)


class MomentRule(abc.ABC):
    """A rule that reads the per-loss first moments and acts per coordinate (Adam bases)."""

    name = ""

    @abc.abstractmethod
    def combine(self, updates: Tensor, first_moments: Tensor, second_moments: Tensor) -> Tensor:
        """``Δ`` (``P``) from the updates, first and second moments (each ``K × P``)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise HyperparameterError(f"combine rule {self.name!r} keeps no state, got {state}")


@dataclass
class SignConsensus(MomentRule):
    """Per coordinate, the updates that agree with the summed first moment (sign_consensus)."""

    name = "consensus"

    def combine(self, updates: Tensor, first_moments: Tensor, second_moments: Tensor) -> Tensor:
        return sign_consensus(updates, first_moments)


def floored_votes(updates: Tensor, second_moments: Tensor, ratio: float) -> Tensor:
    """The updates weighted per coordinate by their gradient scale, floored at ``1/ratio``::

        Δ_i = Σ_k w_{k,i} u_{k,i},     w_{k,i} = max(√v_{k,i} / max_j √v_{j,i}, 1/R)

    ``v_k`` is loss ``k``'s second moment (``K × P``; the states advance together, so their bias
    corrections cancel in the ratio).  With ``u_k = lr·m̂_k/(√v̂_k + ε)`` and ``ε → 0`` a loss
    whose scale is within ``R`` of the largest contributes ``lr·m̂_k / max_j √v̂_j``: among
    those, a conflict is decided by the first moments, by magnitude, as one Adam on their sum
    decides it (the direction of ``Σ_k m_k``).  A loss whose gradient scale is below ``1/R`` of
    the largest keeps ``1/R`` of its normalised update instead of Adam's vanishing share.
    ``R = 1``: the paper's sum; ``R → ∞``: every loss over the largest denominator (Adam-like).
    One loss: Adam exactly.  A coordinate where every ``v_k`` is zero has zero updates and
    ``Δ_i = 0``.
    """
    _check_ratio(ratio)
    scale = second_moments.clamp(min=0).sqrt()
    largest = scale.max(dim=0).values
    share = torch.where(largest > 0, scale / largest.clamp(min=torch.finfo(scale.dtype).tiny), 1.0)
    return (updates * share.clamp(min=1.0 / ratio)).sum(dim=0)


def averaged_consensus(updates: Tensor, first_moments: Tensor) -> Tensor:
    """The consensus rule with one update's length: the agreeing updates averaged, not summed::

        Δ_i = Σ_k u_{k,i} a_{k,i} / max(1, Σ_k a_{k,i}),
        a_{k,i} = [sign u_{k,i} = sign Σ_j m_{j,i}]

    The direction is :func:`sign_consensus`'s (one Adam's on the summed loss); the length is
    the mean of the agreeing normalised updates, so ``|Δ_i| ≤ max_k |u_{k,i}| ≲ lr`` as in one
    Adam (the sum can reach ``K · lr`` where ``K`` noisy losses happen to agree).  Where every
    update agrees it is the mean of the updates; one loss: Adam exactly.
    """
    agree = (updates.sign() == first_moments.sum(dim=0).sign()).to(updates.dtype)
    return (updates * agree).sum(dim=0) / agree.sum(dim=0).clamp(min=1.0)


@dataclass
class AveragedConsensus(MomentRule):
    """The consensus direction with the mean of the agreeing updates (averaged_consensus)."""

    name = "consensus-mean"

    def combine(self, updates: Tensor, first_moments: Tensor, second_moments: Tensor) -> Tensor:
        return averaged_consensus(updates, first_moments)


def protected_consensus(
    updates: Tensor, first_moments: Tensor, second_moments: Tensor, ratio: float
) -> Tensor:
    """The consensus rule, except that a loss whose gradient scale is small keeps its vote::

        Δ_i = Σ_k u_{k,i} · [sign u_{k,i} = sign Σ_j m_{j,i}  or  R·√v_{k,i} < max_j √v_{j,i}]

    A conflict between losses of comparable gradient scale (within a factor ``R``) is decided by
    the summed first moment, as :func:`sign_consensus` (and one Adam) decides it; a loss whose
    scale is more than ``R`` times smaller than the largest is *protected*: its normalised
    update counts whatever its sign, as in the paper's sum, so that magnitudes cannot drown it.
    ``R → ∞``: :func:`sign_consensus`; ``R = 1``: the sum except for the updates of the
    largest-scale losses that oppose the summed first moment.  One loss: Adam exactly.
    """
    _check_ratio(ratio)
    scale = second_moments.clamp(min=0).sqrt()
    protected = ratio * scale < scale.max(dim=0).values
    agree = updates.sign() == first_moments.sum(dim=0).sign()
    return (updates * (agree | protected)).sum(dim=0)


@dataclass
class ProtectedConsensus(MomentRule):
    """Consensus among losses of comparable gradient scale; the much smaller keep their votes.

    See :func:`protected_consensus`.  ``ratio`` ``R ≥ 1``.
    """

    name = "protected"
    ratio: float = 10.0

    def __post_init__(self) -> None:
        _check_ratio(self.ratio)

    def combine(self, updates: Tensor, first_moments: Tensor, second_moments: Tensor) -> Tensor:
        return protected_consensus(updates, first_moments, second_moments, float(self.ratio))


@dataclass
class FlooredVotes(MomentRule):
    """Conflicts decided by gradient scale within a factor ``ratio``; below it, ``1/ratio`` votes.

    See :func:`floored_votes`.  ``ratio`` ``R ≥ 1``.
    """

    name = "floor"
    ratio: float = 10.0

    def __post_init__(self) -> None:
        _check_ratio(self.ratio)

    def combine(self, updates: Tensor, first_moments: Tensor, second_moments: Tensor) -> Tensor:
        return floored_votes(updates, second_moments, float(self.ratio))
