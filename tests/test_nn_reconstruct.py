"""TASD-W from calibration activations: ``score: activation`` (|W_ij|·‖X_j‖₂) and ``reconstruct``
(OBS refit of the kept weights). The TASD invariant holds for what is stored: terms + residual ==
the (refit) weight W″ bit for bit, and the terms sum to the layer's weight exactly."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.strategies import tensors
from torch import nn

from tasder.nn import LayerSpec, TASDConfig, TASDLinear, apply_tasd, export_tasd_weights, load_tasd_weights
from tasder.nn.calibration import calibrate_probes, gemm_rows
from tasder.nn.reconstruct import damped_inverse_factor, obs_reconstruct, split_by_index
from tasder.sparsity import parse_series, satisfies


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(x))
        return self.fc(x.mean(dim=(2, 3)).repeat(1, 4))


def _correlated(n: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(k // 4, k, generator=torch.Generator().manual_seed(99))
    return torch.randn(n, k // 4, generator=g) @ mix + 0.05 * torch.randn(n, k, generator=g)


@given(x=tensors(), data=st.data())
@settings(max_examples=60, deadline=None)
def test_split_by_index_moves_every_element_exactly_once(x, data):
    terms = data.draw(st.integers(1, 3))
    index = torch.randint(0, terms + 1, x.shape, generator=torch.Generator().manual_seed(data.draw(st.integers(0, 99))),
                          dtype=torch.uint8)
    parts, residual = split_by_index(x, index, terms)
    total = residual.clone()
    for p in parts:
        total += p
    assert torch.equal(total.view(torch.int8 if x.element_size() == 1 else {2: torch.int16, 4: torch.int32,
                                                                             8: torch.int64}[x.element_size()]),
                       x.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[x.element_size()]))
    for t, p in enumerate(parts):
        assert not bool((p[index != t + 1] != 0).any())


@pytest.mark.parametrize("series", ["4:8", "2:8+1:8", "4:8+1:8"])
@pytest.mark.parametrize(("score", "reconstruct"), [("activation", False), ("magnitude", True), ("activation", True)])
def test_layer_invariant_terms_plus_residual_is_the_refit_weight(series, score, reconstruct):
    torch.manual_seed(0)
    linear = nn.Linear(48, 12)
    layer = TASDLinear.from_linear(linear, series, "W", score=score, reconstruct=reconstruct)
    x = _correlated(200, 48, 1)
    sumsq = x.double().pow(2).sum(0)
    factor = damped_inverse_factor((x.T @ x).double()) if reconstruct else None
    terms, residual, refit = layer.calibrate_weight_(sumsq, factor)
    total = residual.clone()
    for t in terms:
        total += t
    assert torch.equal(total.view(torch.int32), refit.view(torch.int32))  # bit for bit
    approx = terms[0].clone()
    for t in terms[1:]:
        approx += t
    assert torch.equal(approx, layer.weight)
    stored = layer.terms()
    assert all(torch.equal(a, b) for a, b in zip(stored, terms, strict=True))
    for t, pattern in zip(stored, parse_series(series).terms, strict=True):
        assert satisfies(t, pattern, dim=1)
    if not reconstruct:  # the values are the original ones, only the choice differs
        kept = layer.weight != 0
        assert torch.equal(layer.weight[kept], linear.weight[kept])
    assert torch.equal(residual[layer.weight != 0], torch.zeros_like(residual[layer.weight != 0]))


def test_reconstruction_lowers_the_output_error_on_correlated_inputs():
    torch.manual_seed(0)
    linear = nn.Linear(64, 32)
    calib, held = _correlated(512, 64, 2), _correlated(2048, 64, 3)
    errors = {}
    for reconstruct in (False, True):
        layer = TASDLinear.from_linear(linear, "2:8+1:8", "W", reconstruct=reconstruct) if reconstruct \
            else TASDLinear.from_linear(linear, "2:8+1:8", "W")
        if reconstruct:
            layer.calibrate_weight_(calib.double().pow(2).sum(0), damped_inverse_factor((calib.T @ calib).double()))
        with torch.no_grad():
            y = linear(held)
            errors[reconstruct] = float((layer(held) - y).norm() / y.norm())
    assert errors[True] < 0.9 * errors[False]


def test_obs_sweep_zeroes_dropped_weights_and_keeps_an_unneeded_weight():
    w = torch.randn(4, 16, dtype=torch.float64)
    keep = torch.ones(4, 16, dtype=torch.bool)
    keep[:, ::3] = False
    factor = damped_inverse_factor(torch.eye(16, dtype=torch.float64))
    out = obs_reconstruct(w, keep, factor)
    assert torch.equal(out[~keep], torch.zeros_like(out[~keep]))
    # independent inputs (H = I): dropping one column says nothing about the others
    torch.testing.assert_close(out[keep], w[keep], rtol=0, atol=1e-12)


def test_conv_gemm_rows_are_the_im2col_of_the_convolution():
    torch.manual_seed(0)
    for conv in (nn.Conv2d(3, 5, 3, padding=1), nn.Conv2d(3, 5, 3, padding="same", padding_mode="reflect"),
                 nn.Conv2d(3, 5, (2, 3), stride=2, dilation=(1, 2))):
        x = torch.randn(2, 3, 7, 8)
        rows = gemm_rows(conv, x)
        y = conv(x)
        flat = rows @ conv.weight.reshape(5, -1).T + conv.bias
        torch.testing.assert_close(flat, y.movedim(1, -1).reshape(-1, 5), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("opts", [{"score": "activation"}, {"reconstruct": True},
                                  {"score": "activation", "reconstruct": True, "permute": True}])
def test_apply_tasd_export_and_reload(tmp_path, opts):
    torch.manual_seed(0)
    net = Net().eval()
    calib = [torch.randn(4, 8, 6, 6) for _ in range(3)]
    config = {"conv": {"series": "2:8+1:8", "mode": "W", **opts}, "fc": {"series": "4:8", "mode": "W", **opts}}
    model = apply_tasd(net, config, calibration=calib)
    again = apply_tasd(net, config, calibration=calib)
    for name in ("conv", "fc"):
        assert torch.equal(getattr(model, name).weight, getattr(again, name).weight)  # deterministic
    path = export_tasd_weights(model, tmp_path / "w.safetensors")
    loaded = load_tasd_weights(path)  # checks that the unpacked terms sum to the weight
    for name in ("conv", "fc"):
        layer = getattr(model, name)
        assert torch.equal(loaded[name].weight, layer.weight)
        assert loaded[name].score == opts.get("score", "magnitude")
        assert loaded[name].reconstructed == opts.get("reconstruct", False)
        assert (loaded[name].input_norm is not None) == (opts.get("score") == "activation")
    cfg = TASDConfig.from_yaml(TASDConfig.from_mapping(config).to_yaml())
    assert cfg == TASDConfig.from_mapping(config)


def test_a_layer_waits_for_calibration_and_says_so():
    layer = TASDLinear.from_linear(nn.Linear(16, 4), "4:8", "W", score="activation")
    with pytest.raises(RuntimeError, match="calibration"):
        layer(torch.randn(2, 16))
    with pytest.raises(ValueError, match="calibration"):
        apply_tasd(nn.Sequential(nn.Linear(16, 4)), {"0": {"series": "4:8", "score": "activation"}})


@pytest.mark.parametrize(("value", "match"), [
    ({"series": "4:8", "mode": "A", "score": "activation"}, "TASD-W"),
    ({"series": "4:8", "mode": "A", "reconstruct": True}, "TASD-W"),
    ({"series": "4:8", "score": "wanda"}, "score"),
    ({"series": "dense", "reconstruct": True}, "dense"),
    ({"series": "4:8", "reconstruct": "yes"}, "reconstruct"),
])
def test_bad_specs_are_refused(value, match):
    with pytest.raises(ValueError, match=match):
        LayerSpec.from_value(value)


def test_probes_share_one_statistics_pass():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 16))
    probes = [TASDLinear.from_linear(model[0], s, "W", score="activation", reconstruct=True)
              for s in ("4:8", "2:8+1:8")]
    calibrate_probes(model, {"0": probes}, [torch.randn(64, 32) for _ in range(2)], measure=True)
    assert all(p.calibrated and p.input_norm is not None for p in probes)
