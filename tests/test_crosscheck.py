"""Our aggregators against independent implementations on PyPI, on random matrices.

TorchJD (Quinton & Rey) and ``conflictfree`` (the ConFIG authors' package) are optional test
dependencies (the ``dev`` extra installs them); each test is skipped without its package.
Conventions that differ by design are stated where they apply.
"""

from __future__ import annotations

import pytest
import torch

from autobalance import methods

F64 = torch.float64


def random_matrices(seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(k, p, generator=gen, dtype=F64) for k, p in ((2, 7), (3, 11), (4, 20))]


def relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).norm() / theirs.norm())


@pytest.mark.parametrize("seed", range(5))
def test_torchjd_aggregators(seed: int) -> None:
    aggregation = pytest.importorskip("torchjd.aggregation")
    reference = {
        # exact min-norm point; TorchJD's Frank-Wolfe run to convergence
        "mgda": aggregation.MGDA(epsilon=1e-15, max_iters=100_000),
        "imtl-g": aggregation.IMTLG(),
        "config": aggregation.ConFIG(),
        "mean": aggregation.Mean(),
        "sum": aggregation.Sum(),
    }
    for G in random_matrices(seed):
        for name, theirs in reference.items():
            err = relative_error(methods.aggregator(name)(G), theirs(G))
            assert err < 1e-9, f"{name} K={G.shape[0]}: {err:.2e}"
        # Aligned-MTL: TorchJD weights the aligned rows by their mean, the authors' balancer (and
        # ours) by ones, so ours is K times theirs.
        K = G.shape[0]
        err = relative_error(methods.aggregator("aligned-mtl")(G), K * aggregation.AlignedMTL()(G))
        assert err < 1e-9
        if K == 2:  # PCGrad's random order only matters from K = 3 on
            err = relative_error(methods.aggregator("pcgrad")(G), aggregation.PCGrad()(G))
            assert err < 1e-12


@pytest.mark.parametrize("seed", range(5))
def test_conflictfree_config_and_imtl_g(seed: int) -> None:
    operators = pytest.importorskip("conflictfree.grad_operator")
    for G in random_matrices(seed):
        G32 = G.float()  # the package computes in float32 (its lstsq right-hand side is float32)
        ours = methods.aggregator("config")(G32.double())
        assert relative_error(ours, operators.ConFIG_update(G32).double()) < 1e-5
        theirs = operators.IMTLGOperator().calculate_gradient(G32).double()
        assert relative_error(methods.aggregator("imtl-g")(G32.double()), theirs) < 1e-5
