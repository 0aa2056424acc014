"""Issue 18: the reviewers' questions, answered from the ``ablations`` suite at 5 seeds.

``autobalance bench ablations --seeds 5`` trains AutoBalance on Helmholtz (a2 = 4, 512 residual
and 128 boundary points, 3,000 steps, lr·0.9^(t/1000), 4×50 tanh MLP, float32, CPU) with one
setting changed at a time.  This script reads the sweep's run directories into one compact table
(``collect``: one row per run, its settings spelled out, defaults filled in: ``combine="sum"``,
``base="adamw"`` with torch's weight decay 0.01, betas (0.9, 0.999), one state per loss), and
answers, each with mean ± std over seeds and a two-sided Mann–Whitney U test at α = 0.05
(5 against 5 seeds reaches p = 0.0079; :func:`autobalance.experiments.stats.compare`):

1. *Is AutoBalance just MultiAdam?*  MultiAdam averages per-loss Adam updates (``combine="mean"``),
   AutoBalance sums them (``"sum"``): with K losses, mean at K·lr is sum at lr up to ε, so the two
   are compared each at its own best learning rate of the grid (best = lowest mean error),
   "equally tuned".
2. *Is the gain AdamW's rather than per-loss states'?*  AutoBalance over Adam vs over AdamW, and
   both against one Adam on the summed loss, at lr 1e-3.
3. *Per-term or grouped states?*  One state per loss vs one state for both losses (which is one
   AdamW on the sum).
4. *β sensitivity*: the five (β1, β2) settings; the spread is worst mean ÷ best mean.
5. *lr sensitivity*: AutoBalance and Adam over lr ∈ {1e-4 … 1e-2}; the ratio of their means at
   each lr, and each at its own best lr.

Writes ``ablations.csv`` (the table), ``answers.md`` and three figures (``lr-sensitivity.png``,
``sum-vs-mean.png``, ``beta-sensitivity.png``).

    python benchmarks/ablation_answers.py collect SWEEP_DIR...  # -> docs/results/ablations-5-seeds
    python benchmarks/ablation_answers.py answer              # from the committed ablations.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from autobalance.experiments import stats
from autobalance.experiments.io import atomic_write_text

OUT = Path(__file__).resolve().parent.parent / "docs" / "results" / "ablations-5-seeds"
COLUMNS = (
    "method",
    "combine",
    "base",
    "betas",
    "states",
    "lr",
    "seed",
    "status",
    "rel_l2",
    "wall_s",
    "step_ms",
    "backward_passes",
)
#: The settings of a run that name its variant (every column before ``seed``).
SETTINGS = COLUMNS[: COLUMNS.index("seed")]
DEFAULT = {
    "method": "autobalance",
    "combine": "sum",
    "base": "adamw",
    "betas": "0.9/0.999",
    "states": "per-term",
}
ALPHA = 0.05
Row = dict[str, str]
Sample = dict[int, float]
#: ``{"lr": {method: {lr: sample}}, "betas": {"β1/β2": sample}}``
Curves = dict[str, Any]


# ------------------------------------------------------------------------------------- collect
def _row(config: Mapping[str, Any], metrics: Mapping[str, Any]) -> Row:
    params = dict(config.get("method_params") or {})
    autobalance = config["method"] == "autobalance"
    betas = params.get("betas", (0.9, 0.999))
    groups = params.get("groups")
    row = {
        "method": str(config["method"]),
        "combine": str(params.get("combine", "sum")) if autobalance else "",
        "base": str(params.get("base", "adamw")) if autobalance else "",
        "betas": "/".join(f"{b:g}" for b in betas) if autobalance else "",
        "states": ("grouped" if groups else "per-term") if autobalance else "",
        "lr": f"{float(config['lr']):g}",
        "seed": str(config["seed"]),
        "status": str(metrics.get("status", "")),
    }
    for key in ("rel_l2", "wall_s", "step_ms", "backward_passes"):
        value = metrics.get(key)
        row[key] = "" if value is None else f"{float(value):.6g}"
    return row


def collect(sweep: Path) -> list[Row]:
    """One row per finished run directory under ``sweep`` (``config.json`` + ``metrics.json``)."""
    rows = []
    for config_path in sorted(sweep.glob("*/config.json")):
        metrics_path = config_path.with_name("metrics.json")
        if not metrics_path.is_file():
            continue
        config = json.loads(config_path.read_text(encoding="utf-8"))
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        rows.append(_row(config, metrics))
    return rows


def write_table(path: Path, rows: Iterable[Row]) -> None:
    """The rows as CSV (:data:`COLUMNS`), written atomically."""
    lines = [",".join(COLUMNS)] + [",".join(r[c] for c in COLUMNS) for r in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_table(path: Path) -> list[Row]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# -------------------------------------------------------------------------------------- samples
def sample(rows: Iterable[Row], **settings: str) -> tuple[dict[int, float], list[str]]:
    """``seed → rel_l2`` of the ok runs whose settings are :data:`DEFAULT` updated by
    ``settings`` (``method="adam"`` clears the AutoBalance settings), and the notes on runs made
    twice under different names (the default spelled out or left out: they must agree)."""
    wanted = (
        {**DEFAULT, **settings}
        if settings.get("method", "autobalance") == "autobalance"
        else {
            **dict.fromkeys(DEFAULT, ""),
            **settings,
        }
    )
    out: dict[int, float] = {}
    notes = []
    for row in rows:
        if row["status"] != "ok" or any(row[k] != v for k, v in wanted.items()):
            continue
        seed, value = int(row["seed"]), float(row["rel_l2"])
        if seed in out and out[seed] != value:
            notes.append(f"seed {seed}: {out[seed]:.6g} vs {value:.6g} for one setting")
        out[seed] = value
    return out, notes


def failures(rows: Iterable[Row]) -> list[str]:
    """Every run that did not end ok, by its settings."""
    return [
        ", ".join(f"{k}={r[k]}" for k in (*SETTINGS, "seed") if r[k]) + f": {r['status']}"
        for r in rows
        if r["status"] != "ok"
    ]


def cell(values: Mapping[int, float]) -> str:
    if not values:
        return "–"
    xs = list(values.values())
    if len(xs) == 1:
        return f"{xs[0]:.3g} (1 seed)"
    return f"{statistics.fmean(xs):.3g} ± {statistics.stdev(xs):.2g}"


def versus(a: Mapping[int, float], b: Mapping[int, float]) -> dict[str, object]:
    """``a`` against ``b``: ratio of means and the Mann–Whitney outcome and p."""
    result = stats.compare(list(a.values()), list(b.values()), alpha=ALPHA)
    ratio = statistics.fmean(a.values()) / statistics.fmean(b.values())
    return {"ratio": ratio, "outcome": result.outcome, "p": result.test.p_value}


def _versus_text(a: Mapping[int, float], b: Mapping[int, float]) -> str:
    if len(a) < 2 or len(b) < 2:
        return "too few seeds"
    v = versus(a, b)
    return f"ratio {v['ratio']:.2f}, {v['outcome']} (p = {v['p']:.3f})"


def best_lr(rows: list[Row], lrs: Iterable[str], **settings: str) -> tuple[str, dict[int, float]]:
    """The learning rate of ``lrs`` with the lowest mean error, and its sample."""
    samples = {lr: sample(rows, lr=lr, **settings)[0] for lr in lrs}
    found = {lr: s for lr, s in samples.items() if s}
    lr = min(found, key=lambda k: statistics.fmean(found[k].values()))
    return lr, found[lr]


# -------------------------------------------------------------------------------------- answers
def answers(rows: list[Row]) -> tuple[list[str], Curves]:
    """Markdown lines of the five answers, and the curves behind the figures: ``lr`` (method →
    lr → sample), ``betas`` (β1/β2 → sample) and ``combine`` ("sum"/"mean" → lr → sample)."""
    lines: list[str] = []
    notes: list[str] = []
    lrs = sorted({r["lr"] for r in rows}, key=float)

    def get(**settings: str) -> dict[int, float]:
        values, found = sample(rows, **settings)
        notes.extend(found)
        return values

    # 1. sum vs mean, each at its best learning rate
    grid = [lr for lr in lrs if get(combine="mean", lr=lr)]
    lines += ["### 1. Sum vs mean (AutoBalance vs MultiAdam's averaging), equally tuned", ""]
    lines += ["| lr | sum | mean |", "|---|---|---|"]
    lines += [f"| {lr} | {cell(get(lr=lr))} | {cell(get(combine='mean', lr=lr))} |" for lr in grid]
    if grid:
        lr_sum, best_sum = best_lr(rows, grid)
        lr_mean, best_mean = best_lr(rows, grid, combine="mean")
        lines += [
            "",
            f"Best: sum at lr {lr_sum} ({cell(best_sum)}), mean at lr {lr_mean} "
            f"({cell(best_mean)}); sum ÷ mean: {_versus_text(best_sum, best_mean)}.",
        ]
    # 2. base optimizer
    adamw, adam_base = get(lr="0.001"), get(base="adam", lr="0.001")
    adam_sum = get(method="adam", lr="0.001")
    lines += ["", "### 2. Adam vs AdamW base (lr 1e-3)", ""]
    lines += [
        f"- AutoBalance over AdamW (default): {cell(adamw)}",
        f"- AutoBalance over Adam: {cell(adam_base)}",
        f"- one Adam on the sum: {cell(adam_sum)}",
        f"- AdamW base ÷ Adam base: {_versus_text(adamw, adam_base)}",
        f"- Adam base ÷ Adam on the sum (per-loss states alone): "
        f"{_versus_text(adam_base, adam_sum)}",
    ]
    # 3. per-term vs grouped
    grouped = get(states="grouped", lr="0.001")
    lines += ["", "### 3. Per-term vs grouped states (lr 1e-3)", ""]
    lines += [
        f"- one state per loss: {cell(adamw)}",
        f"- one state for both losses: {cell(grouped)}",
        f"- per-term ÷ grouped: {_versus_text(adamw, grouped)}",
    ]
    # 4. betas
    betas = sorted({r["betas"] for r in rows if r["betas"]})
    beta_curve = {b: get(betas=b, lr="0.001") for b in betas}
    beta_curve = {b: v for b, v in beta_curve.items() if v}
    lines += ["", "### 4. β sensitivity (lr 1e-3)", "", "| β1/β2 | rel. L2 |", "|---|---|"]
    lines += [f"| {b} | {cell(v)} |" for b, v in beta_curve.items()]
    if beta_curve:
        means = {b: statistics.fmean(v.values()) for b, v in beta_curve.items()}
        lo, hi = min(means, key=means.__getitem__), max(means, key=means.__getitem__)
        lines += [
            "",
            f"Spread: worst ({hi}) ÷ best ({lo}) = {means[hi] / means[lo]:.2f}; "
            f"worst vs best: {_versus_text(beta_curve[hi], beta_curve[lo])}.",
        ]
    # 5. learning rate
    lr_curve = {
        "autobalance": {lr: v for lr in lrs if (v := get(lr=lr))},
        "adam": {lr: v for lr in lrs if (v := get(method="adam", lr=lr))},
    }
    lines += ["", "### 5. lr sensitivity", "", "| lr | AutoBalance | Adam | AutoBalance vs Adam |"]
    lines += ["|---|---|---|---|"]
    for lr in lrs:
        a, b = lr_curve["autobalance"].get(lr, {}), lr_curve["adam"].get(lr, {})
        if a and b:
            lines.append(f"| {lr} | {cell(a)} | {cell(b)} | {_versus_text(a, b)} |")
    if lr_curve["adam"]:
        lr_ab, best_ab = best_lr(rows, lr_curve["autobalance"])
        lr_adam, best_adam = best_lr(rows, lr_curve["adam"], method="adam")
        lines += [
            "",
            f"Each at its best lr: AutoBalance {lr_ab} ({cell(best_ab)}), Adam {lr_adam} "
            f"({cell(best_adam)}); AutoBalance ÷ Adam: {_versus_text(best_ab, best_adam)}.",
        ]
    # cost and failures
    lines += ["", "### Cost and failures", ""]
    for name, method in (("AutoBalance", "autobalance"), ("Adam", "adam")):
        chosen = [r for r in rows if r["status"] == "ok" and r["method"] == method]
        if chosen:
            wall = statistics.fmean(float(r["wall_s"]) for r in chosen)
            step = statistics.fmean(float(r["step_ms"]) for r in chosen)
            backward = statistics.fmean(float(r["backward_passes"]) for r in chosen)
            lines.append(
                f"- {name}: {wall:.1f} s per run, {step:.2f} ms/step, "
                f"{backward:.0f} backward passes per run ({len(chosen)} runs)"
            )
    failed = failures(rows)
    lines.append("- Failed runs: " + ("; ".join(failed) if failed else "none") + ".")
    if notes:
        lines.append("- Runs made twice that differ: " + "; ".join(notes) + ".")
    combine_curve = {
        combine: {lr: v for lr in lrs if (v := get(combine=combine, lr=lr))}
        for combine in ("sum", "mean")
    }
    return lines, {"lr": lr_curve, "betas": beta_curve, "combine": combine_curve}


def figures(curves: Curves, out: Path) -> None:
    """The three figures (module docstring): mean ± std over seeds, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def points(curve: Mapping[str, dict[int, float]]) -> tuple[list[float], list[float]]:
        means = [statistics.fmean(v.values()) for v in curve.values()]
        stds = [statistics.stdev(v.values()) if len(v) > 1 else 0.0 for v in curve.values()]
        return means, stds

    def finish_lr_axes(fig: Any, ax: Any, title: str, path: Path) -> None:
        ax.set(xscale="log", yscale="log", xlabel="learning rate", ylabel="rel. L2 (mean ± std)")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(4.5, 3.2), dpi=100)
    for method, curve in curves["lr"].items():
        means, stds = points(curve)
        ax.errorbar(
            [float(k) for k in curve], means, yerr=stds, marker="o", capsize=3, label=method
        )
    finish_lr_axes(fig, ax, "Helmholtz a2=4, 3000 steps, 5 seeds", out / "lr-sensitivity.png")

    fig, ax = plt.subplots(figsize=(4.5, 3.2), dpi=100)
    for combine, curve in curves["combine"].items():
        means, stds = points(curve)
        lrs = [float(k) for k in curve]
        ax.errorbar(lrs, means, yerr=stds, marker="o", capsize=3, label=combine)
        if combine == "mean":  # mean at lr is sum at lr / K (K = 2 losses here)
            ax.plot([lr / 2 for lr in lrs], means, "k:", label="mean, plotted at lr / 2")
    finish_lr_axes(
        fig, ax, "AutoBalance: sum vs mean of the per-loss updates", out / "sum-vs-mean.png"
    )

    fig, ax = plt.subplots(figsize=(4.5, 3.2), dpi=100)
    curve = curves["betas"]
    means, stds = points(curve)
    ax.errorbar(range(len(means)), means, yerr=stds, marker="o", capsize=3, linestyle="none")
    ax.set_xticks(range(len(means)), list(curve), fontsize=8)
    ax.set(yscale="log", xlabel="β1/β2", ylabel="rel. L2 (mean ± std)")
    ax.set_title("AutoBalance β sensitivity (lr 1e-3, 5 seeds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "beta-sensitivity.png")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("collect", "answer"))
    parser.add_argument("sweeps", nargs="*", type=Path, help="the sweep directories (collect)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--no-figures", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    table = args.out / "ablations.csv"
    if args.action == "collect":
        if not args.sweeps:
            parser.error("collect needs the sweep directories")
        write_table(table, [row for sweep in args.sweeps for row in collect(sweep)])
    rows = read_table(table)
    lines, curves = answers(rows)
    text = "\n".join(lines) + "\n"
    print(text)
    atomic_write_text(args.out / "answers.md", text)
    if not args.no_figures:
        figures(curves, args.out)


if __name__ == "__main__":
    main()
