"""Adapters that bring autobalance methods to the frameworks users already train with.

* :mod:`autobalance.integrations.lightning`: :class:`~autobalance.integrations.lightning.
  LightningBalancer`, any method (AutoBalance, ``autobalance.methods.create(...)``) as a PyTorch
  Lightning optimizer, under automatic or manual optimisation (``pip install
  "autobalance[lightning]"``).
* :mod:`autobalance.integrations.deepxde`: :func:`~autobalance.integrations.deepxde.
  compile_balanced`, a DeepXDE ``Model`` (PyTorch backend) trained by any method, its per-term
  losses handed over by name (``pip install "autobalance[deepxde]"``).

Each adapter is imported on its own, so that neither framework is needed to use the other.
"""

__all__: list[str] = []
