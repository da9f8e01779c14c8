"""TASD decomposition (docs/design.md §3.2): exactness, patterns, backends, metrics, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from strategies import DTYPES, bits, series, shapes_and_dims, structured_patterns, tensors
from tasder import approximate, compute_mask, decompose, gemm_output_error, satisfies
from tasder.sparsity import Dense, Series, Unstructured, parse_series
from tasder.tasd import TASDResult

pytestmark = pytest.mark.usefixtures("numba_kernels")  # kernel compilation is session set-up

BACKENDS = ("auto", "numba", "torch")


def _reconstruct(r: TASDResult) -> torch.Tensor:
    """terms[0] + terms[1] + ... + residual, summed in that order in x's dtype."""
    total = r.terms[0].clone()
    for t in r.terms[1:]:
        total += t
    total += r.residual
    return total


def _backend_for(data: st.DataObject, s: Series) -> str:
    """A backend that can run ``s`` (numba only takes structured series under the default score)."""
    choices = BACKENDS if all(t.is_structured for t in s.terms) else ("auto", "torch")
    return data.draw(st.sampled_from(choices), label="backend")


def _zero(x: torch.Tensor) -> torch.Tensor:
    return torch.zeros((), dtype=x.dtype)


# ------------------------------------------------------------------------------ exactness


@given(st.data())
def test_sum_of_terms_plus_residual_is_x_bit_for_bit(data: st.DataObject) -> None:
    shape, dim = data.draw(shapes_and_dims())
    x = data.draw(tensors(shape))
    s = data.draw(series(unstructured=True, dense=True))
    r = decompose(x, s, dim=dim, backend=_backend_for(data, s))
    assert torch.equal(bits(_reconstruct(r)), bits(x))
    assert torch.equal(bits(r.approximation + r.residual), bits(x))


def test_negative_zeros_survive_the_round_trip() -> None:
    x = torch.tensor([[-0.0, 0.0, -0.0, 3.0, -0.0, -2.0, 0.0, -0.0]])
    for backend in BACKENDS:
        for s in ("2:4", "1:4+1:8", "K1(1:2)->K0(1:4)"):
            r = decompose(x, s, backend=backend)
            assert torch.equal(bits(_reconstruct(r)), bits(x)), (backend, s)


@given(st.data())
def test_every_term_satisfies_its_pattern_along_dim(data: st.DataObject) -> None:
    shape, dim = data.draw(shapes_and_dims())
    x = data.draw(tensors(shape))
    s = data.draw(series(unstructured=True, dense=True))
    r = decompose(x, s, dim=dim, backend=_backend_for(data, s))
    assert r.dim == dim % x.dim()
    assert len(r.terms) == s.order
    for term, pattern in zip(r.terms, s.terms, strict=True):
        assert satisfies(term, pattern, dim=dim), str(pattern)


@given(st.data())
def test_terms_follow_the_greedy_definition(data: st.DataObject) -> None:
    """T_i = R_{i-1} restricted to mask(R_{i-1}, P_i); R_i = R_{i-1} - T_i (compared by value)."""
    shape, dim = data.draw(shapes_and_dims())
    x = data.draw(tensors(shape))
    s = data.draw(series(unstructured=True))
    r = decompose(x, s, dim=dim, backend=_backend_for(data, s))
    residual = x.clone()
    for term, pattern in zip(r.terms, s.terms, strict=True):
        expected = torch.where(compute_mask(residual, pattern, dim=dim), residual, _zero(x))
        assert torch.equal(term, expected), str(pattern)
        residual = residual - expected
    assert torch.equal(r.residual, residual)


@given(st.data())
def test_terms_and_residual_have_x_shape_and_dtype(data: st.DataObject) -> None:
    shape, dim = data.draw(shapes_and_dims())
    x = data.draw(tensors(shape))
    s = data.draw(series(unstructured=True, dense=True))
    r = decompose(x, s, dim=dim, backend=_backend_for(data, s))
    for t in [*r.terms, r.residual, r.approximation]:
        assert t.shape == x.shape
        assert t.dtype == x.dtype
        assert t.device == x.device


@given(st.data())
def test_x_is_not_modified(data: st.DataObject) -> None:
    shape, dim = data.draw(shapes_and_dims())
    x = data.draw(tensors(shape))
    before, strides = x.clone(), x.stride()
    s = data.draw(series(unstructured=True, dense=True))
    backend = _backend_for(data, s)
    score = x.abs().to(torch.float64) if backend != "numba" and data.draw(st.booleans()) else None
    r = decompose(x, s, dim=dim, score=score, backend=backend)
    _ = r.metrics, r.approximation
    assert torch.equal(bits(x), bits(before))
    assert x.stride() == strides
    assert r.input is x


@given(st.data())
def test_numba_and_torch_backends_are_bit_identical(data: st.DataObject) -> None:
    shape, dim = data.draw(shapes_and_dims())
    x = data.draw(tensors(shape))
    s = data.draw(series())
    a = decompose(x, s, dim=dim, backend="numba")
    b = decompose(x, s, dim=dim, backend="torch")
    for ta, tb in zip([*a.terms, a.residual], [*b.terms, b.residual], strict=True):
        assert torch.equal(bits(ta), bits(tb))


@given(st.data())
def test_numba_and_torch_backends_are_bit_identical_for_long_blocks(data: st.DataObject) -> None:
    """H up to 400 reaches both selection strategies of the kernel (pairwise counting up to
    H = 256, a merge sort above), with full and short blocks; HSS upper ranks pick by scanning."""
    shape, dim = data.draw(shapes_and_dims(max_len=600))
    x = data.draw(tensors(shape))
    s = data.draw(series(max_h=400))
    a = decompose(x, s, dim=dim, backend="numba")
    b = decompose(x, s, dim=dim, backend="torch")
    for ta, tb in zip([*a.terms, a.residual], [*b.terms, b.residual], strict=True):
        assert torch.equal(bits(ta), bits(tb))


@pytest.mark.parametrize(
    "s",
    [
        "20:40+1:8",
        "17:34+1:4",
        "K1(40:100)->K0(1:2)",  # upper rank by sorting (G·H above the scan's budget), a short group
        "K1(3:5)->K0(90:128)+7:130",
        "30:40+2:40+1:8",
        "K1(2:2)->K0(20:40)",
        "K1(1:2)->K0(33:64)+1:4",
        "200:300+1:8",
        "3:256+1:512",
    ],
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_numba_and_torch_backends_are_bit_identical_for_very_long_blocks(s: str, dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randint(-4, 5, (4, 600), generator=g).to(dtype)  # many ties
    x[2] = torch.randn(600, generator=g).to(dtype)
    x[3] = -0.0
    a = decompose(x, s, backend="numba")
    b = decompose(x, s, backend="torch")
    for ta, tb in zip([*a.terms, a.residual], [*b.terms, b.residual], strict=True):
        assert torch.equal(bits(ta), bits(tb))
    assert torch.equal(bits(_reconstruct(a)), bits(x))


@given(st.data())
def test_numba_and_torch_backends_are_bit_identical_with_nan_and_inf(data: st.DataObject) -> None:
    shape, dim = data.draw(shapes_and_dims())
    x = data.draw(tensors(shape, nonfinite=True))
    s = data.draw(series())
    a = decompose(x, s, dim=dim, backend="numba", allow_nonfinite=True)
    b = decompose(x, s, dim=dim, backend="torch", allow_nonfinite=True)
    for ta, tb in zip([*a.terms, a.residual], [*b.terms, b.residual], strict=True):
        assert torch.equal(bits(ta), bits(tb))


@given(st.data())
def test_tensor_satisfying_the_first_pattern_has_zero_residual_after_one_term(data: st.DataObject) -> None:
    shape, dim = data.draw(shapes_and_dims())
    x = data.draw(tensors(shape))
    p = data.draw(structured_patterns())
    sparse = torch.where(compute_mask(x, p, dim=dim), x, _zero(x))
    assert satisfies(sparse, p, dim=dim)
    for backend in BACKENDS:
        r = decompose(sparse, p, dim=dim, backend=backend)
        assert not bool(r.residual.any())
        assert torch.equal(bits(r.terms[0]), bits(sparse))
        assert r.metrics.dropped_nonzeros_pct == 0.0


# ------------------------------------------------------------------------------ metrics


@given(series(unstructured=True, dense=True))
def test_effective_density_equals_the_sum_of_term_densities(s: Series) -> None:
    r = decompose(torch.ones(2, 16), s)
    total = sum(t.density for t in s.terms)
    assert r.metrics.effective_density == pytest.approx(total)  # at most 1: Series refuses more
    assert r.series.effective_density == r.metrics.effective_density


@given(st.data())
def test_metrics_are_consistent(data: st.DataObject) -> None:
    shape, dim = data.draw(shapes_and_dims())
    x = data.draw(tensors(shape, kinds=("ties", "normal")))
    s = data.draw(series(unstructured=True, dense=True))
    r = decompose(x, s, dim=dim, backend=_backend_for(data, s))
    m = r.metrics
    nnz_x = int(torch.count_nonzero(x))
    nnz_res = int(torch.count_nonzero(r.residual))
    nnz_approx = int(torch.count_nonzero(r.approximation))
    x64, r64 = x.to(torch.float64), r.residual.to(torch.float64)
    assert m.numel == x.numel()
    assert m.nonzeros == nnz_x
    assert m.input_density == pytest.approx(nnz_x / x.numel())
    assert nnz_approx + nnz_res == nnz_x
    assert m.kept_density == pytest.approx(nnz_approx / x.numel())
    if nnz_x:
        assert m.dropped_nonzeros_pct == pytest.approx(100.0 * nnz_res / nnz_x)
        assert m.dropped_magnitude_pct == pytest.approx(100.0 * float(r64.abs().sum() / x64.abs().sum()))
        assert m.relative_error == pytest.approx(float(r64.norm() / x64.norm()))
    else:
        assert m.dropped_nonzeros_pct == m.dropped_magnitude_pct == m.relative_error == 0.0
    assert 0.0 <= m.dropped_nonzeros_pct <= 100.0
    assert 0.0 <= m.dropped_magnitude_pct <= 100.0 + 1e-9
    assert m.dense_nbytes == x.numel() * x.element_size()
    assert m.packed_nbytes >= 0
    assert set(m.as_dict()) >= {"dropped_nonzeros_pct", "dropped_magnitude_pct", "relative_error"}


# ------------------------------------------------------------------------------ the paper's example

# TASD paper, Fig. 4: a 2x8 matrix with 6 zeros out of 16 and element sum 25.
FIG4 = torch.tensor([[5.0, 1.0, 3.0, 2.0, 0.0, 2.0, 0.0, 2.0], [3.0, 0.0, 2.0, 1.0, 0.0, 0.0, 4.0, 0.0]])


def test_fig4_matrix_matches_the_figure() -> None:
    assert int((FIG4 == 0).sum()) == 6
    assert float(FIG4.sum()) == 25.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_fig4_2_4_keeps_70pct_of_nonzeros_and_84pct_of_magnitude(backend: str) -> None:
    r = decompose(FIG4, "2:4", backend=backend)
    assert r.metrics.dropped_nonzeros_pct == pytest.approx(30.0)
    assert r.metrics.dropped_magnitude_pct == pytest.approx(16.0)
    assert 100.0 - r.metrics.dropped_nonzeros_pct == pytest.approx(70.0)
    assert 100.0 - r.metrics.dropped_magnitude_pct == pytest.approx(84.0)
    # R1, what 2:4 leaves: 3 nonzeros summing to 4
    assert int(torch.count_nonzero(r.residual)) == 3
    assert float(r.residual.sum()) == 4.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_fig4_2_4_plus_2_8_is_lossless(backend: str) -> None:
    r = decompose(FIG4, "2:4+2:8", backend=backend)
    assert not bool(r.residual.any())
    assert r.metrics.dropped_nonzeros_pct == 0.0
    assert r.metrics.dropped_magnitude_pct == 0.0
    assert torch.equal(r.approximation, FIG4)
    assert int(torch.count_nonzero(r.terms[1])) == 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_fig4_single_3_4_keeps_90pct_of_nonzeros_and_96pct_of_magnitude(backend: str) -> None:
    r = decompose(FIG4, "3:4", backend=backend)
    assert 100.0 - r.metrics.dropped_nonzeros_pct == pytest.approx(90.0)
    assert 100.0 - r.metrics.dropped_magnitude_pct == pytest.approx(96.0)


# ------------------------------------------------------------------------------ custom score


def test_score_preferring_small_elements_changes_the_selection() -> None:
    x = torch.tensor([[4.0, 3.0, 2.0, 1.0, -8.0, 0.5, 6.0, -7.0]])
    default = decompose(x, "2:4")
    small = decompose(x, "2:4", score=-x.abs())
    assert default.terms[0].tolist() == [[4.0, 3.0, 0.0, 0.0, -8.0, 0.0, 0.0, -7.0]]
    assert small.terms[0].tolist() == [[0.0, 0.0, 2.0, 1.0, 0.0, 0.5, 6.0, 0.0]]
    assert torch.equal(bits(_reconstruct(small)), bits(x))


@given(st.data())
def test_score_equal_to_abs_x_gives_the_default_terms(data: st.DataObject) -> None:
    shape, dim = data.draw(shapes_and_dims())
    x = data.draw(tensors(shape))
    s = data.draw(series(unstructured=True))
    default = decompose(x, s, dim=dim, backend=_backend_for(data, s))
    scored = decompose(x, s, dim=dim, score=x.abs())
    for a, b in zip([*default.terms, default.residual], [*scored.terms, scored.residual], strict=True):
        assert torch.equal(bits(a), bits(b))


@given(st.data())
def test_any_score_keeps_the_decomposition_exact_and_structured(data: st.DataObject) -> None:
    shape, dim = data.draw(shapes_and_dims())
    x = data.draw(tensors(shape))
    s = data.draw(series(unstructured=True))
    score = data.draw(tensors(shape, torch.float32, allow_noncontiguous=False))
    r = decompose(x, s, dim=dim, score=score)
    assert torch.equal(bits(_reconstruct(r)), bits(x))
    for term, pattern in zip(r.terms, s.terms, strict=True):
        assert satisfies(term, pattern, dim=dim)


def test_score_as_numpy_array_is_accepted() -> None:
    x = torch.tensor([4.0, 3.0, 2.0, 1.0])
    r = decompose(x, "1:4", score=np.array([0.0, 0.0, 0.0, 1.0]))
    assert r.terms[0].tolist() == [0.0, 0.0, 0.0, 1.0]


# ------------------------------------------------------------------------------ NaN / Inf


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("dtype", DTYPES)
def test_nonfinite_input_raises_unless_allowed(backend: str, bad: float, dtype: torch.dtype) -> None:
    x = torch.tensor([[1.0, bad, 3.0, 2.0, 0.0, 1.0, 5.0, 4.0]], dtype=dtype)
    with pytest.raises(ValueError, match=r"1 NaN/Inf value\(s\).*allow_nonfinite=True"):
        decompose(x, "2:4+1:8", backend=backend)
    r = decompose(x, "2:4+1:8", backend=backend, allow_nonfinite=True)
    # the non-finite value is moved, bits intact, into exactly one output
    holders = [t for t in [*r.terms, r.residual] if bits(t)[0, 1] == bits(x)[0, 1]]
    assert len(holders) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_ranks_first_then_inf(backend: str) -> None:
    x = torch.tensor([[1.0, math.nan, 3.0, math.inf, 1e30, -math.inf, -math.nan, 2.0]])
    r = decompose(x, "1:4+1:4", backend=backend, allow_nonfinite=True)
    first, second = r.terms
    assert math.isnan(first[0, 1]) and math.isnan(first[0, 6])
    assert int(torch.isnan(first).sum()) == 2
    assert float(second[0, 3]) == math.inf and float(second[0, 5]) == -math.inf
    assert r.residual[0].tolist() == [1.0, 0.0, 3.0, 0.0, float(x[0, 4]), 0.0, 0.0, 2.0]


def test_nonfinite_with_score_raises_unless_allowed() -> None:
    x = torch.tensor([1.0, math.nan, 3.0, 2.0])
    with pytest.raises(ValueError, match=r"allow_nonfinite"):
        decompose(x, "2:4", score=torch.ones(4))
    decompose(x, "2:4", score=torch.ones(4), allow_nonfinite=True)


# ------------------------------------------------------------------------------ dense


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_series_returns_x_as_the_only_term_and_a_zero_residual(dtype: torch.dtype) -> None:
    x = torch.tensor([[1.5, -0.0, 0.0, -2.0], [3.0, 4.0, -5.0, 0.25]], dtype=dtype)
    r = decompose(x, "dense")
    assert len(r.terms) == 1
    assert torch.equal(bits(r.terms[0]), bits(x))
    assert not bool(r.residual.any())
    assert r.metrics.dropped_nonzeros_pct == 0.0
    assert r.metrics.effective_density == 1.0


def test_dense_series_rejects_the_numba_backend() -> None:
    with pytest.raises(ValueError, match=r"backend='numba' cannot run series 'dense'"):
        decompose(torch.ones(4), "dense", backend="numba")


# ------------------------------------------------------------------------------ other inputs


def test_numpy_input_gives_the_same_result_as_torch() -> None:
    a = np.array([[4.0, -3.0, 2.0, 1.0, 0.0, 7.0, -6.0, 5.0]], dtype=np.float32)
    r = decompose(a, "2:4")
    expected = decompose(torch.from_numpy(a.copy()), "2:4")
    assert torch.equal(r.terms[0], expected.terms[0])
    assert np.array_equal(a, [[4.0, -3.0, 2.0, 1.0, 0.0, 7.0, -6.0, 5.0]])


@pytest.mark.parametrize("backend", BACKENDS)
def test_parameter_requiring_grad_decomposes(backend: str) -> None:
    w = torch.nn.Linear(8, 4).weight
    r = decompose(w, "2:4", backend=backend)
    assert torch.equal(bits(_reconstruct(r).detach()), bits(w.detach()))


@pytest.mark.parametrize("spec", ["2:8+1:8", parse_series("2:8+1:8"), Series((Unstructured(0.5),)), Dense()])
def test_series_can_be_a_string_series_or_pattern(spec: object) -> None:
    r = decompose(torch.randn(3, 16, generator=torch.Generator().manual_seed(1)), spec)  # type: ignore[arg-type]
    assert r.series == parse_series(spec)  # type: ignore[arg-type]
    assert "TASDResult(series=" in repr(r)


# ------------------------------------------------------------------------------ GEMM output error


def test_gemm_output_error_is_zero_when_exact() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 8, generator=g), torch.randn(8, 3, generator=g)
    assert gemm_output_error(a, a.clone(), b) == 0.0
    r = decompose(a, "2:8+2:8+2:8+2:8")
    assert gemm_output_error(a, r.approximation, b) == 0.0


def test_gemm_output_error_matches_a_hand_computed_value() -> None:
    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    a_approx = torch.tensor([[1.0, 0.0], [0.0, 4.0]])
    b = torch.tensor([[1.0, 1.0], [0.0, 2.0]])
    # AB = [[1, 5], [3, 11]] -> ‖AB‖² = 156; (A−Â)B = [[0, 4], [3, 3]] -> ‖.‖² = 34
    assert gemm_output_error(a, a_approx, b) == pytest.approx(math.sqrt(34 / 156))
    # with B = I it is the relative Frobenius error of A
    assert gemm_output_error(a, a_approx, torch.eye(2)) == pytest.approx(math.sqrt(13 / 30))


def test_gemm_output_error_of_a_zero_product_is_zero() -> None:
    assert gemm_output_error(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(3, 4)) == 0.0


@pytest.mark.parametrize(
    ("a", "a_approx", "b"),
    [
        ((2, 3), (2, 3), (4, 5)),  # K mismatch
        ((2, 3), (3, 2), (3, 5)),  # a_approx shape
        ((6,), (6,), (6, 1)),  # a not 2-D
        ((2, 3), (2, 3), (3,)),  # b not 2-D
        ((2, 3, 1), (2, 3, 1), (3, 1)),
    ],
)
def test_gemm_output_error_rejects_bad_shapes(a, a_approx, b) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=r"expected a and a_approx of shape \(M, K\) and b of shape \(K, N\)"):
        gemm_output_error(torch.ones(a), torch.ones(a_approx), torch.ones(b))


def test_gemm_output_error_rejects_int_tensors() -> None:
    with pytest.raises(TypeError, match=r"`b` must have dtype"):
        gemm_output_error(torch.ones(2, 2), torch.ones(2, 2), torch.ones(2, 2, dtype=torch.int64))


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (
            {"x": torch.ones(8, dtype=torch.int32)},
            TypeError,
            r"dtype float16, bfloat16, float32 or float64; got torch\.int32",
        ),
        ({"x": torch.ones(8, dtype=torch.int64)}, TypeError, r"got torch\.int64"),
        ({"x": torch.ones(8, dtype=torch.complex64)}, TypeError, r"got torch\.complex64"),
        ({"x": np.ones(8, dtype=np.int32)}, TypeError, r"NumPy array of dtype int32"),
        ({"x": [1.0, 2.0]}, TypeError, r"got list"),
        ({"x": torch.tensor(1.0)}, ValueError, r"0-dim tensor"),
        ({"dim": 2}, ValueError, r"`dim`=2 is out of range for a tensor with 2 dimension\(s\)"),
        ({"dim": -3}, ValueError, r"`dim`=-3 is out of range"),
        ({"dim": 1.0}, ValueError, r"`dim` must be an int; got 1\.0"),
        ({"series": "5:4"}, ValueError, r"G=5, H=4"),
        ({"series": "K1(3:2)->K0(2:4)"}, ValueError, r"G=3, H=2"),
        ({"series": "two:four"}, ValueError, r"unknown sparsity notation 'two:four'"),
        ({"series": ""}, ValueError, r"empty series"),
        ({"series": "2:4+"}, ValueError, r"empty pattern in '2:4\+'"),
        ({"x": torch.tensor([[1.0, math.nan, 0.0, 0.0]] * 2)}, ValueError, r"NaN/Inf.*allow_nonfinite"),
        ({"x": torch.tensor([[1.0, math.inf, 0.0, 0.0]] * 2), "backend": "torch"}, ValueError, r"allow_nonfinite"),
        ({"score": torch.ones(2, 3)}, ValueError, r"`score` must have the shape of x \(2, 4\); got \(2, 3\)"),
        ({"score": torch.ones(4, 2)}, ValueError, r"got \(4, 2\)"),
        ({"score": torch.ones(2, 4, dtype=torch.complex64)}, TypeError, r"`score` must be a real-valued"),
        ({"score": [[1.0] * 4] * 2}, TypeError, r"`score` must be a tensor shaped like x; got list"),
        ({"backend": "nope"}, ValueError, r"`backend` must be 'auto', 'numba' or 'torch'; got 'nope'"),
        (
            {"series": "unstructured(0.5)", "backend": "numba"},
            ValueError,
            r"backend='numba' cannot run series 'unstructured\(0\.5\)'",
        ),
        ({"series": "2:4+unstructured(0.5)", "backend": "numba"}, ValueError, r"backend='numba'"),
        ({"score": torch.ones(2, 4), "backend": "numba"}, ValueError, r"default \|x\| score"),
    ],
)
def test_bad_input_raises_a_clear_error(kwargs: dict, exc: type[Exception], match: str) -> None:
    args = {"x": torch.ones(2, 4), "series": "2:4", **kwargs}
    with pytest.raises(exc, match=match):
        decompose(**args)


# ------------------------------------------------------------------------------ empty tensors


def _empty_cases() -> list:  # type: ignore[type-arg]
    cases = []
    for shape, dim in [((0,), 0), ((3, 0), -1), ((0, 8), -1), ((0, 8), 0), ((2, 0, 4), -1), ((2, 0, 4), 1)]:
        for s in ["2:4", "2:4+1:8", "K1(2:4)->K0(2:4)", "unstructured(0.5)", "dense"]:
            for backend in BACKENDS:
                if backend == "numba" and not parse_series(s).terms[0].is_structured:
                    continue
                cases.append(pytest.param(shape, dim, s, backend, id=f"{shape}-dim{dim}-{s}-{backend}"))
    return cases


@pytest.mark.parametrize(("shape", "dim", "s", "backend"), _empty_cases())
def test_empty_tensors_decompose_without_error(shape: tuple[int, ...], dim: int, s: str, backend: str) -> None:
    x = torch.zeros(shape)
    r = decompose(x, s, dim=dim, backend=backend)
    assert all(t.shape == x.shape for t in [*r.terms, r.residual])
    m = r.metrics
    assert m.numel == 0 and m.nonzeros == 0
    assert m.dropped_nonzeros_pct == 0.0 and m.relative_error == 0.0


@pytest.mark.parametrize("shape", [(0, 8), (2, 0, 4), (3, 0)])
def test_empty_tensor_with_a_score_decomposes_without_error(shape: tuple[int, ...]) -> None:
    r = decompose(torch.zeros(shape), "2:4+K1(1:2)->K0(2:4)", score=torch.zeros(shape))
    assert all(t.shape == shape for t in [*r.terms, r.residual])


# ------------------------------------------------------------------------------ approximate()


@pytest.mark.parametrize("series_text", ["4:8+1:8", "2:4", "1:8", "K1(3:4)->K0(2:4)", "2:4+2:8", "dense"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_approximate_equals_the_sum_of_the_terms_bit_for_bit(series_text: str, dtype: torch.dtype) -> None:
    torch.manual_seed(3)
    x = torch.randn(5, 3, 21).to(dtype)
    x[x.abs() < 0.4] = 0.0
    x[0, 0, :4] = -0.0
    for dim in (-1, 1):
        expected = decompose(x, series_text, dim=dim).approximation
        got = approximate(x, series_text, dim=dim)
        assert got.shape == x.shape and got.dtype == x.dtype
        assert torch.equal(bits(got), bits(expected))


def test_approximate_rejects_nonfinite_unless_allowed() -> None:
    x = torch.tensor([1.0, float("nan"), 2.0, 3.0])
    with pytest.raises(ValueError, match="allow_nonfinite"):
        approximate(x, "2:4")
    assert torch.isnan(approximate(x, "2:4", allow_nonfinite=True)).any()


@pytest.mark.parametrize("shape", [(37, 384), (3, 700, 16), (4096 * 3 + 8,)])
@pytest.mark.parametrize("series_text", ["2:8+1:8", "2:4", "4:16+1:16"])
def test_kernel_regrouping_of_short_rows_matches_the_reference(shape: tuple[int, ...], series_text: str) -> None:
    # Large enough that the kernel ranks many short rows as long spans plus a remainder span.
    torch.manual_seed(7)
    x = torch.randn(shape)
    x[x.abs() < 0.5] = 0.0
    fast = decompose(x, series_text, backend="numba")
    ref = decompose(x, series_text, backend="torch")
    for a, b in zip([*fast.terms, fast.residual], [*ref.terms, ref.residual], strict=True):
        assert torch.equal(bits(a), bits(b))
    assert torch.equal(bits(approximate(x, series_text)), bits(ref.approximation))


_CACHE_PROBE = """
import torch
from tasder.sparsity import _kernel
from tasder.tasd import approximate, decompose
torch.set_num_threads(2)                               # one torch thread would keep numba serial too
decompose(torch.randn(8, 64), "4:8+1:8")               # small: the serial kernel compiles first
approximate(torch.randn(256, 1024).relu(), "4:8+1:8")  # large: the parallel one
print(sum(_kernel._same_h_parallel.stats.cache_hits.values()),
      sum(_kernel._same_h_parallel.stats.cache_misses.values()))
"""


@pytest.mark.slow
def test_the_parallel_kernel_never_loads_the_serial_one_from_the_disk_cache(tmp_path) -> None:
    """numba's disk cache keys entries by function name and signature, not by ``parallel=True``: the
    two variants must be distinct functions, or the first one compiled serves both (a threaded
    decomposition silently running on one thread, in every later process too)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", _CACHE_PROBE], env=env, capture_output=True, text=True,
                         timeout=600, check=True)
    hits, misses = (int(v) for v in run.stdout.split())
    assert (hits, misses) == (0, 1)  # compiled its own code, although the serial one was cached first
    again = subprocess.run([sys.executable, "-c", _CACHE_PROBE], env=env, capture_output=True, text=True,
                           timeout=600, check=True)
    assert tuple(int(v) for v in again.stdout.split()) == (1, 0)  # ... and later loads its own entry


def test_one_torch_thread_keeps_the_kernels_serial(monkeypatch: pytest.MonkeyPatch) -> None:
    # single_thread() (the demo, permutation searches) asks to stay on one core; a threaded kernel
    # beside busy work waits on its slowest thread. Same bits either way.
    from tasder._threads import single_thread
    from tasder.sparsity import _kernel

    if not _kernel.AVAILABLE:
        pytest.skip("numba is not installed")
    x = torch.randn(256, 1024).relu()  # above PARALLEL_MIN_ELEMENTS
    threaded = approximate(x, "4:8+1:8") if torch.get_num_threads() > 1 else None

    def refuse(*args: object) -> None:
        raise AssertionError("the threaded kernel ran inside single_thread()")

    monkeypatch.setattr(_kernel, "_same_h_parallel", refuse)
    monkeypatch.setattr(_kernel, "_general_parallel", refuse)
    with single_thread():
        serial = approximate(x, "4:8+1:8")
        decompose(x, "K1(2:4)->K0(2:4)")
    assert threaded is None or torch.equal(bits(serial), bits(threaded))
