"""PINN variants that compose with any network, optimizer or balancer.

A variant transforms the network (hard constraints) or the named losses (residual-based
attention, causal weighting, gPINN, self-adaptive weights); a list of them is applied in order
(:class:`VariantStack`), and every balancer downstream sees ordinary named losses.  Created by
name: ``variants.create("rba", eta=0.01)``; ``names()`` lists them (:data:`CATALOG`, filled below
by explicit imports).  A run configuration lists variants as
``[{"name": "rba", "eta": 0.01}, {"name": "gpinn", "weight": 0.1}]`` (:func:`from_specs`).  See
:mod:`autobalance.variants.base` for the protocol.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from autobalance.catalog import Catalog
from autobalance.errors import ConfigError
from autobalance.variants.base import FixedPoints, Variant
from autobalance.variants.causal import CausalWeighting, causal_weights
from autobalance.variants.gpinn import GradientEnhanced
from autobalance.variants.hard import HardConstrainedModel, HardConstraint
from autobalance.variants.rba import ResidualAttention
from autobalance.variants.self_adaptive import SelfAdaptive
from autobalance.variants.stack import VariantStack

__all__ = [
    "CATALOG",
    "CausalWeighting",
    "FixedPoints",
    "GradientEnhanced",
    "HardConstrainedModel",
    "HardConstraint",
    "ResidualAttention",
    "SelfAdaptive",
    "Variant",
    "VariantStack",
    "causal_weights",
    "create",
    "describe",
    "from_specs",
    "names",
    "parameters",
    "resolve_specs",
]

#: Every variant by name; the functions below are its methods.
CATALOG: Catalog[Variant] = Catalog("variant")
for _kind in (CausalWeighting, GradientEnhanced, HardConstraint, ResidualAttention, SelfAdaptive):
    CATALOG.add(_kind.name, _kind)

create = CATALOG.create
describe = CATALOG.describe
names = CATALOG.names
parameters = CATALOG.parameters


def resolve_specs(specs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Check ``[{"name": ..., **params}, ...]`` and fill in every default (for ``config.json``)."""
    out = []
    for i, spec in enumerate(specs):
        if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
            raise ConfigError(
                f"variants[{i}] must be a mapping with a 'name' (one of {', '.join(names())}), "
                f"got {spec!r}"
            )
        params = {k: v for k, v in spec.items() if k != "name"}
        out.append({"name": spec["name"], **CATALOG.check(spec["name"], params)})
    return out


def from_specs(specs: Sequence[Mapping[str, Any]]) -> VariantStack:
    """The stack of ``[{"name": "rba", ...}, ...]`` (a run configuration's ``variants``)."""
    return VariantStack([create(**spec) for spec in resolve_specs(specs)])
