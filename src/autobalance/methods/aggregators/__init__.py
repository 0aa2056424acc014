"""Gradient aggregators: the per-loss gradient matrix ``G`` → weights from ``G Gᵀ`` → one direction.

Every aggregator is an :class:`Aggregator` (:mod:`._base`): a weighting of the Gram matrix.
:data:`AGGREGATORS` catalogues them by name; the list below is the whole catalogue.
"""

from autobalance.catalog import Catalog
from autobalance.methods.aggregators._base import Aggregator, check_gradient_matrix
from autobalance.methods.aggregators.aligned_mtl import AlignedMTL
from autobalance.methods.aggregators.cagrad import CAGrad
from autobalance.methods.aggregators.conflict_free import ConFIG
from autobalance.methods.aggregators.dcgd import DCGD
from autobalance.methods.aggregators.gradvac import GradVac
from autobalance.methods.aggregators.imtl import IMTLG
from autobalance.methods.aggregators.mgda import MGDA
from autobalance.methods.aggregators.nashmtl import NashMTL
from autobalance.methods.aggregators.pcgrad import PCGrad
from autobalance.methods.aggregators.simple import MeanAggregator, SumAggregator
from autobalance.methods.aggregators.upgrad import UPGrad

__all__ = [
    "AGGREGATORS",
    "DCGD",
    "IMTLG",
    "MGDA",
    "Aggregator",
    "AlignedMTL",
    "CAGrad",
    "ConFIG",
    "GradVac",
    "MeanAggregator",
    "NashMTL",
    "PCGrad",
    "SumAggregator",
    "UPGrad",
    "check_gradient_matrix",
]

#: Every aggregator by name (``catalog.names()``, ``.get``, ``.parameters``, ``.describe``).
AGGREGATORS: Catalog[Aggregator] = Catalog("aggregator")
for _cls in (
    SumAggregator,
    MeanAggregator,
    PCGrad,
    MGDA,
    CAGrad,
    IMTLG,
    NashMTL,
    AlignedMTL,
    ConFIG,
    UPGrad,
    GradVac,
    DCGD,
):
    AGGREGATORS.add(_cls.name, _cls)
