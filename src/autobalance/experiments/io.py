"""Atomic file output: a reader never sees a half-written file, a crash never leaves one.

Every writer writes to a temporary file in the target's directory, flushes and ``fsync``s it, then
``os.replace``s it over the target (atomic on POSIX and Windows within one file system), and
finally ``fsync``s the directory where the platform allows it.

Figures follow one convention: a function draws a :class:`matplotlib.figure.Figure` (no pyplot,
no global backend: ``matplotlib.use`` is never called, so a notebook's backend is left alone) and
:func:`write_png` saves it, atomically and compact (at most :data:`MAX_PNG_BYTES`).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from PIL import Image

__all__ = [
    "MAX_PNG_BYTES",
    "atomic_write_bytes",
    "atomic_write_text",
    "finite_or_none",
    "json_digest",
    "writable_directory",
    "write_csv",
    "write_json",
    "write_png",
    "write_torch",
]

#: Largest PNG :func:`write_png` writes (bytes), so that committed figures stay small.
MAX_PNG_BYTES = 300_000
#: Resolution figures are drawn at, and the smallest scale :func:`write_png` shrinks them to.
PNG_DPI, MIN_PNG_SCALE = 100.0, 0.05


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _file_mode() -> int:
    """Mode of a new file under the current umask (``mkstemp`` creates files as 0600)."""
    if os.name != "posix":
        return 0o666
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _naming(exc: OSError, target: Path) -> OSError:
    """``exc`` (same type and errno) naming ``target`` rather than a temporary file."""
    if exc.errno is None:
        return exc
    try:
        return type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno), str(target))
    except TypeError:  # an OSError subclass with another constructor
        return exc


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same directory, fsync, replace).

    Raises:
        OSError: the file cannot be written (read-only or full disk, a file where a directory
            should be, ...); its ``filename`` is ``path``, never the temporary file, and the old
            file at ``path`` is left as it was.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise _naming(exc, target) from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            if os.name == "posix":
                os.fchmod(fh.fileno(), _file_mode())
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _naming(exc, target) from exc
        raise
    _fsync_dir(target.parent)
    return target


def writable_directory(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and its parents) if needed and check that files can be written in it.

    The check writes and removes a small temporary file, so it also catches read-only file
    systems and directories the permission bits would let ``root`` write.

    Raises:
        OSError: naming ``path``: it is a file, or it cannot be created or written.
    """
    directory = Path(path)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "exists and is not a directory", str(directory))
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".write-check.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise _naming(exc, directory) from exc
    return directory


def json_digest(obj: Any) -> str:
    """SHA-256 (hex) of ``obj`` as canonical JSON: sorted keys, no spaces, non-finite as null.

    A dict written by :func:`write_json` and read back has the digest of the dict written.
    """
    text = json.dumps(finite_or_none(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def finite_or_none(value: Any) -> Any:
    """Recursively replace non-finite floats by ``None`` (strict JSON has no NaN/Infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented, strict JSON (NaN/Inf become ``null``) atomically."""
    text = json.dumps(finite_or_none(obj), indent=2, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


def write_csv(
    path: str | os.PathLike[str], fieldnames: Sequence[str], rows: Iterable[Mapping[str, Any]]
) -> Path:
    """Write ``rows`` as CSV with a header atomically.

    Missing or non-finite values are empty cells; keys not in ``fieldnames`` are left out.
    """
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=list(fieldnames), lineterminator="\n", extrasaction="ignore"
    )
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in finite_or_none(row).items()})
    return atomic_write_text(path, buf.getvalue())


def write_torch(path: str | os.PathLike[str], obj: Any) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def _palette_png(image: Image.Image, scale: float) -> bytes:
    """``image`` resized by ``scale``, as a 256-colour PNG (octree palette, no dithering)."""
    from PIL import Image

    if scale < 1.0:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    # fast octree: smaller files than median cut here; no dithering, as its noise would defeat
    # PNG's compression.
    indexed = image.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    out = io.BytesIO()
    indexed.save(out, format="png", optimize=True)
    return out.getvalue()


def write_png(
    path: str | os.PathLike[str], figure: Figure, *, max_bytes: int = MAX_PNG_BYTES
) -> Path:
    """Save ``figure`` atomically as a compact PNG: a 256-colour palette, at most ``max_bytes``.

    Drawn once at :data:`PNG_DPI`.  While the PNG exceeds ``max_bytes`` the image is scaled down
    (Lanczos), ``scale ← 0.9 · scale · √(max_bytes / size)`` (PNG size grows about with the
    pixel count), down to :data:`MIN_PNG_SCALE`, whose image is written whatever its size.
    """
    from PIL import Image

    buf = io.BytesIO()
    figure.savefig(buf, format="png", dpi=PNG_DPI)
    buf.seek(0)
    with Image.open(buf) as drawn:
        image = drawn.convert("RGB")
    scale = 1.0
    data = _palette_png(image, scale)
    while len(data) > max_bytes and scale > MIN_PNG_SCALE:
        scale = max(MIN_PNG_SCALE, 0.9 * scale * math.sqrt(max_bytes / len(data)))
        data = _palette_png(image, scale)
    return atomic_write_bytes(path, data)
