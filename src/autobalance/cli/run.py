"""``autobalance run PROBLEM --method NAME ...``: train one PINN and print its errors.

The flags' defaults are :class:`~autobalance.experiments.config.RunConfig`'s.  With ``--config
FILE`` or ``--set``, the file is read first, then the flags given, then ``--set`` items.

Run directories are never silently reused.  ``--out`` defaults to
``runs/PROBLEM-METHOD[-BASE]-lrLR-seedSEED-HASH`` (``HASH``: :func:`~autobalance.experiments.
sweep.config_hash` of the configuration), so two configurations never share one; a directory that
holds a run is refused unless ``--resume`` (continue it) or ``--overwrite`` (replace it).

``--preset NAME`` (:mod:`autobalance.presets`) starts from a documented recipe for the problem
(``--preset sota``: float64, a compact network, Adam then SSBroyden); the file, the flags and
``--set`` items given override it, key by key.  ``--then PHASE`` (repeatable) adds training phases
after the first-order steps (:mod:`autobalance.experiments.phase_runs`).

``--resume`` continues the run in ``--out`` from its checkpoint with the configuration the
checkpoint holds; every flag, ``--config`` key and ``--set`` item given is applied to it, and one
that changes it is an error naming the key and both values, except ``--steps`` (not below the
checkpoint's step), ``--budget``, ``--checkpoint-every`` and ``--threads``
(:data:`~autobalance.experiments.runner.RESUMABLE_KEYS`).

Exit status (:mod:`autobalance.cli.main`): 0 done, 1 the run diverged (its files are written),
2 usage or configuration error, 3 a file problem, 130 interrupted (checkpoint written).

Numeric values are read as ``--set`` reads them and checked by :class:`RunConfig` itself, so the
command line and the API refuse the same inputs with the same messages.  ``--threads N``:
intra-op CPU threads (default 1, :mod:`autobalance.threads`); ``metrics.json`` records the count
used, and a resumed run may change it.
"""

from __future__ import annotations

import argparse
import json
import re
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

__all__ = ["COMMAND", "EXIT_FAILED_RUN", "cmd_run", "default_out"]

EXIT_FAILED_RUN = 1
#: Default wall-clock seconds between checkpoints (``runner.CHECKPOINT_SECONDS``, not imported
#: here so that ``--help`` does not import torch).
_CHECKPOINT_SECONDS = 60.0

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
    """``--flag`` whose help shows ``RunConfig``'s default of the field it sets.

    The parsed value stays ``None`` when the flag is not given, so a resumed run can tell the
    flags given (checked against its saved configuration) from the defaults.
    """
    dest = flag.removeprefix("--").replace("-", "_")
    return Flag.of(flag, help=text.replace("%(default)s", str(getattr(_DEFAULTS, dest))), **options)


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
    Flag.of(
        "--then",
        action="append",
        metavar="PHASE[:KEY=VALUE,...]",
        help="a training phase after the first-order steps, e.g. lbfgs:iters=5000, "
        "ssbroyden:iters=3000,max_seconds=600, gauss_newton:iters=200 (repeatable, run in the "
        "order given; see `autobalance list`)",
    ),
    Flag.of(
        "--preset",
        metavar="NAME",
        help="start from a documented recipe for PROBLEM, e.g. sota (float64, compact network, "
        "Adam then SSBroyden); flags, --config keys and --set items given override it "
        "(see `autobalance list`)",
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
    OUT_DIR.but(
        help="output directory (default runs/PROBLEM-METHOD[-BASE]-lrLR-seedSEED-HASH, one per "
        "configuration); a directory holding a run needs --resume or --overwrite"
    ),
    Flag.switch(
        "--resume",
        "continue the run in --out from its checkpoint, with its saved configuration: flags "
        "that change it are an error, except --steps (more), --budget, --checkpoint-every, "
        "--threads",
    ),
    Flag.switch("--overwrite", "replace the run in --out (its files are removed first)"),
    Flag.of(
        "--checkpoint-seconds",
        type=float,
        default=_CHECKPOINT_SECONDS,
        metavar="SECONDS",
        help="also checkpoint every SECONDS of wall-clock (default %(default)s; 0: off); a "
        "checkpoint is also written at step 0 and on SIGINT/SIGTERM",
    ),
    Flag.switch(
        "--deterministic",
        "torch.use_deterministic_algorithms(True) (CUDA: identical reruns, slower; CPU runs are "
        "already identical for the same seed and threads)",
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


def _given_items(args: argparse.Namespace) -> list[str]:
    """``DOTTED.KEY=VALUE`` items for the flags given (not ``--config`` / ``--set``)."""
    items = [
        f"{key}={json.dumps(getattr(args, dest))}"
        for dest, key in _FLAG_KEYS.items()
        if getattr(args, dest) is not None
    ]
    for dest, prefix in (
        ("param", "problem_params"),
        ("net_param", "net_params"),
        ("method_param", "method_params"),
    ):
        items += [f"{prefix}.{item}" for item in getattr(args, dest) or ()]
    if args.variant:
        items.append(f"variants={json.dumps(parse_variants(args.variant))}")
    if args.then:
        items.append(f"phases={json.dumps(list(args.then))}")
    return items


def _config_from_file_args(
    args: argparse.Namespace, saved: dict[str, Any] | None = None
) -> RunConfig:
    """``saved`` (a resumed run's configuration), then ``--config FILE``, the flags, ``--set``."""
    from autobalance.errors import ConfigError
    from autobalance.experiments.config_files import config_from_dict, load_mapping

    file = load_mapping(args.config) if args.config else {}
    data: dict[str, Any] = dict(saved or {})
    if args.preset and saved is None:  # a resumed run keeps its saved configuration
        from autobalance.presets import preset_config

        problem = args.problem or file.get("problem")
        if not isinstance(problem, str):
            raise ConfigError("--preset needs a PROBLEM (or a --config file naming one)")
        data = preset_config(args.preset, problem)
    for key, value in file.items():  # tables merge key by key over the preset's
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return config_from_dict(data, [*_given_items(args), *(args.set or ())])


def default_out(config: RunConfig) -> Path:
    """``runs/PROBLEM-METHOD[-BASE]-lrLR-seedSEED-HASH``: one directory per configuration.

    ``HASH`` is :func:`~autobalance.experiments.sweep.config_hash` (the fields that differ from
    the defaults), so configurations that differ anywhere get different directories.
    """
    from autobalance.experiments.sweep import config_hash

    parts = [config.problem, config.method]
    base = config.method_params.get("base")
    if isinstance(base, str):
        parts.append(base)
    parts += [f"lr{config.lr:g}", f"seed{config.seed}", config_hash(config)]
    return Path("runs") / "-".join(re.sub(r"[^A-Za-z0-9_.+]+", "_", p) for p in parts)


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


def _new_config(args: argparse.Namespace) -> RunConfig:
    """The configuration of a new run from the flags (and ``--config`` / ``--set``)."""
    from autobalance.errors import ConfigError

    if args.config or args.set or args.preset:
        from autobalance.experiments.config_files import load_mapping

        named = args.problem is not None or any(i.startswith("problem=") for i in args.set or ())
        if not named and "problem" not in (load_mapping(args.config) if args.config else {}):
            raise ConfigError(  # an empty or cut file must not start the default problem
                f'the configuration names no problem: give a PROBLEM, problem = "..." in '
                f"{args.config or 'a --config file'}, or --set problem=NAME"
            )
        return _config_from_file_args(args)
    if args.problem is None:
        raise ConfigError("give a PROBLEM, or --config FILE")
    method_params = parse_assignments(args.method_param, "--method-param")
    net_params = parse_assignments(args.net_param, "--net-param")
    kwargs: dict[str, Any] = {
        "problem": args.problem,
        "problem_params": parse_assignments(args.param, "--param"),
        "net": args.net or _DEFAULTS.net,
        "net_params": _with(net_params, "--net-param", width=args.width, depth=args.depth),
        "method": args.method or _DEFAULTS.method,
        "method_params": _with(
            method_params, "--method-param", base=args.base, weight_decay=args.weight_decay
        ),
        "variants": parse_variants(args.variant),
        "phases": list(args.then or ()),
    }
    kwargs.update({name: getattr(args, name) for name in _PLAIN_FIELDS})
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if args.steps is not None:
        kwargs["steps"] = args.steps
    return RunConfig(**kwargs)


def _config_from_args(args: argparse.Namespace) -> tuple[RunConfig, Path]:
    """The run's configuration and directory.

    With ``--resume``: the checkpoint's configuration with the flags given applied to it (the
    runner refuses changes outside ``RESUMABLE_KEYS``, naming them); the directory is ``--out``
    or, without it, the default directory of the configuration the flags describe.
    """
    from autobalance.errors import ConfigError
    from autobalance.experiments.runner import load_checkpoint

    if args.resume and args.overwrite:
        raise ConfigError("--resume and --overwrite exclude each other: continue or replace")
    if not args.resume:
        config = _new_config(args)
        return config, Path(args.out) if args.out else default_out(config)
    if args.out:
        out = Path(args.out)
    elif args.problem is None and not args.config:
        raise ConfigError("--resume needs --out DIR (the run's directory)")
    else:
        out = default_out(_new_config(args))
    saved = load_checkpoint(out / "checkpoint.pt")["config"]
    return _config_from_file_args(args, saved), out


def cmd_run(args: argparse.Namespace) -> int:
    """Run ``autobalance run``: train, then print the final errors and where the files are."""
    from autobalance.experiments.data_parallel import is_main_process
    from autobalance.experiments.runner import train

    config, out = _config_from_args(args)
    metrics = train(
        config,
        out,
        progress=not args.no_progress,
        resume=args.resume,
        overwrite=args.overwrite,
        checkpoint_seconds=args.checkpoint_seconds,
        deterministic=args.deterministic,
    )
    if not is_main_process():  # torchrun: rank 0 reports
        return 0 if metrics["status"] == "ok" else EXIT_FAILED_RUN
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
    for phase in metrics.get("phases", ()):
        counts = ", ".join(f"{v} {k}" for k, v in phase["evaluations"].items() if v)
        print(
            f"  then {phase['spec']}: {phase['iterations']} iterations ({phase['reason']}), "
            f"{counts}, {phase['wall_s']:.1f} s, rel L2 {phase['rel_l2']:.3e}"
        )
    print(f"files: {out}")
    return 0


COMMAND = Command("run", "train one PINN on one problem with one method", cmd_run, _RUN_FLAGS)
