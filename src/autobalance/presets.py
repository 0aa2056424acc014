"""Presets: named, documented run recipes per problem (``autobalance run PROBLEM --preset NAME``).

A preset is a *partial* :class:`~autobalance.experiments.config.RunConfig` for one problem
(network and its parameters, variants, first-order method and its steps and learning rate,
training phases, point counts, dtype), with the reason for each choice.  Flags and configuration
keys given explicitly override it (``--preset sota --method autobalance --seed 2``).

:data:`PRESETS` is the catalogue of preset names (:class:`~autobalance.catalog.Catalog`); each
entry is a function ``problem -> partial configuration``.  ``sota`` is the most accurate recipe
known here for each problem within 15 minutes on a 2-core CPU (issue 14): float64, a compact
tanh MLP, Adam on a fixed point set, then a self-scaled quasi-Newton phase (SSBroyden: Urbán,
Stefanou & Pons, "Unveiling the optimization process of physics informed neural networks: how
accurate and competitive can PINNs be?", J. Comput. Phys. 2025; Kiyani et al.,
arXiv:2501.16371), with no loss weighting at all.

Measured (``docs/results/phases-helmholtz``, seed 0, loaded 2-core CPU): Helmholtz with a 3×30
tanh MLP, 2500 + 400 fixed points, 2000 Adam steps then SSBroyden for 600 s: rel. L2 1.7e-4
(still falling).  The other problems' ``sota`` entries apply the same recipe with the problem's
structure (periodic embeddings where the solution is periodic in ``x``); they are first guesses
until measured, and say so in their ``why``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

from autobalance.catalog import Catalog
from autobalance.errors import ConfigError, unknown_name_message

__all__ = ["PRESETS", "SOTA", "Preset", "preset_config", "preset_names"]


@dataclass(frozen=True)
class Preset:
    """A partial run configuration for one problem (``config``), and ``why`` it is chosen
    (``measured``: whether its accuracy was measured here)."""

    config: dict[str, Any]
    why: str
    measured: bool = False
    target: float = math.nan  # issue 14's target rel. L2 (``a``'s error for poisson-inverse)


#: The finisher of every ``sota`` recipe: SSBroyden (dense: the networks stay under
#: ``max_params``), stopped by its iteration count or by the time left of 15 minutes.
def _ssbroyden(iters: int, seconds: float) -> str:
    return f"ssbroyden:iters={iters},max_seconds={seconds:g}"


def _recipe(
    steps: int,
    points: dict[str, int],
    phase: str,
    *,
    width: int = 30,
    depth: int = 3,
    net_params: dict[str, Any] | None = None,
    variants: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Adam for ``steps`` steps at lr 1e-3 (constant) on one fixed point set, float64, then
    ``phase``."""
    return {
        "net": "mlp",
        "net_params": {"width": width, "depth": depth, **(net_params or {})},
        "method": "adam",
        "lr": 1e-3,
        "lr_decay": 1.0,
        "steps": steps,
        "dtype": "float64",
        "resample_every": 0,
        "problem_params": dict(points),
        "phases": [phase],
        "variants": list(variants or []),
        "eval_every": 500,
        "log_every": 50,
    }


_GUESS = (
    "First guess, not yet measured: the Helmholtz recipe (float64 3×30 tanh MLP, Adam on fixed "
    "points, then SSBroyden for the rest of 15 minutes)"
)

#: The ``sota`` preset of each problem.
SOTA: dict[str, Preset] = {
    "helmholtz": Preset(
        _recipe(2000, {"n_residual": 2500, "n_boundary": 400}, _ssbroyden(6000, 660)),
        "Measured (docs/results/phases-helmholtz, seed 0): 2000 Adam steps (~140 s) bring the "
        "3×30 tanh network near the solution's basin; SSBroyden then falls steadily to 1.7e-4 "
        "after 600 s (3638 iterations), 16× below L-BFGS at equal time.  Float64: the "
        "quasi-Newton updates need it below 1e-3.",
        measured=True,
        target=1e-4,
    ),
    "kovasznay": Preset(
        _recipe(2000, {"n_residual": 2000, "n_boundary": 400}, _ssbroyden(6000, 660)),
        f"{_GUESS}; three outputs (u, v, p) share the network (2043 parameters).",
        target=1e-4,
    ),
    "reaction-diffusion": Preset(
        _recipe(
            2000,
            {"n_residual": 2000, "n_initial": 200, "n_boundary": 200},
            _ssbroyden(6000, 660),
            net_params={"periodic": {"x": 2 * math.pi}},
        ),
        f"{_GUESS}; exactly 2π-periodic in x (periodic embedding).",
        target=1e-3,
    ),
    "klein-gordon": Preset(
        _recipe(
            2000, {"n_residual": 2000, "n_initial": 200, "n_boundary": 200}, _ssbroyden(6000, 660)
        ),
        f"{_GUESS}.",
        target=1e-3,
    ),
    "burgers": Preset(
        _recipe(
            2000, {"n_residual": 2500, "n_initial": 200, "n_boundary": 200}, _ssbroyden(6000, 660)
        ),
        f"{_GUESS}; the compact float64 networks of Urbán et al. reach ~1e-4 on Burgers with "
        "SSBroyden.",
        target=1e-3,
    ),
    "wave": Preset(
        _recipe(
            3000,
            {"n_residual": 2500, "n_initial": 300, "n_boundary": 200},
            _ssbroyden(6000, 600),
            width=40,
        ),
        f"{_GUESS}; a 3×40 network (3441 parameters) for the wave's two modes.",
        target=1e-2,
    ),
    "allen-cahn": Preset(
        _recipe(
            2000,
            {"n_residual": 2500, "n_initial": 200, "n_boundary": 200},
            _ssbroyden(6000, 660),
            net_params={"periodic": {"x": 2.0}},
        ),
        f"{_GUESS}; exactly 2-periodic in x (periodic embedding), as Urbán et al. do.",
        target=1e-2,
    ),
    "convection": Preset(
        _recipe(
            2000,
            {"n_residual": 2500, "n_initial": 256, "n_boundary": 200},
            _ssbroyden(6000, 660),
            net_params={"periodic": {"x": 2 * math.pi}},
        ),
        f"{_GUESS}; exactly 2π-periodic in x (periodic embedding): β = 30 convection fails "
        "without it.",
        target=1e-2,
    ),
    "poisson-inverse": Preset(
        _recipe(2000, {"n_residual": 2000, "n_boundary": 400}, _ssbroyden(6000, 660)),
        f"{_GUESS}; the 50×50 noisy observation grid stays as it is.  Target on a's error.",
        target=1e-2,
    ),
}


def _sota(problem: str) -> dict[str, Any]:
    """Most accurate recipe known per problem (<= 15 min, 2 CPU cores): float64, 3x30 tanh, Adam.

    Adam on fixed points, then SSBroyden for the rest of the time (module docstring)."""
    try:
        return copy.deepcopy(SOTA[problem].config)
    except KeyError:
        raise ConfigError(
            f"preset 'sota' has no recipe for problem {problem!r}; it has: "
            f"{', '.join(sorted(SOTA))}"
        ) from None


#: Preset names: ``PRESETS.get(name)(problem) -> partial RunConfig``.
PRESETS: Catalog[dict[str, Any]] = Catalog("preset")
PRESETS.add("sota", _sota, family="accuracy")


def preset_names() -> list[str]:
    """The preset names."""
    return PRESETS.names()


def preset_config(name: str, problem: str) -> dict[str, Any]:
    """Preset ``name``'s partial configuration for ``problem`` (with ``"problem"`` set).

    Raises:
        UnknownNameError: no preset ``name`` (the message lists the closest).
        ConfigError: the preset has no recipe for ``problem``.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(unknown_name_message("preset", str(name), PRESETS.names()))
    factory = PRESETS.get(name)
    return {"problem": problem, **factory(problem)}
