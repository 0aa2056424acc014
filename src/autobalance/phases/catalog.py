"""The catalogue of phases: ``PHASES.create(name, params, **options)``; ``PHASES.names()``.

Every phase is added here, explicitly, once (see :class:`autobalance.catalog.Catalog`); its
options are the keyword arguments of its class, validated by the catalogue.
"""

from __future__ import annotations

from autobalance.catalog import Catalog
from autobalance.phases.base import Phase
from autobalance.phases.gauss_newton import ENGDPhase, GaussNewtonPhase
from autobalance.phases.lbfgs import LBFGSPhase
from autobalance.phases.quasi_newton import BFGSPhase, SSBFGSPhase, SSBroydenPhase

__all__ = ["PHASES"]

#: Phases by name; the factory's first argument (the parameters) is the caller's.
PHASES: Catalog[Phase] = Catalog("phase", skip=("params",))
PHASES.add("lbfgs", LBFGSPhase, family="quasi-newton")
PHASES.add("bfgs", BFGSPhase, family="quasi-newton")
PHASES.add("ssbfgs", SSBFGSPhase, family="quasi-newton")
PHASES.add("ssbroyden", SSBroydenPhase, family="quasi-newton")
PHASES.add("gauss_newton", GaussNewtonPhase, family="gauss-newton")
PHASES.add("engd", ENGDPhase, family="gauss-newton")
