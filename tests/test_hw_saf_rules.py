"""Rules of the sparse step that issue 6 added, each against a hand-derived number.

* The leader tile of a storage SAF follows the mapping's reuse (thesis 4.6.4, Fig. 4-6).
* Partial sums drained to the parent are write-backs: no SAF eliminates them.
* Structured engines skip the RF reads their zeros make ineffectual (the Sparseloop STC artifact).
* Skipping unstructured data deals nonzeros out among the MACs in position space: lanes idle when a
  fiber's occupancy is not a multiple of the lanes (DSTC's imbalance, thesis 6.4.2).
* A TTC holds one term of a series at a time below its term loop (capacity).
"""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from hw_helpers import two_level
from tasder.hw import Mapping, Problem, evaluate, load_architecture
from tasder.hw.dataflow import analyze
from tasder.hw.mapper import sample_mappings
from tasder.hw.sparse import compressed_need
from tasder.hw.workload import DIMS, TENSOR_DIMS, TENSORS

A, B, Z = 0, 1, 2
DRAM, BUF = 0, 1


def _saf(target: str, leader: str, *, compute: str = "", support: str = "") -> str:
    lines = ["sparse_optimizations:"]
    if support:
        lines.append(f"  structured_support: {{{support}}}")
    lines += ["  targets:",
              "    - name: Buffer",
              f"      action_optimization: [{{type: skipping, target: {target}, condition_on: [{leader}]}}]"]
    if compute:
        lines += ["    - name: MAC",
                  f"      action_optimization: [{{type: skipping, target: Z, condition_on: [{compute}]}}]"]
    return "\n".join(lines) + "\n"


def _buffer(m: int, k: int, n: int, order: str, spatial: dict[str, int] | None = None) -> Mapping:
    return Mapping.from_levels([{"temporal": {}, "order": "MKN"},
                                {"temporal": {"M": m, "K": k, "N": n}, "order": order, "spatial": spatial or {}}])


@pytest.mark.parametrize(("order", "b_reads", "leader_rows"), [("MNK", 32, 1), ("KNM", 8, 4)])
def test_leader_tile_follows_the_mappings_reuse(tmp_path, order, b_reads, leader_rows):
    """Thesis Fig. 4-6, Skip B <- A at the buffer. Mapping 1 (k innermost): each B value meets one A
    value, so a read is skipped when that A is zero. Mapping 2 (m0 innermost): B[k,n] stays in the
    MAC across the m0 loop of 4, so it is skipped only when the whole column A[0:4, k] is zero."""
    arch = two_level(tmp_path, sparse=_saf("B", "A"))
    p = Problem("p", M=4, K=8, N=1, a_density="unstructured(0.5)")
    e = evaluate(arch, p, _buffer(4, 8, 1, order))
    # A has 32 elements, 16 of them nonzero: a column of 4 is all zero with C(16,4)/C(32,4).
    p_empty = math.comb(16, leader_rows) / math.comb(32, leader_rows)
    dense_reads = e.counts.reads[0, BUF, B] + e.counts.skipped[0, BUF, B, 0]
    assert dense_reads == b_reads
    assert e.counts.skipped[0, BUF, B, 0] == pytest.approx(b_reads * p_empty)
    assert e.counts.co_extents[0, BUF, B].tolist() == [leader_rows, 1, 1]


def _co_extents_reference(arch, mapping: Mapping) -> np.ndarray:
    """co_extents from the loop list, one mapping, plain loops (the definition in dataflow.py)."""
    nl = len(arch.levels)
    loops = []  # (level, dim, factor, spatial?) outermost first
    for i, lv in enumerate(mapping.levels):
        loops += [(i, d, lv.temporal[DIMS.index(d)], False) for d in lv.order]
        loops += [(i, d, lv.spatial[j], True) for j, d in enumerate(DIMS)]
    out = np.ones((nl, 3, 3))
    for ti, t in enumerate(TENSORS):
        chain = [i for i, lv in enumerate(arch.levels) if t in lv.keep] + [nl]
        for p, c in pairwise(chain):
            ext = [math.prod(f for lvl, dd, f, _ in loops if lvl >= c and dd == d) for d in DIMS]
            temporal = [lp for lp in loops if lp[0] < c and not lp[3]]
            inner = max([j for j, (_, d, f, _) in enumerate(temporal) if d in TENSOR_DIMS[t] and f > 1], default=-1)
            for _, d, f, _ in temporal[inner + 1:]:
                ext[DIMS.index(d)] *= f
            for lvl, d, f, sp in loops:
                if sp and p <= lvl < c and d not in TENSOR_DIMS[t]:
                    ext[DIMS.index(d)] *= f
            out[p, ti] = ext
    return out


@settings(max_examples=25, deadline=None)
@given(M=st.integers(1, 40), K=st.integers(1, 40), N=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_co_extents_equal_the_loop_by_loop_definition(M, K, N, seed):  # noqa: N803
    arch = load_architecture("ttc-vegeta-m8")  # storage SAFs on A, B, Z at the RF
    p = Problem("p", M=M, K=K, N=N)
    batch = sample_mappings(arch, p, 4, np.random.default_rng(seed))
    counts = analyze(arch, batch)
    rf = len(arch.levels) - 1
    for b in range(len(batch)):
        ref = _co_extents_reference(arch, batch.mapping(b))
        np.testing.assert_array_equal(counts.co_extents[b, rf], ref[rf])


def test_drained_partial_sums_are_not_skipped(tmp_path):
    """Output-stationary: the buffer reads no Z (each output accumulates in the MAC); its only Z traffic
    up is the final drain to DRAM (M·N words), which a Z <- A skip at the buffer must leave alone,
    however sparse A is."""
    arch = two_level(tmp_path, sparse=_saf("Z", "A"))
    e = evaluate(arch, Problem("p", M=4, K=8, N=3, a_density="unstructured(0.05)"), _buffer(4, 8, 3, "MNK"))
    assert e.counts.drains[0, BUF, Z] == 12
    assert e.counts.reads[0, BUF, Z] == 0 and e.counts.skipped[0, BUF, Z, 0] == 0
    assert e.counts.updates[0, DRAM, Z] == 12


def test_structured_engine_skips_the_rf_reads_its_zeros_select(tmp_path):
    """An STC-like engine with K outermost at the buffer: each B read and each partial-sum access
    meets one A value, so on 2:4 exactly half of them (P(A = 0) = 1/2) are skipped; the drains of the
    M·N outputs stay. With k innermost, Z accumulates over K = 8 in the MAC and a 2:4 fiber of 8 is
    never empty: no partial-sum access is skipped."""
    sparse = ("sparse_optimizations:\n  structured_support: {A: ['2:4']}\n  targets:\n"
              "    - {name: DRAM, representation_format: {A: [CP:2]}}\n"
              "    - name: Buffer\n      representation_format: {A: [CP:2]}\n"
              "      action_optimization:\n"
              "        - {type: skipping, target: B, condition_on: [A]}\n"
              "        - {type: skipping, target: Z, condition_on: [A]}\n"
              "    - name: MAC\n      action_optimization: [{type: skipping, target: Z, condition_on: [A]}]\n")
    arch = two_level(tmp_path, sparse=sparse)
    p = Problem("p", M=4, K=8, N=3, a_density="2:4")
    macs = 4 * 8 * 3
    e = evaluate(arch, p, _buffer(4, 8, 3, "KMN"))  # a Z read + update per MAC
    c = e.counts
    assert c.reads[0, BUF, B] == pytest.approx(macs / 2)
    assert c.updates[0, BUF, Z] == pytest.approx(macs / 2)
    # Z reads: partial sums to the MAC (all but the first visit of each output) halve; drains stay.
    assert c.reads[0, BUF, Z] == pytest.approx((macs - 12) / 2)
    assert c.drains[0, BUF, Z] == 12
    assert e.costs.compute_cycles[0] == pytest.approx(macs / 2)
    os_ = evaluate(arch, p, _buffer(4, 8, 3, "MNK")).counts
    assert os_.skipped[0, BUF, Z].sum() == 0 and os_.updates[0, BUF, Z] == 12


def _lanes(tmp_path, support: str = ""):
    return two_level(tmp_path, macs=8, sparse=_saf("B", "A", compute="A, B", support=support))


@pytest.mark.parametrize("n_temporal", [1, 2, 4])
def test_unstructured_skipping_idles_lanes_in_position_space(tmp_path, n_temporal):
    """8 MACs spread over N; the buffer's tile holds 8·n_temporal B values per k. Their X nonzeros are
    dealt out over the 8 lanes: ceil(X/8) steps instead of the ideal X/8 (DSTC: thesis 6.4.2, "not
    all compute units are active"; the artifact's position-skipping over the exact fan-out)."""
    arch = _lanes(tmp_path)
    K, N = 16, 8 * n_temporal
    p = Problem("p", M=2, K=K, N=N, b_density="unstructured(0.5)")
    e = evaluate(arch, p, _buffer(2, K, n_temporal, "KMN", {"N": 8}))
    dense_steps = 2 * K * n_temporal
    # B has K·N elements, half nonzero; a fiber of N along n holds a hypergeometric count.
    x = np.arange(N + 1)
    e_steps = float(np.dot(np.ceil(x / 8), stats.hypergeom.pmf(x, K * N, K * N // 2, N)))
    assert e.costs.compute_cycles[0] == pytest.approx(2 * K * e_steps)
    assert e.costs.compute_cycles[0] > 0.5 * dense_steps  # the ideal, expected-work answer
    assert e.counts.macs[0] == pytest.approx(0.5 * 2 * K * N)  # the work itself is unchanged


def test_no_imbalance_without_lanes_dense_data_or_a_structured_engine(tmp_path):
    arch = _lanes(tmp_path)
    one_lane = evaluate(arch, Problem("p", M=2, K=16, N=8, b_density="unstructured(0.5)"), _buffer(2, 16, 8, "KMN"))
    assert one_lane.costs.compute_cycles[0] == pytest.approx(0.5 * 2 * 16 * 8)
    dense = evaluate(arch, Problem("p", M=2, K=16, N=16), _buffer(2, 16, 2, "KMN", {"N": 8}))
    assert dense.costs.compute_cycles[0] == pytest.approx(2 * 16 * 2)
    # A 2:4 A on a 2:4 engine: deterministic skips, exactly half the steps even with M spread out.
    eng = two_level(tmp_path, macs=4, sparse=_saf("B", "A", compute="A", support="A: ['2:4']"))
    e = evaluate(eng, Problem("p", M=8, K=16, N=2, a_density="2:4"), _buffer(2, 16, 2, "KMN", {"M": 4}))
    assert e.costs.compute_cycles[0] == pytest.approx(0.5 * 2 * 16 * 2)


def test_series_capacity_holds_one_term_below_the_term_loop():
    """ttc-vegeta-m8 runs B = 4:8+1:8 term by term with A reused at L2: L1 and the RF hold one term
    (the 4:8 one is the larger), L2 and DRAM the whole series."""
    arch = load_architecture("ttc-vegeta-m8")
    ext = np.array([[[64.0, 256.0, 64.0]] * 4])
    series = compressed_need(arch, Problem("p", M=64, K=256, N=64, b_density="4:8+1:8"), ext)
    first = compressed_need(arch, Problem("p", M=64, K=256, N=64, b_density="4:8"), ext)
    l2, l1, rf = (arch.level_index(n) for n in ("L2", "L1", "RF"))
    assert series[0, l1] == pytest.approx(first[0, l1]) and series[0, rf] == pytest.approx(first[0, rf])
    # the 1:8 term adds 1/8 of B's 256·64 words plus its 3-bit coordinates at L2
    assert series[0, l2] - first[0, l2] == pytest.approx(256 * 64 / 8 * (1 + 3 / 16))
