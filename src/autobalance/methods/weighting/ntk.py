"""NTK weighting: weights from the traces of the per-term neural tangent kernels.

Wang, Yu & Perdikaris, "When and Why PINNs Fail to Train: A Neural Tangent Kernel Perspective",
J. Comput. Phys. 449 (2022), Algorithm 1, with the per-term traces averaged over points as in
Wang et al., "An Expert's Guide to Training PINNs" (arXiv:2308.08468):

    λ_k = Tr(K) / Tr(K_kk),    Tr(K) = Σ_j Tr(K_jj),
    Tr(K_kk) = mean_i ‖∂r_k(x_i)/∂θ‖²       over the points x_i of term k,

where ``r_k`` is the pointwise term with ``L_k = mean(r_k²)``.  The term whose kernel has the
*smaller* trace (the slower-converging one) gets the *larger* weight.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from autobalance.errors import LossValueError, check_in_range
from autobalance.methods.weighting._common import (
    SeededGenerator,
    check_every,
    check_int,
    is_update_step,
)
from autobalance.methods.weighting.base import STATE, Weighting, WeightingStep

__all__ = ["NTKWeighting", "mean_tangent_kernel_trace"]


def mean_tangent_kernel_trace(
    pointwise: Tensor, params: Sequence[Tensor], rows: Tensor | None = None
) -> float:
    """``mean_i ‖∂r_i/∂θ‖²`` over the entries ``r_i`` of ``pointwise[rows]`` (exact).

    Each entry's gradient is one vector-Jacobian product with a unit vector; the products for all
    entries run as one batched backward pass (``torch.autograd.grad(..., is_grads_batched=True)``,
    vmapped over the unit vectors).  The graph is retained.  Parameters that the term does not
    reach contribute nothing.
    """
    selected = pointwise if rows is None else pointwise[rows]
    flat = selected.reshape(-1)
    m = flat.numel()
    eye = torch.eye(m, dtype=flat.dtype, device=flat.device)
    grads = torch.autograd.grad(
        flat,
        list(params),
        grad_outputs=eye,
        retain_graph=True,
        allow_unused=True,
        is_grads_batched=True,
    )
    total = torch.zeros(m, dtype=torch.float64, device=flat.device)
    for g in grads:
        if g is not None:
            total += g.reshape(m, -1).double().square().sum(dim=1)
    return float(total.mean())


@dataclass(eq=False)
class NTKWeighting(Weighting):
    """NTK-trace weights (Wang, Yu & Perdikaris 2022, Algorithm 1).

    Needs the pointwise terms: the losses must be a :class:`~autobalance.losses.NamedLosses`
    whose ``pointwise[name]`` is attached to the graph for every loss.

    Estimator: on update steps (``1, 1 + every, …``) ``n_points`` rows (points) of each term are
    drawn without replacement by the method's own seeded generator (all rows when there are fewer)
    and ``Tr(K_kk)`` is estimated by the exact mean of ``‖∂r/∂θ‖²`` over the drawn entries (all
    output components of a drawn point count as entries, matching ``L = mean(r²)``).  This is an
    unbiased estimate of the batch mean, exact when ``n_points ≥ N``.  The first update sets
    ``λ = λ̂``; later ones ``λ ← ema·λ + (1 − ema)·λ̂`` (``ema = 0``: plain replacement, as in the
    paper).  Between updates the weights are held.  A term with a zero trace keeps its weight.
    ``info.backward_passes`` counts each vector-Jacobian product of the estimate as one pass
    (``1 + Σ_k entries drawn`` on update steps, 1 otherwise).

    Deviations: mean (not sum) over points, as in the expert's guide — with sums the weights also
    carry the ratio of the numbers of points; the subsample (the paper uses the whole batch).

    Data-parallel (a ``process_group``): each rank estimates the traces on its own points (drawn
    by its own copy of the generator) and the estimates are averaged over the ranks, which is the
    single-process value when every rank uses all its points (``n_points`` ≥ its share).

    Args:
        every: update period in steps (default 100).
        n_points: points per term for the trace estimate (default 128).
        ema: ``∈ [0, 1)``, weight of the old value (default 0).
        seed: seed of the point-sampling generator (default 0).
    """

    name: ClassVar[str] = "ntk"
    every: int = 100
    n_points: int = 128
    ema: float = 0.0
    seed: int = 0
    generator: SeededGenerator = field(init=False, metadata=STATE)
    lambdas: list[float] | None = field(default=None, init=False, metadata=STATE)
    #: The last estimated traces ``Tr(K_kk)``, in loss order (diagnostics; not saved).
    last_traces: list[float] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.every = check_every(self.every)
        self.n_points = check_int("n_points", self.n_points, minimum=1)
        self.ema = check_in_range("ema", self.ema, 0.0, 1.0, closed="[)")
        self.generator = SeededGenerator(self.seed)

    def _pointwise(self, ctx: WeightingStep) -> list[Tensor]:
        pointwise = getattr(ctx.original, "pointwise", None)
        if not isinstance(pointwise, dict):
            raise LossValueError(
                "method 'ntk' needs the pointwise terms of the losses: pass a "
                "autobalance.losses.NamedLosses with pointwise={name: r} (L = mean(r²)); "
                f"got a plain {type(ctx.original).__name__}"
            )
        missing = [n for n in ctx.names if n not in pointwise]
        if missing:
            raise LossValueError(
                f"method 'ntk' needs the pointwise term of every loss; missing for "
                f"{', '.join(map(repr, missing))}"
            )
        for name in ctx.names:
            r = pointwise[name]
            if not isinstance(r, Tensor) or r.dim() == 0 or not r.requires_grad:
                raise LossValueError(
                    f"method 'ntk': pointwise[{name!r}] must be a (N,) or (N, C) tensor attached "
                    "to the autograd graph"
                )
        return [pointwise[n] for n in ctx.names]

    def traces(self, ctx: WeightingStep) -> list[float]:
        """Estimated ``Tr(K_kk)`` of every term (draws points from the generator)."""
        traces = []
        for r in self._pointwise(ctx):
            n = r.shape[0]
            rows = None
            if n > self.n_points:
                rows = torch.randperm(n, generator=self.generator.generator)[: self.n_points]
                rows = rows.to(r.device)
            traces.append(mean_tangent_kernel_trace(r, ctx.params, rows))
            selected = r if rows is None else r[rows]
            ctx.extra_backward_passes += selected.numel()
        return traces if ctx.ranks is None else ctx.ranks.floats(traces)

    def __call__(self, ctx: WeightingStep) -> Sequence[float]:
        if self.lambdas is None or is_update_step(ctx.step, self.every):
            traces = self.traces(ctx)
            self.last_traces = traces
            total = math.fsum(traces)
            old = self.lambdas
            new = []
            for k, trace in enumerate(traces):
                if trace <= 0:
                    new.append(1.0 if old is None else old[k])
                elif old is None:
                    new.append(total / trace)
                else:
                    new.append(self.ema * old[k] + (1 - self.ema) * total / trace)
            self.lambdas = new
        return list(self.lambdas)
