"""Reproduction of the paper's Fig. 1 (Hessian spectra) and Fig. 2 (balance) for any problem.

Setting (CPU-sized; the paper used 30,000 steps and does not publish its network): a small tanh
MLP (default 3 hidden layers × 30 units, n ≈ 2,000 parameters, so dense Hessians are feasible),
trained in float64 from the same initialisation and the same point stream by every method
(default "autobalance" with base Adam, and "adam" on the summed loss), constant learning rate.
Losses are the problem's named terms in order; the first (the PDE residual) is the reference.

Recorded:

* **Fig. 1a** – at initialisation, the full spectrum of every loss's Hessian ``H_k = ∇²L_k``.
* **Fig. 1b** – after training, for the first loss: the raw ``H_1`` and the preconditioned
  ``P^{-1/2} H_1 P^{-1/2}`` with each method's own preconditioner for that loss (single Adam:
  ``P = sqrt(v̂) + eps`` of the summed gradient; AutoBalance: ``P_1`` of the residual's state).
* **Fig. 1c** – at checkpoints during training, the curvature measures (definitions in
  :mod:`~autobalance.diagnostics.preconditioning`: κ_eff(τ) at τ = 1e-2, 1e-4, 1e-6, the
  non-saturating mass condition numbers κ_mass(0.9), κ_mass(0.99), the median spread, the
  negative mass) of every other loss's Hessian, raw and preconditioned with the method's
  preconditioner for that loss.
* **Fig. 2** – every ``log_every`` steps: per-loss gradient norms ``‖g_k‖`` and cosines
  ``cos(g_i, g_j)`` (an extra backward pass per loss at those steps only), and per-loss
  *preconditioned gradients* ``ũ_k = lr · g_k / P_k`` with the method's preconditioner for loss
  ``k`` (the same ``P`` for every loss under single Adam): their norms and cosines.  For
  AutoBalance the actual per-loss updates ``u_k = lr·m̂_k/(sqrt(v̂_k)+eps)`` (momentum included)
  from its ``StepInfo`` are recorded too.

Hessians are taken on one fixed batch (drawn once with its own seed; ``hessian_params`` override
the problem's point counts, default 256 residual points) so that spectra at different times are
comparable.  Models with more than ``max_params`` parameters use Lanczos (``lanczos_iters``
steps from one random probe) instead of dense eigendecompositions: the extreme eigenvalues are
accurate, and the measures that sum over the spectrum (masses, medians) are one-probe SLQ
estimates from the Ritz values and their weights ``τ_j²`` (stored as ``"weights"``).

Everything runs on ``device`` (``"cpu"``, ``"cuda"``, ...): the network, the point streams
(one ``torch.Generator`` on that device), Hessian-vector products, Lanczos and the
preconditioners; only the spectra are brought back to the CPU.  Point streams drawn on
different devices differ, so compare methods on the same device.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from autobalance import methods, problems
from autobalance.diagnostics.balance import balance_stats, stats_from_step_info
from autobalance.diagnostics.hessian import (
    DEFAULT_MAX_PARAMS,
    HessianOperator,
    lanczos,
    named_loss,
)
from autobalance.diagnostics.preconditioning import (
    PreconditionedOperator,
    PreconditionerUnavailableError,
    curvature_measures,
    method_preconditioner,
    preconditioned_hessian,
)
from autobalance.errors import ConfigError, LossNameError
from autobalance.nets import MLP

__all__ = ["StudyConfig", "run_study"]

#: Methods the study can read a diagonal preconditioner from (others: raw statistics only).
_DEFAULT_METHOD_PARAMS: dict[str, dict[str, Any]] = {"autobalance": {"base": "adam"}}


@dataclass
class StudyConfig:
    """Settings of :func:`run_study` (see the module docstring)."""

    problem: str = "helmholtz"
    problem_params: dict[str, Any] = field(default_factory=dict)
    methods: tuple[str, ...] = ("autobalance", "adam")
    steps: int = 2000
    lr: float = 1e-3
    width: int = 30
    depth: int = 3
    seed: int = 0
    device: str = "cpu"
    log_every: int = 20
    hessian_checkpoints: int = 5
    hessian_params: dict[str, Any] | None = None
    hessian_seed: int = 1234
    max_params: int = DEFAULT_MAX_PARAMS
    lanczos_iters: int = 80
    rel_threshold: float = 1e-6
    losses: tuple[str, ...] | None = None

    def validate(self) -> None:
        checks = [
            (self.steps >= 1, "steps must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.width >= 1 and self.depth >= 0, "width must be >= 1 and depth >= 0"),
            (self.log_every >= 1, "log_every must be >= 1"),
            (self.hessian_checkpoints >= 1, "hessian_checkpoints must be >= 1"),
            (len(self.methods) >= 1, "at least one method is needed"),
            (len(set(self.methods)) == len(self.methods), "methods must be distinct"),
            (0 < self.rel_threshold < 1, "rel_threshold must lie in (0, 1)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"invalid diagnostics study: {message}")


def _params(model: torch.nn.Module, unknowns: Mapping[str, Tensor]) -> list[Tensor]:
    return [*model.parameters(), *unknowns.values()]


#: A spectrum: eigenvalues (or Ritz values) and SLQ weights (``None`` for a full spectrum).
Spectrum = tuple[Tensor, Tensor | None]


class _Curvature:
    """Spectra of one loss at the current parameters: dense when small, Lanczos otherwise."""

    def __init__(self, cfg: StudyConfig, n: int) -> None:
        self.cfg, self.n = cfg, n
        self.dense = n <= cfg.max_params
        self.seconds = 0.0

    def spectra(
        self, loss_fn: Any, params: list[Tensor], pre: dict[str, Tensor]
    ) -> dict[str, Spectrum]:
        """``{"raw": spectrum of H, name: spectrum of P^{-1/2} H P^{-1/2} for each P in pre}``.

        Dense: all eigenvalues (CPU, float64), weights ``None``.  Lanczos: Ritz values and their
        weights ``τ_j²`` from one probe drawn with ``hessian_seed`` (the same probe each call).
        """
        tic = time.perf_counter()
        op = HessianOperator(loss_fn, params)
        out: dict[str, Spectrum] = {}
        if self.dense:
            h = op.dense(max_params=self.cfg.max_params)
            out["raw"] = (torch.linalg.eigvalsh(h).cpu(), None)
            for name, p in pre.items():
                out[name] = (torch.linalg.eigvalsh(preconditioned_hessian(h, p)).cpu(), None)
        else:
            operators: dict[str, Any] = {"raw": op}
            operators.update({name: PreconditionedOperator(op, p) for name, p in pre.items()})
            for name, operator in operators.items():
                gen = torch.Generator().manual_seed(self.cfg.hessian_seed)
                res = lanczos(operator, op.dim, self.cfg.lanczos_iters, generator=gen)
                out[name] = (res.ritz_values, res.ritz_weights)
        self.seconds += time.perf_counter() - tic
        return out


def _summ(spectrum: Spectrum, cfg: StudyConfig) -> dict[str, float]:
    """:func:`curvature_measures` at ``cfg.rel_threshold`` (κ_eff at 1e-2, 1e-4, 1e-6 too)."""
    eigs, weights = spectrum
    return curvature_measures(eigs, weights, rel_threshold=cfg.rel_threshold)


def _record(spectrum: Spectrum, cfg: StudyConfig) -> dict[str, Any]:
    """``{"summary", "eigenvalues"[, "weights"]}`` of a spectrum, JSON-ready."""
    eigs, weights = spectrum
    out: dict[str, Any] = {"summary": _summ(spectrum, cfg), "eigenvalues": eigs.tolist()}
    if weights is not None:
        out["weights"] = weights.tolist()
    return out


def _checkpoint_steps(steps: int, count: int) -> list[int]:
    marks = {1, steps}
    marks.update(round(steps * i / count) for i in range(1, count))
    return sorted(m for m in marks if m >= 1)


def _pre(method: Any, loss: str, params: list[Tensor]) -> Tensor | None:
    """The method's preconditioner for ``loss``; ``None`` for methods that keep none."""
    try:
        return method_preconditioner(method, loss, params)
    except PreconditionerUnavailableError:
        return None


def _flat_grad(grads: Sequence[Tensor | None], params: list[Tensor]) -> Tensor:
    """One flat float64 gradient (zeros for parameters the loss does not reach)."""
    return torch.cat(
        [
            torch.zeros(p.numel(), dtype=torch.float64, device=p.device)
            if g is None
            else g.reshape(-1).double()
            for p, g in zip(params, grads, strict=True)
        ]
    )


def run_study(cfg: StudyConfig, *, progress: Any = None) -> dict[str, Any]:
    """Run the study and return a JSON-ready dict (spectra, histories, summaries)."""
    cfg.validate()
    started = time.perf_counter()
    dtype = torch.float64
    problem = problems.create(cfg.problem, **cfg.problem_params)
    loss_names = list(cfg.losses or problem.loss_names)
    unknown = [n for n in loss_names if n not in problem.loss_names]
    if unknown:
        raise LossNameError(
            f"problem {cfg.problem!r} has no loss {', '.join(map(repr, unknown))}; its losses "
            f"are: {', '.join(map(repr, problem.loss_names))}"
        )
    if len(loss_names) < 2:
        raise ConfigError("the study needs at least two losses")
    hessian_params = cfg.hessian_params
    if hessian_params is None:
        hessian_params = {"n_residual": 256} if "n_residual" in problem.params else {}
    device = torch.device(cfg.device)
    hproblem = problems.create(cfg.problem, **{**problem.params, **hessian_params})
    hgen = torch.Generator(device=device).manual_seed(cfg.hessian_seed)
    hbatch = hproblem.sample(hgen, device, dtype)

    torch.manual_seed(cfg.seed)
    init_model = MLP(problem.in_dim, problem.out_dim, cfg.width, cfg.depth).to(device, dtype)
    with torch.no_grad():  # unknowns in place, as the runner does
        for v in problem.unknowns().values():
            v.data = v.data.to(device, dtype)
    n_params = sum(p.numel() for p in init_model.parameters())
    n_params += sum(p.numel() for p in problem.unknowns().values())
    curv = _Curvature(cfg, n_params)
    ref, others = loss_names[0], loss_names[1:]

    def loss_fn(model: torch.nn.Module, prob: Any, name: str) -> Any:
        return named_loss(lambda: prob.losses(model, hbatch), name)

    init_unknowns = {k: v.data.clone() for k, v in problem.unknowns().items()}
    init_spectra: dict[str, Any] = {}
    for name in loss_names:
        spectrum = curv.spectra(
            loss_fn(init_model, problem, name), _params(init_model, problem.unknowns()), {}
        )["raw"]
        init_spectra[name] = _record(spectrum, cfg)

    results: dict[str, Any] = {}
    marks = _checkpoint_steps(cfg.steps, cfg.hessian_checkpoints)
    for method_name in cfg.methods:
        prob = problems.create(cfg.problem, **problem.params)
        unknowns = prob.unknowns()
        with torch.no_grad():
            for k, v in unknowns.items():
                v.data = init_unknowns[k].clone()
        model = copy.deepcopy(init_model)
        params = _params(model, unknowns)
        kwargs = {**_DEFAULT_METHOD_PARAMS.get(method_name, {}), "lr": cfg.lr}
        method = methods.create(method_name, params, **kwargs)
        gen = torch.Generator(device=device).manual_seed(cfg.seed)
        history: list[dict[str, float]] = []
        checkpoints: list[dict[str, Any]] = []
        tic = time.perf_counter()
        hessian_s = curv.seconds
        for step in range(1, cfg.steps + 1):
            batch = prob.sample(gen, device, dtype)
            losses = prob.losses(model, batch)
            logging = step == 1 or step % cfg.log_every == 0 or step == cfg.steps
            grads = None
            if logging:
                grads = {
                    n: torch.autograd.grad(losses[n], params, retain_graph=True, allow_unused=True)
                    for n in loss_names
                }
            info = method.step({n: losses[n] for n in losses})
            if grads is not None:
                pres = {n: _pre(method, n, params) for n in loss_names}
                flat = {n: _flat_grad(grads[n], params) for n in loss_names}
                updates = None
                known = {n: p for n, p in pres.items() if p is not None}
                if len(known) == len(pres):
                    updates = {n: cfg.lr * flat[n] / known[n] for n in loss_names}
                row = {"step": float(step), **{n: float(losses[n].detach()) for n in loss_names}}
                row.update(balance_stats(flat, updates))
                actual = stats_from_step_info(info, loss_names)
                row.update(
                    {f"info_{k}": v for k, v in actual.items() if "update" in k and k != "step"}
                )
                history.append(row)
            if step in marks:
                entry: dict[str, Any] = {"step": step}
                for name in others:
                    pre = _pre(method, name, params)
                    spectra = curv.spectra(
                        loss_fn(model, prob, name), params, {} if pre is None else {"pre": pre}
                    )
                    entry[name] = {k: _summ(v, cfg) for k, v in spectra.items()}
                checkpoints.append(entry)
            if progress is not None and step % max(1, cfg.steps // 20) == 0:
                progress(f"{method_name}: step {step}/{cfg.steps}")
        train_s = time.perf_counter() - tic - (curv.seconds - hessian_s)
        pre_ref = _pre(method, ref, params)
        final = curv.spectra(
            loss_fn(model, prob, ref), params, {} if pre_ref is None else {"pre": pre_ref}
        )
        points = prob.evaluation_points(device, dtype)
        with torch.no_grad():
            pred, exact = model(points), prob.reference(points)
        rel_l2 = float((pred - exact).norm() / exact.norm())
        results[method_name] = {
            "history": history,
            "checkpoints": checkpoints,
            "final_spectra": {k: _record(v, cfg) for k, v in final.items()},
            "rel_l2": rel_l2,
            "train_s": train_s,
            "summary": _method_summary(history, loss_names),
        }
    return {
        "config": {**asdict(cfg), "hessian_params": hessian_params},
        "device": str(device),
        "loss_names": loss_names,
        "n_params": n_params,
        "hessian": "dense" if curv.dense else f"lanczos ({cfg.lanczos_iters} steps)",
        "init_spectra": init_spectra,
        "methods": results,
        "hessian_s": curv.seconds,
        "wall_s": time.perf_counter() - started,
    }


def _median(values: Sequence[float]) -> float:
    finite = sorted(v for v in values if math.isfinite(v))
    return finite[len(finite) // 2] if finite else math.nan


def _method_summary(history: list[dict[str, float]], names: list[str]) -> dict[str, float]:
    """Medians over the logged steps of the ratios, spreads and cosines (second half too)."""
    out: dict[str, float] = {}
    half = history[len(history) // 2 :]
    keys = [k for k in history[0] if "ratio" in k or "cos" in k or "spread" in k] if history else []
    for key in keys:
        out[f"median_{key}"] = _median([r.get(key, math.nan) for r in history])
        out[f"median_2nd_half_{key}"] = _median([r.get(key, math.nan) for r in half])
    for key in [k for k in (history[0] if history else {}) if "_cos_" in k and "info" not in k]:
        values = [r[key] for r in history if math.isfinite(r[key])]
        out[f"frac_negative_{key}"] = (
            sum(v < 0 for v in values) / len(values) if values else math.nan
        )
    return out
