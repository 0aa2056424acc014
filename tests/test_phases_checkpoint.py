"""Every phase resumes mid-run bit for bit (points redrawn on schedule), and the driver's
budgets and callbacks stop where they say."""

from __future__ import annotations

import copy
import io
import json

import pytest
import torch

from autobalance import nets, problems
from autobalance.errors import ConfigError
from autobalance.phases import (
    PHASES,
    PhaseRecord,
    create_phase,
    parse_phase,
    problem_objective,
    run_phase,
)

PROBLEM = problems.create("helmholtz", n_residual=40, n_boundary=8)


def _model(dtype: torch.dtype = torch.float64) -> torch.nn.Module:
    torch.manual_seed(0)
    return nets.create("mlp", 2, 1, width=5, depth=2).to(dtype)


def _points(i: int, dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    """The points from iteration ``i`` on: a pure function of ``i``."""
    return PROBLEM.sample(torch.Generator().manual_seed(1000 + i), "cpu", dtype)


def _json(records: list[PhaseRecord]) -> str:
    return json.dumps([r.as_dict() for r in records])


def _roundtrip(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


@pytest.mark.parametrize("name", PHASES.names())
def test_resume_mid_phase_is_bit_identical(name: str) -> None:
    spec = parse_phase(f"{name}:iters=9,redraw_every=4")

    straight = _model()
    phase = create_phase(spec, straight.parameters())
    run_phase(phase, problem_objective(PROBLEM, straight, _points(0)), spec, redraw=_points)

    first = _model()
    half = create_phase(spec, first.parameters())
    result = run_phase(
        half,
        problem_objective(PROBLEM, first, _points(0)),
        spec,
        redraw=_points,
        callback=lambda record: record.iteration == 5,  # stop after the first redraw
    )
    assert result.reason == "callback" and half.iteration == 5
    saved = _roundtrip({"model": first.state_dict(), "phase": half.state_dict()})

    second = _model()
    second.load_state_dict(saved["model"])
    resumed = create_phase(spec, second.parameters())
    resumed.load_state_dict(saved["phase"])
    run_phase(resumed, problem_objective(PROBLEM, second, _points(0)), spec, redraw=_points)

    assert resumed.iteration == phase.iteration == 9
    for a, b in zip(straight.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)
    # records compared as JSON (NaN, e.g. Gauss–Newton's grad_norm, is not == itself)
    assert _json(resumed.history) == _json(phase.history)
    assert resumed.evaluations == phase.evaluations
    assert resumed.points_iteration == phase.points_iteration == 8


def test_history_records_are_json_ready() -> None:
    model = _model()
    spec = parse_phase("lbfgs:iters=3")
    phase = create_phase(spec, model.parameters())
    run_phase(phase, problem_objective(PROBLEM, model, _points(0)), spec)
    for record in phase.history:
        data = record.as_dict()
        assert set(data["losses"]) == {"residual", "boundary"}
        assert PhaseRecord.from_dict(copy.deepcopy(data)) == record
    counts = [r.evaluations.functions for r in phase.history]
    assert counts == sorted(counts) and counts[0] >= 1


def test_budgets_stop_the_phase() -> None:
    model = _model()
    spec = parse_phase("bfgs:iters=100,max_evals=7")
    phase = create_phase(spec, model.parameters())
    result = run_phase(phase, problem_objective(PROBLEM, model, _points(0)), spec)
    assert result.reason == "max_evals"
    assert phase.evaluations.functions >= 7
    assert phase.evaluations.functions - phase.history[-2].evaluations.functions < 30
    assert len(result.records) == phase.iteration < 100


def test_float32_runs_and_stays_float32() -> None:
    model = _model(torch.float32)
    spec = parse_phase("ssbroyden:iters=5")
    phase = create_phase(spec, model.parameters())
    run_phase(phase, problem_objective(PROBLEM, model, _points(0, torch.float32)), spec)
    assert phase.H.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_mismatched_resume_and_missing_redraw_are_clear_errors() -> None:
    model = _model()
    state = create_phase("lbfgs", model.parameters()).state_dict()
    with pytest.raises(ConfigError, match="phase 'lbfgs' into phase 'bfgs'"):
        create_phase("bfgs", model.parameters()).load_state_dict(state)
    other = nets.create("mlp", 2, 1, width=6, depth=2).double()
    with pytest.raises(ConfigError, match="parameters"):
        create_phase("lbfgs", other.parameters()).load_state_dict(state)
    spec = parse_phase("lbfgs:redraw_every=2")
    with pytest.raises(ConfigError, match="needs a redraw function"):
        run_phase(
            create_phase(spec, model.parameters()),
            problem_objective(PROBLEM, model, _points(0)),
            spec,
        )
