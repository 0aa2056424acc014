"""``AutoBalance(statistics=False)``: the same steps without the per-loss statistics, and the
runner computing them only on the steps it logs."""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import pytest
import torch

from autobalance import AutoBalance
from autobalance.experiments import RunConfig, runner, train
from autobalance.methods.registry import request_statistics
from autobalance.step_info import StepInfo


def _losses(model: torch.nn.Linear) -> dict[str, torch.Tensor]:
    x = torch.linspace(-1, 1, 16, dtype=torch.float64).reshape(8, 2)
    out = model(x).squeeze(-1)
    return {"residual": (out - x[:, 0]).pow(2).mean(), "boundary": 50 * (out[:3] - 1).pow(2).mean()}


def _trajectory(combine: str, statistics: bool, steps: int) -> tuple[list[StepInfo], torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1).double()
    opt = AutoBalance(model.parameters(), lr=1e-2, combine=combine, statistics=statistics)
    infos = [opt.step(_losses(model)) for _ in range(steps)]
    return infos, torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("combine", ["sum", "consensus-mean", "upgrad"])
def test_without_statistics_the_parameters_move_bit_identically(combine: str) -> None:
    with_stats, params = _trajectory(combine, True, 12)
    without, params_without = _trajectory(combine, False, 12)
    assert torch.equal(params, params_without)
    for on, off in zip(with_stats, without, strict=True):
        assert on.values == off.values and on.backward_passes == off.backward_passes == 2
        assert all(math.isfinite(s.grad_norm * s.cosine) for s in on.losses.values())
        assert all(math.isnan(s.grad_norm + s.update_norm) for s in off.losses.values())
        assert math.isnan(off.update_norm) and off.update_cosines == ()


def test_statistics_switch_per_step_and_only_on_balancers_that_have_them() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1).double()
    opt = AutoBalance(model.parameters(), lr=1e-2, statistics=False)
    assert math.isnan(opt.step(_losses(model)).losses["residual"].grad_norm)
    request_statistics(opt, True)
    info = opt.step(_losses(model))
    assert info.losses["residual"].grad_norm > 0 and len(info.update_cosines) == 2
    adam = torch.optim.Adam(model.parameters())
    request_statistics(adam, False)  # type: ignore[arg-type]  # no switch: left alone
    assert not hasattr(adam, "statistics")


def test_the_runner_computes_statistics_on_the_logged_steps_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = RunConfig(
        problem="helmholtz",
        problem_params={"a2": 1, "n_residual": 64, "n_boundary": 32, "n_eval": 21},
        net_params={"width": 10, "depth": 2},
        method="autobalance",
        steps=7,
        log_every=3,
        eval_every=7,
        checkpoint_every=0,
        device="cpu",
    )
    seen: list[StepInfo] = []
    asked: list[bool] = []

    def spy(balancer: object, wanted: bool) -> None:
        asked.append(wanted)
        request_statistics(balancer, wanted)  # type: ignore[arg-type]

    monkeypatch.setattr(runner, "request_statistics", spy)
    train(config, tmp_path / "quiet", progress=False)
    assert asked == [True, False, True, False, False, True, True, True]  # 7 steps, then reset
    with (tmp_path / "quiet" / "history.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [1, 3, 6, 7]  # the first, every 3rd, the last
    assert all(float(r["residual_grad_norm"]) > 0 for r in rows)
    assert all(float(r["boundary_cosine"]) == float(r["boundary_cosine"]) for r in rows)
    # a callback sees every step, so every step computes them
    train(dataclasses.replace(config), tmp_path / "watched", progress=False, callback=seen.append)
    assert len(seen) == 7 and all(i.losses["boundary"].grad_norm > 0 for i in seen)
    with (tmp_path / "watched" / "history.csv").open() as handle:
        assert list(csv.DictReader(handle)) == rows  # same run, same numbers
