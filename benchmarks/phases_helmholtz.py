"""Adam (or AutoBalance), then each training phase, on Helmholtz in float64.

The measurement of issue 14: the default Helmholtz problem (a1 = 1, a2 = 4, k = 1), a 3×30 tanh
MLP, 2500 residual + 400 boundary points drawn once (seed 0), float64; ``--steps`` first-order
steps on those points, then, from the same parameters, each phase for at most ``--seconds`` of
wall time (and ``--iters`` iterations).  Prints, per phase, the relative L2 error on the held-out
201×201 grid, the iterations and evaluations used and the time, and writes them as JSON.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/phases_helmholtz.py --seconds 120
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch

from autobalance import AutoBalance, nets, problems
from autobalance.metrics import error_metrics
from autobalance.phases import (
    PhaseRecord,
    create_phase,
    parse_phase,
    problem_objective,
    run_phase,
)

DEFAULT_PHASES = (
    "lbfgs",
    "bfgs",
    "ssbfgs",
    "ssbroyden",
    "gauss_newton",
    "engd",
)


def rel_l2(problem: problems.Problem, model: torch.nn.Module) -> float:
    """Relative L2 error on the problem's evaluation grid."""
    grid = problem.evaluation_points("cpu", torch.float64)
    with torch.no_grad():
        return error_metrics(model(grid), problem.reference(grid))["rel_l2"]


def first_order(
    problem: problems.Problem, model: torch.nn.Module, batch: dict, method: str, steps: int
) -> float:
    """``steps`` of Adam on the summed loss, or of AutoBalance(Adam), at lr 1e-3; seconds."""
    start = time.perf_counter()
    if method == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(steps):
            opt.zero_grad()
            sum(problem.losses(model, batch).values()).backward()
            opt.step()
    else:
        balancer = AutoBalance(model.parameters(), base="adam", lr=1e-3)
        for _ in range(steps):
            balancer.step(problem.losses(model, batch))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", choices=("adam", "autobalance"), default="adam")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--phases", nargs="*", default=list(DEFAULT_PHASES))
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--iters", type=int, default=100000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--log-every", type=int, default=0, help="print the error every N phase iterations"
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--cache", type=Path, default=None, help="save the first-order result here, or load it"
    )
    args = parser.parse_args()

    problem = problems.create("helmholtz", n_residual=2500, n_boundary=400)
    torch.manual_seed(args.seed)
    model = nets.create("mlp", 2, 1, width=30, depth=3).double()
    generator = torch.Generator().manual_seed(args.seed)
    batch = problem.sample(generator, "cpu", torch.float64)
    if args.cache and args.cache.exists():
        saved = torch.load(args.cache, weights_only=False)
        model.load_state_dict(saved["model"])
        seconds = saved["seconds"]
    else:
        seconds = first_order(problem, model, batch, args.first, args.steps)
        if args.cache:
            torch.save({"model": model.state_dict(), "seconds": seconds}, args.cache)
    start_error = rel_l2(problem, model)
    print(f"{args.steps} {args.first} steps: rel. L2 {start_error:.3e} ({seconds:.0f} s)")
    rows = [{"phase": args.first, "rel_l2": start_error, "seconds": seconds}]
    for text in args.phases:
        spec = parse_phase(
            f"{text}{',' if ':' in text else ':'}iters={args.iters},max_seconds={args.seconds}"
        )
        net = copy.deepcopy(model)
        phase = create_phase(spec, net.parameters())
        trace: list[dict[str, float]] = []

        def log(record: PhaseRecord, net: torch.nn.Module = net, trace: list = trace) -> None:
            if args.log_every and record.iteration % args.log_every == 0:
                error = rel_l2(problem, net)
                trace.append(
                    {"iteration": record.iteration, "rel_l2": error, "loss": record.loss,
                     "functions": record.evaluations.functions}
                )  # fmt: skip
                print(
                    f"    {record.iteration:6d}  rel. L2 {error:.3e}  loss {record.loss:.3e}  "
                    f"{record.evaluations.functions} f",
                    flush=True,
                )

        result = run_phase(phase, problem_objective(problem, net, batch), spec, callback=log)
        counts = phase.evaluations
        row = {
            "phase": text,
            "rel_l2": rel_l2(problem, net),
            "loss": phase.history[-1].loss if phase.history else float("nan"),
            "iterations": phase.iteration,
            "functions": counts.functions,
            "gradients": counts.gradients,
            "jacobians": counts.jacobians,
            "seconds": result.seconds,
            "stopped": result.reason,
            "trace": trace,
        }
        rows.append(row)
        print(
            f"{text:>14}: rel. L2 {row['rel_l2']:.3e}  loss {row['loss']:.3e}  "
            f"{row['iterations']} iterations, {counts.functions} f / {counts.gradients} g / "
            f"{counts.jacobians} J evaluations, {result.seconds:.0f} s ({result.reason})",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2, default=str))


if __name__ == "__main__":
    main()
