"""The L-BFGS phase is torch's L-BFGS step for step, with honest evaluation counts."""

from __future__ import annotations

import pytest
import torch

from autobalance.errors import ConfigError
from autobalance.phases import Objective, create_phase, parse_phase, run_phase


def _rosenbrock(x: torch.Tensor) -> torch.Tensor:
    return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()


def test_iterates_are_torchs_lbfgs_bit_for_bit() -> None:
    start = torch.tensor([-1.2, 1.0, -0.5, 0.8], dtype=torch.float64)
    x = start.clone().requires_grad_()
    phase = create_phase("lbfgs:history=7", [x])
    objective = Objective(losses=lambda b: {"f": _rosenbrock(x)})

    z = start.clone().requires_grad_()
    reference = torch.optim.LBFGS(
        [z], lr=1.0, max_iter=1, max_eval=26, history_size=7, tolerance_grad=1e-14,
        tolerance_change=1e-16, line_search_fn="strong_wolfe",
    )  # fmt: skip
    calls = 0

    def closure() -> torch.Tensor:
        nonlocal calls
        calls += 1
        reference.zero_grad()
        loss = _rosenbrock(z)
        loss.backward()
        return loss

    for _ in range(25):
        record = phase.step(objective)
        reference.step(closure)
        assert torch.equal(x.detach(), z.detach())
        assert record.loss == float(_rosenbrock(z.detach()))
    # torch re-evaluates the accepted point at every step; the phase remembers it
    assert phase.evaluations.functions < calls
    assert phase.evaluations.functions >= 25


def test_converges_on_rosenbrock_and_stops_by_itself() -> None:
    x = torch.tensor([-1.2, 1.0], dtype=torch.float64, requires_grad=True)
    spec = parse_phase("lbfgs:iters=1000")
    phase = create_phase(spec, [x])
    result = run_phase(phase, Objective(losses=lambda b: {"f": _rosenbrock(x)}), spec)
    assert result.reason.startswith("L-BFGS made no progress")
    assert phase.iteration < 200
    torch.testing.assert_close(x.detach(), torch.ones(2, dtype=torch.float64), atol=1e-7, rtol=0)


def test_bad_options_are_refused() -> None:
    with pytest.raises(ConfigError, match="history must be >= 1"):
        parse_phase("lbfgs:history=0")
    with pytest.raises(ConfigError, match="lr must be > 0"):
        parse_phase("lbfgs:lr=0")
