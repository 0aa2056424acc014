"""Issue 11: aggregators as weightings of the Gram matrix, and exact QPs at any number of losses.

MGDA, UPGrad and CAGrad solve their QPs with quadprog plus an exact refinement
(:mod:`autobalance.methods.aggregators._qp`).  Checked here: the optimality (KKT) conditions and
the promised properties on systems of up to K = 40 gradients, agreement with the face
enumeration the solvers replaced (``face_enumeration.py``, exact, K ≤ 8 here), and the shape of
the aggregator API (weights from the Gram matrix, recorded by the training method, a catalog).
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from autobalance import methods
from autobalance.catalog import Catalog
from autobalance.errors import HyperparameterError, UnknownNameError
from autobalance.methods.aggregators import AGGREGATORS, _qp
from autobalance.methods.aggregators.cagrad import cagrad_dual_weights
from face_enumeration import cagrad_dual_weights as enumerated_cagrad_dual
from face_enumeration import min_norm_simplex as enumerated_min_norm
from face_enumeration import nonneg_qp as enumerated_nonneg_qp

PROP = settings(max_examples=60, deadline=None)
# KKT conditions hold to this (relative to max_k ‖g_k‖²); quadprog alone, with its ridge where
# the Gram matrix is singular, reaches about 1e-9 (UPGrad) to 1e-11 (MGDA): the refinement is
# what makes the solutions exact.
EXACT = 1e-12
KINDS = ("iid", "mixed", "duplicate", "anti-parallel", "zero-row", "scaled", "integer")


@st.composite
def systems(draw, max_k: int = 40, kinds: tuple[str, ...] = KINDS) -> torch.Tensor:
    """A ``(K, P)`` gradient matrix of one family; ``P`` may be below ``K`` (rank-deficient)."""
    K = draw(st.integers(2, max_k))
    P = draw(st.integers(1, 60))
    kind = draw(st.sampled_from(kinds))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    G = rng.normal(size=(K, P))
    if kind == "mixed":  # cosines spread over [-1, 1]: many active constraints
        G = rng.normal(size=(K, K)) @ G
    elif kind == "duplicate":
        G[-1] = G[0]
    elif kind == "anti-parallel":
        G[-1] = -2.5 * G[0]
    elif kind == "zero-row":
        G[rng.integers(K)] = 0.0
    elif kind == "scaled":  # row lengths over four orders of magnitude
        G *= 10.0 ** rng.uniform(-2, 2, size=(K, 1))
    elif kind == "integer":  # exact ties, zeros, parallel rows
        G = np.round(G)
        G[0, 0] = G[0, 0] or 1.0
    return torch.tensor(G)


def scale(G: torch.Tensor) -> float:
    """``max_k ‖g_k‖²``: the natural unit of every product ``g_i·g_j``."""
    return float((G * G).sum(dim=1).max())


# --------------------------------------------------------------------------- optimality at any K
@PROP
@given(systems())
def test_mgda_satisfies_the_kkt_conditions(G: torch.Tensor) -> None:
    # min_{α ∈ Δ} ‖αᵀG‖²: optimal iff g_k·d ≥ ‖d‖² for every k, with equality where α_k > 0
    d, alpha = methods.aggregator("mgda").aggregate(G)
    assert alpha.min() >= 0 and alpha.sum() == pytest.approx(1.0, abs=1e-12)
    slack = (G @ d - d @ d).numpy() / scale(G)
    assert slack.min() >= -EXACT
    assert float(alpha @ slack) <= EXACT


@PROP
@given(systems())
def test_upgrad_projections_satisfy_the_kkt_conditions(G: torch.Tensor) -> None:
    # π_i = g_i + Gᵀλ_i projects g_i on {v : Gv ≥ 0} iff λ_i ≥ 0 and g_j·π_i ≥ 0, with equality
    # where λ_ij > 0 — up to the round-off of Gπ_i = M(e_i + λ_i), which grows with ‖λ_i‖₁
    M = (G @ G.T).numpy()
    lam = _qp.nonneg_qp(M, M)
    Gpi = M @ (np.eye(G.shape[0]) + lam)  # column i: G π_i
    tol = EXACT * scale(G) * (1.0 + np.abs(lam).sum(axis=0))
    assert lam.min() >= 0
    assert bool(np.all(Gpi >= -tol))
    assert bool(np.all(np.where(lam > 0, np.abs(Gpi), 0.0) <= tol))
    d = methods.aggregator("upgrad")(G)
    assert float((G @ d).min()) >= -float(tol.max())  # non-conflicting: g_i·d ≥ 0


@PROP
@given(systems())
def test_cagrad_primal_and_dual_values_meet(G: torch.Tensor) -> None:
    # weak duality: min_i g_i·d ≤ F(w) for every feasible d and w ∈ Δ, F(w) = g_wᵀg0 + r‖g_w‖;
    # equality (with ‖d − g0‖ ≤ r) certifies both optimal.
    c = 0.5
    M = (G @ G.T).numpy()
    w = cagrad_dual_weights(M, c)
    g0, gw = G.mean(dim=0), w @ G.numpy()
    r = c * float(g0.norm())
    d = methods.aggregator("cagrad", c=c, rescale=0)(G)
    assert float((d - g0).norm()) <= r * (1 + 1e-9) + 1e-12 * math.sqrt(scale(G))
    if np.linalg.norm(gw) ** 2 <= 1e3 * G.shape[0] * np.finfo(float).eps * scale(G):
        torch.testing.assert_close(d, g0)  # g_w* = 0: d = g0 (documented)
        return
    F = float(gw @ g0.numpy()) + r * float(np.linalg.norm(gw))
    assert float((G @ d).min()) == pytest.approx(F, abs=1e-9 * scale(G))


@PROP
@given(systems(), st.randoms(use_true_random=False))
def test_qp_aggregators_are_permutation_invariant(G: torch.Tensor, rnd) -> None:
    perm = list(range(G.shape[0]))
    rnd.shuffle(perm)
    for name in ("mgda", "upgrad", "cagrad"):
        agg = methods.aggregator(name)
        torch.testing.assert_close(agg(G[perm]), agg(G), rtol=0, atol=1e-8 * math.sqrt(scale(G)))


# ------------------------------------------------------------------ against the face enumeration
@PROP
@given(systems(max_k=8))
def test_solvers_agree_with_the_face_enumeration(G: torch.Tensor) -> None:
    M = (G @ G.T).numpy()
    unit = math.sqrt(scale(G))
    K = G.shape[0]
    for ours, theirs in (
        (_qp.min_norm_simplex(M), enumerated_min_norm(M)),
        (_qp.nonneg_qp(M, M).sum(axis=1), enumerated_nonneg_qp(M, M).sum(axis=1)),
    ):
        assert np.linalg.norm((ours - theirs) @ G.numpy()) <= 1e-8 * unit * K
    if np.linalg.matrix_rank(G.numpy()) == K:  # CAGrad's dual weights are unique
        ours, theirs = cagrad_dual_weights(M, 0.5), enumerated_cagrad_dual(M, 0.5)
        assert np.linalg.norm((ours - theirs) @ G.numpy()) <= 1e-8 * unit


def test_pair_closed_form_matches_the_general_solver() -> None:
    # K = 2 is closed-form; with a duplicated row the same hull goes through quadprog
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        G = torch.randn(2, 5, generator=gen, dtype=torch.float64)
        G[1] = G[1] - 1.5 * G[0]  # usually conflicting
        mgda = methods.aggregator("mgda")
        torch.testing.assert_close(mgda(G), mgda(G[[0, 1, 1]]), rtol=0, atol=1e-12)


def test_exact_directions_for_40_gradients_of_10000_parameters() -> None:
    G = torch.randn(40, 10_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    G = torch.randn(40, 40, generator=torch.Generator().manual_seed(1), dtype=torch.float64) @ G
    d, alpha = methods.aggregator("mgda").aggregate(G)
    slack = (G @ d - d @ d).numpy() / scale(G)
    assert slack.min() >= -EXACT and float(alpha @ slack) <= EXACT
    assert np.count_nonzero(alpha) < 40  # some bounds are active: a real QP, not a linear solve
    d = methods.aggregator("upgrad")(G)
    assert float((G @ d).min()) >= -EXACT * scale(G)
    assert float((G @ G.sum(0)).min()) < 0  # there were conflicts to remove


def test_no_limit_on_the_number_of_losses() -> None:
    G = torch.randn(60, 30, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for name in ("mgda", "upgrad", "cagrad"):
        d = methods.aggregator(name)(G)
        assert d.shape == (30,) and bool(torch.isfinite(d).all())


def test_ridge_only_where_quadprog_needs_it() -> None:
    A = np.array([[1.0, 0.5], [0.5, 1.0]])
    assert _qp._for_quadprog(A) is A
    singular = np.array([[1.0, 1.0], [1.0, 1.0]])
    np.testing.assert_array_equal(_qp._for_quadprog(singular), singular + _qp.RIDGE * np.eye(2))


# ------------------------------------------------------------------------- the aggregator shape
def test_weights_come_from_the_gram_matrix_and_make_the_direction() -> None:
    G = torch.tensor([[1.0, 0.0, 2.0], [-1.0, 1.0, 0.5], [0.3, -2.0, 1.0]], dtype=torch.float64)
    M = (G @ G.T).numpy()
    for name in AGGREGATORS.names():
        d, w = methods.aggregator(name).aggregate(G, losses=[1.0, 2.0, 3.0])
        torch.testing.assert_close(d, torch.from_numpy(w) @ G)
        w_from_gram = methods.aggregator(name).weights(M, np.array([1.0, 2.0, 3.0]))
        np.testing.assert_allclose(w_from_gram, w, rtol=1e-12, atol=1e-14)


def test_training_records_the_weights_it_applies() -> None:
    net = torch.nn.Linear(2, 1).double()
    x = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def losses() -> dict[str, torch.Tensor]:
        return {"a": net(x).pow(2).mean(), "b": (net(x) - 1).pow(2).mean()}

    for name, check in (
        ("sum", lambda w: w == [1.0, 1.0]),
        ("mean", lambda w: w == [0.5, 0.5]),
        ("mgda", lambda w: min(w) >= 0 and math.isclose(sum(w), 1.0)),
    ):
        info = methods.create(name, net.parameters(), lr=1e-3).step(losses())
        assert check(list(info.weights.values())), (name, info.weights)
    assert not hasattr(methods.aggregator("mgda"), "last_weights")


def test_catalog_of_aggregators() -> None:
    assert isinstance(AGGREGATORS, Catalog)
    assert AGGREGATORS.names() == methods.aggregator_names() == methods.names("aggregator")
    assert AGGREGATORS.parameters("cagrad") == {"c": 0.5, "rescale": 1}
    assert AGGREGATORS.parameters("pcgrad") == {"shuffle": True, "seed": 0}
    assert AGGREGATORS.parameters("sum") == {}
    assert methods.spec("upgrad").summary == AGGREGATORS.entry("upgrad").summary
    with pytest.raises(UnknownNameError, match="Did you mean 'upgrad'"):
        methods.aggregator("upgrd")
    with pytest.raises(HyperparameterError, match="has no hyperparameter 'c'"):
        methods.aggregator("mgda", c=1.0)


REGISTER_YOUR_OWN = """
from dataclasses import dataclass

import numpy as np
import torch

from autobalance import methods
from autobalance.methods.aggregators import Aggregator


@dataclass
class First(Aggregator):
    \"\"\"Only the first gradient.\"\"\"

    factor: float = 1.0

    def weights(self, M, losses=None):
        return np.eye(M.shape[0])[0] * self.factor


methods.register_aggregator("first", First)
G = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
torch.testing.assert_close(methods.aggregator("first", factor=2.0)(G), 2 * G[0])
assert methods.spec("first").family == "aggregator"
assert methods.spec("first").summary == "Only the first gradient."
net = torch.nn.Linear(1, 1)
m = methods.create("first", net.parameters(), lr=0.1, factor=0.5)
info = m.step({"a": net(torch.ones(1, 1)).sum(), "b": net(torch.zeros(1, 1)).sum()})
assert list(info.weights.values()) == [0.5, 0.0], info.weights
print("ok")
"""


def test_register_your_own_aggregator() -> None:
    # in a fresh interpreter: registering changes the process-wide catalogs
    out = subprocess.run(
        [sys.executable, "-c", REGISTER_YOUR_OWN], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
