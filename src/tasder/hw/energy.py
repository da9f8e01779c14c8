"""Energy per action, from a cited table (``data/energy_45nm.yaml``), interpolated and scaled.

Rules (documented in docs/hw_spec.md, kept simple on purpose so they can be checked by hand):

* **SRAM/register file by size**: energy per 64-bit access is interpolated linearly in
  log(energy) over log(capacity in bytes) between the table points, and extrapolated with the
  slope of the nearest segment (so an 8 KB → 32 KB doubling of energy per 4× size continues
  below 8 KB: 2 KB costs 5 pJ, 512 B 2.5 pJ).
* **By word width**: an access of ``b`` bits costs ``b/64`` of a 64-bit one (wire/bitline energy is
  proportional to bits moved).
* **DRAM**: a flat energy per 64-bit access, scaled by bits; not scaled by technology (it is
  dominated by the off-chip interface).
* **Technology node**: on-chip entries scale linearly with feature size, ``E(n) = E45 · n/45``
  (switched capacitance ∝ feature size at a fixed 0.9 V supply; a first-order rule, no voltage
  scaling assumed).
* **MAC**: one multiply of the operand type plus one add of the accumulator type.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from tasder.hw.spec import SpecError, check_keys, check_version, get_float, load_yaml

__all__ = ["DATATYPES", "EnergyTable", "default_energy_table", "load_energy_table"]

#: Datatypes with arithmetic entries: operand and accumulator types of a MAC.
DATATYPES: tuple[str, ...] = ("int8", "int32", "fp16", "fp32")


@dataclass(frozen=True)
class EnergyTable:
    """Per-action energies (pJ) at ``technology_nm``; look-ups scale them to a target node."""

    technology_nm: float
    arithmetic: dict[str, float]
    sram_points: tuple[tuple[float, float], ...]  # (bytes, pJ per 64-bit access), sorted by size
    dram_64bit: float
    source: str = ""
    overrides: dict[str, float] = field(default_factory=dict)

    def _scale(self, node_nm: float) -> float:
        return node_nm / self.technology_nm

    def sram_access(self, capacity_bytes: float, bits: float, node_nm: float = 45.0) -> float:
        """pJ for one access of ``bits`` bits to an on-chip buffer of ``capacity_bytes``."""
        if capacity_bytes <= 0 or bits <= 0:
            raise ValueError(f"sram_access: capacity_bytes and bits must be > 0; got {capacity_bytes}, {bits}")
        pts = self.sram_points
        x = math.log(capacity_bytes)
        if len(pts) == 1:
            e64 = pts[0][1]
        else:
            i = 0
            while i < len(pts) - 2 and x > math.log(pts[i + 1][0]):
                i += 1
            (x0, y0), (x1, y1) = [(math.log(s), math.log(e)) for s, e in (pts[i], pts[i + 1])]
            e64 = math.exp(y0 + (y1 - y0) * (x - x0) / (x1 - x0))
        return e64 * bits / 64.0 * self._scale(node_nm)

    def dram_access(self, bits: float) -> float:
        """pJ for one DRAM access of ``bits`` bits (not technology-scaled)."""
        return self.dram_64bit * bits / 64.0

    def mac(self, operand: str, accumulator: str, node_nm: float = 45.0) -> float:
        """pJ for one multiply-accumulate: ``<operand>_mult`` + ``<accumulator>_add``."""
        for dt in (operand, accumulator):
            if dt not in DATATYPES:
                raise ValueError(f"unknown datatype {dt!r}; known: {', '.join(DATATYPES)}")
        return (self.arithmetic[f"{operand}_mult"] + self.arithmetic[f"{accumulator}_add"]) * self._scale(node_nm)


def _parse(path: Path | str) -> EnergyTable:
    doc = load_yaml(path)
    check_keys(doc, ("version", "technology_nm", "source", "arithmetic", "sram_64bit_read", "dram_64bit_access"),
               required=("version", "technology_nm", "arithmetic", "sram_64bit_read", "dram_64bit_access"))
    check_version(doc)
    arith = doc["arithmetic"]
    if not isinstance(arith, dict):
        raise SpecError(f"{doc.where('arithmetic')}: arithmetic must be a mapping of <type>_<op>: pJ")
    allowed = [f"{t}_{op}" for t in DATATYPES for op in ("add", "mult")]
    check_keys(arith, allowed, required=allowed)
    sram = doc["sram_64bit_read"]
    if not isinstance(sram, dict) or not sram:
        raise SpecError(f"{doc.where('sram_64bit_read')}: sram_64bit_read must map capacity in bytes to pJ")
    points = []
    for size, energy in sram.items():
        try:
            s, e = float(size), float(energy)
        except (TypeError, ValueError):
            raise SpecError(f"{sram.where(size)}: sram_64bit_read entries must be <bytes>: <pJ>") from None
        if not (math.isfinite(s) and math.isfinite(e)) or s <= 0 or e <= 0:  # NaN compares False: test it
            raise SpecError(f"{sram.where(size)}: sram_64bit_read sizes and energies must be finite numbers > 0; "
                            f"got {size!r}: {energy!r}")
        points.append((s, e))
    return EnergyTable(
        technology_nm=get_float(doc, "technology_nm"),
        arithmetic={k: get_float(arith, k, allow_zero=True) for k in allowed},
        sram_points=tuple(sorted(points)),
        dram_64bit=get_float(doc, "dram_64bit_access", allow_zero=True),
        source=str(doc.get("source", "")),
    )


@lru_cache(maxsize=8)
def load_energy_table(path: str) -> EnergyTable:
    """An energy table from a YAML file in the format of ``data/energy_45nm.yaml``."""
    return _parse(path)


def default_energy_table() -> EnergyTable:
    """The shipped 45 nm table (Horowitz, ISSCC 2014)."""
    ref = resources.files("tasder.hw") / "data" / "energy_45nm.yaml"
    with resources.as_file(ref) as p:
        return load_energy_table(str(p))
