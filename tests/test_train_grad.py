"""Gradients of the N:M training functions: exact formulas, pattern of the masks, gradcheck.

Data are small integer-valued float64 tensors, so every product and sum is exact and the
comparisons can be bit for bit (``torch.equal``), not approximate.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.nn import functional

from tasder import compute_mask, satisfies
from tasder.train import NMConv2d, NMLinear, backward_mask, nm_conv2d, nm_linear, nm_mask, set_grad_scale

LAM = 2e-4


def _ints(*shape: int, seed: int, low: int = -9, high: int = 10) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(low, high, shape, generator=g).to(torch.float64)


def _linear(method: str, pattern: str = "2:4", out_f: int = 8, in_f: int = 8, seed: int = 0, **kw: object) -> NMLinear:
    layer = NMLinear(in_f, out_f, pattern=pattern, method=method, dtype=torch.float64, **kw)  # type: ignore[arg-type]
    with torch.no_grad():
        layer.weight.copy_(_ints(out_f, in_f, seed=seed))
        layer.bias.copy_(_ints(out_f, seed=seed + 1))
    return layer


def _run(layer: torch.nn.Module, x: torch.Tensor, gy: torch.Tensor) -> tuple[torch.Tensor, ...]:
    x = x.clone().requires_grad_(True)
    y = layer(x)
    y.backward(gy)
    return y.detach(), x.grad, layer.weight.grad, layer.bias.grad


# ---------------------------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------------------------


@given(
    nm=st.sampled_from([(1, 4), (2, 4), (2, 8), (4, 8), (1, 16), (3, 4)]),
    groups=st.integers(1, 3),
    rows=st.integers(1, 5),
    dim=st.sampled_from([0, 1]),
    seed=st.integers(0, 2**16),
    ties=st.booleans(),
)
def test_nm_mask_equals_compute_mask(nm: tuple[int, int], groups: int, rows: int, dim: int, seed: int,
                                     ties: bool) -> None:
    n, m = nm
    shape = [rows, rows]
    shape[dim] = groups * m
    g = torch.Generator().manual_seed(seed)
    w = torch.randint(-2, 3, shape, generator=g).double() if ties else torch.randn(shape, generator=g)
    assert torch.equal(nm_mask(w, n, m, dim), compute_mask(w, f"{n}:{m}", dim))


def test_nm_mask_on_conv_weight_runs_along_channels() -> None:
    w = torch.randn(8, 16, 3, 3)
    assert torch.equal(nm_mask(w, 2, 8, 1), compute_mask(w, "2:8", 1))
    assert torch.equal(nm_mask(w, 1, 4, 0), compute_mask(w, "1:4", 0))


def test_nm_mask_rejects_a_length_that_m_does_not_divide() -> None:
    with pytest.raises(ValueError, match="not a multiple of M=8"):
        nm_mask(torch.randn(4, 12), 2, 8, 1)


@pytest.mark.parametrize("pattern", ["1:4", "2:4", "2:8", "4:8", "1:16"])
def test_forward_and_backward_masks_follow_the_pattern(pattern: str) -> None:
    n, m = map(int, pattern.split(":"))
    layer = _linear("bdwp", pattern, out_f=2 * m, in_f=m, seed=3)
    mf, mb = layer.masks()
    assert satisfies(mf.to(torch.float64), pattern, dim=1)  # along K = in
    assert satisfies(mb.to(torch.float64), pattern, dim=0)  # along out (down the columns)
    assert int(mf.sum()) == int(mb.sum()) == 2 * m * m * n // m


def test_nested_backward_mask_lies_inside_the_forward_mask() -> None:
    w = torch.tensor([[5.0, 4.0, 0.1, 0.2], [0.3, 0.4, 6.0, 7.0], [1.0, 2.0, 3.0, 0.5], [9.0, 0.1, 0.2, 8.0]])
    mf = nm_mask(w, 2, 4, 1)
    nested = backward_mask(w, 2, 4, mf, "nested")
    independent = backward_mask(w, 2, 4, mf, "independent")
    assert bool((nested <= mf).all())
    assert satisfies(nested.double(), "2:4", dim=0)
    # Column 0: M_F keeps rows 0 and 3 (|5|, |9|) -> nested picks both, as does independent.
    # Column 1: M_F keeps only row 0 (4.0) and row 2 (2.0): nested = {0, 2}; independent = {0, 2}.
    # Column 3: M_F keeps rows 1 (7.0) and 3 (8.0) only -> nested = {1, 3}.
    assert nested[:, 3].tolist() == [False, True, False, True]
    # A column where M_F keeps fewer than N: nested holds fewer than N there.
    w2 = torch.tensor([[9.0, 8.0, 0.0, 0.0], [9.0, 8.0, 0.0, 0.0], [9.0, 8.0, 0.0, 0.0], [1.0, 0.5, 7.0, 6.0]])
    mf2 = nm_mask(w2, 2, 4, 1)
    nested2 = backward_mask(w2, 2, 4, mf2, "nested")
    assert int(nested2[:, 2].sum()) == 1 and int(backward_mask(w2, 2, 4, mf2, "independent")[:, 2].sum()) == 2
    assert bool((independent.sum(0) == 2).all())


def test_unknown_backward_mask_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown backward mask 'both'"):
        NMLinear(8, 8, pattern="2:4", backward_mask="both")


# ---------------------------------------------------------------------------------------------
# Linear: exact forward, dX, dW
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["srste", "bdwp"])
def test_linear_forward_is_masked_weight_product(method: str) -> None:
    layer = _linear(method, "2:4", seed=1)
    x = _ints(5, 8, seed=2)
    mf = compute_mask(layer.weight.detach(), "2:4", dim=1)
    expected = x @ (layer.weight.detach() * mf).t() + layer.bias.detach()
    assert torch.equal(layer(x), expected)


@pytest.mark.parametrize("method", ["srste", "bdwp"])
def test_linear_gradients_exact(method: str) -> None:
    layer = _linear(method, "2:4", seed=4)
    x, gy = _ints(6, 8, seed=5), _ints(6, 8, seed=6)
    w = layer.weight.detach().clone()
    mf = compute_mask(w, "2:4", dim=1)
    mb = compute_mask(w, "2:4", dim=0)
    _, gx, gw, gb = _run(layer, x, gy)
    assert torch.equal(gx, gy @ (w * (mb if method == "bdwp" else mf)))
    assert torch.equal(gw, gy.t() @ x + LAM * (1 - mf.double()) * w)  # dense, not (gyᵀx)⊙M_F
    assert torch.equal(gb, gy.sum(0))


def test_bdwp_and_srste_input_gradients_differ_when_the_masks_differ() -> None:
    bd, sr = _linear("bdwp", "2:4", seed=7), _linear("srste", "2:4", seed=7)
    mf, mb = bd.masks()
    assert not torch.equal(mf, mb)
    x, gy = _ints(3, 8, seed=8), _ints(3, 8, seed=9)
    y_bd, gx_bd, gw_bd, _ = _run(bd, x, gy)
    y_sr, gx_sr, gw_sr, _ = _run(sr, x, gy)
    assert torch.equal(y_bd, y_sr)  # same forward
    assert torch.equal(gw_bd, gw_sr)  # same dense weight gradient
    assert not torch.equal(gx_bd, gx_sr)  # different backward weights


def test_masking_in_the_graph_would_give_a_masked_weight_gradient() -> None:
    """Why the custom Function exists: autograd through W⊙M gives (dYᵀX)⊙M, not the dense dW."""
    layer = _linear("bdwp", "2:4", seed=10)
    x, gy = _ints(4, 8, seed=11), _ints(4, 8, seed=12)
    w = layer.weight.detach().clone().requires_grad_(True)
    mf = nm_mask(w, 2, 4, 1)
    functional.linear(x, w * mf).backward(gy)
    _, _, gw, _ = _run(layer, x, gy)
    assert not torch.equal(w.grad, gw - LAM * (1 - mf.double()) * w.detach())


def test_decay_is_configurable_and_absent_for_kept_weights() -> None:
    layer = _linear("srste", "2:4", seed=13, decay=0.5)
    x, gy = _ints(2, 8, seed=14), _ints(2, 8, seed=15)
    mf = layer.masks()[0]
    _, _, gw, _ = _run(layer, x, gy)
    assert torch.equal(gw[mf], (gy.t() @ x)[mf])
    assert torch.equal(gw[~mf], (gy.t() @ x + 0.5 * layer.weight.detach())[~mf])
    with pytest.raises(ValueError, match="decay"):
        NMLinear(8, 8, pattern="2:4", decay=-1.0)


def test_batched_leading_dims() -> None:
    layer = _linear("bdwp", "2:4", seed=16)
    x, gy = _ints(2, 3, 8, seed=17), _ints(2, 3, 8, seed=18)
    w = layer.weight.detach().clone()
    mf = nm_mask(w, 2, 4, 1)
    _, gx, gw, gb = _run(layer, x, gy)
    assert torch.equal(gw, gy.reshape(6, 8).t() @ x.reshape(6, 8) + LAM * (1 - mf.double()) * w)
    assert gx.shape == x.shape and torch.equal(gb, gy.reshape(6, 8).sum(0))


def test_gradcheck_linear_input_and_bias() -> None:
    """gradcheck on the straight-through parts. dX is the true gradient of the forward when the
    backward mask equals the forward one (SR-STE); the bias gradient always is."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 8, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(4, 8, dtype=torch.float64, generator=g)
    b = torch.randn(4, dtype=torch.float64, generator=g, requires_grad=True)
    mf = nm_mask(w, 2, 8, 1)
    mb = nm_mask(w, 2, 4, 0)
    assert torch.autograd.gradcheck(lambda x, b: nm_linear(x, w, b, mf, mf, LAM), (x, b))
    # BDWP: the bias gradient is exact; dX is intentionally not the forward's gradient.
    assert torch.autograd.gradcheck(lambda b: nm_linear(x.detach(), w, b, mf, mb, LAM), (b,))
    # The dense weight gradient is the true gradient of x·Wᵀ when nothing is masked (decay 0).
    ones = torch.ones_like(mf)
    wr = w.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda w: nm_linear(x.detach(), w, b.detach(), ones, ones, 0.0), (wr,))


def test_grad_scale_keeps_the_decay_exact_after_unscale() -> None:
    """The AMP rule: with set_grad_scale(model, scaler.get_scale()) before backward, the
    gradients after GradScaler.unscale_ equal the unscaled run's, decay included."""
    x, target = _ints(4, 8, seed=20), _ints(4, 8, seed=21)

    def grads(scaled: bool, tell_scale: bool) -> torch.Tensor:
        layer = _linear("bdwp", "2:4", seed=22, decay=0.25)
        opt = torch.optim.SGD(layer.parameters(), lr=0.1)
        loss = ((layer(x) - target) ** 2).sum()
        if not scaled:
            loss.backward()
            return layer.weight.grad.clone()
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
        if tell_scale:
            set_grad_scale(layer, scaler.get_scale())
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        return layer.weight.grad.clone()

    reference = grads(scaled=False, tell_scale=False)
    assert torch.equal(grads(scaled=True, tell_scale=True), reference)
    assert not torch.equal(grads(scaled=True, tell_scale=False), reference)  # decay 1/scale too small


# ---------------------------------------------------------------------------------------------
# Conv2d
# ---------------------------------------------------------------------------------------------

CONV_CASES = [
    # (C, O, kernel, stride, padding, dilation, H, W)
    (8, 8, 3, 1, 1, 1, 7, 5),
    (8, 16, 3, 2, 1, 1, 9, 7),
    (16, 8, (3, 1), (2, 1), (0, 2), 1, 5, 5),
    (8, 8, 3, 1, 2, 2, 7, 9),
]


def _conv(method: str, case: tuple, pattern: str = "2:8", seed: int = 0) -> NMConv2d:
    c, o, k, s, p, d, _, _ = case
    layer = NMConv2d(c, o, k, s, p, d, pattern=pattern, method=method, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(_ints(*layer.weight.shape, seed=seed))
        layer.bias.copy_(_ints(o, seed=seed + 1))
    return layer


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("method", ["srste", "bdwp"])
def test_conv_forward_and_gradients(method: str, case: tuple) -> None:
    c, _, _, s, p, d, h, wd = case
    layer = _conv(method, case, seed=30)
    w = layer.weight.detach().clone()
    mf = compute_mask(w, "2:8", dim=1)  # along C at every kernel position
    mb = compute_mask(w, "2:8", dim=0)  # along O
    assert satisfies((w * mf), "2:8", dim=1) and satisfies(mb.double(), "2:8", dim=0)
    x = _ints(2, c, h, wd, seed=31)
    y, gx, gw, gb = None, None, None, None
    ref_y = functional.conv2d(x, w * mf, layer.bias.detach(), s, p, d)
    gy = _ints(*ref_y.shape, seed=32)
    y, gx, gw, gb = _run(layer, x, gy)
    assert torch.equal(y, ref_y)  # integers: exact whatever the summation order
    # Independent references through ordinary autograd of functional.conv2d.
    xr = x.clone().requires_grad_(True)
    functional.conv2d(xr, w * (mb if method == "bdwp" else mf), None, s, p, d).backward(gy)
    wr = w.clone().requires_grad_(True)
    functional.conv2d(x, wr, None, s, p, d).backward(gy)
    assert torch.equal(gx, xr.grad)
    assert torch.equal(gw, wr.grad + LAM * (1 - mf.double()) * w)
    assert torch.equal(gb, gy.sum(dim=(0, 2, 3)))


@pytest.mark.parametrize("case", CONV_CASES[1:3])
def test_gradcheck_conv_input_and_bias(case: tuple) -> None:
    c, o, k, s, p, d, h, wd = case
    g = torch.Generator().manual_seed(1)
    layer = NMConv2d(c, o, k, s, p, d, pattern="2:8", dtype=torch.float64)
    w = layer.weight.detach()
    mf, mb = nm_mask(w, 2, 8, 1), nm_mask(w, 2, 8, 0)
    x = torch.randn(1, c, min(h, 5), min(wd, 5), dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(o, dtype=torch.float64, generator=g, requires_grad=True)
    conv = (layer.stride, layer._explicit_padding, layer.dilation)
    # fast_mode checks random projections of the Jacobian: the same test, far fewer conv calls.
    assert torch.autograd.gradcheck(lambda x, b: nm_conv2d(x, w, b, mf, mf, LAM, 1.0, *conv), (x, b), fast_mode=True)
    assert torch.autograd.gradcheck(lambda b: nm_conv2d(x.detach(), w, b, mf, mb, LAM, 1.0, *conv), (b,))
    ones = torch.ones_like(mf)
    wr = w.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda w: nm_conv2d(x.detach(), w, None, ones, ones, 0.0, 1.0, *conv), (wr,), fast_mode=True
    )


def test_conv_same_padding_and_errors() -> None:
    layer = NMConv2d(8, 8, 3, padding="same", pattern="2:8", dtype=torch.float64)
    x = torch.randn(1, 8, 5, 5, dtype=torch.float64)
    assert layer(x).shape == (1, 8, 5, 5)
    with pytest.raises(ValueError, match="groups=1"):
        NMConv2d(8, 8, 3, groups=2)
    with pytest.raises(ValueError, match=r"dim 1 \(length 12\)"):
        NMConv2d(12, 8, 3, pattern="2:8")
    with pytest.raises(ValueError, match=r"dim 0 \(length 12\)"):
        NMConv2d(8, 12, 3, pattern="2:8", method="bdwp")
    NMConv2d(8, 12, 3, pattern="2:8", method="srste")  # SR-STE only needs C to divide


def test_linear_constructor_errors() -> None:
    with pytest.raises(ValueError, match="unknown training method 'magic'"):
        NMLinear(8, 8, method="magic")
    with pytest.raises(ValueError, match=r"bad N:M pattern '2:8\+1:8'"):
        NMLinear(8, 8, pattern="2:8+1:8")
    with pytest.raises(ValueError, match="one-rank N:M pattern"):
        NMLinear(16, 16, pattern="K1(2:4)->K0(2:4)")
    with pytest.raises(ValueError, match="method dense"):
        NMLinear(16, 16, pattern="dense")
    with pytest.raises(ValueError, match="bad N:M pattern"):
        NMLinear(8, 8, pattern="banana")
    with pytest.raises(ValueError, match=r"dim 1 \(length 12\)"):
        NMLinear(12, 8, pattern="2:8")
    assert NMLinear(12, 10, method="dense")(torch.randn(2, 12)).shape == (2, 10)


def test_conv_single_gradient_paths_match_the_fused_backward() -> None:
    """Only dX (frozen weight) uses conv2d_input, only dW (input without grad) conv2d_weight."""
    case = CONV_CASES[1]
    x, gy_seed = _ints(2, 8, 9, 7, seed=40), 41
    fused = _conv("bdwp", case, seed=42)
    _, gx, gw, _ = _run(fused, x, _ints(2, 16, 5, 4, seed=gy_seed))
    frozen = _conv("bdwp", case, seed=42)
    frozen.weight.requires_grad_(False)
    _, gx_only, _, _ = _run(frozen, x, _ints(2, 16, 5, 4, seed=gy_seed))
    assert torch.equal(gx_only, gx)
    weight_only = _conv("bdwp", case, seed=42)
    weight_only(x).backward(_ints(2, 16, 5, 4, seed=gy_seed))  # x does not require grad
    assert torch.equal(weight_only.weight.grad, gw)
