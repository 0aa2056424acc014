"""Post-combine rules that read each loss's gradient scale over all parameters (issue 15, round 4).

AutoBalance keeps one Adam state per loss (first moment ``m_k``, second moment ``v_k``, update
``u_k = lr · m̂_k / (√v̂_k + ε)``).  The rules of :mod:`autobalance.optim.moment_rules` decide the
step ``Δ`` per coordinate from ``U``, ``M`` and ``V`` alone; the rules here also read one number
per loss, its RMS gradient scale over every coordinate of every parameter::

    s_k = √( Σ_i v_{k,i} / P )          (≈ ‖∇L_k‖ / √P; the EMA of the squared gradient)

which :class:`~autobalance.optim.autobalance.AutoBalance` sums over all of its parameter buckets
(:func:`combine_moments`), so the rule does not depend on how the parameters are grouped.  All
states advance together, so their bias corrections are one common factor that cancels in every
use of ``s`` below.

* ``balanced-consensus`` (:class:`BalancedConsensus`, :func:`balanced_consensus`): per
  coordinate, the updates that agree in sign with the *scale-balanced* first moment
  ``Σ_k m_k / s_k``, averaged.  The rule of the ``autobalance-balanced-consensus`` method.
* ``guarded`` / ``guarded-mean`` (:class:`GuardedConsensus`): the consensus among losses of
  comparable scale; a loss whose scale is ``R`` times below the largest keeps its vote.
* ``damped-consensus`` (:class:`DampedConsensus`): ``consensus-mean`` shrunk where the first
  moments cancel (does not read ``s``; a candidate of the same round).

Round 5 asks how long the step should be and what a balanced conflict should do, reading the
*decisiveness* of the balanced first moment per coordinate::

    λ_i = |Σ_k m_{k,i} / s_k| / Σ_k |m_{k,i} / s_k|    ∈ [0, 1]

(1 where every loss pushes the same way, 0 at a perfect balanced tie):

* ``balanced-sum`` (:class:`BalancedSum`): the agreeing updates summed (the paper's sum where
  every loss agrees, dissenters dropped).
* ``balanced-blend`` (:class:`BalancedBlend`): ``λ`` · balanced-consensus + ``(1 − λ)`` · the
  mean of all updates (MultiAdam's combination where the conflict is balanced).
* ``balanced-discount`` (:class:`BalancedDiscount`): the paper's sum with each dissenting
  update discounted by ``λ``.

Round 6 keeps balanced-consensus' direction and gives the step the paper's length:

* ``balanced-concede`` (:class:`BalancedConcede`): every loss casts one update as in the paper's
  sum, and a loss outvoted at a coordinate casts the winners' mean instead of its own
  (``K`` × balanced-consensus).
* ``balanced-graded`` (:class:`BalancedGraded`): balanced-consensus lengthened by the
  decisiveness, ``(1 + (K − 1) λ)`` × balanced-consensus: the paper's sum where every loss
  agrees, balanced-consensus' one winning update at a balanced tie.

The study that compares them is ``docs/postcombine.md`` (§6, §7 and §8).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from autobalance.errors import HyperparameterError
from autobalance.optim.moment_rules import MomentRule, _check_ratio, averaged_consensus

__all__ = [
    "BalancedBlend",
    "BalancedConcede",
    "BalancedConsensus",
    "BalancedDiscount",
    "BalancedGraded",
    "BalancedSum",
    "DampedConsensus",
    "GuardedConsensus",
    "GuardedMean",
    "ScaledMomentRule",
    "balanced_blend",
    "balanced_concede",
    "balanced_consensus",
    "balanced_direction",
    "balanced_discount",
    "balanced_graded",
    "balanced_sum",
    "combine_moments",
    "concede_toward",
    "damped_consensus",
    "decisiveness",
    "guarded_consensus",
    "loss_scales",
]


def loss_scales(second_moments: Sequence[Tensor]) -> Tensor:
    """``s_k = √(Σ_i v_{k,i} / P)`` over the coordinates of every ``K × P_b`` matrix given.

    Returned as float64 on the first matrix's device (``K``).  Negative entries (none from Adam)
    are clamped to zero.
    """
    if not second_moments:
        raise HyperparameterError("loss_scales needs at least one second-moment matrix")
    first = second_moments[0]
    total = torch.zeros(first.shape[0], dtype=torch.float64, device=first.device)
    count = 0
    for v in second_moments:
        total += v.clamp(min=0).sum(dim=1).to(device=first.device, dtype=torch.float64)
        count += v.shape[1]
    return (total / max(count, 1)).sqrt()


def balanced_consensus(updates: Tensor, first_moments: Tensor, scales: Tensor) -> Tensor:
    """The agreeing updates averaged, agreement judged by the scale-balanced first moment::

        Δ_i = Σ_k u_{k,i} a_{k,i} / max(1, Σ_k a_{k,i}),
        a_{k,i} = [sign u_{k,i} = sign Σ_j m_{j,i} / s_j]

    ``Σ_j m_j / s_j`` is the first moment of ``Σ_j ∇L_j / s_j``, the summed gradient with every
    loss rescaled to the same RMS scale (the balance that GradNorm- and IMTL-style pre-combine
    methods aim at), so a conflict at coordinate ``i`` goes to the loss whose gradient there is
    large *relative to its own scale*, not to the loss with the largest gradient (one Adam on
    the sum, ``consensus``) and not to a tie (the paper's sum).  The length is the mean of the
    agreeing normalised updates: ``|Δ_i| ≤ max_k |u_{k,i}| ≲ lr``, one Adam's step.

    Properties: one loss is Adam exactly; where every update agrees it is the mean of the
    updates; rescaling a loss by ``c > 0`` scales ``m_k`` and ``s_k`` by ``c`` and leaves
    ``u_k`` unchanged (up to ``ε``), so ``Δ`` does not change (the paper's sum has this
    invariance; ``consensus`` and ``consensus-mean`` do not).  A loss that never had a gradient
    (``s_k = 0``, ``m_k = 0``) casts no vote.  A tie keeps only zero updates: ``Δ_i = 0``.
    """
    return _winners_mean(updates, _agreement(updates, _balanced_moments(first_moments, scales)))


def _winners_mean(updates: Tensor, agree: Tensor) -> Tensor:
    """``Σ_k u_k a_k / max(1, Σ_k a_k)`` per coordinate: the agreeing updates averaged."""
    return (updates * agree).sum(dim=0) / agree.sum(dim=0).clamp(min=1.0)


def _balanced_moments(first_moments: Tensor, scales: Tensor) -> Tensor:
    """``m_k / s_k`` (``K × P``), a zero scale counted as the smallest positive number."""
    tiny = torch.finfo(first_moments.dtype).tiny
    return first_moments / scales.to(first_moments).clamp(min=tiny).unsqueeze(1)


def _agreement(updates: Tensor, balanced: Tensor) -> Tensor:
    """``a_{k,i} = [sign u_{k,i} = sign Σ_j balanced_{j,i}]`` in the updates' dtype."""
    return _agrees_with(updates, balanced.sum(dim=0).sign())


def _agrees_with(updates: Tensor, direction: Tensor) -> Tensor:
    """``[sign u_{k,i} = direction_i]`` (``K × P``) in the updates' dtype."""
    return (updates.sign() == direction).to(updates.dtype)


def balanced_direction(first_moments: Tensor, scales: Tensor) -> Tensor:
    """``sign Σ_k m_{k,i} / s_k`` (``P``): the balanced rules' decision (0 at a tie)."""
    return _balanced_moments(first_moments, scales).sum(dim=0).sign()


def concede_toward(updates: Tensor, direction: Tensor) -> Tensor:
    """``K · Σ_k u_k a_k / max(1, Σ_k a_k)`` with ``a_k = [sign u_k = direction]``: every loss
    moves by one update, an outvoted one by the winners' mean (:func:`balanced_concede` for the
    direction :func:`balanced_direction`; a rule that also reads the direction computes it once)."""
    return updates.shape[0] * _winners_mean(updates, _agrees_with(updates, direction))


def _decisiveness(balanced: Tensor) -> Tensor:
    """``|Σ_k balanced_k| / Σ_k |balanced_k|`` per coordinate (0 where all are zero)."""
    spread = balanced.abs().sum(dim=0).clamp(min=torch.finfo(balanced.dtype).tiny)
    return balanced.sum(dim=0).abs() / spread


def decisiveness(first_moments: Tensor, scales: Tensor) -> Tensor:
    """``λ_i = |Σ_k m_{k,i} / s_k| / Σ_k |m_{k,i} / s_k|`` (``P``): 1 if all agree, 0 at a tie.

    Zero where every first moment is zero.
    """
    return _decisiveness(_balanced_moments(first_moments, scales))


def balanced_sum(updates: Tensor, first_moments: Tensor, scales: Tensor) -> Tensor:
    """The updates that agree with ``Σ_k m_k / s_k`` summed::

        Δ_i = Σ_k u_{k,i} a_{k,i}

    (``a`` as in :func:`balanced_consensus`).  Where every loss agrees this is the paper's sum,
    up to ``K`` updates long; a dissenting update is dropped.  One loss: Adam exactly; invariant
    to rescaling a loss.
    """
    agree = _agreement(updates, _balanced_moments(first_moments, scales))
    return (updates * agree).sum(dim=0)


def balanced_blend(updates: Tensor, first_moments: Tensor, scales: Tensor) -> Tensor:
    """balanced-consensus where the balanced conflict is decisive, the mean where it is a tie::

        Δ_i = λ_i · Σ_k u_{k,i} a_{k,i} / max(1, Σ_k a_{k,i}) + (1 − λ_i) · (1/K) Σ_k u_{k,i}

    Where every loss agrees (``λ = 1``) both terms are the mean of the updates; at a balanced
    tie (``λ = 0``) the updates are averaged, so opposing updates cancel as in MultiAdam's mean
    instead of one side taking a full step.  ``|Δ_i| ≤ max_k |u_{k,i}|``.  One loss: Adam
    exactly; invariant to rescaling a loss.
    """
    balanced = _balanced_moments(first_moments, scales)
    agree, weight = _agreement(updates, balanced), _decisiveness(balanced).to(updates.dtype)
    return weight * _winners_mean(updates, agree) + (1.0 - weight) * updates.mean(dim=0)


def balanced_discount(updates: Tensor, first_moments: Tensor, scales: Tensor) -> Tensor:
    """The paper's sum with every dissenting update discounted by the decisiveness ``λ``::

        Δ_i = Σ_k u_{k,i} − λ_i Σ_k u_{k,i} (1 − a_{k,i})

    Where all losses agree and at a balanced tie (``λ = 0``) it is the paper's sum; where one
    side dominates relative to its scale (``λ → 1``) the dissenters are dropped
    (:func:`balanced_sum`).  One loss: Adam exactly; invariant to rescaling a loss.
    """
    balanced = _balanced_moments(first_moments, scales)
    agree, weight = _agreement(updates, balanced), _decisiveness(balanced).to(updates.dtype)
    return updates.sum(dim=0) - weight * (updates * (1.0 - agree)).sum(dim=0)


def balanced_concede(updates: Tensor, first_moments: Tensor, scales: Tensor) -> Tensor:
    """The paper's sum in which an outvoted loss concedes its update to the winners' mean::

        Δ_i = Σ_k [a_{k,i} u_{k,i} + (1 − a_{k,i}) ū_i] = K · ū_i,
        ū_i = Σ_k u_{k,i} a_{k,i} / max(1, Σ_k a_{k,i})     (balanced_consensus)

    (``a`` as in :func:`balanced_consensus`).  Each of the ``K`` losses moves the parameters by
    one update, as in the paper's sum, so the step is as long as the paper's where every loss
    agrees; a conflict is decided as in balanced-consensus, and the losses that lost it follow
    the winners instead of cancelling them.  ``|Δ_i| ≤ K max_k |u_{k,i}|``.  One loss: Adam
    exactly; invariant to rescaling a loss; the sign of ``Δ`` is balanced-consensus' sign.
    """
    return concede_toward(updates, balanced_direction(first_moments, scales))


def balanced_graded(updates: Tensor, first_moments: Tensor, scales: Tensor) -> Tensor:
    """balanced-consensus with a step that grows with the decisiveness ``λ`` of the conflict::

        Δ_i = (1 + (K − 1) λ_i) · Σ_k u_{k,i} a_{k,i} / max(1, Σ_k a_{k,i})

    (``a`` as in :func:`balanced_consensus`, ``λ`` as in :func:`decisiveness`).  Where every
    loss pushes the same way (``λ = 1``; ``sign u_k = sign m_k``, so every update agrees) it is
    the paper's sum, ``K`` updates long; at a balanced tie (``λ = 0``) it is balanced-consensus,
    the winners' mean, one update long.  Between :func:`balanced_consensus` and
    :func:`balanced_concede` coordinate by coordinate.  One loss: Adam exactly; invariant to
    rescaling a loss.
    """
    balanced = _balanced_moments(first_moments, scales)
    agree, weight = _agreement(updates, balanced), _decisiveness(balanced).to(updates.dtype)
    return (1.0 + (updates.shape[0] - 1) * weight) * _winners_mean(updates, agree)


def guarded_consensus(
    updates: Tensor, first_moments: Tensor, scales: Tensor, ratio: float, mean: bool = False
) -> Tensor:
    """The consensus among comparable losses; a loss ``R`` times below the largest scale counts::

        Δ_i = A_i + Σ_{k ∈ P} u_{k,i},     P = {k : R·s_k < max_j s_j}  (protected)
        A_i = Σ_{k ∉ P} u_{k,i} [sign u_{k,i} = sign Σ_{j ∉ P} m_{j,i}]   (÷ their count if mean)

    Like ``protected`` (:func:`~autobalance.optim.moment_rules.protected_consensus`) with one
    scale per loss instead of one per coordinate: among losses of comparable scale conflicts
    are decided by the summed first moment (one Adam's direction), a loss orders of magnitude
    smaller keeps its normalised update as in the paper's sum.  ``R → ∞``: ``consensus``
    (``consensus-mean`` with ``mean``).  One loss: Adam exactly.
    """
    _check_ratio(ratio)
    s = scales.to(updates)
    protected = (ratio * s < s.max()).unsqueeze(1)
    direction = (first_moments * ~protected).sum(dim=0).sign()
    agree = ((updates.sign() == direction) & ~protected).to(updates.dtype)
    comparable = (updates * agree).sum(dim=0)
    if mean:
        comparable = comparable / agree.sum(dim=0).clamp(min=1.0)
    return comparable + (updates * protected).sum(dim=0)


def damped_consensus(updates: Tensor, first_moments: Tensor) -> Tensor:
    """``consensus-mean`` shrunk by the agreement of the first moments::

        Δ_i = averaged_consensus(U, M)_i · |Σ_k m_{k,i}| / Σ_k |m_{k,i}|

    Where the first moments cancel (a balanced conflict) the step shrinks towards zero instead
    of moving one update's length towards the narrow winner.  One loss: Adam exactly.
    """
    total = first_moments.sum(dim=0).abs()
    spread = first_moments.abs().sum(dim=0).clamp(min=torch.finfo(first_moments.dtype).tiny)
    return averaged_consensus(updates, first_moments) * (total / spread)


class ScaledMomentRule(MomentRule):
    """A moment rule that also reads each loss's gradient scale ``s_k`` (:func:`loss_scales`)."""

    @abc.abstractmethod
    def combine_scaled(
        self, updates: Tensor, first_moments: Tensor, second_moments: Tensor, scales: Tensor
    ) -> Tensor:
        """``Δ`` (``P``) of one bucket, given the scales ``s`` (``K``) over all buckets."""

    def combine(self, updates: Tensor, first_moments: Tensor, second_moments: Tensor) -> Tensor:
        """``Δ`` when ``updates`` hold every coordinate (the scales are taken from them)."""
        bucket = (updates, first_moments, second_moments)
        return self.combine_buckets([bucket], loss_scales([second_moments]))[0]

    def combine_buckets(
        self, buckets: Sequence[tuple[Tensor, Tensor, Tensor]], scales: Tensor
    ) -> list[Tensor]:
        """Every bucket's ``Δ`` in one step (a rule with per-coordinate state overrides this)."""
        return [self.combine_scaled(u, m, v, scales) for u, m, v in buckets]


def combine_moments(
    rule: MomentRule, buckets: Sequence[tuple[Tensor, Tensor, Tensor]]
) -> list[Tensor]:
    """Each bucket's ``Δ`` from its ``(updates, first moments, second moments)``.

    A :class:`ScaledMomentRule` reads the scales of every bucket together, so its step does
    not depend on how the parameters are split into groups.
    """
    if not isinstance(rule, ScaledMomentRule):
        return [rule.combine(u, m, v) for u, m, v in buckets]
    return rule.combine_buckets(buckets, loss_scales([v for _, _, v in buckets]))


class _BalancedFunctionRule(ScaledMomentRule):
    """A rule that is a pure function ``Δ = f(U, M, s)`` of this module (``function``)."""

    @staticmethod
    @abc.abstractmethod
    def function(updates: Tensor, first_moments: Tensor, scales: Tensor) -> Tensor:
        """``Δ`` (``P``) from ``U``, ``M`` (``K × P``) and the scales ``s`` (``K``)."""

    def combine_scaled(
        self, updates: Tensor, first_moments: Tensor, second_moments: Tensor, scales: Tensor
    ) -> Tensor:
        return self.function(updates, first_moments, scales)


@dataclass
class BalancedConsensus(_BalancedFunctionRule):
    """The agreeing updates averaged, agreement with ``Σ m_k / s_k`` (balanced_consensus)."""

    name = "balanced-consensus"
    function = staticmethod(balanced_consensus)


@dataclass
class GuardedConsensus(ScaledMomentRule):
    """Consensus among losses within a factor ``ratio`` of the largest scale (guarded_consensus).

    The agreeing updates are summed (``mean`` False) or averaged (``guarded-mean``).
    """

    name = "guarded"
    ratio: float = 100.0
    mean: bool = False

    def __post_init__(self) -> None:
        _check_ratio(self.ratio)
        if not isinstance(self.mean, bool):
            raise HyperparameterError(f"mean must be True or False, got {self.mean!r}")

    def combine_scaled(
        self, updates: Tensor, first_moments: Tensor, second_moments: Tensor, scales: Tensor
    ) -> Tensor:
        return guarded_consensus(updates, first_moments, scales, float(self.ratio), self.mean)


@dataclass
class GuardedMean(GuardedConsensus):
    """:class:`GuardedConsensus` with the agreeing comparable updates averaged."""

    name = "guarded-mean"
    mean: bool = True


@dataclass
class DampedConsensus(MomentRule):
    """``consensus-mean`` shrunk where the first moments cancel (damped_consensus)."""

    name = "damped-consensus"

    def combine(self, updates: Tensor, first_moments: Tensor, second_moments: Tensor) -> Tensor:
        return damped_consensus(updates, first_moments)


@dataclass
class BalancedSum(_BalancedFunctionRule):
    """The agreeing updates summed, agreement with ``Σ m_k / s_k`` (balanced_sum)."""

    name = "balanced-sum"
    function = staticmethod(balanced_sum)


@dataclass
class BalancedBlend(_BalancedFunctionRule):
    """balanced-consensus blended with the mean by the decisiveness ``λ`` (balanced_blend)."""

    name = "balanced-blend"
    function = staticmethod(balanced_blend)


@dataclass
class BalancedDiscount(_BalancedFunctionRule):
    """The paper's sum with dissenting updates discounted by ``λ`` (balanced_discount)."""

    name = "balanced-discount"
    function = staticmethod(balanced_discount)


@dataclass
class BalancedConcede(_BalancedFunctionRule):
    """``K`` × balanced-consensus: an outvoted loss casts the winners' mean (balanced_concede)."""

    name = "balanced-concede"
    function = staticmethod(balanced_concede)


@dataclass
class BalancedGraded(_BalancedFunctionRule):
    """balanced-consensus lengthened to ``1 + (K − 1) λ`` updates (balanced_graded)."""

    name = "balanced-graded"
    function = staticmethod(balanced_graded)
