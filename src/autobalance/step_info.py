"""What one optimisation step reports: per-loss statistics and cost accounting.

Every optimizer and method builds its :class:`StepInfo` with :func:`build_step_info`, from one
Gram matrix of the step's vectors (every statistic is a dot product over parameter coordinates):

    Φ = [∇L_1; …; ∇L_K; u_1; …; u_S; c],    Φ Φᵀ  ((K + S + 1) × (K + S + 1), float64)

with the per-loss gradients ``∇L_k``, the per-state updates ``u_s`` of a multi-state optimizer
(none for a pre-combine method) and the combined vector ``c``: the update ``Δ`` the parameters
move by (``θ ← θ − Δ``), or the gradient a pre-combine method hands to its base optimizer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from torch import Tensor

__all__ = ["COMBINED_KINDS", "LossStats", "StepInfo", "build_step_info", "joint_gram"]

#: What the last row of the Gram matrix given to :func:`build_step_info` is.
COMBINED_KINDS = ("update", "gradient")


@dataclass(frozen=True)
class LossStats:
    """Statistics of one named loss at one step.

    Attributes:
        value: the loss value at the parameters before the step.
        grad_norm: Euclidean norm of the loss's raw gradient ``‖∇L_k‖``.
        update_norm: norm of the preconditioned update ``‖u_k‖`` of the state that owns this loss
            (learning rate included, combine weight excluded); NaN when the method has no
            per-loss update (e.g. one optimizer on the summed loss).
        cosine: cosine between the raw gradient ``∇L_k`` and the combined update ``Δ`` where the
            parameters move as ``θ ← θ − Δ``.  Positive means the step decreases ``L_k`` to first
            order.  NaN where unknown or where either vector is zero.
        state: name of the optimizer state that owns this loss (the loss name itself unless
            losses are grouped).
        weight: the weight the method gave this loss at this step (weighting methods; NaN
            where the method has no per-loss weight).
    """

    value: float
    grad_norm: float = math.nan
    update_norm: float = math.nan
    cosine: float = math.nan
    state: str = ""
    weight: float = math.nan


@dataclass(frozen=True)
class StepInfo:
    """Result of ``step(losses)``.

    Attributes:
        step: number of steps taken so far, this one included (skipped steps are not counted).
        losses: per-loss statistics, in the order the losses were given.
        update_norm: norm of the combined update ``‖Δ‖`` (weight decay excluded).
        backward_passes: backward passes this step used (cost accounting).
        needs_grad_matrix: whether the method needed every loss's full gradient.
        skipped: ``True`` when the step was skipped because a loss was not finite.
        reason: why the step was skipped, empty otherwise.
        grad_cosines: ``K × K`` cosines between the raw loss gradients, ``cos(∇L_i, ∇L_j)``, in
            loss order (empty where the method does not compute per-loss gradients; NaN where a
            gradient is zero).
        update_cosines: ``S × S`` cosines between the per-state updates ``cos(u_s, u_r)``, in
            state order (empty for methods without per-loss updates).
    """

    step: int
    losses: dict[str, LossStats] = field(default_factory=dict)
    update_norm: float = math.nan
    backward_passes: int = 0
    needs_grad_matrix: bool = False
    skipped: bool = False
    reason: str = ""
    grad_cosines: tuple[tuple[float, ...], ...] = ()
    update_cosines: tuple[tuple[float, ...], ...] = ()

    @property
    def values(self) -> dict[str, float]:
        """Loss values by name."""
        return {name: s.value for name, s in self.losses.items()}

    @property
    def weights(self) -> dict[str, float]:
        """Per-loss weights by name (NaN where the method has none)."""
        return {name: s.weight for name, s in self.losses.items()}

    @property
    def total_loss(self) -> float:
        """Sum of the loss values."""
        return math.fsum(s.value for s in self.losses.values())


def joint_gram(grad_gram: Tensor, update_products: Tensor) -> list[list[float]]:
    """The Gram matrix of ``[M; Z]`` from ``G = M Mᵀ`` (``K × K``) and ``Z [M; Z]ᵀ``, as lists.

    ``M`` holds the ``K`` gradients and ``Z`` the ``R`` update rows (per-state updates, then the
    combined update), so ``update_products`` is ``R × (K + R)``: the products a multi-state
    optimizer accumulates bucket by bucket without keeping ``Z`` or ``M``.  (Assembled on the
    host: two copies instead of a few small device ops.)
    """
    g, z = grad_gram.tolist(), update_products.tolist()
    return [row + [z_row[i] for z_row in z] for i, row in enumerate(g)] + z


def _cosine_rows(
    gram: list[list[float]], norms: list[float], rows: range, columns: range
) -> tuple[tuple[float, ...], ...]:
    """``gram[i][j] / (‖φ_i‖·‖φ_j‖)`` for the given rows and columns, NaN where a norm is zero."""
    return tuple(tuple(_ratio(gram[i][j], norms[i] * norms[j]) for j in columns) for i in rows)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.nan


def build_step_info(
    step: int,
    values: Mapping[str, float],
    *,
    gram: Tensor | Sequence[Sequence[float]] | None = None,
    num_updates: int = 0,
    combined: str | None = None,
    update_of_loss: Sequence[int] | None = None,
    states: str | Sequence[str] = "",
    weights: Sequence[float] | None = None,
    backward_passes: int = 0,
    needs_grad_matrix: bool = False,
    skipped_reason: str = "",
) -> StepInfo:
    """The :class:`StepInfo` of one step, every statistic read from the Gram matrix ``Φ Φᵀ``.

    With ``Φ = [∇L_1; …; ∇L_K; u_1; …; u_S; c]`` (see the module docstring) and ``n_i = ‖φ_i‖``:
    ``grad_norm_k = n_k``, ``grad_cosines[i][j] = cos(∇L_i, ∇L_j)``, ``update_norm_k`` is the norm
    of the update that owns loss ``k``, ``update_cosines[s][r] = cos(u_s, u_r)``,
    ``cosine_k = cos(∇L_k, c)`` and ``info.update_norm = ‖c‖`` when ``c`` is the update ``Δ``.

    Args:
        step: the number of steps taken, this one included (a skipped one excluded).
        values: loss values by name, in loss order; their count is ``K``.
        gram: ``Φ Φᵀ`` (a float64 tensor or nested lists); ``None`` when the method has no
            per-loss gradients (every statistic but the values is then NaN or empty).
        num_updates: ``S``, the number of per-state update rows.
        combined: ``"update"`` or ``"gradient"`` when the last row is ``c`` (see
            :data:`COMBINED_KINDS`), ``None`` when there is none.
        update_of_loss: the update row (``0 … S−1``) that owns each loss; loss ``k`` owns row
            ``k`` by default.
        states: the state that owns each loss, in loss order, or one name for all.
        weights: the weight of each loss, in loss order (NaN when ``None``).
        backward_passes, needs_grad_matrix: cost accounting (see :class:`StepInfo`).
        skipped_reason: non-empty for a skipped step: why it was skipped.
    """
    names = list(values)
    k = len(names)
    if combined is not None and combined not in COMBINED_KINDS:
        raise ValueError(f"combined must be one of {COMBINED_KINDS} or None, got {combined!r}")
    nan = [math.nan] * k
    grad_norms, update_norms, cosines = nan, nan, nan
    grad_cosines: tuple[tuple[float, ...], ...] = ()
    update_cosines: tuple[tuple[float, ...], ...] = ()
    combined_norm = math.nan
    if gram is not None:
        g = gram.tolist() if isinstance(gram, Tensor) else [list(row) for row in gram]
        size = k + num_updates + (combined is not None)
        if len(g) != size or any(len(row) != size for row in g):
            raise ValueError(
                f"gram must be {size} × {size} ({k} gradients, {num_updates} updates"
                f"{', 1 combined row' if combined is not None else ''}), got "
                f"{len(g)} rows of lengths {sorted({len(row) for row in g})}"
            )
        norms = [math.sqrt(max(g[i][i], 0.0)) for i in range(len(g))]
        grad_norms = norms[:k]
        grad_cosines = _cosine_rows(g, norms, range(k), range(k))
        if num_updates:
            own = range(k) if update_of_loss is None else list(update_of_loss)
            if len(own) != k or not all(0 <= s < num_updates for s in own):
                raise ValueError(
                    f"update_of_loss must give each of {k} losses a row < "
                    f"{num_updates}, got {list(own)}"
                )
            update_norms = [norms[k + s] for s in own]
            update_rows = range(k, k + num_updates)
            update_cosines = _cosine_rows(g, norms, update_rows, update_rows)
        if combined is not None:
            c = k + num_updates
            cosines = [_ratio(g[i][c], norms[i] * norms[c]) for i in range(k)]
            combined_norm = norms[c] if combined == "update" else math.nan
    owners = [states] * k if isinstance(states, str) else list(states)
    given = nan if weights is None else [float(w) for w in weights]
    if len(owners) != k or len(given) != k:
        raise ValueError(
            f"{k} losses but {len(owners)} states and {len(given)} weights: give one per loss"
        )
    return StepInfo(
        step=step,
        losses={
            n: LossStats(
                value=values[n],
                grad_norm=grad_norms[i],
                update_norm=update_norms[i],
                cosine=cosines[i],
                state=owners[i],
                weight=given[i],
            )
            for i, n in enumerate(names)
        },
        update_norm=combined_norm,
        backward_passes=backward_passes,
        needs_grad_matrix=needs_grad_matrix,
        skipped=bool(skipped_reason),
        reason=skipped_reason,
        grad_cosines=grad_cosines,
        update_cosines=update_cosines,
    )
