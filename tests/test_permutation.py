"""K permutation for G:H series (tasd/permutation.py): validity, never worse, exactness, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from strategies import bits, shapes_and_dims, tensors
from tasder import decompose
from tasder.sparsity import parse_series
from tasder.tasd.permutation import _swap_gains, find_permutation, kept_score, permutable_block

pytestmark = pytest.mark.usefixtures("numba_kernels")  # kernel compilation is session set-up

#: Block sizes of the series under test (every TTC target uses one of these).
BLOCKS = (2, 4, 8)


@st.composite
def same_h_series(draw: st.DrawFn, blocks: tuple[int, ...] = BLOCKS, max_terms: int = 3) -> str:
    """A series of 1–``max_terms`` G:H terms sharing one H, e.g. '2:8+1:8' (ΣG may reach H, not pass it)."""
    h = draw(st.sampled_from(blocks))
    n = draw(st.integers(1, max_terms))
    gs: list[int] = []
    for _ in range(n):
        room = h - sum(gs)
        if room < 1:
            break
        gs.append(draw(st.integers(1, max(1, min(h - 1, room)))))
    return "+".join(f"{g}:{h}" for g in gs)


def _shape_and_dim(data: st.DataObject) -> tuple[tuple[int, ...], int]:
    return data.draw(shapes_and_dims(min_dims=1, max_dims=3, max_len=40), label="shape_and_dim")


def _permuted(x: torch.Tensor, dim: int, perm: torch.Tensor) -> torch.Tensor:
    return x.index_select(dim, perm)


def _brute_force_gains(x: torch.Tensor, y: torch.Tensor, g: int) -> torch.Tensor:
    """(pairs, H, H): Σ_rows of top-g sums after swapping x[..., i] with y[..., j], minus before."""
    pairs, _, h = x.shape
    before = x.topk(g, dim=-1).values.sum((-1, -2)) + y.topk(g, dim=-1).values.sum((-1, -2))
    out = torch.empty(pairs, h, h, dtype=torch.float64)
    for i in range(h):
        for j in range(h):
            xs, ys = x.clone(), y.clone()
            xs[..., i], ys[..., j] = y[..., j], x[..., i]
            after = xs.topk(g, dim=-1).values.sum((-1, -2)) + ys.topk(g, dim=-1).values.sum((-1, -2))
            out[:, i, j] = after - before
    return out


# ------------------------------------------------------------------------------ validity


@given(st.data())
def test_result_is_a_permutation_of_range_k(data: st.DataObject) -> None:
    shape, dim = _shape_and_dim(data)
    x = data.draw(tensors(shape), label="x")
    s = data.draw(same_h_series(), label="series")
    perm = find_permutation(x, s, dim)
    k = shape[dim]
    assert perm.dtype == torch.long
    assert perm.shape == (k,)
    assert torch.equal(torch.sort(perm).values, torch.arange(k))


@settings(max_examples=30)
@given(st.data())
def test_result_is_a_permutation_when_rows_are_subsampled(data: st.DataObject) -> None:
    """max_rows only decides which rows rank the columns; the result is still a permutation of K."""
    shape, dim = _shape_and_dim(data)
    x = data.draw(tensors(shape, kinds=("ties", "normal")), label="x")
    perm = find_permutation(x, data.draw(same_h_series(), label="series"), dim,
                            max_rows=data.draw(st.integers(1, 4), label="max_rows"))
    assert torch.equal(torch.sort(perm).values, torch.arange(shape[dim]))


# ------------------------------------------------------------------------------ never worse


@given(st.data())
def test_permutation_never_keeps_less_than_the_identity(data: st.DataObject) -> None:
    """The search returns a layout only if it keeps strictly more, so kept(perm) ≥ kept(identity)
    exactly (both are the same float64 sum, evaluated the same way)."""
    shape, dim = _shape_and_dim(data)
    x = data.draw(tensors(shape), label="x")
    s = data.draw(same_h_series(), label="series")
    perm = find_permutation(x, s, dim, seed=data.draw(st.integers(0, 3), label="seed"))
    assert kept_score(x, s, dim, perm=perm) >= kept_score(x, s, dim)


@settings(max_examples=30)
@given(st.data())
def test_permutation_never_keeps_less_of_a_user_score(data: st.DataObject) -> None:
    """With ``score``, the objective is Σ kept |score| (signs ignored), not |x|."""
    shape, dim = _shape_and_dim(data)
    x = data.draw(tensors(shape), label="x")
    score = data.draw(tensors(shape, torch.float64), label="score")
    s = data.draw(same_h_series(), label="series")
    perm = find_permutation(x, s, dim, score=score)
    assert kept_score(x, s, dim, perm=perm, score=score) >= kept_score(x, s, dim, score=score)


@pytest.mark.parametrize("s", ["1:4", "2:8+1:8", "1:2"])
@pytest.mark.parametrize("shape", [(3, 16), (5, 13), (1, 40)])
def test_all_zero_tensor_returns_the_identity(s: str, shape: tuple[int, ...]) -> None:
    """Nothing to gain on zeros, so no permutation is strictly better."""
    x = torch.zeros(shape)
    assert torch.equal(find_permutation(x, s), torch.arange(shape[-1]))


def test_docstring_example_keeps_9_instead_of_8() -> None:
    x = torch.tensor([[5.0, 4.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0]])
    perm = find_permutation(x, "1:4")
    assert kept_score(x, "1:4") == 8.0
    assert kept_score(x, "1:4", perm=perm) == 9.0


# ------------------------------------------------------------------------------ kept_score vs decompose


@given(st.data())
def test_kept_score_with_perm_equals_kept_score_of_the_permuted_tensor(data: st.DataObject) -> None:
    """``perm`` means ``x.index_select(dim, perm)``: block b holds columns perm[b*H:(b+1)*H]."""
    shape, dim = _shape_and_dim(data)
    x = data.draw(tensors(shape, kinds=("ties", "normal")), label="x")
    s = data.draw(same_h_series(), label="series")
    k = shape[dim]
    perm = torch.from_numpy(np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).permutation(k))
    assert kept_score(x, s, dim, perm=perm) == kept_score(_permuted(x, dim, perm), s, dim)


@settings(max_examples=30)
@given(st.data())
def test_kept_score_is_the_magnitude_the_decomposition_keeps(data: st.DataObject) -> None:
    """Σ|approximation| of the greedy decomposition = Σ over blocks of the ΣG largest |x| (short
    last block included), in the identity layout and in the found one."""
    shape, dim = _shape_and_dim(data)
    x = data.draw(tensors(shape, torch.float64, kinds=("ties", "normal")), label="x")
    s = data.draw(same_h_series(), label="series")
    perm = find_permutation(x, s, dim)
    for layout, p in ((x, None), (_permuted(x, dim, perm), perm)):
        kept = float(decompose(layout, s, dim=dim).approximation.abs().sum())
        assert kept_score(x, s, dim, perm=p) == pytest.approx(kept, rel=1e-9, abs=1e-300)


@settings(max_examples=30)
@given(st.data())
def test_permuted_layout_drops_no_more_magnitude_in_the_decomposition(data: st.DataObject) -> None:
    shape, dim = _shape_and_dim(data)
    x = data.draw(tensors(shape, torch.float64, kinds=("ties", "normal")), label="x")
    s = data.draw(same_h_series(), label="series")
    perm = find_permutation(x, s, dim)
    identity = decompose(x, s, dim=dim).metrics.dropped_magnitude_pct
    permuted = decompose(_permuted(x, dim, perm), s, dim=dim).metrics.dropped_magnitude_pct
    assert permuted <= identity + 1e-9 * max(identity, 1.0)


# ------------------------------------------------------------------------------ _swap_gains


def _f64(values: list) -> torch.Tensor:  # type: ignore[type-arg]
    return torch.tensor(values, dtype=torch.float64)


@st.composite
def _blocks_and_g(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, int]:
    h = draw(st.integers(2, 8))
    g = draw(st.integers(1, h - 1))
    pairs, rows = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["ties", "normal", "zeros"]))
    size = (2, pairs, rows, h)
    if kind == "ties":
        vals = rng.integers(0, 3, size).astype(np.float64)
    elif kind == "normal":
        vals = np.abs(rng.standard_normal(size))
    else:
        vals = np.where(rng.random(size) < 0.7, 0.0, np.abs(rng.standard_normal(size)))
    t = torch.from_numpy(vals)
    return t[0], t[1], g


@given(_blocks_and_g())
@example((_f64([[[3, 1, 1, 0]]]), _f64([[[2, 2, 1, 1]]]), 1))
@example((_f64([[[3, 1, 1, 0]]]), _f64([[[2, 2, 1, 1]]]), 3))
@example((_f64([[[0, 0, 5, 0, 0, 0, 0, 0]]]), _f64([[[1, 1, 1, 1, 1, 1, 1, 1]]]), 7))
@example((torch.ones(2, 3, 4, dtype=torch.float64), torch.ones(2, 3, 4, dtype=torch.float64), 2))
def test_swap_gains_match_brute_force(case: tuple[torch.Tensor, torch.Tensor, int]) -> None:
    """The closed form (kept sum from each row's sorted block) equals re-sorting after each swap,
    ties, g = 1 and g = H−1 included."""
    x, y, g = case
    torch.testing.assert_close(_swap_gains(x, y, g), _brute_force_gains(x, y, g), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------ determinism, no mutation


@settings(max_examples=30)
@given(st.data())
def test_same_seed_gives_the_same_permutation(data: st.DataObject) -> None:
    shape, dim = _shape_and_dim(data)
    x = data.draw(tensors(shape, kinds=("ties", "normal")), label="x")
    s = data.draw(same_h_series(), label="series")
    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    assert torch.equal(find_permutation(x, s, dim, seed=seed), find_permutation(x, s, dim, seed=seed))


@settings(max_examples=30)
@given(st.data())
def test_x_and_score_are_not_modified(data: st.DataObject) -> None:
    shape, dim = _shape_and_dim(data)
    x = data.draw(tensors(shape), label="x")
    score = data.draw(tensors(shape), label="score") if data.draw(st.booleans(), label="with_score") else None
    x_before = x.clone()
    score_before = score.clone() if score is not None else None
    s = data.draw(same_h_series(), label="series")
    perm = find_permutation(x, s, dim, score=score)
    kept_score(x, s, dim, perm=perm, score=score)
    assert torch.equal(bits(x), bits(x_before))
    if score is not None:
        assert score_before is not None
        assert torch.equal(bits(score), bits(score_before))


# ------------------------------------------------------------------------------ known optimum


def _clustered(rows: int, h: int, per_row: int) -> torch.Tensor:
    """Row r holds ``per_row`` nonzeros at columns r*h … r*h+per_row-1: all in block r."""
    x = torch.zeros(rows, rows * h, dtype=torch.float64)
    for r in range(rows):
        x[r, r * h:r * h + per_row] = torch.arange(per_row, 0, -1, dtype=torch.float64) + r
    return x


@pytest.mark.parametrize(("s", "rows", "h", "per_row"), [("1:4", 4, 4, 4), ("2:8", 3, 8, 6), ("1:2", 2, 2, 2),
                                                         ("2:8+1:8", 3, 8, 8)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clustered_large_values_are_spread_so_nothing_is_dropped(
    s: str, rows: int, h: int, per_row: int, seed: int
) -> None:
    """Each row's nonzeros fill one block, yet a layout with ≤ ΣG of them per block exists; the
    search finds one, so the series drops nothing, while the identity drops some."""
    x = _clustered(rows, h, per_row)
    total = float(x.abs().sum())
    perm = find_permutation(x, s, seed=seed)
    assert kept_score(x, s) < total
    assert kept_score(x, s, perm=perm) == total
    assert decompose(x, s).metrics.dropped_nonzeros_pct > 0.0
    assert decompose(_permuted(x, -1, perm), s).metrics.dropped_nonzeros_pct == 0.0


def test_clustered_columns_along_dim_0() -> None:
    """The same spreading along a leading dim (columns of a weight matrix, dim=0)."""
    x = _clustered(4, 4, 4).T.contiguous()
    perm = find_permutation(x, "1:4", dim=0)
    assert kept_score(x, "1:4", dim=0, perm=perm) == float(x.sum())
    assert decompose(x.index_select(0, perm), "1:4", dim=0).metrics.dropped_nonzeros_pct == 0.0


# ------------------------------------------------------------------------------ trivial cases


@pytest.mark.parametrize("s", ["4:4", "2:4+2:4", "3:4+1:4", "8:8", "4:8+4:8"])
def test_series_keeping_every_element_returns_the_identity(s: str) -> None:
    """ΣG = H keeps whole blocks: no layout can be better."""
    g, h = permutable_block(s)
    assert g == h
    x = torch.randn(3, 5 * h + 1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(find_permutation(x, s), torch.arange(x.shape[-1]))


@pytest.mark.parametrize(("s", "k"), [("1:4", 1), ("1:4", 3), ("1:4", 4), ("2:8+1:8", 8), ("1:8", 5), ("1:2", 2)])
def test_a_single_block_returns_the_identity(s: str, k: int) -> None:
    """K ≤ H: one block, so every layout keeps the same."""
    x = torch.randn(6, k, generator=torch.Generator().manual_seed(1))
    assert torch.equal(find_permutation(x, s), torch.arange(k))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nonfinite_input_is_refused(bad: float) -> None:
    """A layout that keeps the most |x| is undefined with NaN/Inf; it used to return the identity silently."""
    x = _clustered(4, 4, 4).float()
    x[0, 1] = bad
    with pytest.raises(ValueError, match=r"`x` holds 1 NaN/Inf value\(s\).*clean the tensor"):
        find_permutation(x, "1:4")
    with pytest.raises(ValueError, match=r"`score` holds 1 NaN/Inf"):
        find_permutation(x.nan_to_num(), "1:4", score=x)
    # also in a row that max_rows sampling would skip
    y = torch.randn(64, 16, generator=torch.Generator().manual_seed(0))
    y[1, 3] = bad
    with pytest.raises(ValueError, match=r"NaN/Inf"):
        find_permutation(y, "1:4", max_rows=2)


@pytest.mark.parametrize("shape", [(0, 8), (3, 0), (0,), (2, 0, 8)])
def test_empty_input_is_refused_with_a_clear_error(shape: tuple[int, ...]) -> None:
    """It used to raise ZeroDivisionError for zero rows."""
    with pytest.raises(ValueError, match=r"`x` has no elements \(shape"):
        find_permutation(torch.zeros(shape), "1:4")


@pytest.mark.parametrize(("s", "expected"), [("2:8+1:8", (3, 8)), ("1:4", (1, 4)), ("2:4+1:4", (3, 4)),
                                             ("4:8+4:8", (8, 8))])
def test_permutable_block_is_the_sum_of_g_capped_at_h(s: str, expected: tuple[int, int]) -> None:
    assert permutable_block(s) == expected
    assert permutable_block(parse_series(s)) == expected


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("s", "match"),
    [
        ("K1(2:4)->K0(2:4)", r"G:H terms.*'K1\(2:4\)->K0\(2:4\)'"),
        ("2:4+1:8", r"one block size H; '2:4\+1:8' mixes H = 4, 8"),
        ("dense", r"G:H terms.*'dense'"),
        ("unstructured(0.5)", r"G:H terms.*'unstructured\(0\.5\)'"),
        ("2:4+K1(1:2)->K0(2:4)", r"G:H terms.*'2:4\+K1\(1:2\)->K0\(2:4\)'"),
    ],
)
def test_unsupported_series_raises_naming_the_series(s: str, match: str) -> None:
    x = torch.ones(2, 8)
    with pytest.raises(ValueError, match=match):
        permutable_block(s)
    with pytest.raises(ValueError, match=match):
        find_permutation(x, s)
    with pytest.raises(ValueError, match=match):
        kept_score(x, s)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"max_rounds": 0}, "max_rounds"),
        ({"max_rounds": 2.0}, "max_rounds"),
        ({"max_rounds": True}, "max_rounds"),
        ({"patience": -1}, "patience"),
        ({"patience": 0}, "patience"),
        ({"max_rows": 0}, "max_rows"),
        ({"max_rows": -3}, "max_rows"),
        ({"max_rows": False}, "max_rows"),
    ],
)
def test_bad_search_argument_raises_naming_it(kwargs: dict, name: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=rf"`{name}`"):
        find_permutation(torch.ones(2, 8), "1:4", **kwargs)


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.bool])
def test_non_float_tensor_raises_type_error(dtype: torch.dtype) -> None:
    x = torch.ones(2, 8, dtype=dtype)
    with pytest.raises(TypeError, match=r"`x` must have dtype"):
        find_permutation(x, "1:4")
    with pytest.raises(TypeError, match=r"`x` must have dtype"):
        kept_score(x, "1:4")


@pytest.mark.parametrize(
    "perm",
    [
        torch.tensor([0, 1, 2, 3, 4, 5, 6, 6]),  # a duplicate
        torch.arange(7),  # too short
        torch.arange(9),  # too long
        torch.arange(1, 9),  # out of range
        torch.arange(8, dtype=torch.int32),  # not a LongTensor
        torch.arange(8).view(2, 4),  # not 1-d
        list(range(8)),  # not a tensor
    ],
    ids=["duplicate", "short", "long", "out-of-range", "int32", "2d", "list"],
)
def test_kept_score_rejects_a_perm_that_is_not_a_permutation(perm: object) -> None:
    with pytest.raises(ValueError, match=r"`perm` must be a permutation of range\(8\)"):
        kept_score(torch.ones(2, 8), "1:4", perm=perm)  # type: ignore[arg-type]
