"""Median time per training step of every multi-gradient method, as a ratio to Adam on the sum.

For every shipped problem (K = 2 to 4 losses) at its default point counts, on the default
4×50 tanh MLP, each method trains its own copy of the same network on the same sequence of fresh
collocation points, in one process.  A step is what the runner does: sample the points, build the
named losses (forward pass and PDE derivatives), take the method's step.  The methods are
interleaved step by step (``--rounds × --steps`` steps each; every method takes its i-th step
right after the others', in an order that rotates), so that the machine's slow spells hit all of
them alike; the reported ratio is the median over i of ``time of the method's i-th step / time
of Adam's i-th step``, and ``--clock cpu`` counts only this thread's CPU time, for a machine
shared with other processes.

A second table isolates the per-loss gradients (:func:`autobalance.gradients.per_loss_gradients`)
from the optimizers: the time of the forward pass alone, of the forward pass plus one backward of
the summed loss, and of the forward pass plus the per-loss gradients; ``per-loss ÷ sum`` compares
the two backward parts (the forward pass subtracted).  It also counts what K separate cotangents
must do where losses share a forward pass: the autograd nodes ``Σ_k |graph_k|`` against
``|∪_k graph_k|``, and the same for the matrix-product FLOPs of the backward passes
(``torch.utils.flop_counter``); the FLOP ratio is the lower bound of ``per-loss ÷ sum`` for exact
per-loss gradients, and ``bound`` turns it into the least AutoBalance/Adam step-time ratio, ``1 +
(flops ratio − 1) × backward ÷ Adam step``.

    python benchmarks/step_time.py                                   # every problem, 1 thread
    python benchmarks/step_time.py --problems kovasznay helmholtz --rounds 11 --json out.json
    python benchmarks/step_time.py --methods all --rounds 3          # every multi-gradient method
    python benchmarks/step_time.py --device cuda --threads 4

Run with GLIBC_TUNABLES set as in the Makefile (``make bench`` does): glibc's default malloc
thresholds cost 11-25% of a step in page faults.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from autobalance import methods, nets, problems
from autobalance.errors import HyperparameterError
from autobalance.experiments import RunConfig
from autobalance.experiments.history import is_logged
from autobalance.gradients import graph_nodes, per_loss_gradients
from autobalance.methods.registry import request_statistics

Step = Callable[[], None]
#: The baseline every ratio is taken against.
BASELINE = "adam"
#: The multi-gradient methods timed by default: AutoBalance, the other two multi-state methods
#: that take per-loss gradients, and one aggregator of the per-loss gradient matrix.
DEFAULT_METHODS = ("autobalance", "multiadam", "mtadam", "upgrad")
#: The gradient-only cases of the second table (``--batched`` adds "batched VJP").
GRADIENT_CASES = ("forward", "sum backward", "per-loss")
BATCHED = "batched VJP"
#: ``--methods all``: every method that takes the per-loss gradients.
ALL = "all"


@dataclass(frozen=True)
class Setup:
    """What every timed case of one problem shares: the problem, network and device."""

    problem: problems.Problem
    model: torch.nn.Module
    device: torch.device
    dtype: torch.dtype

    def points(self, seed: int = 0) -> Callable[[], dict[str, torch.Tensor]]:
        """A stream of fresh point sets, the same sequence for every case."""
        generator = torch.Generator(device=self.device).manual_seed(seed)
        return lambda: self.problem.sample(generator, self.device, self.dtype)


def make_setup(name: str, width: int, depth: int, device: torch.device) -> Setup:
    problem = problems.create(name)
    torch.manual_seed(0)
    model = nets.create("mlp", problem.in_dim, problem.out_dim, width=width, depth=depth)
    return Setup(problem, model.to(device), device, torch.float32)


def multi_gradient_methods(setup: Setup) -> list[str]:
    """Every catalogued method that takes the per-loss gradients (``needs_grad_matrix`` at its
    first step on this problem), in catalogue order."""
    found = []
    for name in methods.names():
        model = copy.deepcopy(setup.model)
        params = list(model.parameters()) + list(setup.problem.unknowns().values())
        balancer = methods.create(name, params, **method_kwargs(setup, name))
        losses = setup.problem.losses(model, setup.points(seed=1)())
        try:
            info = balancer.step(losses)
        except HyperparameterError as exc:  # e.g. no loss named as the method requires
            print(f"note: {name} left out on {setup.problem.name}: {exc}", file=sys.stderr)
            continue
        if info.needs_grad_matrix:
            found.append(name)
    return found


def method_kwargs(setup: Setup, name: str) -> dict[str, object]:
    """``lr=1e-3`` and the method's example hyperparameters, fitted to the problem's losses
    (the ``fixed`` method's weights name them)."""
    kwargs: dict[str, object] = {**methods.spec(name).example_params, "lr": 1e-3}
    if "weights" in kwargs:
        kwargs["weights"] = dict.fromkeys(setup.problem.loss_names, 1.0)
    return kwargs


def graph_cost(setup: Setup) -> dict[str, float]:
    """Autograd nodes and backward matrix-product FLOPs: ``Σ_k`` over the losses' own graphs
    and for the union (one backward of the sum), and their ratios."""
    model = copy.deepcopy(setup.model)
    params = list(model.parameters())
    losses = setup.problem.losses(model, setup.points(seed=2)())
    graphs = [graph_nodes(loss) for loss in losses.values()]
    union = set().union(*graphs)

    def flops(run: Callable[[], object]) -> int:
        with FlopCounterMode(display=False) as counter:
            run()
        return counter.get_total_flops()

    per_loss = [
        flops(
            lambda loss=loss: torch.autograd.grad(
                loss, params, retain_graph=True, allow_unused=True
            )
        )
        for loss in losses.values()
    ]
    total = flops(lambda: torch.autograd.grad(sum(losses.values()), params, allow_unused=True))
    nodes_sum, nodes_union = sum(len(g) for g in graphs), len(union)
    return {
        "nodes per-loss": nodes_sum,
        "nodes sum": nodes_union,
        "nodes ratio": nodes_sum / nodes_union,
        "flops per-loss": sum(per_loss),
        "flops sum": total,
        "flops ratio": sum(per_loss) / total if total else 1.0,
    }


def training_step(setup: Setup, method: str, log_every: int) -> Step:
    """One runner step of ``method`` on its own copy of the network; as in the runner, per-loss
    statistics only on the steps a run with ``log_every`` logs (0: on every step)."""
    model, problem = copy.deepcopy(setup.model), copy.deepcopy(setup.problem)
    params = list(model.parameters()) + list(problem.unknowns().values())
    balancer = methods.create(method, params, **method_kwargs(setup, method))
    points = setup.points()
    taken = itertools.count(1)

    def step() -> None:
        logged = log_every == 0 or is_logged(next(taken), log_every, 0)
        request_statistics(balancer, logged)
        balancer.step(problem.losses(model, points()))

    return step


def gradient_case(setup: Setup, case: str) -> Step:
    """Forward pass only, plus one backward of the sum, plus the per-loss gradients, or plus
    one batched vector-Jacobian product (``is_grads_batched``: the K rows of the identity as the
    cotangents of the stacked losses), the alternative measured against the per-loss calls."""
    model = copy.deepcopy(setup.model)
    params = list(model.parameters())
    points = setup.points()

    def forward() -> None:
        setup.problem.losses(model, points())

    def sum_backward() -> None:
        losses = setup.problem.losses(model, points())
        torch.autograd.grad(sum(losses.values()), params, allow_unused=True)

    def per_loss() -> None:
        losses = setup.problem.losses(model, points())
        per_loss_gradients(list(losses), list(losses.values()), params)

    def batched() -> None:
        losses = torch.stack(list(setup.problem.losses(model, points()).values()))
        eye = torch.eye(len(losses), device=losses.device, dtype=losses.dtype)
        torch.autograd.grad(losses, params, eye, is_grads_batched=True, allow_unused=True)

    cases = {"forward": forward, "sum backward": sum_backward, "per-loss": per_loss}
    return (cases | {BATCHED: batched})[case]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: ``wall``: elapsed time; ``cpu``: CPU time of this thread (``time.thread_time``), which leaves
#: out the time the process waits for a core on a shared machine (CPU device, one thread only).
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.thread_time}


def interleaved(
    cases: dict[str, Step],
    rounds: int,
    steps: int,
    warmup: int,
    device: torch.device,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Seconds per call of every case, ``rounds × steps`` calls each, interleaved call by call.

    Every case takes its ``i``-th call right after the others' (in an order that rotates from
    one call to the next), so the ``i``-th samples of two cases saw the same state of the
    machine and their ratio is a paired comparison.
    """
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    names = list(cases)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds * steps):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            _sync(device)
            start = clock()
            cases[name]()
            _sync(device)
            samples[name].append(clock() - start)
    return samples


def ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median of the paired ratios ``numerator[i] / denominator[i]``."""
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))


def measure(name: str, method_names: list[str], args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    setup = make_setup(name, args.width, args.depth, device)
    if method_names == [ALL]:
        method_names = multi_gradient_methods(setup)
    cost = graph_cost(setup)
    cases = {m: training_step(setup, m, args.log_every) for m in [BASELINE, *method_names]}
    gradient_cases = [*GRADIENT_CASES, BATCHED] if args.batched else list(GRADIENT_CASES)
    cases |= {f"grad: {c}": gradient_case(setup, c) for c in gradient_cases}
    samples = interleaved(cases, args.rounds, args.steps, args.warmup, device, CLOCKS[args.clock])
    base = samples[BASELINE]
    fwd, total, split = (samples[f"grad: {c}"] for c in GRADIENT_CASES)
    # Backward parts: the paired ratio r of the totals, with the forward pass F taken out of the
    # total T by medians, (r·T − F) / (T − F) (a paired ratio of two differences would divide two
    # small noisy numbers).
    forward, both = statistics.median(fwd), statistics.median(total)

    def backward(samples: list[float]) -> float:
        return (ratio(samples, total) * both - forward) / (both - forward)

    backward_ratio = backward(split)
    adam_step = statistics.median(base)
    bound = 1 + (cost["flops ratio"] - 1) * (both - forward) / adam_step
    return {
        "problem": name,
        "losses": len(setup.problem.loss_names),
        "methods": {
            m: {"median_ms": 1e3 * statistics.median(samples[m]), "ratio": ratio(samples[m], base)}
            for m in [BASELINE, *method_names]
        },
        "gradients": {
            **{c: 1e3 * statistics.median(samples[f"grad: {c}"]) for c in gradient_cases},
            "per-loss / sum backward": backward_ratio,
            **cost,
            "step ratio bound": bound,
            **(
                {f"{BATCHED} / sum backward": backward(samples[f"grad: {BATCHED}"])}
                if args.batched
                else {}
            ),
        },
    }


def print_tables(results: list[dict]) -> None:
    method_names = [m for m in results[0]["methods"] if m != BASELINE]
    widths = [max(13, len(m) + 2) for m in method_names]
    header = f"{'problem':<20}{'K':>3}{'adam ms':>10}"
    header += "".join(f"{m:>{w}}" for m, w in zip(method_names, widths, strict=True))
    print("\nstep time, ratio to Adam on the sum (median of the paired ratios)")
    print(header)
    for res in results:
        row = (
            f"{res['problem']:<20}{res['losses']:>3}{res['methods'][BASELINE]['median_ms']:>10.2f}"
        )
        row += "".join(
            f"{res['methods'][m]['ratio']:>{w}.3f}" if m in res["methods"] else f"{'-':>{w}}"
            for m, w in zip(method_names, widths, strict=True)
        )
        print(row)
    batched = BATCHED in results[0]["gradients"]
    cases = [*GRADIENT_CASES, BATCHED] if batched else list(GRADIENT_CASES)
    print("\nper-loss gradients vs one backward of the sum (ms include the forward pass; the")
    print("ratios compare the backward parts)")
    header = f"{'problem':<20}{'K':>3}" + "".join(f"{c:>14}" for c in cases) + "  per-loss ×"
    header += "  batched ×" if batched else ""
    print(header + "  nodes Σ/∪  flops Σ/∪  bound")
    for res in results:
        g = res["gradients"]
        row = f"{res['problem']:<20}{res['losses']:>3}" + "".join(f"{g[c]:>14.2f}" for c in cases)
        row += f"{g['per-loss / sum backward']:>12.3f}"
        row += f"{g[f'{BATCHED} / sum backward']:>11.3f}" if batched else ""
        row += f"{g['nodes ratio']:>11.3f}{g['flops ratio']:>11.3f}{g['step ratio bound']:>7.3f}"
        print(row)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", nargs="+", default=problems.names())
    parser.add_argument(
        "--methods",
        nargs="+",
        default=list(DEFAULT_METHODS),
        help=f"method names, or '{ALL}': every method that takes the per-loss gradients",
    )
    parser.add_argument("--width", type=int, default=50)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per case and round")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--log-every",
        type=int,
        default=RunConfig().log_every,
        help="statistics on every N-th step, as a run logging every N steps (0: every step)",
    )
    parser.add_argument(
        "--batched", action="store_true", help="also time one batched VJP for all losses"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="cpu: this thread's CPU time, for a shared machine (CPU device, --threads 1)",
    )
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.clock == "cpu" and (args.device != "cpu" or args.threads != 1):
        parser.error("--clock cpu measures one CPU thread: use it with --device cpu --threads 1")
    torch.set_num_threads(args.threads)
    if "GLIBC_TUNABLES" not in os.environ and args.device == "cpu":
        print("note: GLIBC_TUNABLES is unset; steps may be 11-25% slower", file=sys.stderr)
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), device {args.device}, "
        f"{args.depth}x{args.width} MLP, default points, {args.rounds} rounds x {args.steps}, "
        f"{args.clock} clock"
    )
    results = []
    for name in args.problems:
        results.append(measure(name, args.methods, args))
    print_tables(results)
    if args.json:
        with open(args.json, "w") as fh:
            payload = {
                "torch": torch.__version__,
                "threads": args.threads,
                "device": args.device,
                "clock": args.clock,
                "network": f"{args.depth}x{args.width}",
                "results": results,
            }
            json.dump(payload, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
