"""Shared builders for the tasder.hw tests: small architectures written as YAML (so the loader runs too)."""

from __future__ import annotations

from pathlib import Path

from tasder.hw import Architecture, load_architecture


def two_level(tmp_path: Path, *, capacity: int = 4096, dram_bw: float = 1e9, buf_bw: float = 1e9, macs: int = 1,
              name: str = "two") -> Architecture:
    """DRAM → Buffer → ``macs`` MACs, with unit energies (read=1, write=2, update=3 pJ; MAC=0.5 pJ)."""
    text = f"""\
version: 0.1
architecture:
  name: {name}
  clock_hz: 1.0e+9
  storage:
    - name: DRAM
      class: DRAM
      attributes: {{read_bandwidth: {dram_bw}, write_bandwidth: {dram_bw},
                   read_energy: 100, write_energy: 200, update_energy: 300}}
    - name: Buffer
      class: SRAM
      attributes: {{capacity: {capacity}, read_bandwidth: {buf_bw}, write_bandwidth: {buf_bw},
                   read_energy: 1, write_energy: 2, update_energy: 3}}
  compute:
    name: MAC
    instances: {macs}
    attributes: {{energy_per_mac: 0.5}}
"""
    path = tmp_path / f"{name}_{capacity}_{dram_bw}_{buf_bw}_{macs}.yaml"
    path.write_text(text)
    return load_architecture(path)
