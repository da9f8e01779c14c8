"""Architectures: an ordered storage hierarchy above a MAC array, loaded from Timeloop-like YAML.

Levels are listed outermost first (DRAM → … → register file); ``instances`` is the total count
of a level, so the spatial fan-out from a level to the one below is the ratio of their
instance counts (Timeloop's ``name[0..N-1]`` convention, written as a number). Per-action
energies come from the energy table (by class, capacity, access width and technology node)
unless the spec overrides them. See docs/hw_spec.md for the format.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tasder.hw.energy import DATATYPES, EnergyTable, default_energy_table
from tasder.hw.sparse import SparseSpec, parse_sparse_spec
from tasder.hw.spec import (
    SpecError,
    SpecMap,
    check_keys,
    check_version,
    get_bool,
    get_float,
    get_int,
    get_str,
    load_yaml,
)
from tasder.hw.workload import TENSORS

__all__ = ["Architecture", "ComputeLevel", "StorageLevel", "architecture_from_doc", "design_path", "list_designs",
           "load_architecture"]

STORAGE_CLASSES = ("DRAM", "SRAM", "regfile")
#: Most instances of a level or MACs in the array: 2**32 is thousands of times any real chip's
#: count, and keeps fan-out products inside the mapper's 64-bit integers.
MAX_INSTANCES = 2**32
_WHY_INSTANCES = "thousands of times any real chip's count; larger ones overflow the mapper's 64-bit integers"
#: Widest word: 1024 bits is beyond any datatype (fp64 is 64); the energy table scales with it.
MAX_WORD_BITS = 1024
#: Fastest clock: 10 THz, far above any clocked digital design (cycles → seconds → EDP).
MAX_CLOCK_HZ = 1e13
_STORAGE_KEYS = ("name", "class", "instances", "attributes", "constraints")
_STORAGE_ATTRS = ("capacity", "read_bandwidth", "write_bandwidth", "block_size", "word_bits",
                  "read_energy", "write_energy", "update_energy", "leakage_power")
_COMPUTE_KEYS = ("name", "class", "instances", "attributes")
_COMPUTE_ATTRS = ("datatype", "accumulator", "energy_per_mac", "operand_latch")


@dataclass(frozen=True)
class StorageLevel:
    """One buffer level. Capacities and bandwidths are in words (of ``word_bits``), per instance.

    Energies are pJ per *access* of ``block_size`` words; ``leakage_power`` is pJ per cycle per
    instance. ``keep`` lists the tensors the level holds; the others bypass it.
    """

    name: str
    cls: str
    instances: int
    capacity: int | None
    read_bandwidth: float
    write_bandwidth: float
    block_size: int
    word_bits: int
    read_energy: float
    write_energy: float
    update_energy: float
    leakage_power: float
    keep: tuple[str, ...]


@dataclass(frozen=True)
class ComputeLevel:
    """The MAC array: ``instances`` MACs, each one MAC per cycle.

    ``latch`` lists the tensors each MAC holds one word of between MACs (``operand_latch`` in the
    spec): an operand latch keeps A or B while the loops inside its innermost relevant loop run,
    an accumulator keeps the partial sum of Z while a reduction loop runs innermost. Without it
    (the default, as Timeloop v3.0.3's arithmetic level, which stores nothing) every MAC reads
    its operands from, and updates Z in, the innermost storage level that keeps them
    (docs/design.md §4.4).
    """

    name: str
    instances: int
    energy_per_mac: float
    datatype: str = "fp16"
    accumulator: str = "fp32"
    latch: tuple[str, ...] = ()


@dataclass(frozen=True)
class Architecture:
    """A storage hierarchy (outermost first) above a compute level, at ``clock_hz``."""

    name: str
    levels: tuple[StorageLevel, ...]
    compute: ComputeLevel
    clock_hz: float = 1e9
    technology_nm: float = 45.0
    #: Sparse acceleration features (formats, gating, skipping); None = a dense design.
    sparse: SparseSpec | None = None
    #: Dataflow the design imposes on the mapper (e.g. DSTC's outer product): level → fixed loop
    #: order, and level → dims that may be spatial. User constraints override per level.
    mapper_orders: tuple[tuple[str, str], ...] = ()
    mapper_spatial: tuple[tuple[str, str], ...] = ()
    #: How a Z tile drained up to its parent is charged at the level it leaves: False (the
    #: default, Timeloop v3.0.3) counts it (``drain``) but charges only the parent's update; True
    #: charges it as a read of the level it leaves (its read energy and read-port time).
    drain_reads: bool = False

    def __post_init__(self) -> None:
        if not self.levels:
            raise ValueError(f"architecture {self.name!r} has no storage levels")
        if self.levels[0].capacity is not None or self.levels[0].instances != 1:
            raise ValueError(f"architecture {self.name!r}: the outermost level {self.levels[0].name!r} must be "
                             f"unbounded (no capacity) with 1 instance: it holds the whole workload")
        if set(self.levels[0].keep) != set(TENSORS):
            raise ValueError(f"architecture {self.name!r}: the outermost level must keep A, B and Z")
        counts = [lv.instances for lv in self.levels] + [self.compute.instances]
        names = [lv.name for lv in self.levels] + [self.compute.name]
        for i in range(len(counts) - 1):
            if counts[i + 1] % counts[i]:
                raise ValueError(f"architecture {self.name!r}: {names[i + 1]} has {counts[i + 1]} instances, not a "
                                 f"multiple of {names[i]}'s {counts[i]}; the fan-out must be a whole number")
        if len(set(names)) != len(names):
            raise ValueError(f"architecture {self.name!r}: level names must be unique; got {names}")
        bad = [t for t in self.compute.latch if t not in TENSORS]
        if bad:
            raise ValueError(f"architecture {self.name!r}: the operand latch holds tensors of {', '.join(TENSORS)}; "
                             f"got {bad[0]!r}")

    @property
    def fanouts(self) -> tuple[int, ...]:
        """Spatial fan-out from each storage level to the level below it (compute for the last)."""
        counts = [lv.instances for lv in self.levels] + [self.compute.instances]
        return tuple(counts[i + 1] // counts[i] for i in range(len(self.levels)))

    def level_index(self, name: str) -> int:
        for i, lv in enumerate(self.levels):
            if lv.name == name:
                return i
        raise ValueError(f"architecture {self.name!r} has no storage level {name!r}; "
                         f"levels: {', '.join(lv.name for lv in self.levels)}")


def _storage(node: dict, i: int, default_bits: int, node_nm: float, table: EnergyTable,
             where: str) -> StorageLevel:
    if not isinstance(node, dict):
        raise SpecError(f"{where}: architecture.storage[{i}] must be a mapping")
    check_keys(node, _STORAGE_KEYS, required=("name", "class"))
    name = get_str(node, "name")
    cls = get_str(node, "class", choices=STORAGE_CLASSES)
    attrs = node.get("attributes") or {}
    if not isinstance(attrs, dict):
        raise SpecError(f"{node.where('attributes')}: {name}.attributes must be a mapping")
    check_keys(attrs, _STORAGE_ATTRS, required=("read_bandwidth",))
    bits = get_int(attrs, "word_bits", default_bits, maximum=MAX_WORD_BITS, why="wider than any datatype")
    block = get_int(attrs, "block_size", 1)
    capacity = get_int(attrs, "capacity")
    if cls == "DRAM":
        if capacity is not None:
            raise SpecError(f"{attrs.where('capacity')}: {name} is DRAM (unbounded); remove its capacity")
        e_access = table.dram_access(block * bits)
    else:
        if capacity is None:
            raise SpecError(f"{attrs.where()}: {name} ({cls}) needs attributes.capacity in words")
        e_access = table.sram_access(capacity * bits / 8, block * bits, node_nm)
    read_e = get_float(attrs, "read_energy", e_access, allow_zero=True)
    write_e = get_float(attrs, "write_energy", e_access, allow_zero=True)
    constraints = node.get("constraints") or {}
    if not isinstance(constraints, dict):
        raise SpecError(f"{node.where('constraints')}: {name}.constraints must be a mapping")
    check_keys(constraints, ("keep", "bypass"))
    keep = set(TENSORS)
    for key in ("keep", "bypass"):
        if key in constraints:
            value = constraints[key]
            if not isinstance(value, list) or any(v not in TENSORS for v in value):
                raise SpecError(f"{constraints.where(key)}: {name}.constraints.{key} must be a list of "
                                f"tensors from {', '.join(TENSORS)}; got {value!r}")
            keep = set(value) if key == "keep" else keep - set(value)
    read_bw = get_float(attrs, "read_bandwidth")
    return StorageLevel(
        name=name, cls=cls, instances=get_int(node, "instances", 1, maximum=MAX_INSTANCES, why=_WHY_INSTANCES),
        capacity=capacity,
        read_bandwidth=read_bw, write_bandwidth=get_float(attrs, "write_bandwidth", read_bw),
        block_size=block, word_bits=bits, read_energy=read_e, write_energy=write_e,
        update_energy=get_float(attrs, "update_energy", write_e, allow_zero=True),
        leakage_power=get_float(attrs, "leakage_power", 0.0, allow_zero=True),
        keep=tuple(t for t in TENSORS if t in keep),
    )


def load_architecture(source: str | Path, energy_table: EnergyTable | None = None) -> Architecture:
    """Load an architecture YAML file, or a shipped design by name (``tc``; see :func:`list_designs`).

    Raises:
        SpecError: unknown keys, wrong types, bad values — with file, line and key path.
    """
    path = Path(source)
    if not path.is_file():
        if str(source) not in list_designs():
            raise SpecError(f"architecture {str(source)!r}: no such file and no shipped design of that name "
                            f"(designs: {', '.join(list_designs())})")
        path = _designs_dir() / f"{source}.yaml"
    return architecture_from_doc(load_yaml(path), energy_table, name=path.stem)


def architecture_from_doc(doc: SpecMap, energy_table: EnergyTable | None = None, *,
                          name: str = "architecture") -> Architecture:
    """An architecture from a parsed spec document (:func:`~tasder.hw.spec.load_yaml`'s result, or a
    copy of one edited in memory, as design sweeps make); ``name`` when the spec gives none.

    Raises:
        SpecError: as :func:`load_architecture`.
    """
    check_keys(doc, ("version", "architecture", "sparse_optimizations", "mapper_constraints"),
               required=("version", "architecture"))
    check_version(doc)
    arch = doc["architecture"]
    if not isinstance(arch, dict):
        raise SpecError(f"{doc.where('architecture')}: architecture must be a mapping")
    check_keys(arch, ("name", "technology_nm", "clock_hz", "word_bits", "drain_reads", "storage", "compute"),
               required=("storage", "compute"))
    table = energy_table or default_energy_table()
    node_nm = get_float(arch, "technology_nm", table.technology_nm)
    bits = get_int(arch, "word_bits", 16, maximum=MAX_WORD_BITS, why="wider than any datatype")
    storage = arch["storage"]
    if not isinstance(storage, list) or not storage:
        raise SpecError(f"{arch.where('storage')}: architecture.storage must be a non-empty list, outermost first")
    levels = tuple(_storage(node, i, bits, node_nm, table, arch.where("storage")) for i, node in enumerate(storage))
    _check_unique_names(storage, arch.get("compute"))
    comp = arch["compute"]
    if not isinstance(comp, dict):
        raise SpecError(f"{arch.where('compute')}: architecture.compute must be a mapping")
    check_keys(comp, _COMPUTE_KEYS, required=("name", "instances"))
    cattrs = comp.get("attributes") or {}
    if not isinstance(cattrs, dict):
        raise SpecError(f"{comp.where('attributes')}: compute.attributes must be a mapping")
    check_keys(cattrs, _COMPUTE_ATTRS)
    dtype = get_str(cattrs, "datatype", "fp16", choices=DATATYPES)
    acc = get_str(cattrs, "accumulator", "fp32", choices=DATATYPES)
    latch = cattrs.get("operand_latch") or []
    if not isinstance(latch, list) or any(t not in TENSORS for t in latch) or len(set(latch)) != len(latch):
        raise SpecError(f"{cattrs.where('operand_latch')}: compute.attributes.operand_latch must list tensors from "
                        f"{', '.join(TENSORS)} (each once); got {latch!r}")
    compute = ComputeLevel(name=get_str(comp, "name"), instances=get_int(comp, "instances", maximum=MAX_INSTANCES,
                                                                                why=_WHY_INSTANCES),
                           energy_per_mac=get_float(cattrs, "energy_per_mac", table.mac(dtype, acc, node_nm),
                                                    allow_zero=True),
                           datatype=dtype, accumulator=acc, latch=tuple(t for t in TENSORS if t in latch))
    sparse = None
    if doc.get("sparse_optimizations") is not None:
        node = doc["sparse_optimizations"]
        if not isinstance(node, dict):
            raise SpecError(f"{doc.where('sparse_optimizations')}: sparse_optimizations must be a mapping")
        sparse = parse_sparse_spec(node, [lv.name for lv in levels], compute.name)
    orders: dict[str, str] = {}
    spatial: dict[str, str] = {}
    mc = doc.get("mapper_constraints")
    if mc is not None:
        if not isinstance(mc, dict):
            raise SpecError(f"{doc.where('mapper_constraints')}: mapper_constraints must be a mapping")
        check_keys(mc, ("orders", "spatial_dims"))
        names = [lv.name for lv in levels]
        for key, out in (("orders", orders), ("spatial_dims", spatial)):
            node = mc.get(key) or {}
            if not isinstance(node, dict):
                raise SpecError(f"{mc.where(key)}: mapper_constraints.{key} must map level names to dims")
            check_keys(node, names)
            for lvl in node:
                value = get_str(node, lvl)
                bad = (sorted(value) != ["K", "M", "N"]) if key == "orders" else any(c not in "MKN" for c in value)
                if bad:
                    raise SpecError(f"{node.where(lvl)}: mapper_constraints.{key}.{lvl}={value!r} must be "
                                    + ("a permutation of MKN" if key == "orders" else "made of M, K, N"))
                out[lvl] = value
    clock_hz = get_float(arch, "clock_hz", 1e9, maximum=MAX_CLOCK_HZ, why="10 THz: beyond any clocked design")
    name = get_str(arch, "name", name)
    try:
        return Architecture(name=name, levels=levels, compute=compute, clock_hz=clock_hz, technology_nm=node_nm,
                            sparse=sparse, mapper_orders=tuple(orders.items()), mapper_spatial=tuple(spatial.items()),
                            drain_reads=get_bool(arch, "drain_reads", False))
    except ValueError as exc:
        raise SpecError(f"{arch.where()}: {exc}") from None


def _check_unique_names(storage: list, compute: object) -> None:
    """Level names are how mappings, constraints and reports refer to levels: a second level of
    the same name is an error at its own line (not at the architecture's)."""
    seen: dict[str, str] = {}
    for node in [*storage, compute]:
        if isinstance(node, SpecMap) and isinstance(node.get("name"), str):
            name = node["name"]
            if name in seen:
                raise SpecError(f"{node.where('name')}: a second level named {name!r} (the first is at {seen[name]}); "
                                f"level names must be unique")
            seen[name] = node.where("name")


def _designs_dir() -> Path:
    return Path(__file__).parent / "designs"


def design_path(name: str) -> Path:
    """The YAML file of the shipped design ``name`` (which need not exist: check :func:`list_designs`)."""
    return _designs_dir() / f"{name}.yaml"


def list_designs() -> list[str]:
    """Names of the designs shipped under ``tasder/hw/designs/``."""
    return sorted(p.stem for p in _designs_dir().glob("*.yaml"))
