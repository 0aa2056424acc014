"""Balancing methods, created by name: ``create(name, params, **kw)``."""

from autobalance.methods.registry import (
    Balancer,
    MethodSpec,
    create,
    describe,
    names,
    register,
    spec,
)

__all__ = ["Balancer", "MethodSpec", "create", "describe", "names", "register", "spec"]
