"""Networks by name: ``create(name, in_dim, out_dim, **params)``; ``names()`` lists them.

Every network is a :class:`~autobalance.nets.network.Network` whose hyperparameters are the
fields of its ``Config`` dataclass; :data:`CATALOG` lists them, filled below by explicit imports.
``create`` passes ``input_names`` (the problem's, optional) through to the network, so that
parameters can name inputs, e.g. ``periodic={"x": 2.0}``.
"""

from __future__ import annotations

from autobalance.catalog import Catalog
from autobalance.nets.mlp import MLP
from autobalance.nets.modified_mlp import ModifiedMLP
from autobalance.nets.network import Network, NetworkConfig
from autobalance.nets.pirate import PirateNet

__all__ = [
    "CATALOG",
    "MLP",
    "ModifiedMLP",
    "Network",
    "NetworkConfig",
    "PirateNet",
    "create",
    "describe",
    "names",
    "parameters",
]

#: Every network by name; the functions below are its methods.
CATALOG: Catalog[Network] = Catalog("network", skip=("input_names",))
for _network in (MLP, ModifiedMLP, PirateNet):
    CATALOG.add(_network.name, _network, parameters_from=_network.Config)

create = CATALOG.create
describe = CATALOG.describe
names = CATALOG.names
parameters = CATALOG.parameters
