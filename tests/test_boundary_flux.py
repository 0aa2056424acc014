"""``benchmarks/boundary_flux.py``: boundary value and flux gaps of a network, in closed form."""

from __future__ import annotations

import math

import pytest
import torch

from autobalance import problems
from benchmark_modules import benchmark_fixture

boundary_flux = benchmark_fixture("boundary_flux")


class Parabola(torch.nn.Module):
    """``u = a (x − π)² + t``: equal values at ``x = 0, 2π``, slopes ``∓2aπ``."""

    def __init__(self, a: float) -> None:
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(a, dtype=torch.float64))

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        x, t = points[:, :1], points[:, 1:]
        return self.a * (x - math.pi) ** 2 + t


def test_gaps_of_a_network_whose_flux_is_not_periodic(boundary_flux) -> None:
    problem = problems.create(
        "reaction-diffusion", nu=3.0, n_modes=16, n_steps=10, n_eval_x=9, n_eval_t=3
    )
    gaps = boundary_flux.boundary_gaps(problem, Parabola(0.5).double(), n_t=11)
    assert gaps["value_gap"] == pytest.approx(0.0, abs=1e-12)
    # u_x(0) − u_x(2π) = −2aπ − 2aπ = −2π; mass let in: −ν · (−2π) · 1
    assert gaps["flux_gap"] == pytest.approx(2 * math.pi, rel=1e-12)
    assert gaps["boundary_mass"] == pytest.approx(3.0 * 2 * math.pi, rel=1e-12)
    assert gaps["flux_scale"] > 0 and gaps["mass"] > 0
    lines = boundary_flux.table({"toy": {"boundary_derivative": False, "rel_l2": 0.5, **gaps}})
    assert "| toy | no | 0.5 | – | – | – | 0 | 6.28 |" in lines
