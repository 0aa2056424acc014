"""The quadratic model of the AutoBalance paper: frozen-preconditioner iterations, exactly.

Two losses with the same minimiser ``w* = 0`` and different curvature::

    L1(w) = ½ wᵀw,      L2(w) = ½ wᵀAᵀAw,      L = L1 + L2,      A = diag(s) Vᵀ,
    s = logspace(0, c, n)   (singular values 1 … 10^c; AᵀA has eigenvalues 1 … 10^{2c})

``V`` is a random orthogonal matrix (``kind="rotated"``) or the identity (``kind="diagonal"``);
``c`` controls the curvature heterogeneity.

**Analysed variant** (β1 = 0, β2 = 1, no bias correction): the second moments freeze at the
first squared gradients, so both methods become linear iterations ``w_{t+1} = (I − ηM) w_t``:

* single Adam: ``M_adam = D⁻¹(I + AᵀA)``, ``D = diag(|∇L(w0)|) + eps``;
* AutoBalance: ``M_ab = D1⁻¹ + D2⁻¹AᵀA``, ``D_k = diag(|∇L_k(w0)|) + eps``,
  ``∇L1(w0) = w0``, ``∇L2(w0) = AᵀAw0``;
* plain gradient descent, for reference: ``M_gd = I + AᵀA``.

Neither ``M`` is symmetric, but both are similar to symmetric positive-definite matrices, whose
eigenvalues (real, positive) we compute with ``eigh``:

* ``M_adam = D^{-1/2} S_adam D^{1/2}`` with ``S_adam = D^{-1/2}(I + AᵀA)D^{-1/2}``;
* ``M_ab = D2^{-1/2} S_ab D2^{1/2}`` with ``S_ab = D1⁻¹ + D2^{-1/2}AᵀA D2^{-1/2}``
  (diagonal matrices commute, so ``D2^{-1/2} D1⁻¹ D2^{1/2} = D1⁻¹``).

For a linear iteration with spectrum in ``[λ_min, λ_max]`` (``λ > 0``): it is stable iff
``η < 2/λ_max``; the best fixed step is ``η* = 2/(λ_min + λ_max)``, with contraction factor
``ρ = (κ − 1)/(κ + 1)`` per step in the ``S``-norm, ``κ = λ_max/λ_min``.  Steps to shrink the
error ``ε``-fold: about ``ln(1/ε) / ln(1/ρ) ≈ (κ/2) ln(1/ε)``.  So the method with the smaller
``κ`` converges faster at its own best step size (the claim of Theorem 1 / Corollary 1.1, as we
read it).

We also run the real optimizers (bias-corrected, β2 < 1, momentum) on the same losses:
``torch.optim.Adam`` on ``L`` and :class:`~autobalance.AutoBalance` (base Adam) on
``{L1, L2}``, each at the best learning rate of a small grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from autobalance.errors import ConfigError

__all__ = [
    "LinearIteration",
    "QuadraticModel",
    "linear_iterations",
    "make_quadratic",
    "run_linear",
    "run_optimizer",
    "study_quadratic",
]

KINDS = ("rotated", "diagonal")


@dataclass(frozen=True)
class QuadraticModel:
    """``L1 = ½wᵀw``, ``L2 = ½wᵀAᵀAw`` and a starting point ``w0`` (float64)."""

    a: Tensor
    w0: Tensor
    c: float
    kind: str

    @property
    def curvature2(self) -> Tensor:
        """``AᵀA``, the Hessian of ``L2``."""
        return self.a.T @ self.a

    def losses(self, w: Tensor) -> dict[str, Tensor]:
        """``{"L1": ½wᵀw, "L2": ½‖Aw‖²}``."""
        return {"L1": 0.5 * w.dot(w), "L2": 0.5 * (self.a @ w).pow(2).sum()}

    def total(self, w: Tensor) -> float:
        """``L(w) = L1(w) + L2(w)``."""
        return float(sum(self.losses(w).values()))


def make_quadratic(n: int, c: float, *, kind: str = "rotated", seed: int = 0) -> QuadraticModel:
    """``A = diag(logspace(0, c, n)) Vᵀ`` (``V`` random orthogonal or ``I``), ``w0 ~ N(0, I)``."""
    if kind not in KINDS:
        raise ConfigError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    if not math.isfinite(c) or c < 0:
        raise ConfigError(f"c must be a finite number >= 0, got {c!r}")
    gen = torch.Generator().manual_seed(seed)
    s = torch.logspace(0, c, n, dtype=torch.float64)
    if kind == "rotated":
        q, r = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
        v = q * torch.sign(torch.diagonal(r))  # Haar-distributed orthogonal matrix
    else:
        v = torch.eye(n, dtype=torch.float64)
    a = s[:, None] * v.T
    w0 = torch.randn(n, generator=gen, dtype=torch.float64)
    return QuadraticModel(a=a, w0=w0, c=float(c), kind=kind)


@dataclass(frozen=True)
class LinearIteration:
    """One frozen-preconditioner iteration ``w ← (I − ηM)w`` and its spectrum.

    Attributes:
        matrix: ``M`` (not symmetric in general).
        symmetric: the symmetric matrix similar to ``M`` whose eigenvalues are reported.
        eigenvalues: eigenvalues of ``symmetric`` (= those of ``M``), ascending.
    """

    name: str
    matrix: Tensor
    symmetric: Tensor
    eigenvalues: Tensor = field(repr=False)

    @property
    def lambda_max(self) -> float:
        return float(self.eigenvalues[-1])

    @property
    def lambda_min(self) -> float:
        return float(self.eigenvalues[0])

    @property
    def kappa(self) -> float:
        """``λ_max / λ_min`` (every eigenvalue is positive here)."""
        return self.lambda_max / self.lambda_min

    @property
    def max_stable_lr(self) -> float:
        """``2 / λ_max``: the iteration diverges for ``η ≥`` this."""
        return 2.0 / self.lambda_max

    @property
    def best_lr(self) -> float:
        """``η* = 2/(λ_min + λ_max)``, minimising the spectral radius of ``I − ηM``."""
        return 2.0 / (self.lambda_min + self.lambda_max)

    @property
    def rate(self) -> float:
        """Contraction factor at ``η*``: ``(κ − 1)/(κ + 1)``."""
        return (self.kappa - 1.0) / (self.kappa + 1.0)

    def steps_to(self, tolerance: float) -> float:
        """``ln(1/tol) / ln(1/ρ)``: predicted steps to shrink the S-norm error by ``tolerance``."""
        if self.rate <= 0:
            return 1.0
        return math.log(1.0 / tolerance) / -math.log(self.rate)


def _symmetric_eigs(s: Tensor) -> Tensor:
    return torch.linalg.eigvalsh(0.5 * (s + s.T))


def linear_iterations(model: QuadraticModel, eps: float = 1e-8) -> dict[str, LinearIteration]:
    """``M`` and spectra of gradient descent, single Adam and AutoBalance (module docstring)."""
    n = model.w0.numel()
    eye = torch.eye(n, dtype=torch.float64)
    b = model.curvature2
    h = eye + b
    g1, g2 = model.w0, b @ model.w0
    d = (g1 + g2).abs() + eps
    d1, d2 = g1.abs() + eps, g2.abs() + eps
    m_adam = h / d[:, None]
    s_adam = h / torch.sqrt(d[:, None] * d[None, :])
    m_ab = torch.diag(1.0 / d1) + b / d2[:, None]
    s_ab = torch.diag(1.0 / d1) + b / torch.sqrt(d2[:, None] * d2[None, :])
    out = {}
    for name, m, s in (("gd", h, h), ("adam", m_adam, s_adam), ("autobalance", m_ab, s_ab)):
        out[name] = LinearIteration(name, m, s, _symmetric_eigs(s))
    return out


def run_linear(model: QuadraticModel, matrix: Tensor, lr: float, steps: int) -> list[float]:
    """``L(w_t)/L(w_0)`` for ``t = 0..steps`` of ``w_{t+1} = (I − ηM) w_t``."""
    w = model.w0.clone()
    start = model.total(w)
    history = [1.0]
    for _ in range(steps):
        w = w - lr * (matrix @ w)
        value = model.total(w) / start
        history.append(value if math.isfinite(value) else math.inf)
        if not math.isfinite(value):
            history.extend([math.inf] * (steps + 1 - len(history)))
            break
    return history


def run_optimizer(
    model: QuadraticModel,
    method: str,
    lr: float,
    steps: int,
    *,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> list[float]:
    """``L(w_t)/L(w_0)`` of the real optimizer: ``"adam"`` on ``L`` or ``"autobalance"``."""
    from autobalance.optim import AutoBalance

    w = model.w0.clone().requires_grad_(True)
    start = model.total(w.detach())
    history = [1.0]
    if method == "adam":
        opt = torch.optim.Adam([w], lr=lr, betas=betas, eps=eps)
        for _ in range(steps):
            opt.zero_grad()
            loss = sum(model.losses(w).values())
            assert isinstance(loss, Tensor)
            loss.backward()
            opt.step()
            history.append(model.total(w.detach()) / start)
    elif method == "autobalance":
        ab = AutoBalance([w], base="adam", lr=lr, betas=betas, eps=eps)
        for _ in range(steps):
            ab.step(model.losses(w))
            history.append(model.total(w.detach()) / start)
    else:
        raise ConfigError(f"method must be 'adam' or 'autobalance', got {method!r}")
    return [v if math.isfinite(v) else math.inf for v in history]


def _geomean(values: Sequence[float]) -> float:
    """Geometric mean of positive values; inf if any is not finite or not positive, NaN if none."""
    if not values:
        return math.nan
    finite = [v for v in values if math.isfinite(v) and v > 0]
    if len(finite) < len(values):
        return math.inf
    return math.exp(sum(math.log(v) for v in finite) / len(finite))


def _tail(history: Sequence[float], fraction: float = 0.05) -> float:
    """Geometric mean of the last ``fraction`` of a loss history (Adam oscillates near 0)."""
    k = max(1, int(len(history) * fraction))
    return _geomean([max(v, 1e-300) for v in history[-k:]])


def study_quadratic(
    *,
    n: int = 20,
    cs: Sequence[float] = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0),
    seeds: int = 3,
    linear_steps: int = 2000,
    optimizer_steps: int = 1000,
    lrs: Sequence[float] = (1e-3, 1e-2, 1e-1),
    tolerance: float = 1e-6,
    eps: float = 1e-8,
) -> dict[str, Any]:
    """Sweep the heterogeneity ``c`` for both kinds of ``A`` (see the module docstring).

    Per ``(kind, c)``, geometric means over ``seeds`` draws of ``(V, w0)`` of: κ of GD, single
    Adam and AutoBalance; predicted steps to reach ``tolerance`` at ``η*``; the loss ratio
    ``L(w_T)/L(w0)`` reached by the linear iterations at ``η*`` after ``linear_steps``; and (for
    ``kind="rotated"``) the final loss ratio of the real optimizers at their best learning rate in
    ``lrs`` after ``optimizer_steps`` (geometric mean over the last 5% of steps).  One
    convergence history per method at the largest ``c`` (seed 0, rotated) is kept for plotting.
    """
    if seeds < 1 or linear_steps < 1 or optimizer_steps < 0 or not cs or not lrs:
        raise ConfigError("seeds and linear_steps must be >= 1, and cs and lrs non-empty")
    rows: list[dict[str, Any]] = []
    curves: dict[str, list[float]] = {}
    c_plot = max(cs)
    for kind in KINDS:
        for c in cs:
            per: dict[str, list[float]] = {}
            for seed in range(seeds):
                model = make_quadratic(n, c, kind=kind, seed=seed)
                its = linear_iterations(model, eps)
                for name, it in its.items():
                    hist = run_linear(model, it.matrix, it.best_lr, linear_steps)
                    per.setdefault(f"kappa_{name}", []).append(it.kappa)
                    per.setdefault(f"steps_{name}", []).append(it.steps_to(tolerance))
                    per.setdefault(f"linear_final_{name}", []).append(max(hist[-1], 1e-300))
                    if kind == "rotated" and c == c_plot and seed == 0:
                        curves[f"linear_{name}"] = hist
                if kind != "rotated" or optimizer_steps == 0:
                    continue
                for method in ("adam", "autobalance"):
                    best, best_lr, best_hist = math.inf, math.nan, None
                    for lr in lrs:
                        hist = run_optimizer(model, method, lr, optimizer_steps, eps=eps)
                        value = _tail(hist)
                        if value < best:
                            best, best_lr, best_hist = value, lr, hist
                    per.setdefault(f"optimizer_final_{method}", []).append(best)
                    per.setdefault(f"optimizer_lr_{method}", []).append(best_lr)
                    if c == c_plot and seed == 0 and best_hist is not None:
                        curves[f"optimizer_{method}"] = best_hist
            row: dict[str, Any] = {"kind": kind, "c": c, "n": n, "seeds": seeds}
            for key, values in per.items():
                row[key] = _geomean(values) if not key.startswith("optimizer_lr") else list(values)
            rows.append(row)
    return {
        "definition": {
            "L1": "0.5 w^T w",
            "L2": "0.5 w^T A^T A w, A = diag(logspace(0, c, n)) V^T",
            "M_adam": "D^-1 (I + A^T A), D = diag(|grad L(w0)|) + eps",
            "M_autobalance": "D1^-1 + D2^-1 A^T A, Dk = diag(|grad Lk(w0)|) + eps",
            "eigenvalues": "eigh of the similar symmetric matrices S_adam, S_ab (module doc)",
            "kappa": "lambda_max / lambda_min of M (all eigenvalues positive)",
            "best_lr": "2 / (lambda_min + lambda_max)",
            "aggregation": f"geometric mean over {seeds} seeds of (V, w0)",
        },
        "settings": {
            "n": n,
            "cs": list(cs),
            "seeds": seeds,
            "linear_steps": linear_steps,
            "optimizer_steps": optimizer_steps,
            "lrs": list(lrs),
            "tolerance": tolerance,
            "eps": eps,
        },
        "rows": rows,
        "curves": {"c": c_plot, "kind": "rotated", "seed": 0, **curves},
    }
