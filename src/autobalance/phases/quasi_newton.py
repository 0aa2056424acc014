"""Dense quasi-Newton phases: BFGS, self-scaled BFGS and self-scaled Broyden.

Each iteration (Nocedal & Wright, *Numerical Optimization*, 2nd ed., Alg. 6.1)::

    p = −H g                         (H: dense n×n inverse-Hessian estimate, H₀ = I)
    α: strong Wolfe line search along p (:mod:`autobalance.phases.line_search`)
    s = α p,  y = g(x + s) − g(x),  x ← x + s,  H ← update(H, s, y, g, α)

with the update rules of :mod:`autobalance.phases.broyden` (BFGS; SSBFGS and SSBroyden of Urbán,
Stefanou & Pons, J. Comput. Phys. 2025, and Kiyani et al., arXiv:2501.16371).  ``H`` needs
``n²`` numbers, so a phase refuses more than ``max_params`` parameters.

Before the first update ``H₀ = I`` is rescaled to ``(yᵀs / yᵀy) I`` (Nocedal & Wright,
Eq. 6.20; the ``initial_scale`` option of Urbán et al.'s code), so that ``H`` starts at the scale
of the inverse Hessian: the self-scaling factors ``1/τ ≥ 1`` can only enlarge ``H``, and from
``H₀ = I`` on a PINN loss (Hessian eigenvalues up to 1e4 and more) every line search would have
to backtrack.  That first update is plain BFGS from the rescaled ``H₀`` (what the code of Urbán et
al. does for SSBFGS; the rescaling already is the self-scaling); ``initial_scale=False`` keeps
``H₀ = I`` and applies the method's own rule from the first update on.

Deviations and safeguards, each rare: the first step (``H = I``) is tried at length 1 in
parameter space, ``α₀ = min(1, 1/‖p‖)`` (SciPy's BFGS does the same), later steps at ``α₀ = 1``;
an update with ``yᵀs ≤ 1e-12·‖s‖‖y‖`` is skipped; if ``p`` is not a descent direction, or the
line search finds no decrease, ``H`` is reset to ``I`` and the iteration retried once along
``−g`` before the phase stops.

When the points are redrawn the objective changes, and ``H``, built from pairs ``(s, y)`` of
the old one, is only an estimate of the new one's inverse Hessian.  As in the code of Urbán et
al. (each batch of points a new ``scipy.optimize.minimize`` call started from the previous
``H``, symmetrised, and from ``I`` when its Cholesky factorisation fails), a redraw keeps
``H``, symmetrises it and restarts from ``H = I`` if it is no longer positive definite (after
many self-scaled updates rounding can break it).  ``reset_on_redraw=True`` restarts from
``H = I`` at every redraw; on the wave problem (1981 parameters, points redrawn every 500
iterations) that loses the curvature the method needs: rel. L2 0.84 after 2500 iterations,
against 8.3e-3 keeping ``H`` (``docs/results/sota-search``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
from torch import Tensor

from autobalance.errors import ConfigError
from autobalance.phases.base import Phase, check_parameter_limit
from autobalance.phases.broyden import bfgs_update, ssbfgs_update, ssbroyden_update
from autobalance.phases.evaluator import Evaluation
from autobalance.phases.flat import assign_flat
from autobalance.phases.line_search import strong_wolfe
from autobalance.phases.objective import Objective

__all__ = [
    "BFGSPhase",
    "DenseQuasiNewton",
    "SSBFGSPhase",
    "SSBroydenPhase",
    "positive_definite",
]

#: ``(H, s, y, g, α) -> H⁺``.
InverseUpdate = Callable[[Tensor, Tensor, Tensor, Tensor, float], Tensor]


class DenseQuasiNewton(Phase):
    """Quasi-Newton with a dense inverse Hessian and a strong Wolfe line search.

    Subclasses choose :attr:`update`.

    Args:
        params: the parameters (at most ``max_params`` scalars in all).
        max_params: refuse more parameters than this (``H`` is ``n × n``).
        c1, c2: strong Wolfe constants (Nocedal & Wright's 1e-4 and 0.9 for quasi-Newton).
        max_line_search: the most evaluations of one line search.
        tolerance_grad: stop when ``max |g_i|`` falls to this.
        initial_scale: rescale ``H₀ = I`` to ``(yᵀs / yᵀy) I`` before the first update.
        reset_on_redraw: restart from ``H = I`` at every redraw of the points; by default ``H``
            is kept, and reset only when it is no longer positive definite (module docstring).
    """

    name: ClassVar[str] = ""

    def __init__(
        self,
        params: Iterable[Tensor],
        *,
        max_params: int = 5000,
        c1: float = 1e-4,
        c2: float = 0.9,
        max_line_search: int = 25,
        tolerance_grad: float = 1e-14,
        initial_scale: bool = True,
        reset_on_redraw: bool = False,
    ) -> None:
        super().__init__(params)
        where = f"phase {self.name!r}"
        if max_params < 1:
            raise ConfigError(f"{where}: max_params must be >= 1, got {max_params}")
        check_parameter_limit(where, self.n, max_params, "a dense inverse Hessian")
        if not 0.0 < c1 < c2 < 1.0:
            raise ConfigError(f"{where}: needs 0 < c1 < c2 < 1, got c1={c1}, c2={c2}")
        if max_line_search < 1:
            raise ConfigError(f"{where}: max_line_search must be >= 1, got {max_line_search}")
        if tolerance_grad < 0:
            raise ConfigError(f"{where}: tolerance_grad must be >= 0, got {tolerance_grad}")
        self.c1, self.c2 = float(c1), float(c2)
        self.max_line_search = int(max_line_search)
        self.tolerance_grad = float(tolerance_grad)
        self.initial_scale = bool(initial_scale)
        self.reset_on_redraw = bool(reset_on_redraw)
        self.H = torch.eye(self.n, dtype=self.dtype, device=self.device)
        self.updates = 0  # updates of H since the last reset
        self.skipped = 0
        self.resets = 0  # restarts after a failed line search
        self.redraw_resets = 0  # restarts at a redraw of the points

    @staticmethod
    def update(H: Tensor, s: Tensor, y: Tensor, g: Tensor, alpha: float) -> Tensor:
        """The inverse-Hessian update rule ``(H, s, y, g, α) -> H⁺``."""
        raise NotImplementedError

    def _restart(self) -> None:
        """``H = I`` and no update yet (the next one rescales ``H`` again)."""
        self.H = torch.eye(self.n, dtype=self.dtype, device=self.device)
        self.updates = 0

    def _reset(self) -> None:
        self._restart()
        self.resets += 1

    def points_changed(self, iteration: int | None = None) -> None:
        """The points were redrawn: symmetrise ``H`` and keep it if it is positive definite,
        else (or always, with ``reset_on_redraw``) restart from ``H = I``."""
        super().points_changed(iteration)
        self.H = 0.5 * (self.H + self.H.T)
        if self.reset_on_redraw or not positive_definite(self.H):
            self._restart()
            self.redraw_resets += 1

    def _search(
        self, objective: Objective, start: Evaluation, p: Tensor
    ) -> tuple[float, Evaluation] | None:
        """Strong Wolfe search along ``p``; the accepted step and evaluation, or ``None``."""
        g = start.grad
        assert g is not None
        slope0 = float(g @ p)
        trials: dict[float, Evaluation] = {}

        def phi(alpha: float) -> tuple[float, float]:
            ev = self.evaluator.evaluate(objective, start.x + alpha * p)
            trials[alpha] = ev
            assert ev.grad is not None
            slope = float(ev.grad @ p) if ev.finite else float("nan")
            return ev.total, slope

        alpha0 = 1.0 if self.updates > 0 else min(1.0, 1.0 / float(p.norm()))
        result = strong_wolfe(
            phi,
            start.total,
            slope0,
            alpha0,
            c1=self.c1,
            c2=self.c2,
            max_evaluations=self.max_line_search,
        )
        if result.alpha <= 0.0:
            return None
        return result.alpha, trials[result.alpha]

    def _iterate(self, objective: Objective) -> tuple[Evaluation, float, dict[str, float]]:
        start = self._start(objective)
        g = start.grad
        assert g is not None
        extra = self._extra()
        if float(g.abs().max()) <= self.tolerance_grad:
            self.stop_reason = f"gradient below tolerance_grad={self.tolerance_grad:g}"
            return start, 0.0, extra
        for attempt in range(2):
            p = -(self.H @ g)
            accepted = self._search(objective, start, p) if float(g @ p) < 0.0 else None
            if accepted is not None:
                break
            if self.updates == 0 or attempt == 1:
                assign_flat(self.params, start.x)
                self.evaluator.remember(start)
                self.stop_reason = "the line search found no decrease along −H g or −g"
                return start, 0.0, extra
            self._reset()
        assert accepted is not None
        alpha, after = accepted
        assert after.grad is not None
        s = after.x - start.x
        y = after.grad - g
        if float(y @ s) > 1e-12 * float(s.norm() * y.norm()):
            if self.updates == 0 and self.initial_scale:
                scaled = self.H * (float(y @ s) / float(y @ y))
                self.H = bfgs_update(scaled, s, y)
            else:
                self.H = self.update(self.H, s, y, g, alpha)
            self.updates += 1
        else:
            self.skipped += 1
        # The parameters hold the last point the line search tried; set the accepted one.
        assign_flat(self.params, after.x)
        self.evaluator.remember(after)
        return after, alpha, self._extra()

    def _extra(self) -> dict[str, float]:
        return {
            "updates_skipped": float(self.skipped),
            "resets": float(self.resets),
            "redraw_resets": float(self.redraw_resets),
        }

    def _method_state(self) -> dict[str, Any]:
        return {
            "H": self.H,
            "updates": self.updates,
            "skipped": self.skipped,
            "resets": self.resets,
            "redraw_resets": self.redraw_resets,
        }

    def _load_method_state(self, state: dict[str, Any]) -> None:
        self.H = self._tensor(state["H"]).clone()
        self.updates = int(state["updates"])
        self.skipped = int(state["skipped"])
        self.resets = int(state["resets"])
        self.redraw_resets = int(state.get("redraw_resets", 0))


def positive_definite(H: Tensor) -> bool:
    """Whether the symmetric ``H`` has a Cholesky factor (all eigenvalues > 0 to rounding)."""
    return bool(torch.linalg.cholesky_ex(H).info == 0)


class BFGSPhase(DenseQuasiNewton):
    """BFGS with a dense inverse Hessian (Nocedal & Wright, Alg. 6.1, Eq. 6.17)."""

    name: ClassVar[str] = "bfgs"

    @staticmethod
    def update(H: Tensor, s: Tensor, y: Tensor, g: Tensor, alpha: float) -> Tensor:
        return bfgs_update(H, s, y)


class SSBFGSPhase(DenseQuasiNewton):
    """Self-scaled BFGS, τ = min(1, 1/b) (Al-Baali 1998; Urbán, Stefanou & Pons 2025, Eq. 11)."""

    name: ClassVar[str] = "ssbfgs"

    @staticmethod
    def update(H: Tensor, s: Tensor, y: Tensor, g: Tensor, alpha: float) -> Tensor:
        return ssbfgs_update(H, s, y, g, alpha)


class SSBroydenPhase(DenseQuasiNewton):
    """Self-scaled Broyden (Urbán, Stefanou & Pons 2025, Eqs. 13–23; Kiyani et al. 2025)."""

    name: ClassVar[str] = "ssbroyden"

    @staticmethod
    def update(H: Tensor, s: Tensor, y: Tensor, g: Tensor, alpha: float) -> Tensor:
        return ssbroyden_update(H, s, y, g, alpha)
