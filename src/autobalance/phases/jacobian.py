"""The stacked, weighted residual vector ``ρ(θ)`` of an objective and its Jacobian ``J = ∂ρ/∂θ``.

With per-point residuals ``r_k`` (``N_k`` entries) and ``L_k = mean(r_k²)``::

    ρ = [ sqrt(w_1/N_1) r_1 ; ... ; sqrt(w_K/N_K) r_K ],      Σ_k w_k L_k = ‖ρ‖²

Reverse mode gives one row of ``J`` per backward pass, and a backward pass through the whole
point set costs ``O(m)``, so the whole Jacobian would cost ``O(m²)``.  PINN residuals are
pointwise (row ``i`` of ``r_k`` depends on point ``i`` only), so the point sets are cut into
chunks of about ``chunk`` points and each chunk's rows come from one batched backward pass
(``is_grads_batched``) through that chunk alone: ``O(m · chunk)`` in all.  ``chunk=0`` uses
the whole point set at once (for residuals that are not pointwise).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from autobalance.errors import ConfigError
from autobalance.phases.objective import Batch, Objective

__all__ = ["StackedResiduals", "chunk_batch", "residual_jacobian", "stacked_residuals"]


@dataclass(frozen=True)
class StackedResiduals:
    """``ρ`` (``(m,)``), its Jacobian ``J`` (``(m, n)``, or ``None``), the named loss values
    ``L_k = mean(r_k²)`` and the total ``Σ w_k L_k = ‖ρ‖²``."""

    rho: Tensor
    jacobian: Tensor | None
    values: dict[str, float]
    total: float


def chunk_batch(batch: Batch, chunk: int) -> list[dict[str, Tensor]]:
    """Cut every point set of ``batch`` into the same number of consecutive pieces, about
    ``chunk`` points in the largest; every piece keeps at least one point of every set."""
    if chunk <= 0 or not batch:
        return [dict(batch)]
    sizes = [int(v.shape[0]) for v in batch.values()]
    pieces = max(1, min(math.ceil(max(sizes) / chunk), min(sizes)))
    split = {k: torch.tensor_split(v, pieces, dim=0) for k, v in batch.items()}
    return [{k: split[k][j] for k in batch} for j in range(pieces)]


def _checked(residuals: dict[str, Tensor], names: Sequence[str] | None) -> dict[str, Tensor]:
    if names is not None and list(residuals) != list(names):
        raise ConfigError(
            f"the residual names changed between chunks: {list(names)} then {list(residuals)}"
        )
    return residuals


def stacked_residuals(
    objective: Objective,
    params: Sequence[Tensor],
    *,
    chunk: int = 16,
    jacobian: bool = True,
) -> StackedResiduals:
    """``ρ`` at the current parameters and, with ``jacobian``, ``J`` (see module docstring)."""
    if objective.residuals is None:
        raise ConfigError(
            "Gauss–Newton needs the per-point residuals: build the Objective with residuals=..."
        )
    pieces = chunk_batch(objective.batch, chunk if jacobian else 0)
    names: list[str] | None = None
    raw: dict[str, list[Tensor]] = {}
    rows: dict[str, list[Tensor]] = {}
    for piece in pieces:
        with torch.enable_grad():
            res = _checked({k: v.reshape(-1) for k, v in objective.residuals(piece).items()}, names)
        names = list(res)
        for name, r in res.items():
            raw.setdefault(name, []).append(r.detach())
        if jacobian:
            flat = torch.cat(list(res.values()))
            eye = torch.eye(flat.numel(), dtype=flat.dtype, device=flat.device)
            grads = torch.autograd.grad(
                flat, list(params), grad_outputs=eye, is_grads_batched=True, allow_unused=True
            )
            block = torch.cat(
                [
                    (torch.zeros(flat.numel(), p.numel(), dtype=flat.dtype, device=flat.device))
                    if g is None
                    else g.reshape(flat.numel(), -1)
                    for g, p in zip(grads, params, strict=True)
                ],
                dim=1,
            )
            start = 0
            for name, r in res.items():
                rows.setdefault(name, []).append(block[start : start + r.numel()])
                start += r.numel()
    assert names is not None
    values: dict[str, float] = {}
    rho_parts: list[Tensor] = []
    jac_parts: list[Tensor] = []
    for name in names:
        r = torch.cat(raw[name])
        scale = math.sqrt(objective.weight(name) / r.numel())
        values[name] = float(r.pow(2).mean())
        rho_parts.append(scale * r)
        if jacobian:
            jac_parts.append(scale * torch.cat(rows[name]))
    rho = torch.cat(rho_parts)
    return StackedResiduals(
        rho=rho,
        jacobian=torch.cat(jac_parts) if jacobian else None,
        values=values,
        total=float(rho.pow(2).sum()),
    )


def residual_jacobian(objective: Objective, params: Sequence[Tensor], *, chunk: int = 16) -> Tensor:
    """``J = ∂ρ/∂θ``, ``(m, n)`` (see :func:`stacked_residuals`)."""
    out = stacked_residuals(objective, params, chunk=chunk, jacobian=True).jacobian
    assert out is not None
    return out
