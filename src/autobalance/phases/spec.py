"""Phase specifications: ``"lbfgs:iters=5000,history=50"`` ⇄ :class:`PhaseSpec`.

A specification names a phase of :data:`~autobalance.phases.catalog.PHASES` and sets

* the *schedule* keys, common to every phase (:data:`SCHEDULE_DEFAULTS`): ``iters`` (iterations),
  ``redraw_every`` (redraw the points every that many iterations; 0: never), ``max_evals``
  (stop when that many function evaluations are done; 0: no limit), ``max_seconds`` (stop after
  that much wall time; 0: no limit — not reproducible, for benchmarks),
* the phase's own options (the keyword arguments of its class, e.g. ``history`` for ``lbfgs``).

Text form: ``NAME`` or ``NAME:key=value,key=value``; values are read as integers, numbers,
``true``/``false`` or words.  Mapping form (config files): ``{"name": "lbfgs", "iters": 5000,
"history": 50}``.  Both are checked the same way: an unknown name or key is an error that lists
the valid ones, and the options are tried on a throw-away phase so that bad values fail here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from autobalance._params import check_params, parse_named_spec
from autobalance.errors import ConfigError, unknown_name_message
from autobalance.phases.catalog import PHASES

__all__ = ["SCHEDULE_DEFAULTS", "PhaseSpec", "parse_phase", "phase_from_mapping"]

#: The keys every phase takes, with their defaults.
SCHEDULE_DEFAULTS: dict[str, Any] = {
    "iters": 1000,
    "redraw_every": 0,
    "max_evals": 0,
    "max_seconds": 0.0,
}


@dataclass(frozen=True)
class PhaseSpec:
    """A phase by name, its schedule and its validated options (every option, defaults too)."""

    name: str
    iters: int = 1000
    redraw_every: int = 0
    max_evals: int = 0
    max_seconds: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)

    def to_mapping(self) -> dict[str, Any]:
        """The mapping form, only the values that differ from the defaults."""
        out: dict[str, Any] = {"name": self.name}
        for key, default in SCHEDULE_DEFAULTS.items():
            if getattr(self, key) != default:
                out[key] = getattr(self, key)
        defaults = PHASES.parameters(self.name)
        out.update({k: v for k, v in self.options.items() if defaults.get(k) != v})
        return out

    def __str__(self) -> str:
        """The text form (``lbfgs:iters=5000,history=50``), which :func:`parse_phase` reads."""
        items = self.to_mapping()
        name = items.pop("name")
        body = ",".join(f"{k}={_text(v)}" for k, v in items.items())
        return f"{name}:{body}" if body else name


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def phase_from_mapping(data: Mapping[str, Any], *, where: str | None = None) -> PhaseSpec:
    """A :class:`PhaseSpec` from ``{"name": ..., key: value, ...}``."""
    if "name" not in data or not isinstance(data["name"], str):
        raise ConfigError(f"{where or 'phase'}: give the phase's 'name' (one of {PHASES.names()})")
    name = data["name"]
    PHASES.entry(name)  # unknown name: UnknownNameError listing the phases
    where = where or f"phase {name!r}"
    options_defaults = PHASES.parameters(name)
    given = {k: v for k, v in data.items() if k != "name"}
    valid = {**SCHEDULE_DEFAULTS, **options_defaults}
    for key in given:
        if key not in valid:
            raise ConfigError(f"{where}: {unknown_name_message('key', key, valid)}")
    schedule = check_params(
        where, SCHEDULE_DEFAULTS, {k: v for k, v in given.items() if k in SCHEDULE_DEFAULTS}
    )
    options = check_params(
        where, options_defaults, {k: v for k, v in given.items() if k in options_defaults}
    )
    if schedule["iters"] < 1:
        raise ConfigError(f"{where}: 'iters' must be >= 1, got {schedule['iters']}")
    for key in ("redraw_every", "max_evals", "max_seconds"):
        if schedule[key] < 0:
            raise ConfigError(f"{where}: {key!r} must be >= 0, got {schedule[key]}")
    probe = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    PHASES.get(name)([probe], **options)  # range checks of the options
    return PhaseSpec(name=name, options=options, **schedule)


def parse_phase(text: str) -> PhaseSpec:
    """A :class:`PhaseSpec` from ``"NAME"`` or ``"NAME:key=value,key=value"``."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(
            f"a phase spec must be a non-empty string like 'lbfgs:iters=5000', got {text!r}"
        )
    name, params = parse_named_spec(text, "phase spec")
    where = f"phase spec {text.strip()!r}"
    if "name" in params:
        raise ConfigError(f"{where}: 'name' is given twice")
    data: dict[str, Any] = {"name": name, **params}
    return phase_from_mapping(data, where=where)
