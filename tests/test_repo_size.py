"""The committed results stay lean: docs/results at most 5 MB, every figure at most 300 KB.

docs/results keeps each sweep's report, tables, configuration and compact figures; per-run
directories are neither committed nor addable (.gitignore).  The figures are compacted by
``docs/results/compact_figures.py`` (``make compact-results``), tested here on a made-up figure.
Links from the documentation into docs/results must resolve.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
MAX_TOTAL = 5 * 1024 * 1024  # bytes: `du -sh docs/results` ≤ 5 MB
MAX_FIGURE = 300_000  # bytes
FIGURE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".svg", ".pdf", ".webp"}


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False
    )


def _in_git_checkout() -> bool:
    return shutil.which("git") is not None and _git("rev-parse", "--git-dir").returncode == 0


def _results_files() -> list[Path]:
    """Files under docs/results that are or could be committed (tracked, or untracked unignored)."""
    if not RESULTS.is_dir():
        pytest.skip("no docs/results in this copy of the project")
    if not _in_git_checkout():
        return sorted(p for p in RESULTS.rglob("*") if p.is_file())
    listed = _git("ls-files", "--cached", "--others", "--exclude-standard", "-z", "docs/results")
    assert listed.returncode == 0, listed.stderr
    paths = {ROOT / name for name in listed.stdout.split("\0") if name}
    return sorted(p for p in paths if p.is_file())  # a tracked file deleted in the work tree: gone


def _kb(size: int) -> str:
    return f"{size / 1000:.0f} KB"


def test_docs_results_is_at_most_5_mb() -> None:
    files = _results_files()
    sizes = {p: p.stat().st_size for p in files}
    total = sum(sizes.values())
    largest = sorted(sizes, key=sizes.__getitem__, reverse=True)[:8]
    listing = ", ".join(f"{p.relative_to(RESULTS)} {_kb(sizes[p])}" for p in largest)
    assert total <= MAX_TOTAL, (
        f"docs/results holds {total / 1024**2:.2f} MB (limit 5 MB); largest: {listing}. Commit "
        "reports, tables, configs and compact figures only (make compact-results)."
    )


def test_every_figure_in_docs_results_is_at_most_300_kb() -> None:
    figures = [p for p in _results_files() if p.suffix.lower() in FIGURE_SUFFIXES]
    assert figures, "no figures found under docs/results"
    too_big = {
        str(p.relative_to(RESULTS)): _kb(p.stat().st_size)
        for p in figures
        if p.stat().st_size > MAX_FIGURE
    }
    assert not too_big, f"figures over 300 KB (run make compact-results): {too_big}"


@pytest.mark.parametrize(
    ("path", "ignored"),
    [
        ("docs/results/quick/helmholtz-adam-seed0-4ab0ba95ed/history.csv", True),
        ("docs/results/quick/helmholtz-adam-seed0-4ab0ba95ed/metrics.json", True),
        ("docs/results/quick/helmholtz-adam-seed0-4ab0ba95ed/solution.png", True),
        ("docs/results/new/burgers-pcgrad-seed12-0123456789/checkpoint.pt", True),
        ("docs/results/quick/.sweep.lock", True),
        ("docs/results/mine/history.csv", True),
        ("docs/results/mine/eval.csv", True),
        ("docs/results/mine/checkpoint.pt", True),
        ("docs/results/diagnostics/study.json", True),
        ("docs/results/diagnostics/seed1/study.json", True),
        ("docs/results/quick/report.md", False),
        ("docs/results/quick/results.csv", False),
        ("docs/results/quick/runs.csv", False),
        ("docs/results/quick/sweep.json", False),
        ("docs/results/default-budget/suite.toml", False),
        ("docs/results/quick/figures/helmholtz_losses.png", False),
        ("docs/results/diagnostics/quadratic.json", False),
    ],
)
def test_gitignore_keeps_per_run_files_out_of_docs_results(path: str, ignored: bool) -> None:
    if not _in_git_checkout():
        pytest.skip("not a git checkout")
    # --no-index: judge the path by the ignore rules alone, tracked or not
    result = _git("check-ignore", "-q", "--no-index", path)
    assert result.returncode in (0, 1), result.stderr
    assert (result.returncode == 0) == ignored, f"{path}: ignored is {result.returncode == 0}"


def _documents() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_links_into_docs_results_resolve() -> None:
    broken = []
    for document in _documents():
        if not document.is_file():
            continue
        text = document.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):  # markdown links and images
            if re.match(r"[a-z]+:|#", target):
                continue
            path = (document.parent / target.split("#", 1)[0]).resolve()
            if RESULTS in (path, *path.parents) and not path.exists():
                broken.append(f"{document.relative_to(ROOT)}: ({target})")
        for mention in re.findall(r"docs/results(?:/[\w.-]+)*", text):  # paths in prose, commands
            if not (ROOT / mention.rstrip(".")).exists():
                broken.append(f"{document.relative_to(ROOT)}: {mention}")
    assert not broken, f"links into docs/results that do not resolve: {broken}"


@pytest.fixture(scope="module")
def compact() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compact_figures", RESULTS / "compact_figures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _panel_rows_figure(path: Path, rows: int) -> Path:
    """A figure like a report's solutions figure: one row of noisy image panels per method."""
    rng = np.random.default_rng(0)
    fig = Figure(figsize=(6, 2.2 * rows), layout="constrained")
    fig.suptitle("solutions")
    axes = fig.subplots(rows, 2, squeeze=False)
    for row in range(rows):
        for col in range(2):
            image = axes[row, col].imshow(rng.random((40, 40)), cmap="RdBu_r")
            axes[row, col].set_title(f"method {row}: panel {col}")
            axes[row, col].set_xlabel("x")
            fig.colorbar(image, ax=axes[row, col])
    fig.savefig(path, format="png", dpi=100)
    return path


def test_compact_figure_quantises_a_small_figure_in_place(
    compact: ModuleType, tmp_path: Path
) -> None:
    path = _panel_rows_figure(tmp_path / "small.png", rows=1)
    before = path.stat().st_size
    assert compact.compact_figure(path, target=10**7) == [path]
    with Image.open(path) as image:
        assert image.mode == "P"
    assert path.stat().st_size < before
    data = path.read_bytes()
    assert compact.compact_figure(path, target=10**7) == [path]  # a second run changes nothing
    assert path.read_bytes() == data


def test_a_figure_over_the_target_is_cut_between_rows_of_panels(
    compact: ModuleType, tmp_path: Path
) -> None:
    figures = tmp_path / "figures"
    figures.mkdir()
    path = _panel_rows_figure(figures / "solutions.png", rows=9)
    with Image.open(path) as opened:
        original = opened.convert("RGB")
    whole = len(compact.palette_png(original))
    target = whole // 3
    report = tmp_path / "report.md"
    report.write_text("# r\n\n![solutions](figures/solutions.png)\n\nend\n", encoding="utf-8")

    parts = compact.compact_tree(tmp_path, target)[path]

    assert len(parts) >= 3 and not path.exists()
    assert all(p.stat().st_size <= target for p in parts)
    bands = [Image.open(p).convert("RGB") for p in parts]
    assert sum(b.height for b in bands) == original.height
    assert all(b.width == original.width for b in bands)
    cuts = np.cumsum([b.height for b in bands])[:-1].tolist()
    assert set(cuts) <= set(compact.panel_row_cuts(original))
    for band in bands[1:]:  # every later part starts with white, then a whole row of panels
        blank = compact.blank_rows(band)
        assert blank[0]
    text = report.read_text(encoding="utf-8")
    assert "(figures/solutions.png)" not in text
    links = re.findall(r"\]\((figures/[^)]+)\)", text)
    assert links == [f"figures/{p.name}" for p in parts]
    assert f"![solutions (1 of {len(parts)})]" in text and text.endswith("end\n")


def test_panel_row_cuts_fall_above_the_panel_rows_not_inside_them(compact: ModuleType) -> None:
    white = (255, 255, 255)
    image = Image.new("RGB", (20, 100), white)
    # title 2..5, panel 10..40, tick labels 43..47, panel 55..85, tick labels 88..92
    for top, bottom in [(2, 5), (10, 40), (43, 47), (55, 85), (88, 92)]:
        image.paste((0, 0, 0), (3, top, 17, bottom))
    assert compact.panel_row_cuts(image) == [7, 51]
    with pytest.raises(ValueError, match="too few rows of panels"):
        compact.split_rows(image, parts=4)
