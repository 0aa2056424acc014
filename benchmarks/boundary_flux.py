"""Does a trained reaction–diffusion network satisfy the boundary condition that its loss omits?

Issue 15, round 5 (``docs/postcombine.md`` §7).  The default ``reaction-diffusion`` boundary loss
asks only ``u(0, t) = u(2π, t)``.  The periodic reference also has ``u_x(0, t) = u_x(2π, t)``, and
without it the equation ``u_t = ν u_xx + ρ u(1 − u)`` exchanges mass through the boundary::

    d/dt ∫_0^{2π} u dx = ρ ∫_0^{2π} u(1 − u) dx + ν (u_x(2π, t) − u_x(0, t))

so a network can fit every loss and still differ from the reference by the mass its boundary
flux lets in or out.  For each run directory given (``label=path``, the runner's
``checkpoint.pt`` kept) this script measures on ``n_t`` times in ``[0, 1]``:

* ``value_gap``: RMS over ``t`` of ``u(0, t) − u(2π, t)`` (the default loss asks this);
* ``flux_gap``: RMS over ``t`` of ``u_x(0, t) − u_x(2π, t)`` (only ``boundary_derivative=True``
  asks this), and ``flux_scale``, the RMS of ``u_x`` over the evaluation grid, to compare with;
* ``boundary_mass``: ``∫_0^1 ν (u_x(2π, t) − u_x(0, t)) dt``, the mass let in through the
  boundary, against ``mass``, the reference's ``∫ u(x, 1) dx``;
* the run's final rel. L2 and losses (``metrics.json``, ``history.csv``).

    python benchmarks/boundary_flux.py default=RUN_DIR closed=RUN_DIR --out DIR
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path
from typing import Any

import torch

from autobalance.derivatives import gradient
from autobalance.experiments.io import atomic_write_text
from autobalance.experiments.solutions import load_run_model

LOSSES = ("residual", "initial", "boundary")


def boundary_gaps(problem: Any, model: torch.nn.Module, n_t: int = 201) -> dict[str, float]:
    """``value_gap``, ``flux_gap``, ``flux_scale``, ``boundary_mass`` and ``mass`` (docstring)."""
    dtype = next(model.parameters()).dtype
    t = torch.linspace(0.0, 1.0, n_t, dtype=dtype).unsqueeze(1)
    length = float(problem.domain.upper[0])
    left = torch.cat([torch.zeros_like(t), t], dim=1)
    right = torch.cat([torch.full_like(t, length), t], dim=1)
    points = torch.cat([left, right]).requires_grad_(True)
    u = model(points)
    u_x = gradient(u, points)[:, :1]
    value = (u[:n_t] - u[n_t:]).detach().squeeze(1).double()
    flux = (u_x[:n_t] - u_x[n_t:]).detach().squeeze(1).double()
    grid = problem.evaluation_points("cpu", dtype).requires_grad_(True)
    grid_u_x = gradient(model(grid), grid)[:, :1].detach().double()
    final = grid[grid[:, 1] == grid[:, 1].max()].detach()
    final = final[final[:, 0].argsort()]
    reference = problem.reference(final).double().squeeze(1)
    x = final[:, 0].double()
    mass = float(torch.trapezoid(reference, x))
    boundary_mass = -float(problem.nu) * float(torch.trapezoid(flux, t.squeeze(1).double()))
    return {
        "value_gap": float(value.pow(2).mean().sqrt()),
        "flux_gap": float(flux.pow(2).mean().sqrt()),
        "flux_scale": float(grid_u_x.pow(2).mean().sqrt()),
        "boundary_mass": boundary_mass,
        "mass": mass,
    }


def final_losses(run_dir: Path) -> dict[str, float]:
    """The last row of ``history.csv``'s losses."""
    with (run_dir / "history.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return {name: float(rows[-1][name]) for name in LOSSES if name in rows[-1]}


def measure(run_dir: Path) -> dict[str, Any]:
    problem, model = load_run_model(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    return {
        "boundary_derivative": bool(problem.boundary_derivative),
        "rel_l2": float(metrics["rel_l2"]),
        **final_losses(run_dir),
        **boundary_gaps(problem, model),
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    keys = ("rel_l2", *LOSSES, "value_gap", "flux_gap", "flux_scale", "boundary_mass", "mass")
    lines = [
        "| run | u_x periodic in the loss | " + " | ".join(keys) + " |",
        "|---|---|" + "---|" * len(keys),
    ]
    for label, row in results.items():
        cells = [f"{row[k]:.3g}" if isinstance(row.get(k), float) else "–" for k in keys]
        lines.append(f"| {label} | {'yes' if row['boundary_derivative'] else 'no'} | ")
        lines[-1] += " | ".join(cells) + " |"
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="label=run_dir")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    results = {}
    for item in args.runs:
        label, _, path = item.partition("=")
        results[label] = measure(Path(path))
    text = table(results)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "boundary_flux.md", text)
    atomic_write_text(
        args.out / "boundary_flux.json",
        json.dumps(
            {
                k: {n: v for n, v in r.items() if not (isinstance(v, float) and math.isnan(v))}
                for k, r in results.items()
            },
            indent=1,
        )
        + "\n",
    )


if __name__ == "__main__":
    main()
