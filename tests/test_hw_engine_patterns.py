"""A structured operand on a structured engine runs at the sparsest engine pattern it is guaranteed to satisfy.

Issue 6: a 2:4 tensor also obeys 4:8, 1:8 obeys 2:8 and 4:8, ``K1(2:4)->K0(2:4)`` obeys 4:8; an
engine that lists only one of those must still accelerate the operand, at the engine pattern's
density (explicit zeros fill its slots), instead of running it dense.
"""

from __future__ import annotations

import numpy as np
import pytest

from hw_helpers import ev, problem, tc_best_mapping
from tasder.hw import load_architecture, map_layer
from tasder.hw.sparse import engine_pattern, executed_models


@pytest.fixture(scope="module")
def tc_mapping():
    return tc_best_mapping()




def steps(mapping) -> float:
    return float(np.prod([lv.temporal for lv in mapping.levels]))


def executed(design: str, a: str | None = None, b: str | None = None) -> tuple[str, str]:
    models, _ = executed_models(load_architecture(design), problem(a, b))
    return models["A"].label, models["B"].label


@pytest.mark.parametrize(("design", "a", "runs_as", "density"), [
    ("ttc-stc-m8", "2:4", "4:8", 0.5),         # the example
    ("ttc-vegeta-m8", "1:8", "1:8", 0.125),    # exact match still wins
    ("ttc-vegeta-m8", "1:4", "2:8", 0.25),     # the sparsest of 1:8, 2:8, 4:8 that 1:4 obeys
    ("ttc-vegeta-m8", "1:16", "1:8", 0.125),
    ("ttc-vegeta-m8", "K1(2:4)->K0(2:4)", "4:8", 0.5),
    ("stc", "1:4", "2:4", 0.5),
    ("stc", "2:8", "2:4", 0.5),
    ("stc", "K1(2:4)->K0(2:4)", "2:4", 0.5),
    ("sat", "2:4", "4:8", 0.5),
    ("s2ta", "2:4", "4:8", 0.5),
    ("stc-flexible", "1:8", "2:8", 0.25),
])
def test_structured_operand_runs_at_the_sparsest_implied_engine_pattern(tc_mapping, design, a, runs_as, density):
    assert executed(design, a)[0] == runs_as
    e = ev(design, tc_mapping, a)
    assert e.costs.compute_cycles[0] == pytest.approx(density * steps(tc_mapping))
    assert e.counts.mac_skipped[0] == pytest.approx((1 - density) * ev("tc", tc_mapping).counts.macs[0])


def test_2to4_on_a_4to8_engine_is_2x_faster_than_tc():
    """Compute-bound, each on its own best mapping: previously ttc-stc-m8 ran a 2:4 A dense (1.0x)."""
    tc = map_layer(load_architecture("tc"), problem(), budget=3000, seed=0, objective="cycles").best
    m8 = map_layer(load_architecture("ttc-stc-m8"), problem("2:4"), budget=3000, seed=0, objective="cycles").best
    assert tc.cycles / m8.cycles == pytest.approx(2.0)


def test_a_sparser_operand_moves_the_engine_patterns_words(tc_mapping):
    """1:4 on STC is stored in STC's 2:4 format (explicit zeros fill the slots): same traffic as 2:4."""
    one, two = ev("stc", tc_mapping, "1:4"), ev("stc", tc_mapping, "2:4")
    assert one.counts.reads[0, 0, 0] == pytest.approx(two.counts.reads[0, 0, 0])
    assert one.cycles == pytest.approx(two.cycles) and one.energy_pj == pytest.approx(two.energy_pj)
    assert one.counts.reads[0, 0, 0] < ev("tc", tc_mapping).counts.reads[0, 0, 0]


@pytest.mark.parametrize(("design", "a"), [("stc", "4:8"), ("stc", "unstructured(0.25)"), ("ttc-stc-m8", "5:8"),
                                           ("ttc-vegeta-m8", "3:4"), ("highlight", "3:4")])
def test_patterns_no_engine_pattern_contains_run_dense(tc_mapping, design, a):
    assert ev(design, tc_mapping, a).costs.compute_cycles[0] == steps(tc_mapping)


def test_series_terms_map_one_by_one_and_b_z_stay_reused(tc_mapping):
    """TTC term-by-term execution is kept; each term runs at its own implied pattern."""
    assert executed("ttc-vegeta-m8", "2:4+1:4")[0] == "4:8+2:8"
    two = ev("ttc-vegeta-m8", tc_mapping, "2:4+1:4")
    native = ev("ttc-vegeta-m8", tc_mapping, "4:8+2:8")
    assert two.costs.compute_cycles[0] == pytest.approx(0.75 * steps(tc_mapping))
    assert two.cycles == pytest.approx(native.cycles) and two.energy_pj == pytest.approx(native.energy_pj)
    one = ev("ttc-vegeta-m8", tc_mapping, "4:8")
    assert two.counts.reads[0, 0, 1] == pytest.approx(one.counts.reads[0, 0, 1])  # B from DRAM once
    # a series with any term no engine pattern contains runs dense, once
    assert ev("ttc-stc-m4", tc_mapping, "2:4+4:8").costs.compute_cycles[0] == steps(tc_mapping)


def test_both_operands_on_a_dual_sided_engine(tc_mapping):
    assert executed("s2ta", "2:4", "1:4") == ("4:8", "2:8")
    e = ev("s2ta", tc_mapping, "2:4", "1:4")
    assert e.counts.macs[0] == pytest.approx(0.5 * 0.25 * ev("tc", tc_mapping).counts.macs[0])


def test_engine_pattern_choice():
    sat = load_architecture("sat").sparse.structured_support["A"]
    assert engine_pattern(sat, ((2, 4),)) == ((4, 8),)
    assert engine_pattern(sat, ((1, 8),)) == ((1, 8),)
    assert engine_pattern(sat, ((3, 8),)) == ((4, 8),)
    assert engine_pattern(sat, ((5, 8),)) is None
    hl = load_architecture("highlight").sparse.structured_support["A"]
    # exact HSS match is kept; a one-rank 1:4 runs at HighLight's sparsest pattern it obeys
    assert engine_pattern(hl, ((2, 4), (2, 4))) == ((2, 4), (2, 4))
    assert engine_pattern(hl, ((1, 4),)) is not None
