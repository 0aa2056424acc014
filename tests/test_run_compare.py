"""``autobalance.experiments.run_compare.run_differences``: each part of a run is compared."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from autobalance.experiments.run_compare import RESULT_KEYS, run_differences


def _run(path: Path, *, rel_l2: float = 0.5, weight: float = 1.0, wall: float = 1.0) -> Path:
    path.mkdir(parents=True)
    metrics = dict.fromkeys(RESULT_KEYS, 0) | {
        "rel_l2": rel_l2,
        "wall_s": wall,
        "run_id": str(wall),
    }
    (path / "metrics.json").write_text(json.dumps(metrics))
    (path / "history.csv").write_text("step,total\n1,2.0\n")
    (path / "eval.csv").write_text(f"step,rel_l2,wall_s\n1,{rel_l2},{wall}\n")
    checkpoint = {
        "step": 1,
        "model": {"w": torch.tensor([weight, math.nan])},
        "balancer": {},
        "scheduler": {},
        "rng": {"cpu": torch.tensor([1, 2], dtype=torch.uint8)},
        "history": [],
        "evals": [{"step": 1, "rel_l2": rel_l2, "wall_s": wall}],
    }
    torch.save(checkpoint, path / "checkpoint.pt")
    return path


def test_runs_that_differ_only_in_timings_are_the_same(tmp_path: Path) -> None:
    # wall times and run ids differ, and NaN weights match NaN
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b", wall=7.0)
    assert run_differences(a, b) == []


def test_every_differing_part_is_named(tmp_path: Path) -> None:
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b", rel_l2=0.25)
    assert run_differences(a, b) == ["metrics.json rel_l2", "eval.csv", "checkpoint.pt evals"]
    c = _run(tmp_path / "c", weight=2.0)
    assert run_differences(a, c) == ["checkpoint.pt model"]
