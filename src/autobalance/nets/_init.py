"""The dense layer every network here starts from: Xavier-normal weight, zero bias."""

from __future__ import annotations

from torch import nn

__all__ = ["check_sizes", "xavier_linear"]


def xavier_linear(fan_in: int, fan_out: int) -> nn.Linear:
    """``nn.Linear(fan_in, fan_out)`` with ``W ~ N(0, 2/(fan_in + fan_out))`` (Glorot & Bengio
    2010) and ``b = 0``, as the :class:`~autobalance.nets.mlp.MLP` layers."""
    linear = nn.Linear(fan_in, fan_out)
    nn.init.xavier_normal_(linear.weight)
    nn.init.zeros_(linear.bias)
    return linear


def check_sizes(network: str, minimum: dict[str, tuple[int, int]]) -> None:
    """Raise ``ConfigError`` naming ``network`` and the key when a size is below its minimum.

    ``minimum`` maps a parameter name to ``(value, least allowed value)``.
    """
    from autobalance.errors import ConfigError

    for key, (value, least) in minimum.items():
        if value < least:
            raise ConfigError(f"network {network!r}: {key!r} must be >= {least}, got {value}")
