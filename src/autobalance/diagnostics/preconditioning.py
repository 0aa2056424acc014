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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from autobalance.errors import AutoBalanceError, LossNameError
from autobalance.optim.autobalance import AutoBalance

__all__ = [
    "DEFAULT_REL_THRESHOLD",
    "PreconditionedOperator",
    "SpectrumSummary",
    "adam_preconditioner",
    "autobalance_preconditioner",
    "effective_condition_number",
    "method_preconditioner",
    "preconditioned_hessian",
    "summarize_spectrum",
]

#: Default relative threshold ``τ`` of :func:`effective_condition_number`.
DEFAULT_REL_THRESHOLD = 1e-6


def _flat(pieces: list[Tensor]) -> Tensor:
    return torch.cat([p.detach().reshape(-1).to(torch.float64).cpu() for p in pieces])


def _group_of(optimizer: torch.optim.Optimizer) -> dict[int, dict[str, Any]]:
    return {id(p): g for g in optimizer.param_groups for p in g["params"]}


def _bias_corrected(v: Tensor, step: float, beta2: float) -> Tensor:
    bc2 = 1.0 - beta2**step
    if step < 1 or bc2 <= 0:
        raise AutoBalanceError(
            "the optimizer has not taken a step yet: its second moments are still empty"
        )
    return v / bc2


def adam_preconditioner(optimizer: torch.optim.Optimizer, params: Sequence[Tensor]) -> Tensor:
    """``P = sqrt(v̂) + eps`` of a ``torch.optim.Adam``/``AdamW``, flattened in ``params`` order.

    Returned in float64 on the CPU.  ``optimizer`` may also be a method object with an
    ``optimizer`` attribute (e.g. ``methods.create("adam", ...)``).
    """
    optimizer = getattr(optimizer, "optimizer", optimizer)
    if not isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        raise AutoBalanceError(
            f"adam_preconditioner needs torch.optim.Adam or AdamW, got {type(optimizer).__name__}"
        )
    groups = _group_of(optimizer)
    pieces = []
    for i, p in enumerate(params):
        state = optimizer.state.get(p)
        if id(p) not in groups:
            raise AutoBalanceError(f"parameter {i} is not optimised by this optimizer")
        if not state or "exp_avg_sq" not in state:
            raise AutoBalanceError(
                f"parameter {i} has no Adam state yet: take at least one step first"
            )
        group = groups[id(p)]
        v = state["max_exp_avg_sq"] if group.get("amsgrad") else state["exp_avg_sq"]
        v_hat = _bias_corrected(v.double(), float(state["step"]), float(group["betas"][1]))
        pieces.append(v_hat.sqrt() + float(group["eps"]))
    return _flat(pieces)


def autobalance_preconditioner(
    optimizer: AutoBalance, loss: str, params: Sequence[Tensor]
) -> Tensor:
    """``P_k = sqrt(v̂_k) + eps`` of the AutoBalance state that owns loss ``loss``.

    Read from :meth:`AutoBalance.state_dict`-style per-parameter states (rows = states in
    ``layout.state_names`` order, each with its own step count).  Adam/AdamW bases only.
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
    groups = _group_of(optimizer)
    pieces = []
    for i, p in enumerate(params):
        state = optimizer.state.get(p)
        if id(p) not in groups:
            raise AutoBalanceError(f"parameter {i} is not optimised by this optimizer")
        if not state or "exp_avg_sq" not in state:
            raise AutoBalanceError(
                "AutoBalance keeps no Adam moments for this parameter (a non-Adam base?): "
                "preconditioners can be read only with base 'adam' or 'adamw'"
            )
        group = groups[id(p)]
        key = "max_exp_avg_sq" if group.get("amsgrad") else "exp_avg_sq"
        v = state[key][row].double()
        step = float(state["step"][row])
        pieces.append(
            _bias_corrected(v, step, float(group["betas"][1])).sqrt() + float(group["eps"])
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
    raise AutoBalanceError(
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
    """``v ↦ P^{-1/2} H P^{-1/2} v`` from a Hessian-vector product (for Lanczos/SLQ)."""

    def __init__(self, matvec: Any, preconditioner: Tensor) -> None:
        if not bool((preconditioner > 0).all()):
            raise AutoBalanceError("the preconditioner must be positive")
        self._matvec = matvec
        self._scale = preconditioner.double().rsqrt()
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


def effective_condition_number(
    eigenvalues: Tensor, rel_threshold: float = DEFAULT_REL_THRESHOLD
) -> float:
    """``κ_eff = λ_max / min{λ_i > τ λ_max}``; NaN when ``λ_max ≤ 0``."""
    return summarize_spectrum(eigenvalues, rel_threshold).kappa_eff


def summarize_spectrum(
    eigenvalues: Tensor, rel_threshold: float = DEFAULT_REL_THRESHOLD
) -> SpectrumSummary:
    """``λ_max``, ``λ_min``, the smallest eigenvalue above ``τ λ_max``, κ_eff, negative mass."""
    if not 0 < rel_threshold < 1:
        raise AutoBalanceError(f"rel_threshold must lie in (0, 1), got {rel_threshold!r}")
    eig = eigenvalues.detach().double().reshape(-1).cpu()
    if eig.numel() == 0 or not bool(torch.isfinite(eig).all()):
        raise AutoBalanceError("the eigenvalues must be a non-empty finite vector")
    lmax, lmin = float(eig.max()), float(eig.min())
    total = float(eig.abs().sum())
    negative = float(eig[eig < 0].abs().sum()) / total if total > 0 else 0.0
    if lmax <= 0:
        return SpectrumSummary(
            lmax, lmin, math.nan, math.nan, negative, 1.0, rel_threshold, eig.numel()
        )
    above = eig[eig > rel_threshold * lmax]
    lmin_eff = float(above.min())
    return SpectrumSummary(
        lambda_max=lmax,
        lambda_min=lmin,
        lambda_min_eff=lmin_eff,
        kappa_eff=lmax / lmin_eff,
        negative_mass=negative,
        frac_below_threshold=1.0 - above.numel() / eig.numel(),
        rel_threshold=rel_threshold,
        count=eig.numel(),
    )
