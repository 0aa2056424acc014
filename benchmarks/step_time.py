"""Median time per training step: AutoBalance vs plain Adam on the summed loss.

Same model, same Helmholtz collocation points, one process; the methods are interleaved in
rounds so that the machine's slow spells hit all of them alike.  A step is what a training loop
does: build the named losses (forward pass and PDE derivatives), back-propagate, update.

    python benchmarks/step_time.py                      # the two default sizes
    python benchmarks/step_time.py --sizes 3x50:1024 4x128:4096 --rounds 7 --json out.json

Run with GLIBC_TUNABLES set as in the Makefile (``make bench`` does): glibc's default malloc
thresholds cost 11-25% of a step in page faults.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from autobalance import AutoBalance, nets, problems

StepFn = Callable[[], None]


@dataclass(frozen=True)
class Size:
    depth: int
    width: int
    n_residual: int
    n_boundary: int

    @classmethod
    def parse(cls, text: str) -> Size:
        """``DEPTHxWIDTH:N_RESIDUAL[:N_BOUNDARY]``, e.g. ``3x50:1024``."""
        net, _, points = text.partition(":")
        depth, width = (int(v) for v in net.lower().split("x"))
        n_res, _, n_bc = points.partition(":")
        n_residual = int(n_res)
        return cls(depth, width, n_residual, int(n_bc) if n_bc else max(256, n_residual // 4))

    def __str__(self) -> str:
        return f"{self.depth}x{self.width}, {self.n_residual} res + {self.n_boundary} bc pts"


def _methods(size: Size, device: torch.device) -> dict[str, StepFn]:
    problem = problems.create("helmholtz", n_residual=size.n_residual, n_boundary=size.n_boundary)
    batch = problem.sample(torch.Generator(device=device).manual_seed(0), device, torch.float32)
    torch.manual_seed(0)
    template = nets.create("mlp", 2, 1, width=size.width, depth=size.depth).to(device)

    def adam_sum() -> StepFn:
        model = copy.deepcopy(template)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            sum(problem.losses(model, batch).values()).backward()
            opt.step()

        return step

    def autobalance(base: str) -> StepFn:
        model = copy.deepcopy(template)
        opt = AutoBalance(model.parameters(), base=base, lr=1e-3)

        def step() -> None:
            opt.step(problem.losses(model, batch))

        return step

    return {
        "adam (sum)": adam_sum(),
        "autobalance (adam)": autobalance("adam"),
        "autobalance (adamw)": autobalance("adamw"),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(size: Size, rounds: int, steps: int, warmup: int, device: torch.device) -> dict:
    methods = _methods(size, device)
    for fn in methods.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in methods}
    round_ratios: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(rounds):
        medians = {}
        for name, fn in methods.items():
            per_step = []
            for _ in range(steps):
                _sync(device)
                start = time.perf_counter()
                fn()
                _sync(device)
                per_step.append(time.perf_counter() - start)
            times[name].extend(per_step)
            medians[name] = statistics.median(per_step)
        for name in methods:
            round_ratios[name].append(medians[name] / medians["adam (sum)"])
    base = statistics.median(times["adam (sum)"])
    result = {"size": str(size), "methods": {}}
    for name, samples in times.items():
        samples = sorted(samples)
        result["methods"][name] = {
            "median_ms": 1e3 * statistics.median(samples),
            "p10_ms": 1e3 * samples[len(samples) // 10],
            "p90_ms": 1e3 * samples[(9 * len(samples)) // 10],
            "ratio_vs_adam": statistics.median(samples) / base,
            "median_round_ratio": statistics.median(round_ratios[name]),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["3x50:1024", "4x128:4096"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per method per round")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if "GLIBC_TUNABLES" not in os.environ:
        print("note: GLIBC_TUNABLES is unset; steps may be 11-25% slower", file=sys.stderr)
    print(f"torch {torch.__version__}, {args.threads} threads, device {device}")
    results = []
    for text in args.sizes:
        size = Size.parse(text)
        res = measure(size, args.rounds, args.steps, args.warmup, device)
        results.append(res)
        print(f"\n{size}")
        print(f"  {'method':<22}{'median ms':>10}{'p10':>8}{'p90':>8}{'× adam':>9}{'round ×':>9}")
        for name, m in res["methods"].items():
            print(
                f"  {name:<22}{m['median_ms']:>10.2f}{m['p10_ms']:>8.2f}{m['p90_ms']:>8.2f}"
                f"{m['ratio_vs_adam']:>9.3f}{m['median_round_ratio']:>9.3f}"
            )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {"torch": torch.__version__, "threads": args.threads, "results": results},
                fh,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
