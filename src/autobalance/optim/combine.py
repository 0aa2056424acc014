"""Post-combine rules: the per-loss preconditioned updates ``u_k`` → one step ``Δ``.

AutoBalance (An et al. 2025) keeps one base-optimizer state per loss; each state turns its own
gradient ``g_k`` into a preconditioned update ``u_k`` (Adam: ``lr · m̂_k / (√v̂_k + ε)``) and the
parameters move by ``θ ← θ − Δ``.  A *post-combine rule* decides ``Δ`` from the stacked updates
``U`` (``K × P``), the stacked raw gradients ``G`` (``K × P``) and the loss values.  Every rule
here is linear in the rows::

    Δ = aᵀ U + bᵀ G                 a, b ∈ R^K from the joint Gram matrix of [U; G] and the losses

so it needs only the ``2K × 2K`` Gram matrix (a sum over parameter buckets) and never flattens
the parameters: the TorchJD shape (a weighting of the Gram matrix) applied after
preconditioning.  The rules (``RULES`` catalogues them by name):

* ``sum``: ``Δ = Σ_k u_k``, the paper's rule (a = 1, b = 0).
* ``upgrad``: ``Δ = Σ_k π(u_k)``, each update projected onto the dual cone
  ``{d : U d ≥ 0}`` of the updates (Quinton & Rey 2024, Eq. (5), applied to ``U``; ``K ×`` the
  UPGrad mean, so that it equals ``sum`` when no two updates conflict).
* ``config``: ConFIG applied to the updates (Liu et al. 2025, Eqs. (2)–(3)): the direction with
  equal cosine to every ``u_k``, of length ``Σ_k u_kᵀ d̂``.
* ``descent-cone``: the sum projected onto the dual cone of the *raw gradients*,
  ``Δ = argmin_{G d ≥ 0} ‖d − Σ_k u_k‖²`` (dual: ``Δ = Σ u_k + Gᵀλ``,
  ``λ = argmin_{λ ≥ 0} ½ λᵀ G Gᵀ λ + λᵀ G Σ u_k``): no loss increases to first order.
* ``precedence``: conflicts go to the larger raw gradient; each update yields (is projected off)
  the part that opposes a larger-gradient update (:class:`Precedence`).
* ``progress``: ``Δ = Σ_k w_k u_k`` with ``w_k = K r_k / Σ_j r_j``, ``r_k = L_k / L_k(first
  step)``, the relative progress weights of ReLoBRaLo/LRA (Bischof & Kraus 2021) on the updates.

Rules that read the Adam moments act per coordinate (not linear in the rows):

* ``consensus`` (:class:`SignConsensus`, :func:`sign_consensus`): per coordinate, only the
  updates that agree in sign with the summed first moment (the direction of one Adam on the
  summed loss), summed.  The rule of the ``autobalance-consensus`` method.
* ``consensus-mean`` (:class:`AveragedConsensus`, :func:`averaged_consensus`): the consensus
  direction, the mean (not the sum) of the agreeing updates: one Adam's step length.
* ``floor`` (:class:`FlooredVotes`, :func:`floored_votes`): each update weighted per coordinate
  by ``max(√v_k / max_j √v_j, 1/R)``: losses whose gradient scale is within a factor ``R`` of the
  largest decide conflicts by magnitude (as one Adam would); the smaller keep ``1/R`` of a vote.
* ``protected`` (:class:`ProtectedConsensus`, :func:`protected_consensus`): ``consensus`` among
  losses of comparable gradient scale; a loss more than ``R`` times smaller keeps its vote.
* ``balanced-consensus``, ``guarded``, ``guarded-mean`` and ``damped-consensus``
  (:mod:`autobalance.optim.scaled_rules`): rules that also read each loss's gradient scale over
  all parameters; ``balanced-consensus`` decides each conflict by the first moment of the
  scale-balanced sum ``Σ_k m_k / s_k``.  The rule of ``autobalance-balanced-consensus``.
  Rounds 5 and 6 add rules with the same decision and another step (``balanced-sum``,
  ``balanced-blend``, ``balanced-discount``, ``balanced-graded``, and ``balanced-concede``,
  ``K`` × ``balanced-consensus``: the rule of ``autobalance-balanced-concede``).
  Round 7's ``balanced-anneal`` and ``balanced-persistent``
  (:mod:`autobalance.optim.persistent_rule`) shrink balanced-concede's step where its decision
  keeps alternating (a state per coordinate); ``balanced-anneal`` is the rule of
  ``autobalance-balanced-anneal``.
* :func:`shared_second_moment` (per-loss first moments over one shared second moment) and
  :func:`adam_blend` (a schedule from one Adam on the summed loss to the paper's sum): candidates
  of the study in ``docs/postcombine.md`` that did not win, kept as pure functions.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from autobalance._params import parse_named_spec
from autobalance.catalog import Catalog
from autobalance.errors import HyperparameterError
from autobalance.optim.moment_rules import (
    AveragedConsensus,
    FlooredVotes,
    MomentRule,
    ProtectedConsensus,
    SignConsensus,
    averaged_consensus,
    floored_votes,
    protected_consensus,
    sign_consensus,
)
from autobalance.optim.persistent_rule import BalancedAnneal, BalancedPersistent
from autobalance.optim.scaled_rules import (
    BalancedBlend,
    BalancedConcede,
    BalancedConsensus,
    BalancedDiscount,
    BalancedGraded,
    BalancedSum,
    DampedConsensus,
    GuardedConsensus,
    GuardedMean,
    ScaledMomentRule,
    balanced_consensus,
)

__all__ = [
    "RULES",
    "AveragedConsensus",
    "BalancedAnneal",
    "BalancedBlend",
    "BalancedConcede",
    "BalancedConsensus",
    "BalancedDiscount",
    "BalancedGraded",
    "BalancedPersistent",
    "BalancedSum",
    "CombineRule",
    "ConflictFreeUpdates",
    "DampedConsensus",
    "DescentCone",
    "FlooredVotes",
    "GuardedConsensus",
    "GuardedMean",
    "MomentRule",
    "Precedence",
    "ProgressWeighted",
    "ProjectedSum",
    "ProtectedConsensus",
    "ScaledMomentRule",
    "SignConsensus",
    "SumRule",
    "adam_blend",
    "averaged_consensus",
    "balanced_consensus",
    "check_update_matrices",
    "combine",
    "floored_votes",
    "protected_consensus",
    "rule_for",
    "shared_second_moment",
    "sign_consensus",
    "updates_grads_gram",
]


def check_update_matrices(updates: Tensor, grads: Tensor) -> None:
    """Raise a clear error unless ``updates`` and ``grads`` are finite ``(K, P)`` twins."""
    for name, m in (("updates", updates), ("grads", grads)):
        if not isinstance(m, Tensor) or m.dim() != 2 or m.shape[0] < 1:
            shape = tuple(m.shape) if isinstance(m, Tensor) else type(m).__name__
            raise HyperparameterError(f"{name} must be a (K losses × P) matrix, got {shape}")
        if not bool(torch.isfinite(m).all()):
            raise HyperparameterError(f"{name} has NaN or infinite entries")
    if updates.shape != grads.shape:
        raise HyperparameterError(
            f"updates {tuple(updates.shape)} and grads {tuple(grads.shape)} must have one row "
            "per loss and one column per parameter coordinate each"
        )


def updates_grads_gram(updates: Tensor, grads: Tensor) -> np.ndarray:
    """The float64 Gram matrix of ``[U; G]`` (``2K × 2K``): updates first, then gradients."""
    stacked = torch.cat([updates, grads]).detach().to(torch.float64)
    gram = (stacked @ stacked.T).cpu().numpy()
    return 0.5 * (gram + gram.T)


class CombineRule(abc.ABC):
    """``(a, b)`` from the joint Gram matrix of ``[U; G]`` and the loss values; ``Δ = aᵀU + bᵀG``.

    Rules that remember something between steps (``progress``) keep it as state and override
    :meth:`state_dict` / :meth:`load_state_dict`.
    """

    name = ""

    @abc.abstractmethod
    def coefficients(self, gram: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(a, b)``, each ``K`` float64, from ``gram`` (``2K × 2K``) and ``values`` (``K``)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise HyperparameterError(f"combine rule {self.name!r} keeps no state, got {state}")


def combine(
    rule: CombineRule, updates: Tensor, grads: Tensor, values: Tensor | np.ndarray
) -> Tensor:
    """``Δ = aᵀU + bᵀG`` for one step of ``rule`` (``U``, ``G``: ``K × P``; ``values``: ``K``)."""
    check_update_matrices(updates, grads)
    K = updates.shape[0]
    vals = np.asarray(
        values.detach().cpu().double().numpy() if isinstance(values, Tensor) else values,
        dtype=np.float64,
    ).reshape(-1)
    if vals.shape != (K,):
        raise HyperparameterError(f"values must hold one loss value per row ({K}), got {vals}")
    a, b = rule.coefficients(updates_grads_gram(updates, grads), vals)
    a_t = torch.as_tensor(a, dtype=updates.dtype, device=updates.device)
    b_t = torch.as_tensor(b, dtype=grads.dtype, device=grads.device)
    return a_t @ updates + b_t @ grads


def _split(gram: np.ndarray) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    K = gram.shape[0] // 2
    return K, gram[:K, :K], gram[K:, K:], gram[K:, :K]


@dataclass
class SumRule(CombineRule):
    """The paper's rule: ``Δ = Σ_k u_k`` (An et al. 2025)."""

    name = "sum"

    def coefficients(self, gram: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        K = gram.shape[0] // 2
        return np.ones(K), np.zeros(K)


@dataclass
class ProjectedSum(CombineRule):
    """``Δ = Σ_k π(u_k)``: every update projected onto the dual cone of the updates (UPGrad)."""

    name = "upgrad"

    def coefficients(self, gram: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from autobalance.methods.aggregators.upgrad import upgrad_weights  # (import cycle)

        K, uu, _, _ = _split(gram)
        return K * upgrad_weights(uu), np.zeros(K)


@dataclass
class ConflictFreeUpdates(CombineRule):
    """ConFIG on the updates: equal positive cosine with every ``u_k``, length ``Σ u_kᵀ d̂``."""

    name = "config"

    def coefficients(self, gram: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from autobalance.methods.aggregators.conflict_free import config_weights  # (cycle)

        K, uu, _, _ = _split(gram)
        return config_weights(uu), np.zeros(K)


@dataclass
class DescentCone(CombineRule):
    """``Δ = argmin_{G d ≥ 0} ‖d − Σ u_k‖²``: the sum, corrected so that no loss rises."""

    name = "descent-cone"

    def coefficients(self, gram: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from autobalance.methods.aggregators._qp import nonneg_qp  # (import cycle)

        K, _, gg, gu = _split(gram)
        linear = gu @ np.ones(K)  # G Σ u_k
        if np.all(linear >= 0):
            return np.ones(K), np.zeros(K)
        lam = nonneg_qp(gg, linear[:, None])[:, 0]
        return np.ones(K), lam


@dataclass
class Precedence(CombineRule):
    """Conflicts go to the larger gradient: the others yield the part of their update that opposes.

    The updates are visited in order of decreasing raw gradient norm ``‖g_k‖`` (ties: loss
    order).  Each update ``u'_k`` is projected, one after the other, onto the normal plane of
    every earlier (larger-gradient) projected update it conflicts with (PCGrad's projection, Yu
    et al. 2020, Eq. (1), made one-sided and ordered)::

        u'_k ← u'_k − (⟨u'_k, u'_j⟩ / ‖u'_j‖²) u'_j      if ⟨u'_k, u'_j⟩ < 0,  ‖g_j‖ ≥ ‖g_k‖

    and ``Δ = Σ_k u'_k``.  A conflict is decided as one Adam on the summed loss would decide it
    (by gradient size); the loser keeps the part of its (per-loss normalised) update that does
    not oppose the winner.  The largest-gradient update is kept whole; without conflicts
    ``Δ = Σ u_k``.  Every ``u'_k`` is a combination of the updates, so ``Δ = aᵀU``.
    """

    name = "precedence"

    def coefficients(self, gram: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        K, uu, gg, _ = _split(gram)
        order = sorted(range(K), key=lambda k: (-gg[k, k], k))
        rows = np.eye(K)  # rows[k]: u'_k = rows[k] @ U
        # An update projected to (numerically) nothing leaves the others alone: a scale-relative
        # threshold, so that the rule stays linear in U under rounding.
        tiny = 1e-12 * float(np.max(np.diag(uu), initial=0.0))
        for pos, k in enumerate(order):
            for j in order[:pos]:
                inner = rows[k] @ uu @ rows[j]
                norm_sq = rows[j] @ uu @ rows[j]
                if inner < 0 and norm_sq > tiny:
                    rows[k] = rows[k] - (inner / norm_sq) * rows[j]
        return rows.sum(axis=0), np.zeros(K)


@dataclass
class ProgressWeighted(CombineRule):
    """``Δ = Σ w_k u_k``, ``w_k = K r_k / Σ r_j``, ``r_k = L_k / L_k(first step)``.

    ``temperature`` τ > 0 sharpens (τ < 1) or flattens (τ > 1) the weights:
    ``w = K softmax(log r / τ)``; τ = 1 is the plain ratio.
    """

    name = "progress"
    temperature: float = 1.0
    reference: list[float] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if not (isinstance(self.temperature, int | float) and self.temperature > 0):
            raise HyperparameterError(f"temperature must be > 0, got {self.temperature!r}")

    def coefficients(self, gram: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        K = gram.shape[0] // 2
        if not np.all(np.isfinite(values)):
            raise HyperparameterError(
                f"combine rule 'progress' weighs the updates by the loss values, got {values} "
                "(step(grads=...) carries none: pass the losses)"
            )
        if self.reference is None:
            self.reference = [float(v) for v in values]
        reference = np.asarray(self.reference)
        ratio = np.divide(values, reference, out=np.zeros(K), where=reference > 0)
        logs = np.log(np.maximum(ratio, 1e-300)) / float(self.temperature)
        w = np.exp(logs - logs.max())
        return K * w / w.sum(), np.zeros(K)

    def state_dict(self) -> dict[str, Any]:
        return {"reference": self.reference}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        ref = state.get("reference")
        self.reference = None if ref is None else [float(v) for v in ref]


def shared_second_moment(updates: Tensor, second_moments: Tensor, eps: float) -> Tensor:
    """Per-loss first moments over one shared second moment, per coordinate::

        Δ = Σ_k lr·m̂_k / (√(Σ_j v̂_j) + ε),     lr·m̂_k = u_k ⊙ (√v̂_k + ε)

    ``updates`` ``u_k`` and ``second_moments`` ``v̂_k`` (bias-corrected) are ``K × P``.
    """
    numerators = updates * (second_moments.sqrt() + eps)
    return numerators.sum(dim=0) / (second_moments.sum(dim=0).sqrt() + eps)


def adam_blend(
    updates: Tensor, second_moments: Tensor, summed_second_moment: Tensor, eps: float, alpha: float
) -> Tensor:
    """``Δ = (1 − α)·Adam(Σ g) + α·Σ u_k`` with Adam's update written from the per-loss moments::

        Adam(Σ g) = Σ_k lr·m̂_k / (√v̂ + ε)       (v̂: second moment of the summed gradient)

    (the first moment is linear in the gradients, so one Adam's step is the sum of the per-loss
    numerators over its own denominator).  ``alpha`` ∈ [0, 1]: 0 is Adam, 1 the paper's sum.
    """
    if not 0.0 <= alpha <= 1.0 or not math.isfinite(alpha):
        raise HyperparameterError(f"alpha must lie in [0, 1], got {alpha}")
    numerators = updates * (second_moments.sqrt() + eps)
    adam = numerators.sum(dim=0) / (summed_second_moment.sqrt() + eps)
    return (1.0 - alpha) * adam + alpha * updates.sum(dim=0)


#: The post-combine rules by name: the Gram rules and the moment rules.
RULES: Catalog[CombineRule | MomentRule] = Catalog("combine rule")
for _cls in (
    SumRule,
    ProjectedSum,
    ConflictFreeUpdates,
    DescentCone,
    Precedence,
    ProgressWeighted,
):
    RULES.add(_cls.name, _cls, family="gram")
RULES.add(SignConsensus.name, SignConsensus, family="moments")
RULES.add(AveragedConsensus.name, AveragedConsensus, family="moments")
RULES.add(FlooredVotes.name, FlooredVotes, family="moments")
RULES.add(ProtectedConsensus.name, ProtectedConsensus, family="moments")
for _scaled in (
    BalancedConsensus,
    GuardedConsensus,
    GuardedMean,
    DampedConsensus,
    BalancedSum,
    BalancedBlend,
    BalancedDiscount,
    BalancedConcede,
    BalancedGraded,
    BalancedPersistent,
    BalancedAnneal,
):
    RULES.add(_scaled.name, _scaled, family="moments")


def rule_for(combine: Any) -> CombineRule | MomentRule | None:
    """The post-combine rule ``combine`` names (or is); ``None`` for "sum", "mean" and weights.

    A name may carry the rule's parameters, ``"balanced-persistent:beta=0.9"`` (checked by the
    catalog: an unknown or ill-typed parameter is a clear error); each call builds a new rule,
    so optimizers made from one string never share a rule's state.
    """
    if isinstance(combine, CombineRule | MomentRule):
        return combine
    if isinstance(combine, str) and combine not in ("sum", "mean"):
        name, params = parse_named_spec(combine, "combine")
        if name not in RULES:
            raise HyperparameterError(
                f"combine must be 'sum', 'mean', a mapping of weights or a combine rule "
                f"({', '.join(RULES.names())}), optionally with parameters "
                f"('name:key=value,...'), got {combine!r}"
            )
        return RULES.create(name, **params)
    return None
