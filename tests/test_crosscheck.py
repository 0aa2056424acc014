"""Our aggregators against independent implementations on PyPI, on random matrices.

TorchJD (Quinton & Rey) and ``conflictfree`` (the ConFIG authors' package) are optional test
dependencies (the ``dev`` extra installs them, with ``qpsolvers``, which TorchJD's UPGrad needs);
each test is skipped without its package.  TorchJD's CAGrad also needs ``cvxpy`` and
``clarabel`` (``pip install "torchjd[cagrad]"``), which the ``dev`` extra does not install.
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


def mixed_matrices(seed: int) -> list[torch.Tensor]:
    """``L Z`` with Gaussian ``L`` (``K × K``) and ``Z``: cosines over ``[−1, 1]``, many active
    constraints, up to ``K = 40`` (full row rank: the QPs have unique solutions)."""
    gen = torch.Generator().manual_seed(1000 + seed)
    out = []
    for k, p in ((2, 7), (3, 11), (6, 30), (12, 50), (40, 200)):
        Z = torch.randn(k, p, generator=gen, dtype=F64)
        out.append(torch.randn(k, k, generator=gen, dtype=F64) @ Z)
    return out


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


@pytest.mark.parametrize("seed", range(5))
def test_torchjd_upgrad(seed: int) -> None:
    aggregation = pytest.importorskip("torchjd.aggregation")
    pytest.importorskip("qpsolvers")
    from torchjd.linalg import QuadprogProjector

    # TorchJD's default projector adds a ridge of 1e-4 (of the trace-normalised Gram matrix);
    # without it its quadprog solve is exact on these full-rank systems
    theirs = aggregation.UPGrad(projector=QuadprogProjector(norm_eps=0.0, reg_eps=0.0))
    for G in mixed_matrices(seed):
        err = relative_error(methods.aggregator("upgrad")(G), theirs(G))
        assert err < 1e-9, f"upgrad K={G.shape[0]}: {err:.2e}"


@pytest.mark.parametrize("seed", range(5))
def test_torchjd_cagrad(seed: int) -> None:
    aggregation = pytest.importorskip("torchjd.aggregation")
    pytest.importorskip("cvxpy")
    pytest.importorskip("clarabel")
    # TorchJD's CAGrad does not rescale d (our rescale=0) and solves the dual with an interior
    # point method (Clarabel at its default tolerances): the directions agree to about 1e-4, and
    # ours is never worse on the primal objective min_i g_i·d (both within ‖d − g0‖ ≤ c‖g0‖)
    for G in mixed_matrices(seed):
        unit = float((G * G).sum(dim=1).max())
        for c in (0.25, 0.5):
            ours = methods.aggregator("cagrad", c=c, rescale=0)(G)
            theirs = aggregation.CAGrad(c=c, norm_eps=0.0)(G)
            assert relative_error(ours, theirs) < 1e-3, f"cagrad K={G.shape[0]} c={c}"
            assert float((G @ ours).min()) >= float((G @ theirs).min()) - 1e-12 * unit
