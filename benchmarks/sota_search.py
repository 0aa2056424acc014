"""Recipe search for issue 14: a first-order method, then training phases, on any problem.

One run = one recipe at one seed: the problem (with its parameters: point counts, coefficients),
a network (``mlp``/``modified_mlp``/``pirate`` with width, depth, Fourier features...), variants
(``hard_constraint``...), a dtype, ``--steps`` steps of a first-order method (any method of the
catalog, ``adam`` or ``autobalance``...) on points drawn once, then each ``--phase`` in order
(spec strings of :mod:`autobalance.phases`, e.g. ``ssbroyden:iters=100000,redraw_every=500``)
on the plain losses (variants that reweight losses act in the first-order steps only, as in the
runner).
``--budget`` caps the wall time of the whole run: each phase gets at most what is left (its
``max_seconds`` is lowered to it).  Points of a phase with ``redraw_every`` are redrawn from a
generator seeded by ``(seed, iteration)``, so a rerun is the same run.

Prints the relative L2 error on the problem's held-out grid after the first-order method and
after each phase (and every ``--log-every`` phase iterations), and writes one compact JSON per run
(``--out``): the recipe as a preset dict (RunConfig-like keys), the errors, evaluations and
times.  ``--table DIR`` reads such JSON files and prints a markdown table, mean ± std over the
seeds of each recipe (``--name``).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/sota_search.py --problem helmholtz \\
        --set n_residual=2500 --set n_boundary=400 --width 30 --depth 3 \\
        --variant hard_constraint --steps 1000 --phase ssbroyden:iters=100000 --budget 840 \\
        --name helmholtz-hard --seed 0 --out docs/results/sota-search/runs
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from autobalance import methods, nets, problems, variants
from autobalance.metrics import error_metrics
from autobalance.phases import PhaseRecord, create_phase, parse_phase, problem_objective, run_phase

DTYPES = {"float32": torch.float32, "float64": torch.float64}

#: The recipes of docs/results/sota-search, by name: ``--recipe NAME --seed S --out DIR``.
RECIPES: dict[str, list[str]] = {
    "helmholtz-sota": [
        "--problem", "helmholtz", "--set", "n_residual=2000", "--set", "n_boundary=400",
        "--width", "30", "--depth", "2", "--variant", "hard_constraint", "--steps", "1000",
        "--phase", "ssbroyden:iters=100000",
    ],
    "burgers-sota": [
        "--problem", "burgers", "--set", "n_residual=4000", "--width", "20", "--depth", "3",
        "--variant", "hard_constraint", "--steps", "500",
        "--phase", "ssbroyden:iters=100000,redraw_every=250",
    ],
    "klein-gordon-sota": [
        "--problem", "klein-gordon", "--set", "n_residual=2000", "--width", "20", "--depth", "3",
        "--variant", "hard_constraint", "--steps", "500", "--phase", "ssbroyden:iters=500",
    ],
    "wave-sota": [
        "--problem", "wave", "--set", "n_residual=2000", "--width", "30", "--depth", "3",
        "--variant", "hard_constraint", "--steps", "500",
        "--phase", "ssbroyden:iters=100000,redraw_every=500",
    ],
    "reaction-diffusion-sota": [
        "--problem", "reaction-diffusion", "--set", "n_residual=2000",
        "--set", "periodic_lift=0.02", "--width", "20",
        "--depth", "3", "--net-param", 'periodic={"x": 6.283185307179586}',
        "--variant", "hard_constraint", "--variant", "causal", "--steps", "500",
        "--phase", "ssbroyden:iters=1500,redraw_every=500",
    ],
    "kovasznay-sota": [
        "--problem", "kovasznay", "--width", "30", "--depth", "3",
        "--variant", "hard_constraint", "--steps", "500",
        "--phase", "ssbroyden:iters=100000,redraw_every=500",
    ],
    "convection-sota": [
        "--problem", "convection", "--set", "n_residual=3000", "--width", "30", "--depth", "3",
        "--net-param", 'periodic={"x": 6.283185307179586}',
        "--variant", "hard_constraint", "--variant", "causal", "--steps", "500",
        "--phase", "ssbroyden:iters=100000,redraw_every=500",
    ],
    "allen-cahn-sota": [
        "--problem", "allen-cahn", "--set", "n_residual=4000", "--width", "30", "--depth", "3",
        "--net-param", 'periodic={"x": 2.0}', "--variant", "hard_constraint", "--steps", "500",
        "--phase", "ssbroyden:iters=2000,redraw_every=250",
    ],
    "poisson-inverse-sota": [
        "--problem", "poisson-inverse", "--width", "20", "--depth", "3",
        "--variant", "hard_constraint", "--steps", "1000", "--phase", "ssbroyden:iters=250",
    ],
}  # fmt: skip


def parse_value(text: str) -> Any:
    """``"3"`` → 3, ``"1e-3"`` → 0.001, ``"true"`` → True, JSON, else the text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def key_values(items: list[str]) -> dict[str, Any]:
    """``["a=1", "b=x"]`` → ``{"a": 1, "b": "x"}``."""
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq:
            raise SystemExit(f"expected key=value, got {item!r}")
        out[key.strip()] = parse_value(value.strip())
    return out


class VariantProblem:
    """The problem seen through a variant stack: ``losses`` are the transformed losses."""

    def __init__(self, problem: problems.Problem, stack: variants.VariantStack) -> None:
        self.problem, self.stack = problem, stack

    def losses(self, model: nn.Module, batch: Mapping[str, Tensor]) -> Any:
        return self.stack.transform_losses(self.problem.losses(model, batch), 0)


def errors(problem: problems.Problem, model: nn.Module, dtype: torch.dtype) -> dict[str, float]:
    """Relative L2 (all outputs, and per output for several) on the held-out grid."""
    grid = problem.evaluation_points("cpu", dtype)
    with torch.no_grad():
        prediction, reference = model(grid), problem.reference(grid)
    out = {"rel_l2": error_metrics(prediction, reference)["rel_l2"]}
    if prediction.shape[-1] > 1:
        for i, name in enumerate(problem.output_names):
            out[f"rel_l2_{name}"] = error_metrics(prediction[:, i], reference[:, i])["rel_l2"]
    return out


def recipe(args: argparse.Namespace) -> dict[str, Any]:
    """The run's recipe as a preset dict (the keys of a RunConfig)."""
    net_params: dict[str, Any] = {"width": args.width, "depth": args.depth}
    net_params.update(key_values(args.net_param))
    return {
        "problem": args.problem,
        "problem_params": key_values(args.set),
        "net": args.net,
        "net_params": net_params,
        "variants": [{"name": v} for v in args.variant],
        "dtype": args.dtype,
        "sampler": args.sampler,
        "method": args.method,
        "method_params": key_values(args.method_param),
        "lr": args.lr,
        "steps": args.steps,
        "phases": list(args.phase),
    }


def first_order(
    problem: VariantProblem, model: nn.Module, batch: Mapping[str, Tensor], r: dict[str, Any]
) -> float:
    """``steps`` steps of the recipe's first-order method on ``batch``; seconds."""
    start = time.perf_counter()
    if r["steps"] == 0:
        return 0.0
    params = [*model.parameters(), *problem.problem.unknowns().values()]
    balancer = methods.create(r["method"], params, lr=r["lr"], **r["method_params"])
    for _ in range(r["steps"]):
        balancer.step(problem.losses(model, batch))
    return time.perf_counter() - start


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
        f.write(text)
    os.replace(f.name, path)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """One recipe at one seed; the JSON record."""
    started, cpu_started = time.perf_counter(), time.process_time()
    r = recipe(args)
    dtype = DTYPES[args.dtype]
    problem = problems.create(args.problem, **r["problem_params"])
    problem.use_sampler(args.sampler)
    torch.manual_seed(args.seed)
    net = nets.create(
        args.net, problem.in_dim, problem.out_dim, input_names=problem.input_names,
        **r["net_params"],
    )  # fmt: skip
    stack = variants.from_specs(r["variants"])
    model = stack.setup(problem, net.to(dtype=dtype))
    for param in problem.unknowns().values():
        param.data = param.data.to(dtype=dtype)
    seen = VariantProblem(problem, stack)
    generator = torch.Generator().manual_seed(args.seed)
    batch = stack.transform_batch(problem.sample(generator, "cpu", dtype), 0)
    n_params = sum(p.numel() for p in model.parameters())
    seconds = first_order(seen, model, batch, r)
    err = errors(problem, model, dtype)
    print(
        f"[{args.name} seed {args.seed}] {n_params} parameters; {r['steps']} {r['method']} "
        f"steps: rel. L2 {err['rel_l2']:.3e} ({seconds:.0f} s)",
        flush=True,
    )
    rows: list[dict[str, Any]] = [
        {"stage": r["method"], "steps": r["steps"], "seconds": seconds, **err}
    ]
    params = [*model.parameters(), *problem.unknowns().values()]

    def redraw(iteration: int) -> dict[str, Tensor]:
        g = torch.Generator().manual_seed(args.seed * 1_000_003 + iteration + 1)
        return stack.transform_batch(problem.sample(g, "cpu", dtype), 0)

    for text in args.phase:
        spec = parse_phase(text)
        left = args.budget - (time.perf_counter() - started) if args.budget else 0.0
        if args.budget:
            if left <= 1.0:
                print(f"    no time left for {text}", flush=True)
                break
            limit = min(spec.max_seconds or math.inf, left)
            spec = dataclasses.replace(spec, max_seconds=limit)
        phase = create_phase(spec, params)
        trace: list[dict[str, float]] = []

        def log(record: PhaseRecord, trace: list = trace) -> None:
            if args.log_every and record.iteration % args.log_every == 0:
                e = errors(problem, model, dtype)
                trace.append(
                    {"iteration": record.iteration, "loss": record.loss,
                     "functions": record.evaluations.functions,
                     "seconds": time.perf_counter() - started,
                     "cpu_seconds": time.process_time() - cpu_started, **record.extra, **e}
                )  # fmt: skip
                print(
                    f"    {record.iteration:6d}  rel. L2 {e['rel_l2']:.3e}  loss "
                    f"{record.loss:.3e}  {record.evaluations.functions} f  "
                    f"{time.perf_counter() - started:.0f} s "
                    f"({time.process_time() - cpu_started:.0f} s cpu)"
                    + "".join(f"  {k} {v:g}" for k, v in record.extra.items()),
                    flush=True,
                )

        # The phases minimise the plain losses, as the runner's do (with the network's hard
        # constraint in place): causal and RBA weights carry no gradient (problem_objective).
        result = run_phase(phase, problem_objective(problem, model, batch), spec, redraw=redraw,
                           callback=log)  # fmt: skip
        counts = phase.evaluations
        err = errors(problem, model, dtype)
        rows.append(
            {"stage": text, "iterations": phase.iteration, "functions": counts.functions,
             "gradients": counts.gradients, "jacobians": counts.jacobians,
             "seconds": result.seconds, "stopped": result.reason,
             "loss": phase.history[-1].loss if phase.history else float("nan"),
             "trace": trace, **err}
        )  # fmt: skip
        print(
            f"  {text}: rel. L2 {err['rel_l2']:.3e}  {phase.iteration} iterations, "
            f"{counts.functions} f / {counts.gradients} g / {counts.jacobians} J, "
            f"{result.seconds:.0f} s ({result.reason})",
            flush=True,
        )
    final = {k: v for k, v in rows[-1].items() if k.startswith("rel_l2")}
    total, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    print(f"[{args.name} seed {args.seed}] final {final}  wall {total:.0f} s, cpu {cpu:.0f} s")
    return {
        "name": args.name,
        "seed": args.seed,
        "recipe": r,
        "budget": args.budget,
        "n_params": n_params,
        "final": final,
        "wall_seconds": total,
        "cpu_seconds": cpu,
        "evaluations": sum(row.get("functions", 0) for row in rows),
        "first_order_steps": r["steps"],
        "rows": rows,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
    }


def runs_csv(directory: Path) -> str:
    """CSV, one row per run: recipe, seed, errors, wall and CPU seconds, iterations, evaluations."""
    head = "recipe,problem,seed,rel_l2,rel_l2_a,wall_s,cpu_s,first_order_steps,phase_iterations"
    lines = [head + ",function_evaluations,load_average_1min,recipe_json"]
    for path in sorted(directory.glob("*.json")):
        d = json.loads(path.read_text())
        iterations = sum(row.get("iterations", 0) for row in d["rows"])
        spec = json.dumps(d["recipe"]).replace('"', '""')
        lines.append(
            f"{d['name']},{d['recipe']['problem']},{d['seed']},{d['final']['rel_l2']:.4e},"
            f"{d['final'].get('rel_l2_a', float('nan')):.4e},{d['wall_seconds']:.0f},"
            f"{d.get('cpu_seconds', float('nan')):.0f},{d['first_order_steps']},{iterations},"
            f'{d["evaluations"]},{d["load_average"][0]:.1f},"{spec}"'
        )
    return "\n".join(lines) + "\n"


#: Issue 14's targets: (error key, relative L2 at most), mean over 3 seeds.
TARGETS: dict[str, tuple[str, float]] = {
    "helmholtz": ("rel_l2", 1e-4),
    "kovasznay": ("rel_l2", 1e-4),
    "reaction-diffusion": ("rel_l2", 1e-3),
    "klein-gordon": ("rel_l2", 1e-3),
    "burgers": ("rel_l2", 1e-3),
    "wave": ("rel_l2", 1e-2),
    "allen-cahn": ("rel_l2", 1e-2),
    "convection": ("rel_l2", 1e-2),
    "poisson-inverse": ("rel_l2_a", 1e-2),
}


def table(directory: Path) -> str:
    """Markdown: one line per recipe name, the target's error per seed and mean ± std."""
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in sorted(directory.glob("*.json")):
        data = json.loads(path.read_text())
        runs[data["name"]].append(data)
    lines = [
        "| recipe | error (target) | per seed | mean ± std | met | wall s | CPU s | "
        "phase iterations | phase evaluations |",
        "| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, group in runs.items():
        group.sort(key=lambda d: d["seed"])
        key, target = TARGETS[group[0]["recipe"]["problem"]]
        values = [d["final"][key] for d in group]
        seeds = ", ".join(f"{d['seed']}: {v:.1e}" for d, v in zip(group, values, strict=True))
        mean = statistics.mean(values)
        spread = f"{mean:.1e} ± {statistics.stdev(values):.1e}" if len(values) > 1 else "—"
        met = "yes" if mean <= target else "no"
        if len(values) < 3:
            met += f" ({len(values)} seed{'s' if len(values) > 1 else ''})"

        def span(field: str, group: list[dict[str, Any]] = group) -> str:
            known = [d[field] for d in group if d[field] == d[field]]  # not NaN
            if not known:
                return "—"
            low, high = min(known), max(known)
            return f"{low:.0f}" if round(low) == round(high) else f"{low:.0f}–{high:.0f}"

        for d in group:
            d["iterations"] = sum(row.get("iterations", 0) for row in d["rows"])
            d["cpu"] = d.get("cpu_seconds", float("nan"))
        lines.append(
            f"| {name} | {key} (≤ {target:.0e}) | {seeds} | {spread} | {met} | "
            f"{span('wall_seconds')} | {span('cpu')} | {span('iterations')} | "
            f"{span('evaluations')} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="helmholtz", choices=problems.names())
    parser.add_argument("--set", action="append", default=[], help="problem parameter k=v")
    parser.add_argument("--net", default="mlp", choices=nets.names())
    parser.add_argument("--width", type=int, default=30)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--net-param", action="append", default=[], help="network k=v")
    parser.add_argument("--variant", action="append", default=[], choices=variants.names())
    parser.add_argument("--sampler", default="uniform", help="collocation point sampler")
    parser.add_argument("--dtype", default="float64", choices=sorted(DTYPES))
    parser.add_argument("--method", default="adam", choices=methods.names())
    parser.add_argument("--method-param", action="append", default=[], help="method k=v")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--phase", action="append", default=[], help="phase spec, in order")
    parser.add_argument("--budget", type=float, default=840.0, help="seconds for the run; 0: none")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="run")
    parser.add_argument("--log-every", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="folder for NAME-seedS.json")
    parser.add_argument("--table", type=Path, default=None, help="print the table of a folder")
    parser.add_argument("--csv", type=Path, default=None, help="with --table: write runs CSV")
    parser.add_argument("--recipe", choices=sorted(RECIPES), help="a recipe's arguments first")
    args = parser.parse_args()
    if args.recipe:  # the recipe's arguments, then the command line's (its --phase replace)
        given = RECIPES[args.recipe]
        if args.phase:
            pairs = zip(given[::2], given[1::2], strict=True)
            given = [item for pair in pairs if pair[0] != "--phase" for item in pair]
        args = parser.parse_args([*given, "--name", args.recipe, *sys.argv[1:]])
    if args.table:
        print(table(args.table))
        if args.csv:
            write_atomic(args.csv, runs_csv(args.table))
        return
    record = run(args)
    if args.out:
        write_atomic(args.out / f"{args.name}-seed{args.seed}.json", json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
