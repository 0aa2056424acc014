"""Curvature and balance diagnostics (see docs/diagnostics.md).

* :mod:`~autobalance.diagnostics.hessian`: per-loss HVPs, dense Hessians, Lanczos, SLQ densities;
* :mod:`~autobalance.diagnostics.preconditioning`: Adam/AutoBalance diagonal preconditioners,
  preconditioned Hessians, effective condition numbers;
* :mod:`~autobalance.diagnostics.balance`: per-step norm ratios and cosines, a runner callback;
* :mod:`~autobalance.diagnostics.quadratic`: the paper's quadratic model, solved exactly;
* :mod:`~autobalance.diagnostics.helmholtz_study`: Fig. 1 / Fig. 2 reproduction on any problem.
"""

from __future__ import annotations

__all__ = ["balance", "helmholtz_study", "hessian", "plots", "preconditioning", "quadratic"]
