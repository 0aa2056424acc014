"""The ``autobalance`` command: ``autobalance run PROBLEM --method NAME ...``, ``autobalance list``.

Errors the user can fix (unknown names, bad parameters) print ``error: <message>`` on stderr and
exit with code 2; a run that diverges writes its files and exits with code 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autobalance.cli import diagnose as _diagnose
from autobalance.cli.bench import add_bench_command, cmd_bench
from autobalance.cli.compare import add_compare_command, cmd_compare
from autobalance.cli.report import add_report_command, cmd_report

__all__ = ["GLIBC_TUNABLES", "build_parser", "main", "parse_assignments", "parse_variants"]

#: glibc's default malloc thresholds make every PINN step page-fault on the autograd buffers it
#: just freed; raising both thresholds makes CPU steps 11–25% faster (measured on the 2-core
#: development machine).  glibc reads GLIBC_TUNABLES only at process start, so the console command
#: re-executes itself once with it set (see ``_reexec_with_tunables``).
GLIBC_TUNABLES = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296"

EXIT_USAGE = 2
EXIT_FAILED_RUN = 1


def _reexec_with_tunables() -> None:
    """Re-exec the same command once with ``GLIBC_TUNABLES`` set (Linux only).

    Skipped when ``GLIBC_TUNABLES`` or ``AUTOBALANCE_NO_REEXEC`` is already set; the new process
    gets both, so it never re-executes again.  Any failure to exec leaves this process running.
    """
    if not sys.platform.startswith("linux"):
        return
    if "GLIBC_TUNABLES" in os.environ or "AUTOBALANCE_NO_REEXEC" in os.environ:
        return
    argv = list(getattr(sys, "orig_argv", []))
    if not argv or not sys.executable:
        return
    env = dict(os.environ, GLIBC_TUNABLES=GLIBC_TUNABLES, AUTOBALANCE_NO_REEXEC="1")
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, *argv[1:]], env)
    except OSError:
        return


def _parse_value(text: str) -> Any:
    """``"4"`` → 4, ``"1e-3"`` → 0.001, ``"true"`` → True, ``"(0.9, 0.99)"`` → tuple, else text.

    The parser of ``--set`` (:func:`autobalance.experiments.config_files.parse_value`), so a
    value means the same in ``--param``, ``--method-param``, ``--variant`` and ``--set``.
    """
    from autobalance.experiments.config_files import parse_value

    return parse_value(text)


def parse_assignments(items: Sequence[str] | None, flag: str) -> dict[str, Any]:
    """Parse repeated ``KEY=VALUE`` options into a dict (values via :func:`_parse_value`)."""
    from autobalance.errors import ConfigError

    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key.strip()] = _parse_value(value)
    return out


def parse_variants(items: Sequence[str] | None) -> list[dict[str, Any]]:
    """``["rba", "causal:chunks=16,epsilon=0.1"]`` → ``[{"name": "rba"}, {"name": "causal", ...}]``.

    Parameters follow the name after a colon as comma-separated ``KEY=VALUE`` pairs (values as
    in :func:`_parse_value`); a value that itself holds a comma needs ``--set variants=JSON``.
    """
    from autobalance.errors import ConfigError

    specs: list[dict[str, Any]] = []
    for item in items or ():
        name, _, rest = item.partition(":")
        if not name.strip():
            raise ConfigError(f"--variant expects NAME[:KEY=VALUE,...], got {item!r}")
        pairs = [p for p in rest.split(",") if p.strip()]
        specs.append({"name": name.strip(), **parse_assignments(pairs, f"--variant {name}")})
    return specs


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``autobalance`` command."""
    from autobalance.experiments.config import DEFAULT_STEPS, DTYPES

    parser = argparse.ArgumentParser(
        prog="autobalance",
        description="Train physics-informed neural networks with multi-loss balancing methods.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="train one PINN on one problem with one method")
    run.add_argument(
        "problem", nargs="?", help="problem name (see `autobalance list`); optional with --config"
    )
    run.add_argument(
        "--method", default="autobalance", help="balancing method (default: %(default)s)"
    )
    run.add_argument("--base", help="base optimizer of a multi-state method, e.g. adam, adamw")
    run.add_argument("--lr", type=float, default=1e-3, help="initial learning rate (%(default)s)")
    run.add_argument(
        "--lr-decay",
        type=float,
        default=0.9,
        help="lr(t) = lr · DECAY^(t / DECAY_STEPS) (default %(default)s; 1 keeps lr constant)",
    )
    run.add_argument("--lr-decay-steps", type=int, default=1000, help="(default %(default)s)")
    run.add_argument("--weight-decay", type=float, help="weight decay of the method's optimizer")
    run.add_argument(
        "--method-param",
        action="append",
        metavar="KEY=VALUE",
        help="another keyword argument of the method, e.g. betas='(0.9, 0.99)' (repeatable)",
    )
    run.add_argument(
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help="problem parameter, e.g. a2=4 or n_residual=2048 (repeatable)",
    )
    run.add_argument("--steps", type=int, help=f"optimisation steps (default {DEFAULT_STEPS})")
    run.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    run.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    run.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    run.add_argument("--net", default="mlp", help="network (default %(default)s)")
    run.add_argument("--width", type=int, help="hidden units per layer (mlp default 50)")
    run.add_argument("--depth", type=int, help="hidden layers (mlp default 4)")
    run.add_argument("--net-param", action="append", metavar="KEY=VALUE", help="(repeatable)")
    run.add_argument(
        "--variant",
        action="append",
        metavar="NAME[:KEY=VALUE,...]",
        help="PINN variant applied in the order given, e.g. rba, causal:chunks=16, "
        "gpinn:weight=0.1 (repeatable; see `autobalance list`)",
    )
    run.add_argument(
        "--sampler",
        default="uniform",
        help="collocation points: uniform (default), lhs, grid or sobol",
    )
    run.add_argument(
        "--resample-every",
        type=int,
        default=1,
        help="fresh points every N steps (default %(default)s; 0: fixed points)",
    )
    run.add_argument("--eval-every", type=int, default=500, help="(default %(default)s)")
    run.add_argument("--log-every", type=int, default=10, help="(default %(default)s)")
    run.add_argument("--checkpoint-every", type=int, default=5000, help="(default %(default)s)")
    run.add_argument("--out", help="output directory (default runs/PROBLEM-METHOD-seedSEED)")
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its checkpoint (its config.json; --steps may grow)",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument(
        "--config",
        metavar="FILE",
        help="run configuration file (TOML, YAML or JSON); flags given override it",
    )
    run.add_argument(
        "--set",
        action="append",
        metavar="DOTTED.KEY=VALUE",
        help="set a configuration key last, e.g. method_params.base=adam (repeatable)",
    )

    sub.add_parser("list", help="list problems, networks, variants and methods")
    _diagnose.add_parser(sub)
    add_report_command(sub)
    add_compare_command(sub)
    add_bench_command(sub)
    return parser


#: ``run`` flags and the configuration keys they set when combined with --config / --set.
_RUN_FLAG_KEYS = {
    **{k: k for k in ("problem", "method", "net", "lr", "lr_decay", "lr_decay_steps", "steps")},
    **{k: k for k in ("seed", "device", "dtype", "eval_every", "log_every", "checkpoint_every")},
    **{k: k for k in ("sampler", "resample_every")},
    "base": "method_params.base",
    "weight_decay": "method_params.weight_decay",
    "width": "net_params.width",
    "depth": "net_params.depth",
}


def _config_from_file_args(args: argparse.Namespace) -> tuple[Any, Path]:
    """``run --config FILE`` / ``--set``: the file, then the flags given, then ``--set``."""
    import json

    from autobalance.experiments.config_files import config_from_dict, load_mapping

    defaults = build_parser().parse_args(["run", "-"])
    items = [
        f"{key}={json.dumps(getattr(args, dest))}"
        for dest, key in _RUN_FLAG_KEYS.items()
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


def _config_from_args(args: argparse.Namespace) -> tuple[Any, Path]:
    from autobalance.errors import ConfigError
    from autobalance.experiments.config import RunConfig

    if (args.config or args.set) and not args.resume:
        return _config_from_file_args(args)
    if args.problem is None and not (args.resume and args.out):
        raise ConfigError("give a PROBLEM, or --config FILE")
    out = Path(args.out or f"runs/{args.problem}-{args.method}-seed{args.seed}")
    if args.resume:
        config = RunConfig.from_json(out / "config.json")
        if args.steps is not None:
            config.steps = args.steps
        return config, out
    method_params = parse_assignments(args.method_param, "--method-param")
    for key, value in (("base", args.base), ("weight_decay", args.weight_decay)):
        if value is not None:
            method_params[key] = value
    net_params = parse_assignments(args.net_param, "--net-param")
    for key, value in (("width", args.width), ("depth", args.depth)):
        if value is not None:
            net_params[key] = value
    kwargs: dict[str, Any] = {
        "problem": args.problem,
        "problem_params": parse_assignments(args.param, "--param"),
        "net": args.net,
        "net_params": net_params,
        "method": args.method,
        "method_params": method_params,
        "lr": args.lr,
        "lr_decay": args.lr_decay,
        "lr_decay_steps": args.lr_decay_steps,
        "seed": args.seed,
        "device": args.device,
        "dtype": args.dtype,
        "eval_every": args.eval_every,
        "log_every": args.log_every,
        "checkpoint_every": args.checkpoint_every,
        "sampler": args.sampler,
        "resample_every": args.resample_every,
        "variants": parse_variants(args.variant),
    }
    if args.steps is not None:
        kwargs["steps"] = args.steps
    return RunConfig(**kwargs), out


def _format_table(rows: Sequence[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _cmd_run(args: argparse.Namespace) -> int:
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
        _format_table(
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
                ("wall-clock", f"{metrics['wall_s']:.1f} s ({metrics['step_ms']:.2f} ms/step)"),
            ]
        )
    )
    print(f"files: {out}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from autobalance import methods, nets, problems, variants

    print("problems:")
    print(_format_table([(f"  {e.name}", e.summary) for e in problems.describe()]))
    print("\nnetworks:")
    print(_format_table([(f"  {e.name}", e.summary) for e in nets.describe()]))
    print(
        "  (every network takes the input embeddings fourier_features=M, fourier_sigma=S, "
        "periodic={input: period}\n   and rwf=true for random weight factorisation: "
        "--net-param KEY=VALUE)"
    )
    print("\nvariants (--variant NAME[:KEY=VALUE,...], applied in order):")
    print(_format_table([(f"  {e.name}", e.summary) for e in variants.describe()]))
    print("\nmethods:")
    specs = methods.describe()
    print(_format_table([(f"  {s.name}", f"[{s.family}] {s.summary}") for s in specs]))
    return 0


_COMMANDS = {"run": _cmd_run, "list": _cmd_list, "diagnose": _diagnose.run}
_COMMANDS["report"] = cmd_report
_COMMANDS["compare"] = cmd_compare
_COMMANDS["bench"] = cmd_bench


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``autobalance`` and ``python -m autobalance``; returns the exit code.

    With ``argv=None`` (a console command) on Linux, the process first re-executes itself once with
    :data:`GLIBC_TUNABLES` set, unless ``GLIBC_TUNABLES`` or ``AUTOBALANCE_NO_REEXEC`` is set.  An
    explicit ``argv`` (a programmatic call) never re-executes.
    """
    if argv is None:
        _reexec_with_tunables()
    from autobalance.errors import AutoBalanceError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed its usage message
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return _COMMANDS[args.command](args)
    except AutoBalanceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `autobalance list | head`: stop writing quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
