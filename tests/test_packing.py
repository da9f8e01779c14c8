"""The CP / hierarchical-CP packing of structured terms: round trip, sizes, metadata, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tasder
from tasder.sparsity import parse_pattern, satisfies
from tasder.tasd import PackedTensor, pack, packed_nbytes, unpack

pytestmark = pytest.mark.usefixtures("numba_kernels")  # kernel compilation is session set-up

PATTERNS = ["2:4", "1:8", "4:16", "3:7", "K1(3:4)->K0(2:4)", "C2(1:2)->C1(2:3)->C0(1:2)"]
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def _decode_metadata(data: bytes, packed: PackedTensor) -> list[np.ndarray]:
    """Read the bit stream back into one (blocks, count) array per rank, highest rank first."""
    ranks = packed.pattern.ranks
    blocks = packed.num_blocks
    bits_per_block = packed.metadata_bits_per_block
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
    assert bits.size >= blocks * bits_per_block
    bits = bits[: blocks * bits_per_block].reshape(blocks, bits_per_block).astype(np.int64)
    out, start, kept = [], 0, 1
    for rank in ranks:
        kept *= rank.g
        width = kept * rank.index_bits
        chunk = bits[:, start : start + width].reshape(blocks, kept, rank.index_bits)
        out.append((chunk << np.arange(rank.index_bits)).sum(axis=-1))
        start += width
    return out


@st.composite
def tensors_and_dims(draw, max_len: int = 40):
    ndim = draw(st.integers(1, 3))
    shape = [draw(st.integers(1, 4)) for _ in range(ndim)]  # empty tensors: tested on their own
    dim = draw(st.integers(-ndim, ndim - 1))
    shape[dim] = draw(st.integers(1, max_len))
    dtype = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=gen, dtype=torch.float64)
    # Sprinkle exact zeros so some blocks hold fewer nonzeros than the pattern allows.
    x = torch.where(torch.rand(*shape, generator=gen, dtype=torch.float64) < 0.3, 0.0, x)
    return x.to(dtype), dim


def _decompose(x, series, dim):
    # The reference backend: same terms as the numba kernel, without its per-dtype compile time.
    return tasder.decompose(x, series, dim, backend="torch")


series_strategy = st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=2).map("+".join)


@settings(max_examples=40)
@given(data=tensors_and_dims(), series=series_strategy)
def test_round_trip_of_decompose_terms(data, series):
    x, dim = data
    result = _decompose(x, series, dim)
    for pattern, term in zip(result.series.terms, result.terms, strict=True):
        packed = pack(term, pattern, dim)
        assert torch.equal(unpack(packed), term)
        assert packed.unpack().dtype == term.dtype and packed.unpack().shape == term.shape


def test_round_trip_of_tasd_result_pack():
    x = torch.randn(6, 19, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    result = tasder.decompose(x, "K1(3:4)->K0(2:4)+2:4", dim=1)
    packed = result.pack()
    assert [str(p.pattern) for p in packed] == ["K1(3:4)->K0(2:4)", "2:4"]
    for p, term in zip(packed, result.terms, strict=True):
        assert torch.equal(p.unpack(), term)
    assert sum(p.nbytes for p in packed) == result.metrics.packed_nbytes


@settings(max_examples=40)
@given(data=tensors_and_dims(), pattern=st.sampled_from(PATTERNS))
def test_nbytes_equals_packed_nbytes_formula(data, pattern):
    x, dim = data
    term = _decompose(x, pattern, dim).terms[0]
    packed = pack(term, pattern, dim)
    p = parse_pattern(pattern)
    expected = packed_nbytes(p, tuple(x.shape), packed.dim, x.element_size(), nonzeros=0)
    assert packed.nbytes == expected
    assert packed.nbytes == packed.values.numel() * x.element_size() + len(packed.metadata_bytes())
    assert packed.dense_nbytes == x.numel() * x.element_size()


@pytest.mark.parametrize("shape", [(0,), (5, 0), (0, 9), (3, 0, 4)])
@pytest.mark.parametrize("pattern", ["2:4", "K1(3:4)->K0(2:4)"])
def test_empty_tensors_round_trip_with_zero_bytes_when_empty(shape, pattern):
    term = torch.zeros(shape, dtype=torch.float32)
    packed = pack(term, pattern, dim=-1)
    assert torch.equal(packed.unpack(), term)
    assert packed.unpack().shape == term.shape
    assert packed.nbytes == packed_nbytes(parse_pattern(pattern), shape, len(shape) - 1, 4, 0)
    assert packed.metadata_bytes() == b""


def test_2_4_float16_exact_byte_count():
    x = torch.randn(8, 16, generator=torch.Generator().manual_seed(1)).half()
    term = _decompose(x, "2:4", -1).terms[0]
    packed = pack(term, "2:4")
    # 8 rows × 4 blocks × 2 values = 64 values: 64 × 2 bytes + 64 × 2 bits = 128 + 16 bytes.
    assert packed.values.shape == (8, 4, 2)
    assert packed.values_nbytes == 128
    assert len(packed.metadata_bytes()) == 16
    assert packed.metadata_bits_per_block == 4
    assert packed.nbytes == 144
    assert packed.dense_nbytes == 256


def test_gh_blocks_store_positions_in_order_and_pad_with_lowest_unused():
    term = torch.tensor([[0.0, 1.5, 0.0, -2.0, 0.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 0.0]])
    packed = pack(term, "2:4")
    assert packed.positions[0].dtype == torch.uint8
    # Block 0 is full; block 1 has one nonzero at 3 -> padded with the lowest unused, 0;
    # block 2 is empty -> positions 0, 1.
    assert packed.positions[0].tolist() == [[[1, 3], [0, 3], [0, 1]]]
    assert packed.values.tolist() == [[[1.5, -2.0], [0.0, 3.0], [0.0, 0.0]]]


def test_hss_positions_choose_nonempty_children_then_lowest_empty():
    # K1(3:4)->K0(2:4): one outermost block of 16 = 4 children of 4. Only children 1 and 3 hold
    # nonzeros, so the top rank stores [0, 1, 3] (child 0 is the lowest unused empty one).
    term = torch.zeros(16)
    term[4 + 2] = 7.0  # child 1, position 2
    term[12 + 0] = 8.0  # child 3, position 0
    term[12 + 3] = 9.0  # child 3, position 3
    packed = pack(term, "K1(3:4)->K0(2:4)")
    assert [p.tolist() for p in packed.positions] == [[[0, 1, 3]], [[0, 1, 0, 2, 0, 3]]]
    assert packed.values.tolist() == [[0.0, 0.0, 0.0, 7.0, 8.0, 9.0]]
    assert packed.metadata_bits_per_block == 3 * 2 + 6 * 2
    assert torch.equal(packed.unpack(), term)


def test_three_rank_hss_round_trip_along_dim_0_with_ragged_length():
    x = torch.randn(13, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    pattern = "C2(1:2)->C1(2:3)->C0(1:2)"
    term = _decompose(x, pattern, 0).terms[0]
    packed = pack(term, pattern, dim=0)
    n = math.ceil(13 / 12)
    assert packed.values.shape == (3, n, 2)
    assert [p.shape for p in packed.positions] == [(3, n, 1), (3, n, 2), (3, n, 2)]
    assert torch.equal(packed.unpack(), term)


@settings(max_examples=30)
@given(data=tensors_and_dims(), pattern=st.sampled_from(PATTERNS))
def test_metadata_bytes_decode_back_to_positions(data, pattern):
    x, dim = data
    term = _decompose(x, pattern, dim).terms[0]
    packed = pack(term, pattern, dim)
    decoded = _decode_metadata(packed.metadata_bytes(), packed)
    for rank, pos, got in zip(packed.pattern.ranks, packed.positions, decoded, strict=True):
        expected = pos.to(torch.int64).reshape(packed.num_blocks, pos.shape[-1]).numpy()
        assert np.array_equal(got, expected)
        assert (expected >= 0).all() and (expected < rank.h).all()
        # Strictly increasing among the children of one kept parent.
        per_parent = expected.reshape(packed.num_blocks, pos.shape[-1] // rank.g, rank.g)
        assert (np.diff(per_parent, axis=-1) > 0).all()


def test_metadata_bytes_use_little_endian_bit_order():
    term = torch.tensor([0.0, 1.5, 0.0, -2.0, 3.0, 0.0, 0.0, 0.0])
    packed = pack(term, "2:4")
    assert packed.positions[0].tolist() == [[1, 3], [0, 1]]
    # Bits, least significant first: 1 -> 1,0; 3 -> 1,1; 0 -> 0,0; 1 -> 1,0.
    assert packed.metadata_bytes() == bytes([0b01001101])


def test_wide_blocks_use_int32_positions_and_round_trip():
    x = torch.randn(2, 300, generator=torch.Generator().manual_seed(3))
    term = _decompose(x, "3:300", 1).terms[0]
    packed = pack(term, "3:300", dim=1)
    assert packed.positions[0].dtype == torch.int32
    assert torch.equal(packed.unpack(), term)
    assert packed.nbytes == packed_nbytes(parse_pattern("3:300"), (2, 300), 1, 4, 0)


def test_stored_signed_zeros_and_nan_come_back_bit_for_bit():
    term = torch.tensor([-0.0, float("nan"), 0.0, 0.0, -0.0, 0.0, 0.0, 0.0])
    packed = pack(term, "2:4")
    back = packed.unpack()
    assert torch.equal(back.view(torch.int32), term.view(torch.int32))


@pytest.mark.parametrize("pattern", ["dense", "unstructured(0.5)"])
def test_pack_rejects_unstructured_and_dense_patterns(pattern):
    with pytest.raises(ValueError, match=r"pack supports G:H and HSS terms; got pattern"):
        pack(torch.zeros(8), pattern)


def test_pack_rejects_a_term_that_breaks_its_pattern():
    with pytest.raises(ValueError, match=r"does not satisfy pattern '2:4' along dim=0"):
        pack(torch.ones(4, 3), "2:4", dim=0)
    term = torch.ones(16)
    assert not satisfies(term, "K1(3:4)->K0(4:4)")
    with pytest.raises(ValueError, match=r"does not satisfy pattern 'K1\(3:4\)->K0\(4:4\)' along dim=0"):
        pack(term, "K1(3:4)->K0(4:4)")


def test_pack_rejects_bad_inputs_with_one_line_errors():
    with pytest.raises(TypeError, match=r"`term` must have dtype float16"):
        pack(torch.zeros(4, dtype=torch.int32), "2:4")
    with pytest.raises(ValueError, match=r"`term` must have at least one dimension"):
        pack(torch.tensor(0.0), "2:4")
    with pytest.raises(ValueError, match=r"`dim`=2 is out of range"):
        pack(torch.zeros(4, 4), "2:4", dim=2)
    with pytest.raises(ValueError, match=r"unknown sparsity notation 'bogus'"):
        pack(torch.zeros(4), "bogus")
    with pytest.raises(ValueError, match=r"expected one pattern, got a series of 2 terms"):
        pack(torch.zeros(4), "2:4+1:4")


def test_unpack_rejects_non_packed_input():
    with pytest.raises(TypeError, match=r"`packed` must be a PackedTensor .*; got Tensor"):
        unpack(torch.zeros(4))


def test_repr_names_pattern_shape_and_sizes():
    packed = pack(torch.zeros(2, 8), "2:4")
    assert repr(packed) == (
        "PackedTensor(pattern='2:4', shape=(2, 8), dim=1, dtype=torch.float32, nbytes=34, dense_nbytes=64)"
    )
