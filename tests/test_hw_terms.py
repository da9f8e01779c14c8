"""The term loop of a TASD series (docs/design.md §4.6; TASD paper Fig. 11, issue 17).

A series' term index is a loop dim T that indexes the series operand alone; the mapper places it
where the design's ``term_loop`` allows, and reuse of B and Z across terms, the partial sums re-read
by every term after the first, and capacity all come from the loop's position. The counts here are
derived by hand in the comments.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hw_helpers import problem, tc_best_mapping
from tasder.hw import Mapping, MappingError, Problem, SpecError, evaluate, load_architecture, map_layer
from tasder.hw.sparse import term_problem

A, B, Z = 0, 1, 2
DRAM, L2, L1 = 0, 1, 2

TTC_YAML = """\
version: 0.1
architecture:
  name: {name}
  clock_hz: 1.0e+9
  drain_reads: true
  storage:
    - name: DRAM
      class: DRAM
      attributes: {{read_bandwidth: 1.0e+9, write_bandwidth: 1.0e+9, read_energy: 100, write_energy: 200,
                   update_energy: 300}}
    - name: L2
      class: SRAM
      attributes: {{capacity: 4096, read_bandwidth: 1.0e+9, write_bandwidth: 1.0e+9, read_energy: 10,
                   write_energy: 20, update_energy: 30}}
    - name: L1
      class: SRAM
      attributes: {{capacity: 1024, read_bandwidth: 1.0e+9, write_bandwidth: 1.0e+9, read_energy: 1,
                   write_energy: 2, update_energy: 3}}
  compute:
    name: MAC
    instances: 1
    attributes: {{energy_per_mac: 0.5, operand_latch: [A, B, Z]}}
sparse_optimizations:
  structured_support: {{A: ["1:4", "2:4"]}}
{term_loop}
  targets:
    - name: MAC
      action_optimization:
        - {{type: skipping, target: Z, condition_on: [A]}}
"""


def ttc(tmp_path: Path, term_loop: str = "  term_loop: {level: L2, innermost: true, max_terms: 2}",
        name: str = "tiny-ttc") -> object:
    """DRAM → L2 → L1 → one MAC latching A, B, Z; an engine of 1:4 and 2:4 on A that skips the MACs
    of A's zeros; no formats (so only the compute is filtered and every word count is dense)."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(TTC_YAML.format(name=name, term_loop=term_loop))
    return load_architecture(path)


#: Z[m,n] += Σ_k A[m,k]·B[k,n] with M=2, K=4, N=3 and A = 2:4 + 1:4 (a 3:4 view, TASD paper Table 2).
SERIES = Problem("tiny", M=2, K=4, N=3, a_density="2:4+1:4")


def test_the_term_loop_innermost_in_l2_reuses_b_and_z_and_rereads_z_once(tmp_path):
    """Loop nest (outermost first): n∈3 at DRAM; t∈2 at L2; m∈2, k∈4 at L1; one MAC.

    Tiles: L1 holds A 1·2·4 = 8 (one term), B 4·1 = 4, Z 2·1 = 2; L2 holds A 2·2·4 = 16 (both
    terms), B 4, Z 2. Into L2 (loop above: n3): A once (16), B 3 tiles of 4 = 12, Z 3 tiles of 2 =
    6 updates of DRAM, all first touches.
    Into L1 (loops above: n3, t2): A's innermost relevant loop is t: 3·2 = 6 tiles of 8 → 48 words;
    B's is n: 3 tiles of 4 → 12 (B stays in L1 across the terms); Z's is n: 3 tiles of 2 → 6 words,
    all first touches (no partial sum read back from L2), so L2 Z updates = L1 Z drains = 6 (once,
    not once per term).
    Into the MAC (loops above: n3, t2, m2, k4): A and B change with every k: 48 reads each of L1; Z
    changes with m: 3·2·2 = 12 partial sums sent up (L1 Z updates 12), of which 3·2 = 6 are first
    touches, so L1 Z reads = 6: the second term re-reads C (TASD paper Fig. 11's remaining overhead).
    Compute: 48 dense iterations (2 terms × 24 MACs); term 1 (2:4) keeps 1/2, term 2 (1:4) 1/4:
    24·(1/2 + 1/4) = 18 MACs and cycles.
    """
    arch = ttc(tmp_path)
    p = term_problem(arch, SERIES)
    assert p.dims == ("T", "M", "K", "N") and p.terms == 2 and p.macs == 24
    m = Mapping.from_levels([{"temporal": {"N": 3}}, {"temporal": {"T": 2}},
                             {"temporal": {"M": 2, "K": 4}, "order": "TNMK"}], p.dims)
    c = evaluate(arch, SERIES, m).counts
    assert c.tile[0, L1].tolist() == [8, 4, 2] and c.tile[0, L2].tolist() == [16, 4, 2]
    assert c.fills[0, L1].tolist() == [48, 12, 0] and c.reads[0, L2].tolist() == [48, 12, 0]
    assert c.updates[0, L2, Z] == 6 and c.drains[0, L1, Z] == 6
    assert c.reads[0, L1].tolist() == [48, 48, 6] and c.updates[0, L1, Z] == 12
    assert c.fills[0, L2].tolist() == [16, 12, 0] and c.updates[0, DRAM, Z] == 6 and c.reads[0, DRAM, Z] == 0
    assert c.dense_macs[0] == 48 and c.macs[0] == pytest.approx(18) and c.steps[0] == pytest.approx(18)
    assert c.mac_skipped[0] == pytest.approx(30)


def test_the_term_loop_outermost_reloads_b_and_z_per_term(tmp_path):
    """The same loops with t outermost at DRAM (t2, n3 at DRAM; m2, k4 at L1): nothing outlives a
    term above L1. Into L2 (loops above: t2, n3): B's innermost relevant loop is n: 2·3 = 6 tiles of
    4 → 24 words from DRAM (12 with the term loop in L2); Z's is n too: 6 tiles of 2 = 12 updates
    of DRAM, of which 3·2 = 6 first touches, so DRAM Z reads = 6 (the second term's partial sums
    come back from DRAM). Same MACs: the loop's position moves traffic, not work."""
    arch = ttc(tmp_path)
    p = term_problem(arch, SERIES)
    m = Mapping.from_levels([{"temporal": {"T": 2, "N": 3}, "order": "TNMK"}, {},
                             {"temporal": {"M": 2, "K": 4}, "order": "TNMK"}], p.dims)
    c = evaluate(arch, SERIES, m).counts
    assert c.fills[0, L2].tolist() == [16, 24, 6] and c.updates[0, DRAM, Z] == 12 and c.reads[0, DRAM, Z] == 6
    assert c.macs[0] == pytest.approx(18)


def test_a_mapping_without_the_term_dim_gets_the_designs_placement(tmp_path):
    """evaluate() with a mapping of M, K, N only puts T innermost in L2 (the design's term_loop):
    the same counts as writing it there."""
    arch = ttc(tmp_path)
    p = term_problem(arch, SERIES)
    three = Mapping.from_levels([{"temporal": {"N": 3}}, {}, {"temporal": {"M": 2, "K": 4}, "order": "NMK"}])
    four = Mapping.from_levels([{"temporal": {"N": 3}, "order": "TMKN"}, {"temporal": {"T": 2}, "order": "MKNT"},
                                {"temporal": {"M": 2, "K": 4}, "order": "TNMK"}], p.dims)
    a, b = evaluate(arch, SERIES, three), evaluate(arch, SERIES, four)
    assert a.mapping == b.mapping and a.energy_pj == b.energy_pj and a.cycles == b.cycles


def test_one_term_has_no_term_dim_and_changes_nothing(tmp_path):
    """T = 1 is no loop: a single-pattern operand keeps its dims and its numbers (bit-identical to a
    design without a term loop)."""
    arch = ttc(tmp_path)
    plain = ttc(tmp_path, term_loop="", name="tiny-no-terms")
    p = Problem("tiny", M=2, K=4, N=3, a_density="2:4")
    assert term_problem(arch, p) is p
    m = Mapping.from_levels([{"temporal": {"N": 3}}, {}, {"temporal": {"M": 2, "K": 4}, "order": "NMK"}])
    x, y = evaluate(arch, p, m), evaluate(plain, p, m)
    assert (x.energy_pj, x.cycles) == (y.energy_pj, y.cycles)
    assert np.array_equal(x.counts.reads, y.counts.reads) and np.array_equal(x.counts.fills, y.counts.fills)


def test_the_mapper_places_the_term_loop_where_the_design_says():
    """ttc-vegeta-m8 (term_loop: L2, innermost): every mapping the mapper returns for a two-term
    series has T = 2 among L2's temporal loops, innermost there, and factor 1 elsewhere."""
    arch = load_architecture("ttc-vegeta-m8")
    r = map_layer(arch, problem("4:8+1:8"), budget=600, seed=0)
    for m, _ in r.top:
        assert m.dims[0] == "T"
        assert [lv.temporal[0] for lv in m.levels] == [1, 2, 1, 1] and all(lv.spatial[0] == 1 for lv in m.levels)
        assert m.levels[L2].order[-1] == "T"
    assert r.best.problem.terms == 2 and r.best.problem.label == "256-1024-256 (2 terms)"


def test_drains_of_the_reuse_level_are_counted_once():
    """hw_notes: 'Term reuse double-counts drains' (4:8 → 4:8+1:8 on ttc-vegeta-m8 doubled L1's Z
    drains, charged as reads, while L2's Z updates stayed). With the term loop innermost in L2 the
    partial sums stay in L1 across terms: the Z words L1 sends up, the updates L2 receives (the
    drains after the spatial reduction over the L1 instances) and the L1 Z reads all stay as for
    one term; only the levels below the term loop see Z per term."""
    m = tc_best_mapping()
    arch = load_architecture("ttc-vegeta-m8")
    one = evaluate(arch, problem("4:8"), m).counts
    two = evaluate(arch, problem("4:8+1:8"), m).counts
    dense = evaluate(load_architecture("tc"), problem(), m).counts
    assert two.drains[0, L1, Z] == one.drains[0, L1, Z] == dense.drains[0, L1, Z]
    assert two.updates[0, L2, Z] == one.updates[0, L2, Z] == dense.updates[0, L2, Z]
    # L1 Z (dense words): fills from L2 once; every partial sum the first term wrote is read back
    # down by the second (TASD paper Fig. 11: re-reading C), and updated again.
    (r1, f1, u1), (r2, f2, u2) = one.algorithmic[0, L1, Z], two.algorithmic[0, L1, Z]
    assert (f2, r2, u2) == (f1, r1 + u1, 2 * u1)
    assert two.drains[0, 3, Z] == 2 * one.drains[0, 3, Z]  # the RF, below the term loop: per term


def test_tasd_units_decompose_each_element_of_b_once():
    """hw_notes: 'TASD unit energy counts refills'. The TASD units decompose each activation once as
    it streams into shared memory (TASD paper §4.4): extra energy = B's elements × 1.2 pJ, whatever
    the mapping refills. One structured B term is a TASD-A view too (the units extract it)."""
    arch = load_architecture("ttc-vegeta-m8")
    m = tc_best_mapping()
    for b in ("4:8+1:8", "2:8"):
        e = evaluate(arch, problem(None, b), m)
        assert e.counts.extra_energy[0] == pytest.approx(1024 * 256 * 1.2)
    assert evaluate(arch, problem("4:8+1:8"), m).counts.extra_energy[0] == 0.0  # TASD-W: decomposed offline


# --- bad input: one clear error naming the design and the constraint --------------------------------

def test_a_series_longer_than_the_designs_order_is_refused(capsys):
    with pytest.raises(MappingError, match=r"ttc-vegeta-m8 runs series of at most 2 term\(s\) "
                                           r"\(sparse_optimizations\.term_loop\.max_terms = 2\)"):
        map_layer(load_architecture("ttc-vegeta-m8"), problem("4:8+2:8+1:8"), budget=50)
    with pytest.raises(MappingError, match=r"ttc-stc-m4 runs series of at most 1 term"):
        evaluate(load_architecture("ttc-stc-m4"), problem("2:4+1:4"), tc_best_mapping())
    from tasder.cli.app import run

    assert run(["hw", "compare", "--designs", "tc,ttc-vegeta-m8", "--workload", "gemm:64x64x64:A=4:8+2:8+1:8",
                "--mapper-budget", "50"]) == 2
    assert "max_terms = 2" in capsys.readouterr().err


def test_both_operands_as_series_are_refused():
    with pytest.raises(MappingError, match=r"both TASD series, but ttc-vegeta-m8's term loop runs the terms of "
                                           r"one operand"):
        map_layer(load_architecture("ttc-vegeta-m8"), problem("4:8+1:8", "4:8+1:8"), budget=50)


def test_a_term_loop_needs_series_support_and_a_level_for_the_partial_sums(tmp_path):
    no_engine = TTC_YAML.replace('  structured_support: {{A: ["1:4", "2:4"]}}\n', "")
    path = tmp_path / "no-engine.yaml"
    path.write_text(no_engine.format(name="no-engine", term_loop="  term_loop: {level: L2}"))
    with pytest.raises(SpecError, match=r"no-engine\.yaml:\d+: a term loop needs an engine that runs series term "
                                        r"by term.*no structured_support"):
        load_architecture(path)
    with pytest.raises(SpecError, match=r"design 'low': the term loop at level L1 needs a storage level below it "
                                        r"that keeps Z"):
        ttc(tmp_path, term_loop="  term_loop: {level: L1}", name="low")
    with pytest.raises(SpecError, match=r"term_loop\.max_terms"):
        ttc(tmp_path, term_loop="  term_loop: {level: L2, max_terms: 0}", name="zero")


def test_the_older_term_reuse_key_reads_as_a_term_loop(tmp_path):
    """``term_reuse: {Z: L1, ...}`` (before issue 17) kept Z in L1 across terms: a term loop innermost
    in L1's parent, L2; giving both keys is refused."""
    from tasder.hw.sparse import TermLoop

    arch = ttc(tmp_path, term_loop="  term_reuse: {A: L2, B: L2, Z: L1}", name="old-key")
    assert arch.sparse.term_loop == TermLoop("L2", True, None)
    with pytest.raises(SpecError, match=r"gives both term_loop and term_reuse"):
        ttc(tmp_path, term_loop="  term_loop: {level: L2}\n  term_reuse: {Z: L1}", name="both")


# -- slots a series' data does not fill: gated, not skipped ----------------------------------------

def test_series_fills_are_the_expected_share_of_each_terms_slots_holding_a_value() -> None:
    """4:8+1:8 on uniform data at d: a block holds X ~ Bin(8, d) nonzeros; the first term keeps
    min(X, 4), the second min(max(X − 4, 0), 1). By hand at d = 0.5 (pmf = C(8, x)/256):
    E[min(X, 4)] = (8·1 + 28·2 + 56·3 + 163·4)/256 = 884/256 → fill 0.86328125; E[X ≥ 5] =
    (56 + 28 + 8 + 1)/256 = 93/256 → fill 0.36328125. Full data fills every slot."""
    from tasder.hw.density import density_model, series_fills

    assert series_fills([(4, 8), (1, 8)], 0.5) == pytest.approx((884 / 256 / 4, 93 / 256))
    assert series_fills([(4, 8), (1, 8)], 1.0) == pytest.approx((1.0, 1.0))
    m = density_model("4:8+1:8@0.5")
    assert str(m) == "4:8+1:8@0.5" and m.density == 0.625
    assert m.value_density == pytest.approx((884 + 93) / 256 / 8)  # E[min(X, 5)] / 8 = 0.4771
    assert [p.fill for p in m.terms] == pytest.approx([884 / 1024, 93 / 256])  # type: ignore[attr-defined]
    assert density_model("2:8").value_density == density_model("2:8").density  # no '@': every slot a value


def test_series_fills_match_what_decompose_stores_on_random_data() -> None:
    """The uniform-data expectation against TASD's own decomposition of a random tensor at d = 0.3."""
    import torch

    from tasder.hw.density import series_fills
    from tasder.tasd import decompose

    g = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 64, generator=g) * (torch.rand(4096, 64, generator=g) < 0.3)
    terms = decompose(x, "4:8+1:8").terms
    held = [float((t != 0).sum()) / (x.numel() * gg / 8) for t, gg in zip(terms, (4, 1), strict=True)]
    assert held == pytest.approx(series_fills([(4, 8), (1, 8)], 0.3), abs=0.01)


@pytest.mark.parametrize("text, fragment", [
    ("4:8+1:8@1.5", "must be in (0, 1]"), ("4:8@x", "a number in (0, 1]"),
    ("2:4+1:8@0.5", "one block size H"), ("unstructured(0.5)@0.3", "a G:H pattern or a series"),
    ("K1(2:4)->K0(2:4)@0.5", "a G:H pattern or a series"),
])
def test_a_bad_data_density_after_the_at_sign_is_one_clear_error(text: str, fragment: str) -> None:
    from tasder.hw.density import density_model

    with pytest.raises(ValueError, match="density model") as info:
        density_model(text)
    assert fragment in str(info.value) and repr(text) in str(info.value)


def test_zero_gating_idles_the_macs_of_a_series_padding_and_skipping_does_not(tmp_path):
    """The same mapping, B = 2:4+1:4 with full slots vs @0.5. The tiny TTC skips Z on A's positions
    (A is the series here); adding gating on A's values idles the padding's MACs too: executed MACs
    = 24 · value density (E[min(X, 3)]/4 at X ~ Bin(4, 0.5) = (4·1 + 6·2 + 5·3)/16/4 = 31/64), the
    rest of the 18 slot MACs gated; cycles stay 18. Without a gating feature @0.5 changes nothing."""
    arch = ttc(tmp_path)
    skip = "        - {type: skipping, target: Z, condition_on: [A]}\n"
    yaml = TTC_YAML.format(name="tiny-ttc-gating", term_loop="  term_loop: {level: L2, innermost: true, max_terms: 2}")
    assert skip in yaml
    yaml = yaml.replace(skip, skip + skip.replace("skipping", "gating"))
    (tmp_path / "gating.yaml").write_text(yaml)
    gating = load_architecture(tmp_path / "gating.yaml")
    filled = Problem("tiny", M=2, K=4, N=3, a_density="2:4+1:4@0.5")
    p = term_problem(arch, SERIES)
    m = Mapping.from_levels([{"temporal": {"N": 3}}, {"temporal": {"T": 2}},
                             {"temporal": {"M": 2, "K": 4}, "order": "TNMK"}], p.dims)
    plain = evaluate(arch, filled, m).counts
    assert plain.macs[0] == pytest.approx(18) and plain.mac_gated[0] == pytest.approx(0)
    full = evaluate(gating, SERIES, m).counts
    assert full.macs[0] == pytest.approx(18) and full.mac_gated[0] == pytest.approx(0)
    c = evaluate(gating, filled, m).counts
    assert c.macs[0] == pytest.approx(24 * 31 / 64) and c.mac_gated[0] == pytest.approx(18 - 24 * 31 / 64)
    assert c.steps[0] == pytest.approx(18) and c.mac_skipped[0] == pytest.approx(30)


def test_with_series_gives_the_operand_its_measured_density() -> None:
    """The search's workloads: a TASD-A series on inputs measured at 0.477 carries @0.477; dense
    inputs and mixed block sizes carry nothing."""
    from tasder.nn import LayerSpec
    from tasder.workloads import with_series

    p = Problem("x", M=8, K=64, N=4, a_density="unstructured(0.3)", b_density="unstructured(0.477)")
    assert str(with_series(p, LayerSpec("4:8+1:8", "A")).b_density) == "4:8+1:8@0.477"
    assert str(with_series(p, LayerSpec("1:8", "W")).a_density) == "1:8@0.3"
    assert str(with_series(Problem("x", M=8, K=64, N=4), LayerSpec("4:8+1:8", "A")).b_density) == "4:8+1:8"
    assert str(with_series(p, LayerSpec("2:4+1:8", "A")).b_density) == "2:4+1:8"  # two block sizes: no fill
    assert str(with_series(p, LayerSpec("K1(2:4)->K0(2:4)", "W")).a_density) == "K1(2:4)->K0(2:4)"  # HSS: none
