"""``autobalance diagnose quadratic|PROBLEM``: the curvature and balance diagnostics.

* ``autobalance diagnose quadratic --out DIR``: the quadratic model sweep
  (:mod:`autobalance.diagnostics.quadratic`); prints a table, writes ``DIR/quadratic.json`` and
  the figures ``quadratic_kappa.png``, ``quadratic_convergence.png``.
* ``autobalance diagnose PROBLEM --method autobalance --method adam [--steps N] [--out DIR]``:
  the Fig. 1 / Fig. 2 study on any registered problem
  (:mod:`autobalance.diagnostics.helmholtz_study`); writes ``DIR/study.json``,
  ``fig1_spectra.png`` and ``fig2_balance.png`` and prints a summary table.

Both use ``--threads`` intra-op threads (default 1, :mod:`autobalance.threads`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from autobalance.cli.console import text_table
from autobalance.cli.options import (
    OUT_DIR,
    PROBLEM_PARAM,
    THREADS,
    Command,
    Flag,
    parse_assignments,
)

__all__ = ["COMMAND", "DEFAULT_OUT", "run"]

DEFAULT_OUT = "docs/results/diagnostics"


def _fmt(value: float) -> str:
    return "nan" if not math.isfinite(value) else f"{value:.3g}"


def _write_json(path: Path, data: Any) -> None:
    """``data`` as JSON, NaN kept as ``NaN`` (the results hold undefined ratios), atomically."""
    from autobalance.experiments.io import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=1, allow_nan=True))


def _write_figures(out: Path, figures: dict[str, Any]) -> None:
    """Write each figure as ``out/<name>`` (:func:`autobalance.experiments.io.write_png`)."""
    from autobalance.experiments.io import write_png

    for name, figure in figures.items():
        write_png(out / name, figure)


def _quadratic(args: argparse.Namespace, out: Path) -> int:
    from autobalance.diagnostics.plots import quadratic_figures
    from autobalance.diagnostics.quadratic import study_quadratic
    from autobalance.errors import ConfigError

    if args.c_max < 0 or args.n < 1:
        raise ConfigError("--c-max must be >= 0 and --n >= 1")
    count = round(2 * args.c_max) + 1  # steps of about 0.5 from 0 to c_max
    cs = [round(args.c_max * i / (count - 1), 3) for i in range(count)] if count > 1 else [0.0]
    if cs[-1] != args.c_max:
        cs.append(float(args.c_max))
    result = study_quadratic(
        n=args.n,
        cs=cs,
        seeds=args.seeds,
        linear_steps=args.linear_steps,
        optimizer_steps=1000 if args.steps is None else args.steps,
        lrs=(3e-3, 1e-2, 3e-2, 1e-1, 3e-1),
    )
    _write_json(out / "quadratic.json", result)
    _write_figures(out, quadratic_figures(result))
    header = [
        "A",
        "c",
        "κ GD",
        "κ Adam",
        "κ AutoBal",
        "steps* Adam",
        "steps* AutoBal",
        "real Adam L/L0",
        "real AutoBal L/L0",
    ]
    rows = [
        [
            r["kind"],
            f"{r['c']:g}",
            _fmt(r["kappa_gd"]),
            _fmt(r["kappa_adam"]),
            _fmt(r["kappa_autobalance"]),
            _fmt(r["steps_adam"]),
            _fmt(r["steps_autobalance"]),
            _fmt(r.get("optimizer_final_adam", math.nan)),
            _fmt(r.get("optimizer_final_autobalance", math.nan)),
        ]
        for r in result["rows"]
    ]
    print(text_table([header, *rows]))
    print(
        "steps* = predicted steps to 1e-6 at η* = 2/(λmin+λmax); real = Adam/AutoBalance "
        "(β=(0.9,0.999)) at the best lr of the grid"
    )
    print(
        f"files: {out / 'quadratic.json'}, {out / 'quadratic_kappa.png'}, "
        f"{out / 'quadratic_convergence.png'}"
    )
    return 0


#: Columns of the spectrum tables: (header, summary key).
_MEASURES = (
    ("λmax", "lambda_max"),
    ("λmin", "lambda_min"),
    ("κ_eff(1e-2)", "kappa_eff@0.01"),
    ("κ_eff(1e-4)", "kappa_eff@0.0001"),
    ("κ_eff(1e-6)", "kappa_eff@1e-06"),
    ("κ_m(0.9)", "kappa_mass@0.9"),
    ("κ_m(0.99)", "kappa_mass@0.99"),
    ("med", "median_spread"),
    ("neg", "negative_mass"),
)
_MEASURE_HEADER = [h for h, _ in _MEASURES]


def _measures(summary: dict[str, float]) -> list[str]:
    return [_fmt(summary.get(key, math.nan)) for _, key in _MEASURES]


def _problem(args: argparse.Namespace, out: Path) -> int:
    from autobalance.diagnostics.helmholtz_study import StudyConfig, run_study
    from autobalance.diagnostics.plots import balance_figure, spectra_figure

    cfg = StudyConfig(
        problem=args.target,
        problem_params=parse_assignments(args.param, "--param"),
        methods=tuple(args.method or ("autobalance", "adam")),
        steps=2000 if args.steps is None else args.steps,
        lr=args.lr,
        width=args.width,
        depth=args.depth,
        seed=args.seed,
        device=args.device,
        log_every=args.log_every,
        hessian_checkpoints=args.checkpoints,
        hessian_params=parse_assignments(args.hessian_param, "--hessian-param") or None,
    )
    result = run_study(cfg, progress=lambda msg: print(msg, file=sys.stderr))
    _write_json(out / "study.json", result)
    _write_figures(
        out,
        {"fig1_spectra.png": spectra_figure(result), "fig2_balance.png": balance_figure(result)},
    )
    names = result["loss_names"]
    ref = names[0]
    print(
        f"{args.target}: {result['n_params']} parameters, Hessians {result['hessian']}, "
        f"{result['wall_s']:.0f} s"
    )
    print(
        "κ_eff(τ) = λmax / min{λ > τ λmax} (≤ 1/τ: saturates); κ_m(q) = λmax / the smallest "
        "positive λ needed to carry the share q of tr(H+); med = λmax / median positive λ; "
        "neg = Σ_{λ<0}|λ| / Σ|λ|"
    )
    init = result["init_spectra"]
    print(
        text_table(
            [
                ["init Hessian", *_MEASURE_HEADER],
                *([n, *_measures(init[n]["summary"])] for n in names),
            ]
        )
    )
    rows = [
        [method, "raw" if kind == "raw" else "preconditioned", *_measures(spec["summary"])]
        for method, res in result["methods"].items()
        for kind, spec in res["final_spectra"].items()
    ]
    print(text_table([[f"final {ref} H", "kind", *_MEASURE_HEADER], *rows]))
    rows = []
    for method, res in result["methods"].items():
        summ = res["summary"]
        for other in names[1:]:
            pair = f"{ref}/{other}"
            last = res["checkpoints"][-1][other]
            rows.append(
                [
                    method,
                    pair,
                    _fmt(summ.get(f"median_grad_ratio_{pair}", math.nan)),
                    _fmt(summ.get(f"median_update_ratio_{pair}", math.nan)),
                    _fmt(summ.get(f"median_info_update_ratio_{pair}", math.nan)),
                    _fmt(summ.get(f"median_grad_cos_{pair}", math.nan)),
                    _fmt(summ.get(f"median_update_cos_{pair}", math.nan)),
                    _fmt(last["raw"]["kappa_mass@0.99"]),
                    _fmt(last.get("pre", {}).get("kappa_mass@0.99", math.nan)),
                    _fmt(res["rel_l2"]),
                ]
            )
    header = ["method", "pair", "med ‖g‖ ratio", "med ‖lr g/P‖ ratio", "med ‖u‖ ratio"]
    header += ["med cos g", "med cos lr g/P", "κ_m(.99) other raw", "κ_m(.99) other pre"]
    print(text_table([[*header, "rel L2"], *rows]))
    print(f"files: {out / 'study.json'}, {out / 'fig1_spectra.png'}, {out / 'fig2_balance.png'}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Dispatch ``autobalance diagnose``, with ``choose_threads(--threads)`` threads."""
    from autobalance.threads import choose_threads, using_threads

    out = Path(args.out)
    with using_threads(choose_threads(args.threads)):
        if args.target == "quadratic":
            return _quadratic(args, out)
        return _problem(args, out)


COMMAND = Command(
    "diagnose",
    "curvature/balance diagnostics: 'quadratic' or a problem name",
    run,
    (
        Flag.of("target", help="'quadratic' or a problem name (see `autobalance list`)"),
        OUT_DIR.but(default=DEFAULT_OUT, help="output directory (default %(default)s)"),
        Flag.of("--method", action="append", help="method to study (repeatable)"),
        Flag.of(
            "--steps",
            type=int,
            help="training steps (problem: default 2000; quadratic: "
            "real-optimizer steps, default 1000)",
        ),
        Flag.of("--lr", type=float, default=1e-3, help="problem: learning rate (%(default)s)"),
        Flag.of("--width", type=int, default=30, help="problem: hidden units (%(default)s)"),
        Flag.of("--depth", type=int, default=3, help="problem: hidden layers (%(default)s)"),
        Flag.of("--seed", type=int, default=0, help="(default %(default)s)"),
        Flag.of(
            "--device", default="cpu", help="problem: torch device, e.g. cuda (default %(default)s)"
        ),
        Flag.of("--log-every", type=int, default=20, help="problem: (default %(default)s)"),
        Flag.of("--checkpoints", type=int, default=5, help="problem: Hessian checkpoints"),
        THREADS,
        PROBLEM_PARAM,
        Flag.of(
            "--hessian-param",
            action="append",
            metavar="KEY=VALUE",
            help="problem parameter of the fixed Hessian batch (default n_residual=256)",
        ),
        Flag.of("--n", type=int, default=20, help="quadratic: dimension (%(default)s)"),
        Flag.of("--seeds", type=int, default=3, help="quadratic: seeds (%(default)s)"),
        Flag.of("--c-max", type=float, default=3.0, help="quadratic: largest c (%(default)s)"),
        Flag.of("--linear-steps", type=int, default=2000, help="quadratic: (%(default)s)"),
    ),
    description="Quadratic-model theory check, or Fig. 1/2 (Hessian spectra, balance) "
    "reproduction on a problem.",
)
