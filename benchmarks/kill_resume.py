"""Issue 12's done-when, literally: a 2000-step run killed after 10 s resumes and ends
bit-identical to an uninterrupted run.

Three commands in subprocesses (one thread each, the same machine)::

    autobalance run helmholtz --steps 2000 --out A                    # uninterrupted
    autobalance run helmholtz --steps 2000 --out B                    # SIGKILL 10 s into training
    autobalance run --out B --resume                                  # continued

then compares A and B byte for byte: ``history.csv``, ``eval.csv`` (without its timing column),
the result keys of ``metrics.json`` (errors, losses, step and backward-pass counts, configuration
digest) and every tensor of the final checkpoint (model, optimizer, scheduler, RNG states).
Exit status 0 when they are identical, 1 otherwise.  Not run in CI (minutes); CI runs the same
shape on a tiny problem (``tests/test_faults_kill.py``)::

    python benchmarks/kill_resume.py                       # default problem size, 60 s interval
    python benchmarks/kill_resume.py --checkpoint-seconds 2 --json kill.json
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

from autobalance.experiments.run_compare import run_differences

ROOT = Path(__file__).resolve().parents[1]


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "autobalance", *args]


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "AUTOBALANCE_NO_REEXEC": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    return env


def _run(argv: list[str]) -> float:
    """Run to the end; the wall-clock seconds it took.  Raises on a non-zero exit."""
    started = time.monotonic()
    done = subprocess.run(argv, env=_env(), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return time.monotonic() - started


def _kill_after(argv: list[str], out: Path, seconds: float) -> tuple[int, float]:
    """Start ``argv``; once it trains (its step-0 checkpoint exists in ``out``: start-up, which
    the machine's load stretches, does not count), SIGKILL it ``seconds`` later.  Its exit
    status (-9 if killed) and the seconds from the launch to the kill."""
    launched = time.monotonic()
    proc = subprocess.Popen(argv, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (out / "checkpoint.pt").exists() and proc.poll() is None:
        time.sleep(0.01)
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return proc.returncode, time.monotonic() - launched


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="helmholtz")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument(
        "--kill-after", type=float, default=10.0, help="seconds of training (default 10)"
    )
    parser.add_argument(
        "--checkpoint-seconds", type=float, default=60.0, help="the run's interval (default 60)"
    )
    parser.add_argument("--json", help="also write the result here")
    parser.add_argument("--keep", action="store_true", help="keep the run directories")
    args = parser.parse_args(argv)

    import torch

    root = Path(tempfile.mkdtemp(prefix="autobalance-kill-"))
    flags = ["run", args.problem, "--steps", str(args.steps), "--no-progress"]
    flags += ["--checkpoint-seconds", str(args.checkpoint_seconds)]
    a, b = root / "uninterrupted", root / "killed"
    seconds_a = _run(_command(*flags, "--out", str(a)))
    code, since_launch = _kill_after(_command(*flags, "--out", str(b)), b, args.kill_after)
    if code == 0:
        raise SystemExit(f"the run ended within {args.kill_after} s: raise --steps")
    saved = torch.load(b / "checkpoint.pt", weights_only=True)["step"]
    finished_early = (b / "metrics.json").exists()
    seconds_resume = _run(_command("run", "--out", str(b), "--resume", "--no-progress"))
    diff = run_differences(a, b)
    result = {
        "problem": args.problem,
        "steps": args.steps,
        "kill_after_s": args.kill_after,
        "checkpoint_seconds": args.checkpoint_seconds,
        "exit_status_of_the_killed_run": code,
        "killed_s_after_launch": round(since_launch, 1),
        "checkpoint_step_at_the_kill": saved,
        "uninterrupted_s": round(seconds_a, 1),
        "resume_s": round(seconds_resume, 1),
        "rel_l2": json.loads((b / "metrics.json").read_text())["rel_l2"],
        "bit_identical": not diff and not finished_early,
        "differences": diff
        + (["metrics.json written before the resume"] if finished_early else []),
        "torch": torch.__version__,
    }
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    if args.keep:
        print(f"run directories: {root}")
    else:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return 0 if result["bit_identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
