"""The configuration of one training run, serialisable to JSON."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from autobalance.errors import (
    ConfigError,
    HyperparameterError,
    UnknownComponentError,
    UnknownNameError,
    unknown_name_message,
)

__all__ = [
    "DEFAULT_STEPS",
    "DTYPES",
    "RunConfig",
    "check_components",
    "check_device_spec",
    "check_phases",
    "check_types",
    "resolve_device",
    "resolve_dtype",
]

# Default budget: `autobalance run helmholtz --method autobalance` (what `make demo` runs) should
# train for 90-120 s on the 2-core development machine.  Measured there (Helmholtz defaults, MLP
# 4×50, 1024 residual + 256 boundary points per step, float32, GLIBC_TUNABLES set, seed 0):
# "adam" 6.1 ms/step → 15,000 steps in 92 s; "autobalance" 7.0 ms/step → 106 s of training,
# 111 s for the whole command (start-up, 31 evaluations on the 201×201 grid, plot).
DEFAULT_STEPS = 15_000

#: Floating-point types a run can use, by name.
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}


def resolve_dtype(name: str) -> torch.dtype:
    """``"float32"`` or ``"float64"`` to the torch dtype."""
    try:
        return DTYPES[name]
    except KeyError:
        raise ConfigError(unknown_name_message("dtype", name, DTYPES)) from None


def resolve_device(spec: str) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when available, else CPU)."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError):
        raise ConfigError(
            f"invalid device {spec!r}: use 'cpu', 'cuda', 'cuda:N' or 'auto'"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {spec!r} asked for, but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {spec!r} asked for, but only {torch.cuda.device_count()} CUDA device(s) "
                "are visible"
            )
    elif device.type != "cpu":
        raise ConfigError(f"unsupported device {spec!r}: use 'cpu', 'cuda', 'cuda:N' or 'auto'")
    return device


def check_device_spec(spec: str) -> str:
    """``spec`` if it has the form of a device :func:`resolve_device` takes, else
    :class:`ConfigError`; whether that device exists here is not checked."""
    if spec == "auto":
        return spec
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ConfigError(f"invalid device {spec!r}: use 'cpu', 'cuda', 'cuda:N' or 'auto'")
    return spec


#: The seeds ``torch.manual_seed`` accepts.
_SEEDS = (-(2**63), 2**64 - 1)


def _type_ok(value: Any, annotation: Any) -> bool:
    """Whether ``value`` fits a RunConfig field annotation (int, float, str, dict, list, unions)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if annotation is bool:
        return isinstance(value, bool)
    container = origin or annotation
    if container is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    if container is list:
        return isinstance(value, list)
    return True  # a type this check does not know: left to RunConfig.validate


_TYPE_WORDS = {
    int: "an integer",
    float: "a number",
    str: "a string",
    bool: "true or false",
    dict: "a table",
    list: "a list",
}


def _describe(annotation: Any) -> str:
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if annotation is type(None):
        return "null"
    return _TYPE_WORDS.get(origin or annotation, str(annotation))


def check_types(data: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` naming the first key of ``data`` that is not a
    :class:`RunConfig` field or whose value has the wrong type (tables need string keys)."""
    hints = typing.get_type_hints(RunConfig)
    known = list(hints)
    for key, value in data.items():
        if key not in hints:
            raise ConfigError(unknown_name_message("run configuration key", key, known))
        if not _type_ok(value, hints[key]):
            raise ConfigError(
                f"invalid value for {key!r}: expected {_describe(hints[key])}, got {value!r}"
            )


def check_components(config: RunConfig) -> None:
    """The problem, network, method and variants must be catalogued, with parameters they take.

    Problem, network and variant parameters are checked by name and type (their rules, such as
    an even number of boundary points, when the component is built); method parameters by name
    where the method's factory lists them, and against the ones a method fixes
    (:func:`autobalance.methods.check_arguments`), e.g. method ``adam`` with ``base="adamw"``.
    """
    from autobalance import methods, nets, problems, variants

    for name, check in (
        (config.problem, problems.get),
        (config.net, nets.parameters),
        (config.method, methods.spec),
    ):
        try:
            check(name)
        except UnknownNameError as exc:  # "unknown method 'x'. Did you mean ...": names the key
            raise UnknownComponentError(str(exc)) from None
    known = problems.parameters(config.problem)
    for key, catalog, name, params in (
        ("problem_params", problems.CATALOG, config.problem, config.problem_params),
        ("net_params", nets.CATALOG, config.net, config.net_params),
    ):
        try:
            catalog.check(name, params)
        except ConfigError as exc:
            unknown = [k for k in params if key == "problem_params" and k not in known]
            where = f"key {key}.{unknown[0]}" if unknown else f"value for {key!r}"
            raise ConfigError(f"invalid {where}: {exc}") from None
    try:
        methods.check_arguments(config.method, {"lr": config.lr, **config.method_params})
    except HyperparameterError as exc:
        raise ConfigError(f"invalid value for 'method_params': {exc}") from None
    try:
        variants.resolve_specs(config.variants)
    except (ConfigError, UnknownNameError) as exc:
        kind = UnknownComponentError if isinstance(exc, UnknownNameError) else ConfigError
        raise kind(f"invalid value for 'variants': {exc}") from None


def check_phases(entries: list[Any]) -> list[Any]:
    """The :class:`~autobalance.phases.spec.PhaseSpec` of every entry of ``RunConfig.phases``
    (text or mapping form); :class:`ConfigError` naming the entry that cannot work."""
    from autobalance.phases import parse_phase, phase_from_mapping

    specs = []
    for i, entry in enumerate(entries):
        where = f"invalid value for 'phases' (entry {i})"
        try:
            if isinstance(entry, str):
                specs.append(parse_phase(entry))
            elif isinstance(entry, Mapping):
                specs.append(phase_from_mapping(entry))
            else:
                raise ConfigError(
                    f"a phase is a spec like 'lbfgs:iters=5000' or a table with a 'name', "
                    f"got {entry!r}"
                )
        except UnknownNameError as exc:
            raise UnknownComponentError(f"{where}: {exc}") from None
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return specs


@dataclass
class RunConfig:
    """Everything that defines a training run (JSON round trip: :meth:`to_dict`/:meth:`from_dict`).

    The learning rate follows a smooth exponential decay
    ``lr(t) = lr · lr_decay^(t / lr_decay_steps)`` (``lr_decay = 1`` keeps it constant).

    Attributes:
        problem: registered problem name; ``problem_params`` its coefficients and point counts.
        net: registered network name; ``net_params`` its parameters (e.g. width, depth).
        method: registered method name; ``method_params`` its keyword arguments besides ``lr``
            (e.g. ``base``, ``weight_decay``, ``betas``).
        lr: initial learning rate.
        steps: number of optimisation steps.
        seed: seeds the initialisation (``torch.manual_seed``) and the point sampler (its own
            ``torch.Generator``).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        dtype: ``"float32"`` or ``"float64"``.
        eval_every: steps between evaluations on the held-out grid (also at steps 0 and last).
        log_every: steps between rows of the loss history (also at steps 1 and last).
        checkpoint_every: steps between checkpoints (also at the last step); 0: only at the end.
        sampler: how the problem draws its collocation points: ``"uniform"`` (default),
            ``"lhs"``, ``"grid"`` or ``"sobol"`` (:mod:`autobalance.problems.sampling`).
        resample_every: draw fresh points every this many steps (at steps 0, N, 2N, ...);
            1 (default): every step; 0: once, fixed for the whole run.
        variants: PINN variants applied in order, each ``{"name": ..., **params}`` (e.g.
            ``[{"name": "rba"}, {"name": "gpinn", "weight": 0.1}]``, see
            :mod:`autobalance.variants`); none by default.
        budget: ``None`` (default: ``steps`` steps) or ``{"kind": "steps"|"backward"|"time",
            "value": N}``, a cost limit for equal-budget comparisons (``steps`` stays an upper
            bound; :mod:`autobalance.experiments.budget`).
        phases: training phases run after the ``steps`` first-order steps, in order, each a
            phase spec (:mod:`autobalance.phases.spec`): the text form ``"lbfgs:iters=5000"`` or
            the mapping form ``{"name": "lbfgs", "iters": 5000}``; none by default.  A phase
            minimises the plain sum of the problem's losses on a fixed point set (redrawn every
            ``redraw_every`` iterations when the spec says so); see
            :mod:`autobalance.experiments.phase_runs`.
        threads: intra-op CPU threads of the run (:mod:`autobalance.threads`): ``None``
            (default) is the policy's choice, one thread (two spin-waiting threads collapse next
            to one busy process); ``N`` asks for ``N``, capped by the cores this process may use
            (affinity, cgroup quota, ``OMP_NUM_THREADS``).  ``metrics.json`` records the count
            used (``threads``).
    """

    problem: str = "helmholtz"
    problem_params: dict[str, Any] = field(default_factory=dict)
    net: str = "mlp"
    net_params: dict[str, Any] = field(default_factory=dict)
    method: str = "autobalance"
    method_params: dict[str, Any] = field(default_factory=dict)
    lr: float = 1e-3
    lr_decay: float = 0.9
    lr_decay_steps: int = 1000
    steps: int = DEFAULT_STEPS
    seed: int = 0
    device: str = "auto"
    dtype: str = "float32"
    eval_every: int = 500
    log_every: int = 10
    checkpoint_every: int = 5000
    sampler: str = "uniform"
    resample_every: int = 1
    variants: list[dict[str, Any]] = field(default_factory=list)
    budget: dict[str, Any] | None = None
    threads: int | None = None
    phases: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first field that cannot work.

        Called at construction (and again by the runner, since fields may be reassigned), so the
        API, the command line and configuration files refuse the same inputs with the same
        messages.  Checked, in order: the type of every field (:func:`check_types`), the range
        of every number, the variants, budget, dtype, device and sampler, then the names of the
        problem, network, method and variants and their parameters (:func:`check_components`).
        The device is checked for its form only: whether it exists is decided where the run
        starts (:func:`resolve_device`).
        """
        check_types({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        checks = [
            (self.steps >= 0, "steps must be >= 0"),
            (0 < self.lr < math.inf, "lr must be a finite number > 0"),
            (0 < self.lr_decay <= 1, "lr_decay must be in (0, 1]"),
            (self.lr_decay_steps >= 1, "lr_decay_steps must be >= 1"),
            (_SEEDS[0] <= self.seed <= _SEEDS[1], f"seed must lie in [{_SEEDS[0]}, {_SEEDS[1]}]"),
            (self.eval_every >= 1, "eval_every must be >= 1"),
            (self.log_every >= 1, "log_every must be >= 1"),
            (self.checkpoint_every >= 0, "checkpoint_every must be >= 0"),
            (
                self.resample_every >= 0,
                "resample_every must be >= 0 (1: fresh points every step, 0: fixed points)",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"invalid run configuration: {message}")
        if not all(isinstance(v, dict) and isinstance(v.get("name"), str) for v in self.variants):
            raise ConfigError(
                "invalid run configuration: variants must be a list of {'name': ..., **params}"
            )
        if self.threads is not None and (
            isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1
        ):
            raise ConfigError(
                "invalid run configuration: threads must be a positive integer, or None for the "
                f"thread policy's default (one thread), got {self.threads!r}"
            )
        if "lr" in self.method_params:
            raise ConfigError("give the learning rate as RunConfig.lr, not in method_params")
        resolve_dtype(self.dtype)
        check_device_spec(self.device)
        from autobalance.experiments.budget import Budget

        Budget.from_spec(self.budget)
        from autobalance.problems.sampling import get_sampler  # the problems package imports us

        try:
            get_sampler(self.sampler)
        except UnknownNameError as exc:
            raise UnknownComponentError(f"invalid run configuration: {exc}") from None
        check_components(self)
        check_phases(self.phases)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"a run configuration must be a table of keys, got {type(data).__name__}"
            )
        known = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in known:
                raise ConfigError(unknown_name_message("run configuration key", key, known))
        return cls(**data)

    def to_json(self) -> str:
        """Indented JSON text."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> RunConfig:
        """Read a ``config.json`` written by :meth:`to_json`."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
