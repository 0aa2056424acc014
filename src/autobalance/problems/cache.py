"""On-disk cache of computed reference solutions, verified by checksum.

Reference solutions that need a numerical solver (spectral, quadrature) are computed in the
package, never downloaded.  :func:`cached_arrays` stores them as ``.npz`` files named by the
problem and a hash of every parameter that affects them, with a SHA-256 checksum beside each
file; a file whose checksum does not match (half-written, corrupted, edited) is recomputed.
Files are written atomically.

The directory is ``$AUTOBALANCE_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/autobalance``, else
``~/.cache/autobalance``; ``AUTOBALANCE_CACHE_DIR=off`` disables the cache.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["cache_dir", "cached_arrays"]

#: Bump when a solver changes in a way that changes its output.
CACHE_FORMAT = 1


def cache_dir() -> Path | None:
    """The reference cache directory, or ``None`` when caching is disabled."""
    env = os.environ.get("AUTOBALANCE_CACHE_DIR")
    if env == "off":
        return None
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "autobalance" / "references"


def _key(name: str, params: Mapping[str, Any]) -> str:
    text = json.dumps({"format": CACHE_FORMAT, "name": name, **params}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_arrays(
    name: str,
    params: Mapping[str, Any],
    compute: Callable[[], Mapping[str, np.ndarray]],
) -> dict[str, np.ndarray]:
    """Return ``compute()``'s arrays, from the cache when a verified copy exists.

    Args:
        name: the problem (or solver) name, part of the file name.
        params: every JSON-serialisable parameter the arrays depend on (resolution included).
        compute: computes the arrays on a cache miss.
    """
    directory = cache_dir()
    if directory is None:
        return {k: np.asarray(v) for k, v in compute().items()}
    stem = f"{name}-{_key(name, params)}"
    data_path, sum_path = directory / f"{stem}.npz", directory / f"{stem}.sha256"
    if data_path.exists() and sum_path.exists():
        try:
            blob = data_path.read_bytes()
            if hashlib.sha256(blob).hexdigest() == sum_path.read_text().strip():
                with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
                    return {k: npz[k] for k in npz.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            # Unreadable, or corrupted behind a checksum that matches: recomputed below.
            warnings.warn(
                f"reference cache file {data_path} is unreadable ({type(exc).__name__}: {exc}); "
                "recomputing it",
                RuntimeWarning,
                stacklevel=2,
            )
    # Imported here: importing the experiments package imports the runner, which imports this
    # package (the problems are catalogued at its import).
    from autobalance.experiments.io import atomic_write_bytes, atomic_write_text

    arrays = {k: np.asarray(v) for k, v in compute().items()}
    buf = io.BytesIO()
    # numpy's stub matches ``**arrays`` against the bool ``allow_pickle`` too; the keys are the
    # reference's field names, never "allow_pickle", so every value is an array
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
    blob = buf.getvalue()
    try:
        atomic_write_bytes(data_path, blob)
        atomic_write_text(sum_path, hashlib.sha256(blob).hexdigest() + "\n")
        atomic_write_text(directory / f"{stem}.json", json.dumps(dict(params), indent=2) + "\n")
    except OSError:  # a read-only home: compute every time rather than fail
        pass
    return arrays
