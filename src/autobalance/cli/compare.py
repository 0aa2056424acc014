"""``autobalance compare PROBLEM --methods a,b,c --seeds N``: methods side by side, then a report.

Every (method, seed) is one run of a sweep (:mod:`autobalance.experiments.sweep`): each run in
its own directory under ``--out``, executed by ``--workers`` spawned processes (or Ray), skipped
when already complete, resumed from its checkpoint when interrupted.  The command prints, per
method, mean ± standard deviation over seeds of the rel-L2, MSE and L∞ errors, wall-clock,
backward passes and peak memory, then writes the report of ``--out``
(:mod:`autobalance.cli.sweeps`).  ``--then PHASE`` (repeatable) adds training phases after
every method's first-order steps (``compare burgers --methods adam,autobalance --then
lbfgs:iters=5000``: does the balancer still matter after the finisher?).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from autobalance.cli.options import CONFIG_FILE, PROBLEM_PARAM, Command, Flag
from autobalance.cli.sweeps import SWEEP_FLAGS, budget_items, finish_sweep, thread_items

__all__ = ["COMMAND", "cmd_compare"]


def cmd_compare(args: argparse.Namespace) -> int:
    """Run ``autobalance compare``."""
    from autobalance import methods
    from autobalance.errors import ConfigError
    from autobalance.experiments.config_files import config_from_dict, load_mapping
    from autobalance.experiments.sweep import RunSpec

    base: dict[str, Any] = load_mapping(args.config) if args.config else {}
    names = (
        methods.names()
        if args.methods.strip() == "all"
        else [m.strip() for m in args.methods.split(",") if m.strip()]
    )
    if not names:
        raise ConfigError("--methods lists no method")
    for name in names:
        methods.spec(name)  # unknown names: an error naming the closest ones
    if args.seeds is not None and args.seeds < 1:
        raise ConfigError(f"invalid --seeds {args.seeds}: must be >= 1")
    common = [f"problem={json.dumps(args.problem)}"]
    if args.lr is not None:
        common.append(f"lr={args.lr!r}")
    if args.device is not None:
        common.append(f"device={json.dumps(args.device)}")
    common += [f"problem_params.{item}" for item in args.param or ()]
    common += budget_items(args) + thread_items(args)
    if args.then:
        common.append(f"phases={json.dumps(list(args.then))}")
    specs = []
    for method in names:
        example = dict(methods.spec(method).example_params)
        data = dict(base)
        data["method_params"] = {**example, **base.get("method_params", {})}
        for seed in range(args.seeds or 3):
            items = [*common, f"method={json.dumps(method)}", f"seed={seed}", *args.set]
            specs.append(RunSpec(config_from_dict(data, items), group="compare"))
    out = Path(args.out or f"runs/compare-{args.problem}")
    return finish_sweep(specs, out, args)


COMMAND = Command(
    "compare",
    "run several methods over several seeds on one problem and compare them",
    cmd_compare,
    (
        Flag.of("problem", help="problem name (see `autobalance list`)"),
        Flag.of(
            "--methods",
            default="adam,autobalance",
            help="comma-separated method names, or 'all' (default %(default)s)",
        ),
        CONFIG_FILE.but(help="base run configuration (TOML, YAML or JSON)"),
        Flag.of("--lr", type=float, help="initial learning rate"),
        Flag.of("--device", help="cpu, cuda, cuda:N or auto (default: the config's)"),
        PROBLEM_PARAM,
        Flag.of(
            "--then",
            action="append",
            metavar="PHASE[:KEY=VALUE,...]",
            help="a training phase after every method's steps, e.g. lbfgs:iters=5000 "
            "(repeatable, in order)",
        ),
        *SWEEP_FLAGS,
    ),
    description=(
        "Run every method of --methods for --seeds seeds on PROBLEM (a resumable sweep in "
        "--out), print mean ± std of errors and costs, and write the report."
    ),
)
