"""MultiAdam (Yao et al., ICML 2023): Adam moments per group of losses, group updates averaged.

Z. Yao, J. Wang, H. Li, Z. Hao, H. Su, J. Zhu, "MultiAdam: Parameter-wise Scale-invariant
Optimizer for Multiscale Training of Physics-informed Neural Networks", ICML 2023, Alg. 1.
For each group ``i`` of losses with gradient ``g_i = ∇ Σ_{k∈i} L_k``::

    m_i ← β1 m_i + (1 − β1) g_i            v_i ← β2 v_i + (1 − β2) g_i²
    m̂_i = m_i / (1 − β1^t)                 v̂_i = v_i / (1 − β2^t)
    θ   ← θ − lr · (1/n) Σ_i m̂_i / (sqrt(v̂_i) + ε)

with ``β1 = β2 = 0.99`` by default.  The grouping of the paper's experiments (and PINNacle's
implementation) puts the PDE residual terms in one group and everything else (boundary,
initial, data) in the other; ``grouping="per-term"`` gives every loss its own group.

This is :class:`~autobalance.AutoBalance` with ``combine="mean"``, grouped states and an Adam
base: MultiAdam and AutoBalance differ in the grouping, the combination (mean vs sum, i.e. the
effective learning rate) and the betas.  Weight decay is the coupled L2 of ``torch.optim.Adam``,
added to every group's gradient (as MultiAdam's reference implementation does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from autobalance.errors import HyperparameterError
from autobalance.optim.autobalance import AutoBalance

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

__all__ = ["PDE_TERM_PREFIXES", "MultiAdam", "pde_vs_rest"]

#: Loss names that start with one of these are PDE terms for the default grouping.
PDE_TERM_PREFIXES: tuple[str, ...] = ("residual", "pde", "momentum", "continuity")

_GROUPINGS = ("pde-vs-rest", "per-term")


def pde_vs_rest(
    pde_terms: Sequence[str] | None = None,
) -> Callable[[list[str]], dict[str, list[str]]]:
    """Grouping rule: ``{"pde": PDE terms, "rest": the others}`` (empty groups left out).

    PDE terms are ``pde_terms`` when given, else the names starting with one of
    :data:`PDE_TERM_PREFIXES`.
    """

    def groups(names: list[str]) -> dict[str, list[str]]:
        if pde_terms is not None:
            unknown = [n for n in pde_terms if n not in names]
            if unknown:
                raise HyperparameterError(
                    f"multiadam: pde_terms {unknown} are not among the losses {names}"
                )
            pde = [n for n in names if n in pde_terms]
        else:
            pde = [n for n in names if n.startswith(PDE_TERM_PREFIXES)]
        rest = [n for n in names if n not in pde]
        return {name: members for name, members in (("pde", pde), ("rest", rest)) if members}

    return groups


class MultiAdam(AutoBalance):
    """MultiAdam: per-group Adam moments, the mean of the group updates (see module docstring).

    Args:
        params: parameters or parameter groups.
        lr: learning rate (1e-3).
        betas: ``(β1, β2)``, default ``(0.99, 0.99)`` as in the paper.
        eps: ``ε`` (1e-8).
        weight_decay: coupled L2 penalty (0).
        grouping: "pde-vs-rest" (default) or "per-term".
        pde_terms: the PDE loss names for "pde-vs-rest" (default: names starting with
            "residual", "pde", "momentum" or "continuity").
        nonfinite: "raise" or "skip" on NaN/Inf losses.
        process_group: average losses and per-loss gradients over its ranks (data-parallel
            training, :mod:`autobalance.distributed`); ``None``: one process.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.99, 0.99),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        grouping: str = "pde-vs-rest",
        pde_terms: Sequence[str] | None = None,
        nonfinite: str = "raise",
        process_group: ProcessGroup | None = None,
    ) -> None:
        if grouping not in _GROUPINGS:
            raise HyperparameterError(
                f"multiadam: grouping must be one of {', '.join(_GROUPINGS)}, got {grouping!r}"
            )
        if grouping == "per-term" and pde_terms is not None:
            raise HyperparameterError("multiadam: pde_terms only applies to grouping='pde-vs-rest'")
        super().__init__(
            params,
            base=torch.optim.Adam,
            combine="mean",
            groups=pde_vs_rest(pde_terms) if grouping == "pde-vs-rest" else None,
            nonfinite=nonfinite,
            process_group=process_group,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
        )
