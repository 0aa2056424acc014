"""Adam's diagonal preconditioner, preconditioned Hessians and the effective condition number.

Adam moves the parameters by ``Δθ = lr · m̂ / P`` with the diagonal preconditioner

    P = sqrt(v̂) + eps,        v̂ = v / (1 − β2^t)         (AMSGrad: v̂ = max_t v / (1 − β2^t))

where ``v`` is the exponential moving average of squared gradients and ``t`` the step count.
Near a point, the iteration behaves like preconditioned gradient descent, whose speed is governed
by the spectrum of ``P⁻¹H``.  ``P⁻¹H`` is similar to the symmetric
**preconditioned Hessian** ``P^{-1/2} H P^{-1/2}`` (same eigenvalues), which is what we compute.

* Single Adam (``torch.optim.Adam``/``AdamW``, or the ``"adam"``/``"adamw"`` methods): one ``P``
  from the second moments of the summed gradient.
* AutoBalance: one ``P_k`` per state, from that state's own second moments; the preconditioner of
  loss ``k`` is that of the state that owns it.

**Effective condition number** of a symmetric matrix with eigenvalues ``λ_1 ≤ ... ≤ λ_n`` and
``λ_n > 0`` (our definition; Hessians of networks are singular and indefinite, so the plain
``λ_max / λ_min`` is infinite or negative)::

    κ_eff(τ) = λ_n / min{ λ_i : λ_i > τ · λ_n }          (relative threshold τ, default 1e-6)

so ``1 ≤ κ_eff ≤ 1/τ``.  It is reported with the **negative spectral mass**
``Σ_{λ_i<0} |λ_i| / Σ_i |λ_i|`` (the share of the curvature that is negative, which κ_eff
ignores) and the fraction of eigenvalues at or below the threshold.

κ_eff **saturates**: when the spectrum is continuous down to zero (PINN Hessians: most
eigenvalues lie below ``1e-6·λ_n``), the smallest eigenvalue above ``τλ_n`` is ``≈ τλ_n`` and
``κ_eff(τ) ≈ 1/τ`` whatever the matrix.  Two scale-free measures that do not saturate:

* **Mass condition number** (the headline measure).  With the positive eigenvalues sorted
  decreasingly ``μ_1 ≥ μ_2 ≥ … ≥ μ_p > 0`` (weights ``w_i``, 1 for a full spectrum) and their
  cumulative curvature share ``C_j = Σ_{i≤j} w_i μ_i / Σ_{i≤p} w_i μ_i``::

      κ_mass(q) = μ_1 / μ_{j(q)},        j(q) = min{ j : C_j ≥ q }        (q = 0.9, 0.99)

  the spread of the eigenvalues that carry the fraction ``q`` of the positive curvature
  ``tr(H_+)``.  Eigenvalues below ``μ_{j(q)}`` carry less than ``1 − q`` of ``tr(H_+)`` in total,
  so any number of near-zero (null-space, round-off) eigenvalues changes it by nothing;
  ``1 ≤ κ_mass(q) ≤ μ_1/μ_p``, invariant under ``H → cH`` (``c > 0``) and increasing in ``q``.
* **Median spread** ``λ_n / median{λ_i : λ_i > 0}`` (weighted median).  Non-saturating too, but
  for singular Hessians the median positive eigenvalue usually lies in the round-off noise of
  the null space, so this ratio measures the null space's size, not the conditioning; it is
  recorded for completeness.

With Lanczos (large models) the "spectrum" is the Ritz values ``θ_j`` with the SLQ weights
``τ_j²`` (:mod:`~autobalance.diagnostics.hessian`); pass them as ``weights`` and every measure
becomes its stochastic-Lanczos-quadrature estimate (sums ``Σ_i f(λ_i)/n`` replaced by
``Σ_j τ_j² f(θ_j)``); κ_eff then uses the Ritz values themselves.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from autobalance.errors import AutoBalanceError, LossNameError
from autobalance.optim import AutoBalance

__all__ = [
    "DEFAULT_MASS_FRACTIONS",
    "DEFAULT_REL_THRESHOLD",
    "DEFAULT_THRESHOLDS",
    "PreconditionedOperator",
    "PreconditionerUnavailableError",
    "SpectrumSummary",
    "adam_preconditioner",
    "autobalance_preconditioner",
    "curvature_measures",
    "effective_condition_number",
    "mass_condition_number",
    "median_spread",
    "method_preconditioner",
    "preconditioned_hessian",
    "summarize_spectrum",
]

#: Default relative threshold ``τ`` of :func:`effective_condition_number`.
DEFAULT_REL_THRESHOLD = 1e-6
#: Thresholds ``τ`` at which :func:`curvature_measures` reports ``κ_eff(τ)``.
DEFAULT_THRESHOLDS = (1e-2, 1e-4, 1e-6)
#: Curvature fractions ``q`` at which :func:`curvature_measures` reports ``κ_mass(q)``.
DEFAULT_MASS_FRACTIONS = (0.9, 0.99)


#: Relative slack of the cumulative-share comparisons (rounding-proof ties).
_TIE = 1e-12


class PreconditionerUnavailableError(AutoBalanceError):
    """The method keeps no diagonal preconditioner that can be read (not Adam-like)."""


def _flat(pieces: list[Tensor]) -> Tensor:
    """Concatenate flattened pieces in float64, on the device of the first piece."""
    return torch.cat([p.detach().reshape(-1).to(torch.float64) for p in pieces])


def _group_of(optimizer: torch.optim.Optimizer) -> dict[int, dict[str, Any]]:
    return {id(p): g for g in optimizer.param_groups for p in g["params"]}


def _denominator(v: Tensor, step: float, group: dict[str, Any]) -> Tensor:
    """``sqrt(v / (1 − β2^t)) + eps``; ``v`` uncorrected where ``t = 0`` (as the optimizers do:
    ``v = 0`` there)."""
    bc2 = 1.0 - float(group["betas"][1]) ** step
    return (v / bc2 if bc2 > 0 else v).sqrt() + float(group["eps"])


def _adam_states(
    optimizer: torch.optim.Optimizer, params: Sequence[Tensor], no_moments: str
) -> Iterator[tuple[dict[str, Any], dict[str, Any], str]]:
    """``(state, group, second-moment key)`` of each parameter, in order.

    Raises:
        AutoBalanceError: a parameter the optimizer does not hold, or one whose state has no
            second moments (``no_moments``, formatted with the parameter's index ``i``).
    """
    groups = _group_of(optimizer)
    for i, p in enumerate(params):
        state = optimizer.state.get(p)
        if id(p) not in groups:
            raise AutoBalanceError(f"parameter {i} is not optimised by this optimizer")
        if not state or "exp_avg_sq" not in state:
            raise AutoBalanceError(no_moments.format(i=i))
        group = groups[id(p)]
        yield state, group, "max_exp_avg_sq" if group.get("amsgrad") else "exp_avg_sq"


def adam_preconditioner(optimizer: torch.optim.Optimizer, params: Sequence[Tensor]) -> Tensor:
    """``P = sqrt(v̂) + eps`` of a ``torch.optim.Adam``/``AdamW``, flattened in ``params`` order.

    Returned in float64 on the parameters' device.  ``optimizer`` may also be a method object
    with an ``optimizer`` attribute (e.g. ``methods.create("adam", ...)``).
    """
    optimizer = getattr(optimizer, "optimizer", optimizer)
    if not isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        raise AutoBalanceError(
            f"adam_preconditioner needs torch.optim.Adam or AdamW, got {type(optimizer).__name__}"
        )
    no_moments = "parameter {i} has no Adam state yet: take at least one step first"
    return _flat(
        [
            _denominator(state[key].double(), float(state["step"]), group)
            for state, group, key in _adam_states(optimizer, params, no_moments)
        ]
    )


def autobalance_preconditioner(
    optimizer: AutoBalance, loss: str, params: Sequence[Tensor]
) -> Tensor:
    """``P_k = sqrt(v̂_k) + eps`` of the AutoBalance state that owns loss ``loss``.

    Read from :meth:`AutoBalance.state_dict`-style per-parameter states (rows = states in
    ``layout.state_names`` order, each with its own step count).  Adam/AdamW bases only.
    A parameter the state's gradient has never reached (step count 0, ``v = 0``) gets
    ``P = eps``, the denominator the optimizer itself would use there (its rows and columns of
    ``H_k`` are zero, so it does not affect ``P^{-1/2} H_k P^{-1/2}``).  Float64, on the
    parameters' device.  The combine weight ``w_s`` of the state is not included.
    """
    layout = optimizer.layout
    if layout is None:
        raise AutoBalanceError("AutoBalance has not taken a step yet: it has no states")
    if loss not in layout.loss_names:
        raise LossNameError(
            f"AutoBalance has no loss named {loss!r}; its losses are: "
            f"{', '.join(map(repr, layout.loss_names))}"
        )
    row = layout.loss_to_state[layout.loss_names.index(loss)]
    no_moments = (
        "AutoBalance keeps no Adam moments for this parameter (a non-Adam base?): "
        "preconditioners can be read only with base 'adam' or 'adamw'"
    )
    pieces = []
    stepped = False
    for state, group, key in _adam_states(optimizer, params, no_moments):
        step = float(state["step"][row])
        stepped = stepped or step >= 1
        pieces.append(_denominator(state[key][row].double(), step, group))
    if not stepped:
        raise AutoBalanceError(
            f"the state of loss {loss!r} has not taken a step yet: its second moments are empty"
        )
    return _flat(pieces)


def method_preconditioner(method: Any, loss: str, params: Sequence[Tensor]) -> Tensor:
    """The diagonal preconditioner that ``method`` applies to loss ``loss``'s gradient.

    AutoBalance: the owning state's ``P_k``; a single Adam/AdamW (any method whose
    ``optimizer`` is one): the shared ``P`` (the same for every loss).
    """
    optimizer = getattr(method, "optimizer", method)
    if isinstance(optimizer, AutoBalance):
        return autobalance_preconditioner(optimizer, loss, params)
    if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        return adam_preconditioner(optimizer, params)
    raise PreconditionerUnavailableError(
        f"cannot read a diagonal preconditioner from {type(method).__name__}: supported are "
        "AutoBalance (Adam/AdamW base) and methods whose optimizer is torch.optim.Adam/AdamW"
    )


def preconditioned_hessian(hessian: Tensor, preconditioner: Tensor) -> Tensor:
    """``P^{-1/2} H P^{-1/2}`` for a dense symmetric ``H`` and a positive diagonal ``P``."""
    p = preconditioner.to(hessian)
    if p.shape != (hessian.shape[0],) or not bool((p > 0).all()):
        raise AutoBalanceError(
            f"the preconditioner must be a positive vector of length {hessian.shape[0]}"
        )
    d = p.rsqrt()
    return d[:, None] * hessian * d[None, :]


class PreconditionedOperator:
    """``v ↦ P^{-1/2} H P^{-1/2} v`` from a Hessian-vector product (for Lanczos/SLQ).

    :attr:`device` is that of ``matvec`` (e.g. a :class:`~.hessian.HessianOperator`) when it has
    one, else that of ``preconditioner``; Lanczos keeps its vectors there.
    """

    def __init__(self, matvec: Any, preconditioner: Tensor) -> None:
        if preconditioner.dim() != 1 or not bool((preconditioner > 0).all()):
            raise AutoBalanceError("the preconditioner must be a positive vector")
        dim = getattr(matvec, "dim", preconditioner.numel())
        if dim != preconditioner.numel():
            raise AutoBalanceError(
                f"the preconditioner has {preconditioner.numel()} entries, the operator {dim}"
            )
        self._matvec = matvec
        self.device = torch.device(getattr(matvec, "device", preconditioner.device))
        self._scale = preconditioner.detach().double().rsqrt().to(self.device)
        self.dim = preconditioner.numel()

    def __call__(self, vector: Tensor) -> Tensor:
        scale = self._scale.to(vector.device)
        out = self._matvec((scale * vector.double()).to(vector.dtype))
        return scale.to(out) * out


@dataclass(frozen=True)
class SpectrumSummary:
    """Summary of a (possibly partial) spectrum; see the module docstring for the definitions."""

    lambda_max: float
    lambda_min: float
    lambda_min_eff: float
    kappa_eff: float
    negative_mass: float
    frac_below_threshold: float
    rel_threshold: float
    count: int

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _spectrum(eigenvalues: Tensor, weights: Tensor | None) -> tuple[Tensor, Tensor]:
    """Eigenvalues and weights as float64 CPU vectors (weights default to 1), validated."""
    eig = eigenvalues.detach().double().reshape(-1).cpu()
    if eig.numel() == 0 or not bool(torch.isfinite(eig).all()):
        raise AutoBalanceError("the eigenvalues must be a non-empty finite vector")
    if weights is None:
        return eig, torch.ones_like(eig)
    w = weights.detach().double().reshape(-1).cpu()
    if w.shape != eig.shape or not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise AutoBalanceError(
            f"weights must be {eig.numel()} finite non-negative numbers, one per eigenvalue"
        )
    if float(w.sum()) <= 0:
        raise AutoBalanceError("the weights must not all be zero")
    return eig, w


def effective_condition_number(
    eigenvalues: Tensor, rel_threshold: float = DEFAULT_REL_THRESHOLD
) -> float:
    """``κ_eff = λ_max / min{λ_i > τ λ_max}``; NaN when ``λ_max ≤ 0``."""
    return summarize_spectrum(eigenvalues, rel_threshold).kappa_eff


def summarize_spectrum(
    eigenvalues: Tensor,
    rel_threshold: float = DEFAULT_REL_THRESHOLD,
    weights: Tensor | None = None,
) -> SpectrumSummary:
    """``λ_max``, ``λ_min``, the smallest eigenvalue above ``τ λ_max``, κ_eff, negative mass.

    ``weights`` (one per eigenvalue, e.g. SLQ weights ``τ_j²``) weight the negative mass
    ``Σ_{λ<0} w|λ| / Σ w|λ|`` and the fraction below threshold ``Σ_{λ≤τλmax} w / Σ w``.
    """
    if not 0 < rel_threshold < 1:
        raise AutoBalanceError(f"rel_threshold must lie in (0, 1), got {rel_threshold!r}")
    eig, w = _spectrum(eigenvalues, weights)
    lmax, lmin = float(eig.max()), float(eig.min())
    total = float((w * eig.abs()).sum())
    negative = float((w * eig.abs())[eig < 0].sum()) / total if total > 0 else 0.0
    if lmax <= 0:
        return SpectrumSummary(
            lmax, lmin, math.nan, math.nan, negative, 1.0, rel_threshold, eig.numel()
        )
    keep = eig > rel_threshold * lmax
    lmin_eff = float(eig[keep].min())
    return SpectrumSummary(
        lambda_max=lmax,
        lambda_min=lmin,
        lambda_min_eff=lmin_eff,
        kappa_eff=lmax / lmin_eff,
        negative_mass=negative,
        frac_below_threshold=float(w[~keep].sum() / w.sum()),
        rel_threshold=rel_threshold,
        count=eig.numel(),
    )


def mass_condition_number(
    eigenvalues: Tensor, fraction: float = 0.99, weights: Tensor | None = None
) -> float:
    """``κ_mass(q) = μ_1 / μ_{j(q)}``, ``j(q) = min{j : C_j ≥ q}`` (module docstring).

    ``μ_1 ≥ μ_2 ≥ …`` are the positive eigenvalues and ``C_j`` the share of the weighted
    positive curvature ``Σ w_i μ_i`` carried by the ``j`` largest.  NaN without a positive
    eigenvalue.
    """
    if not 0 < fraction <= 1:
        raise AutoBalanceError(f"fraction must lie in (0, 1], got {fraction!r}")
    eig, w = _spectrum(eigenvalues, weights)
    keep = (eig > 0) & (w > 0)
    if not bool(keep.any()):
        return math.nan
    mu, order = eig[keep].sort(descending=True)
    share = (mu * w[keep][order]).cumsum(0)
    share = share / share[-1]
    # A relative slack of 1e-12 makes exact ties (C_j = q) independent of rounding.
    target = torch.tensor([fraction * (1 - _TIE)], dtype=torch.float64)
    j = int(torch.searchsorted(share, target))
    return float(mu[0] / mu[min(j, mu.numel() - 1)])


def median_spread(eigenvalues: Tensor, weights: Tensor | None = None) -> float:
    """``λ_max / median{λ_i > 0}`` with the weighted lower median; NaN without ``λ > 0``.

    The median is ``μ_(k)`` of the ascending positive eigenvalues with ``k`` the first index
    where the cumulative weight reaches half of the total positive weight.
    """
    eig, w = _spectrum(eigenvalues, weights)
    keep = (eig > 0) & (w > 0)
    if not bool(keep.any()):
        return math.nan
    mu, order = eig[keep].sort()
    cum = w[keep][order].cumsum(0)
    k = int(torch.searchsorted(cum, 0.5 * (1 - _TIE) * cum[-1:]))  # ties: see above
    return float(mu[-1] / mu[min(k, mu.numel() - 1)])


def curvature_measures(
    eigenvalues: Tensor,
    weights: Tensor | None = None,
    *,
    rel_threshold: float = DEFAULT_REL_THRESHOLD,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    fractions: Sequence[float] = DEFAULT_MASS_FRACTIONS,
) -> dict[str, float]:
    """Every measure of the module docstring as one flat JSON-ready dict.

    Keys: those of :class:`SpectrumSummary` (at ``rel_threshold``), ``kappa_eff@{τ:g}`` for each
    ``τ`` in ``thresholds`` (e.g. ``kappa_eff@0.01``), ``kappa_mass@{q:g}`` for each ``q`` in
    ``fractions`` (e.g. ``kappa_mass@0.99``) and ``median_spread``.
    """
    out: dict[str, float] = summarize_spectrum(eigenvalues, rel_threshold, weights).to_dict()
    for tau in thresholds:
        out[f"kappa_eff@{tau:g}"] = summarize_spectrum(eigenvalues, tau, weights).kappa_eff
    for q in fractions:
        out[f"kappa_mass@{q:g}"] = mass_condition_number(eigenvalues, q, weights)
    out["median_spread"] = median_spread(eigenvalues, weights)
    return out
