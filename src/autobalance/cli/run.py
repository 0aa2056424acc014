"""``autobalance run PROBLEM --method NAME ...``: train one PINN and print its errors.

The flags' defaults are :class:`~autobalance.experiments.config.RunConfig`'s.  With ``--config
FILE`` or ``--set``, the file is read first, then the flags given (those that differ from their
defaults), then ``--set`` items.  ``--resume`` continues the run in ``--out`` from its checkpoint
(its ``config.json``; only ``--steps`` may grow, and ``--threads`` change).  Numeric values
are read as ``--set`` reads them and checked by :class:`RunConfig` itself, so the command line
and the API refuse the same inputs with the same messages.  A run that diverges writes its
files and exits with code 1.  ``--threads N``: intra-op CPU threads (default 1,
:mod:`autobalance.threads`); ``metrics.json`` records the count used.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from autobalance.cli.console import text_table
from autobalance.cli.options import (
    CONFIG_FILE,
    OUT_DIR,
    PROBLEM_PARAM,
    THREADS,
    Command,
    Flag,
    parse_assignments,
    parse_variants,
)
from autobalance.experiments.config import DEFAULT_STEPS, DTYPES, RunConfig
from autobalance.experiments.config_files import parse_value

__all__ = ["COMMAND", "EXIT_FAILED_RUN", "cmd_run"]

EXIT_FAILED_RUN = 1

_DEFAULTS = RunConfig()

#: ``run`` flags that set a configuration key, and the key (with --config / --set).
_FLAG_KEYS = {
    **{k: k for k in ("problem", "method", "net", "lr", "lr_decay", "lr_decay_steps", "steps")},
    **{k: k for k in ("seed", "device", "dtype", "eval_every", "log_every", "checkpoint_every")},
    **{k: k for k in ("sampler", "resample_every", "threads")},
    "base": "method_params.base",
    "weight_decay": "method_params.weight_decay",
    "width": "net_params.width",
    "depth": "net_params.depth",
}


def _default(flag: str, text: str = "(default %(default)s)", **options: Any) -> Flag:
    """``--flag`` with ``RunConfig``'s default of the field it sets and ``text`` as help."""
    dest = flag.removeprefix("--").replace("-", "_")
    return Flag.of(flag, default=getattr(_DEFAULTS, dest), help=text, **options)


_RUN_FLAGS = (
    Flag.of(
        "problem", nargs="?", help="problem name (see `autobalance list`); optional with --config"
    ),
    _default("--method", "balancing method (default: %(default)s)"),
    Flag.of("--base", help="base optimizer of a multi-state method, e.g. adam, adamw"),
    _default("--lr", "initial learning rate (%(default)s)", type=parse_value),
    _default(
        "--lr-decay",
        "lr(t) = lr · DECAY^(t / DECAY_STEPS) (default %(default)s; 1 keeps lr constant)",
        type=parse_value,
    ),
    _default("--lr-decay-steps", type=parse_value),
    Flag.of("--weight-decay", type=float, help="weight decay of the method's optimizer"),
    Flag.of(
        "--method-param",
        action="append",
        metavar="KEY=VALUE",
        help="another keyword argument of the method, e.g. betas='(0.9, 0.99)' (repeatable)",
    ),
    PROBLEM_PARAM,
    Flag.of("--steps", type=parse_value, help=f"optimisation steps (default {DEFAULT_STEPS})"),
    _default("--seed", "random seed (default %(default)s)", type=parse_value),
    _default("--device", "cpu, cuda, cuda:N or auto (default)"),
    _default("--dtype", f"{' or '.join(sorted(DTYPES))} (default %(default)s)"),
    _default("--net", "network (default %(default)s)"),
    Flag.of("--width", type=parse_value, help="hidden units per layer (mlp default 50)"),
    Flag.of("--depth", type=parse_value, help="hidden layers (mlp default 4)"),
    Flag.of("--net-param", action="append", metavar="KEY=VALUE", help="(repeatable)"),
    Flag.of(
        "--variant",
        action="append",
        metavar="NAME[:KEY=VALUE,...]",
        help="PINN variant applied in the order given, e.g. rba, causal:chunks=16, "
        "gpinn:weight=0.1 (repeatable; see `autobalance list`)",
    ),
    _default("--sampler", "collocation points: uniform (default), lhs, grid or sobol"),
    _default(
        "--resample-every",
        "fresh points every N steps (default %(default)s; 0: fixed points)",
        type=parse_value,
    ),
    _default("--eval-every", type=parse_value),
    _default("--log-every", type=parse_value),
    _default("--checkpoint-every", type=parse_value),
    THREADS,
    OUT_DIR.but(help="output directory (default runs/PROBLEM-METHOD-seedSEED)"),
    Flag.switch(
        "--resume",
        "continue the run in --out from its checkpoint (its config.json; --steps may grow)",
    ),
    Flag.switch("--no-progress", "no progress bar"),
    CONFIG_FILE.but(help="run configuration file (TOML, YAML or JSON); flags given override it"),
    Flag.of(
        "--set",
        action="append",
        metavar="DOTTED.KEY=VALUE",
        help="set a configuration key last, e.g. method_params.base=adam (repeatable)",
    ),
)


def _flag_defaults() -> argparse.Namespace:
    """The value of every ``run`` flag when it is not given."""
    parser = argparse.ArgumentParser(add_help=False)
    for flag in _RUN_FLAGS:
        parser.add_argument(*flag.names, **flag.options)
    return parser.parse_args([])


def _config_from_file_args(args: argparse.Namespace) -> tuple[RunConfig, Path]:
    """``run --config FILE`` / ``--set``: the file, then the flags given, then ``--set``."""
    from autobalance.experiments.config_files import config_from_dict, load_mapping

    defaults = _flag_defaults()
    items = [
        f"{key}={json.dumps(getattr(args, dest))}"
        for dest, key in _FLAG_KEYS.items()
        if getattr(args, dest) is not None and getattr(args, dest) != getattr(defaults, dest)
    ]
    for dest, prefix in (
        ("param", "problem_params"),
        ("net_param", "net_params"),
        ("method_param", "method_params"),
    ):
        items += [f"{prefix}.{item}" for item in getattr(args, dest) or ()]
    if args.variant:
        items.append(f"variants={json.dumps(parse_variants(args.variant))}")
    data = load_mapping(args.config) if args.config else {}
    config = config_from_dict(data, [*items, *(args.set or ())])
    return config, Path(args.out or f"runs/{config.problem}-{config.method}-seed{config.seed}")


#: ``RunConfig`` fields a ``run`` flag of the same name sets as it is.
_PLAIN_FIELDS = (
    "lr",
    "lr_decay",
    "lr_decay_steps",
    "seed",
    "device",
    "dtype",
    "eval_every",
    "log_every",
    "checkpoint_every",
    "sampler",
    "resample_every",
    "threads",
)


def _with(params: dict[str, Any], flag: str, **given: Any) -> dict[str, Any]:
    """``params`` (from ``flag``) plus the ``given`` values that are not None; a key given both
    ways with two values is a :class:`ConfigError`."""
    from autobalance.errors import ConfigError

    given = {k: v for k, v in given.items() if v is not None}
    for key, value in given.items():
        if key in params and params[key] != value:
            raise ConfigError(
                f"--{key.replace('_', '-')} {value} conflicts with {flag} {key}={params[key]}"
            )
    return {**params, **given}


def _config_from_args(args: argparse.Namespace) -> tuple[RunConfig, Path]:
    from autobalance.errors import ConfigError

    if (args.config or args.set) and not args.resume:
        return _config_from_file_args(args)
    if args.problem is None and not (args.resume and args.out):
        raise ConfigError("give a PROBLEM, or --config FILE")
    out = Path(args.out or f"runs/{args.problem}-{args.method}-seed{args.seed}")
    if args.resume:
        config = RunConfig.from_json(out / "config.json")
        if args.steps is not None:
            config.steps = args.steps
        if args.threads is not None:
            config.threads = args.threads
        return config, out
    method_params = parse_assignments(args.method_param, "--method-param")
    net_params = parse_assignments(args.net_param, "--net-param")
    kwargs: dict[str, Any] = {
        "problem": args.problem,
        "problem_params": parse_assignments(args.param, "--param"),
        "net": args.net,
        "net_params": _with(net_params, "--net-param", width=args.width, depth=args.depth),
        "method": args.method,
        "method_params": _with(
            method_params, "--method-param", base=args.base, weight_decay=args.weight_decay
        ),
        "variants": parse_variants(args.variant),
    }
    kwargs.update({name: getattr(args, name) for name in _PLAIN_FIELDS})
    if args.steps is not None:
        kwargs["steps"] = args.steps
    return RunConfig(**kwargs), out


def cmd_run(args: argparse.Namespace) -> int:
    """Run ``autobalance run``: train, then print the final errors and where the files are."""
    from autobalance.experiments.runner import train

    config, out = _config_from_args(args)
    metrics = train(config, out, progress=not args.no_progress, resume=args.resume)
    if metrics["status"] != "ok":
        err = metrics["error"]
        print(
            f"error: run diverged at step {err['step']} (loss {err['loss']!r}): {err['message']}\n"
            f"the run's files are in {out}",
            file=sys.stderr,
        )
        return EXIT_FAILED_RUN

    def fmt(value: Any) -> str:
        return "n/a" if value is None else f"{value:.3e}"

    print(
        f"{metrics['problem']} / {metrics['method']} / seed {metrics['seed']}: "
        f"{metrics['steps']} steps on {metrics['device']} ({metrics['dtype']})"
    )
    print(
        text_table(
            [
                ("metric", "value"),
                ("rel L2", fmt(metrics["rel_l2"])),
                ("rel L1", fmt(metrics.get("rel_l1"))),
                ("MSE", fmt(metrics["mse"])),
                ("L∞", fmt(metrics["linf"])),
                *[
                    (f"  {key}", fmt(value))
                    for key, value in metrics.items()
                    if key.startswith(("rel_l2_", "rel_l1_", "linf_"))
                ],
                (
                    "wall-clock",
                    f"{metrics['wall_s']:.1f} s ({metrics['step_ms']:.2f} ms/step, "
                    f"{metrics['threads']} thread{'s' if metrics['threads'] != 1 else ''})",
                ),
            ]
        )
    )
    print(f"files: {out}")
    return 0


COMMAND = Command("run", "train one PINN on one problem with one method", cmd_run, _RUN_FLAGS)
