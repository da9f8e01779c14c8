"""Dense loop analysis against hand-derived access counts (DRAM + one buffer), and its invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hw_helpers import two_level
from tasder.hw import (
    Mapping,
    MappingError,
    Problem,
    SpecError,
    evaluate,
    load_architecture,
    load_mapping,
)
from tasder.hw.dataflow import analyze, analyze_reference
from tasder.hw.mapper import sample_mappings
from tasder.hw.mapping import check_mapping

A, B, Z = 0, 1, 2
DRAM, BUF = 0, 1


def _map(M1: int, M0: int, K: int, N: int, order: str) -> Mapping:  # noqa: N803
    """DRAM: for m1 in [0:M1); Buffer: the M0×K×N tile in ``order`` (outer→inner)."""
    return Mapping.from_levels([{"temporal": {"M": M1}, "order": "MKN"},
                                {"temporal": {"M": M0, "K": K, "N": N}, "order": order}])


# (order at the buffer, A reads, B reads, Z updates, Z reads incl. the MN drained to DRAM) at the Buffer
# (the MACs latch A, B and Z; drains are counted apart from reads, and charged as reads here).
# Derivation: loops above the MACs are m1, then the buffer loops in order. An operand is re-read
# each time a loop indexing it iterates or any loop outside such a loop does.
HAND = {
    # weight-stationary: N innermost → A[m,k] stays in the MAC's latch for the n loop. With N = 1
    # (matrix-vector) the n loop vanishes and k becomes innermost: Z accumulates in place.
    "MKN": lambda m1, m, k, n: (m * k, m * k * n, m * k * n if n > 1 else m,
                                ((m * k * n if n > 1 else m) - m * n) + m * n),
    # output-stationary: K innermost → each Z[m,n] accumulates in place; first visits read nothing.
    "MNK": lambda m1, m, k, n: (m * k * n, m * k * n, m * n, 0 + m * n),
    # input-stationary: M innermost → B[k,n] stays for the inner m0 loop, but m1 outside breaks it.
    "KNM": lambda m1, m, k, n: (m * k * n, m1 * k * n, m * k * n, (m * k * n - m * n) + m * n),
}


@pytest.mark.parametrize("order", sorted(HAND))
@pytest.mark.parametrize(("M1", "M0", "K", "N"), [(1, 8, 6, 1), (2, 4, 6, 1), (2, 4, 6, 5), (3, 2, 4, 7)])
def test_access_counts_match_hand_formulas(tmp_path, order, M1, M0, K, N):  # noqa: N803
    """Matrix-vector (N=1) and matrix-matrix on DRAM + buffer: every count equals the hand formula."""
    arch = two_level(tmp_path)
    M = M1 * M0
    ev = evaluate(arch, Problem("p", M=M, K=K, N=N), _map(M1, M0, K, N, order))
    c = ev.counts
    a_reads, b_reads, z_updates, z_reads = HAND[order](M1, M, K, N)
    assert c.reads[0, BUF, A] == a_reads
    assert c.reads[0, BUF, B] == b_reads
    assert c.updates[0, BUF, Z] == z_updates
    assert c.drains[0, BUF, Z] == M * N  # every Z word drained to DRAM once
    assert c.reads[0, BUF, Z] + c.drains[0, BUF, Z] == z_reads
    # DRAM → buffer: the buffer tile is M0×K of A, K×N of B, M0×N of Z; only m1 is above it.
    assert c.tile[0, BUF].tolist() == [M0 * K, K * N, M0 * N]
    assert c.fills[0, BUF].tolist() == [M * K, K * N, 0]  # B is reused across m1; Z never re-read
    assert c.reads[0, DRAM].tolist() == [M * K, K * N, 0]
    assert c.updates[0, DRAM].tolist() == [0, 0, M * N]
    assert c.macs[0] == M * K * N
    # Energy: reads 1 pJ, writes (fills) 2 pJ, updates 3 pJ at the buffer; ×100 at DRAM; 0.5 pJ per MAC.
    expected = (a_reads + b_reads + z_reads) * 1 + (M * K + K * N) * 2 + z_updates * 3 \
        + (M * K + K * N) * 100 + M * N * 300 + 0.5 * M * K * N
    assert ev.energy_pj == pytest.approx(expected)


def test_spatial_multicast_and_reduction(tmp_path):
    """Spatial K across 4 MACs: B is not shared (K indexes it), A neither; Z is reduced (4 → 1 update)."""
    arch = two_level(tmp_path, macs=8)
    m = Mapping.from_levels([{"temporal": {}}, {"temporal": {"M": 2, "N": 3}, "order": "MNK",
                                                "spatial": {"K": 4, "M": 2}}])
    c = evaluate(arch, Problem("p", M=4, K=4, N=3), m).counts
    # M spatial 2: B[k,n] goes to both m-instances at once (multicast): read K·N·(temporal M reload).
    # Loops above MACs: m(2) n(3) [k=1]. B relevant: n → reload 2·3 = 6 per instance-tile, tile 1,
    # relevant spatial for B = K(4) → reads 6·4 = 24 = M_t·N·K (not ×2 for the M-spatial copies).
    assert c.reads[0, BUF, B] == 24
    assert c.reads[0, BUF, A] == 2 * 4 * 2  # reload m → 2, relevant spatial M·K = 8 → 16 = M·K (n inner: stationary)
    assert c.updates[0, BUF, Z] == 2 * 3 * 2  # reload 6, relevant spatial M = 2 (K reduced) → M·N = 12
    assert c.active[0].tolist() == [1, 1, 8]


def test_bypass_sends_tiles_from_the_grandparent(tmp_path):
    """A level that bypasses A: A's reads come from DRAM straight to the MACs."""
    path = tmp_path / "bypass.yaml"
    two_level(tmp_path)
    text = next(tmp_path.glob("two_*.yaml")).read_text().replace(
        "      attributes: {capacity", "      constraints: {bypass: [A]}\n      attributes: {capacity")
    path.write_text(text)
    arch = load_architecture(path)
    assert arch.levels[1].keep == ("B", "Z")
    c = evaluate(arch, Problem("p", M=4, K=3, N=2), _map(1, 4, 3, 2, "MKN")).counts
    assert c.reads[0, DRAM, A] == 4 * 3  # weight-stationary at the MACs: each A word once
    assert c.tile[0, BUF, A] == 0 and c.fills[0, BUF, A] == 0


def test_compute_bound_cycles_halve_with_twice_the_macs(tmp_path):
    prob = Problem("p", M=16, K=8, N=4)
    small, big = two_level(tmp_path, macs=4), two_level(tmp_path, macs=8)
    m4 = Mapping.from_levels([{}, {"temporal": {"M": 4, "K": 8, "N": 4}, "spatial": {"M": 4}}])
    m8 = Mapping.from_levels([{}, {"temporal": {"M": 2, "K": 8, "N": 4}, "spatial": {"M": 8}}])
    e4, e8 = evaluate(small, prob, m4), evaluate(big, prob, m8)
    assert e4.cycles == 16 * 8 * 4 / 4
    assert e8.cycles == e4.cycles / 2
    assert e4.utilization == e8.utilization == 1.0


def test_memory_bound_cycles_double_when_dram_bandwidth_halves(tmp_path):
    prob = Problem("p", M=16, K=8, N=4)
    m = Mapping.from_levels([{"temporal": {"N": 4}, "order": "MKN"}, {"temporal": {"M": 16, "K": 8}}])
    fast = evaluate(two_level(tmp_path, dram_bw=0.25), prob, m)
    slow = evaluate(two_level(tmp_path, dram_bw=0.125), prob, m)
    dram_reads = fast.counts.reads[0, DRAM].sum()
    assert fast.cycles == dram_reads / 0.25 > fast.costs.compute_cycles[0]
    assert slow.cycles == 2 * fast.cycles


def test_overflowing_tile_is_rejected_not_clipped(tmp_path):
    arch = two_level(tmp_path, capacity=10)
    with pytest.raises(MappingError, match=r"level Buffer: the tiles need 19 words .* capacity is 10 words"):
        check_mapping(arch, Problem("p", M=4, K=3, N=1), _map(1, 4, 3, 1, "MKN"))


def test_factors_that_do_not_multiply_out_name_the_dim(tmp_path):
    arch = two_level(tmp_path)
    with pytest.raises(MappingError, match=r"dim K: the factors multiply to 3 but p has K=6"):
        evaluate(arch, Problem("p", M=4, K=6, N=1), _map(1, 4, 3, 1, "MKN"))


def test_spatial_factors_beyond_the_fanout_name_the_level(tmp_path):
    arch = two_level(tmp_path, macs=2)
    m = Mapping.from_levels([{}, {"temporal": {"K": 3}, "spatial": {"M": 4}}])
    with pytest.raises(MappingError, match=r"level Buffer: .* use 4 instances but the fan-out to MAC is 2"):
        evaluate(arch, Problem("p", M=4, K=3, N=1), m)


def test_wrong_number_of_levels(tmp_path):
    with pytest.raises(MappingError, match=r"1 level.*2 storage level"):
        evaluate(two_level(tmp_path), Problem("p", M=1, K=1, N=1), Mapping.from_levels([{}]))


@pytest.mark.parametrize("bad", [0, -3])
def test_zero_or_negative_sizes_are_rejected(bad):
    with pytest.raises(ValueError, match=rf"K must be a positive integer; got {bad}"):
        Problem("p", M=4, K=bad, N=1)


@settings(max_examples=25, deadline=None)
@given(M=st.integers(1, 48), K=st.integers(1, 48), N=st.integers(1, 48), seed=st.integers(0, 2**16))
def test_vectorized_equals_reference_and_macs_are_exact(M, K, N, seed):  # noqa: N803
    """Random valid mappings on tc.yaml: MACs == M·K·N always; the batch analysis equals the scalar one."""
    arch = load_architecture("tc")
    prob = Problem("p", M=M, K=K, N=N)
    batch = sample_mappings(arch, prob, 16, np.random.default_rng(seed))
    v = analyze(arch, batch)
    assert (v.macs == M * K * N).all()
    for i in range(len(batch)):
        check_mapping(arch, prob, batch.mapping(i))  # the sampler only yields valid mappings
        r = analyze_reference(arch, batch.mapping(i))
        for field in ("tile", "fills", "reads", "updates", "active", "macs", "steps"):
            np.testing.assert_allclose(getattr(v, field)[i], getattr(r, field)[0], err_msg=field)


def test_mapping_yaml_round_trip_and_errors(tmp_path):
    arch = two_level(tmp_path)
    path = tmp_path / "map.yaml"
    path.write_text("version: 0.1\nmapping:\n  DRAM: {temporal: {M: 2}}\n"
                    "  Buffer: {temporal: {M: 4, K: 6, N: 5}, order: KNM}\n")
    assert load_mapping(path, arch) == _map(2, 4, 6, 5, "KNM")
    path.write_text("version: 0.1\nmapping:\n  DRAM: {temporal: {M: 2}}\n  Bufer: {temporal: {M: 4}}\n")
    with pytest.raises(SpecError, match=r"map\.yaml:4: unknown key 'Bufer' in mapping; did you mean 'Buffer'\?"):
        load_mapping(path, arch)
    path.write_text("version: 0.1\nmapping:\n  DRAM: {temporal: {M: 2.5}}\n")
    with pytest.raises(SpecError, match=r"map\.yaml:3: mapping\.DRAM\.temporal\.M must be an integer ≥ 1; got 2\.5"):
        load_mapping(path, arch)
    path.write_text("version: 0.1\nmapping:\n  DRAM: {order: MMK}\n")
    with pytest.raises(SpecError, match=r"map\.yaml:3: .*order 'MMK' misses the dim 'N'"):
        load_mapping(path, arch)


BYPASS_ARCH = """\
version: 0.1
architecture:
  name: bypass
  storage:
    - {name: DRAM, class: DRAM, attributes: {read_bandwidth: 8}}
    - {name: L2, class: SRAM, instances: 2, attributes: {capacity: 2048, read_bandwidth: 8},
       constraints: {bypass: [B]}}
    - {name: L1, class: SRAM, instances: 4, attributes: {capacity: 256, read_bandwidth: 8},
       constraints: {keep: [A, Z]}}
    - {name: RF, class: regfile, instances: 8, attributes: {capacity: 16, read_bandwidth: 8}}
  compute: {name: MAC, instances: 32}
"""


@settings(max_examples=15, deadline=None)
@given(M=st.integers(1, 40), K=st.integers(1, 40), N=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_vectorized_equals_reference_with_bypass(tmp_path_factory, M, K, N, seed):  # noqa: N803
    path = tmp_path_factory.mktemp("arch") / "bypass.yaml"
    path.write_text(BYPASS_ARCH)
    arch = load_architecture(path)
    prob = Problem("p", M=M, K=K, N=N)
    batch = sample_mappings(arch, prob, 12, np.random.default_rng(seed))
    v = analyze(arch, batch)
    for i in range(len(batch)):
        check_mapping(arch, prob, batch.mapping(i))
        r = analyze_reference(arch, batch.mapping(i))
        for field in ("tile", "fills", "reads", "updates", "active", "macs", "steps"):
            np.testing.assert_allclose(getattr(v, field)[i], getattr(r, field)[0], err_msg=field)
