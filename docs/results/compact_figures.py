"""Make the committed result figures compact: every PNG under ``docs/results`` below 300 KB.

Usage (``make compact-results``)::

    python docs/results/compact_figures.py [ROOT] [--target-kb 250]

Every figure is flattened onto white and stored as an 8-bit palette PNG (octree quantisation to
256 colours, which keeps the colour-bar ends and the line colours; no resizing, so the text stays
as sharp as matplotlib drew it).  A figure that is still larger than the target (a solutions
figure with one row per method) is cut between rows of panels into parts ``NAME_1.png``,
``NAME_2.png``, ... of similar height, each below the target, and every ``report.md`` under ROOT
that showed ``NAME.png`` shows the parts in order instead.  A figure
that is already a palette PNG below the target is left alone, so a second run changes nothing.
"""

from __future__ import annotations

import argparse
import io
import itertools
import math
import re
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "blank_rows",
    "compact_figure",
    "compact_tree",
    "palette_png",
    "panel_row_cuts",
    "split_rows",
]

WHITE = (255, 255, 255)
MAX_PARTS = 16


def palette_png(image: Image.Image) -> bytes:
    """``image`` flattened onto white, quantised to 256 colours (fast octree), as PNG bytes.

    Each palette colour is then set to the most frequent original colour among the pixels it
    stands for, so the background stays pure white and lines keep their exact colours.
    """
    rgba = image.convert("RGBA")
    flat = Image.new("RGB", rgba.size, WHITE)
    flat.paste(rgba, mask=rgba.getchannel("A"))
    quantised = flat.quantize(colors=256, method=Image.Quantize.FASTOCTREE)
    index = np.asarray(quantised, dtype=np.int64).ravel()
    rgb = np.asarray(flat, dtype=np.int64).reshape(-1, 3)
    colour = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
    pairs, counts = np.unique((index << 24) | colour, return_counts=True)
    order = np.lexsort((counts, pairs >> 24))  # by palette index, most frequent colour last
    last = np.r_[(pairs[order] >> 24)[1:] != (pairs[order] >> 24)[:-1], True]
    palette = np.array(quantised.getpalette()[: 3 * 256], dtype=np.int64).reshape(-1, 3)
    for pair in pairs[order][last]:
        code = int(pair) & 0xFFFFFF
        palette[int(pair) >> 24] = (code >> 16, (code >> 8) & 0xFF, code & 0xFF)
    quantised.putpalette(palette.astype(np.uint8).ravel().tolist())
    buffer = io.BytesIO()
    quantised.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def blank_rows(image: Image.Image) -> list[bool]:
    """For every pixel row of ``image``: whether it is white from edge to edge."""
    flat = image.convert("RGB")
    stride = 3 * flat.width
    data = flat.tobytes()
    white_row = bytes(WHITE) * flat.width
    return [data[y * stride : (y + 1) * stride] == white_row for y in range(flat.height)]


def panel_row_cuts(image: Image.Image) -> list[int]:
    """Rows where a new row of panels starts: the middle of the white gap above every tall block.

    A block is a band of non-white rows between white gaps; a row of matplotlib panels (title,
    axes, colour bar) is one tall block, its tick labels and axis label are short ones.  Blocks at
    least half as tall as the tallest count as panel rows, so a cut never separates a panel from
    its tick labels.
    """
    blank = blank_rows(image)
    blocks: list[tuple[int, int]] = []  # (first row, end row) of every non-white band
    for is_blank, group in itertools.groupby(enumerate(blank), key=lambda item: item[1]):
        rows = [y for y, _ in group]
        if not is_blank:
            blocks.append((rows[0], rows[-1] + 1))
    if not blocks:
        return []
    tallest = max(end - start for start, end in blocks)
    return [
        (previous_end + start) // 2
        for (_, previous_end), (start, end) in itertools.pairwise(blocks)
        if 2 * (end - start) >= tallest
    ]


def split_rows(image: Image.Image, parts: int) -> list[Image.Image]:
    """``image`` cut into ``parts`` bands between panel rows, near the equal-height cuts.

    Raises ``ValueError`` when there are not enough panel rows to cut between.
    """
    candidates = panel_row_cuts(image)
    cuts = [0]
    for index in range(1, parts):
        ideal = index * image.height / parts
        later = [y for y in candidates if y > cuts[-1]]
        if not later:
            raise ValueError(f"a {image.size} figure has too few rows of panels for {parts} parts")
        cuts.append(min(later, key=lambda y: abs(y - ideal)))
    cuts.append(image.height)
    return [image.crop((0, top, image.width, bottom)) for top, bottom in itertools.pairwise(cuts)]


def compact_figure(path: Path, target: int) -> list[Path]:
    """Rewrite the PNG at ``path`` compactly; returns the files that now hold it (1 or parts).

    Raises ``ValueError`` when the figure cannot be brought below ``target`` bytes.
    """
    with Image.open(path) as opened:
        image = opened.copy()
        already = opened.mode == "P"
    if already and path.stat().st_size <= target:
        return [path]
    encoded = palette_png(image)
    if len(encoded) <= target:
        path.write_bytes(encoded)
        return [path]
    for parts in range(max(2, math.ceil(len(encoded) / target)), MAX_PARTS + 1):
        pieces = [palette_png(band) for band in split_rows(image, parts)]
        if max(map(len, pieces)) <= target:
            paths = [path.with_name(f"{path.stem}_{n}{path.suffix}") for n in range(1, parts + 1)]
            for piece_path, piece in zip(paths, pieces, strict=True):
                piece_path.write_bytes(piece)
            path.unlink()
            return paths
    raise ValueError(f"{path}: cannot bring below {target} bytes in {MAX_PARTS} parts")


def _relink(report: Path, old: str, new: list[str]) -> None:
    """Show the parts ``new`` wherever ``report`` shows the image ``old`` (relative links)."""
    pattern = re.compile(r"^!\[(?P<alt>[^\]]*)\]\(" + re.escape(old) + r"\)$", re.M)

    def parts(match: re.Match[str]) -> str:
        alt = match.group("alt")
        return "\n\n".join(
            f"![{alt} ({n} of {len(new)})]({link})" for n, link in enumerate(new, start=1)
        )

    text = report.read_text(encoding="utf-8")
    report.write_text(pattern.sub(parts, text), encoding="utf-8")


def compact_tree(root: Path, target: int) -> dict[Path, list[Path]]:
    """Compact every PNG under ``root`` and fix the ``report.md`` links to split figures."""
    done: dict[Path, list[Path]] = {}
    for path in sorted(root.rglob("*.png")):
        done[path] = compact_figure(path, target)
    for old, new in done.items():
        if new == [old]:
            continue
        for report in root.rglob("report.md"):
            base = report.parent
            if base in old.parents:
                _relink(
                    report,
                    old.relative_to(base).as_posix(),
                    [p.relative_to(base).as_posix() for p in new],
                )
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default=Path(__file__).resolve().parent, type=Path)
    parser.add_argument("--target-kb", type=int, default=250, help="largest figure (KB)")
    args = parser.parse_args()
    for old, new in compact_tree(args.root, args.target_kb * 1000).items():
        sizes = ", ".join(f"{p.name} {p.stat().st_size // 1000} KB" for p in new)
        print(f"{old.relative_to(args.root)} -> {sizes}")


if __name__ == "__main__":
    main()
