"""Multi-state methods: per-loss optimizer states, combined after preconditioning.

:class:`~autobalance.AutoBalance` (in :mod:`autobalance.optim`) and the baselines MultiAdam,
MTAdam and M-ConFIG.
"""

from autobalance.methods.multistate.mconfig import MConFIG
from autobalance.methods.multistate.mtadam import MTAdam
from autobalance.methods.multistate.multiadam import MultiAdam

__all__ = ["MConFIG", "MTAdam", "MultiAdam"]
