"""tasder.nn options beyond the paper: ``permute`` (a K permutation) and ``bias_correction``."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

import tasder
from tasder.nn import (
    LayerSpec,
    TASDCalibration,
    TASDConfig,
    TASDConv2d,
    TASDLinear,
    apply_tasd,
    calibrate,
    export_tasd_weights,
    load_tasd_weights,
    strip_tasd,
)
from tasder.nn.calibration import calibrate_probes


class Net(nn.Module):
    """ReLU conv → conv → linear: inputs with real zeros for TASD-A, a conv and a linear for TASD-W."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.fc(x.mean(dim=(2, 3)))


@pytest.fixture()
def net() -> Net:
    torch.manual_seed(0)
    model = Net().eval()
    with torch.no_grad():  # sparse weights with uneven blocks: a permutation has something to do
        for m in (model.conv2, model.fc):
            m.weight.mul_((torch.rand_like(m.weight) < 0.2).float())
    return model


def _batches(n: int = 3) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(4, 3, 6, 6, generator=g) for _ in range(n)]


def _dropped_nonzeros(w: torch.Tensor, approx: torch.Tensor) -> int:
    return int(torch.count_nonzero(w)) - int(torch.count_nonzero(approx))


# -- TASD-W with a permutation --------------------------------------------------------------------


@pytest.mark.parametrize("layer", ["conv2", "fc"])
@pytest.mark.parametrize("series", ["1:8", "2:8+1:8"])
def test_permuted_tasd_w_is_exact_structured_and_drops_no_more(net: Net, layer: str, series: str) -> None:
    plain = getattr(net, layer)
    t = (TASDConv2d.from_conv2d if layer == "conv2" else TASDLinear.from_linear)(plain, series, "W", permute=True)
    terms = t.terms()
    total = terms[0].clone()
    for term in terms[1:]:
        total += term
    assert torch.equal(total, t.weight)  # the terms sum to Ŵ bit for bit
    kept = t.weight != 0
    assert torch.equal(t.weight[kept], plain.weight[kept])  # Ŵ keeps elements of W, unchanged
    for term, pattern in zip(terms, t.series.terms, strict=True):
        view, dim = t.grouped_view(term)
        assert view.shape == (plain.weight.shape[0], plain.weight[0].numel())  # the flattened K
        assert tasder.satisfies(view, pattern, dim=dim)
    baseline = (TASDConv2d.from_conv2d if layer == "conv2" else TASDLinear.from_linear)(plain, series, "W")
    assert _dropped_nonzeros(plain.weight, t.weight) <= _dropped_nonzeros(plain.weight, baseline.weight)
    x = torch.randn(2, 16, 5, 5) if layer == "conv2" else torch.randn(3, 16)
    assert torch.equal(t(x), t.to_plain()(x))  # the forward pass is the plain layer with Ŵ


def test_conv_permutation_runs_over_the_im2col_k_with_c_fastest() -> None:
    """The grouped layout of a Conv2d is (O, R·S·C) with C fastest, permuted: the im2col K order."""
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 4, 3)
    t = TASDConv2d.from_conv2d(conv, "2:8", "W", permute=True)
    perm = t.permutation
    assert perm is not None and perm.shape == (72,)
    view, dim = t.grouped_view(t.weight)
    assert dim == 1 and torch.equal(view, t.weight.permute(0, 2, 3, 1).reshape(4, 72)[:, perm])
    with pytest.raises(ValueError, match="chosen from its weight"):
        t.set_permutation(torch.arange(72))


def test_permutation_reduces_the_drop_where_blocks_are_unbalanced() -> None:
    """Every row's nonzeros sit in the first half of K: a 1:8 layout that spreads them drops nothing."""
    w = torch.zeros(4, 16)
    w[:, :2] = torch.tensor([[3.0, 2.0]])
    lin = nn.Linear(16, 4)
    with torch.no_grad():
        lin.weight.copy_(w)
    plain = TASDLinear.from_linear(lin, "1:8", "W")
    permuted = TASDLinear.from_linear(lin, "1:8", "W", permute=True)
    assert _dropped_nonzeros(w, plain.weight) == 4 and _dropped_nonzeros(w, permuted.weight) == 0


# -- TASD-A with a permutation, bias correction: calibration --------------------------------------


def test_tasd_a_permutation_approximates_in_the_permuted_channel_order(net: Net) -> None:
    cfg = {"conv2": {"series": "4:8", "mode": "A", "permute": True}}
    model = apply_tasd(net, cfg, calibration=_batches())
    layer = model.conv2
    assert isinstance(layer, TASDConv2d) and layer.permutation is not None
    assert sorted(layer.permutation.tolist()) == list(range(16))
    x = torch.relu(net.conv1(_batches(1)[0]))
    perm = layer.permutation
    expected = tasder.approximate(x.index_select(1, perm), "4:8", 1).index_select(1, torch.argsort(perm))
    with torch.no_grad():
        assert torch.equal(layer(x), nn.functional.conv2d(expected, net.conv2.weight, net.conv2.bias, padding=1))
    assert tasder.satisfies(expected.index_select(1, perm), "4:8", dim=1)


@pytest.mark.parametrize("mode", ["W", "A"])
def test_bias_correction_zeroes_the_mean_output_error_on_the_calibration_data(net: Net, mode: str) -> None:
    batches = _batches()
    spec = LayerSpec("2:8", mode, bias_correction=True)
    probe = TASDConv2d.from_conv2d(net.conv2, spec.series, mode, bias_correction=True)
    errors, _ = calibrate_probes(net, {"conv2": [probe]}, batches)
    assert probe.output_correction is not None and probe.output_correction.shape == (16,)
    assert errors[id(probe)].squared_error_corrected <= errors[id(probe)].squared_error
    captured: list[torch.Tensor] = []
    handle = net.conv2.register_forward_hook(lambda m, a, o: captured.append(a[0]))
    with torch.no_grad():
        for b in batches:
            net(b)
    handle.remove()
    with torch.no_grad():
        err = torch.cat([(probe(x) - net.conv2(x)).movedim(1, -1).reshape(-1, 16) for x in captured])
    assert float(err.mean(0).abs().max()) < 1e-5  # the corrected output is unbiased on that data
    with torch.no_grad():
        uncorrected = torch.cat([(probe.forward_uncorrected(x) - net.conv2(x)).movedim(1, -1).reshape(-1, 16)
                                 for x in captured])
    assert float(uncorrected.mean(0).abs().max()) > 1e-3  # ... which the plain approximation was not


def test_apply_tasd_asks_for_calibration_and_rejects_a_calibration_for_another_spec(net: Net) -> None:
    cfg = {"fc": {"series": "2:8", "mode": "W", "bias_correction": True}}
    with pytest.raises(ValueError, match=r"'fc'.*calibration=batches"):
        apply_tasd(net, cfg)
    other = calibrate(net, {"fc": {"series": "4:8", "mode": "W", "bias_correction": True}}, _batches())
    with pytest.raises(ValueError, match=r"no entry for layer\(s\) 'fc'"):
        apply_tasd(net, cfg, calibration=other)
    with pytest.raises(ValueError, match="list of input batches"):
        apply_tasd(net, cfg, calibration=torch.randn(2, 3, 6, 6))


def test_calibrate_is_deterministic_and_apply_with_it_equals_apply_with_batches(net: Net) -> None:
    cfg = TASDConfig.from_mapping({"conv2": {"series": "2:8+1:8", "mode": "A", "permute": True,
                                             "bias_correction": True},
                                   "fc": {"series": "1:8", "mode": "W", "permute": True, "bias_correction": True}})
    before = copy.deepcopy(net.state_dict())
    a, b = calibrate(net, cfg, _batches()), calibrate(net, cfg, _batches())
    assert isinstance(a, TASDCalibration) and len(a) == 2
    for key, entry in a.layers.items():
        other = b.layers[key]
        for field in ("permutation", "output_correction"):
            x, y = getattr(entry, field), getattr(other, field)
            assert (x is None and y is None) or torch.equal(x, y)
    x = _batches(1)[0]
    with torch.no_grad():
        assert torch.equal(apply_tasd(net, cfg, calibration=a)(x), apply_tasd(net, cfg, calibration=_batches())(x))
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # the model is untouched


def test_a_layer_that_needs_calibration_refuses_to_run_without_it(net: Net) -> None:
    layer = TASDLinear.from_linear(net.fc, "2:8", "A", permute=True)
    with pytest.raises(RuntimeError, match="no permutation yet"):
        layer(torch.randn(2, 16))
    layer = TASDLinear.from_linear(net.fc, "2:8", "W", bias_correction=True)
    with pytest.raises(RuntimeError, match="no output_correction yet"):
        layer(torch.randn(2, 16))


# -- persistence: state_dict, strip, export, YAML --------------------------------------------------


def test_state_dict_of_a_calibrated_layer_loads_into_one_built_the_same_way(net: Net) -> None:
    cfg = {"conv2": {"series": "4:8", "mode": "A", "permute": True, "bias_correction": True}}
    model = apply_tasd(net, cfg, calibration=_batches())
    fresh = TASDConv2d.from_conv2d(net.conv2, "4:8", "A", permute=True, bias_correction=True)
    fresh.load_state_dict(model.conv2.state_dict())
    x = torch.relu(torch.randn(2, 16, 6, 6))
    with torch.no_grad():
        assert torch.equal(fresh(x), model.conv2(x))


def test_strip_tasd_bakes_a_tasd_w_correction_into_the_bias(net: Net) -> None:
    cfg = {"fc": {"series": "1:8", "mode": "W", "permute": True, "bias_correction": True}}
    model = apply_tasd(net, cfg, calibration=_batches())
    plain = strip_tasd(model)
    assert type(plain.fc) is nn.Linear
    x = torch.randn(3, 16)
    with torch.no_grad():
        assert torch.allclose(plain.fc(x), model.fc(x), rtol=0, atol=1e-6)


def test_export_round_trips_permuted_terms_and_the_correction(net: Net, tmp_path) -> None:
    cfg = {"conv2": {"series": "2:8+1:8", "mode": "W", "permute": True, "bias_correction": True}}
    model = apply_tasd(net, cfg, calibration=_batches())
    loaded = load_tasd_weights(export_tasd_weights(model, tmp_path / "w.safetensors"))["conv2"]
    assert torch.equal(loaded.weight, model.conv2.weight)
    assert torch.equal(loaded.permutation, model.conv2.permutation)
    assert torch.equal(loaded.output_correction, model.conv2.output_correction)
    for unpacked, term in zip(loaded.unpacked_terms(), model.conv2.terms(), strict=True):
        assert torch.equal(unpacked, term)
    for packed, pattern in zip(loaded.terms, ["2:8", "1:8"], strict=True):
        assert tasder.satisfies(packed.unpack(), pattern, dim=loaded.dim)  # packed in the grouped layout


def test_config_yaml_round_trips_the_options() -> None:
    cfg = TASDConfig.from_mapping({"a": {"series": "1:8", "mode": "A", "permute": True},
                                   "b": {"series": "2:8", "bias_correction": True}, "c": "4:8"})
    text = cfg.to_yaml()
    assert "permute: true" in text and "bias_correction: true" in text
    back = TASDConfig.from_yaml(text)
    assert back == cfg and back.layers["a"].needs_calibration and not back.layers["c"].needs_calibration


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"series": "K1(2:4)->K0(2:4)", "permute": True}, "G:H terms"),
        ({"series": "2:4+1:8", "permute": True}, "one block size"),
        ({"series": "dense", "bias_correction": True}, "do not apply"),
        ({"series": "2:8", "permute": "yes"}, "`permute` must be true or false"),
    ],
)
def test_bad_options_are_rejected_with_the_reason(value: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TASDConfig.from_mapping({"fc": value})


# -- calibration is the same on every CPU ----------------------------------------------------------

_CALIBRATE_SHIPPED_CNN = """
import sys, torch
from tasder import zoo
from tasder.nn import calibrate
entry = zoo.load("digits-cnn-sparse-95", progress=False)
w = {"series": "1:8", "mode": "W", "permute": True, "bias_correction": True, "score": "activation"}
a = {"series": "4:8+1:8", "mode": "A", "permute": True, "bias_correction": True}
cfg = {"conv2": w, "conv3": w, "fc1": {**w, "reconstruct": True}, "fc2": a}
cal = calibrate(entry.model, cfg, list(entry.calibration))
torch.save({f"{name} {field}": t for (name, _), entry in cal.layers.items()
            for field, t in vars(entry).items() if t is not None}, sys.argv[1])
"""


@pytest.mark.slow
def test_calibration_chooses_the_same_under_every_cpu_kernel_set(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """With torch's AVX-512, AVX2 and plain kernels (``ATEN_CPU_CAPABILITY``, oneDNN's ISA capped to
    match), as on machines that have only those, calibrating the shipped sparse CNN makes the same
    choices bit for bit — permutations, which weights each term keeps, the activation norms they
    were ranked by — and the continuous parts (bias corrections, refit weights) agree to float32
    rounding. Before calibration ran in float64 the norms differed in their last bits between
    kernel sets and the kept weights with them (issue 20: the README's numbers did not reproduce
    on an AVX-512 machine)."""
    import os
    import subprocess
    import sys

    runs = {}
    for capability, onednn in (("avx512", "ALL"), ("avx2", "AVX2"), ("default", "SSE41")):
        env = {**os.environ, "ATEN_CPU_CAPABILITY": capability, "ONEDNN_MAX_CPU_ISA": onednn}
        path = tmp_path / f"{capability}.pt"
        proc = subprocess.run([sys.executable, "-c", _CALIBRATE_SHIPPED_CNN, str(path)], env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs[capability] = torch.load(path)
    first = runs["avx512"]
    assert {k.split()[1] for k in first} == {"permutation", "term_index", "input_norm", "output_correction",
                                             "reconstructed"}
    for capability, got in runs.items():
        assert got.keys() == first.keys()
        for key, t in got.items():
            if key.split()[1] in ("permutation", "term_index", "input_norm"):
                assert torch.equal(t, first[key]), f"{key} differs between avx512 and {capability}"
            else:
                torch.testing.assert_close(t, first[key], rtol=1e-5, atol=1e-6, msg=f"{key}: {capability}")


class _Float32Only(nn.Module):
    """A model whose forward casts its input to float32 itself: a float64 copy of it cannot run."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.to(torch.float32))


def test_calibration_of_a_model_that_cannot_run_in_float64_falls_back_with_a_warning() -> None:
    """Such a model is calibrated as it is (float32), with a warning naming why and what it risks;
    its training flag is restored. A batch the model itself cannot run raises the model's own error."""
    torch.manual_seed(0)
    model = _Float32Only().train()
    batches = [torch.randn(8, 16) for _ in range(2)]
    spec = {"fc": {"series": "2:8", "mode": "W", "bias_correction": True, "score": "activation"}}
    with pytest.warns(UserWarning, match=r"float64 copy of it could not run \(RuntimeError.*differ between CPUs"):
        cal = calibrate(model, spec, batches)
    assert len(cal) == 1 and model.training
    bad = pytest.raises(RuntimeError, match="shapes cannot be multiplied")
    with warnings.catch_warnings(record=True) as caught, bad:
        warnings.simplefilter("always")
        calibrate(model, spec, [torch.randn(8, 5)])
    assert not [w for w in caught if "float64" in str(w.message)]  # the model's own error, no fallback story
