"""Figures of the diagnostics: quadratic-model sweep, Fig. 1 spectra and Fig. 2 balance.

Each function draws a :class:`~matplotlib.figure.Figure` from a result of
:mod:`~autobalance.diagnostics.quadratic` or :mod:`~autobalance.diagnostics.helmholtz_study`;
``autobalance diagnose`` saves them with :func:`autobalance.experiments.io.write_png`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.figure import Figure

__all__ = ["balance_figure", "quadratic_figures", "spectra_figure"]

_COLORS = {"gd": "tab:gray", "adam": "tab:blue", "autobalance": "tab:red"}

#: Measure of panel (c) of Fig. 1 (non-saturating; see ``preconditioning``).
_CHECKPOINT_MEASURE = ("kappa_mass@0.99", "κ_mass(0.99)")


def _panels(ncols: int, figsize: tuple[float, float], **kw: Any) -> tuple[Figure, Any]:
    """A figure with one row of ``ncols`` panels (one Axes when ``ncols == 1``) and its axes."""
    fig = Figure(figsize=figsize, layout="tight")
    return fig, fig.subplots(1, ncols, **kw)


def _finish(
    ax: Any, xlabel: str, ylabel: str | None = None, title: str | None = None, fontsize: int = 7
) -> None:
    """Labels, grid and legend of one panel."""
    ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=fontsize)


def quadratic_figures(result: dict[str, Any]) -> dict[str, Figure]:
    """``quadratic_kappa.png`` (κ vs c, both kinds) and ``quadratic_convergence.png``, by name."""
    kappa, axes = _panels(2, (10, 4), sharey=True)
    for ax, kind in zip(axes, ("rotated", "diagonal"), strict=True):
        rows = [r for r in result["rows"] if r["kind"] == kind]
        cs = [r["c"] for r in rows]
        for name in ("gd", "adam", "autobalance"):
            kappas = [r[f"kappa_{name}"] for r in rows]
            ax.semilogy(cs, kappas, "o-", label=name, color=_COLORS[name])
        where = "random orthogonal" if kind == "rotated" else "= I"
        _finish(ax, "c  (singular values of A: 1 … 10^c)", title=f"A = diag(s) Vᵀ, V {where}")
    axes[0].set_ylabel("κ(M) = λmax/λmin (geo-mean over seeds)")

    curves = result["curves"]
    convergence, ax = _panels(1, (6, 4))
    for key, hist in curves.items():
        if not isinstance(hist, list):
            continue
        name = key.split("_", 1)[1]
        linear = key.startswith("linear")
        label = f"{name} ({'frozen P, η*' if linear else 'real optimizer, best lr'})"
        values = np.clip(np.asarray(hist, dtype=float), 1e-300, 1e300)
        ax.semilogy(values, "-" if linear else "--", label=label, color=_COLORS.get(name, "k"))
    ax.set_ylim(1e-20, 1e3)
    title = f"quadratic model, c = {curves['c']} (rotated, seed 0)"
    _finish(ax, "step", "L(w_t) / L(w_0)", title, fontsize=8)
    return {"quadratic_kappa.png": kappa, "quadratic_convergence.png": convergence}


def spectra_figure(result: dict[str, Any]) -> Figure:
    """``fig1_spectra.png``: init spectra, final first-loss spectra, κ_mass(0.99) of the others."""
    names = result["loss_names"]
    fig, axes = _panels(3, (16, 4.5))
    for name in names:
        eigs = result["init_spectra"][name]["eigenvalues"]
        axes[0].semilogy(sorted(np.abs(eigs))[::-1], label=f"{name} |λ| (init)")
    _finish(axes[0], "index (sorted by |λ|)", "|eigenvalue|", "(a) Hessian spectra at init", 8)

    for method, res in result["methods"].items():
        for kind, spec in res["final_spectra"].items():
            eigs = np.asarray(spec["eigenvalues"], dtype=float)
            positive = np.sort(eigs[eigs > 0])[::-1]
            if positive.size == 0:
                continue
            s = spec["summary"]
            kappa_mass = s.get("kappa_mass@0.99", math.nan)
            label = (
                f"{method}: {'raw H' if kind == 'raw' else 'P^-1/2 H P^-1/2'} "
                f"(κ_eff={s['kappa_eff']:.2g}, κ_mass(.99)={kappa_mass:.2g})"
            )
            style = ":" if kind == "raw" else "-"
            axes[1].semilogy(positive / positive[0], style, color=_COLORS.get(method), label=label)
    title = f"(b) {names[0]} Hessian after training"
    _finish(axes[1], "index", "λ / λmax (positive eigenvalues)", title)

    key, label = _CHECKPOINT_MEASURE
    for method, res in result["methods"].items():
        steps = [c["step"] for c in res["checkpoints"]]
        for name in names[1:]:
            for kind, style in (("raw", ":"), ("pre", "-")):
                values = [c[name].get(kind, {}).get(key, math.nan) for c in res["checkpoints"]]
                axes[2].semilogy(
                    steps,
                    values,
                    style + "o",
                    color=_COLORS.get(method),
                    label=f"{method} {name} {'raw' if kind == 'raw' else 'precond.'}",
                )
    _finish(axes[2], "step", label, f"(c) {label} of the other losses' Hessians")
    return fig


#: Fig. 2 curves: (panel, history key prefix, line style, label template); ``{p}`` = pair.
_BALANCE_CURVES = (
    (0, "grad_ratio", ":", "‖g‖ ratio {p}"),
    (0, "update_ratio", "-", "‖lr·g/P‖ ratio {p}"),
    (0, "info_update_ratio", "--", "‖u_k‖ ratio {p} (momentum)"),
    (1, "grad_cos", ":", "cos(g) {p}"),
    (1, "update_cos", "-", "cos(lr·g/P) {p}"),
    (1, "info_update_cos", "--", "cos(u_k) {p} (momentum)"),
)


def balance_figure(result: dict[str, Any]) -> Figure:
    """``fig2_balance.png``: gradient vs update norm ratios, gradient vs update cosines.

    A curve is drawn only when it has at least one finite value.
    """
    names = result["loss_names"]
    fig, axes = _panels(2, (12, 4.5))
    for method, res in result["methods"].items():
        hist = res["history"]
        steps = [r["step"] for r in hist]
        for other in names[1:]:
            pair = f"{names[0]}/{other}"
            for panel, prefix, style, template in _BALANCE_CURVES:
                values = [r.get(f"{prefix}_{pair}", math.nan) for r in hist]
                if not any(math.isfinite(v) for v in values):
                    continue
                draw = axes[panel].semilogy if panel == 0 else axes[panel].plot
                draw(
                    steps,
                    values,
                    style,
                    color=_COLORS.get(method),
                    label=f"{method} {template.format(p=pair)}",
                )
    axes[0].axhline(1.0, color="k", lw=0.5)
    axes[1].axhline(0.0, color="k", lw=0.5)
    _finish(axes[0], "step", title="(a) norm ratio, first loss / other")
    _finish(axes[1], "step", title="(b) cosine between the losses' vectors")
    return fig
