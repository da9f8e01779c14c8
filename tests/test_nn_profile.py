"""tasder.nn.profile: per-layer statistics checked against numbers computed by hand."""

from __future__ import annotations

import doctest
import gc
import math
import weakref

import numpy as np
import pytest
import torch
from torch import nn

from tasder import decompose
from tasder.nn.profile import (
    LayerProfile,
    ModelProfile,
    per_sample_pseudo_density,
    profile_model,
)
from tasder.targets import target_series
from tasder.tasd import DecompositionSums


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))
    with torch.no_grad():
        model[0].weight[:, :3] = 0.0  # 24 of 128 weights are zero
    return model


def _mlp_batches() -> list[torch.Tensor]:
    """Two batches (4 + 3 samples of 16 features) of ±1 values with 0, 4, 8, 12 / 2, 6, 16 zeros."""
    g = torch.Generator().manual_seed(1)
    batches = []
    for zeros_per_row in ([0, 4, 8, 12], [2, 6, 16]):
        x = torch.where(torch.rand(len(zeros_per_row), 16, generator=g) < 0.5, -1.0, 1.0)
        for row, zeros in enumerate(zeros_per_row):
            x[row, torch.randperm(16, generator=g)[:zeros]] = 0.0
        batches.append(x)
    return batches


class _ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3)
        self.depthwise = nn.Conv2d(16, 16, 1, groups=16)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv2(self.relu(self.conv1(x))))
        return self.fc(self.depthwise(x).flatten(1))


# ---------------------------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------------------------


def test_linear_layer_statistics_match_hand_computed_values():
    model, batches = _mlp(), _mlp_batches()
    p = profile_model(model, batches, candidates=["2:8", "4:8+1:8"])
    assert isinstance(p, ModelProfile) and [layer.name for layer in p] == ["0", "2"]
    fc1 = p["0"]
    assert (fc1.kind, fc1.module_type, fc1.weight_shape) == ("linear", "Linear", (8, 16))
    assert (fc1.k, fc1.kernel_positions, fc1.k_total) == (16, 1, 16)
    assert fc1.macs == 7 * 16 * 8 and p["2"].macs == 7 * 8 * 4
    assert p.total_macs == 7 * 16 * 8 + 7 * 8 * 4
    assert (fc1.calls, fc1.samples, p.batches) == (2, 7, 2)
    assert fc1.weight_sparsity == pytest.approx(24 / 128)
    per_sample = np.array([0, 4, 8, 12, 2, 6, 16]) / 16
    assert fc1.activation_sparsity_mean == pytest.approx(per_sample.mean())
    # numpy's linear interpolation: between the 6th and 7th smallest of 7 values, at 0.99·6 = 5.94
    sorted_values = np.sort(per_sample)
    assert fc1.activation_sparsity_p99 == pytest.approx(sorted_values[5] + 0.94 * (sorted_values[6] - sorted_values[5]))
    # ±1 values: keeping 99 % of Σ|x| needs every nonzero (n − 1 < 0.99·n for n < 100); an
    # all-zero sample needs none.
    assert fc1.pseudo_density == pytest.approx((1 - per_sample).mean())


def test_second_layer_sees_the_relu_output():
    model, batches = _mlp(), _mlp_batches()
    p = profile_model(model, batches, candidates=[])
    with torch.no_grad():
        hidden = torch.cat([torch.relu(model[0](b)) for b in batches])
    per_sample = (hidden == 0).double().mean(dim=1).numpy()
    assert p["2"].activation_sparsity_mean == pytest.approx(per_sample.mean())
    assert p["2"].activation_sparsity_p99 == pytest.approx(np.percentile(per_sample, 99))
    assert p["2"].pseudo_density == pytest.approx(float(per_sample_pseudo_density(hidden).mean()))
    assert p["2"].candidates == ()


@pytest.mark.parametrize("series", ["2:8", "4:8+1:8", "1:4"])
def test_dropped_nonzeros_equal_decompose_weights_and_pooled_activations(series):
    model, batches = _mlp(), _mlp_batches()
    row = profile_model(model, batches, candidates=[series])["0"].candidate(series)
    assert row.applicable and row.reason is None
    assert row.weight_dropped_nonzeros_pct == pytest.approx(
        decompose(model[0].weight.detach(), series, dim=1).metrics.dropped_nonzeros_pct)
    pooled = decompose(torch.cat(batches), series, dim=-1).metrics
    assert row.activation_dropped_nonzeros_pct == pytest.approx(pooled.dropped_nonzeros_pct)
    assert row.activation.dropped_magnitude_pct == pytest.approx(pooled.dropped_magnitude_pct)
    assert row.activation.numel == pooled.numel and row.activation.nonzeros == pooled.nonzeros


def test_pooled_not_averaged_over_batches():
    """A dense batch and a sparse one: the pooled % is Σdropped/Σnnz, not the mean of the two %."""
    model = nn.Linear(8, 2)
    dense = torch.ones(1, 8)
    sparse = torch.tensor([[1.0, 1.0, 0, 0, 0, 0, 0, 0]])  # 2:8 drops nothing here
    row = profile_model(model, [dense, sparse], candidates=["2:8"])[0].candidate("2:8")
    assert row.activation_dropped_nonzeros_pct == pytest.approx(100 * 6 / 10)  # not (75 + 0) / 2


def test_conv_layers_k_macs_and_channel_grouping():
    torch.manual_seed(0)
    model = _ConvNet()
    batches = [torch.relu(torch.randn(2, 3, 6, 6)), torch.relu(torch.randn(1, 3, 6, 6))]
    p = profile_model(model, batches, candidates=["2:8", "1:8", "2:16"])
    assert [layer.name for layer in p] == ["conv1", "conv2", "fc"]
    assert p.skipped == (("depthwise", "grouped convolution (groups=16): no single reduction dim"),)
    conv1, conv2, fc = p["conv1"], p["conv2"], p["fc"]
    assert (conv1.kind, conv1.k, conv1.kernel_positions, conv1.k_total) == ("conv2d", 3, 9, 27)
    assert (conv2.k, conv2.k_total, conv2.weight_shape) == (8, 72, (16, 8, 3, 3))
    assert conv1.macs == 3 * 8 * 6 * 6 * 27  # output elements × C·R·S
    assert conv2.macs == 3 * 16 * 4 * 4 * 72
    assert fc.macs == 3 * 256 * 10
    # C = 3 < 8: no candidate applies to conv1, and the reason says so
    for c in conv1.candidates:
        assert not c.applicable and c.weight is None and c.activation is None
        assert "C=3" in c.reason and "block size" in c.reason
    # conv2: groups along C at each kernel position; its input is ReLU(conv1)
    with torch.no_grad():
        acts = torch.cat([torch.relu(model.conv1(b)) for b in batches])
    for series in ("2:8", "1:8"):
        c = conv2.candidate(series)
        assert c.weight_dropped_nonzeros_pct == pytest.approx(
            decompose(model.conv2.weight.detach(), series, dim=1).metrics.dropped_nonzeros_pct)
        assert c.activation_dropped_nonzeros_pct == pytest.approx(
            decompose(acts, series, dim=1).metrics.dropped_nonzeros_pct)
    assert "block size 16" in conv2.candidate("2:16").reason
    assert conv2.activation_sparsity_mean == pytest.approx(float((acts == 0).double().flatten(1).mean(1).mean()))
    assert fc.candidate("2:16").applicable


def test_candidates_default_and_canonical_names():
    p = profile_model(_mlp(), _mlp_batches())
    assert p.candidates == target_series("ttc-vegeta-m8")
    p = profile_model(_mlp(), _mlp_batches(), candidates=["2:8", "K(2:8)", "dense"])
    assert p.candidates == ("2:8", "dense")
    assert p[0].candidate("dense").weight_dropped_nonzeros_pct == 0.0
    with pytest.raises(KeyError, match="4:8"):
        p[0].candidate("4:8")


def test_totals_pool_weights_over_applicable_layers():
    model, batches = _mlp(), _mlp_batches()
    p = profile_model(model, batches, candidates=["2:16"])  # fc2 has K=8: n/a there
    assert not p["2"].candidate("2:16").applicable
    weights, activations = p.totals("2:16")
    assert weights == DecompositionSums.of(decompose(model[0].weight.detach(), "2:16", dim=1))
    assert activations.numel == 7 * 16


def test_pseudo_density_by_hand():
    rows = torch.zeros(3, 100)
    rows[0] = 1.0  # equal values: 99 of 100 hold 99 %
    rows[1, 0], rows[1, 1:16] = 100.0, 0.01  # one element holds 100 / 100.15 > 99 %
    assert per_sample_pseudo_density(rows).tolist() == pytest.approx([0.99, 0.01, 0.0])
    assert per_sample_pseudo_density(-rows).tolist() == pytest.approx([0.99, 0.01, 0.0])  # |x|


def test_dict_tuple_and_unbatched_inputs():
    class KwargModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 2)

        def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
            return self.fc(x * scale)

    model = KwargModel()
    x = torch.ones(3, 8)
    p = profile_model(model, [{"x": x, "scale": 0.0}, (x, 1.0), torch.ones(8)], candidates=[])
    assert p["fc"].samples == 3 + 3 + 1 and p["fc"].calls == 3
    assert p["fc"].activation_sparsity_mean == pytest.approx(3 / 7)


def test_layer_that_never_runs_has_no_activation_statistics():
    class Unused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.unused = nn.Linear(8, 8), nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x)

    p = profile_model(Unused(), [torch.ones(2, 8)], candidates=["2:8"])
    unused = p["unused"]
    assert (unused.samples, unused.macs, unused.activation_sparsity_mean, unused.pseudo_density) == (0, 0, None, None)
    assert unused.candidate("2:8").activation is None and unused.candidate("2:8").weight is not None


def test_as_dict_is_json_ready():
    import json

    p = profile_model(_mlp(), _mlp_batches(), candidates=["2:8", "2:16"])
    doc = json.loads(json.dumps(p.as_dict()))
    assert [layer["name"] for layer in doc["layers"]] == ["0", "2"]
    assert doc["layers"][1]["candidates"][1]["weight_dropped_nonzeros_pct"] is None
    assert doc["layers"][1]["candidates"][1]["reason"]
    assert [t["series"] for t in doc["totals"]] == ["2:8", "2:16"]


# ---------------------------------------------------------------------------------------------
# Side effects: hooks, modes, gradients, memory
# ---------------------------------------------------------------------------------------------


def _all_hooks(model: nn.Module) -> list[object]:
    hooks: list[object] = []
    for m in model.modules():
        hooks += [*m._forward_hooks.values(), *m._forward_pre_hooks.values(), *m._forward_hooks_with_kwargs]
    return hooks


def test_hooks_removed_after_success_and_after_an_exception():
    model = _mlp()
    profile_model(model, _mlp_batches(), candidates=["2:8"])
    assert _all_hooks(model) == []
    with pytest.raises(ValueError, match="calibration batch 1"):
        profile_model(model, [torch.ones(2, 16), torch.ones(2, 15)], candidates=["2:8"])
    assert _all_hooks(model) == []


def test_hooks_removed_when_the_batches_iterator_raises():
    def broken():
        yield torch.ones(2, 16)
        raise RuntimeError("data loader died")

    model = _mlp()
    with pytest.raises(RuntimeError, match="data loader died"):
        profile_model(model, broken(), candidates=[])
    assert _all_hooks(model) == []


def test_runs_in_eval_mode_without_grad_and_restores_each_modules_mode():
    seen: list[tuple[bool, bool]] = []

    class Probe(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append((self.training, torch.is_grad_enabled()))
            return x

    model = nn.Sequential(nn.Linear(4, 4), Probe(), nn.Dropout(0.5), nn.Linear(4, 4))
    model.train()
    model[2].eval()  # a mixed-mode model must come back mixed
    p = profile_model(model, [torch.ones(2, 4)], candidates=[])
    assert seen == [(False, False)]
    assert [m.training for m in model.modules()] == [True, True, True, False, True]
    assert p[1].activation_sparsity_mean == 0.0  # Dropout(0.5) in train mode would zero about half
    with pytest.raises(ValueError, match="calibration batch 0"):
        profile_model(model, [torch.ones(2, 5)], candidates=[])
    assert [m.training for m in model.modules()] == [True, True, True, False, True]
    assert torch.is_grad_enabled()


def test_activations_are_not_kept():
    """Streaming: once profile returns, no intermediate activation is referenced any more."""
    refs: list[weakref.ref] = []
    model = _mlp()
    handle = model[1].register_forward_hook(lambda m, i, o: refs.append(weakref.ref(o)))
    try:
        p = profile_model(model, (torch.randn(64, 16) for _ in range(3)), candidates=["2:8", "4:8+1:8"])
    finally:
        handle.remove()
    gc.collect()
    assert len(refs) == 3 and all(r() is None for r in refs)
    assert p["2"].samples == 192


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


def test_model_without_eligible_layer():
    with pytest.raises(ValueError, match=r"no nn\.Linear or nn\.Conv2d"):
        profile_model(nn.Sequential(nn.ReLU()), [torch.ones(2)])
    with pytest.raises(ValueError, match="groups=4"):
        profile_model(nn.Conv2d(4, 4, 3, groups=4), [torch.ones(1, 4, 5, 5)])


@pytest.mark.parametrize("batches", [[], iter(())], ids=["list", "generator"])
def test_empty_batches(batches):
    model = _mlp()
    with pytest.raises(ValueError, match="empty"):
        profile_model(model, batches)
    assert _all_hooks(model) == []


def test_bad_batch_names_its_index():
    batches = [torch.ones(2, 16), torch.ones(2, 16), torch.ones(3, 7)]
    with pytest.raises(ValueError, match=r"calibration batch 2: the model cannot take it \(RuntimeError"):
        profile_model(_mlp(), batches, candidates=[])
    with pytest.raises(TypeError, match="calibration batch 1 must be a tensor"):
        profile_model(_mlp(), [torch.ones(2, 16), "text"], candidates=[])


def test_bad_arguments():
    with pytest.raises(TypeError, match="wrap a single batch"):
        profile_model(_mlp(), torch.ones(2, 16))
    with pytest.raises(TypeError, match=r"nn\.Module"):
        profile_model("model", [torch.ones(2, 16)])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        profile_model(_mlp(), [torch.ones(2, 16)], candidates=["3:2"])


def test_nonfinite_activation_names_layer_and_batch():
    with pytest.raises(ValueError, match=r"calibration batch 0: layer '0'.*NaN"):
        profile_model(_mlp(), [torch.full((2, 16), math.nan)], candidates=["2:8"])


def test_tasder_nn_profile_is_the_module_and_doctest_passes():
    import tasder.nn
    import tasder.nn.profile as module

    assert tasder.nn.profile is module and tasder.nn.profile_model is profile_model  # no name shadows the module
    assert isinstance(profile_model(_mlp(), _mlp_batches(), candidates=[])[0], LayerProfile)
    assert doctest.testmod(module).failed == 0


def test_layers_filter_profiles_only_the_named_layers_with_the_same_numbers():
    model, batches = _mlp(), _mlp_batches()
    full = profile_model(model, batches, candidates=["2:8"])
    some = profile_model(model, batches, candidates=["2:8"], layers=["2"])
    assert [p.name for p in some] == ["2"]
    assert some["2"].as_dict() == full["2"].as_dict()
    assert [p.name for p in profile_model(model, batches, candidates=["2:8"], layers="*")] == [p.name for p in full]
    with pytest.raises(ValueError, match="matches no"):
        profile_model(model, batches, layers=["nope*"])
