"""Part 2 of the accelerator model: density models, formats, the sparse step and the shipped designs.

The "facts" are the public numbers of docs/design.md §4 / the issue; each test names its source.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from hw_helpers import ev, problem, tc_best_mapping
from tasder.hw import SpecError, evaluate, list_designs, load_architecture, map_layer
from tasder.hw.density import ActualModel, DenseModel, SeriesModel, StructuredModel, UniformModel, density_model
from tasder.hw.formats import parse_format

TC_YAML = (Path(__file__).parents[1] / "src/tasder/hw/designs/tc.yaml").read_text()




@pytest.fixture(scope="module")
def tc_mapping():
    return tc_best_mapping()




# --- density models -------------------------------------------------------------------------------

def test_density_notation():
    assert isinstance(density_model("dense"), DenseModel)
    assert isinstance(density_model(None), DenseModel)
    assert density_model("unstructured(0.1)").density == pytest.approx(0.1)
    assert isinstance(density_model("0.25"), UniformModel)
    assert density_model("2:4").density == 0.5
    hss = density_model("K1(2:4)->K0(2:4)")
    assert isinstance(hss, StructuredModel) and hss.density == 0.25 and hss.ranks == ((2, 4), (2, 4))
    series = density_model("4:8+1:8")
    assert isinstance(series, SeriesModel) and series.density == 0.625 and len(series.terms) == 2


def test_uniform_matches_binomial_and_hypergeometric():
    m = UniformModel(0.1)
    assert m.prob_empty(4, 8) == pytest.approx(0.9 ** 32)
    x, p = m.occupancy_distribution(2, 8)
    assert p.sum() == pytest.approx(1.0) and np.dot(x, p) == pytest.approx(1.6)
    h = UniformModel(0.1, size=1000)
    assert h.prob_empty(1, 10) == pytest.approx(stats.hypergeom.pmf(0, 1000, 100, 10))
    q = m.occupancy_quantile(64, 64, 0.99)
    assert m.expected_occupancy(64, 64) < q <= stats.binom.ppf(0.999, 4096, 0.1)


def test_structured_is_deterministic_per_block():
    m = density_model("2:4")
    assert m.prob_empty(1, 4) == 0.0 and m.expected_occupancy(3, 8) == 12
    assert m.occupancy_quantile(3, 8) == 12  # whole blocks: exactly G/H, no tail
    assert m.prob_empty(1, 1) == pytest.approx(0.5)
    hss = density_model("K1(2:4)->K0(2:4)")
    # one element is zero with probability 1 - density; a rank-0 block of 4 is empty when rank 1 pruned it
    assert hss.prob_empty(1, 1) == pytest.approx(0.75)
    assert hss.prob_empty(1, 4) == pytest.approx(0.5)
    assert hss.prob_empty(1, 16) == 0.0
    assert hss.occupancy_quantile(1, 8) == 4


def test_actual_model_measures_tiles():
    t = np.zeros((8, 8))
    t[:4, :4] = 1.0  # one dense quadrant: clustered, unlike a uniform model at the same density
    m = ActualModel(t)
    assert m.density == 0.25
    assert m.prob_empty(4, 4) == pytest.approx(0.75)
    assert UniformModel(0.25).prob_empty(4, 4) < 0.02
    assert m.occupancy_quantile(4, 4, 0.99) == pytest.approx(16, abs=0.5)
    vals, probs = m.occupancy_distribution(4, 4)
    assert list(vals) == [0, 16] and list(probs) == [0.75, 0.25]


# --- formats --------------------------------------------------------------------------------------

def test_format_sizes():
    dense = DenseModel()
    data, meta = parse_format("B").tile_words(dense, np.array([4.0]), np.array([16.0]), 16)
    assert data[0] == 64 and meta[0] == 64 / 16  # the bitmask is paid even on dense data
    data, meta = parse_format("CP:2").tile_words(density_model("2:4"), np.array([4.0]), np.array([16.0]), 16)
    assert data[0] == 32 and meta[0] == 32 * 2 / 16
    data, meta = parse_format("U").tile_words(density_model("2:4"), np.array([4.0]), np.array([16.0]), 16)
    assert data[0] == 64 and meta[0] == 0
    _, meta = parse_format(["UOP", "CP"]).tile_words(UniformModel(0.5), np.array([4.0]), np.array([16.0]), 16)
    assert meta[0] == pytest.approx((32 * 4 + 5 * 7) / 16)
    with pytest.raises(ValueError, match="formats are U, B, CP, RLE, UOP"):
        parse_format("CSR")


# --- facts ----------------------------------------------------------------------------------------

def test_dense_design_ignores_densities(tc_mapping):
    dense, sparse = ev("tc", tc_mapping), ev("tc", tc_mapping, "0.1", "0.1")
    assert dense.cycles == sparse.cycles and dense.energy_pj == sparse.energy_pj


def test_stc_is_exactly_twice_tc_on_2to4():
    """Thesis 4.8.3: STC on 2:4 weights is 2x faster than TC when compute-bound, and saves energy."""
    tc = map_layer(load_architecture("tc"), problem(), budget=3000, seed=0).best
    stc = map_layer(load_architecture("stc"), problem("2:4"), budget=3000, seed=0).best
    assert tc.cycles == tc.costs.compute_cycles[0]
    assert tc.cycles / stc.cycles == pytest.approx(2.0)
    assert stc.energy_pj < tc.energy_pj
    # a pattern that does not guarantee 2:4 (4:8 may put 4 nonzeros in one half) runs dense on STC;
    # 2:8 guarantees 2:4, so it runs as 2:4 (see test_hw_engine_patterns.py)
    tc_cycles = map_layer(load_architecture("tc"), problem(), budget=500, seed=0).best.cycles
    stc = load_architecture("stc")
    assert map_layer(stc, problem("4:8"), budget=500, seed=0).best.cycles == pytest.approx(tc_cycles)
    assert map_layer(stc, problem("unstructured(0.25)"), budget=500, seed=0).best.cycles == pytest.approx(tc_cycles)


@pytest.mark.parametrize("hss", ["C1(2:4)->C0(2:4)", "C1(2:8)->C0(2:4)", "C1(2:6)->C0(2:3)", "2:4"])
def test_highlight_speedup_is_product_of_rank_speedups(tc_mapping, hss):
    """Thesis 6.3.3: HighLight's speedup is the product of the per-rank speedups (compute cycles)."""
    ranks = density_model(hss).ranks
    expected = math.prod(h / g for g, h in ranks)
    tc, hl = ev("tc", tc_mapping), ev("highlight", tc_mapping, hss)
    assert tc.costs.compute_cycles[0] / hl.costs.compute_cycles[0] == pytest.approx(expected)


def test_highlight_is_4x_when_compute_bound():
    tc = map_layer(load_architecture("tc"), problem(), budget=3000, seed=0, objective="cycles").best
    hl = map_layer(load_architecture("highlight"), problem("C1(2:4)->C0(2:4)"), budget=3000, seed=0,
                objective="cycles").best
    assert tc.cycles / hl.cycles == pytest.approx(4.0)


def test_stc_flexible_2to8_is_bandwidth_bound_and_compressing_b_recovers(tc_mapping):
    """Thesis 4.9.1: on TC's dataflow 2:8 does not reach 4x (dense B traffic), bitmask B recovers most."""
    tc = ev("tc", tc_mapping, b="0.5")
    flex = ev("stc-flexible", tc_mapping, "2:8", "0.5")
    dual = ev("stc-flexible-dualcompress", tc_mapping, "2:8", "0.5")
    s_flex, s_dual = tc.cycles / flex.cycles, tc.cycles / dual.cycles
    assert s_flex < 3.8
    assert (s_dual - s_flex) / (4.0 - s_flex) > 0.5
    assert tc.cycles / ev("stc-flexible", tc_mapping, "2:4").cycles == pytest.approx(2.0)


def test_dstc_pays_a_tax_on_dense_and_wins_when_sparse(tc_mapping):
    """Thesis 4.9.1 / TASD Fig. 12: DSTC costs more energy than TC on dense work, far less EDP at 10 %."""
    assert ev("dstc", tc_mapping).energy_pj > ev("tc", tc_mapping).energy_pj
    tc = map_layer(load_architecture("tc"), problem("0.1", "0.1"), budget=2000, seed=0).best
    dstc = map_layer(load_architecture("dstc"), problem("0.1", "0.1"), budget=2000, seed=0).best
    assert dstc.edp < 0.1 * tc.edp


def _saf_design(tmp_path: Path, kind: str) -> object:
    fmt, act = ("B", "gating") if kind == "bitmask" else ("CP", "skipping")
    text = TC_YAML.replace("name: tc", f"name: {kind}") + f"""sparse_optimizations:
  targets:
    - {{name: DRAM, representation_format: {{A: [{fmt}]}}}}
    - {{name: L2, representation_format: {{A: [{fmt}]}}}}
    - {{name: L1, representation_format: {{A: [{fmt}]}}}}
    - name: RF
      representation_format: {{A: [{fmt}]}}
      action_optimization: [{{type: {act}, target: B, condition_on: [A]}}]
    - name: MAC
      action_optimization: [{{type: {act}, target: Z, condition_on: [A]}}]
"""
    path = tmp_path / f"{kind}.yaml"
    path.write_text(text)
    return load_architecture(path)


def crossover(tmp_path: Path, mapping, metric: str = "energy_pj") -> float:
    """A density where the bitmask-gating design starts to beat the coordinate-list-skipping one."""
    bm, cp = _saf_design(tmp_path, "bitmask"), _saf_design(tmp_path, "coord")
    grid = np.geomspace(0.01, 1.0, 25)
    ratio = []
    for d in grid:
        p = problem(f"unstructured({d:.6f})" if d < 1 else "dense")
        ratio.append(getattr(evaluate(bm, p, mapping), metric) / getattr(evaluate(cp, p, mapping), metric))
    ratio = np.array(ratio)
    assert ratio[0] > 1.0 and ratio[-1] < 1.0  # CP wins when sparse, bitmask when dense (thesis Fig. 3-1)
    i = int(np.argmax(ratio < 1.0))  # first grid point where bitmask wins; interpolate in log density
    t = (ratio[i - 1] - 1.0) / (ratio[i - 1] - ratio[i])
    return float(np.exp(np.log(grid[i - 1]) + t * (np.log(grid[i]) - np.log(grid[i - 1]))))


def test_bitmask_vs_coordinate_list_crossover(tmp_path, tc_mapping):
    assert 0.01 < crossover(tmp_path, tc_mapping, "energy_pj") < 1.0
    assert crossover(tmp_path, tc_mapping, "energy_pj") < crossover(tmp_path, tc_mapping, "edp") < 1.0


def test_actions_split_and_gating_costs_cycles(tc_mapping):
    dense = ev("tc", tc_mapping)
    hl = ev("highlight", tc_mapping, "C1(2:4)->C0(2:4)", "0.3")
    c = hl.counts
    assert c.mac_gated[0] > 0 and c.mac_skipped[0] == pytest.approx(0.75 * dense.counts.macs[0])
    assert c.macs[0] + c.mac_gated[0] + c.mac_skipped[0] == pytest.approx(dense.counts.macs[0])
    # gating B's zeros saves energy, not time
    hl_dense_b = ev("highlight", tc_mapping, "C1(2:4)->C0(2:4)")
    assert hl.cycles == pytest.approx(hl_dense_b.cycles) and hl.energy_pj < hl_dense_b.energy_pj
    assert c.skipped[0].sum() > 0 and c.metadata[0].sum() > 0


def test_ttc_runs_a_series_term_by_term_reusing_b_and_z(tc_mapping):
    one = ev("ttc-vegeta-m8", tc_mapping, "4:8")
    two = ev("ttc-vegeta-m8", tc_mapping, "4:8+1:8")
    assert two.costs.compute_cycles[0] == pytest.approx(0.625 * tc_mapping_steps(tc_mapping))
    # B is fetched from DRAM and Z written back once, not once per term
    assert two.counts.reads[0, 0, 1] == pytest.approx(one.counts.reads[0, 0, 1])
    assert two.counts.updates[0, 0, 2] == pytest.approx(one.counts.updates[0, 0, 2])
    # a term no native pattern contains (5:8) runs dense; 3:8 runs as 4:8 (test_hw_engine_patterns.py)
    assert ev("ttc-vegeta-m8", tc_mapping, "5:8").costs.compute_cycles[0] == tc_mapping_steps(tc_mapping)


def tc_mapping_steps(mapping) -> float:
    return float(np.prod([lv.temporal for lv in mapping.levels]))


def test_compressed_tiles_relax_capacity():
    from tasder.hw.sparse import compressed_need

    arch = load_architecture("stc")
    ext = np.array([[[256.0, 1024.0, 256.0]] * 4])
    dense_need = compressed_need(arch, problem(), ext)
    sparse_need = compressed_need(arch, problem("2:4"), ext)
    assert sparse_need[0, 1] < dense_need[0, 1]
    assert compressed_need(load_architecture("tc"), problem("2:4"), ext) is None


def test_shipped_designs_share_macs_and_buffers():
    tc = load_architecture("tc")
    for name in ("stc", "stc-flexible", "dstc", "s2ta", "highlight", "ttc-stc-m4", "ttc-stc-m8", "ttc-vegeta-m4",
                 "ttc-vegeta-m8", "sat"):
        assert name in list_designs()
        arch = load_architecture(name)
        assert arch.compute.instances == tc.compute.instances
        assert [(lv.capacity, lv.instances) for lv in arch.levels] == [(lv.capacity, lv.instances) for lv in tc.levels]
        assert arch.sparse is not None


def test_sparse_spec_errors_name_the_line(tmp_path):
    bad = TC_YAML + "sparse_optimizations:\n  targets:\n    - name: L1\n      representation_format: {A: [CSR]}\n"
    path = tmp_path / "bad.yaml"
    path.write_text(bad)
    with pytest.raises(SpecError, match=r"bad\.yaml:\d+: unknown rank format 'CSR'"):
        load_architecture(path)
    bad = TC_YAML + ("sparse_optimizations:\n  targets:\n    - name: L1\n      action_optimization:\n"
                     "        - {type: skiping, target: B, condition_on: [A]}\n")
    path.write_text(bad)
    with pytest.raises(SpecError, match=r"bad\.yaml:\d+: .*type must be one of gating, skipping"):
        load_architecture(path)


# --- CLI ------------------------------------------------------------------------------------------

def test_parse_gemm_workload():
    from tasder.cli.hw import parse_gemm_workload

    p = parse_gemm_workload("gemm:64x128x32:A=K1(2:4)->K0(2:4),B=unstructured(0.1)")
    assert (p.M, p.K, p.N, str(p.a_density), str(p.b_density)) == (64, 128, 32, "K1(2:4)->K0(2:4)",
                                                                   "unstructured(0.1)")
    assert str(parse_gemm_workload("gemm:8x8x8").a_density) == "dense"
    assert str(parse_gemm_workload("gemm:8x8x8:A=4:8+1:8").a_density) == "4:8+1:8"
    with pytest.raises(ValueError, match="gemm:MxKxN"):
        parse_gemm_workload("gemm:8x8")
    with pytest.raises(ValueError, match="A=<pattern>"):
        parse_gemm_workload("gemm:8x8x8:C=2:4")


def test_hw_compare_json_and_table(capsys, tmp_path):
    import json

    from tasder.cli.app import run

    args = ["hw", "compare", "--designs", "tc,stc,dstc,highlight,ttc-vegeta-m8", "--workload",
            "gemm:64x256x32:A=2:4,B=dense", "--mapper-budget", "200"]
    assert run([*args, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["design"] for r in rows] == ["tc", "stc", "dstc", "highlight", "ttc-vegeta-m8"]
    keys = {"design", "workload", "cycles", "energy_pj", "edp", "cycles_norm", "energy_norm", "edp_norm"}
    assert keys <= set(rows[0])
    assert rows[0]["edp_norm"] == 1.0 and rows[1]["cycles_norm"] < 1.0
    plot = tmp_path / "p.png"
    assert run([*args, "--plot", str(plot)]) == 0
    out = capsys.readouterr()
    assert "EDP/TC" in out.out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a bad plot path is refused before any mapping runs, and nothing is written
    assert run([*args, "--plot", str(tmp_path / "p.txt")]) == 2
    assert "--plot" in capsys.readouterr().err
    assert run([*args, "--plot", str(tmp_path / "missing" / "p.png")]) == 2
    assert "missing" in capsys.readouterr().err
    assert not (tmp_path / "p.txt").exists()
    assert run(["hw", "compare", "--designs", "tc", "--workload", "gemm:8x8x8:A=3:9:1"]) != 0


def test_a_series_is_one_stream_on_designs_without_term_reuse(tc_mapping):
    series = ev("dstc", tc_mapping, "4:8+1:8")
    assert series.counts.macs[0] == pytest.approx(0.625 * ev("tc", tc_mapping).counts.macs[0])
    assert series.cycles < ev("tc", tc_mapping).cycles


@pytest.mark.parametrize("n", [0, 1, 5, 64])
def test_occupancy_pmfs_equal_scipy_stats_value_for_value(n: int) -> None:
    # The density models read the pmfs from scipy.special's ufuncs (scipy.stats costs 1.2-1.9 s to
    # import); they must be exactly what scipy.stats.binom/hypergeom give, support edges included.
    from scipy import stats

    from tasder.hw.density import _binom_pmf, _hypergeom_pmf

    x = np.arange(n + 1)
    for p in (0.0, 1e-9, 0.37, 0.5, 0.999999, 1.0):
        assert np.array_equal(_binom_pmf(x, n, p), stats.binom.pmf(x, n, p), equal_nan=True)
    for total in (0, 1, 5, 64, 100):
        for successes in sorted({0, 1, total // 2, total}):
            expected = stats.hypergeom.pmf(x, total, successes, n)
            assert np.array_equal(_hypergeom_pmf(x, total, successes, n), expected, equal_nan=True), (total, successes)
