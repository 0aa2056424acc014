"""Networks by name: ``create(name, in_dim, out_dim, **params)``; ``names()`` lists them."""

from __future__ import annotations

from autobalance.nets.mlp import MLP
from autobalance.nets.registry import create, describe, names, parameters, register_net

__all__ = ["MLP", "create", "describe", "names", "parameters", "register_net"]
