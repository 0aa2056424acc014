"""PDE problems, created by name: ``create(name, **params)``; ``names()`` lists them."""

from __future__ import annotations

from autobalance.problems.base import Batch, Box, Model, Problem, input_columns
from autobalance.problems.registry import (
    create,
    describe,
    get,
    names,
    parameters,
    register_problem,
)

__all__ = [
    "Batch",
    "Box",
    "Model",
    "Problem",
    "create",
    "describe",
    "get",
    "input_columns",
    "names",
    "parameters",
    "register_problem",
]
