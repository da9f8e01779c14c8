"""Shared builders for the tasder.hw tests: small architectures written as YAML (so the loader runs too)."""

from __future__ import annotations

from pathlib import Path

from tasder.hw import Architecture, Evaluation, Mapping, Problem, evaluate, load_architecture, map_layer


def two_level(tmp_path: Path, *, capacity: int = 4096, dram_bw: float = 1e9, buf_bw: float = 1e9, macs: int = 1,
              name: str = "two", sparse: str = "", latch: str = "[A, B, Z]", drain_reads: bool = True) -> Architecture:
    """DRAM → Buffer → ``macs`` MACs, with unit energies (read=1, write=2, update=3 pJ; MAC=0.5 pJ);
    ``sparse`` is appended as YAML (a ``sparse_optimizations:`` block). The MACs latch ``latch``
    (operand_latch; ``"[]"`` for none, Timeloop's default) and drains are charged as reads of the
    buffer when ``drain_reads`` (as the hand-derived counts of these tests assume)."""
    text = f"""\
version: 0.1
architecture:
  name: {name}
  clock_hz: 1.0e+9
  drain_reads: {str(drain_reads).lower()}
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
    attributes: {{energy_per_mac: 0.5, operand_latch: {latch}}}
""" + sparse
    path = tmp_path / f"{name}_{capacity}_{dram_bw}_{buf_bw}_{macs}_{abs(hash((sparse, latch, drain_reads)))}.yaml"
    path.write_text(text)
    return load_architecture(path)


#: The GEMM the sparse-design tests compare designs on (big enough to be compute-bound on tc).
SHAPE = {"M": 256, "K": 1024, "N": 256}


def problem(a: str | None = None, b: str | None = None) -> Problem:
    """The :data:`SHAPE` GEMM with A (weights) and B (inputs) densities in the pattern notation."""
    return Problem("gemm", **SHAPE, a_density=a, b_density=b)


def tc_best_mapping() -> Mapping:
    """TC's EDP-best mapping: the sparse designs are compared on the same dataflow (thesis 4.9.1)."""
    return map_layer(load_architecture("tc"), problem(), budget=3000, seed=0).best.mapping


def ev(design: str, mapping: Mapping, a: str | None = None, b: str | None = None) -> Evaluation:
    """``design`` on the :data:`SHAPE` GEMM with ``mapping``."""
    return evaluate(load_architecture(design), problem(a, b), mapping)
