"""Seeds batched in one process (autobalance.seeds) against separate runs.

``throughput``: for S seeds of one configuration (Helmholtz, 4×50 tanh MLP by default), the
median time of one batched step of the S seeds and of one ordinary step of one seed, measured in
alternating rounds in this process (:func:`autobalance.seeds.probe.step_times`), at several
residual point counts (boundary points: a quarter of them).  Throughput is seed-steps per
second: ``S / t_batched`` batched, ``1 / t_separate`` separate; the gain is their ratio.

``compare``: the wall time of ``autobalance compare PROBLEM --methods M --seeds S --steps N``
with ``--batch-seeds on`` and with ``--batch-seeds off`` (``--workers`` processes each, one
thread per run; the separate layout's best is one worker per core), each in a fresh directory.

    python benchmarks/batched_seeds.py throughput --methods adam,autobalance --points 256,1024
    python benchmarks/batched_seeds.py throughput --device cuda --seeds 1,8,32,128
    python benchmarks/batched_seeds.py compare --steps 2000 --seeds 8 --workers 2
    python benchmarks/batched_seeds.py throughput --json out.json

Wall-clock on a shared machine is distorted by the load; the throughput ratios are measured
within one process, interleaved, which the load hits alike.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from autobalance.experiments.config import RunConfig
from autobalance.seeds.probe import step_times


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def throughput(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    print(
        "| method | points | S | batched step ms | separate step ms | seed-steps/s batched "
        "| seed-steps/s separate | gain |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for method in args.methods.split(","):
        for points in _ints(args.points):
            for seeds in _ints(args.seeds):
                configs = [
                    RunConfig(
                        problem=args.problem,
                        method=method,
                        seed=s,
                        device=args.device,
                        problem_params={"n_residual": points, "n_boundary": max(4, points // 4)},
                        net_params={"width": args.width, "depth": args.depth},
                    )
                    for s in range(seeds)
                ]
                t_b, t_s = step_times(configs, rounds=args.rounds, warmup=args.warmup)
                row = {
                    "method": method,
                    "points": points,
                    "seeds": seeds,
                    "batched_ms": 1e3 * t_b,
                    "separate_ms": 1e3 * t_s,
                    "gain": seeds * t_s / t_b,
                }
                rows.append(row)
                print(
                    f"| {method} | {points} | {seeds} | {1e3 * t_b:.1f} | {1e3 * t_s:.1f} | "
                    f"{seeds / t_b:.0f} | {1 / t_s:.0f} | {row['gain']:.2f} |",
                    flush=True,
                )
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
    parser.add_argument("--points", default="256,1024", help="residual points (throughput)")
    parser.add_argument("--seeds", default="1,2,4,8", help="S values (compare: one number)")
    parser.add_argument("--width", type=int, default=50)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2000, help="steps per run (compare)")
    parser.add_argument("--workers", type=int, default=2, help="processes (compare)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    if args.what == "compare":
        args.seeds = str(_ints(args.seeds)[-1])
    rows = throughput(args) if args.what == "throughput" else compare(args)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
