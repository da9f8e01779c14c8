"""Structured masks (docs/design.md §3.1) and the satisfies() check."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from strategies import (
    gh_patterns,
    hss_patterns,
    shapes_and_dims,
    structured_patterns,
    tensors,
    unstructured_patterns,
)
from tasder import compute_mask, satisfies
from tasder.sparsity import GH, HSS, Rank, StructuredPattern, scored_mask
from tasder.sparsity import parse_pattern as parse
from tasder.sparsity._kernel import PAIRWISE_MAX_H

pytestmark = pytest.mark.usefixtures("numba_kernels")  # kernel compilation is session set-up


def _rows(t: torch.Tensor, dim: int) -> list[list[float]]:
    """``t`` as Python rows running along ``dim`` (float64 values, exact for every float dtype)."""
    moved = t.movedim(dim, -1)
    return moved.reshape(-1, moved.shape[-1]).to(torch.float64).tolist()


def _mask_rows(mask: torch.Tensor, dim: int) -> list[list[bool]]:
    moved = mask.movedim(dim, -1)
    return moved.reshape(-1, moved.shape[-1]).tolist()


def _top_g(values: list[float], g: int) -> set[int]:
    """Indices of the ``g`` largest |v|, ties to the lower index (the spec, written plainly)."""
    order = sorted(range(len(values)), key=lambda i: (-abs(values[i]), i))
    return set(order[:g])


def _order_key(v: float) -> tuple[int, float]:
    """Sort key for "larger first, NaN above everything" (Python's sort is stable: ties keep index order)."""
    return (0, 0.0) if math.isnan(v) else (1, -v)


def _top(values: list[float], g: int) -> set[int]:
    return set(sorted(range(len(values)), key=lambda i: _order_key(values[i]))[:g])


def _padded_reference_row(key: list[float], mag: list[float], ranks_lowest_first: tuple[Rank, ...]) -> list[bool]:
    """docs/design.md §3.1 in plain Python, padding written out as the definition has it.

    The row is padded to a multiple of the outermost block: keys with -inf (below every real
    key; ties go to the real element, which has the lower index), block scores with 0.0. The
    lowest rank keeps the G best keys per block; every upper rank scores a child by the sum of
    what it kept (in index order) and keeps the G best children per group.
    """
    length = len(key)
    block = math.prod(r.h for r in ranks_lowest_first)
    pad = (-length) % block
    key = key + [-math.inf] * pad
    mag = mag + [0.0] * pad
    r0 = ranks_lowest_first[0]
    keep = [False] * len(key)
    for b in range(0, len(key), r0.h):
        for i in _top(key[b : b + r0.h], r0.g):
            keep[b + i] = True
    scores = []
    for b in range(0, len(key), r0.h):
        s = 0.0
        for i in range(b, b + r0.h):
            s += mag[i] if keep[i] else 0.0
        scores.append(s)
    alive = [True] * len(scores)  # per lowest-rank block
    children = 1
    for rank in ranks_lowest_first[1:]:
        level_keep = [False] * len(scores)
        for b in range(0, len(scores), rank.h):
            for i in _top(scores[b : b + rank.h], rank.g):
                level_keep[b + i] = True
        for b in range(len(alive)):
            if not level_keep[b // children]:
                alive[b] = False
        new_scores = []
        for b in range(0, len(scores), rank.h):
            s = 0.0
            for q in range(b, b + rank.h):
                s += scores[q] if level_keep[q] else 0.0
            new_scores.append(s)
        scores = new_scores
        children *= rank.h
    return [keep[i] and alive[i // r0.h] for i in range(length)]


def _reference_mask_row(row: list[float], ranks_lowest_first: tuple[Rank, ...]) -> list[bool]:
    """The |x| ranking: keys and block scores are both |x| (NaN stays NaN, above Inf)."""
    mags = [abs(v) for v in row]
    return _padded_reference_row(mags, mags, ranks_lowest_first)


# ------------------------------------------------------------------------------ the mask obeys


@given(st.data())
def test_compute_mask_output_satisfies_the_pattern(data: st.DataObject) -> None:
    shape, dim = data.draw(shapes_and_dims())
    x = data.draw(tensors(shape))
    p = data.draw(structured_patterns())
    mask = compute_mask(x, p, dim=dim)
    assert mask.dtype == torch.bool
    assert mask.shape == x.shape
    assert satisfies(torch.where(mask, x, torch.zeros((), dtype=x.dtype)), p, dim=dim)
    # the mask itself (zeros it keeps included) obeys the pattern too
    assert satisfies(mask.to(x.dtype), p, dim=dim)


@given(st.data())
def test_gh_mask_keeps_exactly_g_per_block_and_min_g_len_in_the_tail(data: st.DataObject) -> None:
    shape, dim = data.draw(shapes_and_dims())
    x = data.draw(tensors(shape))
    p = data.draw(gh_patterns())
    for row in _mask_rows(compute_mask(x, p, dim=dim), dim):
        for b in range(0, len(row), p.h):
            block = row[b : b + p.h]
            assert sum(block) == min(p.g, len(block))


@given(st.data())
def test_gh_mask_keeps_the_g_largest_with_ties_to_the_lower_index(data: st.DataObject) -> None:
    shape, dim = data.draw(shapes_and_dims())
    x = data.draw(tensors(shape))
    p = data.draw(gh_patterns())
    rows = _rows(x, dim)
    for row, mrow in zip(rows, _mask_rows(compute_mask(x, p, dim=dim), dim), strict=True):
        for b in range(0, len(row), p.h):
            expected = {b + i for i in _top_g(row[b : b + p.h], p.g)}
            assert {i for i in range(b, min(b + p.h, len(row))) if mrow[i]} == expected


@pytest.mark.parametrize("value", [1.0, -2.5, 0.0, -0.0])
def test_ties_break_to_the_lower_index(value: float) -> None:
    x = torch.full((3, 12), value)
    mask = compute_mask(x, "2:4")
    expected = torch.tensor([True, True, False, False] * 3).expand(3, 12)
    assert torch.equal(mask, expected)
    # equal magnitudes of both signs tie too
    y = torch.tensor([[-1.0, 1.0, 1.0, -1.0, 3.0, 1.0, -1.0, 1.0]])
    assert compute_mask(y, "2:4").tolist() == [[True, True, False, False, True, True, False, False]]


def test_ties_along_a_non_last_dim_break_to_the_lower_index() -> None:
    mask = compute_mask(torch.ones(8, 3), "1:4", dim=0)
    expected = torch.zeros(8, 3, dtype=torch.bool)
    expected[[0, 4]] = True
    assert torch.equal(mask, expected)


@given(st.data())
def test_hss_mask_satisfies_every_rank(data: st.DataObject) -> None:
    shape, dim = data.draw(shapes_and_dims())
    x = data.draw(tensors(shape))
    p = data.draw(hss_patterns())
    mask = compute_mask(x, p, dim=dim)
    kept = torch.where(mask, x, torch.zeros((), dtype=x.dtype))
    assert satisfies(kept, p, dim=dim)
    # each rank on its own: the lowest as a G:H on elements, the upper ranks on occupied blocks
    occupied = mask.movedim(dim, -1)
    pad = (-occupied.shape[-1]) % p.block_size
    occupied = torch.cat([occupied, occupied.new_zeros((*occupied.shape[:-1], pad))], dim=-1)
    for rank in p.ranks_lowest_first:
        grouped = occupied.reshape(*occupied.shape[:-1], -1, rank.h)
        assert int(grouped.sum(-1).max()) <= rank.g
        occupied = grouped.any(-1)


@given(st.data())
def test_hss_mask_matches_a_plain_python_reference_of_the_spec(data: st.DataObject) -> None:
    shape, dim = data.draw(shapes_and_dims(max_numel=400))
    x = data.draw(tensors(shape))
    p = data.draw(hss_patterns())
    got = _mask_rows(compute_mask(x, p, dim=dim), dim)
    for row, mrow in zip(_rows(x, dim), got, strict=True):
        assert mrow == _reference_mask_row(row, p.ranks_lowest_first)


def test_hss_keeps_the_best_blocks_by_magnitude_of_what_the_lower_rank_kept() -> None:
    # K1(1:2)->K0(2:4): keep 2 of each 4, then the better of each pair of blocks
    x = torch.tensor([[1.0, 0.0, 2.0, 0.0, 0.0, 3.0, 0.5, 0.0]])
    assert compute_mask(x, "K1(1:2)->K0(2:4)").tolist() == [[False] * 4 + [False, True, True, False]]
    # block scores count only the kept elements: [3,3,0,0] scores 6, [4,1,1,1] scores 5 (not 7)
    y = torch.tensor([[3.0, 3.0, 0.0, 0.0, 4.0, 1.0, 1.0, 1.0]])
    assert compute_mask(y, "K1(1:2)->K0(2:4)").tolist() == [[True, True, False, False] + [False] * 4]


# ------------------------------------------------------------------------------ kernel = reference


def _both_backends(x: torch.Tensor, p: StructuredPattern, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    return compute_mask(x, p, dim=dim, backend="numba"), compute_mask(x, p, dim=dim, backend="torch")


@given(st.data())
def test_kernel_mask_equals_the_reference_mask(data: st.DataObject) -> None:
    """Bit-identical selection: same tie rule, NaN above Inf, every dtype, dim, short tail and HSS."""
    shape, dim = data.draw(shapes_and_dims())
    x = data.draw(tensors(shape, nonfinite=data.draw(st.booleans(), label="nonfinite")))
    p = data.draw(structured_patterns())
    fast, ref = _both_backends(x, p, dim)
    assert fast.dtype == torch.bool and fast.shape == x.shape
    assert torch.equal(fast, ref)
    assert torch.equal(compute_mask(x, p, dim=dim), fast)  # "auto" takes the kernel on CPU


@st.composite
def _long_block_patterns(draw: st.DrawFn) -> StructuredPattern:
    """H above the kernel's pairwise limit (its sort path), or an HSS whose upper rank sorts its children."""
    if draw(st.booleans()):
        h = draw(st.integers(PAIRWISE_MAX_H + 1, 3 * PAIRWISE_MAX_H))
        return GH(draw(st.integers(1, h)), h)
    h1 = draw(st.integers(33, 160))
    h0 = draw(st.integers(1, 3))
    return HSS((Rank(draw(st.integers(1, h1)), h1), Rank(draw(st.integers(1, h0)), h0)))


@given(st.data())
def test_kernel_mask_equals_the_reference_mask_for_long_blocks(data: st.DataObject) -> None:
    length = data.draw(st.integers(1, 700), label="length")
    rows = data.draw(st.integers(1, 3), label="rows")
    x = data.draw(tensors((rows, length), nonfinite=data.draw(st.booleans(), label="nonfinite")))
    p = data.draw(_long_block_patterns(), label="pattern")
    fast, ref = _both_backends(x, p, -1)
    assert torch.equal(fast, ref)
    if isinstance(p, HSS):  # and both follow the written-out definition
        for row, mrow in zip(_rows(x, -1), _mask_rows(fast, -1), strict=True):
            assert mrow == _reference_mask_row(row, p.ranks_lowest_first)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("pattern", ["2:4", "1:8", "3:200", "K1(3:4)->K0(2:4)", "K1(40:100)->K0(1:2)"])
def test_kernel_mask_equals_the_reference_on_ties_signed_zeros_and_nonfinite(dtype: torch.dtype, pattern: str) -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.randint(-3, 4, (5, 411), generator=g).to(dtype)
    x[1] = -0.0
    x[2, ::7] = float("nan")
    x[3, ::5] = float("inf")
    x[3, 1::5] = -float("inf")
    x[4] = torch.randn(411, generator=g).to(dtype)
    for dim in (-1, 0):
        fast, ref = _both_backends(x, parse(pattern), dim)
        assert torch.equal(fast, ref)


def test_kernel_mask_of_a_non_contiguous_tensor_equals_the_reference() -> None:
    x = torch.randn(40, 64, generator=torch.Generator().manual_seed(2)).t()[::2]
    assert not x.is_contiguous()
    for pattern in ("2:4", "K1(1:2)->K0(2:4)"):
        fast, ref = _both_backends(x, parse(pattern), -1)
        assert torch.equal(fast, ref)


@given(st.data())
def test_user_score_mask_matches_the_padded_definition(data: st.DataObject) -> None:
    """The reference ranks a short block without materialising its padding; with a user score
    (negative values included) that must still equal the padded definition."""
    shape, dim = data.draw(shapes_and_dims(max_numel=400))
    x = data.draw(tensors(shape))
    score = data.draw(tensors(shape, torch.float64, allow_noncontiguous=False))
    p = data.draw(structured_patterns())
    got = _mask_rows(compute_mask(x, p, dim=dim, score=score), dim)
    for srow, mrow in zip(_rows(score, dim), got, strict=True):
        assert mrow == _padded_reference_row(srow, srow, p.ranks_lowest_first)


def test_scored_mask_needs_block_scores_for_hss() -> None:
    with pytest.raises(ValueError, match=r"needs `block_score`"):
        scored_mask(torch.ones(8), "K1(1:2)->K0(2:4)")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"score": torch.ones(2, 8), "backend": "numba"}, r"backend='numba' cannot compute a '2:4' mask.*\|x\| score"),
        ({"pattern": "unstructured(0.5)", "backend": "numba"}, r"backend='numba'.*G:H or HSS"),
        ({"pattern": "dense", "backend": "numba"}, r"backend='numba'"),
        ({"backend": "fast"}, r"`backend` must be 'auto', 'numba' or 'torch'; got 'fast'"),
    ],
)
def test_compute_mask_backend_errors(kwargs: dict, match: str) -> None:  # type: ignore[type-arg]
    args = {"x": torch.ones(2, 8), "pattern": "2:4", **kwargs}
    with pytest.raises(ValueError, match=match):
        compute_mask(**args)


# ------------------------------------------------------------------------------ satisfies()


@pytest.mark.parametrize(
    ("values", "pattern", "expected"),
    [
        ([1.0, 0.0, 2.0, 0.0], "2:4", True),
        ([1.0, 1.0, 1.0, 0.0], "2:4", False),
        ([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0], "2:4", False),
        ([0.0, 0.0, 0.0, 0.0], "1:4", True),
        ([float("nan"), 1.0, 0.0, 0.0], "1:4", False),  # NaN counts as a nonzero
        ([-0.0, -0.0, 5.0, -0.0], "1:4", True),  # negative zeros are zeros
        ([1.0, 2.0, 0.0, 0.0, 3.0, 0.0], "2:4", True),  # short tail block
        ([1.0, 2.0, 0.0, 0.0, 3.0, 4.0], "1:4", False),
        ([1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "K1(1:2)->K0(2:4)", True),
        ([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0], "K1(1:2)->K0(2:4)", False),  # two blocks used
        ([1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0], "K1(1:2)->K0(2:4)", False),  # 3 in a block
        ([1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0], "K1(2:2)->K0(2:4)", True),
        ([1.0, 0.0, 0.0, 0.0, 0.0, 0.0], "K1(1:2)->K0(2:4)", True),  # padded upper block
        ([1.0, 0.0, 0.0, 0.0, 0.0, 1.0], "K1(1:2)->K0(2:4)", False),
        ([0.0] * 6 + [1.0, 0.0] + [0.0] * 8, "2:2->1:2->1:4", True),
        ([1.0] + [0.0] * 3 + [1.0] + [0.0] * 11, "2:2->1:2->1:4", False),  # both blocks of a pair
        ([1.0] + [0.0] * 3 + [1.0] + [0.0] * 11, "1:2->2:2->1:4", True),
        ([1.0] + [0.0] * 7 + [1.0] + [0.0] * 7, "1:2->2:2->1:4", False),  # both pairs of the top
        ([1.0, 2.0, 3.0], "dense", True),
        ([1.0, 2.0, 0.0, 0.0], "unstructured(0.5)", True),
        ([1.0, 2.0, 3.0, 0.0], "unstructured(0.5)", False),
    ],
)
def test_satisfies_on_hand_made_tensors(values: list[float], pattern: str, expected: bool) -> None:
    assert satisfies(torch.tensor(values), pattern) is expected


def test_satisfies_along_a_non_last_dim() -> None:
    x = torch.tensor(
        [
            [1.0, 1.0, 1.0],
            [0.0, 1.0, 1.0],
            [2.0, 0.0, 1.0],
            [0.0, 0.0, 0.0],
        ]
    )
    # columns: [1,0,2,0] obeys 2:4, [1,1,0,0] obeys 2:4, [1,1,1,0] does not
    assert not satisfies(x, "2:4", dim=0)
    assert satisfies(x[:, :2], "2:4", dim=0)
    assert satisfies(x[:, :2], "2:4", dim=-2)
    # along the rows (length 3, one short block) every row obeys 3:4 but not 1:4
    assert satisfies(x, "3:4", dim=1)
    assert not satisfies(x, "1:4", dim=1)
    # a 3-D tensor grouped along the middle dim
    y = torch.zeros(2, 8, 3)
    y[1, [0, 5], 2] = 1.0
    assert satisfies(y, "1:4", dim=1)
    assert not satisfies(y, "K1(1:2)->K0(1:4)", dim=1)
    assert satisfies(y, "K1(2:2)->K0(1:4)", dim=1)
    assert satisfies(y.movedim(1, -1), "1:4", dim=-1)
    assert not satisfies(y.movedim(1, -1), "1:8", dim=-1)


def test_satisfies_rejects_a_series() -> None:
    with pytest.raises(ValueError, match=r"not a series; got '2:8\+1:8'"):
        satisfies(torch.zeros(8), "2:8+1:8")


# ------------------------------------------------------------------------------ padding


@pytest.mark.parametrize("length", [1, 3, 5, 7, 9, 13, 17])
@pytest.mark.parametrize("pattern", ["2:4", "3:8", "K1(2:4)->K0(2:4)", "2:2->1:2->1:4"])
@pytest.mark.parametrize("dim", [0, -1])
def test_dim_not_divisible_by_block_size_keeps_the_input_shape(length: int, pattern: str, dim: int) -> None:
    shape = (length, 3) if dim == 0 else (3, length)
    x = torch.arange(1, 3 * length + 1, dtype=torch.float32).reshape(shape)
    mask = compute_mask(x, pattern, dim=dim)
    assert mask.shape == x.shape
    assert satisfies(torch.where(mask, x, 0.0), pattern, dim=dim)


def test_short_tail_block_keeps_min_g_and_its_length() -> None:
    x = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])  # blocks [1,2,3,4] and the tail [5,6]
    assert compute_mask(x, "2:4").tolist() == [False, False, True, True, True, True]
    assert compute_mask(x, "3:4").tolist() == [False, True, True, True, True, True]
    assert compute_mask(x[:1], "2:4").tolist() == [True]


def test_short_tail_padding_never_beats_a_real_zero() -> None:
    x = torch.tensor([0.0, -0.0, 0.0])  # one block of 4 after padding: keep the real zeros 0 and 1
    assert compute_mask(x, "2:4").tolist() == [True, True, False]


def test_short_tail_block_with_minus_inf_scores_keeps_min_g_and_its_length() -> None:
    x = torch.ones(3)
    mask = compute_mask(x, "2:4", score=torch.full((3,), -math.inf))
    assert int(mask.sum()) == 2


# ------------------------------------------------------------------------------ optimality


@given(st.data())
def test_gh_mask_keeps_the_largest_magnitude_among_all_gh_masks(data: st.DataObject) -> None:
    shape, dim = data.draw(shapes_and_dims(max_len=24, max_numel=200))
    x = data.draw(tensors(shape))
    p = data.draw(gh_patterns(max_h=8))
    for row, mrow in zip(_rows(x, dim), _mask_rows(compute_mask(x, p, dim=dim), dim), strict=True):
        for b in range(0, len(row), p.h):
            block = [abs(v) for v in row[b : b + p.h]]
            kept = math.fsum(v for v, k in zip(block, mrow[b : b + p.h], strict=True) if k)
            g = min(p.g, len(block))
            best = max(math.fsum(c) for c in itertools.combinations(block, g))
            assert kept == best


# ------------------------------------------------------------------------------ unstructured


@given(st.data())
def test_unstructured_keeps_floor_d_n_plus_half_of_the_largest(data: st.DataObject) -> None:
    shape, dim = data.draw(shapes_and_dims())
    x = data.draw(tensors(shape))
    p = data.draw(unstructured_patterns())
    mask = compute_mask(x, p, dim=dim)
    assert mask.shape == x.shape
    assert int(mask.sum()) == math.floor(p.density * x.numel() + 0.5)
    mag = x.abs().to(torch.float64)
    if bool(mask.any()) and not bool(mask.all()):
        assert float(mag[mask].min()) >= float(mag[~mask].max())


@pytest.mark.parametrize(("d", "n", "kept"), [(0.2, 10, 2), (0.25, 10, 3), (0.5, 3, 2), (0.1, 4, 0), (1.0, 7, 7)])
def test_unstructured_rounds_half_up(d: float, n: int, kept: int) -> None:
    assert int(compute_mask(torch.arange(n, dtype=torch.float32), f"unstructured({d})").sum()) == kept


# ------------------------------------------------------------------------------ misc behaviour


def test_score_replaces_the_magnitude_ranking() -> None:
    x = torch.tensor([4.0, 3.0, 2.0, 1.0])
    assert compute_mask(x, "2:4").tolist() == [True, True, False, False]
    assert compute_mask(x, "2:4", score=-x.abs()).tolist() == [False, False, True, True]


def test_nan_ranks_above_inf_and_inf_above_finite() -> None:
    x = torch.tensor([1e30, float("inf"), float("nan"), -float("inf")])
    assert compute_mask(x, "1:4").tolist() == [False, False, True, False]
    assert compute_mask(x, "3:4").tolist() == [False, True, True, True]


def test_dense_mask_keeps_everything() -> None:
    assert bool(compute_mask(torch.zeros(3, 5), "dense").all())


@pytest.mark.parametrize("pattern", ["2:4", GH(1, 2), HSS((Rank(1, 2), Rank(2, 4)))])
def test_compute_mask_accepts_strings_and_pattern_objects(pattern: str | StructuredPattern) -> None:
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    assert compute_mask(x, pattern).shape == (4, 8)


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: compute_mask(torch.ones(4, dtype=torch.int32), "2:4"), TypeError, r"torch\.int32"),
        (lambda: compute_mask(torch.tensor(1.0), "2:4"), ValueError, r"0-dim"),
        (lambda: compute_mask(torch.ones(4), "2:4", dim=1), ValueError, r"`dim`=1 is out of range"),
        (lambda: compute_mask(torch.ones(4), "5:4"), ValueError, r"G=5, H=4"),
        (lambda: compute_mask(torch.ones(4), "2:4", score=torch.ones(3)), ValueError, r"shape"),
        (lambda: satisfies(torch.ones(4, dtype=torch.complex64), "2:4"), TypeError, r"complex64"),
        (lambda: satisfies(torch.ones(4), "2:4", dim=-2), ValueError, r"`dim`=-2 is out of range"),
    ],
)
def test_bad_input_raises_a_clear_error(call, exc: type[Exception], match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(exc, match=match):
        call()


_EMPTY_CASES = [
    pytest.param(shape, pattern, id=f"{shape}-{pattern}")
    for shape in [(0,), (3, 0), (0, 8), (2, 0, 4)]
    for pattern in ["2:4", "K1(2:4)->K0(2:4)", "unstructured(0.5)", "dense"]
]


@pytest.mark.parametrize(("shape", "pattern"), _EMPTY_CASES)
def test_empty_tensors_give_empty_masks_and_satisfy(shape: tuple[int, ...], pattern: str) -> None:
    x = torch.zeros(shape)
    mask = compute_mask(x, pattern)
    assert mask.shape == x.shape
    assert satisfies(x, pattern)
