"""Balancing methods, created by name: ``create(name, params, **kw)``.

Families: ``single-optimizer`` (one optimizer on the summed loss), ``weighting`` (weights on the
losses), ``aggregator`` (the per-loss gradient matrix → one direction; each also usable on its
own via :func:`aggregator`), ``multi-state`` (per-loss optimizer states, e.g. AutoBalance).
"""

from autobalance.methods.aggregation import (
    Aggregator,
    AggregatorMethod,
    aggregator,
    aggregator_names,
    register_aggregator,
)
from autobalance.methods.base import (
    CombineResult,
    GradientMatrix,
    PreCombineMethod,
    WeightingMethod,
    WeightingStep,
)
from autobalance.methods.registry import (
    Balancer,
    MethodSpec,
    create,
    describe,
    names,
    register,
    spec,
)

__all__ = [
    "Aggregator",
    "AggregatorMethod",
    "Balancer",
    "CombineResult",
    "GradientMatrix",
    "MethodSpec",
    "PreCombineMethod",
    "WeightingMethod",
    "WeightingStep",
    "aggregator",
    "aggregator_names",
    "create",
    "describe",
    "names",
    "register",
    "register_aggregator",
    "spec",
]
