"""Golden values: for a seed, every problem draws the same points and computes the same losses,
and every network starts from the same weights, bit for bit.

The stored values were computed before problems, networks and variants moved to one catalog
(commit c7a0bde); regenerate only after an intended change, and say why in the commit, with
``AUTOBALANCE_REGENERATE_GOLDEN=1 pytest tests/test_problems_golden.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from autobalance import nets, problems

GOLDEN = Path(__file__).parent / "golden" / "problems.json"
SAMPLERS = ("uniform", "lhs")
F64 = torch.float64


def _hex(t: torch.Tensor) -> str:
    return float(t.detach().sum()).hex()


def _problem(name: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for sampler in SAMPLERS:
        problem = problems.create(name)
        problem.use_sampler(sampler)
        batch = problem.sample(torch.Generator().manual_seed(3), "cpu", F64)
        out[f"points/{sampler}"] = {key: _hex(pts) for key, pts in batch.items()}
    torch.manual_seed(0)
    net = nets.create("mlp", problem.in_dim, problem.out_dim, width=8, depth=2).double()
    batch = problem.sample(torch.Generator().manual_seed(5), "cpu", F64)
    losses = problem.losses(net, batch)
    out["losses"] = {key: value.item().hex() for key, value in losses.items()}
    out["pointwise"] = {key: _hex(r.pow(2)) for key, r in losses.pointwise.items()}
    return out


def _network(name: str) -> dict[str, str]:
    torch.manual_seed(1)
    model = nets.create(name, 2, 3, width=5, fourier_features=3, rwf=True).double()
    x = torch.linspace(0, 1, 14, dtype=F64).reshape(7, 2)
    return {"output": _hex(model(x)), **{k: _hex(v) for k, v in model.state_dict().items()}}


def _compute() -> dict[str, Any]:
    return {
        "problems": {name: _problem(name) for name in problems.names()},
        "networks": {name: _network(name) for name in nets.names()},
    }


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    if os.environ.get("AUTOBALANCE_REGENERATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(_compute(), indent=1, sort_keys=True) + "\n")
    return json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("name", problems.names())
def test_points_and_losses_are_bit_identical(golden: dict[str, Any], name: str) -> None:
    assert _problem(name) == golden["problems"][name]


@pytest.mark.parametrize("name", nets.names())
def test_initial_weights_are_bit_identical(golden: dict[str, Any], name: str) -> None:
    assert _network(name) == golden["networks"][name]
