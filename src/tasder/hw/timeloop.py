"""Timeloop/Sparseloop specs in: ``load_timeloop(files...)`` → tasder's architecture, problem and mapping.

Reads what ``timeloop-model`` v3.0.3 reads (docs/timeloop.md; the format reference is Timeloop's
own parser, summarised in the issue's digest): the v0.3 architecture tree (``subtree``/``local``,
``Name[a..b]`` instance ranges; levels of the v0.4 transpiler's ``inter_*_spatial`` dummies are
collapsed), the v0.4 ``nodes`` list (containers with ``spatial`` meshes, components), ``ERT``
(energy per vector access), ``problem`` (any shape: Timeloop's ``cnn-layer`` becomes a native
convolution with Timeloop's K as our M; the GEMM shape a GEMM), ``mapping`` (permutations
innermost first, factors, ``datatype``/``bypass`` keep lists), ``sparse_optimizations`` (formats
U/B/CP/RLE/UOP per rank, gating/skipping with target and condition-on, compute optimisations),
densities, and the ``tasder:`` section :mod:`tasder.hw.timeloop_export` writes for what Timeloop
has no key for (Timeloop ignores it).

Why one module of its own: Timeloop's format binds things tasder keeps apart (the mapping
decides what a level keeps; an operand latch is a per-MAC register level; an ERT gives energies
per vector access) and the other way round, so the translation rules live in one place, each
with the reason. Whatever tasder cannot represent is refused with the file, the line, the key's
path and the reason — never dropped — and a refused file writes nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tasder.errors import InvalidParameterError
from tasder.hw.architecture import Architecture, ComputeLevel, StorageLevel
from tasder.hw.density import DenseModel, DensityModel, UniformModel, density_model
from tasder.hw.energy import DATATYPES, EnergyTable, default_energy_table
from tasder.hw.formats import FORMATS, Format, RankFormat
from tasder.hw.mapping import Mapping, MappingError, check_mapping
from tasder.hw.sparse import SAF, SparseSpec, parse_sparse_spec
from tasder.hw.spec import SpecError, SpecMap, load_yaml
from tasder.hw.workload import TENSORS, Problem, ProblemShape, conv_problem

__all__ = ["EXTENSION_KEY", "TimeloopSpec", "load_timeloop"]

#: Top-level key of the section tasder writes for what Timeloop has no key for (Timeloop ignores it).
EXTENSION_KEY = "tasder"
#: The extension section's format version.
EXTENSION_VERSION = "0.1"

_TOP_KEYS = ("architecture", "arch", "problem", "mapping", "sparse_optimizations", "ERT", "ART", "model",
             "architecture_constraints", "arch_constraints", "mapspace_constraints", "mapspace", "mapper",
             "variables", "components", "globals", "compound_components", EXTENSION_KEY)
#: Top-level keys that only the mapper, Accelergy or timeloopfe read: they do not change a model run.
_IGNORED_TOP = ("ART", "model", "mapper", "mapspace", "mapspace_constraints", "components", "globals",
                "compound_components")

_RANGE = re.compile(r"^(?P<base>.*?)\[(?P<lo>\d+)\.\.(?P<hi>\d+)\]$")
_STORAGE_WORDS = ("DRAM", "SRAM", "regfile", "smartbuffer", "storage")
_COMPUTE_WORDS = ("mac", "intmac", "fpmac", "compute")
_NETWORK_WORDS = ("XY_NoC", "Legacy", "ReductionTree", "SimpleMulticast")

# Storage attributes Timeloop's buffer model reads and tasder maps (underscore spellings: the loader
# turns hyphens into underscores). Others are Accelergy's (technology, type, n_rdwr_ports, ...) and
# ignored by Timeloop's model, so by tasder too.
_REFUSED_ATTRS = {
    "multiple_buffering": "tasder's capacity check has no multiple-buffering factor (tiles are checked against "
                          "the whole capacity)",
    "allow_overbooking": "tasder rejects a mapping whose tiles overflow a level; it has no overbooking model",
    "tile_partition_supported": "Timeloop v3.0.3 itself exits on it ('not supported')",
    "network_read": "tasder models no networks (docs/design.md §4.12)",
    "network_fill": "tasder models no networks (docs/design.md §4.12)",
    "network_drain": "tasder models no networks (docs/design.md §4.12)",
    "network_update": "tasder models no networks (docs/design.md §4.12)",
    "addr_gen_energy": "tasder models no address generation energy",
    "cluster_size": "tasder has no clustered (wide-row) buffers",
}


#: The value of a refused attribute that changes nothing (accepted).
_NEUTRAL: dict[str, Any] = {"multiple_buffering": 1, "allow_overbooking": False, "tile_partition_supported": False,
                            "cluster_size": 1}


@dataclass(frozen=True)
class TimeloopSpec:
    """What a set of Timeloop files describes, as tasder objects.

    ``problem`` and ``mapping`` are None when the files have no ``problem``/``mapping``;
    ``notes`` says what was translated by a stated rule (e.g. a per-MAC register level read as the
    operand latch) so that a user sees every such decision.
    """

    architecture: Architecture
    problem: Problem | None = None
    mapping: Mapping | None = None
    sources: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())


# ------------------------------------------------------------------------------------------------
# Small helpers: every error names file:line and the key path
# ------------------------------------------------------------------------------------------------


def _at(node: Any, key: str | None = None) -> str:
    if isinstance(node, SpecMap):
        return node.where(key)
    return "<input>"


def _path(node: Any, key: str) -> str:
    base = getattr(node, "path", "")
    return f"{base}.{key}" if base else key


def _err(node: Any, key: str | None, msg: str) -> SpecError:
    where = _at(node, key)
    label = _path(node, key) if key is not None else (getattr(node, "path", "") or "the top level")
    return SpecError(f"{where}: {label}: {msg}")


def _keys(node: Any, allowed: tuple[str, ...], what: str) -> None:
    """Refuse keys outside ``allowed`` (Timeloop ignores keys it does not read; a typo then changes
    the model silently, so tasder names it)."""
    for k in node:
        if k not in allowed:
            raise _err(node, k, f"unknown key in {what} (tasder reads {', '.join(allowed)})")


def _map(node: Any, key: str, required: bool = True) -> SpecMap | None:
    if key not in node or node[key] is None:
        if required:
            raise _err(node, None, f"missing the required key {key!r}")
        return None
    value = node[key]
    if not isinstance(value, dict):
        raise _err(node, key, f"must be a mapping; got {type(value).__name__}")
    return value


def _list(node: Any, key: str, required: bool = True) -> list:
    if key not in node or node[key] is None:
        if required:
            raise _err(node, None, f"missing the required key {key!r}")
        return []
    value = node[key]
    if not isinstance(value, list):
        raise _err(node, key, f"must be a list; got {type(value).__name__}")
    return value


def _first(node: dict, *keys: str) -> str | None:
    for k in keys:
        if k in node and node[k] is not None:
            return k
    return None


def _number(node: Any, key: str, *, integer: bool = False, minimum: float = 0.0) -> float:
    value = node[key]
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if ok and integer:
        ok = float(value).is_integer()
    if not ok or value < minimum:
        kind = "an integer" if integer else "a finite number"
        raise _err(node, key, f"must be {kind} ≥ {minimum:g}; got {value!r}")
    return int(value) if integer else float(value)


def _name_range(name: str) -> tuple[str, int]:
    """``PE[0..15]`` → (``PE``, 16); a plain name → (name, 1)."""
    m = _RANGE.match(name)
    if m is None:
        return name, 1
    lo, hi = int(m["lo"]), int(m["hi"])
    return m["base"], max(0, hi - lo + 1)


def _kind(cls: str) -> str | None:
    """Timeloop's class matching (case-sensitive substrings): storage, compute or network."""
    if any(w in cls for w in _STORAGE_WORDS):
        return "storage"
    if any(w in cls for w in _COMPUTE_WORDS):
        return "compute"
    if any(w in cls for w in _NETWORK_WORDS):
        return "network"
    return None


def _tech_nm(value: Any) -> float | None:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*nm\s*", str(value))
    return float(m.group(1)) if m else None


# ------------------------------------------------------------------------------------------------
# Architecture: the v0.3 tree and the v0.4 node list → flat components, outermost first
# ------------------------------------------------------------------------------------------------


@dataclass
class _Component:
    name: str
    cls: str
    kind: str
    attrs: dict[str, Any]
    instances: int
    node: SpecMap
    tech_nm: float | None = None


def _walk_v3(node: Any, mult: int, tech: float | None, out: list[_Component]) -> None:
    if not isinstance(node, dict):
        raise SpecError(f"{_at(node)}: an architecture subtree node must be a mapping")
    _keys(node, ("name", "attributes", "local", "subtree", "description"), "a subtree node")
    name = node.get("name")
    if not isinstance(name, str):
        raise _err(node, "name" if "name" in node else None, "each subtree node needs a string 'name'")
    _, count = _name_range(name)
    mult *= count
    attrs = node.get("attributes") or {}
    if not isinstance(attrs, dict):
        raise _err(node, "attributes", "must be a mapping")
    tech = _tech_nm(attrs["technology"]) if "technology" in attrs else tech
    for comp in _list(node, "local", required=False):
        if not isinstance(comp, dict):
            raise SpecError(f"{_at(node, 'local')}: {_path(node, 'local')}: each entry must be a mapping")
        _keys(comp, ("name", "class", "subclass", "attributes", "description", "required_actions"),
              "a component")
        cname, ccls = comp.get("name"), comp.get("class")
        if not isinstance(cname, str):
            raise _err(comp, None, "a component needs a string 'name'")
        if not isinstance(ccls, str):
            raise _err(comp, None if "class" not in comp else "class", f"component {cname!r} needs a string 'class'")
        base, ccount = _name_range(cname)
        cattrs = comp.get("attributes") or {}
        if not isinstance(cattrs, dict):
            raise _err(comp, "attributes", "must be a mapping")
        kind = _kind(ccls)
        if kind is None:
            raise _err(comp, "class", f"unknown class {ccls!r}: Timeloop's model reads storage (a class containing "
                                      f"{', '.join(_STORAGE_WORDS)}) and compute ({', '.join(_COMPUTE_WORDS)}) "
                                      f"components; a class it does not know it skips, which tasder refuses to do")
        instances = mult * ccount
        if "instances" in cattrs:
            instances = _number(cattrs, "instances", integer=True, minimum=1)
        ctech = _tech_nm(cattrs["technology"]) if "technology" in cattrs else tech
        out.append(_Component(base, ccls, kind, dict(cattrs), int(instances), comp, ctech))
    subtree = _list(node, "subtree", required=False)
    if len(subtree) > 1:
        raise _err(node, "subtree", f"lists {len(subtree)} children; Timeloop allows exactly one per subtree")
    for child in subtree:
        _walk_v3(child, mult, tech, out)


def _walk_v4(nodes: list, where: SpecMap, out: list[_Component]) -> None:
    mult = 1
    tech: float | None = None
    for i, node in enumerate(nodes):
        if not isinstance(node, dict):
            raise SpecError(f"{_at(where, 'nodes')}: architecture.nodes[{i}] must be a mapping")
        _keys(node, ("name", "class", "subclass", "attributes", "spatial", "constraints", "sparse_optimizations",
                     "enabled", "required_actions", "energy_scale", "area_scale", "description", "nodes"),
              "a v0.4 node")
        if "nodes" in node:
            raise _err(node, "nodes", "nested node lists (!Hierarchical, !Parallel, !Pipelined) are not read; "
                                      "list the nodes flat, outermost first")
        attrs = node.get("attributes") or {}
        if not isinstance(attrs, dict):
            raise _err(node, "attributes", "must be a mapping")
        fanout = 1
        spatial = node.get("spatial")
        if spatial is not None:
            if not isinstance(spatial, dict):
                raise _err(node, "spatial", "must be a mapping with meshX/meshY")
            for k in spatial:
                if k not in ("meshX", "meshY"):
                    raise _err(spatial, k, "unknown key; spatial takes meshX and meshY")
                fanout *= _number(spatial, k, integer=True, minimum=1)
        if "class" not in node:  # a !Container
            if "technology" in attrs:
                tech = _tech_nm(attrs["technology"])
            mult *= fanout
            continue
        cls = node["class"]
        name = node.get("name")
        if not isinstance(name, str) or not isinstance(cls, str):
            raise _err(node, None, "a component needs a string 'name' and 'class'")
        if node.get("enabled") is False:
            continue
        kind = _kind(cls)
        if kind is None:
            raise _err(node, "class", f"unknown class {cls!r}: Timeloop reads storage (class containing "
                                      f"{', '.join(_STORAGE_WORDS)}) and compute ({', '.join(_COMPUTE_WORDS)}) "
                                      f"components")
        for key in ("constraints", "sparse_optimizations"):
            if node.get(key):
                raise _err(node, key, "inline v0.4 constraints/sparse_optimizations are not read; give them as "
                                      "top-level mapping / sparse_optimizations entries with target: "
                                      f"{name}")
        ctech = _tech_nm(attrs["technology"]) if "technology" in attrs else tech
        # A component's own mesh multiplies the component itself (and everything below it).
        out.append(_Component(name, cls, kind, dict(attrs), mult * fanout, node, ctech))
        mult *= fanout


def _components(arch: SpecMap) -> list[_Component]:
    _keys(arch, ("version", "subtree", "nodes", "constraints"), "architecture")
    version = str(arch.get("version", ""))
    out: list[_Component] = []
    if version in ("0.4",) and "nodes" in arch:
        _walk_v4(_list(arch, "nodes"), arch, out)
    elif version in ("0.2", "0.3", "0.4"):
        subtree = _list(arch, "subtree")
        if len(subtree) != 1:
            raise _err(arch, "subtree", f"lists {len(subtree)} top nodes; Timeloop allows exactly one")
        _walk_v3(subtree[0], 1, None, out)
    else:
        raise _err(arch, "version" if "version" in arch else None,
                   f"version {arch.get('version')!r}: tasder reads the tree format (version 0.3, as 0.2) and "
                   f"the v0.4 node list; the legacy flat format (no version) is not read")
    return out


# ------------------------------------------------------------------------------------------------
# ERT
# ------------------------------------------------------------------------------------------------


def _ert(doc: SpecMap | None) -> dict[str, dict[str, float]]:
    """Component name → action → energy (the largest of repeated entries, as Timeloop keeps)."""
    if doc is None:
        return {}
    out: dict[str, dict[str, float]] = {}
    for i, table in enumerate(_list(doc, "tables")):
        if not isinstance(table, dict) or not isinstance(table.get("name"), str):
            raise SpecError(f"{_at(doc, 'tables')}: ERT.tables[{i}] needs a string 'name'")
        comp, _ = _name_range(table["name"].split(".")[-1])
        actions = out.setdefault(comp, {})
        for j, act in enumerate(_list(table, "actions")):
            if not isinstance(act, dict) or not isinstance(act.get("name"), str) or "energy" not in act:
                raise SpecError(f"{_at(table, 'actions')}: {_path(table, 'actions')}[{j}] needs 'name' and 'energy'")
            e = _number(act, "energy")
            actions[act["name"]] = max(e, actions.get(act["name"], e))
    return out


def _lookup(table: dict[str, float] | None, *names: str) -> float | None:
    if not table:
        return None
    for n in names:
        if n in table:
            return table[n]
    return None


# ------------------------------------------------------------------------------------------------
# Problem
# ------------------------------------------------------------------------------------------------

#: Timeloop's built-in ``cnn-layer`` shape (its problem-shapes/cnn-layer.yaml), by structure.
_CNN_DIMS = ("R", "S", "P", "Q", "C", "K", "N")


@dataclass
class _ProblemInfo:
    problem: Problem
    #: Timeloop dim name → tasder dim name (K → M for a CNN layer).
    dim_names: dict[str, str]
    #: data-space name → tensor (A, B, Z).
    tensors: dict[str, str]


def _projection(ds: SpecMap, dims: list[str], coefs: list[str]) -> tuple[tuple[tuple[str, str | None], ...], ...]:
    proj = ds.get("projection")
    if not isinstance(proj, list) or not proj:
        raise _err(ds, "projection" if "projection" in ds else None, "needs a non-empty projection list")
    ranks = []
    for rank in proj:
        if isinstance(rank, str):  # the flat form: one dim per rank
            rank = [[rank]]
        if not isinstance(rank, list) or not rank:
            raise _err(ds, "projection", f"a rank must be a list of [dim] or [dim, coefficient]; got {rank!r}")
        terms = []
        for term in rank:
            if not isinstance(term, list) or not 1 <= len(term) <= 2 or not all(isinstance(x, str) for x in term):
                raise _err(ds, "projection", f"a term must be [dim] or [dim, coefficient]; got {term!r}")
            d = [x for x in term if x in dims]
            c = [x for x in term if x not in dims]
            if len(d) != 1:
                raise _err(ds, "projection", f"term {term!r} names no dimension of {dims}")
            if c and c[0] not in coefs:
                raise _err(ds, "projection", f"term {term!r}: {c[0]!r} is neither a dimension nor a coefficient")
            terms.append((d[0], c[0] if c else None))
        ranks.append(tuple(terms))
    return tuple(ranks)


def _is_cnn(dims: list[str], proj: dict[str, Any], coef_names: set[str]) -> bool:
    if sorted(dims) != sorted(_CNN_DIMS):
        return False
    want_w = {(("C", None),), (("K", None),), (("R", None),), (("S", None),)}
    want_o = {(("N", None),), (("K", None),), (("Q", None),), (("P", None),)}
    a, b, z = proj["A"], proj["B"], proj["Z"]
    if set(a) != want_w or len(a) != 4 or set(z) != want_o or len(z) != 4 or len(b) != 4:
        return False
    want_i = [(("N", None),), (("C", None),), (("R", "Wdilation"), ("P", "Wstride")),
              (("S", "Hdilation"), ("Q", "Hstride"))]
    norm = [tuple(sorted(r)) for r in b]
    return sorted(norm) == sorted(tuple(sorted(r)) for r in want_i) and \
        {"Wstride", "Hstride", "Wdilation", "Hdilation"} <= coef_names


def _builtin_cnn_shape() -> dict[str, Any]:
    return {"name": "CNN-Layer", "dims": list(_CNN_DIMS),
            "coefs": {"Wstride": 1, "Hstride": 1, "Wdilation": 1, "Hdilation": 1},
            "spaces": [("Weights", ((("C", None),), (("K", None),), (("R", None),), (("S", None),)), False),
                       ("Inputs", ((("N", None),), (("C", None),), (("R", "Wdilation"), ("P", "Wstride")),
                                   (("S", "Hdilation"), ("Q", "Hstride"))), False),
                       ("Outputs", ((("N", None),), (("K", None),), (("Q", None),), (("P", None),)), True)]}


def _density(value: Any, node: Any, key: str, size: int) -> DensityModel:
    """A Timeloop density (a number = fixed-structured, or a distribution map) → a tasder model."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        dist, d = "fixed_structured", float(value)
    elif isinstance(value, dict):
        for k in value:
            if k not in ("distribution", "density", "workload_tensor_size", "band_width"):
                raise _err(value, k, "unknown key (a density takes distribution, density, workload_tensor_size)")
        dist = str(value.get("distribution", "fixed_structured")).replace("-", "_")
        if "density" not in value:
            raise _err(value, None, "missing the required key 'density'")
        d = _number(value, "density")
        if "workload_tensor_size" in value and _number(value, "workload_tensor_size", integer=True) != size:
            raise _err(value, "workload_tensor_size", f"tasder draws the nonzeros over the whole tensor ({size} "
                                                      f"words); another size has no tasder model")
        node, key = value, "density"
    else:
        raise _err(node, key, f"must be a density (a number or a distribution map); got {value!r}")
    if not 0.0 < d <= 1.0:
        raise _err(node, key, f"a density must be in (0, 1]; got {d!r}")
    if d == 1.0:
        return DenseModel()
    if dist == "hypergeometric":
        return UniformModel(d, size)
    if dist in ("fixed_structured", "fixed"):
        # Timeloop v3.0.3 has no G:H model; fixed-structured puts exactly density·size nonzeros in
        # every tile. tasder's nearest is the G:H rule of that density in lowest terms.
        frac = _fraction(d)
        if frac is None:
            raise _err(node, key, f"fixed-structured density {d!r} is not a fraction G/H with H ≤ 1024; tasder reads "
                                  f"fixed-structured as the G:H pattern of that density")
        return density_model(f"{frac[0]}:{frac[1]}")
    raise _err(node, key, f"distribution {dist!r} has no tasder model (tasder reads hypergeometric and "
                          f"fixed-structured; banded and real-data are not read)")


def _fraction(d: float) -> tuple[int, int] | None:
    from fractions import Fraction

    f = Fraction(d).limit_denominator(1024)
    if abs(float(f) - d) > 1e-12:
        return None
    return f.numerator, f.denominator


def _problem(doc: SpecMap, ext: SpecMap | None, name: str) -> _ProblemInfo:
    node = _map(doc, "problem")
    assert node is not None
    if "instance" in node:
        _keys(node, ("version", "shape", "instance"), "problem")
    shape_node = node.get("shape")
    if shape_node is None or shape_node in ("cnn-layer", "cnn_layer"):
        shape = _builtin_cnn_shape()
        where = node
    elif isinstance(shape_node, str):
        raise _err(node, "shape", f"{shape_node!r} names a shape file Timeloop looks up in its problem-shape "
                                  f"folders; write the shape inline (only 'cnn-layer' is built in)")
    elif isinstance(shape_node, dict):
        where = shape_node
        for k in shape_node:
            if k not in ("name", "dimensions", "coefficients", "data_spaces", "flatten"):
                raise _err(shape_node, k, "unknown key (a shape has name, dimensions, coefficients, data-spaces)")
        if shape_node.get("flatten"):
            raise _err(shape_node, "flatten", "flattened dimensions have no tasder form")
        dims = _list(shape_node, "dimensions")
        if not dims or not all(isinstance(d, str) for d in dims):
            raise _err(shape_node, "dimensions", "must list dimension names")
        coefs: dict[str, int] = {}
        for c in _list(shape_node, "coefficients", required=False):
            if not isinstance(c, dict) or not isinstance(c.get("name"), str):
                raise _err(shape_node, "coefficients", "each coefficient needs a 'name' (and a 'default')")
            coefs[c["name"]] = _number(c, "default", integer=True, minimum=1) if "default" in c else 1
        spaces = []
        for ds in _list(shape_node, "data_spaces"):
            if not isinstance(ds, dict) or not isinstance(ds.get("name"), str):
                raise _err(shape_node, "data_spaces", "each data-space needs a 'name'")
            for k in ds:
                if k not in ("name", "projection", "read_write"):
                    raise _err(ds, k, "unknown key (a data-space has name, projection, read-write)")
            rw = ds.get("read_write", False)
            if not isinstance(rw, bool):
                raise _err(ds, "read_write", f"must be true or false; got {rw!r}")
            spaces.append((ds["name"], _projection(ds, dims, list(coefs)), rw))
        shape = {"name": str(shape_node.get("name", "shape")), "dims": dims, "coefs": coefs, "spaces": spaces}
    else:
        raise _err(node, "shape", "must be a mapping (the shape) or 'cnn-layer'")
    if len(shape["spaces"]) != 3 or sum(rw for _, _, rw in shape["spaces"]) != 1:
        raise _err(where, "data_spaces" if "data_spaces" in where else None,
                   "tasder's problems have three data-spaces, exactly one of them read-write (the output); got "
                   f"{len(shape['spaces'])} with {sum(rw for _, _, rw in shape['spaces'])} read-write")
    operands = [s for s in shape["spaces"] if not s[2]]
    output = next(s for s in shape["spaces"] if s[2])
    tensors = {operands[0][0]: "A", operands[1][0]: "B", output[0]: "Z"}
    proj = {"A": operands[0][1], "B": operands[1][1], "Z": output[1]}
    names = {"A": operands[0][0], "B": operands[1][0], "Z": output[0]}
    inst = node.get("instance")
    if inst is None:  # the old style: bounds in the problem map itself
        inst = node
    if not isinstance(inst, dict):
        raise _err(node, "instance", "must be a mapping of dimension bounds")
    known = set(shape["dims"]) | set(shape["coefs"]) | {"densities", "commonDensity", "shape", "instance"}
    for k in inst:
        if k not in known:
            raise _err(inst, k, f"unknown key: not a dimension ({', '.join(shape['dims'])}) or coefficient of "
                                f"{shape['name']}")
    bounds = {}
    for d in shape["dims"]:
        if d not in inst:
            raise _err(inst, None, f"no bound for dimension {d!r} (Timeloop requires every dimension)")
        bounds[d] = _number(inst, d, integer=True, minimum=1)
    coefs = dict(shape["coefs"])
    for c in coefs:
        if c in inst:
            coefs[c] = _number(inst, c, integer=True, minimum=1)
    pext = (ext or {}).get("problem") or {}
    pname = str(pext.get("name", name))
    repeat = int(pext.get("repeat", 1))
    word_bits = int(pext.get("word_bits", 16))
    try:
        if _is_cnn(shape["dims"], proj, set(coefs)):
            dim_names = {d: ("M" if d == "K" else d) for d in shape["dims"]}
            base = conv_problem(pname, C=bounds["C"], M=bounds["K"], R=bounds["R"], S=bounds["S"], P=bounds["P"],
                                Q=bounds["Q"], N=bounds["N"], stride=(coefs["Wstride"], coefs["Hstride"]),
                                dilation=(coefs["Wdilation"], coefs["Hdilation"]), repeat=repeat, word_bits=word_bits)
        elif sorted(shape["dims"]) == ["K", "M", "N"] and proj == {"A": ((("M", None),), (("K", None),)),
                                                                  "B": ((("K", None),), (("N", None),)),
                                                                  "Z": ((("M", None),), (("N", None),))}:
            dim_names = {d: d for d in shape["dims"]}
            base = Problem(pname, M=bounds["M"], K=bounds["K"], N=bounds["N"], repeat=repeat, word_bits=word_bits)
        else:
            dim_names = {d: d for d in shape["dims"]}
            named = {c for ranks in proj.values() for r in ranks for _, c in r if c is not None}
            used = [c for c in coefs if c in named]  # the file's order
            dd = pext.get("density_dims")
            ps = ProblemShape(shape["name"], tuple(shape["dims"]), (proj["A"], proj["B"], proj["Z"]),
                              tuple((c, coefs[c]) for c in used),
                              (tuple(dd[0]), tuple(dd[1])) if dd else ((), ()),
                              (names["A"], names["B"], names["Z"]))
            base = Problem(pname, shape=ps, bounds=bounds, repeat=repeat, word_bits=word_bits)
    except (InvalidParameterError, ValueError) as exc:
        raise _err(node, None, str(exc)) from None
    dens: dict[str, DensityModel] = {}
    common = inst.get("commonDensity")
    dnode = inst.get("densities")
    if dnode is not None and not isinstance(dnode, dict):
        raise _err(inst, "densities", "must map data-space names to densities")
    for space, t in tensors.items():
        if dnode is not None and space in dnode:
            value, holder, key = dnode[space], dnode, space
        elif common is not None:
            value, holder, key = common, inst, "commonDensity"
        else:
            continue
        model = _density(value, holder, key, base.tensor_size(t))
        if t == "Z" and model.density < 1.0:
            raise _err(holder, key, f"{space} is the output: tasder models outputs dense")
        dens[t] = model
    for k in dnode or {}:
        if k not in tensors:
            raise _err(dnode, k, f"no data-space named {k!r} (data-spaces: {', '.join(tensors)})")
    # Patterns Timeloop has no model for (G:H, HSS, TASD series) travel in the tasder section.
    for t, key in (("A", "a_density"), ("B", "b_density")):
        if key in pext:
            text = pext[key]
            try:
                model = density_model(str(text), base.tensor_size(t))
            except ValueError as exc:
                raise _err(pext, key, str(exc)) from None
            if t in dens and abs(dens[t].density - model.density) > 1e-9:
                raise _err(pext, key, f"{text!r} (density {model.density:g}) disagrees with the problem's density "
                                      f"{dens[t].density:g} for {names[t]}")
            dens[t] = model
    out = base
    if dens:
        from dataclasses import replace

        out = replace(base, a_density=dens.get("A", base.a_density), b_density=dens.get("B", base.b_density))
    return _ProblemInfo(out, dim_names, tensors)


# ------------------------------------------------------------------------------------------------
# Mapping directives
# ------------------------------------------------------------------------------------------------

#: Timeloop's factor syntax: ``K=4``, also ``K4`` (its regex allows any number of '='), ``K=4,3`` a residual.
_FACTOR = re.compile(r"([A-Za-z]+)\s*=*\s*(\d+)(\s*,\s*\d+)?")


def _factors(d: SpecMap, dims: list[str]) -> dict[str, int]:
    text = d.get("factors", "")
    if isinstance(text, list):
        text = " ".join(str(x) for x in text)
    if not isinstance(text, str):
        raise _err(d, "factors", f"must be a string of DIM=INT; got {text!r}")
    text = text.split("#", 1)[0]
    out: dict[str, int] = {}
    rest = _FACTOR.sub("", text).replace(",", " ").strip()
    if rest:
        raise _err(d, "factors", f"cannot read {rest!r}; factors are DIM=INT separated by spaces")
    for m in _FACTOR.finditer(text):
        dim, value, residual = m.group(1), int(m.group(2)), m.group(3)
        if dim not in dims:
            raise _err(d, "factors", f"unknown dimension {dim!r}; dimensions are {', '.join(dims)}")
        if residual:
            raise _err(d, "factors", f"{m.group(0).strip()!r}: imperfect factors (a residual bound) have no tasder "
                                     f"form; use factors that divide the dimension")
        if dim in out:
            raise _err(d, "factors", f"dimension {dim!r} is given twice")
        out[dim] = value
    return out


def _permutation(d: SpecMap, dims: list[str]) -> list[str]:
    perm = d.get("permutation")
    if isinstance(perm, list):
        perm = "".join(str(x) for x in perm)
    if not isinstance(perm, str):
        raise _err(d, "permutation" if "permutation" in d else None,
                   f"needs a permutation of {''.join(dims)} (innermost first)")
    letters = list(perm.replace(" ", ""))
    unknown = [x for x in letters if x not in dims]
    if unknown:
        raise _err(d, "permutation", f"{perm!r} names the unknown dimension {unknown[0]!r}; dimensions are "
                                     f"{', '.join(dims)}")
    missing = [x for x in dims if x not in letters]
    if missing or len(letters) != len(dims):
        what = f"misses the dimension {missing[0]!r}" if missing else "repeats a dimension"
        raise _err(d, "permutation", f"{perm!r} {what}; list every dimension once, innermost first")
    return letters


# ------------------------------------------------------------------------------------------------
# The whole document
# ------------------------------------------------------------------------------------------------


class _Merged(SpecMap):
    """The root of several merged files: each top-level key reports its own file."""

    key_sources: dict[str, str]

    def where(self, key: str | None = None) -> str:
        if key is not None and key in self.key_sources:
            return f"{self.key_sources[key]}:{self.key_lines[key]}"
        return super().where(key)


def _merge(sources: Sequence[str | Path]) -> tuple[_Merged, list[str]]:
    if not sources:
        raise InvalidParameterError("load_timeloop needs at least one Timeloop YAML file")
    merged = _Merged()
    merged.source, merged.line, merged.key_lines, merged.path = str(sources[0]), 1, {}, ""
    merged.key_sources = {}
    names = []
    for src in sources:
        doc = load_yaml(src)
        names.append(str(src))
        for key, value in doc.items():
            if key in merged:
                raise SpecError(f"{doc.where(key)}: top-level key {key!r} is also given in {merged.where(key)}; "
                                f"Timeloop merges files and a key may appear once")
            if key not in _TOP_KEYS:
                raise SpecError(f"{doc.where(key)}: {key}: unknown top-level key (Timeloop reads "
                                f"{', '.join(k for k in _TOP_KEYS if k != EXTENSION_KEY)})")
            merged[key] = value
            merged.key_lines[key] = doc.key_lines[key]
            merged.key_sources[key] = str(src)
    return merged, names


def load_timeloop(*sources: str | Path, energy_table: EnergyTable | None = None) -> TimeloopSpec:
    """Timeloop v0.3 (and v0.4 node-list) YAML files → :class:`TimeloopSpec`.

    The files are merged as ``timeloop-model`` merges them (a top-level key may appear in one
    file only). ``architecture`` is required; ``problem``, ``mapping``, ``ERT`` and
    ``sparse_optimizations`` are optional. Levels without ERT energies get tasder's table
    (:mod:`tasder.hw.energy`), as Timeloop calls Accelergy. See docs/timeloop.md.

    Raises:
        SpecError: one line naming the file, the line, the key's path and the reason: unknown
            classes, missing keys, a permutation that misses a dimension, factors that do not
            multiply to the problem, a sparse optimisation on a level that does not exist,
            YAML aliases (refused by the loader), and whatever tasder cannot represent.
    """
    doc, names = _merge(sources)
    notes: list[str] = [f"{doc.where(k)}: {k} is read by Timeloop's mapper or Accelergy, not by a model run; "
                        f"not used" for k in _IGNORED_TOP if k in doc]
    ext = doc.get(EXTENSION_KEY)
    if ext is not None:
        if not isinstance(ext, dict):
            raise _err(doc, EXTENSION_KEY, "must be a mapping")
        if str(ext.get("version", "")) != EXTENSION_VERSION:
            raise _err(ext, "version" if "version" in ext else None,
                       f"the tasder section must carry version {EXTENSION_VERSION}")
    if ext is not None:
        _keys(ext, ("version", "architecture", "sparse", "problem"), f"the {EXTENSION_KEY} section")
        for sub, allowed in (("architecture", ("name", "clock_hz", "technology_nm", "drain_reads", "leakage_power",
                                               "mapper_orders", "mapper_spatial", "latch_level")),
                             ("sparse", ("structured_support", "term_reuse", "term_loop", "accumulation_energy",
                                         "tasd_unit_energy", "gated_energy_ratio", "safs", "formats")),
                             ("problem", ("name", "repeat", "word_bits", "a_density", "b_density",
                                          "density_dims"))):
            if ext.get(sub) is not None:
                if not isinstance(ext[sub], dict):
                    raise _err(ext, sub, "must be a mapping")
                _keys(ext[sub], allowed, f"{EXTENSION_KEY}.{sub}")
    ext_arch = (ext or {}).get("architecture") or {}
    arch_key = _first(doc, "architecture", "arch")
    if arch_key is None:
        raise _err(doc, None, "missing the required key 'architecture'")
    arch_node = _map(doc, arch_key)
    assert arch_node is not None
    comps = _components(arch_node)
    ert = _ert(_map(doc, "ERT", required=False))
    table = energy_table or default_energy_table()
    computes = [c for c in comps if c.kind == "compute"]
    storage = [c for c in comps if c.kind == "storage"]
    networks = [c for c in comps if c.kind == "network"]
    if networks:
        raise _err(networks[0].node, "class", f"network {networks[0].name!r}: tasder models no networks "
                                              f"(docs/design.md §4.12)")
    if len(computes) != 1:
        where = computes[1].node if len(computes) > 1 else arch_node
        raise _err(where, None, f"Timeloop allows exactly one compute component; found {len(computes)}")
    if comps[-1].kind != "compute":
        raise _err(comps[-1].node, None, "the compute component must be the last (innermost) component")
    if not storage:
        raise _err(arch_node, None, "no storage level")
    names_seen: dict[str, SpecMap] = {}
    for c in comps:
        if c.name in names_seen:
            raise _err(c.node, "name", f"a second component named {c.name!r} (the first at "
                                       f"{names_seen[c.name].where('name')}); names must be unique")
        names_seen[c.name] = c.node
    problem_info = _problem(doc, ext, Path(doc.key_sources.get("problem", names[0])).stem) \
        if doc.get("problem") is not None else None
    tensor_of = dict(problem_info.tensors) if problem_info else {}
    for t in TENSORS:
        tensor_of.setdefault(t, t)
    if problem_info is None:
        tensor_of.update({"Weights": "A", "Inputs": "B", "Outputs": "Z"})
    dims = list(problem_info.dim_names) if problem_info else []

    def tensor(node: Any, key: str, value: Any) -> str:
        if value not in tensor_of:
            raise _err(node, key, f"no data-space named {value!r} (data-spaces: "
                                  f"{', '.join(k for k, v in tensor_of.items() if k != v or not problem_info)})")
        return tensor_of[value]

    # -- mapping directives, per level name ------------------------------------------------------
    level_names = [c.name for c in storage]
    directives: dict[str, dict[str, SpecMap]] = {n: {} for n in level_names}
    mapping_node = doc.get("mapping")
    if mapping_node is not None:
        if problem_info is None:
            raise _err(doc, "mapping", "a mapping needs the problem it maps (no 'problem' in these files)")
        entries = mapping_node if isinstance(mapping_node, list) else None
        if entries is None:
            raise _err(doc, "mapping", "must be a list of directives ({target, type, factors, permutation})")
        for i, d in enumerate(entries):
            if not isinstance(d, dict):
                raise SpecError(f"{_at(doc, 'mapping')}: mapping[{i}] must be a mapping")
            for k in d:
                if k not in ("target", "type", "factors", "permutation", "split", "keep", "bypass"):
                    raise _err(d, k, "unknown or unsupported key (tasder reads target, type, factors, permutation, "
                                     "split, keep, bypass)")
            if "target" not in d:
                raise _err(d, None, "missing the required key 'target'")
            target = d["target"]
            if isinstance(target, int) and not isinstance(target, bool):
                if not 0 <= target < len(level_names):
                    raise _err(d, "target", f"storage level id {target} does not exist (0..{len(level_names) - 1}, "
                                            f"0 = innermost)")
                target = level_names[len(level_names) - 1 - target]
            if target not in directives:
                raise _err(d, "target", f"no storage level named {target!r} (levels: {', '.join(level_names)})")
            kind = d.get("type")
            if kind == "bypass":
                kind = "datatype"
            if kind not in ("temporal", "spatial", "datatype"):
                raise _err(d, "type" if "type" in d else None,
                           f"type {kind!r}: tasder reads temporal, spatial and datatype (bypass) directives")
            if kind in directives[target]:
                raise _err(d, "type", f"a second {kind} directive for {target} (the first at "
                                      f"{directives[target][kind].where()})")
            directives[target][kind] = d

    # -- keep lists ---------------------------------------------------------------------------------
    constraints = doc.get("architecture_constraints") or doc.get("arch_constraints") or arch_node.get("constraints")
    cons_keep: dict[str, SpecMap] = {}
    if constraints is not None:
        targets = constraints.get("targets", constraints.get("constraints")) if isinstance(constraints, dict) \
            else constraints
        if not isinstance(targets, list):
            raise _err(doc, "architecture_constraints", "must hold a list of targets")
        others = [c for c in targets if not (isinstance(c, dict) and c.get("type") in ("bypass", "datatype",
                                                                                     "bypassing"))]
        if others:
            notes.append(f"architecture_constraints: {len(others)} entr{'y' if len(others) == 1 else 'ies'} other than "
                         f"bypass constrain Timeloop's mapper; a fixed mapping is not checked against them")
        for c in targets:
            if isinstance(c, dict) and c.get("type") in ("bypass", "datatype", "bypassing"):
                tgt = c.get("target", c.get("name"))
                if tgt not in directives:
                    raise _err(c, "target", f"no storage level named {tgt!r} (levels: {', '.join(level_names)})")
                cons_keep[tgt] = c

    def keep_of(name: str) -> tuple[set[str], SpecMap | None]:
        keep = set(TENSORS)
        src = directives[name].get("datatype") or cons_keep.get(name)
        if src is not None:
            for key in ("keep", "bypass"):
                values = src.get(key) or []
                if not isinstance(values, list):
                    raise _err(src, key, "must be a list of data-space names")
                ts = {tensor(src, key, v) for v in values}
                keep = (keep | ts) if key == "keep" else (keep - ts)
        return keep, src

    # -- storage levels (dummies collapsed, a latch recognised) -------------------------------------
    ext_latch = ext_arch.get("latch_level")
    latch_level: _Component | None = None
    compute = computes[0]
    last = storage[-1]
    cert = ert.get(last.name)
    if ext_latch is not None and ext_latch != last.name:
        raise _err(ext_arch, "latch_level", f"{ext_latch!r} is not the innermost storage level ({last.name})")
    if last.instances == compute.instances and len(storage) > 1:
        keep, _ = keep_of(last.name)
        zero = cert is not None and all(_lookup(cert, *names) == 0.0 for names in (
            ("random_read", "read"), ("random_fill", "write"), ("random_update", "random_fill", "write")))
        cap = _capacity(last)[0]
        trivial = all(v == 1 for kind in ("temporal", "spatial") if kind in directives[last.name]
                      for v in _factors(directives[last.name][kind], dims).values()) if dims else True
        if zero and cap is not None and cap <= len(keep) and trivial and keep:
            latch_level = last
            notes.append(f"{last.name}: a per-MAC register level of {cap} words with free accesses and no loops, "
                         f"keeping {', '.join(sorted(keep))}: read as the compute's operand latch "
                         f"(compute.attributes.operand_latch)")
        elif ext_latch is not None:
            raise _err(last.node, None, f"the tasder section names {last.name} the operand latch, but it is not one "
                                        f"(one word per kept tensor, free accesses in the ERT, no loops)")
    real = [c for c in storage if c is not latch_level]
    collapsed: dict[str, str] = {}
    levels: list[StorageLevel] = []
    kept_names: list[str] = []
    for c in real:
        dummy = c.cls.startswith("dummy") or (c.name.startswith("inter_") and c.name.endswith("_spatial"))
        if dummy:
            keep, src = keep_of(c.name)
            if keep and src is not None:
                raise _err(src, None, f"{c.name} is a spatial dummy level (timeloopfe's inter_*_spatial) that keeps "
                                      f"{', '.join(sorted(keep))}; tasder collapses such levels only when they hold "
                                      f"nothing")
            t = directives[c.name].get("temporal")
            if t is not None and any(v != 1 for v in _factors(t, dims).values()):
                raise _err(t, "factors", f"{c.name} is a spatial dummy level with temporal loops; tasder collapses "
                                         f"such levels only when their temporal factors are 1")
            if not kept_names:
                raise _err(c.node, None, f"{c.name}: a spatial dummy level above every real level")
            collapsed[c.name] = kept_names[-1]
            notes.append(f"{c.name}: timeloopfe's spatial dummy level, collapsed into {kept_names[-1]} (its spatial "
                         f"loops become {kept_names[-1]}'s)")
            continue
        levels.append(_storage_level(c, keep_of(c.name)[0], ert.get(c.name), table, ext_arch))
        kept_names.append(c.name)
    latch = tuple(t for t in TENSORS if latch_level is not None and t in keep_of(latch_level.name)[0])
    cattrs = compute.attrs
    dtype = str(cattrs.get("datatype", "fp16"))
    acc = str(cattrs.get("accumulator", "fp32"))
    for key, value in (("datatype", dtype), ("accumulator", acc)):
        if value not in DATATYPES:
            raise _err(compute.node.get("attributes", compute.node), key,
                       f"{value!r} is not one of {', '.join(DATATYPES)}")
    cnm = compute.tech_nm or table.technology_nm
    mac_e = _lookup(ert.get(compute.name), "mac_random", "mult_random", "mac", "mult", "compute")
    if mac_e is None and "energy" in cattrs:
        mac_e = _number(cattrs, "energy")
    if mac_e is None:
        mac_e = table.mac(dtype, acc, cnm)
    comp_level = ComputeLevel(compute.name, compute.instances, mac_e, dtype, acc, latch)

    # -- sparse optimisations -------------------------------------------------------------------------
    sparse = _sparse(doc, ext, [lv.name for lv in levels], compute.name, latch_level, collapsed, tensor,
                     ert, levels, comp_level, {c.name: c.attrs for c in storage})

    tech = [c.tech_nm for c in comps if c.tech_nm is not None]
    try:
        arch = Architecture(
            name=str(ext_arch.get("name", _arch_name(arch_node, names[0]))), levels=tuple(levels), compute=comp_level,
            clock_hz=float(ext_arch.get("clock_hz", 1e9)),
            technology_nm=float(ext_arch.get("technology_nm", tech[0] if tech else table.technology_nm)),
            sparse=sparse,
            mapper_orders=tuple((k, str(v)) for k, v in (ext_arch.get("mapper_orders") or {}).items()),
            mapper_spatial=tuple((k, str(v)) for k, v in (ext_arch.get("mapper_spatial") or {}).items()),
            drain_reads=bool(ext_arch.get("drain_reads", False)))
    except ValueError as exc:
        raise _err(arch_node, None, str(exc)) from None

    mapping = None
    if mapping_node is not None and problem_info is not None:
        mapping = _mapping(problem_info, arch, directives, collapsed, latch_level, mapping_node, doc)
    return TimeloopSpec(arch, problem_info.problem if problem_info else None, mapping, tuple(names), tuple(notes))


def _arch_name(arch: SpecMap, source: str) -> str:
    sub = arch.get("subtree")
    if isinstance(sub, list) and sub and isinstance(sub[0], dict) and isinstance(sub[0].get("name"), str):
        return _name_range(sub[0]["name"])[0]
    return Path(source).stem


def _capacity(c: _Component) -> tuple[int | None, int, int]:
    """(capacity in words or None, block size, word bits) of a storage component (Timeloop's buffer rules)."""
    a = c.attrs
    node = c.node.get("attributes", c.node)
    bits_key = _first(a, "word_bits", "word_width", "datawidth")
    bits = _number(node, bits_key, integer=True, minimum=1) if bits_key else 16
    block_key = _first(a, "block_size", "n_words")
    width_key = _first(a, "width", "memory_width", "data_storage_width")
    if block_key:
        block = _number(node, block_key, integer=True, minimum=1)
    elif width_key:
        width = _number(node, width_key, integer=True, minimum=1)
        if width % bits:
            raise _err(node, width_key, f"width {width} is not a multiple of the word bits ({bits})")
        block = max(1, width // bits)
    else:
        block = 1
    if width_key and block_key:
        width = _number(node, width_key, integer=True, minimum=1)
        if width % (bits * block):
            raise _err(node, width_key, f"width {width} is not a multiple of word-bits × block-size = {bits * block}")
    if "entries" in a:
        cap = _number(node, "entries", integer=True, minimum=1)
    elif _first(a, "depth", "memory_depth", "data_storage_depth"):
        key = _first(a, "depth", "memory_depth", "data_storage_depth")
        assert key is not None
        cap = _number(node, key, integer=True, minimum=1) * block
    elif "sizeKB" in a:
        cap = int(_number(node, "sizeKB") * 8192 // bits)
    else:
        cap = None
    return cap, block, bits


def _storage_level(c: _Component, keep: set[str], table_ert: dict[str, float] | None, table: EnergyTable,
                   ext_arch: dict) -> StorageLevel:
    node = c.node.get("attributes", c.node)
    for key, why in _REFUSED_ATTRS.items():
        if key in c.attrs and c.attrs[key] is not None and c.attrs[key] != _NEUTRAL.get(key, 0):
            raise _err(node, key, f"{c.attrs[key]!r} has no tasder form: {why}")
    cap, block, bits = _capacity(c)
    cls = "DRAM" if "DRAM" in c.cls or c.attrs.get("technology") == "DRAM" else \
        "regfile" if ("regfile" in c.cls or c.cls.endswith("RF")) else "SRAM"
    if cls == "DRAM" and cap is not None:
        raise _err(node, None, f"{c.name} is DRAM with a capacity; tasder's outermost level holds the whole workload")
    nm = c.tech_nm or table.technology_nm
    base = table.dram_access(block * bits) if cap is None else table.sram_access(cap * bits / 8, block * bits, nm)
    if "vector_access_energy" in c.attrs:
        base = _number(node, "vector_access_energy")
    read_e = _lookup(table_ert, "random_read", "read")
    write_e = _lookup(table_ert, "random_fill", "write")
    update_e = _lookup(table_ert, "random_update", "random_fill", "write")
    rk = _first(c.attrs, "read_bandwidth")
    wk = _first(c.attrs, "write_bandwidth")
    sk = _first(c.attrs, "shared_bandwidth", "bandwidth")
    inf = float("inf")
    rbw = _number(node, rk) if rk else (_number(node, sk) / 2 if sk else inf)
    wbw = _number(node, wk) if wk else (_number(node, sk) / 2 if sk else inf)
    if sk and (rk or wk):
        raise _err(node, sk, "give read/write bandwidths or a shared bandwidth, not both: tasder has separate "
                             "read and write ports")
    for value in (rbw, wbw):
        if value == 0:
            raise _err(node, rk or wk or sk, "a bandwidth of 0 moves nothing")
    leak = (ext_arch.get("leakage_power") or {}).get(c.name, 0.0)
    return StorageLevel(name=c.name, cls=cls, instances=c.instances, capacity=cap, read_bandwidth=rbw,
                        write_bandwidth=wbw, block_size=block, word_bits=bits,
                        read_energy=base if read_e is None else read_e,
                        write_energy=base if write_e is None else write_e,
                        update_energy=(base if write_e is None else write_e) if update_e is None else update_e,
                        leakage_power=float(leak), keep=tuple(t for t in TENSORS if t in keep))


def _rank(r: Any, node: Any, key: str) -> RankFormat:
    if not isinstance(r, dict) or "format" not in r:
        raise _err(node, key, f"each rank needs a 'format'; got {r!r}")
    for k in r:
        if k not in ("format", "metadata_word_bits", "payload_word_bits"):
            why = "flattened ranks have no tasder form (tasder's formats are [row rank, K rank])" \
                if k == "flattened_rankIDs" else "unknown key (a rank takes format, metadata-word-bits, " \
                                                 "payload-word-bits)"
            raise _err(r, k, why)
    kind = str(r["format"]).upper()
    if kind == "UB":
        raise _err(r, "format", "UB (uncompressed bitmask) has no tasder rank format (U, B, CP, RLE, UOP)")
    if kind not in FORMATS or kind == "U":
        raise _err(r, "format", f"unknown rank format {r['format']!r} (Timeloop: UOP, CP, B, UB, RLE)")
    md = _number(r, "metadata_word_bits", integer=True) if "metadata_word_bits" in r else None
    pl = _number(r, "payload_word_bits", integer=True) if "payload_word_bits" in r else None
    if kind == "UOP":
        if md not in (None, 0):
            raise _err(r, "metadata_word_bits", "a UOP rank has no metadata of its own (its offsets are the payload)")
        if pl == 0:
            return RankFormat("U")  # offsets of no width: an uncompressed rank without metadata
        return RankFormat("UOP", pl)
    if pl not in (None, 0):
        raise _err(r, "payload_word_bits", f"{kind} ranks in tasder carry no payload field")
    if md == 0:
        raise _err(r, "metadata_word_bits", "0-bit coordinates have no tasder form")
    return RankFormat(kind, md)


def _sparse(doc: SpecMap, ext: Any, level_names: list[str], compute_name: str, latch: _Component | None,
            collapsed: dict[str, str], tensor: Any, ert: dict[str, dict[str, float]], levels: list[StorageLevel],
            comp: ComputeLevel, storage_attrs: dict[str, dict[str, Any]]) -> SparseSpec | None:
    node = doc.get("sparse_optimizations")
    ext_sparse = (ext or {}).get("sparse") or {}
    if node is None and not ext_sparse:
        return None
    formats: dict[tuple[str, str], Format] = {}
    safs: list[SAF] = []
    targets = []
    if node is not None:
        if not isinstance(node, dict):
            raise _err(doc, "sparse_optimizations", "must be a mapping with 'targets'")
        for k in node:
            if k not in ("targets", "version"):
                raise _err(node, k, "unknown key (sparse_optimizations takes targets)")
        targets = _list(node, "targets", required=False)
    for tgt in targets:
        if not isinstance(tgt, dict):
            raise _err(node, "targets", "each target must be a mapping")
        name_key = _first(tgt, "name", "target")
        if name_key is None:
            raise _err(tgt, None, "missing the required key 'name'")
        name = tgt[name_key]
        for k in tgt:
            if k not in ("name", "target", "representation_format", "action_optimization", "compute_optimization"):
                raise _err(tgt, k, "unknown key (a target takes name, representation-format, action-optimization, "
                                   "compute-optimization)")
        if latch is not None and name == latch.name:
            raise _err(tgt, name_key, f"{name} is read as the operand latch, which holds no formats or SAFs in tasder")
        if name in collapsed:
            raise _err(tgt, name_key, f"{name} is a spatial dummy level (collapsed); it holds nothing to optimise")
        if name not in level_names and name != compute_name:
            raise _err(tgt, name_key, f"no level named {name!r} (storage: {', '.join(level_names)}; compute: "
                                      f"{compute_name})")
        rep = tgt.get("representation_format")
        if rep is not None:
            if name == compute_name:
                raise _err(tgt, "representation_format", "the compute level stores nothing")
            if not isinstance(rep, dict):
                raise _err(tgt, "representation_format", "must be a mapping with data-spaces")
            for i, ds in enumerate(_list(rep, "data_spaces")):
                if not isinstance(ds, dict) or "name" not in ds:
                    raise _err(rep, "data_spaces", f"entry {i} needs a 'name'")
                for k in ds:
                    if k not in ("name", "ranks", "rank_application_order"):
                        why = "compression rates have no tasder form" if k == "compression_rate" else "unknown key"
                        raise _err(ds, k, why)
                t = tensor(ds, "name", ds["name"])
                if t == "Z":
                    raise _err(ds, "name", "tasder models the output uncompressed (formats on A and B only)")
                ranks = _list(ds, "ranks")
                if not 1 <= len(ranks) <= 2:
                    raise _err(ds, "ranks", f"{len(ranks)} ranks: tasder's formats describe a tile as [row rank, "
                                            f"K rank] (1 or 2 ranks, outermost first); Timeloop binds one rank per "
                                            f"loop, which tasder does not model")
                fmt = Format(tuple(_rank(r, ds, "ranks") for r in ranks))
                # A rank without metadata-word-bits has the level's metadata_datawidth in Timeloop
                # (0 = free metadata, which tasder cannot say: it derives ceil(log2 k), docs/timeloop.md).
                width = (storage_attrs.get(name) or {}).get("metadata_datawidth")
                if isinstance(width, int) and not isinstance(width, bool) and width > 0:
                    fmt = Format(tuple(RankFormat(rf.kind, width) if rf.bits is None and rf.kind in ("CP", "RLE")
                                       else rf for rf in fmt.ranks))
                formats[(name, t)] = fmt
        for i, act in enumerate(_list(tgt, "action_optimization", required=False)):
            if name == compute_name:
                raise _err(tgt, "action_optimization", "use compute-optimization on the compute level")
            if not isinstance(act, dict):
                raise _err(tgt, "action_optimization", f"entry {i} must be a mapping")
            if "options" in act:
                # v0.4 wraps every SAF in options; one option is one SAF, several are alternatives.
                opts = act["options"]
                if not isinstance(opts, list) or len(opts) != 1 or not isinstance(opts[0], dict):
                    raise _err(act, "options", "alternatives (several options, the best one chosen) have no tasder "
                                               "form; list one SAF")
                inner = opts[0]
                for k in inner:
                    if k in act and k != "type":
                        raise _err(inner, k, f"{k} is given both in the SAF and in its option")
                merged = SpecMap({**{k: v for k, v in act.items() if k != "options"}, **inner})
                merged.source, merged.line, merged.path = inner.source, inner.line, inner.path
                merged.key_lines = {**act.key_lines, **inner.key_lines}
                act = merged
            for k in act:
                if k not in ("type", "target", "condition_on"):
                    raise _err(act, k, "unknown key (a SAF takes type, target, condition-on)")
            kind = act.get("type")
            if kind not in ("gating", "skipping"):
                raise _err(act, "type" if "type" in act else None,
                           f"type {kind!r}: tasder reads gating and skipping (not skipping-spatial or "
                           f"position-skipping)")
            for k in ("target", "condition_on"):
                if k not in act:
                    raise _err(act, None, f"missing the required key {k!r}")
            t = tensor(act, "target", act["target"])
            leaders = act["condition_on"]
            if not isinstance(leaders, list) or not leaders:
                raise _err(act, "condition_on", "must be a non-empty list of data-spaces")
            ls = [tensor(act, "condition_on", x) for x in leaders]
            if "Z" in ls:
                raise _err(act, "condition_on", "tasder's SAFs are conditioned on the operands (A, B), not the output")
            if t in ls:
                raise _err(act, "condition_on", "a SAF's target cannot lead itself")
            safs.append(SAF(name, kind, t, tuple(x for x in ("A", "B") if x in ls)))
        for i, act in enumerate(_list(tgt, "compute_optimization", required=False)):
            if name != compute_name:
                raise _err(tgt, "compute_optimization", f"{name} is not the compute level ({compute_name})")
            if not isinstance(act, dict) or "type" not in act:
                raise _err(tgt, "compute_optimization", f"entry {i} needs a 'type'")
            kind = {"gate_on_zero_operand": "gating", "skip_on_not_aligned_operands": "skipping"}.get(
                act["type"], act["type"])
            if kind not in ("gating", "skipping"):
                raise _err(act, "type", f"type {act['type']!r}: tasder reads gating and skipping")
            # Timeloop's compute optimisation has no leaders: a MAC with any zero operand is
            # ineffectual. Conditioning on a dense operand changes nothing, so [A, B] is exact.
            safs.append(SAF(compute_name, kind, "Z", ("A", "B")))
    # The tasder section: exact SAF leaders/granularity and what Timeloop has no key for.
    if ext_sparse:
        overrides = ext_sparse.get("safs")
        if overrides is not None:
            if len(overrides) != len(safs):
                raise _err(ext_sparse, "safs", f"lists {len(overrides)} SAFs but sparse_optimizations has {len(safs)}")
            out = []
            for saf, o in zip(safs, overrides, strict=True):
                gran = o.get("granularity")
                out.append(SAF(saf.level, saf.kind, str(o.get("target", saf.target)),
                               tuple(o.get("condition_on", saf.condition_on)), gran))
            safs = out
        for key, text in (ext_sparse.get("formats") or {}).items():
            lvl, _, t = key.rpartition(".")
            if (lvl, t) not in formats:
                raise _err(ext_sparse, "formats", f"{key}: no such format in sparse_optimizations")
            from tasder.hw.formats import parse_format

            formats[(lvl, t)] = parse_format(list(text))
    ratio = _gated_ratio(ert, levels, comp, safs, ext_sparse)
    extra: dict[str, Any] = {}
    have = {f.name for f in fields(SparseSpec)}
    # term_reuse (a dict) is becoming term_loop (issue 17): read whichever this tasder has.
    if ext_sparse.get("term_reuse"):
        if "term_reuse" not in have:
            raise _err(ext_sparse, "term_reuse", "this tasder has no term_reuse (see term_loop)")
        extra["term_reuse"] = dict(ext_sparse["term_reuse"])
    if ext_sparse.get("term_loop") is not None:
        if "term_loop" not in have:
            raise _err(ext_sparse, "term_loop", "this tasder has no term_loop (see term_reuse)")
        from tasder.hw import sparse as sparse_module

        extra["term_loop"] = sparse_module.TermLoop(**dict(ext_sparse["term_loop"]))  # type: ignore[attr-defined]
    base = SparseSpec(formats=formats, safs=tuple(safs), gated_energy_ratio=ratio,
                      accumulation_energy=float(ext_sparse.get("accumulation_energy", 0.0)),
                      tasd_unit_energy=float(ext_sparse.get("tasd_unit_energy", 0.0)), **extra)
    support = ext_sparse.get("structured_support")
    if support:
        # Parse through tasder's own rules (pattern ranges, engine patterns).
        parsed = parse_sparse_spec(SpecMap(structured_support=support), level_names, compute_name)
        from dataclasses import replace

        base = replace(base, structured_support=parsed.structured_support)
    return base


def _gated_ratio(ert: dict[str, dict[str, float]], levels: list[StorageLevel], comp: ComputeLevel,
                 safs: list[SAF], ext_sparse: dict) -> float:
    """tasder has one gated/full energy ratio; Timeloop an ERT entry per component and action."""
    pairs = []
    for lv in levels:
        t = ert.get(lv.name) or {}
        for gated, full in (("gated_read", lv.read_energy), ("gated_write", lv.write_energy)):
            if gated in t and full > 0:
                pairs.append((f"ERT {lv.name}.{gated}", t[gated] / full))
    t = ert.get(comp.name) or {}
    if "mac_gated" in t and comp.energy_per_mac > 0:
        pairs.append((f"ERT {comp.name}.mac_gated", t["mac_gated"] / comp.energy_per_mac))
    given = ext_sparse.get("gated_energy_ratio")
    ref = float(given) if given is not None else (pairs[0][1] if pairs else None)
    for what, r in pairs:
        if ref is not None and abs(r - ref) > 1e-6 * max(1.0, abs(ref)):
            raise SpecError(f"{what}: gated/full energy ratio {r:g} differs from {ref:g}; tasder has one "
                            f"gated_energy_ratio for every gated access and MAC")
    if ref is not None:
        return ref
    # No gated energies: Timeloop falls back to the full energy (ratio 1) when anything is gated.
    return 1.0 if any(s.kind == "gating" for s in safs) else 0.1


def _mapping(info: _ProblemInfo, arch: Architecture, directives: dict[str, dict[str, SpecMap]],
             collapsed: dict[str, str], latch: _Component | None, node: Any, doc: SpecMap) -> Mapping:
    tl_dims = list(info.dim_names)
    rename = info.dim_names
    dims = info.problem.dims
    levels: dict[str, dict[str, Any]] = {lv.name: {"temporal": {}, "spatial": {}, "order": None}
                                         for lv in arch.levels}
    for name, kinds in directives.items():
        if latch is not None and name == latch.name:
            for kind in ("temporal", "spatial"):
                if kind in kinds and any(v != 1 for v in _factors(kinds[kind], tl_dims).values()):
                    raise _err(kinds[kind], "factors", f"{name} is read as the operand latch: its loops must be 1")
            continue
        into = collapsed.get(name, name)
        for kind in ("temporal", "spatial"):
            d = kinds.get(kind)
            if d is None:
                continue
            f = _factors(d, tl_dims)
            if kind == "spatial" or name in collapsed:
                if "permutation" in d:
                    _permutation(d, tl_dims)
                target = levels[into]["spatial"]
                for k, v in f.items():
                    target[rename[k]] = target.get(rename[k], 1) * v
            else:
                levels[into]["temporal"] = {rename[k]: v for k, v in f.items()}
                levels[into]["order"] = "".join(rename[x] for x in reversed(_permutation(d, tl_dims)))
    # D=0 means "the whole remaining dimension" (Timeloop): resolve it from the other factors.
    for j, d in enumerate(dims):
        zeros = [(n, k) for n, lv in levels.items() for k in ("temporal", "spatial") if lv[k].get(d) == 0]
        if len(zeros) > 1:
            raise _err(doc, "mapping", f"dimension {d} has more than one factor 0 ('the rest')")
        if zeros:
            rest = math.prod(lv[k].get(d, 1) for lv in levels.values() for k in ("temporal", "spatial")
                             if lv[k].get(d, 1) != 0)
            bound = info.problem.sizes[j]
            if bound % rest:
                raise _err(doc, "mapping", f"dimension {d}: the other factors ({rest}) do not divide {bound}")
            n, k = zeros[0]
            levels[n][k][d] = bound // rest
    for j, d in enumerate(dims):
        product = math.prod(lv[k].get(d, 1) for lv in levels.values() for k in ("temporal", "spatial"))
        if product != info.problem.sizes[j]:
            tl = next(k for k, v in rename.items() if v == d)
            raise _err(doc, "mapping", f"the factors of dimension {tl} multiply to {product}, but the problem has "
                                       f"{tl}={info.problem.sizes[j]}")
    try:
        mapping = Mapping.from_levels([{"temporal": lv["temporal"], "spatial": lv["spatial"],
                                        "order": lv["order"] or "".join(dims)} for lv in levels.values()], dims)
        check_mapping(arch, info.problem, mapping)
    except (MappingError, InvalidParameterError) as exc:
        raise _err(doc, "mapping", str(exc)) from None
    return mapping
