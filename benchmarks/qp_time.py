"""Time of the QP-based aggregators (MGDA, UPGrad, CAGrad): quadprog + exact refinement, against
the face enumeration they replace.

For each number of losses ``K`` a random gradient matrix ``G`` (``K × P``, float64) is
aggregated by ``autobalance.methods.aggregator(name)`` — the whole call: Gram matrix, QP(s),
``d = wᵀG`` — and, where the ``2^K − 1`` faces are few enough (``K ≤ 12``), by the enumeration
solver kept as a test reference (``tests/face_enumeration.py``).  Printed: the median times and
``max_k |w_new − w_old|`` of the weights (``d = wᵀG``).  Two families of ``G``: ``iid``, independent
Gaussian rows (nearly orthogonal at large ``P``: small conflicts), and ``mixed``, ``G = L Z`` with
``L`` (``K × K``) and ``Z`` Gaussian (cosines spread over ``[−1, 1]``: many active constraints).

    python benchmarks/qp_time.py                          # K = 2, 6, 12, 40; P = 10 000
    python benchmarks/qp_time.py --ks 2 6 12 40 80 --family iid --repeats 21 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import face_enumeration as enumeration
from autobalance import methods
from autobalance.methods.aggregators._gram import combine, gram

METHODS = ("mgda", "upgrad", "cagrad")
MAX_ENUMERATION_K = 12


def old_weights(name: str, M: np.ndarray) -> np.ndarray:
    """The weights the enumeration solver gives (the library's formulas around it)."""
    K = M.shape[0]
    if name == "mgda":
        return enumeration.min_norm_simplex(M)
    if name == "upgrad":
        return (np.eye(K) + enumeration.nonneg_qp(M, M)).sum(axis=1) / K
    c, b = 0.5, np.full(K, 1.0 / K)  # cagrad at its defaults: c = 0.5, rescale = 1
    r = c * float(np.sqrt(b @ M @ b))
    w = enumeration.cagrad_dual_weights(M, c)
    return (b + (r / float(np.sqrt(w @ M @ w))) * w) / (1.0 + c * c)


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def gradients(family: str, K: int, P: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed + K)
    Z = torch.randn(K, P, generator=gen, dtype=torch.float64)
    if family == "iid":
        return Z
    return torch.randn(K, K, generator=gen, dtype=torch.float64) @ Z


def measure(
    families: list[str], ks: list[int], P: int, repeats: int, seed: int
) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for family in families:
        for K in ks:
            G = gradients(family, K, P, seed)
            M = gram(G)
            for name in METHODS:
                agg = methods.aggregator(name)
                row: dict[str, object] = {"family": family, "K": K, "method": name}
                row["new_ms"] = median_ms(lambda agg=agg, G=G: agg(G), repeats)
                w_new = agg.aggregate(G)[1]
                if K <= MAX_ENUMERATION_K:

                    def old(name: str = name, G: torch.Tensor = G) -> torch.Tensor:
                        return combine(old_weights(name, gram(G)), G)

                    row["old_ms"] = median_ms(old, max(3, repeats // 4))
                    row["max_dw"] = float(np.abs(w_new - old_weights(name, M)).max())
                rows.append(row)
                print(_line(row), flush=True)
    return rows


def _line(row: dict[str, object]) -> str:
    old = f"{row['old_ms']:.2f}" if "old_ms" in row else "—"
    dw = f"{row['max_dw']:.1e}" if "max_dw" in row else "—"
    cells = (row["family"], row["K"], row["method"], old, f"{row['new_ms']:.2f}", dw)
    return "| " + " | ".join(map(str, cells)) + " |"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[2, 6, 12, 40])
    parser.add_argument("--params", type=int, default=10_000, help="P, parameters per gradient")
    parser.add_argument("--family", nargs="+", choices=["iid", "mixed"], default=["iid", "mixed"])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"P = {args.params}, float64, median of {args.repeats} calls (torch threads: 1)")
    print("| G | K | method | enumeration ms | quadprog ms | max abs(w_new - w_old) |")
    print("|---|---|---|---|---|---|")
    rows = measure(args.family, args.ks, args.params, args.repeats, args.seed)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
