"""HardwareCost: the accelerator model as the search's cost (tracing, densities, caching, CLI)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import tasder.hw.mapper
from tasder.nn.config import LayerSpec
from tasder.search import HardwareCost, search
from tasder.workloads import density_text


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


@pytest.fixture
def net() -> Net:
    torch.manual_seed(0)
    m = Net().eval()
    with torch.no_grad():
        m.fc.weight[:, ::2] = 0.0  # half the fc weights are zero: measured density 0.5
    return m


def test_density_text() -> None:
    assert density_text(1.0) == "dense" and density_text(0.9995) == "dense"
    assert density_text(0.25) == "unstructured(0.25)"
    assert density_text(0.0) == "unstructured(0.001)"  # stays a valid density model
    assert density_text(float("nan")) == "dense"


def test_for_model_traces_shapes_and_measures_densities(net: Net) -> None:
    x = torch.randn(5, 8, 4, 4)
    hc = HardwareCost.for_model(net, x, "ttc-vegeta-m8", "W", budget=200)
    conv, fc = hc.problems["conv"], hc.problems["fc"]
    # per inference: N of the conv is P·Q (not × batch 5), the linear's N is one row
    assert (conv.M, conv.K, conv.N) == (16, 8 * 9, 16)
    assert (fc.M, fc.K, fc.N) == (10, 256, 1)
    assert str(fc.a_density) == "unstructured(0.5)"
    assert str(conv.a_density) == "dense" and str(conv.b_density) == "dense"  # randn input has no zeros
    b = fc.b_density.density
    assert 0.3 < b < 0.7  # ReLU output
    assert not net.training  # mode restored


def test_series_lowers_edp_on_ttc_and_not_on_tc(net: Net) -> None:
    x = torch.randn(2, 8, 4, 4)
    ttc = HardwareCost.for_model(net, x, "ttc-vegeta-m8", "W", budget=300)
    tc = HardwareCost("tc", ttc.problems, "W", budget=300)
    cfg = {"conv": LayerSpec("2:8", "W"), "fc": LayerSpec("2:8", "W")}
    assert ttc(cfg) < ttc({})
    assert tc(cfg) == pytest.approx(tc({}), rel=1e-12)  # TC runs everything dense
    t = ttc.totals(cfg)
    assert ttc(cfg) == pytest.approx(t["energy_pj"] * 1e-12 * t["cycles"] / ttc.arch.clock_hz)
    assert str(ttc.workload(cfg).layers[0].a_density) == "2:8"
    a_cfg = {"conv": LayerSpec("2:8", "A")}
    assert str(ttc.workload(a_cfg).layers[0].b_density) == "2:8"  # a mode-A spec replaces the input's density
    assert str(ttc.workload(a_cfg).layers[0].a_density) == "dense"


def test_each_distinct_layer_is_mapped_once(net: Net, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = tasder.hw.mapper.map_layer

    def counting(arch, problem, **kw):
        calls.append(problem.name)
        return real(arch, problem, **kw)

    monkeypatch.setattr(tasder.hw.mapper, "map_layer", counting)
    hc = HardwareCost.for_model(net, torch.randn(2, 8, 4, 4), "ttc-vegeta-m8", "W", budget=100)
    for _ in range(3):
        hc({"fc": LayerSpec("1:8", "W")})
        hc({})
    assert sorted(calls) == ["conv", "fc", "fc"]  # fc dense and fc 1:8; conv once


def test_bad_inputs_are_named(net: Net) -> None:
    hc = HardwareCost.for_model(net, torch.randn(2, 8, 4, 4), "tc", "W", budget=50)
    with pytest.raises(KeyError, match="nope"):
        hc({"nope": LayerSpec("2:8", "W")})
    with pytest.raises(ValueError, match="metric"):
        HardwareCost("tc", hc.problems, metric="latency")
    with pytest.raises(ValueError, match="mode"):
        HardwareCost("tc", hc.problems, "X")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        HardwareCost("tc", {})
    with pytest.raises(ValueError, match=r"no nn\.Linear"):
        HardwareCost.for_model(nn.ReLU(), torch.randn(2, 3), "tc")


def test_search_minimises_the_modelled_edp(net: Net) -> None:
    x = torch.randn(16, 8, 4, 4)
    ref = net(x).argmax(1)

    def agreement(m: nn.Module) -> float:
        with torch.no_grad():
            return float((m(x).argmax(1) == ref).double().mean())

    hc = HardwareCost.for_model(net, x, "ttc-vegeta-m8", "W", budget=200)
    r = search(net, "ttc-vegeta-m8", agreement, [x], "W", 0.5, cost=hc, progress=False)
    assert r.cost_before == pytest.approx(hc({}))
    assert r.cost_after <= r.cost_before
    assert r.cost_after == pytest.approx(hc(r.config.layers))


def test_cli_cost_flags(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    import tasder.zoo
    from tasder.cli.app import run

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8)).eval()
    x = torch.randn(32, 16)
    entry = SimpleNamespace(name="tiny", description="tiny", model=model, metric="score",
                            evaluate=lambda m: 1.0, calibration=[x],
                            metadata={"evaluate_val": lambda m: 1.0, "val_metric": "val score"})
    monkeypatch.setattr(tasder.zoo, "load", lambda name: entry, raising=False)
    assert run(["search", "tiny", "--design", "tc"]) == 2
    assert "--cost edp" in capsys.readouterr().err
    assert run(["search", "tiny", "--cost", "latency"]) == 2
    assert "latency" in capsys.readouterr().err
    code = run(["search", "tiny", "--cost", "edp", "--mapper-budget", "100", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    hw = doc["hardware"]
    assert hw["design"] == "ttc-vegeta-m8" and hw["unit"] == "J·s"
    assert hw["after_vs_tc"] <= hw["before_vs_tc"] + 1e-12
