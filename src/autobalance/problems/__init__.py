"""PDE problems, created by name: ``create(name, **params)``; ``names()`` lists them.

Every problem is a dataclass of its parameters (:class:`~autobalance.problems.base.Problem`);
:data:`CATALOG` lists them, filled below by explicit imports.  Add your own with
``CATALOG.add(MyProblem.name, MyProblem)``.
"""

from __future__ import annotations

from autobalance.catalog import Catalog
from autobalance.problems.allen_cahn import AllenCahn
from autobalance.problems.base import Batch, Box, Model, Problem, input_columns
from autobalance.problems.burgers import Burgers
from autobalance.problems.convection import Convection
from autobalance.problems.helmholtz import Helmholtz
from autobalance.problems.klein_gordon import KleinGordon
from autobalance.problems.kovasznay import Kovasznay
from autobalance.problems.poisson_inverse import PoissonInverse
from autobalance.problems.reaction_diffusion import ReactionDiffusion
from autobalance.problems.wave import Wave

__all__ = [
    "CATALOG",
    "Batch",
    "Box",
    "Model",
    "Problem",
    "create",
    "describe",
    "get",
    "input_columns",
    "names",
    "parameters",
]

#: Every problem by name; the functions below are its methods.
CATALOG: Catalog[Problem] = Catalog("problem")
for _problem in (
    AllenCahn,
    Burgers,
    Convection,
    Helmholtz,
    KleinGordon,
    Kovasznay,
    PoissonInverse,
    ReactionDiffusion,
    Wave,
):
    CATALOG.add(_problem.name, _problem)

create = CATALOG.create
describe = CATALOG.describe
get = CATALOG.get
names = CATALOG.names
parameters = CATALOG.parameters
