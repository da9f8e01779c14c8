"""Timeloop import and export (issue 16, item 3): the digest's examples read from Timeloop YAML give
Timeloop v3.0.3's own numbers, export → import gives the same evaluation on every shipped design,
what cannot be represented is refused with the file, the line and the key."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasder.cli.app import run
from tasder.hw import Problem, SpecError, evaluate, list_designs, load_architecture, map_layer
from tasder.hw.mapper import sample_mappings, validity
from tasder.hw.timeloop import load_timeloop
from tasder.hw.timeloop_export import ExportRefusedError, timeloop_yaml, to_timeloop
from tasder.hw.workload import TENSORS, conv_problem

DATA = Path(__file__).parent / "data" / "timeloop"
ARCH = [DATA / "arch.yaml", DATA / "ert.yaml"]


def _table(ev) -> dict[str, dict[str, tuple[float, float, float]]]:
    c = ev.counts
    return {lv.name: {t: (float(c.reads[0, i, ti]), float(c.fills[0, i, ti]), float(c.updates[0, i, ti]))
                      for ti, t in enumerate(TENSORS)} for i, lv in enumerate(ev.arch.levels)}


def _same(a, b) -> None:
    """Two evaluations agree exactly: cycles, energy, every count and every energy entry."""
    assert a.cycles == b.cycles and a.energy_pj == b.energy_pj
    for key in ("reads", "fills", "updates", "tile", "drains", "gated", "skipped", "metadata"):
        x, y = getattr(a.counts, key), getattr(b.counts, key)
        assert (x is None) == (y is None), key
        if x is not None:
            np.testing.assert_array_equal(x, y, err_msg=key)
    np.testing.assert_array_equal(a.costs.energy, b.costs.energy)
    np.testing.assert_array_equal(a.costs.level_cycles, b.costs.level_cycles)
    assert a.counters() == b.counters()


def _roundtrip(tmp_path: Path, arch, problem, mapping, name: str = "x.yaml", extensions: bool = True):
    text, _ = timeloop_yaml(arch, problem, mapping, extensions=extensions)
    path = tmp_path / name
    path.write_text(text)
    return load_timeloop(path)


# --------------------------------------------------------------------------------------------------
# Timeloop's examples, read from Timeloop YAML
# --------------------------------------------------------------------------------------------------


def test_example_1_gemm_reads_as_timeloop_computes_it():
    """Digest §9 ex. 1 (permutations innermost first, keep/bypass from the mapping): Timeloop v3.0.3
    prints cycles 376 and 21,024 pJ, and these per-level totals."""
    spec = load_timeloop(*ARCH, DATA / "gemm.yaml", DATA / "gemm_map.yaml")
    assert [lv.name for lv in spec.architecture.levels] == ["DRAM", "GLB", "RF"]
    assert spec.architecture.levels[1].capacity == 4096 and spec.architecture.levels[2].instances == 4
    assert spec.architecture.compute.latch == () and not spec.architecture.drain_reads
    assert spec.problem.is_gemm and (spec.problem.M, spec.problem.K, spec.problem.N) == (8, 16, 8)
    assert [lv.order for lv in spec.mapping.levels] == ["MNK", "MNK", "MNK"]
    ev = evaluate(spec.architecture, spec.problem, spec.mapping)
    assert ev.cycles == 376 and ev.energy_pj == 21_024
    assert _table(ev) == {
        "RF": {"A": (1024, 128, 0), "B": (1024, 1024, 0), "Z": (960, 0, 1024)},
        "GLB": {"A": (128, 128, 0), "B": (256, 128, 0), "Z": (0, 0, 64)},
        "DRAM": {"A": (128, 0, 0), "B": (128, 0, 0), "Z": (0, 0, 64)},
    }


def test_example_2_conv_reads_as_a_native_convolution():
    """Digest §9 ex. 2: Timeloop's cnn-layer becomes conv_problem with its K as our M; cycles 6,848,
    128,912 pJ, RF Inputs fills 3,840 (the halo deltas)."""
    spec = load_timeloop(*ARCH, DATA / "conv.yaml")
    assert spec.problem == conv_problem("conv", C=4, M=8, R=3, S=3, P=8, Q=8)
    ev = evaluate(spec.architecture, spec.problem, spec.mapping)
    assert ev.cycles == 6_848 and ev.energy_pj == 128_912
    assert ev.counts.tile[0, 2].tolist() == [9, 36, 16]
    assert _table(ev)["RF"] == {"A": (18_432, 288, 0), "B": (18_432, 3_840, 0), "Z": (17_920, 1_536, 18_432)}


def test_example_3_sparse_counts_match_timeloop():
    """Digest §9 ex. 3 with [UOP, CP] at every level: the counts Timeloop and tasder model alike are
    equal (RF B: 256 actual / 768 skipped reads; RF Z: 240 / 720 reads, 256 / 768 updates; A 32 words
    leave DRAM and the GLB; 256 effectual MACs); cycles within 1 % of Timeloop's 106 (Timeloop's RF A
    260 vs 256 is its non-empty-tile occupancy, digest §8.5)."""
    spec = load_timeloop(*ARCH, DATA / "sparse_gemm.yaml")
    sp = spec.architecture.sparse
    assert str(sp.formats[("RF", "A")]) == "[UOP, CP]" and sp.gated_energy_ratio == pytest.approx(0.1)
    assert {(s.level, s.kind, s.target, s.condition_on) for s in sp.safs} == {
        ("RF", "skipping", "B", ("A",)), ("RF", "skipping", "Z", ("A",)), ("MAC", "skipping", "Z", ("A", "B"))}
    doc = evaluate(spec.architecture, spec.problem, spec.mapping).counters()
    rf = doc["levels"]["RF"]["tensors"]
    close = pytest.approx  # the sparse step computes in floating point
    assert (rf["B"]["reads"]["actual"], rf["B"]["reads"]["skipped"]) == close((256, 768))
    assert (rf["Z"]["reads"]["actual"], rf["Z"]["reads"]["skipped"]) == close((240, 720))
    assert (rf["Z"]["updates"]["actual"], rf["Z"]["updates"]["skipped"]) == close((256, 768))
    assert doc["levels"]["GLB"]["tensors"]["A"]["reads"]["actual"] == close(32)
    assert doc["levels"]["DRAM"]["tensors"]["A"]["reads"]["actual"] == close(32)
    assert doc["compute"]["actual"] == close(256)
    assert doc["cycles"] == pytest.approx(106, rel=0.01)


def test_v04_node_list_reads_as_the_tree(tmp_path):
    """The v0.4 node list (containers with spatial meshes, components outermost first) reads as the
    same architecture as the v0.3 tree."""
    v4 = """\
architecture:
  version: 0.4
  nodes:
  - {name: system, attributes: {technology: 45nm}}
  - {name: DRAM, class: DRAM, attributes: {datawidth: 16, block_size: 4, width: 64, read_bandwidth: 8,
                                           write_bandwidth: 8}}
  - {name: GLB, class: storage, subclass: smartbuffer_SRAM, attributes: {depth: 1024, width: 64, datawidth: 16,
                                                                         read_bandwidth: 8, write_bandwidth: 8}}
  - {name: PE, spatial: {meshX: 4}}
  - {name: RF, class: regfile, attributes: {depth: 64, width: 16, datawidth: 16, read_bandwidth: 2,
                                            write_bandwidth: 2}}
  - {name: MAC, class: compute, subclass: intmac, attributes: {datawidth: 16}}
"""
    base = load_timeloop(*ARCH, DATA / "gemm.yaml", DATA / "gemm_map.yaml")
    path = tmp_path / "arch_v4.yaml"
    path.write_text(v4)
    spec = load_timeloop(path, DATA / "ert.yaml", DATA / "gemm.yaml", DATA / "gemm_map.yaml")
    assert [(lv.name, lv.instances, lv.capacity) for lv in spec.architecture.levels] == \
        [(lv.name, lv.instances, lv.capacity) for lv in base.architecture.levels]
    _same(evaluate(spec.architecture, spec.problem, spec.mapping),
          evaluate(base.architecture, base.problem, base.mapping))


def test_timeloopfe_spatial_dummy_levels_collapse(tmp_path):
    """timeloopfe's v0.4 → v0.3 output inserts ``inter_PE_spatial`` (class dummy_storage, bypassing
    everything, temporal factors 1) that carries the spatial loops: it collapses into the level above."""
    arch = (DATA / "arch.yaml").read_text().replace(
        "    subtree:\n    - name: PE[0..3]",
        "    - {name: inter_PE_spatial, class: dummy_storage, attributes: {depth: 1, width: 16, word-bits: 16}}\n"
        "    subtree:\n    - name: PE[0..3]")
    (tmp_path / "arch.yaml").write_text(arch)
    (tmp_path / "map.yaml").write_text("""\
mapping:
- {target: DRAM, type: temporal, factors: M=1 K=1 N=1, permutation: KNM}
- {target: GLB,  type: temporal, factors: M=2 K=1 N=4, permutation: KNM}
- {target: inter_PE_spatial, type: temporal, factors: M=1 K=1 N=1, permutation: KNM}
- {target: inter_PE_spatial, type: spatial, factors: M=4 K=1 N=1, permutation: MKN}
- {target: inter_PE_spatial, type: datatype, keep: [], bypass: [A, B, Z]}
- {target: RF,   type: temporal, factors: M=1 K=16 N=2, permutation: KNM}
""")
    spec = load_timeloop(tmp_path / "arch.yaml", DATA / "ert.yaml", DATA / "gemm.yaml", tmp_path / "map.yaml")
    assert [lv.name for lv in spec.architecture.levels] == ["DRAM", "GLB", "RF"]
    assert any("inter_PE_spatial" in n and "collapsed" in n for n in spec.notes)
    ev = evaluate(spec.architecture, spec.problem, spec.mapping)
    assert ev.cycles == 376 and ev.energy_pj == 21_024


def test_per_mac_register_level_reads_as_the_operand_latch(tmp_path):
    """A per-MAC regfile of one word per kept tensor, free in the ERT and without loops, is how a
    Timeloop spec declares an operand latch: it imports as compute.attributes.operand_latch."""
    arch = (DATA / "arch.yaml").read_text().replace(
        "      - {name: MAC, class: intmac",
        "      - {name: latch, class: regfile, attributes: {depth: 3, width: 16, word-bits: 16}}\n"
        "      - {name: MAC, class: intmac")
    (tmp_path / "arch.yaml").write_text(arch)
    (tmp_path / "ert.yaml").write_text((DATA / "ert.yaml").read_text() + "  - {name: 'system.PE[0..3].latch', actions: "
                                       "[{name: read, energy: 0}, {name: write, energy: 0}]}\n")
    spec = load_timeloop(tmp_path / "arch.yaml", tmp_path / "ert.yaml", DATA / "gemm.yaml", DATA / "gemm_map.yaml")
    assert spec.architecture.compute.latch == ("A", "B", "Z")
    assert [lv.name for lv in spec.architecture.levels] == ["DRAM", "GLB", "RF"]
    ev = evaluate(spec.architecture, spec.problem, spec.mapping)
    # The RF's K loop of 16 runs inside the latch: one RF update per output word (16·4·... / 16).
    assert _table(ev)["RF"]["Z"][2] == 64


# --------------------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_mappings():
    """One GEMM and one convolution mapping valid on every shipped design (same hierarchy)."""
    tc = load_architecture("tc")
    gemm = Problem("g", M=64, K=128, N=32, a_density="2:4", b_density="unstructured(0.5)")
    conv = conv_problem("c", C=16, M=32, R=3, S=3, P=8, Q=8, stride=2)
    return [(p, map_layer(tc, p, budget=150, seed=0).best.mapping) for p in (gemm, conv)]


@pytest.mark.parametrize("design", list_designs())
def test_export_import_gives_the_same_evaluation_on_every_shipped_design(design, shared_mappings, tmp_path):
    arch = load_architecture(design)
    assert _roundtrip(tmp_path, arch, None, None, "design.yaml").architecture == arch  # the design alone, exactly
    for problem, mapping in shared_mappings:
        spec = _roundtrip(tmp_path, arch, problem, mapping)
        assert spec.problem == problem
        assert spec.mapping == mapping
        assert spec.architecture.compute.latch == arch.compute.latch
        assert spec.architecture.drain_reads == arch.drain_reads and spec.architecture.name == arch.name
        _same(evaluate(spec.architecture, spec.problem, spec.mapping), evaluate(arch, problem, mapping))


@pytest.mark.parametrize("phase", ["BP", "WU"])
def test_training_convolutions_round_trip_as_their_own_shapes(phase, tmp_path):
    """A convolution's backward passes (other tensors in the A/B/Z roles) export as inline shapes and
    read back as the same ProblemShape (projections, coefficients, density dims, names)."""
    arch = load_architecture("sat")
    problem = conv_problem("c", C=16, M=32, R=3, S=3, P=8, Q=8, stride=2, phase=phase,
                           a_density="2:4" if phase == "BP" else None)
    mapping = map_layer(arch, problem, budget=60, seed=0).best.mapping
    spec = _roundtrip(tmp_path, arch, problem, mapping)
    assert spec.problem == problem and spec.mapping == mapping
    _same(evaluate(spec.architecture, spec.problem, spec.mapping), evaluate(arch, problem, mapping))


@pytest.mark.parametrize("files", [["gemm.yaml", "gemm_map.yaml"], ["conv.yaml"], ["sparse_gemm.yaml"]])
def test_timeloop_examples_round_trip_without_extensions(files, tmp_path):
    """A design read from Timeloop exports back without a tasder section and reads as itself."""
    spec = load_timeloop(*ARCH, *(DATA / f for f in files))
    doc, notes = to_timeloop(spec.architecture, spec.problem, spec.mapping)
    assert notes == [] and "tasder" not in doc
    again = _roundtrip(tmp_path, spec.architecture, spec.problem, spec.mapping, extensions=False)
    _same(evaluate(again.architecture, again.problem, again.mapping),
          evaluate(spec.architecture, spec.problem, spec.mapping))


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(design=st.sampled_from(["tc", "stc", "dstc", "highlight", "ttc-vegeta-m8"]),
       conv=st.booleans(), dims=st.tuples(*(st.sampled_from([1, 2, 3, 4, 8]) for _ in range(4))),
       stride=st.integers(1, 2), seed=st.integers(0, 2**16))
def test_round_trip_property(design, conv, dims, stride, seed, tmp_path):
    """Any sampled valid mapping of a random GEMM or convolution: export → import evaluates the same."""
    arch = load_architecture(design)
    a, b, c, d = dims
    problem = conv_problem("p", C=4 * a, M=8 * b, R=c, S=1 + d % 3, P=2 * d, Q=c + 1, N=a % 2 + 1, stride=stride) \
        if conv else Problem("p", M=16 * a, K=32 * b, N=4 * c * d, a_density="2:4")
    batch = sample_mappings(arch, problem, 8, np.random.default_rng(seed))
    ok, _ = validity(arch, problem, batch)
    for i in np.flatnonzero(ok)[:2]:
        mapping = batch.mapping(int(i))
        spec = _roundtrip(tmp_path, arch, problem, mapping)
        _same(evaluate(spec.architecture, spec.problem, spec.mapping), evaluate(arch, problem, mapping))


def test_export_refuses_what_timeloop_cannot_say_naming_each_key():
    arch = load_architecture("stc")
    with pytest.raises(ExportRefusedError) as exc:
        to_timeloop(arch, Problem("g", M=8, K=8, N=8, a_density="2:4"))
    msg = str(exc.value)
    for key in ("architecture.drain_reads", "sparse_optimizations.structured_support", "problem.a_density",
                "--extensions"):
        assert key in msg
    _, notes = to_timeloop(arch, Problem("g", M=8, K=8, N=8, a_density="2:4"), extensions=True)
    assert any(n.startswith("architecture.drain_reads") for n in notes)


# --------------------------------------------------------------------------------------------------
# Bad input: one line with the file, the line and the key; exit 2; nothing written
# --------------------------------------------------------------------------------------------------

_BAD = {
    "unknown class": (("arch.yaml", "class: regfile", "class: registerfile"), "arch.yaml:15:", "unknown class"),
    "missing key": (("gemm.yaml", "M: 8, K: 16, N: 8", "M: 8, K: 16"), "gemm.yaml:10:", "no bound for dimension 'N'"),
    "permutation misses a dim": (("gemm_map.yaml", "N=2, permutation: KNM", "N=2, permutation: KN"),
                                 "gemm_map.yaml:6:", "misses the dimension 'M'"),
    "factor product": (("gemm_map.yaml", "M=1 K=16 N=2", "M=1 K=8 N=2"), "gemm_map.yaml:",
                       "factors of dimension K multiply to 8, but the problem has K=16"),
    "sparse level": (("sparse_gemm.yaml", "  - name: GLB\n", "  - name: L2\n"), "sparse_gemm.yaml:26:",
                     "no level named 'L2'"),
    "alias": (("gemm.yaml", "instance: {M: 8, K: 16, N: 8}", "instance: &i {M: 8, K: 16, N: 8}\nother: *i"),
              "gemm.yaml:11:", "aliases"),
    "three ranks": (("sparse_gemm.yaml", "ranks: [{format: UOP}, {format: CP}]}]\n  - name: GLB",
                     "ranks: [{format: UOP}, {format: UOP}, {format: CP}]}]\n  - name: GLB"),
                    "sparse_gemm.yaml:25:", "3 ranks"),
}


@pytest.mark.parametrize("case", list(_BAD))
def test_bad_timeloop_files_fail_with_file_line_and_key(case, tmp_path, capsys):
    (name, old, new), where, what = _BAD[case]
    files = {"arch.yaml", "ert.yaml", name, *(("gemm.yaml", "gemm_map.yaml") if name.startswith("gemm") else ())}
    for f in files:
        text = (DATA / f).read_text()
        if f == name:
            assert old in text, (f, old)
            text = text.replace(old, new, 1)
        (tmp_path / f).write_text(text)
    with pytest.raises(SpecError) as exc:
        load_timeloop(*(tmp_path / f for f in sorted(files)))
    msg = str(exc.value)
    assert "\n" not in msg and where in msg and what in msg, msg
    out = tmp_path / "out.json"
    assert run(["hw", "import", *(str(tmp_path / f) for f in sorted(files)), "--json", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert where in err and not out.exists()


# --------------------------------------------------------------------------------------------------
# The CLI
# --------------------------------------------------------------------------------------------------


def test_cli_export_then_import_matches_eval(tmp_path, capsys):
    out = tmp_path / "tc.yaml"
    assert run(["hw", "export", "--arch", "stc", "--workload", "gemm:64x128x32:A=2:4", "--mapper-budget", "100",
                "-o", str(out)]) == 2
    assert "architecture.drain_reads" in capsys.readouterr().err and not out.exists()
    assert run(["hw", "export", "--arch", "stc", "--workload", "gemm:64x128x32:A=2:4", "--mapper-budget", "100",
                "--extensions", "-o", str(out)]) == 0
    assert "note: architecture.drain_reads" in capsys.readouterr().err
    assert run(["hw", "import", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    arch = load_architecture("stc")
    problem = Problem("gemm", M=64, K=128, N=32, a_density="2:4")
    best = map_layer(arch, problem, budget=100, seed=0).best
    assert doc["evaluation"]["energy_pj"] == best.energy_pj and doc["evaluation"]["cycles"] == best.cycles
    assert doc["evaluation"]["mapping_source"] == "the files' mapping"
    assert run(["hw", "import", *map(str, ARCH), str(DATA / "gemm.yaml"), str(DATA / "gemm_map.yaml"),
                "--counts"]) == 0
    text = capsys.readouterr().out
    assert "cycles 376, energy 21,024 pJ" in text and "computes" in text


def test_cli_export_workload_folder(tmp_path, capsys):
    wl = tmp_path / "w.yaml"
    wl.write_text("version: 0.1\nworkload:\n  name: tiny\n  layers:\n    - {name: fc, M: 32, K: 64, N: 16}\n"
                  "    - {name: c1, C: 8, M: 16, R: 3, S: 3, P: 4, Q: 4}\n")
    out = tmp_path / "specs"
    assert run(["hw", "export", "--arch", "tc", "--workload", str(wl), "--mapper-budget", "50", "--extensions",
                "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["c1.yaml", "fc.yaml"]
    spec = load_timeloop(out / "c1.yaml")
    assert spec.problem.geometry() is not None and spec.problem.name == "c1"


def test_older_spellings_read(tmp_path):
    """Written in the style of the Timeloop tutorial exercises (not copied): ``version: 0.2``,
    instance ranges on the local components (``RegisterFile[0..15]``), a problem with its bounds in
    the problem map itself, factors written ``K16`` and a flat projection rank, no ERT (tasder's table
    gives the energies). Hand-checked counts: 16 lanes run 1,536 MACs in 96 cycles; Z's first touch
    of each of its 32·16 words reads nothing (RF Z reads 1,536 − 512)."""
    (tmp_path / "arch.yaml").write_text("""\
architecture:
  version: 0.2
  subtree:
  - name: System
    local:
    - {name: MainMemory, class: DRAM, attributes: {width: 256, block-size: 32, word-bits: 8}}
    subtree:
    - name: Chip
      attributes: {technology: 40nm}
      local:
      - {name: GlobalBuffer, class: SRAM, attributes: {depth: 8192, width: 256, block-size: 32, word-bits: 8}}
      subtree:
      - name: PE
        local:
        - {name: "RegisterFile[0..15]", class: regfile, attributes: {depth: 64, width: 8, word-bits: 8}}
        - {name: "MACC[0..15]", class: intmac, attributes: {datawidth: 8}}
""")
    (tmp_path / "prob.yaml").write_text("""\
problem:
  shape:
    name: Conv1D_OC
    dimensions: [K, R, P]
    data-spaces:
    - {name: Weights, projection: [K, R]}
    - {name: Inputs, projection: [[[R], [P]]]}
    - {name: Outputs, projection: [K, P], read-write: true}
  K: 32
  R: 3
  P: 16
mapping:
- {target: MainMemory, type: temporal, factors: R1 P1 K1, permutation: PRK}
- {target: GlobalBuffer, type: temporal, factors: R3 P1 K2, permutation: PRK}
- {target: GlobalBuffer, type: spatial, factors: R1 P1 K16, permutation: PRK}
- {target: 0, type: temporal, factors: R1 P16 K1, permutation: RPK}
""")
    spec = load_timeloop(tmp_path / "arch.yaml", tmp_path / "prob.yaml")
    arch = spec.architecture
    assert [(lv.name, lv.instances, lv.capacity, lv.block_size) for lv in arch.levels] == [
        ("MainMemory", 1, None, 32), ("GlobalBuffer", 1, 262_144, 32), ("RegisterFile", 16, 64, 1)]
    assert arch.compute.instances == 16 and arch.technology_nm == 40
    assert spec.problem.shape.tensor_names == ("Weights", "Inputs", "Outputs") and spec.problem.tensor_size("B") == 18
    ev = evaluate(arch, spec.problem, spec.mapping)
    assert ev.cycles == 96 and ev.counts.macs[0] == 1536
    t = _table(ev)
    assert t["RegisterFile"]["Z"] == (1024, 0, 1536)
    assert t["MainMemory"]["A"][0] == 96 and t["MainMemory"]["B"][0] == 18


def test_v04_sparse_spellings_read_as_v03(tmp_path):
    """timeloopfe's v0.4 spellings (underscores, ``target:`` for the level, each SAF wrapped in one
    ``options`` entry, ``fixed_structured``) read as the v0.3 ones; two options are alternatives, refused."""
    text = (DATA / "sparse_gemm.yaml").read_text()
    v4 = text.replace("sparse_optimizations:\n  targets:", "sparse_optimizations:\n  version: 0.4\n  targets:")
    v4 = v4.replace("  - name: RF\n", "  - target: RF\n").replace("representation-format", "representation_format")
    v4 = v4.replace("data-spaces", "data_spaces").replace("rank-application-order", "rank_application_order")
    for key in ("action-optimization", "compute-optimization"):
        v4 = v4.replace(key, key.replace("-", "_"))
    v4 = v4.replace("{type: skipping, target: B, condition-on: [A]}",
                    "{type: skipping, options: [{target: B, condition_on: [A]}]}")
    (tmp_path / "v4.yaml").write_text(v4)
    a = load_timeloop(*ARCH, DATA / "sparse_gemm.yaml").architecture.sparse
    b = load_timeloop(*ARCH, tmp_path / "v4.yaml").architecture.sparse
    assert a == b
    (tmp_path / "two.yaml").write_text(v4.replace("options: [{target: B, condition_on: [A]}]",
                                                  "options: [{target: B, condition_on: [A]}, {target: A, "
                                                  "condition_on: [B]}]"))
    with pytest.raises(SpecError, match=r"two\.yaml:\d+: .*options: alternatives"):
        load_timeloop(*ARCH, tmp_path / "two.yaml")
