"""The README's example runs as written and solves its Poisson problem."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Any

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def _example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## AutoBalance in a plain PyTorch loop", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert match is not None, "the README lost its example"
    return match.group(1)


def test_readme_example_is_short() -> None:
    code_lines = [line for line in _example().splitlines() if line.strip()]
    assert len(code_lines) <= 20


def test_readme_example_runs_and_solves_the_problem() -> None:
    torch.manual_seed(0)
    out = io.StringIO()
    namespace: dict[str, object] = {}
    with contextlib.redirect_stdout(out):
        exec(compile(_example(), str(README), "exec"), namespace)
    # The example prints the final loss values and the max error against sin(πx).
    info = namespace["info"]
    values = info.values  # type: ignore[attr-defined]
    assert set(values) == {"residual", "boundary"}
    max_error = float(out.getvalue().split()[-1])
    assert max_error < 0.05, out.getvalue()
    assert values["boundary"] < 1e-2
    assert info.losses["residual"].update_norm > 0  # type: ignore[attr-defined]


def _lightning_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## In PyTorch Lightning", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert match is not None, "the README lost its Lightning example"
    return match.group(1)


def test_readme_lightning_example_trains_through_the_balancer() -> None:
    """The Lightning snippet runs as written; AutoBalance took every step and solved the problem."""
    pytest.importorskip("lightning")
    torch.manual_seed(0)
    namespace: dict[str, Any] = {}
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        exec(compile(_lightning_example(), str(README), "exec"), namespace)
    model, trainer = namespace["model"], namespace["trainer"]
    assert trainer.global_step == 500
    balancer = trainer.optimizers[0]
    assert set(balancer.last_info.values) == {"residual", "boundary"}
    assert balancer.balancer.state_dict()["state"], "the per-loss states were never written"
    x = torch.linspace(0, 1, 101).unsqueeze(1)
    with torch.no_grad():
        max_error = (model.net(x) - torch.sin(torch.pi * x)).abs().max().item()
    assert max_error < 0.05, max_error
