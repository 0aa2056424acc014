"""Step time with 1 and 2 intra-op threads, on a quiet machine and next to one busy core.

Measures what ``autobalance run helmholtz --method autobalance`` does each step (fresh 1024
residual + 256 boundary points, the 4×50 tanh MLP, AutoBalance(AdamW), lr 1e-3), through the
public API (``autobalance.problems``, ``nets``, ``methods``).  Two tables:

* slowdown: median ms/step with 1 and 2 threads, quiet and while a child process spins on one
  core (``python -c "while True: pass"``); torch's threads spin-wait for each other, so two
  threads next to a busy core can be many times slower than one.  A control row times a
  pure-Python loop (one thread, no torch) the same way: its busy / quiet ratio is what any
  one-thread process suffers on this machine (1.0 on an idle machine with a free core; about 2
  where the machine is already saturated), so a torch row's ratio divided by it is the part
  that the threads cause;
* crossover: 1 vs 2 threads on a quiet machine by width (50, 128) and residual points (1024,
  4096, 10000), to see from which size a second thread pays.

Conditions are interleaved in rounds (every condition once per round, the busy child started
and stopped within the round) so the machine's slow spells hit all of them alike; each cell is
the median over all timed steps.  A measurement stops after ``--steps`` steps or
``--max-seconds``, whichever comes first, so a collapsed condition cannot take minutes.

    python benchmarks/busy_core.py                    # make busy-core
    python benchmarks/busy_core.py --rounds 5 --json out.json
    python benchmarks/busy_core.py --no-crossover --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from autobalance import methods, nets, problems
from autobalance.threads import apply_threads

Step = Callable[[], None]
THREADS = (1, 2)
WIDTHS = (50, 128)
POINTS = (1024, 4096, 10000)


def training_step(width: int, n_residual: int, seed: int = 0) -> Step:
    """One step of the default Helmholtz AutoBalance run, at this width and residual count."""
    problem = problems.create("helmholtz", n_residual=n_residual, n_boundary=256)
    torch.manual_seed(seed)
    model = nets.create("mlp", problem.in_dim, problem.out_dim, width=width, depth=4)
    balancer = methods.create("autobalance", list(model.parameters()), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    device = torch.device("cpu")

    def step() -> None:
        batch = problem.sample(generator, device, torch.float32)
        balancer.step(problem.losses(model, batch))

    return step


def time_steps(
    step: Step, threads: int, steps: int, warmup: int, max_seconds: float
) -> list[float]:
    """Seconds per step of ``steps`` steps (fewer if ``max_seconds`` runs out) with ``threads``."""
    apply_threads(threads)
    for _ in range(warmup):
        step()
    times: list[float] = []
    deadline = time.perf_counter() + max_seconds
    while len(times) < steps and time.perf_counter() < deadline:
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


@contextmanager
def busy_core(busy: bool) -> Iterator[None]:
    """While active (if ``busy``): a child process that keeps one core at 100%."""
    if not busy:
        yield
        return
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)  # let the scheduler see it
        yield
    finally:
        child.kill()
        child.wait()


def _median_ms(samples: list[float]) -> float:
    return 1e3 * statistics.median(samples) if samples else float("nan")


def python_loop(n: int = 300_000) -> None:
    """The control: a pure-Python loop, one thread, no torch (some 10-20 ms)."""
    total = 0
    for i in range(n):
        total += i


def slowdown(rounds: int, steps: int, warmup: int, max_seconds: float) -> dict[str, float]:
    """Median ms/step for every (threads, quiet|busy) at the default size, and of the control
    loop (key ``control``), interleaved."""
    # (name, step, threads)
    conditions = [(str(t), training_step(50, 1024), t) for t in THREADS]
    conditions.append(("control", python_loop, 1))
    samples: dict[str, list[float]] = {}
    for _ in range(rounds):
        for busy in (False, True):
            with busy_core(busy):
                for name, step, threads in conditions:
                    times = time_steps(step, threads, steps, warmup, max_seconds)
                    samples.setdefault(f"{name} {'busy' if busy else 'quiet'}", []).extend(times)
    return {key: _median_ms(values) for key, values in samples.items()}


def crossover(rounds: int, steps: int, warmup: int, max_seconds: float) -> dict[str, float]:
    """Median ms/step with 1 and 2 threads by width and residual points (quiet), interleaved."""
    cells = [(w, n, t) for w in WIDTHS for n in POINTS for t in THREADS]
    step = {cell: training_step(cell[0], cell[1]) for cell in cells}
    samples: dict[str, list[float]] = {}
    for _ in range(rounds):
        for cell in cells:
            times = time_steps(step[cell], cell[2], steps, warmup, max_seconds)
            samples.setdefault("{} {} {}".format(*cell), []).extend(times)
    return {key: _median_ms(values) for key, values in samples.items()}


def print_slowdown(ms: dict[str, float]) -> None:
    print("\nslowdown next to a busy core (4x50 tanh MLP, 1024 + 256 points, AutoBalance)")
    print("| threads | quiet ms/step | busy ms/step | busy / quiet | busy / (1 thread quiet) |")
    print("|---|---|---|---|---|")
    for threads in THREADS:
        quiet, busy = ms[f"{threads} quiet"], ms[f"{threads} busy"]
        print(
            f"| {threads} | {quiet:.1f} | {busy:.1f} | {busy / quiet:.2f} | "
            f"{busy / ms['1 quiet']:.2f} |"
        )
    control = ms["control busy"] / ms["control quiet"]
    print(
        f"\ncontrol (pure-Python loop, one thread, no torch): quiet {ms['control quiet']:.1f} ms, "
        f"busy {ms['control busy']:.1f} ms, busy / quiet {control:.2f}, what any one-thread "
        "process suffers here; torch's busy / quiet over it: "
        + ", ".join(
            f"{t} thread{'s' if t > 1 else ''} {ms[f'{t} busy'] / ms[f'{t} quiet'] / control:.2f}"
            for t in THREADS
        )
    )


def print_crossover(ms: dict[str, float]) -> None:
    print("\ncrossover on a quiet machine (depth 4, 256 boundary points, AutoBalance)")
    print("| width | residual points | 1 thread ms/step | 2 threads ms/step | 2 / 1 |")
    print("|---|---|---|---|---|")
    for width in WIDTHS:
        for points in POINTS:
            one, two = ms[f"{width} {points} 1"], ms[f"{width} {points} 2"]
            print(f"| {width} | {points} | {one:.1f} | {two:.1f} | {two / one:.2f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--max-seconds", type=float, default=6.0, help="per measurement")
    parser.add_argument("--no-slowdown", action="store_true")
    parser.add_argument("--no-crossover", action="store_true")
    parser.add_argument("--json", help="also write the medians to this JSON file")
    args = parser.parse_args(argv)
    if "GLIBC_TUNABLES" not in os.environ:
        print("note: GLIBC_TUNABLES is unset; steps may be 11-25% slower", file=sys.stderr)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"torch {torch.__version__}, {cores} cores, {args.rounds} rounds, ≤{args.steps} steps")
    timing = (args.rounds, args.steps, args.warmup, args.max_seconds)
    result: dict[str, dict[str, float]] = {}
    if not args.no_slowdown:
        result["slowdown"] = slowdown(*timing)
        print_slowdown(result["slowdown"])
    if not args.no_crossover:
        result["crossover"] = crossover(*timing)
        print_crossover(result["crossover"])
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"torch": torch.__version__, "cores": cores, **result}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
