"""Which runs can be trained as one batched model of seeds, and the error for those that cannot.

Every network is supported (:class:`~autobalance.seeds.stacked.StackedModel`: batched matrix
products for the plain MLP, ``vmap`` otherwise) and every method whose step needs only the
losses and their first derivatives (:mod:`autobalance.seeds.carriers`).  Refused, each with a
:class:`SeedBatchingError` that names it and says to run the seeds separately:

* the methods of :data:`UNSUPPORTED_METHODS` (``ntk`` differentiates every pointwise term);
* any variant (variants keep per-run state over the pointwise terms and the points);
* problems of :data:`UNSUPPORTED_PROBLEMS` and problems with trainable unknowns of their own;
* configurations that differ in anything but the seed and the output directory.
"""

from __future__ import annotations

from collections.abc import Sequence

from autobalance import problems
from autobalance.errors import ConfigError
from autobalance.experiments.config import RunConfig

__all__ = [
    "UNSUPPORTED_BASES",
    "UNSUPPORTED_METHODS",
    "UNSUPPORTED_PROBLEMS",
    "SeedBatchingError",
    "batching_problem",
    "check_batchable",
]

#: Methods a batched step cannot take exactly, with the reason.
UNSUPPORTED_METHODS = {
    "ntk": "it differentiates every pointwise residual term, which a batched step does not hand "
    "to each seed",
    **{
        name: "its eigenbasis preconditioner turns float rounding of the batched gradients into "
        "different trajectories (measured 7e-4 relative after a few steps)"
        for name in ("soap", "shampoo")
    },
}
#: Base optimizers of multi-state methods that a batched step cannot take exactly.
UNSUPPORTED_BASES = ("soap", "shampoo")
#: Problems a batched step cannot evaluate, with the reason.
UNSUPPORTED_PROBLEMS = {
    "poisson-inverse": "its observations are one fixed point set, not points drawn per seed",
}

_SAME_KEYS_EXCEPT = ("seed",)


class SeedBatchingError(ConfigError):
    """The seeds of these runs cannot be trained as one batched model; run them separately."""


def batching_problem(configs: Sequence[RunConfig]) -> str | None:
    """Why ``configs`` cannot be trained as one batched model of seeds, or ``None`` if they can."""
    if len(configs) < 1:
        return "there are no runs"
    first = configs[0]
    base = {k: v for k, v in first.to_dict().items() if k not in _SAME_KEYS_EXCEPT}
    seeds = [c.seed for c in configs]
    if len(set(seeds)) != len(seeds):
        return f"the seeds repeat ({seeds})"
    for config in configs[1:]:
        other = {k: v for k, v in config.to_dict().items() if k not in _SAME_KEYS_EXCEPT}
        if other != base:
            differ = sorted(k for k in {*base, *other} if base.get(k) != other.get(k))
            return f"the runs differ in more than the seed ({', '.join(differ)})"
    if first.method in UNSUPPORTED_METHODS:
        return f"method {first.method!r} is not supported: {UNSUPPORTED_METHODS[first.method]}"
    base_name = first.method_params.get("base")
    if isinstance(base_name, str) and base_name in UNSUPPORTED_BASES:
        return f"base {base_name!r} is not supported: {UNSUPPORTED_METHODS[base_name]}"
    if first.phases:
        return "training phases are not supported: they run on one model at a time"
    if first.variants:
        names = ", ".join(repr(v["name"] if isinstance(v, dict) else v) for v in first.variants)
        return f"variants ({names}) are not supported: they keep per-run state over the points"
    if first.problem in UNSUPPORTED_PROBLEMS:
        return f"problem {first.problem!r} is not supported: {UNSUPPORTED_PROBLEMS[first.problem]}"
    problem = problems.create(first.problem, **first.problem_params)
    if problem.unknowns():
        return f"problem {first.problem!r} is not supported: it trains unknowns of its own"
    return None


def check_batchable(configs: Sequence[RunConfig]) -> None:
    """Raise :class:`SeedBatchingError` unless ``configs`` can be batched
    (:func:`batching_problem`).

    The message names the method, variant, problem or key at fault and ends with what to do.
    """
    reason = batching_problem(configs)
    if reason is not None:
        raise SeedBatchingError(
            f"cannot train these seeds as one batched model: {reason}; run the seeds "
            "separately (--batch-seeds off)"
        )
