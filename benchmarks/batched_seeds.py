"""Seeds batched in one process (autobalance.seeds) against separate runs.

``throughput``: for S seeds of one configuration (Helmholtz, 4×50 tanh MLP by default), the
median time of one batched step of the first S seeds for every S of ``--seeds`` and of one
ordinary step of one seed, measured in alternating rounds in this process from one set of runs
(:func:`autobalance.seeds.probe.step_times_by_size`; on a GPU the clock is read after
``torch.cuda.synchronize()``), at several residual point counts (boundary points: a quarter of
them).  Throughput is seed-steps per second: ``S / t_batched`` batched, ``1 / t_separate``
separate.  The table gives each S's per-seed throughput against S = 1 (both batched) and against
separate steps.  Defaults: on ``--device cuda`` S = 1,2,4,8,16,32 at 1024 and 4096 points
(adam and autobalance: about 30-60 s on one GPU, the run's total is printed); on a CPU S = 1,2,4,8
at 256 and 1024 points.

``compare``: the wall time of ``autobalance compare PROBLEM --methods M --seeds S --steps N``
with ``--batch-seeds on`` and with ``--batch-seeds off`` (``--workers`` processes each, one
thread per run; the separate layout's best is one worker per core), each in a fresh directory.

    python benchmarks/batched_seeds.py throughput --device cuda --json gpu.json
    python benchmarks/batched_seeds.py throughput --methods adam,autobalance --points 256,1024
    python benchmarks/batched_seeds.py compare --steps 2000 --seeds 8 --workers 2

Wall-clock on a shared machine is distorted by the load; the throughput ratios are measured
within one process, interleaved, which the load hits alike.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from autobalance.experiments.config import RunConfig
from autobalance.experiments.io import write_json
from autobalance.seeds.probe import step_times_by_size

#: ``--seeds`` and ``--points`` when not given, by device type.
DEFAULTS = {
    "cuda": {"seeds": "1,2,4,8,16,32", "points": "1024,4096"},
    "cpu": {"seeds": "1,2,4,8", "points": "256,1024"},
}


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def throughput(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    started = time.perf_counter()
    print(
        f"device {args.device}, {args.problem}, {args.depth}×{args.width} tanh MLP, "
        f"{args.rounds} rounds after {args.warmup} warm-up\n"
    )
    print(
        "| method | points | S | batched step ms | separate step ms | seed-steps/s batched "
        "| per-seed throughput vs S=1 | vs separate |"
    )
    print("|---|---|---|---|---|---|---|---|")
    sizes = sorted(set(_ints(args.seeds)))
    for method in args.methods.split(","):
        for points in _ints(args.points):
            configs = [
                RunConfig(
                    problem=args.problem,
                    method=method,
                    seed=s,
                    device=args.device,
                    problem_params={"n_residual": points, "n_boundary": max(4, points // 4)},
                    net_params={"width": args.width, "depth": args.depth},
                )
                for s in range(max(sizes))
            ]
            batched, t_s = step_times_by_size(
                configs, sizes, rounds=args.rounds, warmup=args.warmup
            )
            one = batched[min(sizes)] / min(sizes)  # seconds per seed-step at the smallest S
            for seeds, t_b in batched.items():
                row = {
                    "method": method,
                    "points": points,
                    "seeds": seeds,
                    "device": args.device,
                    "batched_ms": 1e3 * t_b,
                    "separate_ms": 1e3 * t_s,
                    "seed_steps_per_s": seeds / t_b,
                    "vs_smallest_s": seeds * one / t_b,
                    "gain": seeds * t_s / t_b,
                }
                rows.append(row)
                print(
                    f"| {method} | {points} | {seeds} | {1e3 * t_b:.2f} | {1e3 * t_s:.2f} | "
                    f"{seeds / t_b:.0f} | {row['vs_smallest_s']:.2f} | {row['gain']:.2f} |",
                    flush=True,
                )
    print(f"\n{time.perf_counter() - started:.1f} s in all")
    return rows


def compare(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for mode in ("on", "off"):
        out = Path(tempfile.mkdtemp(prefix=f"batched-seeds-{mode}-"))
        command = [
            sys.executable, "-m", "autobalance", "compare", args.problem,
            "--methods", args.methods, "--seeds", str(args.seeds), "--steps", str(args.steps),
            "--workers", str(args.workers), "--batch-seeds", mode, "--out", str(out),
            "--no-report", "--quiet",
        ]  # fmt: skip
        tic = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - tic
        rows.append({"batch_seeds": mode, "wall_s": wall, "exit": done.returncode})
        print(f"--batch-seeds {mode}: {wall:.1f} s (exit {done.returncode}) in {out}", flush=True)
        if done.returncode:
            print(done.stderr[-2000:], file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("throughput", "compare"))
    parser.add_argument("--problem", default="helmholtz")
    parser.add_argument("--methods", default="adam,autobalance")
    parser.add_argument("--points", help="residual points (throughput; default by device)")
    parser.add_argument("--seeds", help="S values (default by device; compare: one number)")
    parser.add_argument("--width", type=int, default=50)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2000, help="steps per run (compare)")
    parser.add_argument("--workers", type=int, default=2, help="processes (compare)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    kind = torch.device(args.device).type
    defaults = DEFAULTS.get(kind, DEFAULTS["cpu"])
    args.seeds = args.seeds or ("8" if args.what == "compare" else defaults["seeds"])
    args.points = args.points or defaults["points"]
    if kind == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here")
    if args.what == "compare":
        args.seeds = str(_ints(args.seeds)[-1])
    rows = throughput(args) if args.what == "throughput" else compare(args)
    if args.json:
        write_json(Path(args.json), rows)


if __name__ == "__main__":
    main()
