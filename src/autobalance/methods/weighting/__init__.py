"""Loss weightings: statistics of a step → weights ``w_k`` → ``∇ Σ_k w_k L_k`` → one optimizer.

Each weighting is a dataclass (its fields are its hyperparameters) run by
:class:`~autobalance.methods.weighting.base.WeightingMethod`.
"""

from autobalance.methods.weighting.base import (
    Weighting,
    WeightingFactory,
    WeightingMethod,
    WeightingStep,
)
from autobalance.methods.weighting.dwa import DynamicWeightAverage
from autobalance.methods.weighting.fixed import EqualWeights, FixedWeights
from autobalance.methods.weighting.grad_norm_balance import GradientNormBalancing
from autobalance.methods.weighting.gradnorm import GradNorm
from autobalance.methods.weighting.lr_annealing import LearningRateAnnealing
from autobalance.methods.weighting.ntk import NTKWeighting
from autobalance.methods.weighting.relobralo import ReLoBRaLo
from autobalance.methods.weighting.rlw import RandomLossWeighting
from autobalance.methods.weighting.softadapt import SoftAdapt
from autobalance.methods.weighting.uncertainty import UncertaintyWeighting

__all__ = [
    "DynamicWeightAverage",
    "EqualWeights",
    "FixedWeights",
    "GradNorm",
    "GradientNormBalancing",
    "LearningRateAnnealing",
    "NTKWeighting",
    "RandomLossWeighting",
    "ReLoBRaLo",
    "SoftAdapt",
    "UncertaintyWeighting",
    "Weighting",
    "WeightingFactory",
    "WeightingMethod",
    "WeightingStep",
]
