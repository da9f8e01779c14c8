"""Area of a design, per component, from a cited 45 nm table (``data/area_45nm.yaml``).

Why next to energy and delay: a design-space sweep that only minimises EDP always buys the
biggest buffers and the most MACs; the front that matters is EDP (or energy, or latency) against
silicon area. The rules, kept as simple as the energy table's so they can be checked by hand:

* **MACs**: ``instances × (<datatype>_mult + <accumulator>_add)`` (Horowitz's 45 nm areas; the
  same operator split as the MAC energy).
* **SRAM and register files**: ``instances × capacity × word_bits × a(bytes)``, ``a`` the area per
  bit of an array of that size: log(a) interpolated linearly in log(bytes) between the table's
  CACTI points and extrapolated with the nearest segment's slope (bigger arrays amortise their
  periphery, so ``a`` falls slowly with size). Bandwidth (ports, banks) is not priced: our sources
  give no per-port figure, and a guessed one would steer every sweep.
* **DRAM**: off chip, zero.
* **Sparse support** the papers quantify: TASD units (≤ 2 % of the PE area: MACs plus the
  innermost storage level) on designs that run TASD series; HighLight's hierarchical SAFs (5.7 %
  of the design) on designs that list a multi-rank pattern.
* **Technology**: areas scale with the square of the feature size, ``A(n) = A45 · (n/45)²``.

>>> from tasder.hw import load_architecture
>>> from tasder.hw.area import area_breakdown
>>> b = area_breakdown(load_architecture("tc"))
>>> sorted(b.components)
['L1', 'L2', 'MAC', 'RF']
>>> round(b.mm2, 1)
10.8
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasder.hw.energy import DATATYPES
from tasder.hw.spec import SpecError, check_keys, check_version, get_float, get_str, load_yaml

if TYPE_CHECKING:
    from tasder.hw.architecture import Architecture

__all__ = ["OVERHEADS", "AreaBreakdown", "AreaTable", "area_breakdown", "area_mm2", "default_area_table",
           "load_area_table"]

#: Sparse-support overheads the table may price, and what each is a fraction of.
OVERHEADS: dict[str, str] = {"tasd_units": "pe", "hss_saf": "design"}


@dataclass(frozen=True)
class AreaTable:
    """Areas (µm²) at ``technology_nm``; look-ups scale them to a target node."""

    technology_nm: float
    arithmetic: dict[str, float]
    sram_points: tuple[tuple[float, float], ...]  # (array bytes, µm² per bit), sorted by size
    dram_um2: float = 0.0
    overheads: dict[str, float] = field(default_factory=dict)  # name → fraction (see OVERHEADS)
    sources: dict[str, str] = field(default_factory=dict)

    def _scale(self, node_nm: float) -> float:
        return (node_nm / self.technology_nm) ** 2

    def sram_bit_um2(self, capacity_bytes: float, node_nm: float = 45.0) -> float:
        """µm² per bit of an on-chip array of ``capacity_bytes``."""
        if not capacity_bytes > 0:
            raise ValueError(f"sram_bit_um2: capacity_bytes must be > 0; got {capacity_bytes}")
        pts = self.sram_points
        if len(pts) == 1:
            return pts[0][1] * self._scale(node_nm)
        x = math.log(capacity_bytes)
        i = 0
        while i < len(pts) - 2 and x > math.log(pts[i + 1][0]):
            i += 1
        (x0, y0), (x1, y1) = [(math.log(s), math.log(a)) for s, a in (pts[i], pts[i + 1])]
        return math.exp(y0 + (y1 - y0) * (x - x0) / (x1 - x0)) * self._scale(node_nm)

    def mac_um2(self, operand: str, accumulator: str, node_nm: float = 45.0) -> float:
        """µm² of one MAC: a multiplier of ``operand`` plus an adder of ``accumulator``."""
        for dt in (operand, accumulator):
            if dt not in DATATYPES:
                raise ValueError(f"unknown datatype {dt!r}; known: {', '.join(DATATYPES)}")
        return (self.arithmetic[f"{operand}_mult"] + self.arithmetic[f"{accumulator}_add"]) * self._scale(node_nm)


@dataclass(frozen=True)
class AreaBreakdown:
    """µm² per component (storage levels by name, the compute level by name, overheads by
    :data:`OVERHEADS` key), each over all its instances."""

    design: str
    components: dict[str, float]

    @property
    def um2(self) -> float:
        return float(sum(self.components.values()))

    @property
    def mm2(self) -> float:
        return self.um2 * 1e-6

    def to_dict(self) -> dict[str, Any]:
        """``{"area_mm2": total, "area_breakdown_mm2": {component: mm²}}`` for reports."""
        return {"area_mm2": self.mm2, "area_breakdown_mm2": {k: v * 1e-6 for k, v in self.components.items()}}


def _is_hss(arch: Architecture) -> bool:
    """Whether the engine lists a hierarchical pattern: two or more ranks that prune (G < H)."""
    if arch.sparse is None:
        return False
    return any(sum(1 for g, h in ranks if g < h) >= 2
               for patterns in arch.sparse.structured_support.values() for ranks in patterns)


def _runs_tasd(arch: Architecture) -> bool:
    """Whether the design has TASD units: it runs series term by term or decomposes at run time."""
    return arch.sparse is not None and (arch.sparse.term_loop is not None or arch.sparse.tasd_unit_energy > 0)


def area_breakdown(arch: Architecture, table: AreaTable | None = None) -> AreaBreakdown:
    """The area of every component of ``arch`` (see the module doc for the rules)."""
    table = table or default_area_table()
    node = arch.technology_nm
    parts: dict[str, float] = {}
    for lv in arch.levels:
        if lv.cls == "DRAM":
            continue  # off chip
        bits = float(lv.capacity or 0) * lv.word_bits
        parts[lv.name] = lv.instances * bits * table.sram_bit_um2(bits / 8.0, node)
    c = arch.compute
    parts[c.name] = c.instances * table.mac_um2(c.datatype, c.accumulator, node)
    if _runs_tasd(arch) and "tasd_units" in table.overheads:
        innermost = arch.levels[-1].name
        pe = parts[c.name] + parts.get(innermost, 0.0)
        parts["tasd_units"] = table.overheads["tasd_units"] * pe
    if _is_hss(arch) and "hss_saf" in table.overheads:
        f = table.overheads["hss_saf"]
        parts["hss_saf"] = f / (1.0 - f) * sum(parts.values())
    return AreaBreakdown(arch.name, parts)


def area_mm2(arch: Architecture, table: AreaTable | None = None) -> float:
    """Total area of ``arch`` in mm² (:func:`area_breakdown`)."""
    return area_breakdown(arch, table).mm2


def _parse(path: Path | str) -> AreaTable:
    doc = load_yaml(path)
    keys = ("version", "technology_nm", "sources", "arithmetic_um2", "sram_um2_per_bit", "dram_um2",
            "sparse_overheads")
    check_keys(doc, keys, required=("version", "technology_nm", "arithmetic_um2", "sram_um2_per_bit"))
    check_version(doc)
    arith = doc["arithmetic_um2"]
    if not isinstance(arith, dict):
        raise SpecError(f"{doc.where('arithmetic_um2')}: arithmetic_um2 must be a mapping of <type>_<op>: µm²")
    allowed = [f"{t}_{op}" for t in DATATYPES for op in ("add", "mult")]
    check_keys(arith, allowed, required=allowed)
    sram = doc["sram_um2_per_bit"]
    if not isinstance(sram, dict) or not sram:
        raise SpecError(f"{doc.where('sram_um2_per_bit')}: sram_um2_per_bit must map array bytes to µm² per bit")
    points = []
    for size, value in sram.items():
        try:
            s, a = float(size), float(value)
        except (TypeError, ValueError):
            raise SpecError(f"{sram.where(size)}: sram_um2_per_bit entries must be <bytes>: <µm² per bit>") from None
        if not (s > 0 and a > 0 and math.isfinite(s) and math.isfinite(a)):
            raise SpecError(f"{sram.where(size)}: sram_um2_per_bit sizes and areas must be finite and > 0")
        points.append((s, a))
    overheads: dict[str, float] = {}
    node = doc.get("sparse_overheads") or {}
    if not isinstance(node, dict):
        raise SpecError(f"{doc.where('sparse_overheads')}: sparse_overheads must be a mapping")
    check_keys(node, list(OVERHEADS))
    for name, entry in node.items():
        if not isinstance(entry, dict):
            raise SpecError(f"{node.where(name)}: sparse_overheads.{name} must be {{fraction: F, of: "
                            f"{OVERHEADS[name]}}}")
        check_keys(entry, ("fraction", "of"), required=("fraction", "of"))
        get_str(entry, "of", choices=(OVERHEADS[name],))
        frac = get_float(entry, "fraction", allow_zero=True)
        if frac >= 1.0:
            raise SpecError(f"{entry.where('fraction')}: sparse_overheads.{name}.fraction must be < 1; got {frac}")
        overheads[name] = frac
    sources = doc.get("sources") or {}
    if not isinstance(sources, dict):
        raise SpecError(f"{doc.where('sources')}: sources must map section names to citations")
    return AreaTable(
        technology_nm=get_float(doc, "technology_nm"),
        arithmetic={k: get_float(arith, k, allow_zero=True) for k in allowed},
        sram_points=tuple(sorted(points)),
        dram_um2=get_float(doc, "dram_um2", 0.0, allow_zero=True),
        overheads=overheads,
        sources={str(k): str(v) for k, v in sources.items()},
    )


@lru_cache(maxsize=8)
def load_area_table(path: str) -> AreaTable:
    """An area table from a YAML file in the format of ``data/area_45nm.yaml``."""
    return _parse(path)


def default_area_table() -> AreaTable:
    """The shipped 45 nm table (Horowitz ISSCC 2014 operators, CACTI arrays from the Sparseloop artifact)."""
    ref = resources.files("tasder.hw") / "data" / "area_45nm.yaml"
    with resources.as_file(ref) as p:
        return load_area_table(str(p))
