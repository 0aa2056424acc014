"""Networks: registration, shapes, parameter counts by hand, initial-state properties."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from autobalance import nets
from autobalance.errors import ConfigError
from autobalance.nets.fourier import FourierFeatures
from autobalance.nets.modified_mlp import ModifiedMLP
from autobalance.nets.periodic import PeriodicEmbedding
from autobalance.nets.pirate import PirateNet
from autobalance.nets.rwf import RWFLinear, factorize


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registration_and_common_parameters() -> None:
    assert {"mlp", "modified_mlp", "pirate"} <= set(nets.names())
    common = {"fourier_features", "fourier_sigma", "periodic", "rwf", "rwf_mu", "rwf_sigma"}
    for name in ("mlp", "modified_mlp", "pirate"):
        params = nets.parameters(name)
        assert common <= set(params) and "input_names" not in params
        assert isinstance(nets.create(name, 3, 2, width=4), nn.Module)
    assert nets.parameters("pirate")["fourier_features"] == 64  # the paper's embedding
    assert nets.parameters("mlp")["fourier_features"] == 0
    assert {e.name: e.summary for e in nets.describe()}["pirate"].startswith("PirateNet")


@pytest.mark.parametrize("name", ["mlp", "modified_mlp", "pirate"])
@pytest.mark.parametrize(
    "extra",
    [{}, {"fourier_features": 3}, {"periodic": {"0": 2.0}, "rwf": True}],
    ids=["plain", "fourier", "periodic-rwf"],
)
def test_shapes(name: str, extra: dict) -> None:
    model = nets.create(name, 2, 3, width=5, **extra)
    assert model(torch.randn(7, 2)).shape == (7, 3)


def test_parameter_counts_by_hand() -> None:
    # MLP 2 -> Fourier(2 features: 4 columns) -> 3 -> 1: (4·3 + 3) + (3·1 + 1); B is a buffer.
    mlp = nets.create("mlp", 2, 1, width=3, depth=1, fourier_features=2)
    assert n_params(mlp) == 19 and mlp.embedding.B.shape == (2, 2)
    # RWF adds one scale per output unit: 13 + (3 + 1).
    assert n_params(nets.create("mlp", 2, 1, width=3, depth=1, rwf=True)) == 17
    # Modified MLP, width 3, 2 gated layers: U, V 2(2·3+3) + (2·3+3) + (3·3+3) + (3·1+1).
    assert n_params(nets.create("modified_mlp", 2, 1, width=3, depth=2)) == 18 + 9 + 12 + 4
    # PirateNet, e = 4: U, V 2(4·3+3) + block (4·3+3 + 3·3+3 + 3·4+4 + α) + output 4·1+1.
    pirate = nets.create("pirate", 2, 1, width=3, blocks=1, fourier_features=2)
    assert n_params(pirate) == 30 + (15 + 12 + 16 + 1) + 5
    # Periodic embedding of one of two inputs: 3 columns.
    assert n_params(nets.create("mlp", 2, 1, width=3, depth=1, periodic={1: 1.0})) == 12 + 4


def test_plain_mlp_is_unchanged_by_the_new_options() -> None:
    model = nets.create("mlp", 2, 1, width=4, depth=2)
    assert all(k.startswith("layers.") for k in model.state_dict())
    torch.manual_seed(3)
    a = nets.create("mlp", 2, 1, width=4, depth=2)
    torch.manual_seed(3)
    b = nets.MLP(2, 1, 4, 2)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_fourier_features_formula_and_fixed_buffer() -> None:
    emb = FourierFeatures(2, features=3, sigma=2.0)
    assert emb.B.shape == (3, 2) and not emb.B.requires_grad and list(emb.parameters()) == []
    assert "B" in emb.state_dict()
    x = torch.randn(5, 2, dtype=torch.float64)
    b = emb.B.double()
    proj = 2 * math.pi * x @ b.T
    expected = torch.cat([torch.cos(proj), torch.sin(proj)], dim=1)
    torch.testing.assert_close(emb.double()(x), expected)
    torch.manual_seed(0)
    big = FourierFeatures(1, features=20000, sigma=2.0)
    assert big.B.std().item() == pytest.approx(2.0, rel=0.03)


def test_periodic_embedding_is_exactly_periodic() -> None:
    emb = PeriodicEmbedding(2, {0: 3.0})
    x = torch.tensor([[0.3, 0.7], [1.1, -0.2]], dtype=torch.float64)
    out = emb.double()(x)
    w = 2 * math.pi / 3.0
    expected = torch.stack([torch.cos(w * x[:, 0]), torch.sin(w * x[:, 0]), x[:, 1]], dim=1)
    torch.testing.assert_close(out, expected)
    model = nets.create("modified_mlp", 2, 1, width=6, periodic={"x": 3.0}, input_names=("x", "t"))
    model = model.double()
    shifted = x + torch.tensor([3.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(model(shifted), model(x), rtol=0, atol=1e-12)


def test_bad_embedding_parameters_raise() -> None:
    with pytest.raises(ConfigError, match="unknown input 'z'"):
        nets.create("mlp", 2, 1, periodic={"z": 1.0}, input_names=("x", "y"))
    with pytest.raises(ConfigError, match="unknown input 'x'.*no input names"):
        nets.create("mlp", 2, 1, periodic={"x": 1.0})
    with pytest.raises(ConfigError, match="out of range"):
        nets.create("mlp", 2, 1, periodic={5: 1.0})
    with pytest.raises(ConfigError, match="must be > 0"):
        nets.create("mlp", 2, 1, periodic={0: -1.0})
    with pytest.raises(ConfigError, match="fourier_features"):
        nets.create("mlp", 2, 1, fourier_features=-1)
    with pytest.raises(ConfigError, match="fourier_sigma"):
        nets.create("pirate", 2, 1, fourier_sigma=0.0)
    with pytest.raises(ConfigError, match="'depth' must be >= 1"):
        nets.create("modified_mlp", 2, 1, depth=0)
    with pytest.raises(ConfigError, match="'blocks' must be >= 1"):
        nets.create("pirate", 2, 1, blocks=0)
    with pytest.raises(ConfigError, match="parameter 'rwf'"):
        nets.create("mlp", 2, 1, rwf="yes")


def test_rwf_reconstructs_the_plain_weights() -> None:
    linear = nn.Linear(4, 3).double()
    layer = RWFLinear(linear, mu=1.0, sigma=0.1)
    torch.testing.assert_close(layer.weight, linear.weight)
    torch.testing.assert_close(layer.weight, torch.diag(torch.exp(layer.s)) @ layer.v)
    x = torch.randn(5, 4, dtype=torch.float64)
    torch.testing.assert_close(layer(x), linear(x))
    # The same network from the same seed, with and without RWF: the same function.
    for name in ("mlp", "modified_mlp", "pirate"):
        torch.manual_seed(7)
        plain = nets.create(name, 2, 1, width=8)
        torch.manual_seed(7)
        factored = nets.create(name, 2, 1, width=8, rwf=True)
        linears = [m for m in plain.modules() if isinstance(m, nn.Linear)]
        rwfs = [m for m in factored.modules() if isinstance(m, RWFLinear)]
        assert len(linears) == len(rwfs) > 0
        assert not any(isinstance(m, nn.Linear) for m in factored.modules())
        for a, b in zip(linears, rwfs, strict=True):
            torch.testing.assert_close(b.weight, a.weight)
        x = torch.randn(6, 2)
        torch.testing.assert_close(factored(x), plain(x))
    torch.manual_seed(0)
    scales = factorize(nn.Sequential(nn.Linear(2, 5000)), mu=1.0, sigma=0.1)[0].s
    assert scales.mean().item() == pytest.approx(1.0, abs=0.01)
    assert scales.std().item() == pytest.approx(0.1, rel=0.05)


def test_modified_mlp_forward_by_hand() -> None:
    model = ModifiedMLP(2, 1, width=3, depth=2).double()
    x = torch.randn(4, 2, dtype=torch.float64)
    u = torch.tanh(model.encoder_u(x))
    v = torch.tanh(model.encoder_v(x))
    h = x
    for layer in model.hidden:
        z = torch.tanh(layer(h))
        h = (1 - z) * u + z * v
    torch.testing.assert_close(model(x), model.output(h))


def test_pirate_starts_as_a_linear_map_of_the_embedding() -> None:
    model = PirateNet(2, 2, width=8, blocks=3, fourier_features=5).double()
    assert all(block.alpha.item() == 0.0 for block in model.blocks)
    x = torch.randn(10, 2, dtype=torch.float64)
    torch.testing.assert_close(model(x), model.output(model.embedding(x)), rtol=0, atol=0)
    with torch.no_grad():
        model.blocks[1].alpha.fill_(0.5)
    assert not torch.allclose(model(x), model.output(model.embedding(x)))


def test_pirate_physics_informed_output_initialisation() -> None:
    model = PirateNet(1, 1, width=8, blocks=2, fourier_features=6, rwf=True).double()
    x = torch.linspace(-1, 1, 9, dtype=torch.float64)[:, None]  # 9 points, 13 unknowns: exact
    target = torch.sin(3 * x)
    model.fit_output_layer(x, target)
    torch.testing.assert_close(model(x), target, atol=1e-8, rtol=0)
    with pytest.raises(ConfigError, match="targets must have shape"):
        model.fit_output_layer(x, target[:3])
