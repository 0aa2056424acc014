"""The README's example runs as written and solves its Poisson problem."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

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
