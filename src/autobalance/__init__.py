"""autobalance: post-combine multi-loss optimization for physics-informed neural networks.

``AutoBalance`` keeps one base-optimizer state per named loss and sums the preconditioned
updates.  See the README for the method, the baselines and the benchmark.
"""

from autobalance.errors import AutoBalanceError, NonFiniteLossError
from autobalance.optim.autobalance import AutoBalance
from autobalance.step_info import LossStats, StepInfo

__version__ = "0.1.0"

__all__ = [
    "AutoBalance",
    "AutoBalanceError",
    "LossStats",
    "NonFiniteLossError",
    "StepInfo",
    "__version__",
]
