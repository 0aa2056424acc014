"""``benchmarks/batched_seeds.py throughput``: every size and method in the table and the JSON,
device defaults, a refused CUDA request where there is none."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from benchmark_modules import benchmark_fixture

bench = benchmark_fixture("batched_seeds")


def test_throughput_reports_every_size_against_the_smallest(
    bench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rows.json"
    argv = ["batched_seeds.py", "throughput", "--seeds", "1,2", "--points", "16"]
    argv += ["--width", "4", "--depth", "1", "--rounds", "1", "--warmup", "1", "--json", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    bench.main()
    rows = json.loads(out.read_text())
    assert [(r["method"], r["seeds"]) for r in rows] == [
        ("adam", 1),
        ("adam", 2),
        ("autobalance", 1),
        ("autobalance", 2),
    ]
    for row in rows:
        assert row["device"] == "cpu" and row["points"] == 16
        assert row["seed_steps_per_s"] == pytest.approx(row["seeds"] / row["batched_ms"] * 1e3)
    assert [r["vs_smallest_s"] for r in rows if r["seeds"] == 1] == [1.0, 1.0]
    table = capsys.readouterr().out
    assert "| per-seed throughput vs S=1 |" in table and "s in all" in table


def test_device_defaults_and_a_missing_gpu(
    bench, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.DEFAULTS["cuda"] == {"seeds": "1,2,4,8,16,32", "points": "1024,4096"}
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    monkeypatch.setattr(sys, "argv", ["batched_seeds.py", "throughput", "--device", "cuda"])
    with pytest.raises(SystemExit):
        bench.main()
    assert "torch sees no CUDA device" in capsys.readouterr().err
