"""TASD's 2:4 terms on NVIDIA sparse tensor cores (tasder.nn.semi_structured).

CPU: tasder's CUTLASS layout against torch's own (CPU) conversion, bit for bit; TASD's 2:4 selection
as a torch function; every refusal (raised before any weight changes); the nvidia-2:4 target.
CUDA (skipped without a GPU): the sparse layers' outputs against the dense TASD layers.
"""

from __future__ import annotations

import doctest

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from strategies import bits, tensors
from tasder.nn import TASDLinear, apply_tasd
from tasder.nn import semi_structured as ss
from tasder.nn.semi_structured import (
    SemiStructuredActivationLinear,
    SemiStructuredConv2d,
    SemiStructuredLinear,
    check_semi_structured,
    cutlass_layout,
    shape_rule,
    tasd_2to4_mask,
    to_semi_structured,
)
from tasder.search import candidate_series, load_target
from tasder.tasd import approximate, pack

torch_conversion = pytest.importorskip("torch.sparse._semi_structured_conversions")
from_dense_cutlass = torch_conversion.sparse_semi_structured_from_dense_cutlass

HALF = [torch.float16, torch.bfloat16]
NO_CUDA = "needs a CUDA GPU with 2:4 sparse tensor cores (compute capability >= 8.0)"
has_sparse_gpu = torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 0)
cuda_only = pytest.mark.skipif(not has_sparse_gpu, reason=NO_CUDA)
has_cutlass_gpu = has_sparse_gpu and torch.cuda.get_device_capability()[0] == ss.CUTLASS_CAPABILITY_MAJOR
cutlass_gpu_only = pytest.mark.skipif(not has_cutlass_gpu, reason="torch's CUTLASS 2:4 kernels need compute "
                                      "capability 8.x (Ampere/Ada)")


def test_module_doctests():
    assert doctest.testmod(ss, optionflags=doctest.ELLIPSIS).failed == 0


# -- the CUTLASS layout from tasder's packing ----------------------------------------------------------


def _term(x: torch.Tensor) -> torch.Tensor:
    return approximate(x, "2:4", 1, allow_nonfinite=True)


def _assert_same_as_torch(term: torch.Tensor) -> None:
    """Bit for bit what torch makes of the term as tasder's CP form holds it; of the raw term, the
    same metadata and values, up to the sign of a zero the CP form does not store."""
    packed = pack(term, "2:4", dim=1)
    values, meta = cutlass_layout(packed)
    ref_values, ref_meta = from_dense_cutlass(packed.unpack())
    assert values.dtype == ref_values.dtype and meta.dtype == ref_meta.dtype == torch.int16
    assert torch.equal(bits(values), bits(ref_values))  # bit for bit: NaN payloads too
    assert torch.equal(meta, ref_meta)
    raw_values, raw_meta = from_dense_cutlass(term)
    assert torch.equal(meta, raw_meta)
    torch.testing.assert_close(values, raw_values, rtol=0, atol=0, equal_nan=True)  # -0.0 == +0.0


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("shape", [(32, 32), (32, 64), (64, 128), (96, 192), (128, 256)])
def test_cutlass_layout_equals_torch_conversion(dtype, shape):
    g = torch.Generator().manual_seed(shape[0] * 7 + shape[1])
    x = torch.randn(shape, generator=g).to(dtype)
    x[torch.rand(shape, generator=g) < 0.4] = 0.0  # under-full blocks: the fill convention matters
    _assert_same_as_torch(_term(x))


@pytest.mark.parametrize("dtype", HALF)
def test_cutlass_layout_every_block_occupancy(dtype):
    """All 11 occupancies a 2:4 block can have (0, 1 or 2 nonzeros), with -0.0 in the empty slots."""
    masks = [m for m in range(16) if bin(m).count("1") <= 2]
    blocks = torch.full((32, 16, 4), -0.0, dtype=dtype)
    for row in range(32):
        for b in range(16):
            mask = masks[(row + b) % len(masks)]
            for p in range(4):
                if mask >> p & 1:
                    blocks[row, b, p] = float(1 + p + 4 * b)
    _assert_same_as_torch(blocks.reshape(32, 64))


@settings(max_examples=40)
@given(data=st.data(), rows=st.sampled_from([32, 64]), k=st.sampled_from([32, 64]), dtype=st.sampled_from(HALF))
def test_cutlass_layout_property(data, rows, k, dtype):
    x = data.draw(tensors(shape=(rows, k), dtype=dtype, nonfinite=data.draw(st.booleans())))
    _assert_same_as_torch(_term(x).contiguous())


@pytest.mark.parametrize("make, match", [
    (lambda: pack(torch.zeros(32, 64, dtype=torch.float16), "1:4", dim=1), "2:4 term"),
    (lambda: pack(torch.zeros(64, 32, dtype=torch.float16), "2:4", dim=0), "along dim 1"),
    (lambda: pack(torch.zeros(16, 64, dtype=torch.float16), "2:4", dim=1), "multiple of 32"),
    (lambda: pack(torch.zeros(32, 48, dtype=torch.float16), "2:4", dim=1), "multiple of 32"),
])
def test_cutlass_layout_refuses(make, match):
    with pytest.raises(ValueError, match=match):
        cutlass_layout(make())


def test_cutlass_layout_refuses_float32():
    with pytest.raises(TypeError, match=r"float32.*1:2"):
        cutlass_layout(pack(torch.zeros(32, 64), "2:4", dim=1))


def test_shape_rules_from_torch():
    assert (shape_rule("cutlass", torch.float16).rows, shape_rule("cutlass", torch.float16).cols) == (32, 64)
    assert (shape_rule("cusparselt", torch.bfloat16).rows, shape_rule("cusparselt", torch.bfloat16).cols) == (16, 16)
    assert "multiple of 64" in str(shape_rule("cutlass", torch.bfloat16))
    with pytest.raises(TypeError, match="float32"):
        shape_rule("cutlass", torch.float32)
    with pytest.raises(ValueError, match="backend"):
        shape_rule("triton", torch.float16)


# -- TASD's selection as torch ops, and torch's own runtime pruning -----------------------------------


@settings(max_examples=60)
@given(data=st.data(), dtype=st.sampled_from([torch.float16, torch.bfloat16, torch.float32, torch.float64]))
def test_tasd_mask_keeps_what_tasd_keeps(data, dtype):
    rows = data.draw(st.integers(1, 6))
    blocks = data.draw(st.integers(1, 8))
    x = data.draw(tensors(shape=(rows, 4 * blocks), dtype=dtype, nonfinite=True))
    mask = tasd_2to4_mask(x)
    approx = approximate(x, "2:4", -1, allow_nonfinite=True)
    nonzero = (x != 0) | x.isnan()
    assert torch.equal(mask & nonzero, (approx != 0) | approx.isnan())
    assert int(mask.sum()) == x.numel() // 2  # exactly 2 of every 4, zeros included


def test_tasd_mask_breaks_ties_to_the_lower_index():
    x = torch.tensor([[1.0, -1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]])
    assert tasd_2to4_mask(x).tolist() == [[True, True, False, False, True, True, False, False]]
    with pytest.raises(ValueError, match="multiple of 4"):
        tasd_2to4_mask(torch.zeros(2, 6))


def test_torch_tile_pruning_is_not_tasds_selection():
    """torch's runtime pruning (prune_dense_static_sort) keeps 2:4 along rows *and* columns of
    each 4x4 tile; TASD's 2:4 looks at rows only. Shown with torch's CPU reference of the tile
    pruning: when every row's two largest values share columns, the tile must give some up."""
    tile_reference = getattr(torch_conversion, "_sparse_semi_structured_tile", None)
    if tile_reference is None:
        pytest.skip("this torch has no CPU reference of the 4x4 tile pruning")
    x = torch.tensor([[9.0, 8.0, 1.0, 2.0], [7.0, 6.0, 2.0, 1.0], [5.0, 4.0, 1.0, 2.0], [3.0, 2.0, 2.0, 1.0]])
    tasd = tasd_2to4_mask(x)
    tile = tile_reference(x.clone()) != 0
    assert tasd[:, :2].all() and not tasd[:, 2:].any()  # TASD: columns 0 and 1 in every row
    assert (tile.sum(0) <= 2).all() and (tile.sum(1) <= 2).all()
    assert int((tile != tasd).sum()) > 0


# -- refusals: one error each, the model untouched --------------------------------------------------


def _snapshot(model: nn.Module) -> tuple[list[tuple[str, int]], dict[str, torch.Tensor]]:
    modules = [(name, id(m)) for name, m in model.named_modules()]
    return modules, {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_untouched(model: nn.Module, snapshot) -> None:
    modules, state = snapshot
    assert [(name, id(m)) for name, m in model.named_modules()] == modules
    now = model.state_dict()
    assert now.keys() == state.keys()
    assert all(torch.equal(now[k], v) for k, v in state.items())


def _mlp(dtype=torch.float16, k: int = 128, out: int = 64) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(k, 128), nn.ReLU(), nn.Linear(128, out)).to(dtype)


@pytest.mark.parametrize("build, match", [
    (lambda: apply_tasd(_mlp(), {"0": "2:4", "2": "2:8+1:8"}), r"layer '2'.*'2:8\+1:8'.*'2:4' or '2:4\+2:4'"),
    (lambda: apply_tasd(_mlp(), {"0": "1:4"}), "sparse tensor cores run 2:4 terms only"),
    (lambda: apply_tasd(_mlp(), {"0": {"series": "2:4+2:4", "mode": "A"}}), "TASD-A series '2:4\\+2:4'"),
    (lambda: apply_tasd(_mlp(torch.float32), {"*": "2:4"}), "float32.*model.half"),
    (lambda: apply_tasd(_mlp(torch.float64), {"*": "2:4"}), "float16 and bfloat16 only"),
    (lambda: apply_tasd(_mlp(k=72), {"0": "2:4"}), "in_features=72.*multiple of 16"),  # auto: cuSPARSELt's rule
    (lambda: apply_tasd(_mlp(k=96), {"0": {"series": "2:4", "mode": "A"}}), None),  # cuSPARSELt: 96 = 6·16
    (lambda: apply_tasd(_mlp(k=72), {"0": {"series": "2:4", "mode": "A"}}), "in_features=72.*multiple of 16"),
    (lambda: apply_tasd(nn.Sequential(nn.Conv2d(64, 64, 3)).half(), {"0": "2:4"}), "3x3 convolution.*im2col"),
    (lambda: apply_tasd(nn.Sequential(nn.Conv2d(64, 64, 1, padding=1)).half(), {"0": "2:4"}), "padding"),
    (lambda: apply_tasd(nn.Sequential(nn.Conv2d(64, 64, 1)).half(), {"0": {"series": "2:4", "mode": "A"}}),
     "TASD-A convolution"),
    (lambda: nn.Sequential(TASDLinear(128, 64, series="2:4", bias_correction=True).half()), "calibration"),
    (lambda: _mlp(), "no TASD layer"),
])
def test_refusals_name_the_problem_and_leave_the_model_alone(build, match):
    model = build()
    snapshot = _snapshot(model)
    if match is None:  # the model checks pass; only the missing GPU stops the conversion
        check_semi_structured(model)
    else:
        with pytest.raises(ValueError, match=match):
            check_semi_structured(model)
        with pytest.raises(ValueError, match=match):
            to_semi_structured(model, inplace=True)
    _assert_untouched(model, snapshot)


def test_every_bad_layer_is_listed_in_one_error():
    model = apply_tasd(_mlp(k=96), {"0": "2:4", "2": "4:8"})
    with pytest.raises(ValueError, match=r"2 layer\(s\): layer '0': in_features=96.*; layer '2': TASD-W series '4:8'"):
        check_semi_structured(model, backend="cutlass")  # CUTLASS needs K a multiple of 64
    snapshot = _snapshot(model)
    with pytest.raises(ValueError, match=r"in_features=96.*multiple of 64"):
        to_semi_structured(model, backend="cutlass", inplace=True)
    _assert_untouched(model, snapshot)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"backend": "triton"}, ValueError, "`backend` must be one of"),
    ({"activation_backend": "cublas"}, ValueError, "`backend` must be one of"),
    ({"pruning": "random"}, ValueError, "`pruning`"),
    ({"inplace": "yes"}, TypeError, "`inplace`"),
])
def test_bad_arguments(kwargs, error, match):
    model = apply_tasd(_mlp(), {"0": "2:4"})
    snapshot = _snapshot(model)
    with pytest.raises(error, match=match):
        to_semi_structured(model, **kwargs)
    _assert_untouched(model, snapshot)


def test_not_a_module():
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        check_semi_structured(torch.zeros(3))  # type: ignore[arg-type]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_no_cuda_is_refused_before_anything_changes():
    model = apply_tasd(_mlp(), {"0": "2:4", "2": "2:4+2:4"})
    snapshot = _snapshot(model)
    with pytest.raises(RuntimeError, match=r"needs CUDA: torch.cuda.is_available\(\) is False"):
        to_semi_structured(model, inplace=True)
    _assert_untouched(model, snapshot)


def test_check_describes_each_conversion():
    model = nn.Sequential(nn.Linear(128, 128), nn.Linear(128, 10), nn.Linear(10, 64), nn.Conv2d(64, 32, 1, stride=2))
    model = apply_tasd(model.half(), {"0": "2:4+2:4", "1": {"series": "2:4", "mode": "A"}, "3": "2:4"})
    assert check_semi_structured(model) == {
        "0": "W 2:4+2:4 -> SemiStructuredLinear (2 sparse GEMMs)",
        "1": "A 2:4 -> SemiStructuredActivationLinear (compressed per forward pass)",
        "3": "W 2:4 -> SemiStructuredConv2d (1 sparse GEMM)",
    }


def test_the_layers_refuse_to_move():
    layer = SemiStructuredActivationLinear.__new__(SemiStructuredActivationLinear)
    nn.Module.__init__(layer)
    layer._device = torch.device("cuda:0")
    with pytest.raises(RuntimeError, match="cannot be moved or cast"):
        layer.half()


# -- the layers' own logic on the CPU, with a dense stand-in for torch's sparse tensors ----------------
#
# torch's sparse GEMMs run on CUDA only. The stand-in below turns each "sparse tensor" back into the
# dense matrix it encodes — the CUTLASS one by torch's own decoder of the buffers tasder wrote — so
# that the layers' padding, permutation, bias, reshaping and 1x1-convolution code runs here, and
# the CUTLASS buffers are checked once more through the output.


class _DenseStandIn:
    _DTYPE_SHAPE_CONSTRAINTS = None  # shape_rule falls back to its table

    def __new__(cls, shape, packed, meta, packed_t, meta_t, compressed_swizzled_bitmask):
        dense = torch_conversion.sparse_semi_structured_to_dense_cutlass(packed, meta)
        assert tuple(dense.shape) == tuple(shape)
        return dense

    @staticmethod
    def from_dense(t):
        assert t.is_contiguous() and t.dim() == 2
        return t.clone()

    @staticmethod
    def prune_dense_static_sort(t):
        return torch_conversion._sparse_semi_structured_tile(t.clone())


@pytest.fixture
def stand_in(monkeypatch):
    monkeypatch.setattr(ss, "_sparse_class", lambda backend: _DenseStandIn)
    monkeypatch.setattr(ss, "_check_device", lambda model, backends: None)


def _close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("series", ["2:4", "2:4+2:4"])
@pytest.mark.parametrize("options", [{}, {"permute": True}, {"bias_correction": True}])
def test_weight_layer_logic(stand_in, series, options):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(128, 200), nn.ReLU(), nn.Linear(200, 64, bias=False))  # 200 rows: padded
    data = [torch.randn(8, 128)]
    tasd = apply_tasd(model, {"0": {"series": series, **options}}, calibration=data).to(torch.bfloat16)
    sparse = to_semi_structured(tasd, backend="cutlass")
    layer = sparse[0]
    assert isinstance(layer, SemiStructuredLinear) and len(layer.weights) == len(series.split("+"))
    assert layer.padded_rows == 224 and (layer.permutation is not None) == bool(options.get("permute"))
    x = torch.randn(2, 5, 128, dtype=torch.bfloat16)
    with torch.no_grad():
        _close(sparse(x), tasd(x))
    assert type(tasd[0]).__name__ == "TASDLinear"  # inplace=False: the TASD model is untouched


def test_conv1x1_logic(stand_in):
    torch.manual_seed(2)
    tasd = apply_tasd(nn.Sequential(nn.Conv2d(64, 40, 1, stride=2)), {"0": "2:4"}).half()
    sparse = to_semi_structured(tasd, backend="cusparselt")
    assert isinstance(sparse[0], SemiStructuredConv2d) and sparse[0].padded_rows == 48
    conv = tasd[0]
    for x in (torch.randn(2, 64, 7, 9).half(), torch.randn(64, 5, 5).half()):  # batched and unbatched
        # float reference: CPU convolutions may lack float16 kernels
        ref = torch.nn.functional.conv2d(x.float(), conv.weight.float(), conv.bias.float(), stride=2)
        with torch.no_grad():
            _close(sparse(x).float(), ref)


@pytest.mark.parametrize("options", [{}, {"permute": True, "bias_correction": True}])
def test_activation_layer_logic(stand_in, options):
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(96, 48), nn.ReLU(), nn.Linear(48, 16))
    data = [torch.randn(16, 96)]
    tasd = apply_tasd(model, {"0": {"series": "2:4", "mode": "A", **options}}, calibration=data).half()
    sparse = to_semi_structured(tasd)  # TASD-A on cuSPARSELt: K = 96 is a multiple of 16
    layer = sparse[0]
    assert isinstance(layer, SemiStructuredActivationLinear) and layer.pruning == "tasd"
    x = torch.randn(3, 7, 96).half()  # 21 token rows: padded to 32
    with torch.no_grad():
        _close(sparse(x), tasd(x))
    with pytest.raises(ValueError, match=r"in_features=96: torch's tile pruning .* multiple of 128"):
        to_semi_structured(tasd, pruning="tile")


def test_tile_pruning_pads_token_rows_to_128(stand_in):
    torch.manual_seed(4)
    tasd = apply_tasd(nn.Sequential(nn.Linear(128, 16)), {"0": {"series": "2:4", "mode": "A"}}).half()
    tile = to_semi_structured(tasd, pruning="tile")
    assert tile[0].row_multiple == 128  # torch's fused tile pruning works on whole 128-row pieces
    with torch.no_grad():
        assert tile(torch.randn(3, 7, 128).half()).shape == (3, 7, 16)


# -- the search target ---------------------------------------------------------------------------


def test_nvidia_target():
    target = load_target("nvidia-2:4")
    assert target.name == "nvidia-2:4" and target.patterns == ("2:4",) and target.max_order == 1
    assert [str(s) for s in candidate_series("nvidia-2:4")] == ["2:4", "dense"]


# -- CUDA: the numbers ------------------------------------------------------------------------------

TOL = {torch.float16: {"rtol": 1e-2, "atol": 1e-2}, torch.bfloat16: {"rtol": 4e-2, "atol": 4e-2}}


def _gpu_model(dtype, out: int = 256):
    torch.manual_seed(0)
    with torch.device("cuda"):
        return nn.Sequential(nn.Linear(256, 512), nn.GELU(), nn.Linear(512, out)).to(dtype)


@cutlass_gpu_only
@pytest.mark.parametrize("dtype", HALF)
def test_cuda_cutlass_buffers_equal_torch(dtype):
    from torch.sparse import SparseSemiStructuredTensorCUTLASS, to_sparse_semi_structured

    x = torch.randn(128, 256, device="cuda", dtype=dtype)
    term = approximate(x, "2:4", 1)
    values, meta = cutlass_layout(pack(term, "2:4", dim=1))
    ref = SparseSemiStructuredTensorCUTLASS.from_dense(term)
    assert torch.equal(bits(values), bits(ref.packed)) and torch.equal(meta, ref.meta)
    # the sparse tensor built from tasder's buffers multiplies like torch's own (default backend)
    ours = SparseSemiStructuredTensorCUTLASS(term.shape, packed=values, meta=meta, packed_t=None, meta_t=None,
                                             compressed_swizzled_bitmask=None)
    act = torch.randn(64, 256, device="cuda", dtype=dtype)
    torch.testing.assert_close(torch.nn.functional.linear(act, ours),
                               torch.nn.functional.linear(act, to_sparse_semi_structured(term)), **TOL[dtype])
    torch.testing.assert_close(torch.nn.functional.linear(act, ours), torch.nn.functional.linear(act, term),
                               **TOL[dtype])


@cuda_only
@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("backend", ["cutlass", "cusparselt"])
@pytest.mark.parametrize("series", ["2:4", "2:4+2:4"])
def test_cuda_weight_layers_match_the_dense_tasd_layers(dtype, backend, series):
    if backend == "cusparselt" and not ss.cusparselt_available():
        pytest.skip("this torch has no cuSPARSELt")
    if backend == "cutlass" and not has_cutlass_gpu:
        pytest.skip("torch's CUTLASS 2:4 kernels need compute capability 8.x (Ampere/Ada)")
    tasd = apply_tasd(_gpu_model(dtype, out=200), {"0": series, "2": series})  # 200 rows: padded
    sparse = to_semi_structured(tasd, backend=backend)
    assert isinstance(sparse[0], SemiStructuredLinear) and len(sparse[0].weights) == len(series.split("+"))
    x = torch.randn(4, 37, 256, device="cuda", dtype=dtype)
    with torch.no_grad():
        torch.testing.assert_close(sparse(x), tasd(x), **TOL[dtype])


@cuda_only
@pytest.mark.parametrize("pruning", ["tasd", "tile"])
def test_cuda_activation_layer(pruning):
    dtype = torch.float16
    tasd = apply_tasd(_gpu_model(dtype), {"0": {"series": "2:4", "mode": "A"}})
    sparse = to_semi_structured(tasd, pruning=pruning)
    x = torch.randn(3, 50, 256, device="cuda", dtype=dtype)
    with torch.no_grad():
        if pruning == "tasd":  # TASD's own selection: the TASD-A layer's output
            torch.testing.assert_close(sparse(x), tasd(x), **TOL[dtype])
        else:  # torch's tile pruning keeps other elements: only the shape and finiteness are comparable
            assert sparse(x).shape == tasd(x).shape and bool(torch.isfinite(sparse(x)).all())


@cuda_only
def test_cuda_conv1x1():
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = nn.Sequential(nn.Conv2d(64, 96, 1, stride=2)).half()
    tasd = apply_tasd(model, {"0": "2:4"})
    sparse = to_semi_structured(tasd)
    assert isinstance(sparse[0], SemiStructuredConv2d)
    x = torch.randn(2, 64, 9, 9, device="cuda", dtype=torch.float16)
    with torch.no_grad():
        torch.testing.assert_close(sparse(x), tasd(x), **TOL[torch.float16])


@cuda_only
def test_cuda_weight_on_cpu_is_refused():
    model = apply_tasd(_gpu_model(torch.float16), {"0": "2:4"}).cpu()  # decomposed on the GPU, then moved
    snapshot = _snapshot(model)
    with pytest.raises(ValueError, match=r"weight is on cpu.*model.cuda\(\)"):
        to_semi_structured(model, inplace=True)
    _assert_untouched(model, snapshot)


def test_auto_backend_resolves_to_a_backend_this_machine_runs():
    chosen = ss.resolve_backend("auto")
    if ss.cusparselt_available() or not torch.cuda.is_available():
        assert chosen == "cusparselt"
    else:
        assert chosen == "cutlass"
    assert ss.resolve_backend("cutlass") == "cutlass" and ss.resolve_backend("cusparselt") == "cusparselt"
    with pytest.raises(ValueError, match=r"`backend` must be one of 'auto', 'cutlass', 'cusparselt'; got 'cublas'"):
        check_semi_structured(apply_tasd(nn.Sequential(nn.Linear(128, 64)).half(), {"0": "2:4"}), backend="cublas")


@pytest.mark.skipif(not has_sparse_gpu or has_cutlass_gpu, reason="needs a sparse-tensor-core GPU that is not 8.x "
                    "(e.g. an H100/H200) to see the CUTLASS refusal")
def test_cuda_cutlass_on_a_non_ampere_gpu_is_refused_before_any_change():
    model = apply_tasd(_gpu_model(torch.float16), {"0": "2:4"})
    snapshot = _snapshot(model)
    with pytest.raises(RuntimeError, match=r"CUTLASS 2:4 kernels run on compute capability 8\.x only"):
        to_semi_structured(model, backend="cutlass", inplace=True)
    _assert_untouched(model, snapshot)
