"""Golden trajectories: short runs on a toy model compared with stored losses and weights.

Regenerate (only after an intended change, and say why in the commit) with
``AUTOBALANCE_REGENERATE_GOLDEN=1 pytest tests/test_autobalance_golden.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from autobalance import AutoBalance

GOLDEN = Path(__file__).parent / "golden" / "autobalance_toy.json"
CASES = {
    "adamw-sum": {"base": "adamw", "lr": 1e-2, "weight_decay": 1e-2},
    "adam-mean-amsgrad": {"base": "adam", "lr": 1e-2, "combine": "mean", "amsgrad": True},
    "adam-grouped": {"base": "adam", "lr": 1e-2, "groups": {"rest": ["boundary", "data"]}},
    "rmsprop-sum": {"base": "rmsprop", "lr": 1e-3, "momentum": 0.9},
}


def _run(options: dict) -> dict[str, list[float]]:
    torch.manual_seed(123)
    net = torch.nn.Sequential(
        torch.nn.Linear(2, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1)
    ).double()
    gen = torch.Generator().manual_seed(5)
    opt = AutoBalance(net.parameters(), **options)
    history: list[float] = []
    for _ in range(12):
        x = torch.rand(16, 2, generator=gen, dtype=torch.float64)
        xb = torch.rand(6, 2, generator=gen, dtype=torch.float64).round()
        info = opt.step(
            {
                "residual": (net(x) - torch.sin(torch.pi * x[:, :1])).pow(2).mean(),
                "boundary": 50 * net(xb).pow(2).mean(),
                "data": 1e-3 * (net(x[:4]) - 0.5).pow(2).mean(),
            }
        )
        history.extend(info.values.values())
    weights = torch.cat([p.detach().reshape(-1) for p in net.parameters()]).tolist()
    return {"losses": history, "weights": weights}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_trajectory(case: str) -> None:
    got = _run(CASES[case])
    if os.environ.get("AUTOBALANCE_REGENERATE_GOLDEN"):
        stored = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
        stored[case] = got
        GOLDEN.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
    expected = json.loads(GOLDEN.read_text())[case]
    torch.testing.assert_close(
        torch.tensor(got["losses"]), torch.tensor(expected["losses"]), rtol=1e-9, atol=1e-12
    )
    torch.testing.assert_close(
        torch.tensor(got["weights"]), torch.tensor(expected["weights"]), rtol=1e-9, atol=1e-12
    )
