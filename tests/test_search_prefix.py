"""The prefix cache (replaying unchanged stages is bit for bit a full forward), mode auto, and
damage-aware skipping."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from search_helpers import tiny_calibration as _calib
from search_helpers import tiny_mlp as _mlp
from tasder.nn import apply_tasd, tasd_layers
from tasder.scores import Scores
from tasder.search import search
from tasder.search.prefix import PrefixCache, resolve_stages


def _tiny_bert() -> nn.Module:
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=32)
    torch.manual_seed(0)
    return transformers.BertModel(config, add_pooling_layer=False).eval()


def _batches(n: int, seed: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        ids = torch.randint(1, 64, (6, 10 + i), generator=g)
        mask = torch.ones_like(ids)
        mask[:, -i:] = 0 if i else 1
        out.append({"input_ids": ids, "attention_mask": mask})
    return out


def _fidelity(model: nn.Module, batches: list[dict[str, torch.Tensor]], *, shuffle: bool = False):
    """Per-example: 1 if the pooled embedding keeps its nearest reference neighbour, else 0."""
    with torch.inference_mode():
        ref = torch.cat([model(**b).last_hidden_state.mean(1) for b in batches])
    calls = {"n": 0}

    def evaluate(net: nn.Module) -> Scores:
        calls["n"] += 1
        order = list(range(len(batches)))
        if shuffle:
            order = order[calls["n"] % len(order):] + order[: calls["n"] % len(order)]
        with torch.inference_mode():
            out = {i: net(**batches[i]).last_hidden_state.mean(1) for i in order}
        emb = torch.cat([out[i] for i in range(len(batches))])
        sims = torch.nn.functional.normalize(emb, dim=1) @ torch.nn.functional.normalize(ref, dim=1).T
        return Scores((sims.argmax(1) == torch.arange(len(ref))).double() * 0.5 + sims.diagonal().double() * 0.5)

    return evaluate


def test_stage_names_resolve_in_order_and_bad_ones_are_refused():
    model = _tiny_bert()
    names = resolve_stages(model, ["embeddings", "encoder.layer.*"])
    assert names == ["embeddings", "encoder.layer.0", "encoder.layer.1", "encoder.layer.2"]
    with pytest.raises(ValueError, match="names no submodule"):
        resolve_stages(model, ["decoder"])
    with pytest.raises(ValueError, match="nest"):
        resolve_stages(model, ["encoder", "encoder.layer.0"])


def test_replayed_prefix_is_bit_identical_to_the_full_forward():
    model = _tiny_bert()
    batches = _batches(3, 1)
    evaluate = _fidelity(model, batches)
    cache = PrefixCache.for_model(model, ["embeddings", "encoder.layer.*"],
                                  [n for n, m in model.named_modules() if type(m) is nn.Linear])
    cache.evaluate(model, evaluate, {})
    cache.accept()
    config = {"encoder.layer.2.intermediate.dense": {"series": "4:8", "mode": "A"},
              "encoder.layer.1.output.dense": {"series": "2:8+1:8", "mode": "W"}}
    net = apply_tasd(model, config)
    specs = {n: s for n, s in net.tasd_report.layers.items()}
    assert cache.first_changed(specs) == 2  # stages: embeddings, layer 0, layer 1 ← first changed
    replayed = cache.evaluate(net, evaluate, specs)
    full = evaluate(apply_tasd(model, config))
    assert np.array_equal(replayed.per_example, full.per_example)
    assert cache.skipped_fraction > 0


@pytest.mark.parametrize("mode", ["W", pytest.param("auto", marks=pytest.mark.slow)])  # auto: ~10 s idle
def test_search_with_stages_scores_every_config_exactly_as_without(mode):
    model = _tiny_bert()
    batches = _batches(3, 2)
    calib = _batches(2, 3)
    kwargs = {"progress": False, "max_evals": 12}
    plain = search(model, "ttc-vegeta-m8", _fidelity(model, batches), calib, mode, 0.9, **kwargs)
    staged = search(model, "ttc-vegeta-m8", _fidelity(model, batches), calib, mode, 0.9,
                    stages=["embeddings", "encoder.layer.*"], **kwargs)
    assert [(p.layers, p.metric, p.bound, p.ok) for p in plain.history] == \
        [(p.layers, p.metric, p.bound, p.ok) for p in staged.history]
    assert staged.extra["prefix_replayed"] > 0 and "prefix_replayed" not in plain.extra


@pytest.mark.slow  # two searches on a tiny BERT: > 3 s on 2 cores
def test_an_evaluate_that_feeds_other_batches_turns_the_cache_off_and_stays_exact():
    model = _tiny_bert()
    batches = _batches(3, 4)
    calib = _batches(2, 5)
    plain = search(model, "ttc-vegeta-m8", _fidelity(model, batches, shuffle=True), calib, "W", 0.9,
                   progress=False, max_evals=6)
    with pytest.warns(RuntimeWarning, match="prefix cache off"):
        staged = search(model, "ttc-vegeta-m8", _fidelity(model, batches, shuffle=True), calib, "W", 0.9,
                        stages=["embeddings", "encoder.layer.*"], progress=False, max_evals=6)
    assert [p.metric for p in plain.history] == [p.metric for p in staged.history]
    assert any("prefix cache off" in n for n in staged.notes)


# -- mode auto ------------------------------------------------------------------------------------


def test_auto_picks_the_operand_each_layer_tolerates():
    # Layer "0": 90 %-sparse weights on a dense Gaussian input (TASD-W is nearly free, TASD-A hurts);
    # layer "2": dense weights on a mostly-zero ReLU input (the other way round).
    model = _mlp()
    with torch.no_grad():
        model[0].weight.mul_((torch.rand_like(model[0].weight) < 0.1).float())
        model[0].bias.fill_(-0.3)
    data = torch.randn(256, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        target = model(data)

    def evaluate(net: nn.Module) -> float:
        with torch.no_grad():
            return 1.0 - float((net(data) - target).norm() / target.norm())

    r = search(model, "ttc-vegeta-m8", evaluate, _calib(), "auto", 0.98, progress=False)
    assert r.config.resolve("0").mode == "W" and r.config.resolve("2").mode == "A"
    assert {row.mode for row in r.layers} <= {"W", "A", "-"}
    assert any("(W)" in v for p in r.history for v in p.layers.values())
    with pytest.raises(ValueError, match="paper-threshold"):
        search(_mlp(), "ttc-vegeta-m8", evaluate, _calib(), "auto", method="paper-threshold", progress=False)


def test_auto_with_tasd_w_options_and_a_clear_miss_skips_what_is_at_least_as_damaging():
    def evaluate(model: nn.Module) -> float:
        return 1.0 - 0.3 * sum(1 for name, _ in tasd_layers(model) if name == "4")

    r = search(_mlp(), "ttc-vegeta-m8", evaluate, _calib(), "auto", 0.99, score="activation", reconstruct=True,
               progress=False)
    assert r.config.resolve("4") is None
    for spec in r.config.layers.values():
        if spec.mode == "W":
            assert spec.score == "activation" and spec.reconstruct
        else:
            assert spec.score == "magnitude" and not spec.reconstruct
    with pytest.raises(ValueError, match="TASD-W"):
        search(_mlp(), "ttc-vegeta-m8", evaluate, _calib(), "A", score="activation", progress=False)
