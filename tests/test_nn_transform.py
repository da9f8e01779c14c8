"""tasder.nn: TASD layers, apply_tasd / strip_tasd, weight export and MAC accounting."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F  # noqa: N812

import tasder
from tasder.nn import (
    TASDConfig,
    TASDConv2d,
    TASDLinear,
    apply_tasd,
    count_macs,
    export_tasd_weights,
    load_tasd_weights,
    revert,
    strip_tasd,
    tasd_report,
)

SERIES = "2:8+1:8"


class Net(nn.Module):
    """A conv block and an MLP head: every kind of layer the transforms meet."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 16, 3, stride=2, padding=2, dilation=2)
        self.gconv = nn.Conv2d(16, 16, 1, groups=4)
        self.norm = nn.BatchNorm2d(16)
        self.head = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 5, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = self.norm(self.gconv(torch.relu(self.conv2(x))))
        return self.head(x.mean(dim=(2, 3)))


@pytest.fixture()
def net() -> Net:
    torch.manual_seed(0)
    return Net().eval()


def _x(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(1))


# -- exactness ------------------------------------------------------------------------------------


def test_all_dense_config_reproduces_the_original_outputs_exactly(net: Net) -> None:
    x = _x(2, 3, 11, 13)
    dense = apply_tasd(net, {"*": {"series": "dense"}, "norm": "dense"})
    assert torch.equal(dense(x), net(x))
    assert tasd_report(dense).layers == {}


@pytest.mark.parametrize("bias", [True, False])
def test_tasd_w_linear_equals_plain_linear_with_approximated_weight(bias: bool) -> None:
    torch.manual_seed(0)
    plain = nn.Linear(24, 7, bias=bias)
    layer = TASDLinear.from_linear(plain, SERIES, "W")
    w_hat = tasder.decompose(plain.weight.detach(), SERIES, dim=1).approximation
    assert torch.equal(layer.weight, w_hat)
    x = _x(4, 5, 24)  # (batch, tokens, features)
    assert torch.equal(layer(x), F.linear(x, w_hat, plain.bias))


@pytest.mark.parametrize(("bias", "series"), [(True, SERIES), (False, SERIES), (True, "K1(3:4)->K0(2:4)")])
def test_tasd_a_linear_equals_plain_linear_on_approximated_input(bias: bool, series: str) -> None:
    torch.manual_seed(0)
    plain = nn.Linear(20, 6, bias=bias)  # 20: not a multiple of 8 (or 16), the last block is padded
    layer = TASDLinear.from_linear(plain, series, "A")
    for x in (_x(3, 9, 20), _x(20), _x(5, 20)):
        expected = plain(tasder.decompose(x, series, dim=-1).approximation)
        assert torch.equal(layer(x), expected)


CONV_CASES = [
    {"kernel_size": 3, "padding": 1},
    {"kernel_size": 3, "stride": 2, "padding": 2, "dilation": 2},
    {"kernel_size": (1, 5), "padding": (0, 2), "stride": (2, 1)},
    {"kernel_size": 2, "padding": "valid", "bias": False},
    {"kernel_size": 3, "padding": "same", "padding_mode": "reflect"},
]


@pytest.mark.parametrize("kwargs", CONV_CASES)
def test_tasd_w_conv2d_equals_plain_conv_with_weight_approximated_along_c(kwargs: dict) -> None:
    torch.manual_seed(0)
    plain = nn.Conv2d(16, 6, **kwargs)
    layer = TASDConv2d.from_conv2d(plain, SERIES, "W")
    w_hat = tasder.decompose(plain.weight.detach(), SERIES, dim=1).approximation
    assert torch.equal(layer.weight, w_hat)
    x = _x(2, 16, 9, 7)  # odd spatial sizes
    assert torch.equal(layer(x), plain._conv_forward(x, w_hat, plain.bias))


@pytest.mark.parametrize("kwargs", CONV_CASES)
def test_tasd_a_conv2d_equals_plain_conv_on_input_approximated_along_c(kwargs: dict) -> None:
    torch.manual_seed(0)
    plain = nn.Conv2d(16, 6, **kwargs)
    layer = TASDConv2d.from_conv2d(plain, SERIES, "A")
    for x in (_x(2, 16, 9, 7), _x(16, 5, 11)):  # batched and unbatched
        expected = plain(tasder.decompose(x, SERIES, dim=-3).approximation)
        assert torch.equal(layer(x), expected)


def test_tasd_w_terms_sum_to_the_weight_and_obey_their_patterns() -> None:
    torch.manual_seed(0)
    for series in (SERIES, "K1(3:4)->K0(2:4)+2:16"):
        layer = TASDConv2d.from_conv2d(nn.Conv2d(32, 4, 3), series, "W")
        terms = layer.terms()
        assert torch.equal(sum(terms[1:], terms[0].clone()), layer.weight.detach())
        for term, pattern in zip(terms, layer.series.terms, strict=True):
            assert tasder.satisfies(term, pattern, dim=1)


def test_tasd_w_terms_raise_once_the_weight_leaves_the_series() -> None:
    layer = TASDLinear.from_linear(nn.Linear(16, 4), "2:8", "W")
    with torch.no_grad():
        layer.weight.fill_(1.0)
    with pytest.raises(ValueError, match="reapproximate_"):
        layer.terms()
    layer.reapproximate_()
    assert tasder.satisfies(layer.weight, "2:8", dim=1)


def test_directly_constructed_tasd_w_layer_approximates_its_initial_weight() -> None:
    layer = TASDLinear(16, 4, series="2:8")
    assert tasder.satisfies(layer.weight, "2:8", dim=1)
    with pytest.raises(ValueError, match="in_features=4 is smaller than the block size 8"):
        TASDLinear(4, 4, series="2:8")
    with pytest.raises(ValueError, match="dense"):
        TASDConv2d(8, 4, 3, series="dense")


# -- TASD-A details -------------------------------------------------------------------------------


def test_tasd_a_gradient_flows_through_kept_elements_only() -> None:
    torch.manual_seed(0)
    plain = nn.Linear(16, 3)
    layer = TASDLinear.from_linear(plain, "2:8", "A")
    x = _x(4, 16).requires_grad_()
    out = layer(x)
    assert torch.equal(out, layer(x.detach()))  # same values as the no-grad path
    out.sum().backward()
    kept = tasder.decompose(x.detach(), "2:8").approximation != 0
    expected = kept * plain.weight.detach().sum(dim=0)  # d(sum(out))/dx on kept elements
    assert torch.equal(x.grad, expected)
    assert layer.weight.grad is not None


def test_tasd_a_counters_count_kept_and_seen_input_elements() -> None:
    layer = TASDLinear.from_linear(nn.Linear(16, 3), "2:8", "A")
    x = torch.relu(_x(5, 16))  # zeros: fewer kept than the series allows
    layer(x)
    layer(x.clone())
    approx = tasder.decompose(x, "2:8").approximation
    assert layer.seen_elements == 2 * x.numel()
    assert layer.kept_elements == 2 * int(torch.count_nonzero(approx))
    layer.reset_stats()
    assert (layer.kept_elements, layer.seen_elements, layer.measured_density) == (0, 0, None)


def test_tasd_a_shared_input_memo_is_invalidated_by_in_place_changes() -> None:
    torch.manual_seed(0)
    a = TASDLinear.from_linear(nn.Linear(16, 3), SERIES, "A")
    b = TASDLinear.from_linear(nn.Linear(16, 3), SERIES, "A")
    x = _x(4, 16)
    a(x)
    assert torch.equal(b(x), F.linear(tasder.approximate(x, SERIES), b.weight, b.bias))
    x.mul_(-3.0)  # same object, new values
    assert torch.equal(b(x), F.linear(tasder.approximate(x, SERIES), b.weight, b.bias))


# -- module behaviour -----------------------------------------------------------------------------


def test_tasd_layers_repr_shows_series_and_mode(net: Net) -> None:
    model = apply_tasd(net, {"conv2": "2:8", "head.0": {"series": SERIES, "mode": "A"}})
    assert "series=2:8, mode=W" in repr(model.conv2)
    assert "series=2:8+1:8, mode=A" in repr(model.head[0])


def test_state_dict_keys_match_and_load_into_a_fresh_tasd_model(net: Net) -> None:
    cfg = {"conv1": "2:8", "head.*": {"series": SERIES, "mode": "A"}}
    model = apply_tasd(net, cfg)
    assert model.state_dict().keys() == net.state_dict().keys()
    fresh = apply_tasd(Net(), cfg)
    fresh.load_state_dict(model.state_dict())
    x = _x(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), model(x))


def test_train_and_eval_switch_tasd_layers_and_no_grad_inference_runs(net: Net) -> None:
    model = apply_tasd(net, {"head.0": {"series": SERIES, "mode": "A"}})
    assert not model.head[0].training
    model.train()
    assert model.head[0].training
    model.eval()
    with torch.no_grad():
        out = model(_x(2, 3, 8, 8))
    assert out.shape == (2, 5) and not out.requires_grad


# -- apply_tasd -----------------------------------------------------------------------------------


def test_apply_tasd_leaves_the_original_untouched_unless_inplace(net: Net) -> None:
    before = copy.deepcopy(net.state_dict())
    model = apply_tasd(net, {"conv2": "2:8"})
    assert type(net.conv2) is nn.Conv2d and type(model.conv2) is TASDConv2d
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    same = apply_tasd(net, {"conv2": "2:8"}, inplace=True)
    assert same is net and type(net.conv2) is TASDConv2d


def test_apply_tasd_converts_what_globs_select_and_exact_names_override(net: Net) -> None:
    model = apply_tasd(net, {"*": {"series": "4:8", "mode": "A"}, "head.2": "2:8", "conv1": "dense"})
    report = tasd_report(model)
    assert {k: (str(v.series), v.mode) for k, v in report.layers.items()} == {
        "conv2": ("4:8", "A"), "head.0": ("4:8", "A"), "head.2": ("2:8", "W"),
    }
    assert type(model.conv1) is nn.Conv2d and report.dense == ("conv1",)
    assert type(model.norm) is nn.BatchNorm2d  # a glob never selects other layer types


def test_apply_tasd_skips_grouped_conv_and_short_reduction_dims_with_reasons(net: Net) -> None:
    model = apply_tasd(net, {"*": "2:8", "conv1": "2:4"})  # conv1 has C=3 < 4
    skipped = tasd_report(model).skipped
    assert set(skipped) == {"conv1", "gconv"}
    assert "groups=4" in skipped["gconv"]
    assert "in_channels" in skipped["conv1"] and "block size 4" in skipped["conv1"]
    assert type(model.gconv) is nn.Conv2d and type(model.conv1) is nn.Conv2d


def test_apply_tasd_reads_a_yaml_file(net: Net, tmp_path) -> None:
    path = TASDConfig.from_mapping({"head.0": {"series": SERIES, "mode": "A"}}).save(tmp_path / "c.yaml")
    model = apply_tasd(net, path)
    assert isinstance(model.head[0], TASDLinear) and model.head[0].mode == "A"


def test_unknown_layer_name_raises_with_close_match_suggestion(net: Net) -> None:
    with pytest.raises(ValueError, match=r"no layer named 'head\.O'.*did you mean .*'head\.0'"):
        apply_tasd(net, {"head.O": "2:8"})
    with pytest.raises(ValueError, match=r"glob 'decoder\.\*' matches no Linear/Conv2d"):
        apply_tasd(net, {"decoder.*": "2:8"})


def test_config_naming_an_unsupported_layer_type_raises_type_error(net: Net) -> None:
    with pytest.raises(TypeError, match="layer 'norm' is a BatchNorm2d"):
        apply_tasd(net, {"norm": "2:8"})


def test_failed_apply_tasd_leaves_the_model_as_it_was_even_inplace(net: Net) -> None:
    with torch.no_grad():
        net.head[2].weight[0, 0] = float("nan")
    before = copy.deepcopy(net.state_dict())
    for bad in ({"conv2": "2:8", "norm": "2:8"}, {"conv2": "2:8", "head.2": "2:8"}, {"conv2": {"mode": "W"}}):
        with pytest.raises((TypeError, ValueError)):
            apply_tasd(net, bad, inplace=True)
        assert type(net.conv2) is nn.Conv2d and not hasattr(net, "tasd_report")
        after = net.state_dict()
        assert all(torch.allclose(before[k], after[k], rtol=0, atol=0, equal_nan=True) for k in before)


def test_nan_weight_error_names_the_layer(net: Net) -> None:
    with torch.no_grad():
        net.head[2].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"layer 'head\.2'.*NaN"):
        apply_tasd(net, {"head.2": "2:8"})


def test_reapplying_to_a_tasd_layer_by_name_asks_to_strip_first(net: Net) -> None:
    model = apply_tasd(net, {"conv2": "2:8"})
    with pytest.raises(ValueError, match="strip_tasd"):
        apply_tasd(model, {"conv2": "4:8"})


def test_shared_module_is_converted_once_under_every_alias() -> None:
    shared = nn.Linear(16, 16)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    out = apply_tasd(model, {"0": "2:8"})
    assert out[0] is out[2] and isinstance(out[0], TASDLinear)


# -- strip / export -------------------------------------------------------------------------------


def test_strip_tasd_gives_plain_layers_that_compute_the_same(net: Net) -> None:
    model = apply_tasd(net, {"conv2": "2:8", "head.0": {"series": SERIES, "mode": "A"}})
    plain = strip_tasd(model)
    assert type(plain.conv2) is nn.Conv2d and type(plain.head[0]) is nn.Linear
    assert torch.equal(plain.conv2.weight, model.conv2.weight)  # TASD-W: Ŵ baked in
    assert torch.equal(plain.head[0].weight, net.head[0].weight)  # TASD-A: the original layer
    assert isinstance(model.conv2, TASDConv2d)  # not in place by default
    x = _x(2, 3, 8, 8)
    assert torch.equal(plain(x), strip_tasd(apply_tasd(net, {"conv2": "2:8"}))(x))
    assert revert is strip_tasd and not hasattr(plain, "tasd_report")


def test_export_then_load_round_trips_weights_and_packed_terms(net: Net, tmp_path) -> None:
    model = apply_tasd(net, {"conv2": SERIES, "head.0": "4:8", "head.2": {"series": "2:8", "mode": "A"}})
    path = export_tasd_weights(model, tmp_path / "w.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # the temp file is gone
    loaded = load_tasd_weights(path)
    assert set(loaded) == {"conv2", "head.0"}  # TASD-A layers have no decomposed weight
    conv = loaded["conv2"]
    assert conv.series == SERIES and conv.dim == 1 and len(conv.terms) == 2
    assert torch.equal(conv.weight, model.conv2.weight)
    for unpacked, term in zip(conv.unpacked_terms(), model.conv2.terms(), strict=True):
        assert torch.equal(unpacked, term)


def test_load_tasd_weights_rejects_terms_that_do_not_sum_to_the_weight(net: Net, tmp_path) -> None:
    from safetensors import safe_open

    path = export_tasd_weights(apply_tasd(net, {"head.0": "4:8"}), tmp_path / "w.safetensors")
    with safe_open(str(path), framework="pt") as fh:
        metadata = fh.metadata()
    tensors = load_file(str(path))
    tensors["head.0.weight"] = tensors["head.0.weight"] + 1.0
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(ValueError, match=r"layer 'head\.0': the unpacked terms do not sum"):
        load_tasd_weights(path)


# -- MAC accounting -------------------------------------------------------------------------------


def test_count_macs_dense_and_effective_counts_per_layer_kind(net: Net) -> None:
    model = apply_tasd(net, {"conv2": SERIES, "head.0": {"series": "2:8", "mode": "A"}})
    x = _x(2, 3, 9, 11)
    report = count_macs(model, x)
    rows = {r.name: r for r in report.layers}
    # conv1: O·C·R·S·P·Q·N with a 9x11 output (padding 1)
    assert rows["conv1"].dense_macs == 16 * 3 * 3 * 3 * 9 * 11 * 2 == rows["conv1"].effective_macs
    # conv2: stride 2, padding 2, dilation 2 → output 5x6
    assert rows["conv2"].dense_macs == 16 * 16 * 9 * 5 * 6 * 2
    assert rows["conv2"].effective_macs == pytest.approx(rows["conv2"].dense_macs * 0.375)
    # head.0 (TASD-A): 2 tokens · 16 · 32, times the measured kept fraction of its input
    head = model.head[0]
    assert rows["head.0"].dense_macs == 2 * 16 * 32
    assert rows["head.0"].effective_macs == pytest.approx(2 * 16 * 32 * head.kept_elements / head.seen_elements)
    assert rows["gconv"].dense_macs == 16 * 4 * 1 * 1 * 5 * 6 * 2  # C/groups = 4, 1x1 kernel
    assert report.total_dense == sum(r.dense_macs for r in report.layers)
    assert report.to_rows()[-1]["layer"] == "TOTAL"


def test_count_macs_removes_its_hooks_also_when_the_forward_fails(net: Net) -> None:
    count_macs(net, _x(1, 3, 8, 8))
    with pytest.raises(RuntimeError):
        count_macs(net, _x(1, 4, 8, 8))  # wrong channel count
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())
