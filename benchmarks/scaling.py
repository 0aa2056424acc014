"""Data-parallel scaling: step time of one run on 1 and on N processes (``torchrun``).

Runs ``autobalance run helmholtz --method autobalance`` with a 4×128 tanh MLP at 16384 residual
points (``--param n_residual=16384``), once in one process and once under
``torchrun --nproc-per-node N`` (gloo on the CPU, one intra-op thread per process; NCCL with
``--device cuda``, one GPU per process), in interleaved rounds so that a slow spell of a shared
machine hits every condition alike.  The step time is the runner's ``step_ms`` (training
wall-clock / steps; under torchrun the slowest rank's clock, the one every rank waits for),
so it excludes start-up and evaluation.

    parallel efficiency = t(1) / (N · t(N))        speed-up = t(1) / t(N)

The table gives the mean ± std of ``step_ms`` over the rounds, and checks that every N gives
the relative L2 error of one process (to 1e-8 relative, float64).

    python benchmarks/scaling.py                      # 1 vs 2 processes, 3 rounds, CPU
    python benchmarks/scaling.py --processes 1 2 4 --rounds 5 --out scaling.md
    python benchmarks/scaling.py --device cuda --processes 1 2    # one GPU per process
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_run(processes: int, args: argparse.Namespace, out: Path) -> dict[str, float]:
    """One run on ``processes`` processes; its ``step_ms`` and ``rel_l2``."""
    run = ["-m", "autobalance", "run", "helmholtz", "--method", "autobalance"]
    run += ["--dtype", "float64", "--seed", "0", "--steps", str(args.steps)]
    run += ["--width", str(args.width), "--depth", str(args.depth), "--device", args.device]
    run += ["--param", f"n_residual={args.points}", "--eval-every", str(10 * args.steps)]
    run += ["--threads", "1", "--no-progress", "--out", str(out)]
    if processes == 1:
        command = [sys.executable, *run]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node"]
        command += [str(processes), "--master-addr", "127.0.0.1"]
        command += ["--master-port", str(free_port()), *run]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{processes} process(es) failed:\n{done.stderr[-3000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    return {"step_ms": float(metrics["step_ms"]), "rel_l2": float(metrics["rel_l2"])}


def table(results: dict[int, list[dict[str, float]]], args: argparse.Namespace) -> str:
    base = statistics.fmean(r["step_ms"] for r in results[1])
    reference = results[1][0]["rel_l2"]
    lines = [
        f"Helmholtz, AutoBalance, {args.depth}×{args.width} tanh MLP, {args.points} residual "
        f"points, float64, {args.steps} steps, device {args.device}, {args.rounds} rounds "
        "(mean ± std of step_ms over rounds)",
        "",
        "| processes | ms/step | speed-up | parallel efficiency | rel. L2 | same as 1 process |",
        "|---:|---:|---:|---:|---:|:---:|",
    ]
    for n, runs in sorted(results.items()):
        times = [r["step_ms"] for r in runs]
        mean = statistics.fmean(times)
        std = statistics.stdev(times) if len(times) > 1 else 0.0
        same = all(abs(r["rel_l2"] - reference) <= 1e-8 * abs(reference) for r in runs)
        lines.append(
            f"| {n} | {mean:.1f} ± {std:.1f} | {base / mean:.2f} | {base / (n * mean):.2f} | "
            f"{runs[0]['rel_l2']:.6e} | {'yes' if same else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--points", type=int, default=16384)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (NCCL)")
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    counts = sorted(set(args.processes) | {1})
    results: dict[int, list[dict[str, float]]] = {n: [] for n in counts}
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(args.rounds):
            for n in counts:
                result = one_run(n, args, Path(scratch) / f"r{round_}-n{n}")
                results[n].append(result)
                print(f"round {round_ + 1}, {n} process(es): {result['step_ms']:.1f} ms/step")
    text = table(results, args)
    print(text)
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
