"""What the networks share: hyperparameters as a frozen dataclass, the input embedding, the dense
layer they start from and random weight factorisation.

A network is a :class:`Network` subclass with a nested frozen dataclass ``Config`` of its own
hyperparameters (``width``, ``depth``, ...), which extends :class:`NetworkConfig` (the embedding
and RWF hyperparameters every network takes, keyword-only, so they follow the network's own).
Each hyperparameter is written once, as a field with its default and its rules
(:func:`~autobalance._params.param`).  ``Network.__init__`` builds the config from its arguments
(``MLP(2, 1, width=8)`` or ``MLP(2, 1, 8, 3)``), validates it, builds the embedding, lets the
subclass build its layers (:meth:`Network.build`) and factorises them when ``rwf`` is set:

    embedding (periodic, Fourier features)  →  the network's layers  →  output

The catalog (``nets.create``) reads the parameters from ``Config``.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from autobalance._params import check_at_least, validate
from autobalance.nets.embedding import make_embedding
from autobalance.nets.rwf import factorize

__all__ = ["Network", "NetworkConfig", "xavier_linear"]


def xavier_linear(fan_in: int, fan_out: int) -> nn.Linear:
    """``nn.Linear(fan_in, fan_out)`` with ``W ~ N(0, 2/(fan_in + fan_out))`` (Glorot & Bengio
    2010) and ``b = 0``: the dense layer every network here starts from."""
    linear = nn.Linear(fan_in, fan_out)
    nn.init.xavier_normal_(linear.weight)
    nn.init.zeros_(linear.bias)
    return linear


@dataclass(frozen=True, kw_only=True)
class NetworkConfig:
    """The hyperparameters every network takes (keyword-only).

    Attributes:
        fourier_features, fourier_sigma, periodic: the input embedding
            (:mod:`autobalance.nets.embedding`); none by default.
        rwf, rwf_mu, rwf_sigma: random weight factorisation of every dense layer
            (:mod:`autobalance.nets.rwf`); off by default.
    """

    fourier_features: int = 0
    fourier_sigma: float = 1.0
    periodic: Mapping[str | int, float] | None = None
    rwf: bool = False
    rwf_mu: float = 1.0
    rwf_sigma: float = 0.1


class Network(nn.Module, abc.ABC):
    """Base of the catalogued networks: ``(N, in_dim) -> (N, out_dim)``.

    Args:
        in_dim, out_dim: numbers of inputs and outputs.
        args, params: the fields of :attr:`Config` (positionally, its own fields in order).
        input_names: the problem's input names, to give ``periodic`` by name (passed by
            ``nets.create``; not a hyperparameter).

    Attributes:
        config: the validated hyperparameters.
        embedding: the input embedding (``nn.Identity`` when there is none), ``embed_dim`` wide.
    """

    #: The name the network is catalogued under, used in messages.
    name: ClassVar[str] = ""
    #: The network's hyperparameters.
    Config: ClassVar[type[NetworkConfig]] = NetworkConfig

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        *args: Any,
        input_names: Sequence[str] | None = None,
        **params: Any,
    ) -> None:
        super().__init__()
        where = f"network {self.name!r}"
        check_at_least(where, 1, in_dim=in_dim, out_dim=out_dim)
        self.config = self.Config(*args, **params)
        validate(where, self.config)
        self.in_dim, self.out_dim = in_dim, out_dim
        config = self.config
        self.embedding, self.embed_dim = make_embedding(
            in_dim,
            fourier_features=config.fourier_features,
            fourier_sigma=config.fourier_sigma,
            periodic=config.periodic,
            input_names=input_names,
        )
        self.build()
        if config.rwf:
            factorize(self, config.rwf_mu, config.rwf_sigma)

    @abc.abstractmethod
    def build(self) -> None:
        """Create the layers after :attr:`embedding` (``embed_dim`` wide) from :attr:`config`,
        each from :func:`xavier_linear`, in the order their weights are drawn."""

    def own_hyperparameters(self) -> dict[str, Any]:
        """The fields of :attr:`config` that are not shared by every network (``width``, ...)."""
        shared = {f.name for f in dataclasses.fields(NetworkConfig)}
        return {
            f.name: getattr(self.config, f.name)
            for f in dataclasses.fields(self.config)
            if f.name not in shared
        }

    def extra_repr(self) -> str:
        sizes = {"in_dim": self.in_dim, "out_dim": self.out_dim, **self.own_hyperparameters()}
        return ", ".join(f"{key}={value}" for key, value in sizes.items())
