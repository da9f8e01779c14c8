"""The end-to-end effect of a move (tasder.search.effect) and cost-aware's use of it."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from search_helpers import tiny_calibration as _calib
from search_helpers import tiny_mlp as _mlp
from tasder.nn import LayerSpec, TASDConfig, apply_tasd
from tasder.nn.layers import make_tasd_layer
from tasder.search import search
from tasder.search.effect import EFFECT_BATCHES, measure_model_effect, output_tensors
from tasder.search.methods import measure_layers, move_key, select_layers
from tasder.sparsity import parse_series
from tasder.targets import candidate_series


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_effect_is_the_models_relative_output_change_with_that_layer_alone_replaced():
    model = _mlp()
    batches = _calib() + _calib()  # four batches: only the first EFFECT_BATCHES count
    specs = [LayerSpec(parse_series("4:8")), LayerSpec(parse_series("2:8+1:8"), "A")]
    probes = {name: {move_key(sp): make_tasd_layer(module, sp).eval() for sp in specs}
              for name, module in select_layers(model, None)}
    before = _state(model)
    effects = measure_model_effect(model, probes, batches)
    with torch.no_grad():
        used = batches[:EFFECT_BATCHES]
        ref = torch.cat([model(b) for b in used]).double()
        for name, _ in select_layers(model, None):
            for sp in specs:
                net = apply_tasd(model, TASDConfig({name: sp}))
                out = torch.cat([net(b) for b in used]).double()
                expected = float((out - ref).norm() / ref.norm())
                assert effects[(name, move_key(sp))] == pytest.approx(expected, rel=1e-9)
                assert expected > 0
    # the model is restored: the same modules, the same weights
    assert all(type(m) is not type(probes["0"][move_key(specs[0])]) for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


class _Shared(nn.Module):
    """One Linear registered under two names and called twice."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.first = nn.Linear(16, 16)
        self.again = self.first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.again(torch.relu(self.first(x)))


def test_a_shared_layer_is_replaced_at_every_alias_as_apply_tasd_does():
    model = _Shared().eval()
    spec = LayerSpec(parse_series("2:8"))
    effects = measure_model_effect(model, {"first": {move_key(spec): make_tasd_layer(model.first, spec).eval()}},
                                   _calib())
    with torch.no_grad():
        x = _calib()[0]
        ref = model(x).double()
        out = apply_tasd(model, TASDConfig({"first": spec}))(x).double()
    assert effects[("first", move_key(spec))] == pytest.approx(float((out - ref).norm() / ref.norm()), rel=1e-9)
    assert model.first is model.again and type(model.first) is nn.Linear


def test_the_model_is_restored_when_a_move_fails():
    model = _mlp()
    original = model[2]

    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        measure_model_effect(model, {"2": {("W", "4:8"): Broken()}}, _calib())
    assert model[2] is original


def test_a_move_that_changes_the_output_shape_is_named():
    model = _mlp()
    with pytest.raises(ValueError, match=r"layer '4'.*changed shape"):
        measure_model_effect(model, {"4": {("W", "x"): nn.Linear(32, 3)}}, _calib())


def test_a_model_with_a_zero_output_is_refused():
    model = _mlp()
    with torch.no_grad():
        model[4].weight.zero_()
        model[4].bias.zero_()
    with pytest.raises(ValueError, match="norm² 0"):
        measure_model_effect(model, {"0": {("W", "4:8"): make_tasd_layer(model[0], LayerSpec(parse_series("4:8")))}},
                             _calib())


def test_output_tensors_finds_every_floating_tensor_in_nested_outputs():
    a, b, c = torch.ones(2), torch.zeros(3, dtype=torch.float64), torch.arange(4)
    assert [t.shape for t in output_tensors({"x": a, "y": (b, c, "text"), "z": None})] == [(2,), (3,)]
    assert output_tensors(c) == []


def _bert_and_batches():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=32)
    torch.manual_seed(0)
    model = transformers.BertModel(config, add_pooling_layer=False).eval()
    g = torch.Generator().manual_seed(3)
    batches = [{"input_ids": torch.randint(1, 64, (4, 9), generator=g)} for _ in range(3)]
    return model, batches


def test_replaying_the_unchanged_stages_gives_the_full_forwards_numbers_bit_for_bit():
    model, batches = _bert_and_batches()
    spec = LayerSpec(parse_series("2:8+1:8"), "A")
    probes = {name: {move_key(spec): make_tasd_layer(module, spec).eval()}
              for name, module in select_layers(model, ["encoder.layer.*.output.dense", "*.query"])}
    full = measure_model_effect(model, probes, batches)
    staged = measure_model_effect(model, probes, batches, stages=["embeddings", "encoder.layer.*"])
    assert staged == full
    assert len(set(full.values())) == len(full)  # six different moves, six different effects


class _Residual(nn.Module):
    """y = big(x) + 1e-3 · small(x): a layer error in ``small`` barely reaches the output."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.small, self.big = nn.Linear(16, 8), nn.Linear(16, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.big(x) + 1e-3 * self.small(x)


def test_cost_aware_ranks_moves_by_their_effect_on_the_model_output():
    """``small``'s own output error is as large as ``big``'s, but its effect on the model's output is
    1000× smaller: ranked by effect, cost-aware tries ``small`` first and takes it down to ``1:8``."""
    model = _Residual().eval()
    calib = _calib()
    layers, _, _ = measure_layers(model, calib, select_layers(model, None), candidate_series("ttc-vegeta-m8"), "W",
                                  effect=True)
    by_name = {ly.name: ly for ly in layers}
    key = ("W", "1:8")
    assert by_name["small"].effect[key] < 1e-2 * by_name["big"].effect[key]
    assert by_name["small"].damage[key] > 0.5 * by_name["big"].damage[key]
    with torch.no_grad():
        ref = torch.cat([model(b) for b in calib])

    def fidelity(net: nn.Module) -> float:
        with torch.no_grad():
            return 1.0 - float((torch.cat([net(b) for b in calib]) - ref).norm() / ref.norm())

    r = search(model, "ttc-vegeta-m8", fidelity, calib, "W", 0.99, "cost-aware", progress=False)
    assert set(r.history[1].layers) == {"small"} and r.history[1].ok
    assert str(r.config.resolve("small").series) == "1:8"
    assert math.isfinite(r.metric_final)


def test_the_ranked_chain_is_what_cost_aware_bisects():
    """ranked_chain gives cost-aware's phase-1 configs: each adds moves (never a milder spec), costs
    fall along it, and the configs the search's bisection evaluated are chain configs at the
    positions its steps name."""
    from tasder.search.methods import layer_mac_cost, ranked_chain

    model = _mlp()
    layers, total, _ = measure_layers(model, _calib(), select_layers(model, None),
                                      candidate_series("ttc-vegeta-m8"), "W", effect=True)
    cost = layer_mac_cost(layers, total)
    chain = ranked_chain(layers, cost)
    density = {str(s): s.effective_density for s in candidate_series("ttc-vegeta-m8")}
    assert len(chain) == sum(len(ly.candidates) for ly in layers)  # every W move saves MACs here
    for before, after in itertools.pairwise(chain):
        assert all(density[str(after[n].series)] <= density[str(s.series)] for n, s in before.items())
        assert cost(after) <= cost(before)

    def metric(net: nn.Module) -> float:
        return 1.0 - 0.002 * sum(1 for n, m in net.named_modules() if hasattr(m, "series"))

    r = search(model, "ttc-vegeta-m8", metric, _calib(), "W", 0.995, "cost-aware", progress=False)
    steps = [p for p in r.history if p.step.startswith("bisect")]
    assert steps
    for p in steps:
        k = int(p.step.split()[1].split("/")[0])
        assert p.layers == {n: str(s.series) for n, s in chain[k - 1].items()}
