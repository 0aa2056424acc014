"""Training phases after a first-order method: L-BFGS, dense (self-scaled) quasi-Newton,
Gauss–Newton / energy natural gradient; and SOAP/Shampoo from an optional extra.

Entry points (the runner's whole contract)::

    from autobalance.phases import parse_phase, create_phase, run_phase, problem_objective

    spec = parse_phase("ssbroyden:iters=2000,redraw_every=500")     # or phase_from_mapping({...})
    phase = create_phase(spec, model.parameters())                   # PHASES.create(...)
    objective = problem_objective(problem, model, batch)             # or Objective(losses=...)
    result = run_phase(phase, objective, spec, redraw=draw, callback=log)
    state = phase.state_dict(); phase.load_state_dict(state)          # resume bit for bit

Every phase counts function, gradient and Jacobian evaluations (``phase.evaluations``) and
keeps one :class:`PhaseRecord` per iteration (``phase.history``).
"""

from __future__ import annotations

from autobalance.phases.base import Phase, PhaseRecord, check_parameter_limit
from autobalance.phases.broyden import (
    bfgs_update,
    scaled_broyden_update,
    ssbfgs_update,
    ssbroyden_parameters,
    ssbroyden_update,
)
from autobalance.phases.catalog import PHASES
from autobalance.phases.driver import PhaseResult, create_phase, run_phase
from autobalance.phases.evaluator import Evaluation, EvaluationCount, Evaluator
from autobalance.phases.gauss_newton import (
    DampedLeastSquares,
    ENGDPhase,
    GaussNewtonPhase,
    damped_least_squares,
)
from autobalance.phases.jacobian import (
    StackedResiduals,
    chunk_batch,
    residual_jacobian,
    stacked_residuals,
)
from autobalance.phases.lbfgs import LBFGSPhase
from autobalance.phases.line_search import LineSearchResult, cubic_minimizer, strong_wolfe
from autobalance.phases.objective import Batch, Objective, problem_objective
from autobalance.phases.quasi_newton import (
    BFGSPhase,
    DenseQuasiNewton,
    SSBFGSPhase,
    SSBroydenPhase,
)
from autobalance.phases.soap import (
    OPTIONAL_OPTIMIZERS,
    SOAP_PINN_DEFAULTS,
    optional_optimizer,
)
from autobalance.phases.spec import SCHEDULE_DEFAULTS, PhaseSpec, parse_phase, phase_from_mapping

__all__ = [
    "OPTIONAL_OPTIMIZERS",
    "PHASES",
    "SCHEDULE_DEFAULTS",
    "SOAP_PINN_DEFAULTS",
    "BFGSPhase",
    "Batch",
    "DampedLeastSquares",
    "DenseQuasiNewton",
    "ENGDPhase",
    "Evaluation",
    "EvaluationCount",
    "Evaluator",
    "GaussNewtonPhase",
    "LBFGSPhase",
    "LineSearchResult",
    "Objective",
    "Phase",
    "PhaseRecord",
    "PhaseResult",
    "PhaseSpec",
    "SSBFGSPhase",
    "SSBroydenPhase",
    "StackedResiduals",
    "bfgs_update",
    "check_parameter_limit",
    "chunk_batch",
    "create_phase",
    "cubic_minimizer",
    "damped_least_squares",
    "optional_optimizer",
    "parse_phase",
    "phase_from_mapping",
    "problem_objective",
    "residual_jacobian",
    "run_phase",
    "scaled_broyden_update",
    "ssbfgs_update",
    "ssbroyden_parameters",
    "ssbroyden_update",
    "stacked_residuals",
    "strong_wolfe",
]
