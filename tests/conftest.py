"""Shared test settings: deterministic torch, float64 where exactness is checked."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import settings

from autobalance.threads import apply_threads

# Property tests draw the same examples on every run (CI must not fail on a new random draw);
# HYPOTHESIS_PROFILE=explore draws fresh ones, to look for counterexamples by hand.
settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("explore", max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

os.environ.setdefault("AUTOBALANCE_NO_REEXEC", "1")
# One intra-op thread for the session (and OMP/MKL_NUM_THREADS=1 for the CLI subprocesses):
# two spin-waiting threads collapse when another process is busy on a 2-core machine.
apply_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _private_reference_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Computed references go to one cache of this test session, never the user's."""
    monkeypatch.setenv("AUTOBALANCE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "references"))
