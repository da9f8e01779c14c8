"""tasder.zoo models: the cache, digits training/pruning, docstring retrieval, shapes, the registry, ``tasder models``.

The default tests use tiny settings and a per-test cache directory; the ones that train the
real recipes or run the full retrieval evaluation are marked slow.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from tasder import zoo
from tasder.cli.app import run
from tasder.zoo import cache
from tasder.zoo.digits import (
    DigitsCNN,
    DigitsRecipe,
    PruningRecipe,
    correct_per_example,
    evaluate_accuracy,
    gradual_prune,
    load_digits_cnn,
    load_digits_data,
    magnitude_prune,
    prunable_weights,
    train_digits_cnn,
)
from tasder.zoo.retrieval import (
    DocstringPair,
    RetrievalTask,
    build_docstring_pairs,
    load_docstring_pairs,
    score_embeddings,
    split_docstring,
)
from tasder.zoo.shapes import BERT_BASE, LayerShape, bert_base_layers, deit_small_layers, resnet50_layers, total_macs

TINY = DigitsRecipe(seed=0, epochs=1, lr=3e-3, batch_size=64)
TINY_PRUNING = PruningRecipe(seed=1, prune_epochs=1, finetune_epochs=1, update_every=4)


def _entries() -> list[Path]:
    """The cache's entries (sorted), each checked to have its content-hash file next to it."""
    files = sorted(p for p in cache.cache_dir().iterdir() if not p.name.endswith(".sha256"))
    assert all(p.with_name(p.name + ".sha256").is_file() for p in files)
    return files


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("TASDER_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def digits():
    return load_digits_data()


# ---------------------------------------------------------------------------------------------
# cache
# ---------------------------------------------------------------------------------------------


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("TASDER_CACHE_DIR", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("TASDER_CACHE_DIR")
    assert cache.cache_dir() == tmp_path / "x" / "tasder"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "tasder"


def test_cached_builds_once_per_recipe_and_leaves_no_temp_files():
    calls = []

    def build():
        calls.append(1)
        return {"w": torch.arange(4.0) + len(calls)}

    first = cache.cached_state_dict("thing", {"epochs": 1}, build)
    again = cache.cached_state_dict("thing", {"epochs": 1}, build)
    assert len(calls) == 1 and torch.equal(first["w"], again["w"])
    cache.cached_state_dict("thing", {"epochs": 2}, build)  # another recipe: another entry
    assert len(calls) == 2
    files = [p.name for p in _entries()]
    assert len(files) == 2 and all(f.startswith("thing-") and f.endswith(".pt") for f in files)


def test_damaged_cache_file_is_rebuilt_with_a_warning():
    cache.cached_json("doc", {"v": 1}, lambda: {"a": 1})
    (path,) = _entries()
    path.write_text("{not json")
    with pytest.warns(RuntimeWarning, match="damaged"):
        assert cache.cached_json("doc", {"v": 1}, lambda: {"a": 2}) == {"a": 2}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.cached_json("doc", {"v": 1}, lambda: {"a": 3}) == {"a": 2}  # rewritten, valid


def test_unwritable_cache_still_returns_the_value(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("TASDER_CACHE_DIR", str(blocker / "sub"))  # a directory under a file
    with pytest.warns(RuntimeWarning, match="cannot write"):
        assert cache.cached_json("doc", {}, lambda: [1, 2]) == [1, 2]


def test_recipe_key_is_order_independent_and_sensitive_to_values():
    assert cache.recipe_key({"a": 1, "b": 2}) == cache.recipe_key({"b": 2, "a": 1})
    assert cache.recipe_key({"a": 1}) != cache.recipe_key({"a": 2})


# ---------------------------------------------------------------------------------------------
# digits: training, pruning, caching
# ---------------------------------------------------------------------------------------------


def test_training_is_deterministic(digits):
    a = train_digits_cnn(digits, TINY, progress=False)
    b = train_digits_cnn(digits, TINY, progress=False)
    assert not a.training
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


def test_global_magnitude_pruning_hits_the_exact_sparsity_and_keeps_the_largest(digits):
    torch.manual_seed(0)
    model = DigitsCNN()
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    masks = magnitude_prune(model, 0.8)
    weights = prunable_weights(model)
    assert set(masks) == set(weights) == {f"{n}.weight" for n in ("conv1", "conv2", "conv3", "fc1", "fc2")}
    total = sum(w.numel() for w in weights.values())
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    assert zeros == round(0.8 * total)
    kept = torch.cat([before[n][m.bool()].abs() for n, m in masks.items()])
    dropped = torch.cat([before[n][~m.bool()].abs() for n, m in masks.items()])
    assert float(dropped.max()) <= float(kept.min())  # one global threshold
    for name, value in model.state_dict().items():
        if name.endswith(".bias"):
            assert torch.equal(value, before[name]), name  # biases are never pruned
    with pytest.raises(ValueError, match="sparsity"):
        magnitude_prune(model, 1.0)


def test_gradual_pruning_is_exact_and_pruned_weights_stay_zero(digits, monkeypatch):
    """GMP raises the sparsity step by step (cubic) and never revives a pruned weight."""
    import tasder.zoo.digits as digits_module

    model = train_digits_cnn(digits, TINY, progress=False)
    targets: list[float] = []
    zeros_seen: list[set[tuple[str, int]]] = []
    real_prune = digits_module.magnitude_prune

    def spy(net, sparsity):
        masks = real_prune(net, sparsity)
        targets.append(sparsity)
        flat = {n: m.flatten() for n, m in masks.items()}
        zeros_seen.append({(n, i) for n, m in flat.items() for i in torch.nonzero(m == 0).flatten().tolist()})
        return masks

    monkeypatch.setattr(digits_module, "magnitude_prune", spy)
    masks = gradual_prune(model, 0.9, digits, TINY_PRUNING, progress=False)
    assert targets[0] == 0.0 and targets[-1] == 0.9
    assert all(a <= b for a, b in itertools.pairwise(targets))  # the schedule only rises
    assert all(a <= b for a, b in itertools.pairwise(zeros_seen))  # pruned stays pruned
    weights = prunable_weights(model)
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    assert zeros == round(0.9 * sum(w.numel() for w in weights.values()))
    for name, w in weights.items():
        assert bool((w[masks[name] == 0] == 0).all()), name
    with pytest.raises(ValueError, match="sparsity"):
        gradual_prune(model, 1.0, digits, TINY_PRUNING, progress=False)


def test_load_digits_cnn_trains_once_then_reads_the_cache(monkeypatch):
    first = load_digits_cnn(recipe=TINY, progress=False)
    files = _entries()
    assert len(files) == 1 and files[0].name.startswith("digits-cnn-")

    def fail(*args, **kwargs):
        raise AssertionError("trained again despite the cache")

    monkeypatch.setattr("tasder.zoo.digits.train_digits_cnn", fail)
    again = load_digits_cnn(recipe=TINY, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values(),
                                                  strict=True))


def test_changed_recipe_retrains_and_damaged_cache_retrains_with_warning():
    load_digits_cnn(recipe=TINY, progress=False)
    load_digits_cnn(recipe=dataclasses.replace(TINY, seed=1), progress=False)
    files = _entries()
    assert len(files) == 2
    files[0].write_bytes(b"garbage")
    files[1].write_bytes(b"")
    with pytest.warns(RuntimeWarning, match="damaged"):
        model = load_digits_cnn(recipe=TINY, progress=False)
    assert isinstance(model, DigitsCNN)


def test_cache_with_wrong_keys_counts_as_damaged():
    load_digits_cnn(recipe=TINY, progress=False)
    (path,) = _entries()
    torch.save({"other.weight": torch.zeros(2)}, path)
    # With a matching hash: the keys themselves must be checked, not only the bytes.
    path.with_name(path.name + ".sha256").write_text(f"{cache.sha256_hex(path)}  {path.name}\n")
    with pytest.warns(RuntimeWarning, match="damaged"):
        load_digits_cnn(recipe=TINY, progress=False)


def test_sparse_variant_is_cached_separately_and_exactly_sparse():
    model = load_digits_cnn(0.9, recipe=TINY, pruning=TINY_PRUNING, progress=False)
    names = sorted(p.name.rsplit("-", 1)[0] for p in _entries())
    assert names == ["digits-cnn", "digits-cnn-sparse-90"]
    weights = prunable_weights(model)
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    assert zeros == round(0.9 * sum(w.numel() for w in weights.values()))


def test_no_progress_output_when_stderr_is_not_a_terminal(capfd, digits):
    train_digits_cnn(digits, TINY, progress=True)
    assert capfd.readouterr().err == ""


def test_digits_scores_per_image_average_to_the_accuracy(digits):
    torch.manual_seed(0)
    net = DigitsCNN().eval()
    scores = correct_per_example(net, digits.x_val, digits.y_val, batch_size=100)
    assert len(scores) == len(digits.x_val) and set(scores.per_example.tolist()) <= {0.0, 1.0}
    assert float(scores) == evaluate_accuracy(net, digits.x_val, digits.y_val)


# ---------------------------------------------------------------------------------------------
# docstring retrieval
# ---------------------------------------------------------------------------------------------


def test_split_docstring_takes_the_first_sentence_and_drops_signature_lines():
    doc = """sub(pattern, repl, string) -> str

    Return the string obtained by replacing occurrences.  More text follows here,
    and it goes on for a while.

    Second paragraph.
    """
    query, target = split_docstring(doc)
    assert query == "Return the string obtained by replacing occurrences."
    assert target == "More text follows here, and it goes on for a while. Second paragraph."
    assert split_docstring("Too short.") is None
    assert split_docstring("A reasonable first sentence is here. Tiny.") is None  # target < 40 chars


def test_docstring_pairs_are_deterministic_unique_and_real():
    pairs, missing = build_docstring_pairs(["json", "textwrap", "no_such_module_xyz"])
    assert missing == ["no_such_module_xyz"]
    again, _ = build_docstring_pairs(["textwrap", "json"])
    assert pairs == again
    assert len({p.query.lower() for p in pairs}) == len(pairs)
    assert len({p.target.lower() for p in pairs}) == len(pairs)
    sources = {p.source for p in pairs}
    assert "json.dumps" in sources and "textwrap.dedent" in sources


@pytest.mark.slow  # imports scikit-learn's and transformers' modules to read their docstrings (≈ 15 s)
def test_docstring_pool_is_cached_shuffled_and_has_thousands_of_pairs():
    pairs, meta = load_docstring_pairs()
    assert meta["pool_size"] == len(pairs) >= 4000
    assert next(p.name for p in _entries()).startswith("docstrings-")
    again, _ = load_docstring_pairs()
    assert pairs == again
    modules = [p.source.split(".")[0] for p in pairs[:50]]
    assert len(set(modules)) > 10  # shuffled: a prefix spans many modules
    assert {"numpy", "torch", "sklearn", "transformers"} <= {p.source.split(".")[0] for p in pairs}
    assert all(v is not None for v in meta["packages"].values())


def test_candidate_pools_hold_the_own_target_first_and_distinct_others():
    from tasder.zoo.retrieval import candidate_pools

    pools = candidate_pools(50, 20)
    assert pools.shape == (50, 20) and torch.equal(pools[:, 0], torch.arange(50))
    for i, row in enumerate(pools.tolist()):
        assert len(set(row)) == 20 and row.count(i) == 1
    assert torch.equal(pools, candidate_pools(50, 20))  # fixed by the seed
    assert candidate_pools(5, 20).shape == (5, 5) and candidate_pools(5, None) is None
    with pytest.raises(ValueError, match="candidates"):
        candidate_pools(5, 0)


def test_scores_identity_ties_and_nonfinite():
    eye = torch.eye(4)
    s = score_embeddings(eye, eye)
    assert (s.recall_at_1, s.mrr, s.n) == (1.0, 1.0, 4)
    same = torch.ones(4, 3)  # every target ties with the correct one: counts against it
    assert score_embeddings(same, same).recall_at_1 == 0.0
    broken = torch.full((4, 3), float("nan"))
    s = score_embeddings(broken, broken)
    assert s.recall_at_1 == 0.0 and s.mrr == pytest.approx(0.25)
    # query 0 ranks its target 2nd
    q = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    t = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    s = score_embeddings(q, t)
    assert s.recall_at_1 == 0.5 and s.mrr == pytest.approx(0.75)
    assert s.hits.tolist() == [0.0, 1.0]
    # within pools: query 0 among targets [0] alone is a hit, query 1 among [1, 0] too
    s = score_embeddings(q, t, torch.tensor([[0, 0], [1, 0]])[:, :1])
    assert s.hits.tolist() == [1.0, 1.0]


# ---------------------------------------------------------------------------------------------
# shapes
# ---------------------------------------------------------------------------------------------


def test_resnet50_facts():
    layers = resnet50_layers()
    convs = sum(layer.repeat for layer in layers if layer.kind == "conv")
    fcs = sum(layer.repeat for layer in layers if layer.kind == "linear")
    assert (convs, fcs) == (53, 1)  # 49 in the main path + 4 downsample projections
    assert 4.0e9 < total_macs(layers) < 4.2e9  # ≈4.09 GMACs at 224×224, batch 1
    assert 25.4e6 < sum(layer.weight_count for layer in layers) < 25.6e6  # 25.5 M conv/fc weights
    triples = {(layer.M, layer.K, layer.N) for layer in layers}
    # the TASD paper's representative layers (its M-N-K lists output positions first)
    assert {(128, 1152, 784), (64, 576, 3136), (256, 2304, 196)} <= triples
    assert layers[0] == LayerShape("conv1", "conv", M=64, K=3 * 7 * 7, N=112 * 112)
    assert total_macs(resnet50_layers(batch=4)) == 4 * total_macs(layers)


def test_bert_base_facts():
    for seq in (128, 512):
        layers = bert_base_layers(seq_len=seq)
        weight_gemms = [layer for layer in layers if layer.kind == "linear"]
        assert all((layer.repeat, layer.N) == (12, seq) for layer in weight_gemms)
        assert sum(layer.M * layer.K for layer in weight_gemms) == 4 * 768**2 + 2 * 768 * 3072
        matmuls = [layer for layer in layers if layer.kind == "matmul"]
        assert {(m.M, m.K, m.N) for m in matmuls} == {(seq, 64, seq), (seq, seq, 64)}
        assert all(m.repeat == 12 * 12 for m in matmuls)
    triples = {(layer.M, layer.K, layer.N) for layer in bert_base_layers(128)}
    assert {(768, 768, 128), (3072, 768, 128), (768, 3072, 128)} <= triples  # the TASD paper's layers


def test_bert_base_dims_are_transformers_defaults():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig()
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.intermediate_size) == (
        BERT_BASE.num_hidden_layers, BERT_BASE.hidden_size, BERT_BASE.num_attention_heads, BERT_BASE.intermediate_size)


def test_deit_small_facts():
    layers = deit_small_layers()
    assert layers[0] == LayerShape("patch_embed.proj", "conv", M=384, K=3 * 16 * 16, N=196)
    assert any(layer.kind == "linear" and layer.N == 197 for layer in layers)
    assert 21.8e6 < sum(layer.weight_count for layer in layers) < 22.0e6  # ≈22 M parameters
    assert 4.5e9 < total_macs(layers) < 4.7e9  # ≈4.6 GMACs
    with pytest.raises(ValueError, match="multiple"):
        deit_small_layers(image_size=100)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_shape_builders_reject_bad_sizes(bad):
    with pytest.raises(ValueError):
        bert_base_layers(seq_len=bad)


# ---------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------


def test_list_models_and_entries():
    names = zoo.list_models()
    assert names == ["digits-cnn", "digits-cnn-sparse-50", "digits-cnn-sparse-80", "digits-cnn-sparse-90",
                     "digits-cnn-sparse-95", "minilm", "resnet50", "bert-base", "deit-small"]
    assert zoo.list_models("digits-cnn-sparse-*") == names[1:5]
    entries = zoo.model_entries()
    assert {e.kind for e in entries.values()} == {"trained", "pretrained", "shapes"}
    assert entries["minilm"].metric == "recall@1"
    assert not list(cache.cache_dir().glob("*")) if cache.cache_dir().exists() else True  # nothing loaded


@pytest.mark.parametrize(("name", "suggestion"), [("resnet-50", "resnet50"), ("digits_cnn", "digits-cnn"),
                                                  ("bert", "bert-base")])
def test_unknown_model_suggests_close_matches(name, suggestion):
    with pytest.raises(ValueError, match=f"did you mean '{suggestion}'"):
        zoo.load(name)


def test_register_twice_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        zoo.register("resnet50", kind="shapes", metric="", description="")(lambda: None)


@pytest.mark.parametrize("name", ["resnet50", "bert-base", "deit-small"])
def test_shape_entries(name):
    m = zoo.load(name)
    assert m.model is None and m.evaluate is None and m.calibration == []
    assert m.layers and all(isinstance(layer, LayerShape) for layer in m.layers)
    assert m.metadata["macs"] == total_macs(m.layers) and "paper" in m.metadata
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.name = "x"  # type: ignore[misc]


def test_bert_base_entry_takes_seq_len():
    assert zoo.load("bert-base", seq_len=512).metadata["seq_len"] == 512
    assert zoo.load("bert-base", seq_len=512).layers == bert_base_layers(512)


def test_digits_entry_with_a_tiny_recipe():
    m = zoo.load("digits-cnn", progress=False, recipe=TINY)  # the real recipe is a slow test
    assert isinstance(m.model, DigitsCNN) and not m.model.training
    assert m.metric == "test accuracy"
    score = m.evaluate(m.model)
    assert 0.0 <= score <= 1.0 and score == m.metadata["test_accuracy"]
    assert len(m.calibration) == 4 and all(b.shape == (64, 1, 8, 8) for b in m.calibration)
    outputs = m.run_calibration()
    assert all(o.shape == (64, 10) for o in outputs)
    sparse = zoo.load("digits-cnn-sparse-80", progress=False, recipe=TINY, pruning=TINY_PRUNING)
    assert sparse.metadata["weight_sparsity"] == pytest.approx(0.8, abs=1e-4)
    assert sparse.metadata["recipe"]["epochs"] == 1


# ---------------------------------------------------------------------------------------------
# MiniLM on the retrieval task (tiny)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm_small(tmp_path_factory):
    pytest.importorskip("transformers")
    from tasder.zoo import retrieval

    os.environ["HF_HUB_OFFLINE"] = "1"
    old = os.environ.get("TASDER_CACHE_DIR")
    os.environ["TASDER_CACHE_DIR"] = str(tmp_path_factory.mktemp("minilm-cache"))
    # The standard library's docstrings alone (a second or so; the full pool imports scikit-learn's and
    # transformers' modules, which the slow pool test covers).
    mp = pytest.MonkeyPatch()
    mp.setattr(retrieval, "all_modules", lambda: retrieval.STDLIB_MODULES)
    try:
        return zoo.load("minilm", n=24, val_n=24)
    finally:
        mp.undo()
        if old is None:
            del os.environ["TASDER_CACHE_DIR"]
        else:
            os.environ["TASDER_CACHE_DIR"] = old


def test_minilm_entry_is_the_real_bert_and_scores_well_above_chance(minilm_small):
    from transformers import BertModel

    m = minilm_small
    assert isinstance(m.model, BertModel) and not m.model.training
    assert m.model.config.hidden_size == 384 and m.model.config.num_hidden_layers == 6
    assert m.metric == "recall@1" and m.metadata["task_size"] == 24 and m.metadata["candidates"] == 20
    scores = m.metadata["task"].evaluate(m.model)
    assert 0.5 < scores.recall_at_1 <= scores.mrr <= 1.0 and scores.n == 24  # chance is 1/20
    hits = m.evaluate(m.model)  # per-query hits, for a search's paired bound
    assert len(hits) == 24 and float(hits) == scores.recall_at_1
    val = m.metadata["evaluate_val"](m.model)
    assert len(val) == 24 and m.metadata["stages"] == ("embeddings", "encoder.layer.*")
    scored = {p.query for p in m.metadata["task"].pairs}
    assert not scored & {p.query for p in m.metadata["val_task"].pairs}  # disjoint splits


@pytest.mark.slow  # four batches of 16 texts × 128 tokens through the real encoder
def test_minilm_calibration_batches_run_and_are_not_scored_pairs(minilm_small):
    m = minilm_small
    assert m.calibration and all(isinstance(b, dict) and "attention_mask" in b for b in m.calibration)
    outputs = m.run_calibration()
    assert all(o.last_hidden_state.shape[-1] == 384 for o in outputs)
    tok = m.metadata["tokenizer"]
    scored = {p.query for p in m.metadata["task"].pairs}
    texts = {t for b in m.calibration for t in tok.batch_decode(b["input_ids"], skip_special_tokens=True)}
    assert not any(q.lower() in texts for q in scored)


def test_minilm_evaluate_accepts_any_module_with_the_same_forward(minilm_small):
    m = minilm_small

    class TupleOutput(nn.Module):  # a transformed model may return a plain tuple
        def __init__(self, inner: nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask=None, token_type_ids=None):
            return (self.inner(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state,)

    assert m.evaluate(TupleOutput(m.model)) > 0.5

    class Broken(nn.Module):
        def forward(self, input_ids, attention_mask=None, token_type_ids=None):
            return torch.zeros(*input_ids.shape, 384)

    assert m.evaluate(Broken()) == 0.0


def test_minilm_rejects_a_bad_task_size():
    with pytest.raises(ValueError, match="n must be"):
        zoo.load("minilm", n=0)


# ---------------------------------------------------------------------------------------------
# tasder models
# ---------------------------------------------------------------------------------------------


def test_models_command_lists_every_entry_without_loading(capsys):
    assert run(["models"]) == 0
    out = capsys.readouterr().out
    for name in zoo.list_models():
        assert name in out
    assert "recall@1" in out and "shapes" in out
    assert not cache.cache_dir().exists()


def test_models_command_json(capsys):
    assert run(["models", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in doc] == zoo.list_models()
    assert {tuple(sorted(d)) for d in doc} == {("description", "kind", "metric", "name")}
    assert next(d for d in doc if d["name"] == "resnet50")["metric"] is None


# ---------------------------------------------------------------------------------------------
# slow: the real recipes and the full retrieval evaluation
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("real-cache")


@pytest.mark.slow
def test_digits_cnn_reaches_97_percent(real_cache, monkeypatch, digits):
    monkeypatch.setenv("TASDER_CACHE_DIR", str(real_cache))
    m = zoo.load("digits-cnn", progress=False)
    assert m.evaluate(m.model) >= 0.97
    assert evaluate_accuracy(m.model, digits.x_test, digits.y_test) == m.evaluate(m.model)


@pytest.mark.slow
@pytest.mark.parametrize(("percent", "floor"), [(50, 0.96), (80, 0.96), (90, 0.95), (95, 0.90)])
def test_sparse_digits_variants(real_cache, monkeypatch, percent, floor):
    monkeypatch.setenv("TASDER_CACHE_DIR", str(real_cache))
    m = zoo.load(f"digits-cnn-sparse-{percent}", progress=False)
    assert m.metadata["weight_sparsity"] == pytest.approx(percent / 100, abs=1e-4)
    assert m.evaluate(m.model) >= floor


@pytest.mark.slow
def test_minilm_full_task_and_sentence_transformers_agreement(real_cache, monkeypatch):
    monkeypatch.setenv("TASDER_CACHE_DIR", str(real_cache))
    m = zoo.load("minilm")
    assert m.evaluate(m.model) > 0.3
    st = pytest.importorskip("sentence_transformers")
    from tasder.zoo.minilm import minilm_weight_path
    from tasder.zoo.retrieval import embed, tokenize_batches

    texts = [p.query for p in m.metadata["task"].pairs[:16]]
    ours = embed(m.model, tokenize_batches(m.metadata["tokenizer"], texts, 256))
    ref = st.SentenceTransformer(str(minilm_weight_path().parent), device="cpu").encode(
        texts, convert_to_tensor=True, normalize_embeddings=True)
    assert torch.allclose(ours, ref.cpu(), atol=1e-5)


def test_retrieval_task_build_is_reusable():
    pairs = [DocstringPair("a", "first query text here", "x" * 50)]

    class Tok:
        def __call__(self, texts, **kwargs):
            ids = [[101, 7, 102] for _ in texts]
            if kwargs.get("return_tensors") == "pt":
                return {"input_ids": torch.tensor(ids), "attention_mask": torch.ones(len(ids), 3, dtype=torch.long)}
            return {"input_ids": ids}

    task = RetrievalTask.build(Tok(), pairs)
    assert len(task.query_batches) == len(task.target_batches) == 1
