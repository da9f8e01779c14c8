"""tasder.nn.trace_gemms, the one GEMM tracer, and what its four users build on it.

The rules under test (see tasder/nn/trace.py): every call is a record (a shared module called
twice gives two); the pass runs in eval mode under no_grad and restores each submodule's own
training flag; the model is otherwise untouched (also when the forward pass raises); a convolution
keeps its whole geometry.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from tasder.nn import apply_tasd, count_macs, trace_gemms
from tasder.train import count_training_ops
from tasder.workloads import trace_network, workload_from_model


class Shared(nn.Module):
    """One Linear called twice per forward (a weight-tied block), between BatchNorm and Dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.5)
        self.block = nn.Linear(8, 8)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn(self.conv(x)).mean(dim=(2, 3))
        h = self.block(self.drop(h))
        h = self.block(torch.relu(h))
        return self.head(h)


@pytest.fixture
def model() -> Shared:
    torch.manual_seed(0)
    return Shared()


def test_a_shared_module_called_twice_is_two_calls(model: Shared) -> None:
    calls = trace_gemms(model, torch.randn(5, 3, 6, 6))
    assert [c.name for c in calls] == ["conv", "block", "block", "head"]
    assert [c.index for c in calls] == [0, 1, 2, 3]
    assert [(c.kind, c.M, c.K, c.N, c.batch) for c in calls[1:]] == [("linear", 8, 8, 5, 5)] * 2 + [
        ("linear", 4, 8, 5, 5)]
    assert count_macs(model, torch.randn(5, 3, 6, 6)).layers[1].calls == 2  # MAC counting sums the calls
    net = trace_network(model, torch.randn(5, 3, 6, 6))
    assert [p.name for p in net.layers] == ["conv", "block", "block", "head"]  # one GEMM per call
    workload = workload_from_model(model, torch.randn(5, 3, 6, 6))
    assert [(p.name, p.repeat) for p in workload.layers] == [("conv", 1), ("block", 2), ("head", 1)]
    ops = count_training_ops(model, torch.randn(5, 3, 6, 6))
    assert [lay.name for lay in ops.layers] == ["conv", "block", "block", "head"] and ops.layers[0].first


def test_eval_mode_no_grad_and_the_callers_modes_restored(model: Shared) -> None:
    model.train()
    model.bn.eval()  # a half-eval model keeps being one
    stats = model.bn.running_mean.clone()
    seen: list[tuple[bool, bool, float]] = []

    def observe(call, module, x, output):
        seen.append((module.training, torch.is_grad_enabled(), float((x == 0).float().mean())))

    trace_gemms(model, torch.randn(64, 3, 6, 6), observe=observe)
    assert all(not training and not grad for training, grad, _ in seen)
    assert seen[1][2] == 0.0  # the block's input after Dropout(0.5): no dropped zeros in eval mode
    assert model.training and not model.bn.training and model.drop.training and model.block.training
    assert torch.equal(model.bn.running_mean, stats)  # eval-mode batch norm leaves its statistics alone
    assert not any(m._forward_hooks for m in model.modules())


def test_a_failing_forward_leaves_no_hook_and_the_modes_as_they_were(model: Shared) -> None:
    model.train()
    with pytest.raises(RuntimeError):
        trace_gemms(model, torch.randn(2, 5, 6, 6))  # 5 channels where the conv wants 3
    assert model.training and model.conv.training
    assert not any(m._forward_hooks for m in model.modules())


@pytest.mark.parametrize(("stride", "padding", "dilation", "groups"),
                         [(1, 0, 1, 1), (2, 1, 1, 1), (1, 2, 2, 2), (2, "same", 1, 4), (1, "valid", 1, 4)])
def test_conv_geometry_and_gemm_match_the_convolution(stride, padding, dilation, groups) -> None:
    if padding == "same":
        stride = 1  # torch allows padding="same" with stride 1 only
    conv = nn.Conv2d(8, 12, (3, 5), stride=stride, padding=padding, dilation=dilation, groups=groups)
    x = torch.randn(2, 8, 11, 13)
    (call,) = trace_gemms(conv, x)
    out = F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    g = call.conv
    assert g is not None and call.kind == "conv2d" and call.name == ""
    assert (g.C, g.M, g.R, g.S, g.N, g.H, g.W, g.groups) == (8, 12, 3, 5, 2, 11, 13, groups)
    assert tuple(out.shape[-2:]) == (g.P, g.Q)
    assert g.stride == (stride, stride) and g.dilation == (dilation, dilation)
    if isinstance(padding, int):
        assert g.padding == (padding, padding)
    assert (call.M, call.K, call.N, call.groups) == (12 // groups, 8 // groups * 15, g.P * g.Q * 2, groups)
    assert call.macs == out.numel() * (8 // groups) * 15  # every output element: C/groups·R·S MACs


def test_a_linear_over_tokens_and_an_unbatched_conv() -> None:
    (lin,) = trace_gemms(nn.Linear(6, 4), torch.randn(3, 7, 6))  # batch 3 × 7 tokens
    assert (lin.M, lin.K, lin.N, lin.batch, lin.conv) == (4, 6, 21, 3, None)
    (conv,) = trace_gemms(nn.Conv2d(2, 4, 3), torch.randn(2, 5, 5))  # (C, H, W): one sample
    assert conv.batch == 1 and conv.conv is not None and conv.conv.N == 1 and conv.N == 9


def test_keyword_and_positional_batches() -> None:
    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 2), nn.Linear(3, 2)

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return self.a(x) + self.b(y)

    m = TwoInputs()
    x, y = torch.randn(2, 4), torch.randn(2, 3)
    assert [c.name for c in trace_gemms(m, {"x": x, "y": y})] == ["a", "b"]
    assert [c.name for c in trace_gemms(m, (x, y))] == ["a", "b"]
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        trace_gemms(lambda t: t, x)  # type: ignore[arg-type]


def test_workload_from_model_measures_densities_and_applies_a_config() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))
    with torch.no_grad():
        model[2].weight[:, ::4] = 0.0  # a quarter of the second weight is zero
    x = torch.randn(10, 16)
    net = workload_from_model(model, x)
    first, second = net.layers
    assert (first.M, first.K, first.N) == (32, 16, 1)  # per sample: one row of the batch of 10
    assert str(first.a_density) == "dense" and str(second.a_density) == "unstructured(0.75)"
    relu = float((torch.relu(model[0](x)) != 0).float().mean())
    assert second.b_density.density == pytest.approx(relu, abs=5e-3)  # the ReLU's zeros, measured
    assert workload_from_model(model, x, per_sample=False).layers[0].N == 10
    cfg = workload_from_model(model, x, {"2": {"series": "2:8", "mode": "A"}})
    # the series carries the inputs' measured density (the slots the ReLU's zeros leave are padding)
    assert str(cfg.layers[1].b_density) == f"2:8@{second.b_density.density:.6g}"
    assert str(cfg.layers[1].a_density) == "unstructured(0.75)"
    tasd = apply_tasd(model, {"0": {"series": "1:8", "mode": "W"}})  # a TASD layer is traced like its base
    assert [p.name for p in workload_from_model(tasd, x).layers] == ["0", "2"]
