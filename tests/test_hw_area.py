"""Area model (tasder.hw.area): the table's rules, worked by hand, and its bad inputs."""

from __future__ import annotations

import copy
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasder.hw import load_architecture
from tasder.hw.architecture import architecture_from_doc, list_designs
from tasder.hw.area import AreaTable, area_breakdown, area_mm2, default_area_table, load_area_table
from tasder.hw.spec import SpecError, load_yaml

TABLE = default_area_table()


def _doc(design: str = "tc"):
    from tasder.hw.architecture import _designs_dir

    return load_yaml(_designs_dir() / f"{design}.yaml")


def _with(design: str, **changes):
    doc = copy.deepcopy(_doc(design))
    for key, value in changes.items():
        level, attr = key.split("__")
        if level == "compute":
            doc["architecture"]["compute"][attr] = value
        elif level == "arch":
            doc["architecture"][attr] = value
        else:
            node = next(lv for lv in doc["architecture"]["storage"] if lv["name"] == level)
            node["attributes"][attr] = value
    return architecture_from_doc(doc, name=design)


def test_the_table_cites_every_section_and_holds_the_published_numbers():
    assert set(TABLE.sources) == {"arithmetic", "sram", "tasd_units", "hss_saf"}
    assert TABLE.arithmetic["fp16_mult"] == 1640 and TABLE.arithmetic["fp32_add"] == 4184  # Horowitz, 45 nm
    assert TABLE.sram_points == ((2048.0, 1.42725), (327680.0, 0.99344))  # CACTI (Sparseloop artifact)
    assert TABLE.overheads == {"tasd_units": 0.02, "hss_saf": 0.057}
    # The per-bit figures are the artifact's areas over its arrays' bits (the derivation in the file).
    assert TABLE.sram_points[0][1] == pytest.approx(23384.0 / 16384, abs=5e-6)
    assert TABLE.sram_points[1][1] == pytest.approx(2604256.0 / (4096 * 512 + 8192 * 64), abs=5e-6)


def test_tc_by_hand():
    b = area_breakdown(load_architecture("tc"))
    slope = math.log(0.99344 / 1.42725) / math.log(327680 / 2048)

    def per_bit(nbytes: float) -> float:
        return 1.42725 * (nbytes / 2048) ** slope

    assert b.components["MAC"] == pytest.approx(1024 * (1640 + 4184))
    assert b.components["L2"] == pytest.approx(131072 * 16 * per_bit(262144))
    assert b.components["L1"] == pytest.approx(4 * 32768 * 16 * per_bit(65536))
    assert b.components["RF"] == pytest.approx(64 * 256 * 16 * per_bit(512))
    assert "DRAM" not in b.components  # off chip
    assert b.mm2 == pytest.approx(sum(b.components.values()) * 1e-6)
    assert area_mm2(load_architecture("tc")) == pytest.approx(b.mm2)


def test_table_points_are_hit_exactly_and_the_curve_extrapolates_with_the_nearest_slope():
    assert TABLE.sram_bit_um2(2048) == pytest.approx(1.42725)
    assert TABLE.sram_bit_um2(327680) == pytest.approx(0.99344)
    slope = math.log(0.99344 / 1.42725) / math.log(327680 / 2048)
    assert TABLE.sram_bit_um2(512) == pytest.approx(1.42725 * 0.25**slope)
    assert TABLE.sram_bit_um2(4 * 327680) == pytest.approx(0.99344 * 4**slope)


@given(st.integers(1, 1 << 22), st.integers(1, 1 << 22))
def test_a_bigger_array_is_never_smaller(a: int, b: int):
    lo, hi = sorted((a, b))
    assert lo * TABLE.sram_bit_um2(lo) <= hi * TABLE.sram_bit_um2(hi) * (1 + 1e-12)


def test_area_grows_with_capacity_and_macs_and_scales_with_the_node_squared():
    base = area_mm2(load_architecture("tc"))
    assert area_mm2(_with("tc", L2__capacity=262144)) > base
    assert area_mm2(_with("tc", compute__instances=2048)) > base
    assert area_mm2(_with("tc", arch__technology_nm=22)) == pytest.approx(base * (22 / 45) ** 2)


def test_bandwidth_is_not_priced():
    assert area_mm2(_with("tc", L1__read_bandwidth=512)) == area_mm2(load_architecture("tc"))


@pytest.mark.parametrize("design", list_designs())
def test_sparse_overheads_follow_the_papers(design):
    b = area_breakdown(load_architecture(design))
    if design.startswith("ttc-"):  # TASD units: 2 % of the PEs (MACs + the register files)
        assert b.components["tasd_units"] == pytest.approx(0.02 * (b.components["MAC"] + b.components["RF"]))
    else:
        assert "tasd_units" not in b.components
    if design == "highlight":  # hierarchical SAFs: 5.7 % of the whole design
        assert b.components["hss_saf"] == pytest.approx(0.057 * b.um2)
    else:
        assert "hss_saf" not in b.components


def test_an_int8_mac_uses_the_int8_operators():
    doc = copy.deepcopy(_doc("tc"))
    doc["architecture"]["compute"]["attributes"] = {"datatype": "int8", "accumulator": "int32"}
    arch = architecture_from_doc(doc, name="int8")
    assert area_breakdown(arch).components["MAC"] == pytest.approx(1024 * (282 + 137))


@pytest.mark.parametrize(("edit", "message"), [
    ("arithmetic_um2:\n  fp16_add: 1", "missing the required key"),
    ("sram_um2_per_bit: {2048: -1}", "must be finite and > 0"),
    ("sparse_overheads: {tasd_units: {fraction: 1.5, of: pe}}", "must be < 1"),
    ("sparse_overheads: {tasd_units: {fraction: 0.1, of: design}}", "must be one of pe"),
    ("colour: red", "unknown key 'colour'"),
])
def test_bad_tables_are_rejected_with_the_line(tmp_path, edit, message):
    good = _table_path().read_text(encoding="utf-8")
    key = edit.split(":", 1)[0]
    lines = [ln for ln in good.splitlines() if not ln.startswith("#")]
    kept, skip = [], False
    for ln in lines:  # drop the section being replaced
        if ln.startswith(f"{key}:"):
            skip = True
            continue
        if skip and ln.startswith(" "):
            continue
        skip = False
        kept.append(ln)
    path = tmp_path / "bad.yaml"
    path.write_text("\n".join(kept) + "\n" + edit + "\n", encoding="utf-8")
    with pytest.raises(SpecError, match=message) as info:
        load_area_table(str(path))
    assert str(path) in str(info.value)


def _table_path():
    from importlib import resources

    return resources.files("tasder.hw") / "data" / "area_45nm.yaml"


def test_a_table_with_one_sram_point_is_flat():
    t = AreaTable(technology_nm=45, arithmetic=dict(TABLE.arithmetic), sram_points=((1024.0, 2.0),))
    assert t.sram_bit_um2(10) == t.sram_bit_um2(10**6) == 2.0
