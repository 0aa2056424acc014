"""Samplers by name, Box faces, RunConfig.sampler / resample_every, reproducible resume."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from autobalance import problems
from autobalance.errors import ConfigError, UnknownNameError
from autobalance.experiments import RunConfig, train
from autobalance.problems import Box
from autobalance.problems.helmholtz import Helmholtz
from autobalance.problems.sampling import get_sampler, sampler_names

F64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", ["uniform", "lhs", "grid", "sobol"])
def test_samplers_are_in_the_cube_reproducible_and_fresh(name: str) -> None:
    sampler = get_sampler(name)
    gen = _gen(3)
    first = sampler.unit(100, 3, gen, "cpu", F64)
    second = sampler.unit(100, 3, gen, "cpu", F64)
    assert first.shape == (100, 3) and first.dtype == F64
    assert first.min() >= 0 and first.max() < 1
    assert torch.equal(first, sampler.unit(100, 3, _gen(3), "cpu", F64))
    assert not torch.equal(first, second)
    assert torch.unique(first, dim=0).shape[0] == 100


def test_uniform_is_the_historical_draw() -> None:
    box = Box((-1.0, -1.0), (1.0, 1.0))
    pts = box.sample_interior(50, _gen(1), "cpu", F64)
    torch.testing.assert_close(pts, -1 + 2 * torch.rand(50, 2, generator=_gen(1), dtype=F64))
    assert torch.equal(box.sample_interior(50, _gen(1), "cpu", F64, sampler="uniform"), pts)


def test_lhs_has_one_point_per_stratum() -> None:
    pts = get_sampler("lhs").unit(64, 2, _gen(), "cpu", F64)
    for j in range(2):
        strata = torch.floor(pts[:, j] * 64).long().sort().values
        assert torch.equal(strata, torch.arange(64))


def test_grid_is_a_shifted_lattice() -> None:
    pts = get_sampler("grid").unit(64, 2, _gen(), "cpu", F64)  # 8 × 8
    for j in range(2):
        values = torch.unique(pts[:, j])
        assert values.numel() == 8
        torch.testing.assert_close(values.diff(), torch.full((7,), 1 / 8, dtype=F64))
    assert get_sampler("grid").unit(50, 2, _gen(), "cpu", F64).shape == (50, 2)  # subset of 64


@pytest.mark.parametrize("name", ["lhs", "grid", "sobol"])
def test_faces_use_the_free_coordinates(name: str) -> None:
    box = Box((0.0, 0.0), (2.0, 1.0))
    face = box.sample_face(1, 0, 16, _gen(), "cpu", F64, sampler=name)
    assert bool((face[:, 1] == 0).all())
    assert face[:, 0].min() >= 0 and face[:, 0].max() <= 2
    assert torch.unique(face[:, 0]).numel() == 16  # no duplicates from a d-dimensional draw
    boundary = box.sample_boundary(8, _gen(), "cpu", F64, sampler=name)
    assert boundary.shape == (32, 2)


def test_problem_sampler_and_names() -> None:
    assert sampler_names() == ["grid", "lhs", "sobol", "uniform"]
    problem = problems.create("helmholtz", n_residual=64, n_boundary=16)
    default = problem.sample(_gen(), "cpu", F64)
    problem.use_sampler("lhs")
    lhs = problem.sample(_gen(), "cpu", F64)["residual"]
    strata = torch.floor((lhs[:, 0] + 1) / 2 * 64).long().sort().values
    assert torch.equal(strata, torch.arange(64))
    assert not torch.equal(lhs, default["residual"])
    assert problems.create("helmholtz").sampler.name == "uniform"  # per instance
    with pytest.raises(UnknownNameError, match="unknown sampler 'lhz'. Did you mean 'lhs'"):
        problem.use_sampler("lhz")


def test_run_config_validates_sampling() -> None:
    with pytest.raises(ConfigError, match="unknown sampler 'sobel'"):
        RunConfig(sampler="sobel").validate()
    with pytest.raises(ConfigError, match="resample_every must be >= 0"):
        RunConfig(resample_every=-1).validate()
    cfg = RunConfig(sampler="grid", resample_every=0)
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


class _Recorder(Helmholtz):
    """Helmholtz that records the residual points of every step."""

    seen: ClassVar[list[torch.Tensor]] = []

    def losses(self, model: Any, batch: Any) -> Any:
        _Recorder.seen.append(batch["residual"].clone())
        return super().losses(model, batch)


@pytest.fixture
def recorder() -> Iterator[str]:
    problems.CATALOG.add("recorder", _Recorder)
    _Recorder.seen = []
    yield "recorder"
    problems.CATALOG.remove("recorder")


def _config(problem: str, **overrides: Any) -> RunConfig:
    fields: dict[str, Any] = {
        "problem": problem,
        "problem_params": {"a2": 1, "n_residual": 32, "n_boundary": 16, "n_eval": 11},
        "net_params": {"width": 8, "depth": 1},
        "method": "adam",
        "lr": 1e-2,
        "steps": 7,
        "eval_every": 7,
        "checkpoint_every": 0,
        "device": "cpu",
    }
    fields.update(overrides)
    return RunConfig(**fields)


@pytest.mark.parametrize(("every", "distinct"), [(1, 7), (3, 3), (0, 1)])
def test_resample_every(recorder: str, tmp_path: Path, every: int, distinct: int) -> None:
    train(_config(recorder, resample_every=every, sampler="sobol"), tmp_path, progress=False)
    seen = _Recorder.seen
    assert len(seen) == 7
    changes = [i for i in range(1, 7) if not torch.equal(seen[i], seen[i - 1])]
    assert len(changes) == distinct - 1
    if every > 1:
        assert changes == list(range(every, 7, every))


@pytest.mark.parametrize(("sampler", "every"), [("lhs", 3), ("grid", 0), ("uniform", 1)])
def test_resume_is_bit_identical(tmp_path: Path, sampler: str, every: int) -> None:
    cfg = {"sampler": sampler, "resample_every": every, "eval_every": 4}
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(_config("helmholtz", steps=8, **cfg), straight, progress=False)
    train(_config("helmholtz", steps=4, **cfg), split, progress=False)  # mid-cycle for every=3
    train(_config("helmholtz", steps=8, **cfg), split, progress=False, resume=True)
    a = torch.load(straight / "checkpoint.pt", weights_only=True)
    b = torch.load(split / "checkpoint.pt", weights_only=True)
    for name, tensor in a["model"].items():
        assert torch.equal(b["model"][name], tensor), name
    assert (b["batch"] is None) == (every == 1)
