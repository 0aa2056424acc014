"""Whether two run directories hold the same results, bit for bit (timings aside).

Two runs of one configuration on one machine and thread count are bit-identical, and a run
killed and resumed must end as if it had never stopped.  :func:`run_differences` checks both: the
result keys of ``metrics.json`` (:data:`RESULT_KEYS`: errors, losses, counts, the configuration's
hash; not timings or the run id), ``history.csv`` byte for byte, ``eval.csv`` without its
``wall_s`` column, and the final ``checkpoint.pt`` (step, weights, balancer, scheduler and RNG
states, history, evaluations without wall time), tensors compared as their exact values in a
fixed key order (so NaN matches NaN, which ``torch.equal`` would not).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import torch

__all__ = ["RESULT_KEYS", "run_differences"]

#: Metrics that must agree between two runs of one configuration (not timings, not the run id).
RESULT_KEYS = (
    "status",
    "steps",
    "rel_l2",
    "rel_l1",
    "mse",
    "linf",
    "initial",
    "backward_passes",
    "skipped_steps",
    "final_losses",
    "config_sha256",
)
_CHECKPOINT_KEYS = ("step", "model", "balancer", "scheduler", "rng", "history", "evals")


def _rows_without_times(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [{k: v for k, v in row.items() if k != "wall_s"} for row in csv.DictReader(handle)]


def _leaves(state: Any) -> list[Any]:
    """Every leaf of a nested state, tensors as lists, in a fixed key order."""
    if isinstance(state, torch.Tensor):
        return [state.tolist()]
    if isinstance(state, dict):
        return [x for key in sorted(state, key=str) for x in [key, *_leaves(state[key])]]
    if isinstance(state, list | tuple):
        return [x for item in state for x in _leaves(item)]
    return [state]


def _checkpoint_part(checkpoint: dict[str, Any], key: str) -> str:
    value = checkpoint[key]
    if key == "evals":
        value = [{k: v for k, v in e.items() if k != "wall_s"} for e in value]
    return json.dumps(_leaves(value))


def run_differences(a: Path, b: Path) -> list[str]:
    """What differs between the results of run directories ``a`` and ``b`` (empty: the same)."""
    out = []
    ma, mb = (json.loads((d / "metrics.json").read_text(encoding="utf-8")) for d in (a, b))
    out += [f"metrics.json {k}" for k in RESULT_KEYS if json.dumps(ma[k]) != json.dumps(mb[k])]
    if (a / "history.csv").read_bytes() != (b / "history.csv").read_bytes():
        out.append("history.csv")
    if _rows_without_times(a / "eval.csv") != _rows_without_times(b / "eval.csv"):
        out.append("eval.csv")
    ca, cb = (torch.load(d / "checkpoint.pt", weights_only=True) for d in (a, b))
    out += [
        f"checkpoint.pt {key}"
        for key in _CHECKPOINT_KEYS
        if _checkpoint_part(ca, key) != _checkpoint_part(cb, key)
    ]
    return out
