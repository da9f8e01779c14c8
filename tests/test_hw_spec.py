"""Specs as data: the shipped designs load, energies follow the documented rules, bad YAML says where."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

import tasder.hw
from tasder import workloads
from tasder.hw import (
    SpecError,
    from_conv2d,
    from_linear,
    list_designs,
    load_architecture,
    load_network,
)
from tasder.hw.energy import default_energy_table, load_energy_table
from tasder.workloads import trace_network

GOOD = """\
version: 0.1
architecture:
  name: t
  storage:
    - name: DRAM
      class: DRAM
      attributes: {read_bandwidth: 8}
    - name: Buf
      class: SRAM
      instances: 2
      attributes: {capacity: 4096, read_bandwidth: 8}
  compute:
    name: MAC
    instances: 8
"""


@pytest.mark.parametrize("name", list_designs())
def test_every_shipped_design_loads(name):
    arch = load_architecture(name)
    assert arch.levels[0].cls == "DRAM" and arch.compute.instances >= 1


def test_tc_design_shape():
    arch = load_architecture("tc")
    assert [lv.name for lv in arch.levels] == ["DRAM", "L2", "L1", "RF"]
    assert [lv.instances for lv in arch.levels] == [1, 1, 4, 64]
    assert arch.fanouts == (1, 4, 16, 16)


def _write(tmp_path, text):
    path = tmp_path / "arch.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("edit", "pattern"), [
    (("read_bandwidth: 8}\n  compute", "read_bandwidth: 8, capacty: 3}\n  compute"),
     r"arch\.yaml:11: unknown key 'capacty' in architecture\.storage\[1\]\.attributes; did you mean 'capacity'\?"),
    (("capacity: 4096", "capacity: big"), r"arch\.yaml:11: .*capacity must be an integer ≥ 1; got 'big'"),
    (("capacity: 4096", "capacity: 0"), r"capacity must be an integer ≥ 1; got 0"),
    (("instances: 8", "instances: -8"), r"arch\.yaml:14: architecture\.compute\.instances must be an integer ≥ 1"),
    (("class: SRAM", "class: HBM"), r"arch\.yaml:9: .*class must be one of DRAM, SRAM, regfile; got 'HBM'"),
    (("  name: t\n", "  name: t\n  colour: red\n"), r"arch\.yaml:4: unknown key 'colour' in architecture "),
    (("version: 0.1", "version: 9"), r"unsupported version 9"),
    (("instances: 8", "instances: 7"), r"MAC has 7 instances, not a multiple of Buf's 2"),
])
def test_bad_architecture_yaml_names_file_line_and_key(tmp_path, edit, pattern):
    path = _write(tmp_path, GOOD.replace(*edit))
    with pytest.raises(SpecError, match=pattern):
        load_architecture(path)


def test_hyphenated_keys_are_accepted(tmp_path):
    arch = load_architecture(_write(tmp_path, GOOD.replace("read_bandwidth: 8}\n  compute",
                                                           "read-bandwidth: 8}\n  compute")))
    assert arch.levels[1].read_bandwidth == 8


def test_invalid_yaml_reports_the_line(tmp_path):
    with pytest.raises(SpecError, match=r"arch\.yaml:\d+: invalid YAML"):
        load_architecture(_write(tmp_path, GOOD + "  bad: [unclosed\n"))


def test_energy_table_points_interpolation_and_scaling():
    t = default_energy_table()
    assert t.sram_access(8192, 64) == pytest.approx(10.0)
    assert t.sram_access(1 << 20, 64) == pytest.approx(100.0)
    assert t.sram_access(16384, 64) == pytest.approx(10 * math.sqrt(2))  # log-log midpoint of 8 KB → 32 KB
    assert t.sram_access(2048, 64) == pytest.approx(5.0)  # extrapolated with the first segment's slope
    assert t.sram_access(8192, 16) == pytest.approx(2.5)  # 16 of 64 bits
    assert t.sram_access(8192, 64, node_nm=22.5) == pytest.approx(5.0)  # linear in feature size
    assert t.dram_access(64) == pytest.approx(1950.0)
    assert t.mac("int8", "int32") == pytest.approx(0.2 + 0.1)
    assert t.mac("fp16", "fp32") == pytest.approx(1.1 + 0.9)
    with pytest.raises(ValueError, match="unknown datatype 'bf16'"):
        t.mac("bf16", "fp32")


def test_energy_overrides_and_derived_defaults(tmp_path):
    text = GOOD.replace("capacity: 4096, read_bandwidth: 8", "capacity: 4096, read_bandwidth: 8, write_energy: 7")
    arch = load_architecture(_write(tmp_path, text))
    buf = arch.levels[1]
    assert buf.read_energy == pytest.approx(default_energy_table().sram_access(4096 * 2, 16))
    assert buf.write_energy == 7 and buf.update_energy == 7  # update defaults to write
    assert arch.compute.energy_per_mac == pytest.approx(2.0)  # fp16 mult + fp32 add


def test_a_whole_energy_table_can_be_replaced(tmp_path):
    src = (Path(tasder.hw.__file__).parent / "data" / "energy_45nm.yaml").read_text()
    table_path = tmp_path / "table.yaml"
    src = src.replace("fp16_mult: 1.1", "fp16_mult: 2.1").replace("technology_nm: 45", "technology_nm: 90")
    table_path.write_text(src)
    table = load_energy_table(str(table_path))
    arch = load_architecture(_write(tmp_path, GOOD.replace("  name: t\n", "  name: t\n  technology_nm: 45\n")),
                             energy_table=table)
    assert arch.compute.energy_per_mac == pytest.approx((2.1 + 0.9) / 2)  # table at 90 nm, design at 45 nm


def test_workload_helpers():
    fc = from_linear("fc", in_features=768, out_features=3072, tokens=128)
    assert (fc.M, fc.K, fc.N) == (3072, 768, 128)
    conv = from_conv2d("c", 64, 128, 3, 28, batch=2)
    assert (conv.M, conv.K, conv.N) == (128, 64 * 9, 28 * 28 * 2)


def test_trace_network_records_linear_and_conv():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))
    net = trace_network(model, torch.zeros(2, 3, 6, 6))
    assert [(p.M, p.K, p.N) for p in net.layers] == [(8, 27, 72), (10, 288, 2)]


def test_zoo_tables_become_networks():
    net = workloads.load_network("resnet50")
    assert sum(p.repeat for p in net.layers) == 54 and net.macs > 4e9
    assert workloads.load_network("bert-base").layers[0].N == 128
    assert workloads.load_network("deit-small").macs > 4e9


def test_hw_load_network_reads_yaml_and_points_zoo_names_one_layer_up():
    with pytest.raises(ValueError, match=r"tasder\.workloads\.load_network\('resnet50'\)"):
        load_network("resnet50")


def test_bad_workload_yaml(tmp_path):
    path = tmp_path / "w.yaml"
    path.write_text("version: 0.1\nworkload:\n  layers:\n    - {name: a, M: 4, K: 0, N: 2}\n")
    with pytest.raises(SpecError, match=r"w\.yaml:4: workload\.layers\[0\]\.K must be an integer ≥ 1; got 0"):
        load_network(path)
    path.write_text("version: 0.1\nworkload:\n  layers:\n    - {name: a, M: 4, K: 2, N: 2, bacth: 1}\n")
    with pytest.raises(SpecError, match=r"w\.yaml:4: unknown key 'bacth'"):
        load_network(path)
