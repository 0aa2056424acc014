"""``balanced-anneal`` and ``balanced-persistent``: balanced-concede whose step shrinks where its
decision keeps alternating.

Issue 15, round 7.  The per-loss rules of :mod:`autobalance.optim.scaled_rules` never anneal:
every loss's own gradient stays consistent at the compromise between the losses, so its update
``u_k = lr · m̂_k / (√v̂_k + ε)`` stays about ``lr`` long per coordinate, and a rule that hands a
contested coordinate to the winner moves it by a full update even where the winner changes
every few steps.  One Adam on a weighted sum does anneal there: the summed gradient changes
sign, its first moment averages out while its second moment remembers, and the step shrinks
(``docs/postcombine.md`` §9 measures the per-loss rules' late steps on Helmholtz).  The rules
here keep the per-loss states and balanced-concede's step, and multiply it by how persistent
the balanced decision has been at that coordinate::

    σ_i = sign Σ_k m_{k,i} / s_k                       (balanced-consensus' decision)
    c_i ← β c_i + (1 − β) σ_i                          (its EMA over the steps)
    Δ_i = |c_i| · K · ū_i,        ū_i = Σ_k u_{k,i} a_{k,i} / max(1, Σ_k a_{k,i})

(``a``, ``s`` and ``ū`` as in :func:`~autobalance.optim.scaled_rules.balanced_consensus``).
Where one side keeps winning (Burgers' contested coordinates) ``|c| = 1`` and the step is
balanced-concede's; where the decision alternates (a compromise between the losses, reached)
``|c| → 0`` and the step shrinks, as one Adam's does at a minimum.  How ``c`` starts decides
what happens in the first steps:

* ``balanced-anneal`` (:class:`BalancedAnneal`, the rule of ``autobalance-balanced-anneal``):
  ``c`` starts at the first decision (``c_1 = σ_1``, a *warm start*), so a decision that
  alternates from the start is damped by about ``β^t``, gradually over ``1 / (1 − β)`` steps.
* ``balanced-persistent`` (:class:`BalancedPersistent`): ``c`` starts at zero and is
  bias-corrected, ``ĉ = c / (1 − β^t)`` (Adam's correction), so the step is damped from the
  first alternation on.  It anneals Helmholtz as well, and is trapped on reaction–diffusion on
  about half the seeds: the trap is set in the first thousand steps (§8 of the study).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from autobalance.errors import HyperparameterError
from autobalance.optim.scaled_rules import ScaledMomentRule, balanced_direction, concede_toward

__all__ = ["BalancedAnneal", "BalancedPersistent", "decision_persistence"]


def decision_persistence(
    previous: Tensor, first_moments: Tensor, scales: Tensor, beta: float
) -> Tensor:
    """One EMA step of the balanced decision ``σ = sign Σ_k m_k / s_k``: ``β c + (1 − β) σ``.

    ``previous`` (``P``) is ``c`` before the step (zeros before the first); a zero scale counts
    as the smallest positive number, a tie (``Σ_k m_k / s_k = 0``) as ``σ = 0``.
    """
    return _ema(previous, balanced_direction(first_moments, scales), beta)


def _ema(previous: Tensor, direction: Tensor, beta: float) -> Tensor:
    return beta * previous + (1.0 - beta) * direction


@dataclass
class BalancedPersistent(ScaledMomentRule):
    """balanced-concede times the persistence ``|c|`` of its decision (module docstring).

    ``beta`` ∈ [0, 1) is the EMA's decay: its memory is about ``1 / (1 − β)`` steps (0.99: a
    hundred).  ``β = 0`` is balanced-concede where the decision is not a tie.  ``warm_start``:
    ``c`` starts at the first decision instead of being bias-corrected (:class:`BalancedAnneal`,
    whose default it is), so a decision that alternates from the first step on is damped by
    about ``β^t``, gradually over ``1 / (1 − β)`` steps, where the bias-corrected average
    reaches zero within a few steps.  The state (the step count and one ``c`` per parameter
    bucket) is saved with the optimizer.
    """

    name = "balanced-persistent"
    beta: float = 0.99
    warm_start: bool = False
    steps: int = field(default=0, init=False)
    persistence: list[Tensor] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        beta = self.beta
        if not (isinstance(beta, int | float) and math.isfinite(beta) and 0 <= beta < 1):
            raise HyperparameterError(f"beta must be a number in [0, 1), got {beta!r}")
        if not isinstance(self.warm_start, bool):
            raise HyperparameterError(f"warm_start must be True or False, got {self.warm_start!r}")

    def combine_scaled(
        self, updates: Tensor, first_moments: Tensor, second_moments: Tensor, scales: Tensor
    ) -> Tensor:
        return self.combine_buckets([(updates, first_moments, second_moments)], scales)[0]

    def combine_buckets(
        self, buckets: Sequence[tuple[Tensor, Tensor, Tensor]], scales: Tensor
    ) -> list[Tensor]:
        if not self.persistence:
            self.persistence = [u.new_zeros(u.shape[1]) for u, _, _ in buckets]
        if [c.numel() for c in self.persistence] != [u.shape[1] for u, _, _ in buckets]:
            raise HyperparameterError(
                f"combine rule {self.name!r} holds state for buckets of "
                f"{[c.numel() for c in self.persistence]} coordinates, got "
                f"{[u.shape[1] for u, _, _ in buckets]}"
            )
        self.steps += 1
        # warm start: the first step's c is its decision itself (an EMA with β = 0 once)
        beta = 0.0 if self.warm_start and self.steps == 1 else float(self.beta)
        correction = 1.0 if self.warm_start else 1.0 - beta**self.steps
        deltas = []
        for index, (u, m, _) in enumerate(buckets):
            direction = balanced_direction(m, scales)  # read once: the EMA's input and the step's
            c = _ema(self.persistence[index].to(u), direction, beta)
            self.persistence[index] = c
            deltas.append((c / correction).abs() * concede_toward(u, direction))
        return deltas

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "persistence": [c.detach().clone() for c in self.persistence]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        steps, persistence = state.get("steps"), state.get("persistence")
        if (
            set(state) != {"steps", "persistence"}
            or not isinstance(steps, int)
            or steps < 0
            or not isinstance(persistence, list)
            or not all(isinstance(c, Tensor) and c.dim() == 1 for c in persistence)
        ):
            raise HyperparameterError(
                f"combine rule {self.name!r} expects a state with 'steps' (an integer ≥ 0) and "
                f"'persistence' (a list of 1-D tensors), got keys {sorted(state)}"
            )
        self.steps = steps
        self.persistence = [c.detach().clone() for c in persistence]


@dataclass
class BalancedAnneal(BalancedPersistent):
    """:class:`BalancedPersistent` started warm: ``c_1 = σ_1``, then ``|c|`` decays by about
    ``β`` per step where the decision alternates (``β`` = 0.99 as screened; module docstring)."""

    name = "balanced-anneal"
    warm_start: bool = True
