"""sparsify_for_training / to_dense_layers / plans, and the training-operation accounting."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tasder import satisfies
from tasder.train import (
    NMConv2d,
    NMLinear,
    count_training_ops,
    ideal_fraction,
    plan_sparse_training,
    sparsify_for_training,
    to_dense_layers,
    weight_sparsity,
)
from tasder.zoo.digits import DigitsCNN


def _cnn() -> DigitsCNN:
    torch.manual_seed(0)
    return DigitsCNN()


def test_sparsify_swaps_the_middle_layers_and_keeps_first_and_classifier_dense() -> None:
    model = _cnn()
    sparse = sparsify_for_training(model, "2:8", "bdwp")
    assert sparse is not model and type(model.conv2) is nn.Conv2d  # the input is untouched
    assert type(sparse.conv1) is nn.Conv2d and type(sparse.fc2) is nn.Linear
    assert isinstance(sparse.conv2, NMConv2d) and isinstance(sparse.conv3, NMConv2d)
    assert isinstance(sparse.fc1, NMLinear)
    assert torch.equal(sparse.conv2.weight, model.conv2.weight)  # weights carry over
    reasons = {p.name: p.reason for p in plan_sparse_training(model, "2:8", "bdwp")}
    assert reasons == {"conv1": "first layer (keep_dense)", "conv2": "", "conv3": "", "fc1": "",
                       "fc2": "classifier (keep_dense)"}
    same = sparsify_for_training(model, "2:8", "srste", inplace=True)
    assert same is model and isinstance(model.fc1, NMLinear) and model.fc1.method == "srste"


def test_keep_dense_is_configurable() -> None:
    model = _cnn()
    sparse = sparsify_for_training(model, "1:4", "srste", keep_dense=("classifier", "conv3"))
    assert isinstance(sparse.conv1, nn.Conv2d) and not isinstance(sparse.conv1, NMConv2d)  # C=1: 1 % 4
    plans = {p.name: p for p in plan_sparse_training(model, "1:4", "srste", keep_dense=("classifier", "conv3"))}
    assert plans["conv1"].reason == "in_channels=1 is not a multiple of M=4"
    assert plans["conv3"].reason == "kept dense (keep_dense)"
    assert isinstance(sparse.conv2, NMConv2d)
    everything = sparsify_for_training(model, "1:4", "srste", keep_dense=())
    assert isinstance(everything.fc2, NMLinear)  # 64 inputs divide 4; SR-STE needs only K
    with pytest.raises(ValueError, match="keep_dense names no Linear/Conv2d layer: nope"):
        sparsify_for_training(model, "2:8", "bdwp", keep_dense=("nope",))


def test_layers_that_do_not_divide_stay_dense_with_the_reason() -> None:
    model = _cnn()
    plans = {p.name: p for p in plan_sparse_training(model, "2:8", "bdwp", keep_dense=())}
    assert plans["fc2"].reason == "out_features=10 is not a multiple of M=8 (BDWP's backward groups)"
    assert plans["conv1"].reason == "in_channels=1 is not a multiple of M=8"
    sparse = sparsify_for_training(model, "1:16", "bdwp")
    assert isinstance(sparse.conv2, NMConv2d) and isinstance(sparse.fc1, NMLinear)


def test_explicit_layers_that_do_not_divide_are_an_error_naming_the_layer() -> None:
    model = _cnn()
    with pytest.raises(ValueError, match=r"layer 'fc2' Linear\(10, 64\) cannot train with 2:8: out_features=10"):
        sparsify_for_training(model, "2:8", "bdwp", layers=["fc1", "fc2"])
    with pytest.raises(ValueError, match="no Linear/Conv2d layer named 'fc9'"):
        sparsify_for_training(model, "2:8", "bdwp", layers=["fc9"])
    only = sparsify_for_training(model, "2:8", "bdwp", layers=["fc1"])
    assert isinstance(only.fc1, NMLinear) and not isinstance(only.conv2, NMConv2d)


@pytest.mark.parametrize(("pattern", "method", "match"), [
    ("2:8", "sparse", "unknown training method 'sparse'"),
    ("2:8+1:8", "bdwp", "bad N:M pattern"),
    ("dense", "srste", "one-rank N:M pattern"),
    ("unstructured(0.5)", "bdwp", "one-rank N:M pattern"),
])
def test_bad_method_or_pattern(pattern: str, method: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sparsify_for_training(_cnn(), pattern, method)


def test_dense_method_replaces_nothing() -> None:
    model = _cnn()
    same = sparsify_for_training(model, "2:8", "dense")
    assert not any(isinstance(m, (NMLinear, NMConv2d)) for m in same.modules())


def test_to_dense_layers_gives_plain_layers_with_the_masked_weights() -> None:
    model = sparsify_for_training(_cnn(), "2:8", "bdwp")
    x = torch.rand(5, 1, 8, 8)
    dense = to_dense_layers(model)
    assert not any(isinstance(m, (NMLinear, NMConv2d)) for m in dense.modules())
    assert isinstance(model.fc1, NMLinear)  # the input keeps its N:M layers
    assert torch.equal(dense.conv2.weight, model.conv2.masked_weight())
    assert satisfies(dense.conv2.weight.detach(), "2:8", dim=1)
    assert satisfies(dense.fc1.weight.detach(), "2:8", dim=1)
    torch.testing.assert_close(dense(x), model(x), rtol=0, atol=1e-6)
    assert weight_sparsity(dense) == weight_sparsity(model) == {
        "conv1": 0.0, "conv2": 0.75, "conv3": 0.75, "fc1": 0.75, "fc2": 0.0}


def test_ops_accounting_for_the_cnn_at_2_8() -> None:
    model = sparsify_for_training(_cnn(), "2:8", "bdwp")
    ops = count_training_ops(model, torch.zeros(64, 1, 8, 8))
    by = {lay.name: lay for lay in ops.layers}
    # conv2: 64 images × 8×8 outputs × 32 out × 16 in × 9 taps.
    assert by["conv2"].dense_gemm == 64 * 64 * 32 * 16 * 9
    assert by["conv2"].ff == by["conv2"].bp == by["conv2"].dense_gemm / 4
    assert by["conv2"].wu == by["conv2"].dense_gemm
    assert by["conv1"].first and by["conv1"].bp == 0 and by["conv1"].dense_total == 2 * by["conv1"].dense_gemm
    assert by["fc2"].ff == by["fc2"].bp == by["fc2"].wu == 64 * 64 * 10
    assert ops.ideal == pytest.approx(0.5)
    expected = sum(lay.ff + lay.bp + lay.wu for lay in ops.layers) / sum(lay.dense_total for lay in ops.layers)
    assert ops.fraction == pytest.approx(expected)
    assert 0.5 < ops.fraction < 0.52  # the dense first layer and classifier are small


def test_ops_accounting_per_method() -> None:
    x = torch.zeros(8, 1, 8, 8)
    dense = count_training_ops(sparsify_for_training(_cnn(), "2:8", "dense"), x)
    assert dense.fraction == 1.0 and dense.ideal is None
    srste = count_training_ops(sparsify_for_training(_cnn(), "2:8", "srste"), x)
    bdwp = count_training_ops(sparsify_for_training(_cnn(), "2:8", "bdwp"), x)
    assert srste.bp == dense.bp  # SR-STE's mask runs along K: no saving in the BP GEMM
    assert srste.ff == bdwp.ff < dense.ff and bdwp.bp < srste.bp
    assert srste.wu == bdwp.wu == dense.wu


def test_ideal_fraction() -> None:
    assert ideal_fraction(2, 8) == pytest.approx(0.5)
    assert ideal_fraction(2, 4) == pytest.approx(2 / 3)
    assert ideal_fraction(1, 16) == pytest.approx(0.375)


def test_all_sparse_linear_stack_hits_the_ideal_apart_from_the_first_layer() -> None:
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16), nn.Linear(16, 16))
    sparse = sparsify_for_training(model, "1:4", "bdwp", keep_dense=())
    ops = count_training_ops(sparse, torch.zeros(4, 16))
    g = 4 * 16 * 16
    assert ops.total == pytest.approx(g * (0.25 + 1) + 2 * g * (0.25 + 0.25 + 1))
    assert ops.dense_total == 2 * g + 2 * 3 * g
