"""Curvature of one named loss: Hessian-vector products, full Hessians, Lanczos and SLQ.

For a loss ``L(θ)`` over the flattened parameters ``θ ∈ R^n`` the Hessian is
``H = ∇²L(θ)``, ``H_ij = ∂²L / ∂θ_i ∂θ_j``.  Everything here works with products ``Hv`` only:

* **HVP** (double backward, Pearlmutter 1994): ``Hv = ∇_θ (∇_θ L(θ) · v)``.  The gradient graph
  of ``L`` is built once (``create_graph=True``) and reused for every product.
* **Full Hessian**: ``H = [He_1, ..., He_n]`` by ``n`` HVPs, symmetrised ``(H + Hᵀ)/2``, only for
  small models (``n ≤ max_params``; the dense float64 matrix needs ``8n²`` bytes).
* **Lanczos** with full reorthogonalisation (Golub & Van Loan 2013, Sec. 10.1): ``m`` steps from a
  random unit vector ``q_1`` give ``H Q_m = Q_m T_m + β_m q_{m+1} e_mᵀ`` with ``T_m`` tridiagonal;
  the eigenvalues of ``T_m`` (Ritz values) approach the extreme eigenvalues of ``H`` first.
* **Stochastic Lanczos quadrature** (SLQ; Golub & Meurant 2010, Ghorbani et al. 2019): for a
  random unit ``q``, ``qᵀ f(H) q ≈ Σ_j τ_j² f(θ_j)`` with Ritz values ``θ_j`` and ``τ_j`` the first
  components of the eigenvectors of ``T_m``.  Averaging over probes, the spectral density
  ``φ(t) = (1/n) Σ_i δ(t − λ_i)`` is estimated by ``Σ_j τ_j² g_σ(t − θ_j)`` with a Gaussian
  kernel ``g_σ``.

A loss is given as a closure ``loss_fn() -> Tensor`` (a scalar); :func:`named_loss` picks one
named term out of a closure that returns a mapping of losses (e.g. ``problem.losses``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from autobalance.errors import AutoBalanceError, LossNameError, LossValueError

__all__ = [
    "DEFAULT_MAX_PARAMS",
    "HessianOperator",
    "HessianSizeError",
    "LanczosResult",
    "SpectralDensity",
    "extreme_eigenvalues",
    "full_hessian",
    "hessian_vector_product",
    "lanczos",
    "named_loss",
    "spectral_density",
]

#: Largest parameter count :func:`full_hessian` accepts by default (an 800 MB float64 matrix).
DEFAULT_MAX_PARAMS = 10_000

LossFn = Callable[[], Tensor]
MatVec = Callable[[Tensor], Tensor]


class HessianSizeError(AutoBalanceError):
    """The model is too large for a dense Hessian."""


def named_loss(losses_fn: Callable[[], Mapping[str, Tensor]], name: str) -> LossFn:
    """A closure returning only the loss ``name`` of ``losses_fn()``.

    The name is checked on the first call; an unknown name raises
    :class:`~autobalance.errors.LossNameError` listing the losses that exist.
    """

    def loss_fn() -> Tensor:
        losses = losses_fn()
        if name not in losses:
            raise LossNameError(
                f"no loss named {name!r}; the losses are: {', '.join(map(repr, losses))}"
            )
        return losses[name]

    return loss_fn


def _trainable(params: Sequence[Tensor]) -> list[Tensor]:
    out = [p for p in params if p.requires_grad]
    if not out:
        raise LossValueError("no parameter requires grad: the Hessian would be empty")
    return out


class HessianOperator:
    """``v ↦ Hv`` for one loss at the current parameters (gradient graph built once).

    Args:
        loss_fn: closure returning the scalar loss (called once, at construction).
        params: the parameters ``θ`` (flattened and concatenated in this order).

    The operator is a snapshot of the gradient graph at the current parameters: updating the
    parameters in place afterwards (an optimizer step) invalidates it, and autograd then raises
    "modified by an inplace operation" at the next product; build a new operator instead.
    """

    def __init__(self, loss_fn: LossFn, params: Sequence[Tensor]) -> None:
        self.params = _trainable(params)
        loss = loss_fn()
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise LossValueError("the loss closure must return a scalar tensor")
        if not loss.requires_grad:
            raise LossValueError(
                "the loss does not depend on any parameter (no autograd graph): build it with "
                "gradients enabled from the parameters passed here"
            )
        self.loss = float(loss.detach())
        grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
        pieces = []
        for p, g in zip(self.params, grads, strict=True):
            if g is None:  # a parameter the loss does not reach: zero rows and columns
                pieces.append(torch.zeros(p.numel(), dtype=p.dtype, device=p.device))
            else:
                pieces.append(g.reshape(-1))
        self.gradient = torch.cat(pieces)
        self.dim = self.gradient.numel()
        self.dtype = self.gradient.dtype
        self.device = self.gradient.device
        self.calls = 0

    def matvec(self, vector: Tensor) -> Tensor:
        """``Hv`` for a flat vector ``v`` of length :attr:`dim`."""
        if vector.shape != (self.dim,):
            raise LossValueError(f"vector must have shape ({self.dim},), got {tuple(vector.shape)}")
        self.calls += 1
        if not self.gradient.requires_grad:  # the loss is linear in θ: H = 0
            return torch.zeros_like(self.gradient)
        v = vector.to(self.dtype).to(self.device)
        hv = torch.autograd.grad(
            self.gradient, self.params, grad_outputs=v, retain_graph=True, allow_unused=True
        )
        return torch.cat(
            [
                torch.zeros(p.numel(), dtype=self.dtype, device=self.device)
                if h is None
                else h.reshape(-1)
                for p, h in zip(self.params, hv, strict=True)
            ]
        ).detach()

    __call__ = matvec

    def dense(self, *, max_params: int = DEFAULT_MAX_PARAMS) -> Tensor:
        """The full symmetrised Hessian (``n`` HVPs, on :attr:`device`); see ``full_hessian``."""
        _check_size(self.dim, max_params, self.dtype)
        eye = torch.eye(self.dim, dtype=self.dtype, device=self.device)
        columns = [self.matvec(eye[i]) for i in range(self.dim)]
        h = torch.stack(columns, dim=1)
        return 0.5 * (h + h.T)


def _check_size(n: int, max_params: int, dtype: torch.dtype = torch.float64) -> None:
    if n > max_params:
        itemsize = torch.empty((), dtype=dtype).element_size()
        gib = itemsize * n * n / 2**30
        raise HessianSizeError(
            f"a dense Hessian of {n} parameters needs {n} Hessian-vector products and "
            f"{gib:.1f} GiB ({dtype}), above the limit of max_params={max_params}; use "
            "lanczos()/extreme_eigenvalues() or spectral_density() instead, which need only "
            "Hessian-vector products (or raise max_params if you have the memory)"
        )


def hessian_vector_product(loss_fn: LossFn, params: Sequence[Tensor], vector: Tensor) -> Tensor:
    """``∇²L(θ) v`` by double backward (one forward, one backward, one double backward)."""
    return HessianOperator(loss_fn, params).matvec(vector)


def full_hessian(
    loss_fn: LossFn, params: Sequence[Tensor], *, max_params: int = DEFAULT_MAX_PARAMS
) -> Tensor:
    """The dense ``n × n`` Hessian of ``loss_fn`` w.r.t. ``params`` (flattened in order).

    Raises:
        HessianSizeError: ``n > max_params``; the message suggests Lanczos.
    """
    trainable = _trainable(params)
    _check_size(
        sum(p.numel() for p in trainable), max_params, trainable[0].dtype
    )  # before autograd
    return HessianOperator(loss_fn, params).dense(max_params=max_params)


@dataclass(frozen=True)
class LanczosResult:
    """``m`` Lanczos steps: ``T = tridiag(betas, alphas, betas)``, Ritz pairs of ``T``.

    Attributes:
        alphas: diagonal of ``T`` (m,).
        betas: off-diagonal of ``T`` (m − 1,).
        ritz_values: eigenvalues of ``T``, ascending (m,).
        ritz_weights: squared first components ``τ_j²`` of ``T``'s eigenvectors (sum to 1).
        basis: the orthonormal Lanczos vectors ``Q`` (n, m) when requested, else ``None``.
    """

    alphas: Tensor
    betas: Tensor
    ritz_values: Tensor
    ritz_weights: Tensor
    basis: Tensor | None = None


def lanczos(
    matvec: MatVec,
    dim: int,
    num_iters: int,
    *,
    start: Tensor | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    keep_basis: bool = False,
    device: torch.device | str | None = None,
) -> LanczosResult:
    """Symmetric Lanczos with full reorthogonalisation (two Gram–Schmidt passes per step).

    ``q_1 = start/‖start‖`` (a standard normal vector by default); for ``j = 1..m``:
    ``w = Hq_j − β_{j−1} q_{j−1}``, ``α_j = q_jᵀw``, ``w ← w − α_j q_j``, then ``w`` is
    reorthogonalised against every ``q_i``, ``β_j = ‖w‖``, ``q_{j+1} = w / β_j``.  Stops early
    when ``β_j`` vanishes (an invariant subspace: its Ritz values are exact eigenvalues).

    The Lanczos vectors live on ``device``: by default ``matvec.device`` when the operator has
    one (:class:`HessianOperator`, ``PreconditionedOperator``), else ``start``'s device, else the
    CPU.  The random start is drawn on ``generator``'s device and moved there.  ``T``, its Ritz
    values and weights are returned on the CPU.
    """
    if num_iters < 1:
        raise LossValueError(f"num_iters must be >= 1, got {num_iters}")
    if device is None:
        device = getattr(matvec, "device", None)
    if device is None:
        device = start.device if start is not None else "cpu"
    m = min(num_iters, dim)
    q = (
        torch.randn(
            dim,
            generator=generator,
            dtype=dtype,
            device=generator.device if generator is not None else "cpu",
        )
        if start is None
        else start.detach().to(dtype).reshape(-1).clone()
    )
    q = q.to(device)
    if q.shape != (dim,) or not torch.isfinite(q).all() or q.norm() == 0:
        raise LossValueError("the Lanczos start vector must be finite, nonzero and of length dim")
    basis = torch.zeros(dim, m, dtype=dtype, device=device)
    basis[:, 0] = q / q.norm()
    alphas: list[float] = []
    betas: list[float] = []
    scale = 0.0
    for j in range(m):
        w = matvec(basis[:, j]).to(device=basis.device, dtype=dtype).reshape(-1)
        alpha = float(basis[:, j] @ w)
        alphas.append(alpha)
        w = w - alpha * basis[:, j]
        if j > 0:
            w = w - betas[-1] * basis[:, j - 1]
        for _ in range(2):  # full reorthogonalisation
            w = w - basis[:, : j + 1] @ (basis[:, : j + 1].T @ w)
        beta = float(w.norm())
        scale = max(scale, abs(alpha), beta)
        if j == m - 1:
            break
        if beta <= 1e-12 * max(scale, 1e-300):
            break
        betas.append(beta)
        basis[:, j + 1] = w / beta
    k = len(alphas)
    t = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if k > 1:
        off = torch.tensor(betas[: k - 1], dtype=torch.float64)
        t = t + torch.diag(off, 1) + torch.diag(off, -1)
    values, vectors = torch.linalg.eigh(t)
    return LanczosResult(
        alphas=torch.tensor(alphas, dtype=torch.float64),
        betas=torch.tensor(betas[: k - 1], dtype=torch.float64),
        ritz_values=values,
        ritz_weights=vectors[0].pow(2),
        basis=basis[:, :k] if keep_basis else None,
    )


def extreme_eigenvalues(
    matvec: MatVec,
    dim: int,
    *,
    num_iters: int = 80,
    k: int = 1,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """The ``k`` smallest and ``k`` largest Ritz values after ``num_iters`` Lanczos steps.

    Returns ``(smallest, largest)``, each ascending.  With ``num_iters = dim`` (and full
    reorthogonalisation) they are the exact eigenvalues up to rounding; with fewer steps the
    largest-magnitude ends converge first (tested against dense spectra in the test suite).
    """
    result = lanczos(matvec, dim, num_iters, generator=generator)
    values = result.ritz_values
    k = min(k, values.numel())
    return values[:k], values[-k:]


@dataclass(frozen=True)
class SpectralDensity:
    """SLQ estimate of the spectral density on a grid.

    Attributes:
        grid: evaluation points ``t`` (G,).
        density: ``φ(t)`` (G,), integrates to about 1 over the grid.
        nodes: Ritz values of every probe (num_probes, m).
        weights: their quadrature weights ``τ²`` (num_probes, m), each row summing to 1.
        sigma: the Gaussian kernel width.
    """

    grid: Tensor
    density: Tensor
    nodes: Tensor
    weights: Tensor
    sigma: float


def spectral_density(
    matvec: MatVec,
    dim: int,
    *,
    num_iters: int = 60,
    num_probes: int = 4,
    grid_size: int = 400,
    sigma: float | None = None,
    generator: torch.Generator | None = None,
) -> SpectralDensity:
    """Stochastic Lanczos quadrature estimate of the spectral density (see module docstring).

    ``sigma`` defaults to 1% of the estimated spectral range ``max θ − min θ`` over all probes.
    """
    if num_probes < 1:
        raise LossValueError(f"num_probes must be >= 1, got {num_probes}")
    runs = [lanczos(matvec, dim, num_iters, generator=generator) for _ in range(int(num_probes))]
    m = min(r.ritz_values.numel() for r in runs)
    nodes = torch.stack([r.ritz_values[-m:] for r in runs])
    weights = torch.stack([r.ritz_weights[-m:] for r in runs])
    weights = weights / weights.sum(dim=1, keepdim=True)
    lo, hi = float(nodes.min()), float(nodes.max())
    span = max(hi - lo, 1e-12 * max(abs(lo), abs(hi), 1.0))
    width = float(sigma) if sigma is not None else 0.01 * span
    grid = torch.linspace(lo - 5 * width, hi + 5 * width, grid_size, dtype=torch.float64)
    diff = grid[:, None, None] - nodes[None]
    kernel = torch.exp(-0.5 * (diff / width) ** 2) / (width * math.sqrt(2 * math.pi))
    density = (kernel * weights[None]).sum(dim=(1, 2)) / len(runs)
    return SpectralDensity(grid=grid, density=density, nodes=nodes, weights=weights, sigma=width)
