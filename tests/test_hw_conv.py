"""Native convolutions, the operand latch and drains (issue 16), checked against Timeloop v3.0.3's own
numbers (the digest's examples 1 and 2), hand derivations, a 1×1 convolution's GEMM and a
set-based simulation of the loop nest."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hw_helpers import two_level
from tasder.hw import Mapping, MappingError, Problem, SpecError, evaluate, load_architecture, load_network, map_layer
from tasder.hw.architecture import Architecture, ComputeLevel, StorageLevel
from tasder.hw.dataflow import analyze, analyze_reference
from tasder.hw.mapper import MapperConstraints, sample_mappings, validity
from tasder.hw.mapping import MappingBatch, load_mapping
from tasder.hw.model import evaluate_batch
from tasder.hw.training import training_gemms
from tasder.hw.workload import CONV_DIMS, TENSORS, ProblemShape, conv_problem, conv_shape, from_conv2d

A, B, Z = 0, 1, 2

# The digest's architecture (§9) in tasder's format: DRAM (4-word blocks, 200 pJ per access = 50 pJ
# per word) → GLB (1024 × 4 words, 8 pJ per 4-word access) → 4 PEs with a 64-word RF (0.5 pJ) → a
# MAC each (1 pJ). No operand latch and free drains: Timeloop v3.0.3's semantics.
TIMELOOP_ARCH = """\
version: 0.1
architecture:
  name: timeloop-digest
  storage:
    - {name: DRAM, class: DRAM, attributes: {block_size: 4, read_bandwidth: 8, write_bandwidth: 8,
       read_energy: 200, write_energy: 200}}
    - {name: GLB, class: SRAM, attributes: {capacity: 4096, block_size: 4, read_bandwidth: 8, write_bandwidth: 8,
       read_energy: 8, write_energy: 8}}
    - {name: RF, class: regfile, instances: 4, attributes: {capacity: 64, block_size: 1, read_bandwidth: 2,
       write_bandwidth: 2, read_energy: 0.5, write_energy: 0.5}}
  compute: {name: MAC, instances: 4, attributes: {energy_per_mac: 1.0}}
"""


@pytest.fixture(scope="module")
def timeloop_arch(tmp_path_factory) -> Architecture:
    path = tmp_path_factory.mktemp("tl") / "arch.yaml"
    path.write_text(TIMELOOP_ARCH)
    return load_architecture(path)


def _table(ev) -> dict[str, dict[str, tuple[float, float, float]]]:
    c = ev.counts
    return {lv.name: {t: (float(c.reads[0, i, ti]), float(c.fills[0, i, ti]), float(c.updates[0, i, ti]))
                      for ti, t in enumerate(TENSORS)} for i, lv in enumerate(ev.arch.levels)}


def test_timeloop_example_1_dense_gemm(timeloop_arch):
    """Digest §9 example 1: GEMM 8×16×8, Timeloop permutations KNM (innermost first) = MNK here.
    Timeloop v3.0.3: cycles 376, energy 21,024 pJ, and this per-level table (totals)."""
    m = Mapping.from_levels([{"order": "MNK"},
                             {"temporal": {"M": 2, "N": 4}, "order": "MNK", "spatial": {"M": 4}},
                             {"temporal": {"K": 16, "N": 2}, "order": "MNK"}])
    ev = evaluate(timeloop_arch, Problem("ex1", M=8, K=16, N=8), m)
    assert ev.cycles == 376
    assert ev.energy_pj == 21_024
    assert ev.utilization == pytest.approx(1024 / (4 * 376))
    assert _table(ev) == {
        "RF": {"A": (1024, 128, 0), "B": (1024, 1024, 0), "Z": (960, 0, 1024)},
        "GLB": {"A": (128, 128, 0), "B": (256, 128, 0), "Z": (0, 0, 64)},
        "DRAM": {"A": (128, 0, 0), "B": (128, 0, 0), "Z": (0, 0, 64)},
    }
    breakdown = ev.energy_breakdown()
    assert sum(v for k, v in breakdown["RF"].items() if k.startswith("A.")) == 576
    assert sum(v for k, v in breakdown["RF"].items() if k.startswith("Z.")) == 992
    assert sum(v for k, v in breakdown["GLB"].items() if k.startswith("B.")) == 768
    # The RF drains its Z tiles to the GLB (64 words: the GLB's updates) without a read of its own.
    assert ev.counts.drains[0, 2, Z] == 64 and breakdown["RF"].get("Z.drain", 0.0) == 0.0
    assert ev.costs.compute_cycles[0] == 256


def test_timeloop_example_2_conv_layer(timeloop_arch):
    """Digest §9 example 2: a 3×3 convolution (C4, K8 output channels, 8×8 output), K spatial over the
    4 PEs. Timeloop v3.0.3: cycles 6,848, energy 128,912 pJ, RF Inputs fills 960 per PE (the halo
    deltas, not 1,152), tiles 9 / 36 / 16 words."""
    prob = conv_problem("ex2", C=4, M=8, R=3, S=3, P=8, Q=8)
    # Timeloop permutations innermost first: GLB PQCKRSN, RF RSPQCKN → outermost first here.
    m = Mapping.from_levels([{},
                             {"temporal": {"P": 2, "Q": 2, "C": 4, "M": 2}, "order": "NSRMCQP", "spatial": {"M": 4}},
                             {"temporal": {"R": 3, "S": 3, "P": 4, "Q": 4}, "order": "NMCQPSR"}], CONV_DIMS)
    ev = evaluate(timeloop_arch, prob, m)
    assert ev.cycles == 6_848
    assert ev.energy_pj == 128_912
    assert ev.counts.tile[0, 2].tolist() == [9, 36, 16]
    assert ev.counts.tile[0, 1].tolist() == [288, 400, 512]
    assert _table(ev) == {
        "RF": {"A": (18_432, 288, 0), "B": (18_432, 3_840, 0), "Z": (17_920, 1_536, 18_432)},
        "GLB": {"A": (288, 288, 0), "B": (960, 400, 0), "Z": (1_536, 0, 2_048)},
        "DRAM": {"A": (288, 0, 0), "B": (400, 0, 0), "Z": (0, 0, 512)},
    }
    per_tensor = {t: sum(v for lv in ev.energy_breakdown().values() for k, v in lv.items() if k.startswith(f"{t}."))
                  for t in "ABZ"}
    assert per_tensor == {"A": 9_360 + 1_152 + 14_400, "B": 11_136 + 2_720 + 20_000, "Z": 18_944 + 7_168 + 25_600}
    assert ev.costs.compute_cycles[0] == 4_608


def test_counters_report_timeloops_actions(timeloop_arch):
    """``Evaluation.counters`` (``tasder hw eval --counts``): Timeloop's algorithmic/actual/gated/skipped
    per action, instances, tiles, and drains apart; a dense design has nothing gated or skipped."""
    prob = conv_problem("ex2", C=4, M=8, R=3, S=3, P=8, Q=8)
    m = Mapping.from_levels([{},
                             {"temporal": {"P": 2, "Q": 2, "C": 4, "M": 2}, "order": "NSRMCQP", "spatial": {"M": 4}},
                             {"temporal": {"R": 3, "S": 3, "P": 4, "Q": 4}, "order": "NMCQPSR"}], CONV_DIMS)
    doc = evaluate(timeloop_arch, prob, m).counters()
    rf = doc["levels"]["RF"]
    assert rf["utilized_instances"] == 4 and rf["tensors"]["B"]["name"] == "Inputs"
    assert rf["tensors"]["B"]["fills"] == {"algorithmic": 3840, "actual": 3840, "gated": 0, "skipped": 0,
                                           "metadata": 0}
    assert rf["tensors"]["B"]["fills"]["actual"] / rf["utilized_instances"] == 960  # Timeloop's per-instance line
    assert rf["tensors"]["Z"]["drains"] == 2048 and doc["levels"]["GLB"]["tensors"]["Z"]["updates"]["actual"] == 2048
    assert doc["compute"] == {"name": "MAC", "instances": 4, "utilized_instances": 4, "algorithmic": 18432,
                              "actual": 18432, "gated": 0, "skipped": 0, "cycles": 4608}


# --------------------------------------------------------------------------------------------------
# Sliding windows, by hand
# --------------------------------------------------------------------------------------------------


def _row_conv(stride: int, dilation: int, order: str = "NMCQSRP", p_outer: int = 2) -> tuple:
    """A 1-D convolution (R=3 along P=4) on DRAM → Buffer → 1 MAC: the buffer holds P_t = 4/p_outer
    outputs, the DRAM loop over the p tiles is the inputs' innermost relevant loop."""
    prob = conv_problem("row", C=1, M=1, R=3, S=1, P=4, Q=1, stride=stride, dilation=dilation)
    m = Mapping.from_levels([{"temporal": {"P": p_outer}},
                             {"temporal": {"R": 3, "P": 4 // p_outer}, "order": order}], CONV_DIMS)
    return prob, m


@pytest.mark.parametrize(("stride", "dilation", "tile", "fills"), [
    (1, 1, 4, 6),   # tile W = (2-1)+(3-1)+1 = 4; the second tile moves 2 and keeps 2: 4 + 2 = 6 = the input
    (2, 1, 5, 9),   # W = (2-1)·2+(3-1)+1 = 5, moves 4, keeps 1: 5 + 4 = 9 = (4-1)·2+3
    (1, 2, 6, 8),   # W = 1+(3-1)·2+1 = 6, moves 2, keeps 4: 6 + 2 = 8 = 3+2·2+1
    (3, 1, 6, 12),  # W = 3+2+1 = 6, moves 6: no overlap, 12 words (the input is 3·3+3 = 12)
])
def test_sliding_window_fills_only_the_new_words(tmp_path, stride, dilation, tile, fills):
    """Each input word enters the buffer once when the sliding loop is the innermost relevant loop."""
    arch = two_level(tmp_path)
    prob, m = _row_conv(stride, dilation)
    c = evaluate(arch, prob, m).counts
    assert c.tile[0, 1, B] == tile
    assert c.fills[0, 1, B] == fills
    assert prob.tensor_size("B") == (4 - 1) * stride + 2 * dilation + 1
    assert c.reads[0, 0, B] == fills  # DRAM sends exactly what the buffer takes in


def test_a_restarted_window_is_loaded_whole(tmp_path):
    """With the C loop inside the P loop at DRAM, C is the inputs' innermost relevant loop: every p
    step restarts it, so every tile is loaded whole (Timeloop's delta only follows the innermost
    relevant loop's steps): 2 p × 2 c × 4 words, not the 12-word input."""
    arch = two_level(tmp_path)
    prob = conv_problem("row", C=2, M=1, R=3, S=1, P=4, Q=1)
    m = Mapping.from_levels([{"temporal": {"P": 2, "C": 2}, "order": "RSQNMPC"},
                             {"temporal": {"R": 3, "P": 2}, "order": "NMCQSRP"}], CONV_DIMS)
    c = evaluate(arch, prob, m).counts
    assert prob.tensor_size("B") == 12 and c.tile[0, 1, B] == 4
    assert c.fills[0, 1, B] == 16
    # With P inside C the window slides again: per c, 4 + 2 words.
    m2 = Mapping.from_levels([{"temporal": {"P": 2, "C": 2}, "order": "RSQNMCP"},
                              {"temporal": {"R": 3, "P": 2}, "order": "NMCQSRP"}], CONV_DIMS)
    assert evaluate(arch, prob, m2).counts.fills[0, 1, B] == 12


def test_irrelevant_loops_inside_the_window_keep_it_resident(tmp_path):
    """An M loop inside the P loop does not touch the inputs: the window still slides (6 words),
    while the weights (M indexes them) are reloaded per p and m."""
    arch = two_level(tmp_path)
    prob = conv_problem("row", C=1, M=2, R=3, S=1, P=4, Q=1)
    m = Mapping.from_levels([{"temporal": {"P": 2, "M": 2}, "order": "RSQNCPM"},
                             {"temporal": {"R": 3, "P": 2}, "order": "NMCQSRP"}], CONV_DIMS)
    c = evaluate(arch, prob, m).counts
    assert c.fills[0, 1, B] == 6
    assert c.fills[0, 1, A] == 2 * 2 * 3


def test_input_tiles_hold_the_halo_not_the_im2col_matrix(tmp_path):
    """A 3×3 window over a 4×4 output tile needs (4+2)² = 36 input words; its im2col GEMM tile holds
    16 rows × 9 = 144. The whole tensor: 10×10×4 = 400 words against the im2col matrix's 64×36."""
    prob = conv_problem("c", C=4, M=8, R=3, S=3, P=8, Q=8)
    shape = prob.shape
    ext = np.array([3, 3, 4, 4, 1, 1, 1], dtype=np.float64)
    assert shape.footprint(ext, B) == 36
    assert prob.tensor_size("B") == 400
    gemm = from_conv2d("c", 4, 8, 3, 8, im2col=True)
    assert (gemm.M, gemm.K, gemm.N) == (prob.M, prob.K, prob.N) == (8, 36, 64)
    assert gemm.tensor_size("B") == 36 * 64 and prob.macs == gemm.macs


# --------------------------------------------------------------------------------------------------
# The operand latch and drains
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("latch", "a_reads", "b_reads", "z_updates", "z_reads"), [
    ("[]", 24, 24, 24, 18),          # Timeloop: every MAC reads A, B and updates Z in the buffer
    ("[Z]", 24, 24, 6, 0),           # an accumulator: K innermost, each Z word accumulates in place
    ("[A, B, Z]", 24, 24, 6, 0),     # A[m,k] and B[k,n] change every k step anyway
])
def test_latch_or_not_output_stationary(tmp_path, latch, a_reads, b_reads, z_updates, z_reads):
    """M=2, K=4, N=3 in the buffer, order M, N, K (output-stationary). Without an accumulator Z is read
    and updated per MAC, less the 6 first touches; with one, each output is updated once."""
    arch = two_level(tmp_path, latch=latch, drain_reads=False)
    m = Mapping.from_levels([{}, {"temporal": {"M": 2, "K": 4, "N": 3}, "order": "MNK"}])
    c = evaluate(arch, Problem("p", M=2, K=4, N=3), m).counts
    assert (c.reads[0, 1, A], c.reads[0, 1, B], c.updates[0, 1, Z], c.reads[0, 1, Z]) == \
        (a_reads, b_reads, z_updates, z_reads)
    assert c.drains[0, 1, Z] == 6 and c.updates[0, 0, Z] == 6


@pytest.mark.parametrize(("latch", "a_reads", "b_reads", "z_updates"), [
    ("[]", 24, 24, 24),
    ("[A]", 8, 24, 24),      # weight-stationary: A[m,k] stays latched while n runs innermost
    ("[A, B, Z]", 8, 24, 24),
])
def test_latch_or_not_weight_stationary(tmp_path, latch, a_reads, b_reads, z_updates):
    """Order M, K, N: an A latch reads each weight once (M·K = 8); Z changes every step either way."""
    arch = two_level(tmp_path, latch=latch, drain_reads=False)
    m = Mapping.from_levels([{}, {"temporal": {"M": 2, "K": 4, "N": 3}, "order": "MKN"}])
    c = evaluate(arch, Problem("p", M=2, K=4, N=3), m).counts
    assert (c.reads[0, 1, A], c.reads[0, 1, B], c.updates[0, 1, Z]) == (a_reads, b_reads, z_updates)
    assert c.reads[0, 1, Z] == 24 - 6


def test_drains_cost_nothing_unless_the_design_charges_them(tmp_path):
    """Drains of the buffer's 6 outputs to DRAM: counted either way; with drain_reads they cost the
    buffer's read energy (1 pJ) and read port, without it nothing (Timeloop)."""
    m = Mapping.from_levels([{}, {"temporal": {"M": 2, "K": 4, "N": 3}, "order": "MNK"}])
    prob = Problem("p", M=2, K=4, N=3)
    free = evaluate(two_level(tmp_path, drain_reads=False, buf_bw=1, dram_bw=1e9), prob, m)
    paid = evaluate(two_level(tmp_path, drain_reads=True, buf_bw=1, dram_bw=1e9), prob, m)
    assert free.counts.drains[0, 1, Z] == paid.counts.drains[0, 1, Z] == 6
    assert paid.energy_pj - free.energy_pj == 6 * 1
    assert paid.energy_breakdown()["Buffer"]["Z.drain"] == 6 and "Z.drain" not in free.energy_breakdown()["Buffer"]
    # Read port of the buffer (1 word/cycle): 24 A + 24 B reads, plus 6 drains when charged.
    assert free.costs.level_cycles[0, 1] == 48 and paid.costs.level_cycles[0, 1] == 54


def _storage(name: str, instances: int, capacity: int | None, keep: tuple[str, ...] = TENSORS,
             energy: float = 1.0) -> StorageLevel:
    return StorageLevel(name=name, cls="SRAM" if capacity else "DRAM", instances=instances, capacity=capacity,
                        read_bandwidth=1e9, write_bandwidth=1e9, block_size=1, word_bits=16, read_energy=energy,
                        write_energy=energy, update_energy=energy, leakage_power=0.0, keep=keep)


def _arch(latch: tuple[str, ...], *, explicit_latch: bool = False, fan: tuple[int, int] = (2, 2),
          keep_l1: tuple[str, ...] = TENSORS) -> Architecture:
    """DRAM → L1 × fan[0] → RF × fan[0]·fan[1] (→ Latch × MACs when explicit) → MACs (2 per RF)."""
    l1, rf = fan[0], fan[0] * fan[1]
    levels = [_storage("DRAM", 1, None), _storage("L1", l1, None, keep_l1), _storage("RF", rf, None)]
    if explicit_latch:
        levels.append(_storage("Latch", rf * 2, 3, energy=0.0))
    return Architecture("a", tuple(levels), ComputeLevel("MAC", rf * 2, 0.5, latch=latch))


def test_the_latch_is_a_one_word_register_level():
    """``operand_latch: [A, B, Z]`` is an explicit per-MAC level of 3 words (one per tensor) with free
    accesses: every count of the levels above is the same, on random convolution mappings."""
    prob = conv_problem("c", C=4, M=4, R=3, S=1, P=4, Q=2, stride=1)
    latched, explicit = _arch(("A", "B", "Z")), _arch((), explicit_latch=True)
    batch = sample_mappings(latched, prob, 300, np.random.default_rng(3))
    nl = len(latched.levels)

    def grow(x: np.ndarray) -> np.ndarray:  # one more level, all factors 1
        return np.concatenate([x, np.ones_like(x[:, :1])], axis=1)

    ext = MappingBatch(grow(batch.temporal), grow(batch.spatial),
                       np.concatenate([batch.order, batch.order[:, :1]], axis=1), batch.dims)
    a, b = analyze(latched, batch, prob), analyze(explicit, ext, prob)
    for key in ("reads", "fills", "updates", "drains", "tile"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key)[:, :nl], err_msg=key)
    np.testing.assert_array_equal(a.macs, b.macs)


# --------------------------------------------------------------------------------------------------
# A 1×1 convolution is its GEMM
# --------------------------------------------------------------------------------------------------


def _as_conv(batch: MappingBatch) -> MappingBatch:
    """GEMM mappings (M, K, N) as mappings of the 1×1 convolution C=K, M=M, P=N (R=S=Q=N=1): the unit
    dims first in every order, then M→M, K→C, N→P."""
    where = [CONV_DIMS.index(d) for d in ("M", "C", "P")]
    nb, nl, _ = batch.temporal.shape

    def widen(x: np.ndarray) -> np.ndarray:
        out = np.ones((nb, nl, 7), dtype=np.int64)
        out[..., where] = x
        return out

    unit = [CONV_DIMS.index(d) for d in ("R", "S", "Q", "N")]
    order = np.concatenate([np.broadcast_to(unit, (nb, nl, 4)), np.asarray(where)[batch.order]], axis=2)
    return MappingBatch(widen(batch.temporal), widen(batch.spatial), order, CONV_DIMS)


_ONE_BY_ONE = dict(
    design=st.sampled_from(["tc", "stc", "dstc", "ttc-vegeta-m8", "highlight"]),
    shape=st.sampled_from([(64, 128, 49), (256, 64, 196), (96, 384, 28), (1000, 2048, 1)]),
    dens=st.sampled_from([(None, None), ("2:4", "unstructured(0.5)"), ("unstructured(0.1)", "unstructured(0.3)"),
                          ("4:8+1:8", None), ("C1(2:4)->C0(2:4)", "unstructured(0.5)")]),
    seed=st.integers(0, 2**16))


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**_ONE_BY_ONE)
def test_a_one_by_one_convolution_equals_its_gemm(design, shape, dens, seed):
    """Every count, the cycles and the energy of a 1×1 convolution (C = K, P = N) equal its GEMM's,
    mapping for mapping, on dense and sparse designs alike."""
    m, k, n = shape
    arch = load_architecture(design)
    gemm = Problem("g", M=m, K=k, N=n, a_density=dens[0], b_density=dens[1])
    conv = conv_problem("c", C=k, M=m, R=1, S=1, P=n, Q=1, a_density=dens[0], b_density=dens[1])
    assert conv.macs == gemm.macs and conv.tensor_size("B") == gemm.tensor_size("B")
    batch = sample_mappings(load_architecture("tc"), gemm, 64, np.random.default_rng(seed))
    batch = batch.take(np.flatnonzero(validity(arch, gemm, batch)[0]))
    if not len(batch):
        return
    cbatch = _as_conv(batch)
    np.testing.assert_array_equal(validity(arch, conv, cbatch)[0], np.ones(len(batch), dtype=bool))
    cg, kg = evaluate_batch(arch, gemm, batch)
    cc, kc = evaluate_batch(arch, conv, cbatch)
    for key in ("tile", "reads", "fills", "updates", "drains", "macs", "steps", "gated", "skipped", "metadata",
                "mac_gated", "mac_skipped", "active"):
        a, b = getattr(cg, key), getattr(cc, key)
        if a is None:
            assert b is None, key
            continue
        np.testing.assert_array_equal(a, b, err_msg=key)
    for key in ("cycles", "energy", "total_energy", "level_cycles", "edp"):
        np.testing.assert_array_equal(getattr(kg, key), getattr(kc, key), err_msg=key)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**_ONE_BY_ONE)
def test_a_one_by_one_convolution_equals_its_gemm_many(design, shape, dens, seed):
    test_a_one_by_one_convolution_equals_its_gemm.hypothesis.inner_test(design, shape, dens, seed)


# --------------------------------------------------------------------------------------------------
# The vectorized analysis against the scalar reference and a set-based simulation
# --------------------------------------------------------------------------------------------------


def _simulate(arch: Architecture, mapping: Mapping, shape: ProblemShape, t: int, c: int) -> tuple[int, int, int]:
    """Walk the loop nest for child level ``c``'s instance 0 and tensor ``t``: (its tile's words, the
    words it loads, the Z words it touches for the first time). A step of the innermost relevant loop
    loads only the words not held already; a restart of it (an outer loop stepped) loads the whole
    tile, even where it meets the previous one (as Timeloop's delta does: the digest's example 2);
    inner loops keep the tile. Without a latch every MAC iteration reads its word."""
    dims = mapping.dims
    nl = len(arch.levels)
    loops = []  # (level, dim, factor, spatial), outermost first
    for i, lv in enumerate(mapping.levels):
        loops += [(i, d, lv.temporal[dims.index(d)], False) for d in lv.order]
        loops += [(i, d, lv.spatial[j], True) for j, d in enumerate(dims)]
    stride = []  # each loop's step along its dim: the product of the same dim's factors inside it
    for k, (_, d, _, _) in enumerate(loops):
        stride.append(int(np.prod([f for _, d2, f, _ in loops[k + 1:] if d2 == d])))
    above = [k for k, lp in enumerate(loops) if lp[0] < c and not lp[3]]
    inside = [k for k, lp in enumerate(loops) if lp[0] >= c]
    coef = dict(shape.coefficients)

    def element(coords: dict[str, int]) -> tuple[int, ...]:
        return tuple(sum(coords[d] * (1 if cn is None else coef[cn]) for d, cn in rank)
                     for rank in shape.projections[t])

    def tile_at(idx: dict[int, int]) -> set[tuple[int, ...]]:
        out = set()
        for inner in itertools.product(*[range(loops[k][2]) for k in inside]):
            coords = dict.fromkeys(dims, 0)
            for k, i in itertools.chain(idx.items(), zip(inside, inner, strict=True)):
                coords[loops[k][1]] += i * stride[k]
            out.add(element(coords))
        return out

    rel = {d for rank in shape.projections[t] for d, _ in rank}
    relevant = [k for k in above if loops[k][1] in rel and loops[k][2] > 1]
    last = relevant[-1] if relevant else None
    prev_idx, prev, loaded, touched = None, None, 0, set()
    for values in itertools.product(*[range(loops[k][2]) for k in above]):
        idx = dict(zip(above, values, strict=True))
        cur = tile_at(idx) if c < nl else {element({d: sum(i * stride[k] for k, i in idx.items()
                                                           if loops[k][1] == d) for d in dims})}
        touched |= cur
        latched = c < nl or TENSORS[t] in arch.compute.latch
        if prev is None or not latched:
            loaded += len(cur)
        else:
            moved = min(k for k in above if idx[k] != prev_idx[k])
            if last is None or moved > last:
                assert cur == prev  # only loops that do not index t moved
            elif moved == last:
                loaded += len(cur - prev)
            else:
                loaded += len(cur)
        prev_idx, prev = idx, cur
    size = 1 if c == nl else len(tile_at(dict.fromkeys(above, 0)))
    return size, loaded, len(touched)


CONV_CASES = st.fixed_dictionaries({
    "C": st.sampled_from([1, 2, 4]), "M": st.sampled_from([1, 2, 4]), "R": st.sampled_from([1, 2, 3]),
    "S": st.sampled_from([1, 3]), "P": st.sampled_from([1, 2, 4, 6]), "Q": st.sampled_from([1, 2, 3]),
    "N": st.sampled_from([1, 2]), "stride": st.sampled_from([1, 2, 3]), "dilation": st.sampled_from([1, 2])})


_WALK = dict(case=CONV_CASES, phase=st.sampled_from(["FF", "BP", "WU"]),
             latch=st.sampled_from([(), ("A", "B", "Z"), ("Z",), ("A", "B")]),
             keep_l1=st.sampled_from([TENSORS, ("A", "Z"), ("B",)]), seed=st.integers(0, 2**16))


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**_WALK)
def test_vectorized_equals_reference_and_a_simulation_many(case, phase, latch, keep_l1, seed):
    test_vectorized_equals_reference_and_a_simulation.hypothesis.inner_test(case, phase, latch, keep_l1, seed)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**_WALK)
def test_vectorized_equals_reference_and_a_simulation(case, phase, latch, keep_l1, seed):
    """On random convolutions (all three training passes: the sliding window on B or on Z), random
    latches, bypasses and mappings: analyze == analyze_reference on every count, and both equal a
    set-based walk of the loop nest for the tiles, the fills and the first touches of Z."""
    case = dict(case)
    stride, dilation = case.pop("stride"), case.pop("dilation")
    prob = Problem("c", shape=conv_shape((stride, stride), (dilation, dilation), phase), bounds=case)
    arch = _arch(latch, keep_l1=keep_l1)
    batch = sample_mappings(arch, prob, 3, np.random.default_rng(seed))
    fast = analyze(arch, batch, prob)
    nl = len(arch.levels)
    for b in range(len(batch)):
        mapping = batch.mapping(b)
        ref = analyze_reference(arch, mapping, prob)
        for key in ("tile", "reads", "fills", "updates", "drains", "active", "macs", "steps"):
            np.testing.assert_allclose(getattr(fast, key)[b], getattr(ref, key)[0], rtol=0, atol=1e-9,
                                       err_msg=f"{key} of {mapping}")
        for t, name in enumerate(TENSORS):
            chain = [i for i, lv in enumerate(arch.levels) if name in lv.keep] + [nl]
            for p, c in itertools.pairwise(chain):
                size, loaded, first = _simulate(arch, mapping, prob.shape, t, c)
                inst = fast.active[b, c]
                if c < nl:
                    assert fast.tile[b, c, t] == size
                    want = loaded - first if name == "Z" else loaded
                    assert fast.fills[b, c, t] == pytest.approx(want * inst), (name, c, mapping)
                if name == "Z":
                    mult = fast.updates[b, p, t] / loaded if loaded else 0
                    assert fast.reads[b, p, t] == pytest.approx((loaded - first) * mult), (c, mapping)


# --------------------------------------------------------------------------------------------------
# The mapper, workloads and training on convolutions
# --------------------------------------------------------------------------------------------------


def test_mapper_searches_convolutions_and_orders_only_their_non_unit_dims():
    arch = load_architecture("tc")
    prob = conv_problem("l", C=64, M=64, R=3, S=3, P=14, Q=14)
    orders = MapperConstraints().allowed_orders(arch, prob)
    assert all(len(o) == 720 for o in orders)  # 6 dims of bound > 1 (N = 1 stays outermost)
    assert all(o.startswith("N") for o in orders[0])
    r = map_layer(arch, prob, budget=600, seed=0)
    assert r.valid > 0 and r.best.problem.macs == prob.macs
    assert r.best.mapping.dims == CONV_DIMS
    # GEMM roles apply to convolutions: output-stationary keeps C, R, S innermost at every level.
    os_ = map_layer(arch, prob, budget=300, seed=0, constraints=MapperConstraints(dataflow="output-stationary"))
    for lv in os_.best.mapping.levels:
        assert set(lv.order[-3:]) == {"C", "R", "S"}

def test_a_small_convolution_space_is_enumerated(tmp_path):
    """3 non-unit dims on DRAM → buffer → 2 MACs: 3 slots per prime, 3! orders per level: 27 × 36."""
    tiny = conv_problem("t", C=2, M=1, R=2, S=1, P=2, Q=1)
    r = map_layer(two_level(tmp_path, macs=2), tiny, budget=5000)
    assert r.exhaustive and r.candidates == 27 * 36


def test_bad_convolutions_and_mappings_name_the_culprit(tmp_path):
    with pytest.raises(ValueError, match=r"Conv 'c': stride 0: expected an integer ≥ 1"):
        conv_problem("c", C=1, M=1, R=1, S=1, P=1, Q=1, stride=0)
    with pytest.raises(ValueError, match=r"convolution stride \(0, 1\) must be integers ≥ 1"):
        conv_shape((0, 1))
    with pytest.raises(ValueError, match=r"Conv 'c': dilation \(1, -1\): expected an integer ≥ 1"):
        conv_problem("c", C=1, M=1, R=1, S=1, P=1, Q=1, dilation=(1, -1))
    with pytest.raises(ValueError, match=r"unknown dim 'T'"):
        Problem("c", shape=conv_shape(), bounds={"R": 1, "S": 1, "P": 1, "Q": 1, "C": 1, "M": 1, "N": 1, "T": 2})
    with pytest.raises(ValueError, match=r"no bound for dim 'Q'"):
        Problem("c", shape=conv_shape(), bounds={"R": 1, "S": 1, "P": 1, "C": 1, "M": 1, "N": 1})
    prob = conv_problem("c", C=2, M=2, R=3, S=1, P=2, Q=1)
    arch = two_level(tmp_path)
    with pytest.raises(MappingError, match=r"order 'RSPQCM' misses the dim 'N'"):
        Mapping.from_levels([{}, {"order": "RSPQCM"}], CONV_DIMS)
    with pytest.raises(MappingError, match=r"unknown dim 'K'"):
        Mapping.from_levels([{}, {"temporal": {"K": 2}}], CONV_DIMS)
    with pytest.raises(MappingError, match=r"dim R: the factors multiply to 1 but c has R=3"):
        evaluate(arch, prob, Mapping.from_levels([{}, {"temporal": {"C": 2, "M": 2, "P": 2}}], CONV_DIMS))
    with pytest.raises(MappingError, match=r"the mapping's dims \(M, K, N\) are not the dims of c"):
        evaluate(arch, prob, Mapping.from_levels([{}, {}]))
    path = tmp_path / "map.yaml"
    path.write_text("version: 0.1\nmapping:\n  Buffer: {temporal: {R: 3, C: 2, M: 2, P: 2}, order: RSPQCMX}\n")
    with pytest.raises(SpecError, match=r"map\.yaml:3: .*names the unknown dim 'X'"):
        load_mapping(path, arch, prob)
    path.write_text("version: 0.1\nmapping:\n  Buffer: {temporal: {R: 3, C: 2, M: 2, P: 2}, order: NMCQPSR}\n")
    assert evaluate(arch, prob, load_mapping(path, arch, prob)).counts.macs[0] == prob.macs


def test_workload_yaml_with_convolutions(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text("version: 0.1\nworkload:\n  name: net\n  layers:\n"
                    "    - {name: c1, C: 3, M: 16, R: 3, S: 3, P: 8, Q: 8, stride: 2}\n"
                    "    - {name: c2, C: 16, M: 16, R: 3, S: 3, P: 8, Q: 8, dilation: [2, 1], N: 2, repeat: 3}\n"
                    "    - {name: fc, M: 10, K: 64, N: 1}\n")
    net = load_network(path)
    c1, c2, fc = net.layers
    assert c1.geometry()["stride"] == (2, 2) and c1.tensor_size("B") == 3 * 17 * 17
    assert c2.geometry()["dilation"] == (2, 1) and c2.bound("N") == 2 and c2.repeat == 3
    assert fc.is_gemm and net.macs == c1.macs + 3 * c2.macs + fc.macs
    for bad, pattern in (("{name: c, C: 3, M: 16, R: 3, S: 3, P: 8, Q: 8, stride: 0}",
                          r"net\.yaml:6: workload\.layers\[1\]\.stride 0: expected an integer ≥ 1"),
                         ("{name: c, C: 3, M: 16, K: 3, N: 4}", r"net\.yaml:6: .*K .* or C .*not both"),
                         ("{name: c, C: 3, M: 16, R: 3, S: 3, P: 8}", r"net\.yaml:6: .*missing the required key 'Q'")):
        path.write_text("version: 0.1\nworkload:\n  name: net\n  layers:\n    - {name: fc, M: 10, K: 64, N: 1}\n"
                        f"    - {bad}\n")
        with pytest.raises(SpecError, match=pattern):
            load_network(path)


def test_training_passes_of_a_convolution_are_convolutions():
    """FF, BP and WU of a native convolution: three convolutions over the same loop nest, with the
    im2col GEMMs' views (BP's A pattern along the output channels, its output the sliding one)."""
    prob = conv_problem("c", C=64, M=128, R=3, S=3, P=14, Q=14, stride=2, b_density="unstructured(0.5)")
    g = training_gemms(prob, "2:8")
    gemm = training_gemms(from_conv2d("c", 64, 128, 3, 14, im2col=True), "2:8")
    for phase in ("FF", "BP", "WU"):
        assert g[phase].macs == prob.macs
        assert (g[phase].M, g[phase].K, g[phase].N) == (gemm[phase].M, gemm[phase].K, gemm[phase].N)
    assert g["BP"].shape.name == "CNN-Layer-BP" and g["BP"].shape.density_dims[0] == ("M",)
    assert g["BP"].tensor_size("Z") == prob.tensor_size("B")  # dX is the input's shape
    assert str(g["FF"].a_density) == str(g["BP"].a_density) == "2:8" and str(g["WU"].b_density) == "unstructured(0.5)"
    assert g["WU"].tensor_size("Z") == 128 * 64 * 9
    arch = load_architecture("sat")
    assert all(map_layer(arch, p, budget=200).valid for p in g.values())


def test_zoo_and_traced_networks_are_native_unless_im2col():
    from tasder.workloads import load_network as load

    native, im2col = load("resnet50"), load("resnet50", im2col=True)
    assert native.macs == im2col.macs and len(native.layers) == len(im2col.layers)
    assert native.layers[0].geometry() == {"R": 7, "S": 7, "P": 112, "Q": 112, "C": 3, "M": 64, "N": 1,
                                           "stride": (2, 2), "dilation": (1, 1)}
    assert im2col.layers[0].is_gemm and native.layers[-1].is_gemm  # the classifier stays a GEMM


def test_trace_network_makes_convolutions():
    torch = pytest.importorskip("torch")
    from torch import nn

    from tasder.workloads import trace_network, workload_from_model

    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, dilation=1, padding=1), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, dilation=2, groups=2), nn.Flatten(), nn.LazyLinear(4))
    x = torch.randn(2, 3, 16, 16)
    model(x)
    net = trace_network(model, x)
    c1, c2, fc = net.layers
    assert c1.geometry() == {"R": 3, "S": 3, "P": 8, "Q": 8, "C": 3, "M": 8, "N": 2, "stride": (2, 2),
                             "dilation": (1, 1)}
    assert c2.geometry()["dilation"] == (2, 2) and c2.geometry()["C"] == 4 and c2.repeat == 2  # per group
    assert fc.is_gemm and fc.N == 2
    flat = trace_network(model, x, im2col=True)
    assert [p.macs * p.repeat for p in flat.layers] == [p.macs * p.repeat for p in net.layers]
    one = workload_from_model(model, x)  # per sample: N = 1
    assert one.layers[0].bound("N") == 1 and one.layers[0].macs * 2 == c1.macs


def test_shipped_designs_declare_the_latch_and_drain_reads():
    """Every shipped design is a tensor-core-like engine whose MACs latch A, B and accumulate Z, and
    charges drains as reads (what the published numbers assume); the file says so."""
    from tasder.hw.architecture import design_path, list_designs

    for name in list_designs():
        arch = load_architecture(name)
        assert arch.compute.latch == ("A", "B", "Z") and arch.drain_reads, name
        assert "operand_latch" in Path(design_path(name)).read_text()


def test_a_term_dim_of_a_alone_reuses_b_and_z_across_terms(tmp_path):
    """The hook for term-by-term TASD: a dim T that indexes A only (A[t,m,k], one slice per term).
    With the T loop outermost at DRAM and the whole GEMM in the buffer, A streams one term at a time
    (2 × M·K words) while B and the partial sums Z stay in the buffer across terms (B loaded once, Z
    drained once): the TASD paper's term reuse, from nothing but the loop's position."""
    def ranks(*dims: str) -> tuple:
        return tuple(((d, None),) for d in dims)

    shape = ProblemShape("GEMM-terms", ("T", "M", "K", "N"), (ranks("T", "M", "K"), ranks("K", "N"), ranks("M", "N")),
                         density_dims=(("K",), ("K",)))
    assert shape.roles == ("-", "M", "K", "N")
    prob = Problem("series", shape=shape, bounds={"T": 2, "M": 4, "K": 8, "N": 3})
    assert (prob.M, prob.K, prob.N) == (4, 8, 3) and prob.macs == 2 * 4 * 8 * 3
    arch = two_level(tmp_path)
    m = Mapping.from_levels([{"temporal": {"T": 2}}, {"temporal": {"M": 4, "K": 8, "N": 3}, "order": "TMNK"}],
                            shape.dims)
    c = evaluate(arch, prob, m).counts
    assert c.tile[0, 1].tolist() == [4 * 8, 8 * 3, 4 * 3]
    assert c.fills[0, 1].tolist() == [2 * 4 * 8, 8 * 3, 0]  # B and Z stay; A one term after the other
    assert c.updates[0, 0, Z] == 4 * 3 and c.drains[0, 1, Z] == 4 * 3
    # With T innermost in the buffer instead, each (m, n) output accumulates over k and t in the MAC.
    m2 = Mapping.from_levels([{}, {"temporal": {"T": 2, "M": 4, "K": 8, "N": 3}, "order": "MNKT"}], shape.dims)
    c2 = evaluate(arch, prob, m2).counts
    assert c2.updates[0, 1, Z] == 4 * 3 and c2.reads[0, 1, A] == 2 * 4 * 8 * 3
