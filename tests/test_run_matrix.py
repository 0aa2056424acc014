"""Every problem, network and variant trains through ``autobalance run`` with AutoBalance and Adam.

Two steps each at tiny sizes: the point is that every combination the CLI offers builds, trains,
evaluates on its held-out grid and writes finite metrics, on the CPU and, where one is present,
on a CUDA device.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from autobalance import nets, problems, variants
from autobalance.cli.main import main

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
METHODS = ("autobalance", "adam")

#: Tiny point counts and reference resolutions, by parameter name (each problem takes a subset).
SMALL = {
    "n_residual": 32,
    "n_initial": 16,
    "n_boundary": 16,
    "n_eval": 11,
    "n_eval_x": 16,
    "n_eval_t": 6,
    "n_modes": 64,
    "n_steps": 50,
    "save_every": 10,
    "n_quad": 40,
    "n_data_side": 10,
}


def small_params(problem: str) -> list[str]:
    known = problems.parameters(problem)
    return [f"--param={k}={v}" for k, v in SMALL.items() if k in known]


def run_cli(out: Path, problem: str, method: str, device: str, *extra: str) -> dict:
    """``autobalance run``, two steps; ``extra`` flags come last (``--net`` replaces the MLP)."""
    size = [] if "--net" in extra else ["--width", "8", "--depth", "2"]
    argv = ["run", problem, "--method", method, "--steps", "2", "--eval-every", "2"]
    argv += ["--log-every", "1", "--device", device, "--out", str(out), "--no-progress"]
    argv += [*size, *small_params(problem), *extra]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "ok"
    assert metrics["steps"] == 2
    assert metrics["device"].startswith(device)
    for key in ("rel_l2", "mse", "linf"):
        assert math.isfinite(metrics[key]), key
    return metrics


def has_hard_constraint(name: str) -> bool:
    problem = problems.create(name)
    probe = torch.zeros(3, problem.in_dim)
    return problem.hard_constraint(probe, torch.zeros(3, problem.out_dim)) is not None


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("problem", problems.names())
def test_every_problem(problem: str, method: str, device: str, tmp_path: Path) -> None:
    metrics = run_cli(tmp_path, problem, method, device)
    assert set(metrics["final_losses"]) == set(problems.create(problem).loss_names)


NETWORK_OPTIONS = [
    ("mlp", []),
    ("modified_mlp", ["--net-param=depth=2"]),
    ("pirate", ["--net-param=blocks=1", "--net-param=fourier_features=8"]),
    (
        "mlp",
        ["--net-param=depth=2", "--net-param=fourier_features=8", "--net-param=fourier_sigma=2"],
    ),
    ("mlp", ["--net-param=depth=2", "--net-param=periodic={'x': 6.283185307179586}"]),
    ("modified_mlp", ["--net-param=depth=2", "--net-param=rwf=true"]),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("net", "options"), NETWORK_OPTIONS, ids=lambda v: str(v))
def test_every_network(
    net: str, options: list[str], method: str, device: str, tmp_path: Path
) -> None:
    assert net in nets.names()
    problem = "convection" if any("periodic" in o for o in options) else "helmholtz"
    metrics = run_cli(
        tmp_path, problem, method, device, "--net", net, "--net-param=width=8", *options
    )
    assert metrics["net"] == net


def test_the_network_list_covers_every_registered_network() -> None:
    assert {net for net, _ in NETWORK_OPTIONS} == set(nets.names())


VARIANT_SPECS = [
    ("rba", "burgers"),
    ("causal:chunks=4", "burgers"),
    ("gpinn:weight=0.1", "burgers"),
    ("self_adaptive", "burgers"),
    ("hard_constraint", "burgers"),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("variant", "problem"), VARIANT_SPECS, ids=[v for v, _ in VARIANT_SPECS])
def test_every_variant(
    variant: str, problem: str, method: str, device: str, tmp_path: Path
) -> None:
    assert variant.partition(":")[0] in variants.names()
    metrics = run_cli(tmp_path, problem, method, device, "--variant", variant)
    assert metrics["variants"] == [variant.partition(":")[0]]


def test_the_variant_list_covers_every_registered_variant() -> None:
    assert {v.partition(":")[0] for v, _ in VARIANT_SPECS} == set(variants.names())


HARD = [name for name in problems.names() if has_hard_constraint(name)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("problem", HARD)
def test_hard_constraint_on_every_problem_that_has_one(
    problem: str, device: str, tmp_path: Path
) -> None:
    dropped = problems.create(problem).hard_constrained_losses
    metrics = run_cli(tmp_path, problem, "autobalance", device, "--variant", "hard_constraint")
    assert not set(dropped) & set(metrics["final_losses"])


def test_stacked_variants_and_sampler(tmp_path: Path) -> None:
    metrics = run_cli(
        tmp_path,
        "burgers",
        "autobalance",
        "cpu",
        "--variant=causal:chunks=4,epsilon=0.5",
        "--variant=rba:loss=initial",
        "--sampler=lhs",
        "--resample-every=0",
    )
    config = json.loads((tmp_path / "config.json").read_text())
    assert [v["name"] for v in config["variants"]] == ["causal", "rba"]
    assert config["variants"][0]["epsilon"] == 0.5 and config["variants"][1]["loss"] == "initial"
    assert (config["sampler"], config["resample_every"]) == ("lhs", 0)
    assert metrics["variants"] == ["causal", "rba"]


def test_bad_variant_argument_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "burgers", "--variant", ":chunks=4", "--steps", "1"]) == 2
    assert "--variant expects NAME" in capsys.readouterr().err
    assert main(["run", "burgers", "--variant", "causal:chunks", "--steps", "1"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
