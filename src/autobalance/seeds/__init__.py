"""Seeds batched in one process: the S seeds of one configuration trained as one batched model.

* :func:`train_seeds`: S ordinary run directories from one batched training loop
  (:mod:`autobalance.seeds.training`);
* :class:`StackedModel`, :func:`interleave`, :func:`per_seed_losses`: the batched network on
  interleaved point rows (:mod:`autobalance.seeds.stacked`);
* :func:`carrier`: a loss with a given value and gradient, through which each seed's own
  balancer takes its step (:mod:`autobalance.seeds.carriers`);
* :func:`fuse_seeds`, :class:`FusedSeeds`: one optimizer step for all seeds where the method is
  elementwise per coordinate (:mod:`autobalance.seeds.fused`);
* :func:`check_batchable`, :class:`SeedBatchingError`: what can be batched
  (:mod:`autobalance.seeds.support`).
"""

from autobalance.seeds.carriers import carrier
from autobalance.seeds.fused import FusedSeeds, fuse_seeds
from autobalance.seeds.stacked import StackedModel, interleave, per_seed_losses
from autobalance.seeds.support import (
    UNSUPPORTED_METHODS,
    UNSUPPORTED_PROBLEMS,
    SeedBatchingError,
    batching_problem,
    check_batchable,
)
from autobalance.seeds.training import train_seeds

__all__ = [
    "UNSUPPORTED_METHODS",
    "UNSUPPORTED_PROBLEMS",
    "FusedSeeds",
    "SeedBatchingError",
    "StackedModel",
    "batching_problem",
    "carrier",
    "check_batchable",
    "fuse_seeds",
    "interleave",
    "per_seed_losses",
    "train_seeds",
]
