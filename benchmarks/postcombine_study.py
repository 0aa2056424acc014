"""Why the paper's post-combine rule fails on Burgers and wave, and which rule fixes it.

Two studies on the runner's training loop (``autobalance.experiments.runner.train``, reproduced
with the public API: seeds, fresh points every step, ``lr(t) = lr · 0.9^(t/1000)``, held-out grid):

``mechanism``
    The paper's rule (``AutoBalance``, base AdamW, as the ``autobalance`` method) against one Adam
    on the summed loss (the ``adam`` method).  Every ``--log-every`` steps: each loss's value,
    the norm of its update ``u_k``, the update cosines ``cos(u_j, u_k)``, the cancelled fraction
    ``c_k = −⟨Σ_{j≠k} u_j, u_k⟩ / ‖u_k‖²`` (0: nothing cancelled, 1: the others cancel ``u_k``
    exactly, > 1: the step reverses it) and ``cos(∇L_k, Δ)``.  Adam has no per-loss update; its
    step is split exactly into per-loss parts with its own denominator,
    ``u_k = lr · m̂_k / (√v̂ + ε)`` (``m_k``: the EMA of ``∇L_k`` with Adam's β1; ``Σ_k u_k`` is
    Adam's step because the first moment is linear in the gradient).

``screen``
    Candidate post-combine rules (:mod:`autobalance.optim.combine`) on a prototype of AutoBalance:
    one AdamW state per loss on the flat parameter vector (AutoBalance's defaults: β = (0.9,
    0.999), ε = 1e-8, weight decay 0.01 once per step), ``Δ`` from the rule.  With ``sum`` it is
    the paper's rule.

``figures``
    The mechanism figures from a ``mechanism`` output folder.

``candidates``
    rel. L2 vs step of every screened rule (``--out``: a ``screen`` output folder), and a table.

    python benchmarks/postcombine_study.py mechanism --problems burgers wave --steps 3000 \\
        --out runs/postcombine/mechanism
    python benchmarks/postcombine_study.py screen --problems burgers --rules sum upgrad \\
        --steps 3000 --seeds 0 --out runs/postcombine/screen
    python benchmarks/postcombine_study.py figures --out runs/postcombine/mechanism \\
        --figures docs/figures/postcombine
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from autobalance import methods, nets, problems
from autobalance.metrics import error_metrics
from autobalance.optim.combine import (
    RULES,
    adam_blend,
    combine,
    shared_second_moment,
    sign_consensus,
)

LR, LR_DECAY, LR_DECAY_STEPS = 1e-3, 0.9, 1000
BETAS, EPS, WEIGHT_DECAY = (0.9, 0.999), 1e-8, 0.01


def lr_at(step: int, lr: float = LR) -> float:
    """The runner's schedule ``lr · 0.9^(t/1000)`` at step ``t`` (0-based, before the step)."""
    return lr * LR_DECAY ** (step / LR_DECAY_STEPS)


@dataclass
class Setup:
    """One run's objects, made as the runner makes them."""

    problem: Any
    model: torch.nn.Module
    params: list[Tensor]
    generator: torch.Generator
    eval_points: Tensor
    eval_reference: Tensor

    def rel_l2(self) -> float:
        with torch.no_grad():
            return error_metrics(self.model(self.eval_points), self.eval_reference)["rel_l2"]


def make_setup(name: str, seed: int, problem_params: Mapping[str, Any]) -> Setup:
    """Problem, network (the runner's seeding order) and sampler generator for ``seed``."""
    problem = problems.create(name, **problem_params)
    problem.use_sampler("uniform")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    model = nets.create("mlp", problem.in_dim, problem.out_dim, input_names=problem.input_names).to(
        dtype=torch.float32
    )
    params = [*model.parameters(), *problem.unknowns().values()]
    generator = torch.Generator().manual_seed(seed)
    points = problem.evaluation_points("cpu", torch.float32)
    return Setup(problem, model, params, generator, points, problem.reference(points))


def flat_grads(losses: Mapping[str, Tensor], params: list[Tensor]) -> Tensor:
    """``G`` (``K × P``): each loss's gradient, flattened (zeros where a loss does not reach)."""
    rows = []
    names = list(losses)
    for i, name in enumerate(names):
        grads = torch.autograd.grad(
            losses[name], params, retain_graph=i < len(names) - 1, allow_unused=True
        )
        rows.append(
            torch.cat(
                [
                    (g if g is not None else torch.zeros_like(p)).reshape(-1)
                    for g, p in zip(grads, params, strict=True)
                ]
            )
        )
    return torch.stack(rows)


# --------------------------------------------------------------------------------- statistics
def update_stats(uu: np.ndarray, gd: np.ndarray, gnorm: np.ndarray, dnorm: float) -> dict:
    """Per-loss statistics from the update Gram ``U Uᵀ``, ``G Δ``, ``‖g_k‖`` and ``‖Δ‖``."""
    norms = np.sqrt(np.clip(np.diag(uu), 0, None))
    outer = np.outer(norms, norms)
    cos = np.divide(uu, outer, out=np.full_like(uu, np.nan), where=outer > 0)
    others = uu.sum(axis=1) - np.diag(uu)  # ⟨Σ_{j≠k} u_j, u_k⟩
    cancelled = np.divide(
        -others, np.diag(uu), out=np.full(len(norms), np.nan), where=np.diag(uu) > 0
    )
    denom = gnorm * dnorm
    grad_cos = np.divide(gd, denom, out=np.full(len(norms), np.nan), where=denom > 0)
    return {
        "update_norm": norms.tolist(),
        "update_cos": cos.tolist(),
        "cancelled": cancelled.tolist(),
        "grad_delta_cos": grad_cos.tolist(),
        "grad_norm": gnorm.tolist(),
        "delta_norm": dnorm,
    }


def _mechanism_paper(setup: Setup, steps: int, log_every: int, eval_every: int) -> dict:
    """The ``autobalance`` method (AutoBalance, AdamW) with its StepInfo statistics."""
    balancer = methods.create("autobalance", setup.params, lr=LR)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        balancer.optimizer, lambda t: LR_DECAY ** (t / LR_DECAY_STEPS)
    )
    log: list[dict] = []
    evals = [{"step": 0, "rel_l2": setup.rel_l2()}]
    for step in range(1, steps + 1):
        batch = setup.problem.sample(setup.generator, "cpu", torch.float32)
        info = balancer.step(setup.problem.losses(setup.model, batch))
        scheduler.step()
        if step % log_every == 0 or step == 1:
            names = list(info.losses)
            norms = np.array([info.losses[n].update_norm for n in names])
            cos = np.array(info.update_cosines, dtype=np.float64)
            uu = cos * np.outer(norms, norms)
            gnorm = np.array([info.losses[n].grad_norm for n in names])
            gd = np.array([info.losses[n].cosine for n in names]) * gnorm * info.update_norm
            row = {"step": step, "values": [info.losses[n].value for n in names]}
            row.update(update_stats(np.nan_to_num(uu), gd, gnorm, info.update_norm))
            log.append(row)
        if step % eval_every == 0:
            evals.append({"step": step, "rel_l2": setup.rel_l2()})
    return {"names": names, "log": log, "evals": evals}


def _mechanism_adam(setup: Setup, steps: int, log_every: int, eval_every: int) -> dict:
    """The ``adam`` method, its step split into per-loss parts (module docstring)."""
    balancer = methods.create("adam", setup.params, lr=LR)
    optimizer = balancer.optimizer
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda t: LR_DECAY ** (t / LR_DECAY_STEPS)
    )
    beta1, beta2 = optimizer.param_groups[0]["betas"]
    eps = optimizer.param_groups[0]["eps"]
    first: Tensor | None = None
    log: list[dict] = []
    evals = [{"step": 0, "rel_l2": setup.rel_l2()}]
    for step in range(1, steps + 1):
        lr = optimizer.param_groups[0]["lr"]
        batch = setup.problem.sample(setup.generator, "cpu", torch.float32)
        losses = setup.problem.losses(setup.model, batch)
        names = list(losses)
        grads = flat_grads({n: losses[n] for n in names}, setup.params)
        # flat_grads freed the graphs: rebuild the losses for the method's own backward pass.
        losses = setup.problem.losses(setup.model, batch)
        info = balancer.step(losses)
        scheduler.step()
        first = (1 - beta1) * grads if first is None else beta1 * first + (1 - beta1) * grads
        if step % log_every == 0 or step == 1:
            v = torch.cat([optimizer.state[p]["exp_avg_sq"].reshape(-1) for p in setup.params])
            denom = (v / (1 - beta2**step)).sqrt() + eps
            parts = lr * (first / (1 - beta1**step)) / denom
            delta = parts.sum(dim=0)
            p64, g64, d64 = parts.double(), grads.double(), delta.double()
            row = {"step": step, "values": [info.losses[n].value for n in names]}
            row.update(
                update_stats(
                    (p64 @ p64.T).numpy(),
                    (g64 @ d64).numpy(),
                    g64.norm(dim=1).numpy(),
                    float(d64.norm()),
                )
            )
            log.append(row)
        if step % eval_every == 0:
            evals.append({"step": step, "rel_l2": setup.rel_l2()})
    return {"names": names, "log": log, "evals": evals}


def _mechanism_prototype(
    setup: Setup, steps: int, log_every: int, eval_every: int, rule: str
) -> dict:
    """A candidate rule on the prototype (:class:`PerLossAdamW`), with the same statistics."""
    opt = PerLossAdamW(setup.params, rule)
    log: list[dict] = []
    evals = [{"step": 0, "rel_l2": setup.rel_l2()}]
    for step in range(1, steps + 1):
        batch = setup.problem.sample(setup.generator, "cpu", torch.float32)
        losses = setup.problem.losses(setup.model, batch)
        names = list(losses)
        values = opt.step(losses, lr_at(step - 1))
        if step % log_every == 0 or step == 1:
            assert opt.last is not None
            u, g, d = (x.double() for x in opt.last)
            row = {"step": step, "values": [values[n] for n in names]}
            row.update(
                update_stats(
                    (u @ u.T).numpy(), (g @ d).numpy(), g.norm(dim=1).numpy(), float(d.norm())
                )
            )
            log.append(row)
        if step % eval_every == 0:
            evals.append({"step": step, "rel_l2": setup.rel_l2()})
    return {"names": names, "log": log, "evals": evals}


# ---------------------------------------------------------------------------------- prototype
class PerLossAdamW:
    """AutoBalance's per-loss AdamW states on the flat parameter vector, ``Δ`` from a rule.

    ``rule``: a name in :data:`~autobalance.optim.combine.RULES`, ``"shared-v"``
    (:func:`~autobalance.optim.combine.shared_second_moment`), ``"consensus"``
    (:func:`~autobalance.optim.combine.sign_consensus`) or ``"blend:N"`` (``adam_blend``
    with ``α = min(1, t/N)``).
    """

    def __init__(self, params: list[Tensor], rule: str, **rule_params: Any) -> None:
        self.params = params
        self.rule_name = rule
        gram_rules = RULES.names("gram")
        self.rule = RULES.create(rule, **rule_params) if rule in gram_rules else None
        moment_rules = set(RULES.names("moments")) - {"consensus"}
        self.moment_rule = RULES.create(rule, **rule_params) if rule in moment_rules else None
        self.ramp = int(rule.split(":")[1]) if rule.startswith("blend:") else 0
        self.m: Tensor | None = None
        self.v: Tensor | None = None
        self.v_sum: Tensor | None = None
        self.t = 0
        self.last: tuple[Tensor, Tensor, Tensor] | None = None

    def step(self, losses: Mapping[str, Tensor], lr: float) -> dict[str, float]:
        names = list(losses)
        values = torch.tensor([float(losses[n].detach()) for n in names], dtype=torch.float64)
        grads = flat_grads(losses, self.params)
        beta1, beta2 = BETAS
        if self.m is None:
            self.m, self.v = torch.zeros_like(grads), torch.zeros_like(grads)
            self.v_sum = torch.zeros_like(grads[0])
        assert self.v is not None and self.v_sum is not None
        self.t += 1
        self.m.lerp_(grads, 1 - beta1)
        self.v.mul_(beta2).addcmul_(grads, grads, value=1 - beta2)
        total = grads.sum(dim=0)
        self.v_sum.mul_(beta2).addcmul_(total, total, value=1 - beta2)
        bias1, bias2 = 1 - beta1**self.t, 1 - beta2**self.t
        v_hat = self.v / bias2
        updates = lr * (self.m / bias1) / (v_hat.sqrt() + EPS)
        if self.rule is not None:
            delta = combine(self.rule, updates, grads, values)
        elif self.moment_rule is not None:
            delta = self.moment_rule.combine(updates, self.m, self.v)
        elif self.rule_name == "shared-v":
            delta = shared_second_moment(updates, v_hat, EPS)
        elif self.rule_name == "consensus":
            delta = sign_consensus(updates, self.m)
        elif self.ramp:
            alpha = min(1.0, self.t / self.ramp)
            delta = adam_blend(updates, v_hat, self.v_sum / bias2, EPS, alpha)
        else:
            raise ValueError(f"unknown rule {self.rule_name!r}")
        self.last = (updates, grads, delta)
        with torch.no_grad():
            offset = 0
            for p in self.params:
                n = p.numel()
                p.mul_(1 - lr * WEIGHT_DECAY)
                p.sub_(delta[offset : offset + n].view_as(p))
                offset += n
        return dict(zip(names, values.tolist(), strict=True))


def screen_run(problem: str, rule: str, seed: int, steps: int, eval_every: int, **kw: Any) -> dict:
    """One run of ``rule`` (or the ``adam`` method when ``rule == "adam"``)."""
    setup = make_setup(problem, seed, {})
    tic = time.perf_counter()
    evals = [{"step": 0, "rel_l2": setup.rel_l2()}]
    values: dict[str, float] = {}
    if rule == "adam":
        balancer = methods.create("adam", setup.params, lr=LR)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            balancer.optimizer, lambda t: LR_DECAY ** (t / LR_DECAY_STEPS)
        )
        step_fn: Callable[[int], dict[str, float]]

        def step_fn(t: int) -> dict[str, float]:
            batch = setup.problem.sample(setup.generator, "cpu", torch.float32)
            info = balancer.step(setup.problem.losses(setup.model, batch))
            scheduler.step()
            return info.values
    else:
        opt = PerLossAdamW(setup.params, rule, **kw)

        def step_fn(t: int) -> dict[str, float]:
            batch = setup.problem.sample(setup.generator, "cpu", torch.float32)
            return opt.step(setup.problem.losses(setup.model, batch), lr_at(t - 1))

    status = "ok"
    for t in range(1, steps + 1):
        values = step_fn(t)
        if not all(math.isfinite(v) for v in values.values()):
            status = f"failed at step {t}"
            break
        if t % eval_every == 0 or t == steps:
            evals.append({"step": t, "rel_l2": setup.rel_l2()})
            print(f"  {problem} {rule} step {t}: rel_l2 {evals[-1]['rel_l2']:.3e}", flush=True)
    return {
        "problem": problem,
        "rule": rule,
        "rule_params": kw,
        "seed": seed,
        "steps": steps,
        "status": status,
        "rel_l2": evals[-1]["rel_l2"],
        "final_losses": values,
        "evals": evals,
        "wall_s": time.perf_counter() - tic,
    }


# ------------------------------------------------------------------------------------ figures
def _figures(data: dict, out: Path) -> None:
    from matplotlib.figure import Figure

    out.mkdir(parents=True, exist_ok=True)
    problems_ = list(data)
    colors = {"residual": "C0", "initial": "C1", "boundary": "C2"}
    order = ["paper", "adam"]
    methods_ = order + sorted({m for p in data.values() for m in p} - set(order))
    styles = dict(zip(methods_, ["-", "--", ":", "-."], strict=False))

    fig = Figure(figsize=(10, 3.2 * len(problems_)), dpi=80)
    axes = fig.subplots(len(problems_), 3, squeeze=False)
    for row, prob in enumerate(problems_):
        for method, style in styles.items():
            if method not in data[prob]:
                continue
            run = data[prob][method]
            steps = [r["step"] for r in run["log"]]
            for k, name in enumerate(run["names"]):
                c = colors.get(name, f"C{k}")
                lab = f"{method}: {name}"
                axes[row, 0].semilogy(
                    steps, [r["values"][k] for r in run["log"]], style, color=c, label=lab, lw=1
                )
                axes[row, 1].plot(
                    steps, _smooth([r["cancelled"][k] for r in run["log"]]), style, color=c, lw=1
                )
            ev = run["evals"]
            axes[row, 2].semilogy(
                [e["step"] for e in ev], [e["rel_l2"] for e in ev], style, color="k", label=method
            )
        axes[row, 0].set_title(f"{prob}: loss values")
        axes[row, 1].set_title(f"{prob}: cancelled fraction c_k (smoothed)")
        axes[row, 1].axhline(1.0, color="grey", lw=0.5)
        axes[row, 2].set_title(f"{prob}: rel. L2")
        axes[row, 0].legend(fontsize=6, ncol=2)
        axes[row, 2].legend(fontsize=7)
        for ax in axes[row]:
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "losses_cancellation.png")

    fig = Figure(figsize=(10, 3.2 * len(problems_)), dpi=80)
    axes = fig.subplots(len(problems_), 2, squeeze=False)
    for row, prob in enumerate(problems_):
        for method, style in styles.items():
            if method not in data[prob]:
                continue
            run = data[prob][method]
            steps = [r["step"] for r in run["log"]]
            names = run["names"]
            for i in range(len(names)):
                for j in range(i + 1, len(names)):
                    axes[row, 0].plot(
                        steps,
                        _smooth([r["update_cos"][i][j] for r in run["log"]]),
                        style,
                        lw=1,
                        color=f"C{i + j}",
                        label=f"{method}: {names[i][:3]}·{names[j][:3]}",
                    )
            for k, name in enumerate(names):
                axes[row, 1].semilogy(
                    steps,
                    _smooth([r["update_norm"][k] for r in run["log"]]),
                    style,
                    lw=1,
                    color=colors.get(name, f"C{k}"),
                    label=f"{method}: ‖u_{name}‖",
                )
        axes[row, 0].set_title(f"{prob}: update cosines cos(u_i, u_j) (smoothed)")
        axes[row, 0].axhline(0.0, color="grey", lw=0.5)
        axes[row, 1].set_title(f"{prob}: per-loss update norms (smoothed)")
        for ax in axes[row]:
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "cosines_norms.png")


def _candidates_figure(runs: list[dict], out: Path) -> None:
    """rel. L2 vs step of every screened rule, one panel per problem."""
    from matplotlib.figure import Figure

    problems_ = sorted({r["problem"] for r in runs})
    fig = Figure(figsize=(3.4 * len(problems_), 3.2), dpi=80)
    axes = fig.subplots(1, len(problems_), squeeze=False)[0]
    rules = sorted({r["label"] for r in runs})
    colors = {rule: f"C{i % 10}" for i, rule in enumerate(rules)}
    for ax, prob in zip(axes, problems_, strict=True):
        for r in sorted((r for r in runs if r["problem"] == prob), key=lambda r: r["label"]):
            ev = r["evals"]
            style = "--" if r["label"] in ("adam", "sum") else "-"
            lw = 2.0 if r["label"] in ("adam", "sum", "consensus") else 0.9
            ax.semilogy(
                [e["step"] for e in ev],
                [e["rel_l2"] for e in ev],
                style,
                color=colors[r["label"]],
                lw=lw,
                label=r["label"],
            )
        ax.set_title(f"{prob} (seed 0)")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("rel. L2")
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    fig.tight_layout(rect=(0, 0, 0.88, 1))
    fig.legend(handles.values(), handles.keys(), fontsize=7, loc="center right")
    fig.savefig(out / "candidates.png")


def _smooth(values: list[float], width: int = 10) -> list[float]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size < width:
        return arr.tolist()
    kernel = np.ones(width) / width
    padded = np.concatenate([np.full(width - 1, arr[0]), arr])
    return np.convolve(padded, kernel, mode="valid").tolist()


# --------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", choices=["mechanism", "screen", "figures", "candidates"])
    parser.add_argument("--problems", nargs="+", default=["burgers", "wave"])
    parser.add_argument("--rules", nargs="+", default=["sum"])
    parser.add_argument("--rule-params", default="{}", help="JSON keyword arguments of the rule")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--figures", type=Path, default=Path("docs/figures/postcombine"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.study == "mechanism":
        runs: list[tuple[str, Callable[..., dict]]] = [
            ("paper", _mechanism_paper),
            ("adam", _mechanism_adam),
        ]
        if args.rules != ["sum"]:  # candidate rules instead of the paper's rule and Adam
            runs = [
                (rule, lambda *a, rule=rule: _mechanism_prototype(*a, rule)) for rule in args.rules
            ]
        for prob in args.problems:
            for method, fn in runs:
                path = args.out / f"{prob}-{method}-seed{args.seeds[0]}.json"
                tic = time.perf_counter()
                result = fn(
                    make_setup(prob, args.seeds[0], {}), args.steps, args.log_every, args.eval_every
                )
                path.write_text(json.dumps(result))
                print(
                    f"{path}: rel_l2 {result['evals'][-1]['rel_l2']:.3e} "
                    f"({time.perf_counter() - tic:.0f} s)",
                    flush=True,
                )
    elif args.study == "screen":
        kw = json.loads(args.rule_params)
        for prob in args.problems:
            for rule in args.rules:
                for seed in args.seeds:
                    tag = "-".join(f"{k}{v}" for k, v in kw.items())
                    path = args.out / f"{prob}-{rule.replace(':', '')}{tag}-seed{seed}.json"
                    result = screen_run(prob, rule, seed, args.steps, args.eval_every, **kw)
                    path.write_text(json.dumps(result))
                    print(
                        f"{path.name}: rel_l2 {result['rel_l2']:.3e} {result['status']} "
                        f"({result['wall_s']:.0f} s)",
                        flush=True,
                    )
    elif args.study == "candidates":  # --out: the screen folder
        runs = []
        for path in sorted(args.out.glob("*-seed*.json")):
            run = json.loads(path.read_text())
            params = "".join(f",{k}={v}" for k, v in run.get("rule_params", {}).items())
            run["label"] = run["rule"] + params
            runs.append(run)
        args.figures.mkdir(parents=True, exist_ok=True)
        _candidates_figure(runs, args.figures)
        for r in sorted(runs, key=lambda r: (r["problem"], r["rel_l2"])):
            print(f"{r['problem']:>13} {r['steps']:>6} {r['label']:<26} {r['rel_l2']:.3e}")
    else:
        data: dict[str, dict] = {}
        for path in sorted(args.out.glob("*-seed*.json")):
            prob, method = path.stem.rsplit("-seed", 1)[0].rsplit("-", 1)
            data.setdefault(prob, {})[method] = json.loads(path.read_text())
        _figures(data, args.figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
