"""Test fixtures that load a script of ``benchmarks/`` (not a package) as a module."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def benchmark_fixture(name: str) -> Callable[[], Iterator[ModuleType]]:
    """A module-scoped fixture yielding ``benchmarks/<name>.py``, imported as module ``name``."""

    @pytest.fixture(scope="module")
    def load() -> Iterator[ModuleType]:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        yield module
        del sys.modules[name]

    return load
