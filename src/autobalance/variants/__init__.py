"""PINN variants that compose with any network, optimizer or balancer.

A variant transforms the network (hard constraints) or the named losses (residual-based
attention, causal weighting, gPINN, self-adaptive weights); a list of them is applied in order
(:class:`VariantStack`), and every balancer downstream sees ordinary named losses.  Created by
name: ``variants.create("rba", eta=0.01)``; ``names()`` lists them.  See
:mod:`autobalance.variants.base` for the protocol.
"""

from __future__ import annotations

from autobalance.variants.base import FixedPoints, Variant
from autobalance.variants.causal import CausalWeighting, causal_weights
from autobalance.variants.gpinn import GradientEnhanced
from autobalance.variants.hard import HardConstrainedModel, HardConstraint
from autobalance.variants.rba import ResidualAttention
from autobalance.variants.registry import (
    create,
    describe,
    names,
    parameters,
    register_variant,
    resolve_specs,
)
from autobalance.variants.self_adaptive import SelfAdaptive
from autobalance.variants.stack import VariantStack, from_specs

__all__ = [
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
    "register_variant",
    "resolve_specs",
]
