"""Figures of the diagnostics: quadratic-model sweep, Fig. 1 spectra and Fig. 2 balance."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_balance", "plot_quadratic", "plot_spectra"]

_COLORS = {"gd": "tab:gray", "adam": "tab:blue", "autobalance": "tab:red"}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_quadratic(result: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """``quadratic_kappa.png`` (κ vs c, both kinds) and ``quadratic_convergence.png``."""
    plt = _plt()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, kind in zip(axes, ("rotated", "diagonal"), strict=True):
        rows = [r for r in result["rows"] if r["kind"] == kind]
        cs = [r["c"] for r in rows]
        for name in ("gd", "adam", "autobalance"):
            ax.semilogy(
                cs, [r[f"kappa_{name}"] for r in rows], "o-", label=name, color=_COLORS[name]
            )
        ax.set_xlabel("c  (singular values of A: 1 … 10^c)")
        ax.set_title(f"A = diag(s) Vᵀ, V {'random orthogonal' if kind == 'rotated' else '= I'}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("κ(M) = λmax/λmin (geo-mean over seeds)")
    axes[0].legend()
    fig.tight_layout()
    paths = [out / "quadratic_kappa.png"]
    fig.savefig(paths[0], dpi=120)
    plt.close(fig)

    curves = result["curves"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, hist in curves.items():
        if not isinstance(hist, list):
            continue
        name = key.split("_", 1)[1]
        style = "-" if key.startswith("linear") else "--"
        label = f"{name} ({'frozen P, η*' if style == '-' else 'real optimizer, best lr'})"
        values = np.clip(np.asarray(hist, dtype=float), 1e-300, 1e300)
        ax.semilogy(values, style, label=label, color=_COLORS.get(name, "k"))
    ax.set_xlabel("step")
    ax.set_ylabel("L(w_t) / L(w_0)")
    ax.set_ylim(1e-20, 1e3)
    ax.set_title(f"quadratic model, c = {curves['c']} (rotated, seed 0)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out / "quadratic_convergence.png")
    fig.savefig(paths[1], dpi=120)
    plt.close(fig)
    return paths


def _hist(ax: Any, eigs: list[float], label: str, color: str | None = None) -> None:
    """Histogram of signed log-magnitudes ``sign(λ)·log10(1 + |λ|/λ_s)``."""
    values = np.asarray(eigs, dtype=float)
    scale = max(1e-12, float(np.abs(values).max()) * 1e-8)
    transformed = np.sign(values) * np.log10(1.0 + np.abs(values) / scale)
    ax.hist(transformed, bins=60, histtype="step", label=label, color=color, density=True)


def plot_spectra(result: dict[str, Any], out_dir: str | Path) -> Path:
    """``fig1_spectra.png``: init spectra, final first-loss spectra, κ_eff of the others."""
    plt = _plt()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = result["loss_names"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    ax = axes[0]
    for name in names:
        s = result["init_spectra"][name]
        ax.semilogy(sorted(np.abs(s["eigenvalues"]))[::-1], label=f"{name} |λ| (init)")
    ax.set_xlabel("index (sorted by |λ|)")
    ax.set_ylabel("|eigenvalue|")
    ax.set_title("(a) Hessian spectra at initialisation")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)

    ax = axes[1]
    ref = names[0]
    for method, res in result["methods"].items():
        color = _COLORS.get(method)
        for kind, spec in res["final_spectra"].items():
            eigs = np.asarray(spec["eigenvalues"], dtype=float)
            positive = np.sort(eigs[eigs > 0])[::-1]
            label = f"{method}: {'raw H' if kind == 'raw' else 'P^-1/2 H P^-1/2'}"
            ax.semilogy(
                positive / positive[0],
                ":" if kind == "raw" else "-",
                color=color,
                label=f"{label} (κ_eff={spec['summary']['kappa_eff']:.2g})",
            )
    ax.set_xlabel("index")
    ax.set_ylabel("λ / λmax (positive eigenvalues)")
    ax.set_title(f"(b) {ref} Hessian after training")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)

    ax = axes[2]
    for method, res in result["methods"].items():
        color = _COLORS.get(method)
        for name in names[1:]:
            steps = [c["step"] for c in res["checkpoints"]]
            for kind, style in (("raw", ":"), ("pre", "-")):
                values = [
                    c[name].get(kind, {}).get("kappa_eff@0.0001", math.nan)
                    for c in res["checkpoints"]
                ]
                ax.semilogy(
                    steps,
                    values,
                    style + "o",
                    color=color,
                    label=f"{method} {name} {'raw' if kind == 'raw' else 'precond.'}",
                )
    ax.set_xlabel("step")
    ax.set_ylabel("κ_eff (τ = 1e-4)")
    ax.set_title("(c) effective condition number of the other losses")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "fig1_spectra.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_balance(result: dict[str, Any], out_dir: str | Path) -> Path:
    """``fig2_balance.png``: gradient vs update norm ratios, gradient vs update cosines."""
    plt = _plt()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = result["loss_names"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for method, res in result["methods"].items():
        color = _COLORS.get(method)
        hist = res["history"]
        steps = [r["step"] for r in hist]
        for other in names[1:]:
            pair = f"{names[0]}/{other}"
            axes[0].semilogy(
                steps,
                [r[f"grad_ratio_{pair}"] for r in hist],
                ":",
                color=color,
                label=f"{method} ‖g‖ ratio {pair}",
            )
            axes[0].semilogy(
                steps,
                [r.get(f"update_ratio_{pair}", math.nan) for r in hist],
                "-",
                color=color,
                label=f"{method} ‖lr·g/P‖ ratio {pair}",
            )
            if any(math.isfinite(r.get(f"info_update_ratio_{pair}", math.nan)) for r in hist):
                axes[0].semilogy(
                    steps,
                    [r[f"info_update_ratio_{pair}"] for r in hist],
                    "--",
                    color=color,
                    label=f"{method} ‖u_k‖ ratio {pair} (momentum)",
                )
            axes[1].plot(
                steps,
                [r[f"grad_cos_{pair}"] for r in hist],
                ":",
                color=color,
                label=f"{method} cos(g) {pair}",
            )
            axes[1].plot(
                steps,
                [r.get(f"update_cos_{pair}", math.nan) for r in hist],
                "-",
                color=color,
                label=f"{method} cos(lr·g/P) {pair}",
            )
            if any(math.isfinite(r.get(f"info_update_cos_{pair}", math.nan)) for r in hist):
                axes[1].plot(
                    steps,
                    [r[f"info_update_cos_{pair}"] for r in hist],
                    "--",
                    color=color,
                    label=f"{method} cos(u_k) {pair} (momentum)",
                )
    axes[0].axhline(1.0, color="k", lw=0.5)
    axes[0].set_title("(a) norm ratio, first loss / other")
    axes[1].axhline(0.0, color="k", lw=0.5)
    axes[1].set_title("(b) cosine between the losses' vectors")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "fig2_balance.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
