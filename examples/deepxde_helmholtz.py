"""A DeepXDE-defined Helmholtz problem trained with AutoBalance, beside autobalance's own.

The problem (Wang, Teng & Perdikaris 2021, Sec. 2.1; ``autobalance.problems`` ``helmholtz``)::

    Δu + k²u = q(x, y) on [-1, 1]²,   u = 0 on the boundary,
    q = (k² − (a1π)² − (a2π)²) sin(a1πx) sin(a2πy),   exact u = sin(a1πx) sin(a2πy),

with a1 = 1, a2 = 4, k = 1, is written the DeepXDE way: a ``Rectangle`` geometry, the PDE as a
residual function of ``dde.grad.hessian``, a ``DirichletBC``, ``dde.data.PDE``, a 4×50 tanh
``FNN`` with Glorot-normal weights and zero biases.  ``compile_balanced`` hands DeepXDE's two loss
terms to ``AutoBalance`` by name (``"pde"``, ``"dirichlet_bc"``).  The same settings as
``autobalance run helmholtz``: ``n_domain`` fresh uniform interior and ``n_boundary`` boundary
points every step, Adam as AutoBalance's base, ``lr(t) = lr · 0.9^(t / 1000)``, the relative L2
error on a held-out 201×201 grid.  What differs is DeepXDE's: one forward pass over all points,
the residual also evaluated at the boundary points, boundary points drawn uniformly along the
perimeter (ours: equally many per edge), its own random streams.

``--compare`` also runs ``autobalance run helmholtz`` with these settings and prints both errors.

Usage::

    python examples/deepxde_helmholtz.py                         # 15,000 steps
    python examples/deepxde_helmholtz.py --steps 5000 --compare  # and autobalance's own problem
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autobalance import AutoBalance
from autobalance.integrations.deepxde import FreshPoints, compile_balanced, dde
from autobalance.metrics import error_metrics


def helmholtz_data(a1: float, a2: float, k: float, n_domain: int, n_boundary: int) -> Any:
    """The Helmholtz problem as DeepXDE data: geometry, PDE residual, boundary condition."""
    scale = k**2 - (a1 * math.pi) ** 2 - (a2 * math.pi) ** 2

    def pde(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        laplacian = dde.grad.hessian(u, x, i=0, j=0) + dde.grad.hessian(u, x, i=1, j=1)
        q = scale * torch.sin(a1 * math.pi * x[:, 0:1]) * torch.sin(a2 * math.pi * x[:, 1:2])
        return laplacian + k**2 * u - q

    geometry = dde.geometry.Rectangle([-1.0, -1.0], [1.0, 1.0])
    boundary = dde.icbc.DirichletBC(geometry, lambda x: 0.0, lambda x, on_boundary: on_boundary)
    return dde.data.PDE(
        geometry,
        pde,
        [boundary],
        num_domain=n_domain,
        num_boundary=n_boundary,
        train_distribution="pseudo",  # uniform random points, drawn afresh by FreshPoints
        num_test=None,
    )


def exact(points: np.ndarray, a1: float, a2: float) -> np.ndarray:
    return np.sin(a1 * np.pi * points[:, 0:1]) * np.sin(a2 * np.pi * points[:, 1:2])


def grid(n: int) -> np.ndarray:
    """The held-out evaluation grid: ``n × n`` points on [-1, 1]², boundary included."""
    axis = np.linspace(-1.0, 1.0, n, dtype=np.float32)
    x, y = np.meshgrid(axis, axis, indexing="ij")
    return np.stack([x.ravel(), y.ravel()], axis=1)


def errors(model: Any, a1: float, a2: float, n_eval: int) -> dict[str, float]:
    points = grid(n_eval)
    prediction = torch.as_tensor(model.predict(points))
    return error_metrics(prediction, torch.as_tensor(exact(points, a1, a2)))


def train_deepxde(args: argparse.Namespace) -> dict[str, Any]:
    """Train the DeepXDE model with AutoBalance; errors before and after, names, timing."""
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)  # DeepXDE samples its points with NumPy
    data = helmholtz_data(args.a1, args.a2, args.k, args.n_domain, args.n_boundary)
    net = dde.nn.FNN([2] + [args.width] * args.depth + [1], "tanh", "Glorot normal")
    model = dde.Model(data, net)
    optimizer = AutoBalance(net.parameters(), base=args.base, lr=args.lr)
    decay = args.lr_decay
    step = compile_balanced(
        model, optimizer, decay=("lambda", lambda t: decay ** (t / 1000)), verbose=0
    )
    initial = errors(model, args.a1, args.a2, args.n_eval)
    start = time.perf_counter()
    model.train(
        iterations=args.steps, display_every=args.steps, callbacks=[FreshPoints()], verbose=0
    )
    seconds = time.perf_counter() - start
    assert step.last_info is not None
    return {
        "names": step.loss_names,
        "final_losses": step.last_info.values,
        "initial": initial,
        **errors(model, args.a1, args.a2, args.n_eval),
        "step_ms": 1000 * seconds / args.steps,
    }


def train_ours(args: argparse.Namespace) -> dict[str, Any]:
    """``autobalance run helmholtz`` with the same settings; its ``metrics.json``."""
    with tempfile.TemporaryDirectory() as out:
        params = {
            "a1": args.a1,
            "a2": args.a2,
            "k": args.k,
            "n_residual": args.n_domain,
            "n_boundary": args.n_boundary,
            "n_eval": args.n_eval,
        }
        command = [sys.executable, "-m", "autobalance", "run", "helmholtz"]
        command += ["--method", "autobalance", "--base", args.base, "--steps", str(args.steps)]
        command += ["--lr", str(args.lr), "--lr-decay", str(args.lr_decay)]
        command += ["--width", str(args.width), "--depth", str(args.depth)]
        command += ["--seed", str(args.seed), "--device", "cpu", "--no-progress"]
        command += ["--eval-every", str(args.steps), "--out", out]
        for key, value in params.items():
            command += ["--param", f"{key}={value}"]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        metrics: dict[str, Any] = json.loads((Path(out) / "metrics.json").read_text())
        return metrics


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lr-decay", type=float, default=0.9, help="per 1000 steps")
    parser.add_argument("--base", default="adam", help="AutoBalance's base optimizer")
    parser.add_argument("--a1", type=float, default=1.0)
    parser.add_argument("--a2", type=float, default=4.0)
    parser.add_argument("--k", type=float, default=1.0)
    parser.add_argument("--n-domain", type=int, default=1024)
    parser.add_argument("--n-boundary", type=int, default=256)
    parser.add_argument("--n-eval", type=int, default=201)
    parser.add_argument("--width", type=int, default=50)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare", action="store_true", help="also run autobalance's own")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    results = {"deepxde": train_deepxde(args)}
    deepxde_run = results["deepxde"]
    print(f"DeepXDE loss terms, by name: {', '.join(deepxde_run['names'])}")
    print(
        f"{args.steps} steps, lr {args.lr}, AutoBalance({args.base}), "
        f"{args.n_domain} + {args.n_boundary} fresh points per step, seed {args.seed}"
    )
    print(f"{'run':<34} {'rel L2 before':>13} {'rel L2':>10} {'L∞':>10} {'ms/step':>8}")
    rows = [("DeepXDE problem + AutoBalance", deepxde_run)]
    if args.compare:
        results["autobalance"] = train_ours(args)
        rows.append(("autobalance run helmholtz", results["autobalance"]))
    for label, run in rows:
        print(
            f"{label:<34} {run['initial']['rel_l2']:>13.3e} {run['rel_l2']:>10.3e} "
            f"{run['linf']:>10.3e} {run['step_ms']:>8.1f}"
        )
    return results


if __name__ == "__main__":
    main()
