"""The documentation site: every ```python block of its pages runs, and the site builds strictly.

Each block of ``docs/*.md`` runs on its own (a fresh namespace, in a temporary working
directory), so a page's example must be complete: its imports, its data, its checks.  A block
that raises, or whose ``assert`` fails, fails the test named after its page and position.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```python\n(.*?)^```", flags=re.S | re.M)


def python_blocks(text: str) -> list[str]:
    """The bodies of the ```python fenced blocks of a Markdown text, in order."""
    return [match.group(1) for match in FENCE.finditer(text)]


def _examples() -> list[tuple[str, str]]:
    examples = []
    for page in sorted(DOCS.glob("*.md")):
        for i, code in enumerate(python_blocks(page.read_text(encoding="utf-8")), start=1):
            examples.append((f"{page.name}:{i}", code))
    return examples


EXAMPLES = _examples()


def test_blocks_are_found_and_other_languages_are_not() -> None:
    text = "intro\n```python\nx = 1\n```\n```bash\nls\n```\n```python\ny = 2\nz = 3\n```\n"
    assert python_blocks(text) == ["x = 1\n", "y = 2\nz = 3\n"]


def test_the_pages_have_examples() -> None:
    pages = {name.split(":")[0] for name, _ in EXAMPLES}
    assert {"getting-started.md", "optimizer.md", "methods.md", "problems.md"} <= pages
    assert {"experiments.md", "clusters.md"} <= pages


@pytest.mark.parametrize(("name", "code"), EXAMPLES, ids=[name for name, _ in EXAMPLES])
def test_example_runs(
    name: str, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    exec(compile(code, name, "exec"), {"__name__": "__docs__"})
    capsys.readouterr()


def test_getting_started_loop_is_the_readme_loop() -> None:
    """The two copies of the 20-line example stay the same (the README's is tested for accuracy)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    page = (DOCS / "getting-started.md").read_text(encoding="utf-8")
    section = "## AutoBalance in a plain PyTorch loop"
    assert (
        python_blocks(readme.split(section, 1)[1])[0] == python_blocks(page.split(section, 1)[1])[0]
    )


@pytest.mark.skipif(importlib.util.find_spec("griffe") is None, reason="needs the docs extra")
def test_sphinx_roles_become_inline_code() -> None:
    spec = importlib.util.spec_from_file_location("sphinx_roles", DOCS / "_ext" / "sphinx_roles.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = "See :class:`~autobalance.errors.ConfigError`, :func:`shard_points` and :mod:`a.b`."
    assert module.plain_roles(text) == "See `ConfigError`, `shard_points` and `a.b`."
    assert module.plain_roles("``x`` and `y`") == "``x`` and `y`"


def test_cluster_recipe_is_the_distributed_docstring_recipe() -> None:
    """The data-parallel recipe on the clusters page is the one in ``autobalance.distributed``."""
    import textwrap

    import autobalance.distributed

    doc = autobalance.distributed.__doc__ or ""
    recipe = doc.split("Recipe for your own loop", 1)[1].split("::\n\n", 1)[1]
    recipe = textwrap.dedent(recipe.split("\n\nEvery method of", 1)[0]) + "\n"
    page = (DOCS / "clusters.md").read_text(encoding="utf-8")
    assert recipe in python_blocks(page)


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="needs the docs extra")
@pytest.mark.skipif(importlib.util.find_spec("mkdocstrings") is None, reason="needs the docs extra")
def test_site_builds_in_strict_mode(tmp_path: Path) -> None:
    """``mkdocs build --strict``: a broken link, a missing page or reference fails the build."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "api" / "autobalance" / "index.html").is_file()
    assert "AutoBalance" in (tmp_path / "site" / "api" / "autobalance" / "index.html").read_text(
        encoding="utf-8"
    )
