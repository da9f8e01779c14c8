"""Design-space sweeps: a YAML spec → design variants × workloads → (objective, area) Pareto fronts.

A sweep spec (format: docs/hw_sweep.md) names a base design, parameters with values or ranges,
constraints, workloads, objectives and the mapper's settings. :func:`load_sweep` validates it like
the design specs (``FILE:LINE``, unknown keys listed, ``version``); :func:`expand_designs` builds
the cross product of the parameter values as edited copies of the base design's YAML document,
each validated by the design loader itself and checked against the constraints — a combination
that fails is kept as a *filtered* point with its reason, counted by kind; :func:`run_sweep` maps
every (valid design, workload layer) through :mod:`tasder.hw.executor` (cached, on every core or a
Ray cluster) and aggregates networks, areas and fronts into a :class:`SweepResult`.

Why edit YAML documents rather than dataclasses: every parameter then goes through the same
checks a hand-written design does (a fan-out that is not a whole number, a SAF on a level that
does not exist, an unparsable pattern), with the same messages — nothing sweep-specific to get
wrong — and the front's designs can be written back out as ordinary design files.

Built-in network names and TASD configs are resolved by callables the caller passes
(``resolve_network``, ``resolve_config``): this package knows neither the model zoo nor torch.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from tasder.hw.architecture import Architecture, architecture_from_doc, list_designs
from tasder.hw.area import AreaBreakdown, area_breakdown
from tasder.hw.density import SeriesModel, StructuredModel, density_model, with_data_density
from tasder.hw.executor import (
    Executor,
    LayerTask,
    MapperSettings,
    Progress,
    ResultCache,
    RunStats,
    run_tasks,
)
from tasder.hw.mapper import OBJECTIVES as MAPPER_OBJECTIVES
from tasder.hw.spec import SpecError, SpecMap, check_keys, check_version, get_float, get_int, get_str, load_yaml
from tasder.hw.workload import Network, Problem

__all__ = [
    "METRIC_FIELDS",
    "OBJECTIVES",
    "DesignPoint",
    "Parameter",
    "SweepResult",
    "SweepSpec",
    "SweepWorkload",
    "expand_designs",
    "load_sweep",
    "pareto_front",
    "parse_bytes",
    "run_sweep",
    "tasd_series",
    "workload_layers",
]

#: What a front can minimise against area.
OBJECTIVES: tuple[str, ...] = ("edp", "energy", "latency")
#: Attributes of a storage level a parameter may set (``bandwidth`` sets read and write).
LEVEL_ATTRS: tuple[str, ...] = ("capacity", "instances", "read_bandwidth", "write_bandwidth", "bandwidth",
                                "block_size", "word_bits")
#: Parameter name forms, for error messages.
PARAMETER_FORMS = ("macs", "<level>.capacity", "<level>.instances", "<level>.read_bandwidth",
                   "<level>.write_bandwidth", "<level>.bandwidth", "<level>.block_size", "<level>.word_bits",
                   "structured_support.A", "structured_support.B", "<level>.format.A", "<level>.format.B",
                   "<level>.safs", "sparse", "tasd.max_terms", "tasd.drop_budget")
#: Most designs one sweep may expand to (a typo in a range should not fill the disk).
MAX_DESIGNS = 1_000_000
_MAX_RANGE = 10_000
_UNITS = {"B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3}


# ---------------------------------------------------------------------------------------------
# The spec
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parameter:
    """One swept parameter: its ``name`` as written, what it sets (``kind``, ``target``), its
    values and their labels (``choices`` names, else the value written out), where it is written."""

    name: str
    kind: str
    target: tuple[str, ...]
    values: tuple[Any, ...]
    labels: tuple[str, ...]
    where: str


@dataclass(frozen=True)
class TASDRule:
    """TASD for a design with TASD units: the sparsest series of at most ``max_terms`` terms of the
    engine's own G:H patterns that drops at most ``drop_budget`` of ``operand``'s nonzeros (TASD
    paper §4.2's criterion, nonzeros placed uniformly at the operand's density, or ``density``)."""

    operand: str
    max_terms: int = 2
    drop_budget: float = 0.05
    density: float | None = None


@dataclass(frozen=True)
class SweepWorkload:
    """A network with its operand densities as every design sees them, plus an optional TASD rule."""

    name: str
    network: Network
    tasd: TASDRule | None = None


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep spec (see :func:`load_sweep`)."""

    name: str
    source: str
    base_name: str
    base_doc: SpecMap
    parameters: tuple[Parameter, ...]
    workloads: tuple[SweepWorkload, ...]
    objectives: tuple[str, ...] = ("edp",)
    mapper: MapperSettings = field(default_factory=MapperSettings)
    sram_budget_bytes: int | None = None
    max_area_mm2: float | None = None

    @property
    def size(self) -> int:
        """Designs in the cross product (before filtering)."""
        return math.prod(len(p.values) for p in self.parameters)


def parse_bytes(value: Any) -> int:
    """``524288``, ``"512KiB"``, ``"0.5 MiB"``, ``"64KB"`` → bytes (KB = 1000, KiB = 1024).

    >>> parse_bytes("512KiB"), parse_bytes("1MB"), parse_bytes(4096)
    (524288, 1000000, 4096)
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a size in bytes such as 512KiB; got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"a size must be ≥ 1 byte; got {value}")
        return value
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMG]i?B|B)\s*", str(value), flags=re.IGNORECASE)
    if m is None:
        raise ValueError(f"expected a size such as 524288, 512KiB or 0.5MiB; got {value!r}")
    n = float(m.group(1)) * _UNITS[m.group(2).upper()]
    if n < 1 or n != int(n):
        raise ValueError(f"{value!r} is not a whole number of bytes ≥ 1")
    return int(n)


def _resolve_design(text: str, base_dir: Path, where: str) -> tuple[str, Path]:
    path = Path(text) if Path(text).is_absolute() else base_dir / text
    if path.is_file():
        return path.stem, path
    if text in list_designs():
        from tasder.hw.architecture import design_path

        return text, design_path(text)
    raise SpecError(f"{where}: design {text!r}: no such file (relative to the spec) and no shipped design of that "
                    f"name (designs: {', '.join(list_designs())})")


def _label(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, dict) and {"type", "target", "condition_on"} <= set(value):  # a SAF
        leaders = value["condition_on"] if isinstance(value["condition_on"], list) else [value["condition_on"]]
        return f"{value['type']} {value['target']}←{''.join(map(str, leaders))}"
    if isinstance(value, list):
        return ",".join(_label(v) for v in value) if all(not isinstance(v, list) for v in value) else \
            f"[{len(value)} items]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_label(v)}" for k, v in value.items()) + "}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _range(node: SpecMap, integer: bool, name: str) -> list[Any]:
    check_keys(node, ("from", "to", "step", "factor"), required=("from", "to"))
    if ("step" in node) == ("factor" in node):
        raise SpecError(f"{node.where()}: parameter {name!r}: a range needs exactly one of 'step' (from, from+step, "
                        f"…) or 'factor' (from, from·factor, …)")
    lo, hi = get_float(node, "from", allow_zero=True), get_float(node, "to", allow_zero=True)
    if integer:
        for k in ("from", "to", *(("step",) if "step" in node else ())):
            if isinstance(node[k], bool) or not isinstance(node[k], int):
                raise SpecError(f"{node.where(k)}: parameter {name!r}: {k} must be an integer; got {node[k]!r}")
    out: list[float] = []
    if "step" in node:
        step = get_float(node, "step")
        x = lo
        while x <= hi * (1 + 1e-12) and len(out) <= _MAX_RANGE:
            out.append(x)
            x = lo + len(out) * step
    else:
        factor = get_float(node, "factor")
        if factor <= 1:
            raise SpecError(f"{node.where('factor')}: parameter {name!r}: factor must be > 1; got {factor:g}")
        if lo <= 0:
            raise SpecError(f"{node.where('from')}: parameter {name!r}: a geometric range starts above 0; got {lo:g}")
        x = lo
        while x <= hi * (1 + 1e-12) and len(out) <= _MAX_RANGE:
            out.append(x)
            x *= factor
    if len(out) > _MAX_RANGE:
        raise SpecError(f"{node.where()}: parameter {name!r}: the range holds more than {_MAX_RANGE} values")
    if not out:
        raise SpecError(f"{node.where()}: parameter {name!r}: the range from {lo:g} to {hi:g} holds no value")
    if integer:
        ints = [round(v) for v in out]
        if any(abs(v - i) > 1e-9 for v, i in zip(out, ints, strict=True)):
            raise SpecError(f"{node.where()}: parameter {name!r}: the range yields non-integer values "
                            f"({', '.join(f'{v:g}' for v in out[:4])}…)")
        return list(dict.fromkeys(ints))
    return out


def _check_value(kind: str, value: Any, where: str, name: str) -> Any:
    """Type-level checks of one value; whether it suits a design is the design loader's call."""
    def bad(expected: str) -> SpecError:
        return SpecError(f"{where}: parameter {name!r}: each value must be {expected}; got {value!r}")

    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise bad("an integer ≥ 1")
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
            raise bad("a number > 0")
    elif kind in ("patterns", "format"):
        if value is not None and (not isinstance(value, list) or not value
                                  or not all(isinstance(v, str) for v in value)):
            raise bad("a list of strings, or null")
    elif kind == "safs":
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, dict) for v in value)):
            raise bad("a list of action_optimization entries, or null")
    elif kind == "design":
        if value is not None and not isinstance(value, str):
            raise bad("a design name or file, or null (no sparse features)")
    elif kind == "max_terms":
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 8:
            raise bad("an integer from 1 to 8")
    elif kind == "drop_budget" and (isinstance(value, bool) or not isinstance(value, (int, float))
                                    or not 0 <= value < 1):
        raise bad("a fraction in [0, 1)")
    return value


def _parameter(params: SpecMap, name: str, base_doc: SpecMap, base_name: str, spec_dir: Path) -> Parameter:
    where = params.where(name)
    arch = base_doc["architecture"]
    levels = [lv.get("name") for lv in arch.get("storage") or [] if isinstance(lv, dict)]
    compute = (arch.get("compute") or {}).get("name", "MAC")
    parts = name.split(".")

    def need_level(level: str, allow_compute: bool = False) -> None:
        if level in levels or (allow_compute and level == compute):
            return
        known = ", ".join([*levels, *((compute,) if allow_compute else ())])
        raise SpecError(f"{where}: parameter {name!r}: the base design {base_name} has no "
                        f"{'level' if allow_compute else 'storage level'} {level!r} (it has {known})")

    if name == "macs":
        kind, target = "int", ("macs",)
    elif name == "sparse":
        kind, target = "design", ("sparse",)
    elif parts[0] == "structured_support" and len(parts) == 2 and parts[1] in ("A", "B"):
        kind, target = "patterns", ("structured_support", parts[1])
    elif parts[0] == "tasd" and len(parts) == 2 and parts[1] in ("max_terms", "drop_budget"):
        kind, target = parts[1], ("tasd", parts[1])
    elif len(parts) == 2 and parts[1] in LEVEL_ATTRS:
        need_level(parts[0])
        kind = "number" if parts[1].endswith("bandwidth") else "int"
        target = ("level", parts[0], parts[1])
    elif len(parts) == 3 and parts[1] == "format" and parts[2] in ("A", "B"):
        need_level(parts[0])
        kind, target = "format", ("format", parts[0], parts[2])
    elif len(parts) == 2 and parts[1] == "safs":
        need_level(parts[0], allow_compute=True)
        kind, target = "safs", ("safs", parts[0])
    else:
        raise SpecError(f"{where}: unknown parameter {name!r}; parameters are: {', '.join(PARAMETER_FORMS)} "
                        f"(levels of {base_name}: {', '.join(levels)}; compute: {compute})")
    raw = params[name]
    labels: list[str]
    if isinstance(raw, dict) and "choices" in raw:
        check_keys(raw, ("choices",))
        choices = raw["choices"]
        if not isinstance(choices, dict) or not choices:
            raise SpecError(f"{raw.where('choices')}: parameter {name!r}: choices must map labels to values")
        values = list(choices.values())
        labels = [str(k) for k in choices]
    elif isinstance(raw, dict) and ("from" in raw or "to" in raw):
        if kind not in ("int", "number", "max_terms", "drop_budget"):
            raise SpecError(f"{where}: parameter {name!r}: a range needs a numeric parameter")
        values = _range(raw, kind in ("int", "max_terms"), name)
        labels = [_label(v) for v in values]
    elif isinstance(raw, list) and kind not in ("patterns", "format", "safs"):
        values, labels = list(raw), [_label(v) for v in raw]
    elif isinstance(raw, list) and raw and all(isinstance(v, list) or v is None for v in raw):
        values, labels = list(raw), [_label(v) for v in raw]  # a list of lists: one value each
    else:
        values, labels = [raw], [_label(raw)]  # one value (for list kinds: the list itself)
    if not values:
        raise SpecError(f"{where}: parameter {name!r} lists no value")
    for v in values:
        if v == "rest" and target[0] == "level" and target[2] == "capacity":
            continue
        _check_value(kind, v, where, name)
    if kind == "design":  # resolve now: a missing design is a spec error, not a filtered point
        values = [None if v is None else _resolve_design(v, spec_dir, where)[1] for v in values]
    if len(set(labels)) != len(labels):
        raise SpecError(f"{where}: parameter {name!r} lists a value twice ({', '.join(labels)})")
    return Parameter(name, kind, tuple(target), tuple(values), tuple(labels), where)


def _tasd_rule(node: Any, where: str) -> TASDRule:
    if not isinstance(node, dict):
        raise SpecError(f"{where}: tasd must be a mapping {{operand: A|B, max_terms: 2, drop_budget: 0.05}}")
    check_keys(node, ("operand", "max_terms", "drop_budget", "density"), required=("operand",))
    rule = TASDRule(operand=get_str(node, "operand", choices=("A", "B")), max_terms=get_int(node, "max_terms", 2),
                    drop_budget=get_float(node, "drop_budget", 0.05, allow_zero=True),
                    density=get_float(node, "density", None))
    _check_value("max_terms", rule.max_terms, node.where("max_terms"), "tasd.max_terms")
    _check_value("drop_budget", rule.drop_budget, node.where("drop_budget"), "tasd.drop_budget")
    if rule.density is not None and not 0 < rule.density <= 1:
        raise SpecError(f"{node.where('density')}: tasd.density must be in (0, 1]; got {rule.density:g}")
    return rule


def _workload(node: Any, i: int, where: str, spec_dir: Path, resolve_network: Callable[[str], Network] | None,
              resolve_config: Callable[[str], Callable[[str], tuple[str, str] | None]] | None) -> SweepWorkload:
    if not isinstance(node, dict):
        raise SpecError(f"{where}: workloads[{i}] must be a mapping with 'network' or 'file'")
    check_keys(node, ("name", "network", "file", "a", "b", "config", "tasd"))
    if ("network" in node) == ("file" in node):
        raise SpecError(f"{node.where()}: workloads[{i}] needs exactly one of 'network' (a built-in network) and "
                        f"'file' (a workload YAML)")
    if "config" in node and "tasd" in node:
        raise SpecError(f"{node.where('tasd')}: workloads[{i}]: give either 'config' (the series a search chose) or "
                        f"'tasd' (the series each TTC design picks), not both")
    if "network" in node:
        source = get_str(node, "network")
        if resolve_network is None:
            raise SpecError(f"{node.where('network')}: workloads[{i}]: built-in network {source!r} needs a network "
                            f"resolver (the tasder command line passes one); use 'file' for a workload YAML")
    else:
        text = get_str(node, "file")
        path = Path(text) if Path(text).is_absolute() else spec_dir / text
        if not path.is_file():
            raise SpecError(f"{node.where('file')}: workloads[{i}]: no workload file {str(path)!r}")
        source = str(path)
    try:
        if "network" in node:
            net = resolve_network(source)  # type: ignore[misc]
        else:
            from tasder.hw.workload import load_network as load_workload_file

            net = load_workload_file(source)
    except SpecError:
        raise
    except (ValueError, OSError, KeyError) as exc:
        raise SpecError(f"{node.where('network' if 'network' in node else 'file')}: workloads[{i}]: {exc}") from None
    dens = {}
    for key in ("a", "b"):
        if key in node and node[key] is not None:
            text = node[key] if isinstance(node[key], str) else str(node[key])
            try:
                density_model(text)
            except ValueError as exc:
                raise SpecError(f"{node.where(key)}: workloads[{i}].{key}: {exc}") from None
            dens[key] = text
    layers = [replace(p, a_density=dens.get("a", p.a_density), b_density=dens.get("b", p.b_density))
              for p in net.layers]
    if "config" in node:
        if resolve_config is None:
            raise SpecError(f"{node.where('config')}: workloads[{i}]: TASD configs need a config resolver (the "
                            f"tasder command line passes one)")
        text = get_str(node, "config")
        cpath = Path(text) if Path(text).is_absolute() else spec_dir / text
        try:
            lookup = resolve_config(str(cpath))
        except (ValueError, OSError) as exc:
            raise SpecError(f"{node.where('config')}: workloads[{i}]: {exc}") from None
        matched = 0
        for j, p in enumerate(layers):
            hit = lookup(p.name)
            if hit is None or hit[0] == "dense":
                continue
            series, mode = hit
            matched += 1
            layers[j] = replace(p, a_density=series if mode == "W" else p.a_density,
                                b_density=series if mode == "A" else p.b_density)
        if not matched:
            raise SpecError(f"{node.where('config')}: workloads[{i}]: the config {str(cpath)!r} gives no layer of "
                            f"{net.name} a TASD series (layer names: {', '.join(p.name for p in net.layers[:5])}…)")
    rule = _tasd_rule(node["tasd"], node.where("tasd")) if "tasd" in node else None
    name = get_str(node, "name", net.name if "network" in node else Path(source).stem)
    return SweepWorkload(name=name, network=Network(net.name, tuple(layers)), tasd=rule)


def load_sweep(path: str | Path, *, resolve_network: Callable[[str], Network] | None = None,
               resolve_config: Callable[[str], Callable[[str], tuple[str, str] | None]] | None = None) -> SweepSpec:
    """Parse and validate a sweep spec (docs/hw_sweep.md); workloads are loaded here.

    ``resolve_network(name)`` turns a built-in network name into a :class:`~tasder.hw.Network`;
    ``resolve_config(path)`` turns a TASD config file into ``layer name → (series, mode) | None``.

    Raises:
        SpecError: with ``FILE:LINE`` — unknown keys (listed), a parameter no design accepts, an empty
            range, a missing design or workload file, a bad pattern.
    """
    path = Path(path)
    doc = load_yaml(path)
    check_keys(doc, ("version", "sweep"), required=("version", "sweep"))
    check_version(doc)
    sw = doc["sweep"]
    if not isinstance(sw, dict):
        raise SpecError(f"{doc.where('sweep')}: sweep must be a mapping")
    check_keys(sw, ("name", "base", "parameters", "constraints", "workloads", "objective", "mapper"),
               required=("base", "workloads"))
    spec_dir = path.parent
    base_name, base_path = _resolve_design(get_str(sw, "base"), spec_dir, sw.where("base"))
    base_doc = load_yaml(base_path)
    try:
        architecture_from_doc(copy.deepcopy(base_doc), name=base_name)
    except SpecError as exc:
        raise SpecError(f"{sw.where('base')}: the base design does not load: {exc}") from None
    params_node = sw.get("parameters") or {}
    if not isinstance(params_node, dict):
        raise SpecError(f"{sw.where('parameters')}: parameters must map parameter names to values")
    params = tuple(_parameter(params_node, name, base_doc, base_name, spec_dir) for name in params_node)
    rest = [p for p in params if "rest" in p.values]
    cons = sw.get("constraints") or {}
    if not isinstance(cons, dict):
        raise SpecError(f"{sw.where('constraints')}: constraints must be a mapping")
    check_keys(cons, ("sram_budget", "max_area_mm2"))
    budget = None
    if cons.get("sram_budget") is not None:
        try:
            budget = parse_bytes(cons["sram_budget"])
        except ValueError as exc:
            raise SpecError(f"{cons.where('sram_budget')}: constraints.sram_budget: {exc}") from None
    if len(rest) > 1:
        raise SpecError(f"{rest[1].where}: only one level's capacity can be 'rest' (also {rest[0].name})")
    if rest and budget is None:
        raise SpecError(f"{rest[0].where}: parameter {rest[0].name!r}: 'rest' (what the SRAM budget leaves) needs "
                        f"constraints.sram_budget")
    wl = sw["workloads"]
    if not isinstance(wl, list) or not wl:
        raise SpecError(f"{sw.where('workloads')}: workloads must be a non-empty list")
    workloads = tuple(_workload(n, i, sw.where("workloads"), spec_dir, resolve_network, resolve_config)
                      for i, n in enumerate(wl))
    names = [w.name for w in workloads]
    if len(set(names)) != len(names):
        raise SpecError(f"{sw.where('workloads')}: workload names must be unique (give each a 'name'); got "
                        f"{', '.join(names)}")
    obj = sw.get("objective", "edp")
    objectives = obj if isinstance(obj, list) else [obj]
    if not objectives or any(o not in OBJECTIVES for o in objectives):
        raise SpecError(f"{sw.where('objective')}: objective must be one of {', '.join(OBJECTIVES)} (or a list of "
                        f"them); got {obj!r}")
    mp = sw.get("mapper") or {}
    if not isinstance(mp, dict):
        raise SpecError(f"{sw.where('mapper')}: mapper must be a mapping {{budget, objective, seed}}")
    check_keys(mp, ("budget", "objective", "seed"))
    mapper = MapperSettings(budget=get_int(mp, "budget", 3000), objective=get_str(mp, "objective", "edp",
                                                                                  choices=MAPPER_OBJECTIVES),
                            seed=get_int(mp, "seed", 0, minimum=0))
    spec = SweepSpec(name=get_str(sw, "name", path.stem), source=str(path), base_name=base_name, base_doc=base_doc,
                     parameters=params, workloads=workloads, objectives=tuple(dict.fromkeys(objectives)),
                     mapper=mapper, sram_budget_bytes=budget,
                     max_area_mm2=get_float(cons, "max_area_mm2", None))
    if spec.size > MAX_DESIGNS:
        raise SpecError(f"{sw.where('parameters')}: the parameters cross to {spec.size:,} designs, more than "
                        f"{MAX_DESIGNS:,}; narrow the ranges")
    return spec


# ---------------------------------------------------------------------------------------------
# Designs
# ---------------------------------------------------------------------------------------------


@dataclass
class DesignPoint:
    """One combination of parameter values: the design it makes, or why it was filtered."""

    id: str
    params: dict[str, str]
    doc: SpecMap | None = None
    arch: Architecture | None = None
    area: AreaBreakdown | None = None
    sram_bytes: int = 0
    tasd: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None  # filtered: why (the full message)
    kind: str | None = None    # filtered: the reason's kind, for counting

    @property
    def valid(self) -> bool:
        return self.reason is None


def _specmap(value: Any, like: SpecMap | None, path: str) -> Any:
    """Plain values as spec nodes (so the design loader can say where); SpecMaps pass through."""
    if isinstance(value, SpecMap) or not isinstance(value, (dict, list)):
        return value
    if isinstance(value, list):
        return [_specmap(v, like, f"{path}[{i}]") for i, v in enumerate(value)]
    out = SpecMap()
    out.source = like.source if like is not None else "<sweep>"
    out.line = like.line if like is not None else 0
    out.key_lines, out.path = {}, path
    for k, v in value.items():
        out[k] = _specmap(v, like, f"{path}.{k}")
    return out


def _child(node: SpecMap, key: str, path: str) -> SpecMap:
    if not isinstance(node.get(key), dict):
        node[key] = _specmap({}, node, f"{path}.{key}" if path else key)
    return node[key]


def _level_node(doc: SpecMap, level: str) -> SpecMap:
    for lv in doc["architecture"]["storage"]:
        if isinstance(lv, dict) and lv.get("name") == level:
            return lv
    raise KeyError(level)


def _target_node(doc: SpecMap, level: str) -> SpecMap:
    so = _child(doc, "sparse_optimizations", "")
    targets = so.get("targets")
    if not isinstance(targets, list):
        targets = so["targets"] = []
    for t in targets:
        if isinstance(t, dict) and t.get("name") == level:
            return t
    node = _specmap({"name": level}, so, f"sparse_optimizations.targets[{len(targets)}]")
    targets.append(node)
    return node


def _apply(doc: SpecMap, p: Parameter, value: Any) -> None:
    kind, target = p.kind, p.target
    if target[0] == "macs":
        doc["architecture"]["compute"]["instances"] = value
    elif target[0] == "level":
        node = _level_node(doc, target[1])
        if target[2] == "instances":
            node["instances"] = value
        else:
            attrs = _child(node, "attributes", f"architecture.storage.{target[1]}")
            for a in (("read_bandwidth", "write_bandwidth") if target[2] == "bandwidth" else (target[2],)):
                attrs[a] = value
    elif target[0] == "sparse":
        for key in ("sparse_optimizations", "mapper_constraints"):
            doc.pop(key, None)
        if value is not None:
            for key, node in _sparse_blocks(value).items():
                doc[key] = copy.deepcopy(node)
    elif target[0] == "structured_support":
        so = _child(doc, "sparse_optimizations", "")
        ss = _child(so, "structured_support", "sparse_optimizations")
        if value is None:
            ss.pop(target[1], None)
        else:
            ss[target[1]] = list(value)
    elif target[0] == "format":
        t = _target_node(doc, target[1])
        fmt = _child(t, "representation_format", t.path)
        if value is None:
            fmt.pop(target[2], None)
        else:
            fmt[target[2]] = list(value)
    elif target[0] == "safs":
        t = _target_node(doc, target[1])
        if value is None:
            t.pop("action_optimization", None)
        else:
            t["action_optimization"] = [_specmap(v, t, f"{t.path}.action_optimization[{i}]")
                                        for i, v in enumerate(value)]
    elif kind in ("max_terms", "drop_budget"):
        pass  # workload-side: applied when the TASD series is chosen
    else:  # pragma: no cover - _parameter only builds the kinds above
        raise AssertionError(p)


@lru_cache(maxsize=64)
def _sparse_blocks(path: Path) -> dict[str, Any]:
    """The sparse features (and the dataflow they come with) of a design file, parsed once."""
    src = load_yaml(path)
    return {key: src[key] for key in ("sparse_optimizations", "mapper_constraints") if key in src}


def _level_bytes(doc: SpecMap) -> dict[str, tuple[int, int, int | None]]:
    """level → (instances, word bits, capacity words) for the on-chip levels of a design document."""
    arch = doc["architecture"]
    default_bits = arch.get("word_bits", 16)
    out = {}
    for lv in arch["storage"]:
        if not isinstance(lv, dict) or lv.get("class") == "DRAM":
            continue
        attrs = lv.get("attributes") or {}
        out[lv.get("name")] = (lv.get("instances", 1), attrs.get("word_bits", default_bits), attrs.get("capacity"))
    return out


def _kind(message: str) -> str:
    """A filtered design's reason with its numbers and file positions taken out, for counting."""
    text = re.sub(r"^\S+:\d+: ", "", message)
    text = re.sub(r"\d+(\.\d+)?", "N", text)
    return text if len(text) <= 140 else text[:139] + "…"


def expand_designs(spec: SweepSpec) -> list[DesignPoint]:
    """Every combination of parameter values, built and checked (see the module doc); deterministic
    order (the cross product in the order the parameters are written, the last varying fastest)."""
    out: list[DesignPoint] = []
    width = max(4, len(str(spec.size)))
    for n, combo in enumerate(itertools.product(*(range(len(p.values)) for p in spec.parameters))):
        pid = f"d{n + 1:0{width}d}"
        params = {p.name: p.labels[i] for p, i in zip(spec.parameters, combo, strict=True)}
        doc = copy.deepcopy(spec.base_doc)
        point = DesignPoint(pid, params)
        rest: Parameter | None = None
        for p, i in zip(spec.parameters, combo, strict=True):
            value = p.values[i]
            if value == "rest":
                rest = p
                continue
            if p.kind in ("max_terms", "drop_budget"):
                point.tasd[p.kind] = value
            _apply(doc, p, value)
        levels = _level_bytes(doc)
        if spec.sram_budget_bytes is not None:
            used = {name: inst * bits * (cap or 0) // 8 for name, (inst, bits, cap) in levels.items()}
            if rest is not None:
                inst, bits, _ = levels[rest.target[1]]
                left = spec.sram_budget_bytes - sum(v for k, v in used.items() if k != rest.target[1])
                words = left * 8 // (inst * bits) if left > 0 else 0
                if words < 1:
                    point.reason = (f"no SRAM left for {rest.target[1]}: the other levels use "
                                    f"{_kib(spec.sram_budget_bytes - left)} of the "
                                    f"{_kib(spec.sram_budget_bytes)} budget")
                    point.kind = f"no SRAM left for {rest.target[1]} under the budget"
                    out.append(point)
                    continue
                _apply(doc, rest, words)
                params[rest.name] = str(words)
                used[rest.target[1]] = inst * bits * words // 8
            total = sum(used.values())
            if total > spec.sram_budget_bytes:
                point.reason = f"on-chip SRAM {_kib(total)} is over the budget {_kib(spec.sram_budget_bytes)}"
                point.kind = "on-chip SRAM over the budget"
                out.append(point)
                continue
        doc["architecture"]["name"] = pid
        try:
            arch = architecture_from_doc(doc, name=pid)
        except SpecError as exc:
            point.reason, point.kind = str(exc), _kind(str(exc))
            out.append(point)
            continue
        point.doc, point.arch = doc, arch
        point.area = area_breakdown(arch)
        point.sram_bytes = sum(lv.instances * lv.word_bits * (lv.capacity or 0) // 8 for lv in arch.levels
                               if lv.cls != "DRAM")
        if spec.max_area_mm2 is not None and point.area.mm2 > spec.max_area_mm2:
            point.reason = f"area {point.area.mm2:.3f} mm² is over max_area_mm2 {spec.max_area_mm2:g}"
            point.kind = "area over max_area_mm2"
        out.append(point)
    return out


def _kib(n: float) -> str:
    return f"{n / 1024:,.1f} KiB" if n % 1024 else f"{int(n) // 1024:,} KiB"


# ---------------------------------------------------------------------------------------------
# TASD series for designs with TASD units
# ---------------------------------------------------------------------------------------------


def _dropped_fraction(g: int, h: int, density: float) -> float:
    """Expected share of nonzeros a series keeping ``g`` of every ``h`` drops, nonzeros uniform at
    ``density`` (a block of h holds X ~ Binomial(h, density); the series keeps min(g, X))."""
    import numpy as np
    from scipy import stats

    x = np.arange(h + 1)
    pmf = stats.binom.pmf(x, h, density)
    return float(np.dot(np.maximum(x - g, 0), pmf) / (h * density))


def tasd_series(native: Sequence[tuple[int, int]], density: float, max_terms: int, drop_budget: float) -> str | None:
    """The series a TTC runs for an operand at ``density`` (TASD paper §4.2's criterion): the
    sparsest sum of at most ``max_terms`` of its native G:H patterns (one H per series) that drops
    at most ``drop_budget`` of the nonzeros; fewer terms win a tie. None when only dense qualifies.

    >>> tasd_series([(1, 8), (2, 8), (4, 8)], 0.5, 2, 0.05)  # 5:8 drops 4.6 % of half-dense data
    '4:8+1:8'
    >>> tasd_series([(2, 4)], 0.05, 2, 0.05)
    '2:4'
    """
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1]; got {density}")
    best: tuple[float, int, str] | None = None
    for h in sorted({h for _, h in native}):
        gs = sorted({g for g, hh in native if hh == h and g < h}, reverse=True)
        for n in range(1, max_terms + 1):
            for combo in itertools.combinations_with_replacement(gs, n):
                g = sum(combo)
                if g >= h or _dropped_fraction(g, h, density) > drop_budget:
                    continue
                cand = (g / h, n, "+".join(f"{x}:{h}" for x in combo))
                if best is None or cand < best:
                    best = cand
    return None if best is None else best[2]


def _has_tasd_units(arch: Architecture) -> bool:
    return arch.sparse is not None and (arch.sparse.term_loop is not None or arch.sparse.tasd_unit_energy > 0)


def workload_layers(w: SweepWorkload, point: DesignPoint) -> list[Problem]:
    """The layers as ``point``'s design sees them: a TTC applies the workload's TASD rule."""
    layers = list(w.network.layers)
    arch = point.arch
    if w.tasd is None or arch is None or not _has_tasd_units(arch):
        return layers
    rule = w.tasd
    max_terms = point.tasd.get("max_terms", rule.max_terms)
    drop = point.tasd.get("drop_budget", rule.drop_budget)
    native = [r[0] for r in arch.sparse.structured_support.get(rule.operand, ())  # type: ignore[union-attr]
              if len([x for x in r if x[0] < x[1]]) == 1 and len(r) == 1]
    if not native:
        return layers
    out = []
    memo: dict[float, str | None] = {}
    for p in layers:
        spec = p.a_density if rule.operand == "A" else p.b_density
        model = density_model(spec)
        if isinstance(model, (StructuredModel, SeriesModel)):
            out.append(p)  # already structured: nothing for TASD to do
            continue
        d = rule.density if rule.density is not None else float(model.density)
        if d not in memo:
            memo[d] = tasd_series(native, d, max_terms, drop)
        series = memo[d]
        if series is None:
            out.append(p)
            continue
        series = with_data_density(series, float(model.density))  # its zeros pad the slots: gating idles them
        out.append(replace(p, a_density=series if rule.operand == "A" else p.a_density,
                           b_density=series if rule.operand == "B" else p.b_density))
    return out


# ---------------------------------------------------------------------------------------------
# Running a sweep
# ---------------------------------------------------------------------------------------------


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both coordinates (both minimised), by the first
    coordinate; of equal points the first listed is kept.

    >>> pareto_front([(1.0, 5.0), (2.0, 3.0), (2.0, 4.0), (3.0, 3.0), (4.0, 1.0)])
    [0, 1, 4]
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1], i))
    front, best = [], math.inf
    for i in order:
        if points[i][1] < best:
            front.append(i)
            best = points[i][1]
    return front


@dataclass
class SweepResult:
    """Everything a sweep produced (see :func:`run_sweep`)."""

    spec: SweepSpec
    designs: list[DesignPoint]
    rows: list[dict[str, Any]]          # one per (valid design, workload) that mapped
    failures: list[dict[str, Any]]      # (design, workload) pairs with a layer that has no valid mapping
    fronts: dict[str, dict[str, list[str]]]  # workload → objective → design ids, by area
    stats: RunStats | None
    seconds: float

    def filtered(self) -> dict[str, dict[str, Any]]:
        """Filtered designs by reason kind: ``{kind: {"count": n, "example": message}}``, most first."""
        out: dict[str, dict[str, Any]] = {}
        for d in self.designs:
            if d.kind is not None:
                entry = out.setdefault(d.kind, {"count": 0, "example": d.reason})
                entry["count"] += 1
        for f in self.failures:
            kind = f"no valid mapping on workload {f['workload']}"
            entry = out.setdefault(kind, {"count": 0, "example": f["error"]})
            entry["count"] += 1
        return dict(sorted(out.items(), key=lambda kv: -kv[1]["count"]))

    def best(self, workload: str, objective: str) -> dict[str, Any] | None:
        """The row with the lowest ``objective`` on ``workload`` (ties: the smaller area)."""
        rows = [r for r in self.rows if r["workload"] == workload]
        return min(rows, key=lambda r: (r[METRIC_FIELDS[objective]], r["area_mm2"])) if rows else None

    def sensitivity(self, workload: str, objective: str) -> dict[str, list[dict[str, Any]]]:
        """Per swept parameter (with more than one value): for each value, the best and the median
        ``objective`` over the valid designs that take it, and how many there are."""
        key = METRIC_FIELDS[objective]
        rows = [r for r in self.rows if r["workload"] == workload]
        out: dict[str, list[dict[str, Any]]] = {}
        for p in self.spec.parameters:
            if len(p.values) < 2 or "rest" in p.values:
                continue
            entries = []
            for label in p.labels:
                vals = [r[key] for r in rows if r["params"].get(p.name) == label]
                entries.append({"value": label, "designs": len(vals), "best": min(vals) if vals else None,
                                "median": statistics.median(vals) if vals else None})
            out[p.name] = entries
        return out


#: objective → the row key it reads.
METRIC_FIELDS = {"edp": "edp_js", "energy": "energy_pj", "latency": "latency_s"}


def run_sweep(spec: SweepSpec, *, executor: Executor | str | None = None, cache: ResultCache | None = None,
              progress: Progress | None = None, warn: Callable[[str], None] | None = None,
              workers: int | None = None, designs: list[DesignPoint] | None = None) -> SweepResult:
    """Expand ``spec``, map every (valid design, workload layer), and build fronts per workload and
    objective (see the module doc). ``designs`` reuses an :func:`expand_designs` result.

    Raises:
        SpecError: no combination of the parameters gives a valid design (with the reasons counted).
        SweepInterrupted: Ctrl-C; what finished is in ``cache``.
    """
    t0 = time.perf_counter()
    designs = designs if designs is not None else expand_designs(spec)
    valid = [d for d in designs if d.valid]
    if not valid:
        raise SpecError(_no_valid_message(spec, designs))
    tasks: list[LayerTask] = []
    index: list[tuple[DesignPoint, SweepWorkload, list[Problem], int]] = []
    for d in valid:
        for w in spec.workloads:
            layers = workload_layers(w, d)
            index.append((d, w, layers, len(tasks)))
            tasks.extend(LayerTask(d.arch, p, spec.mapper) for p in layers)  # type: ignore[arg-type]
    records, stats = run_tasks(tasks, executor=executor, cache=cache, progress=progress, warn=warn, workers=workers)
    rows: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    for d, w, layers, start in index:
        recs = records[start:start + len(layers)]
        bad = next(((p, r) for p, r in zip(layers, recs, strict=True) if not r["ok"]), None)
        if bad is not None:
            failures.append({"design": d.id, "workload": w.name, "layer": bad[0].name, "error": bad[1]["error"]})
            continue
        rows.append(_row(d, w, layers, recs))
    fronts: dict[str, dict[str, list[str]]] = {}
    for w in spec.workloads:
        wrows = [r for r in rows if r["workload"] == w.name]
        fronts[w.name] = {}
        for obj in spec.objectives:
            idx = pareto_front([(r["area_mm2"], r[METRIC_FIELDS[obj]]) for r in wrows])
            fronts[w.name][obj] = [wrows[i]["design"] for i in idx]
            for i in idx:
                wrows[i]["front"].append(obj)
    if not rows:
        raise SpecError(_no_valid_message(spec, designs, failures))
    return SweepResult(spec=spec, designs=designs, rows=rows, failures=failures, fronts=fronts, stats=stats,
                       seconds=time.perf_counter() - t0)


def _row(d: DesignPoint, w: SweepWorkload, layers: list[Problem], recs: list[dict[str, Any]]) -> dict[str, Any]:
    arch = d.arch
    assert arch is not None and d.area is not None
    cycles = sum(r["cycles"] * p.repeat for p, r in zip(layers, recs, strict=True))
    energy = sum(r["energy_pj"] * p.repeat for p, r in zip(layers, recs, strict=True))
    macs = sum(p.macs * p.repeat for p in layers)
    by_level: dict[str, float] = {}
    for p, r in zip(layers, recs, strict=True):
        for name, e in r["level_energy_pj"].items():
            by_level[name] = by_level.get(name, 0.0) + e * p.repeat
        by_level[arch.compute.name] = by_level.get(arch.compute.name, 0.0) + r["mac_energy_pj"] * p.repeat
    operands = sorted({f"{density_model(p.a_density).label} / {density_model(p.b_density).label}" for p in layers})
    return {
        "design": d.id, "workload": w.name, "params": dict(d.params), "area_mm2": d.area.mm2,
        "area_breakdown_mm2": d.area.to_dict()["area_breakdown_mm2"], "sram_kib": d.sram_bytes / 1024,
        "macs": arch.compute.instances, "cycles": cycles, "latency_s": cycles / arch.clock_hz, "energy_pj": energy,
        "edp_js": energy * 1e-12 * cycles / arch.clock_hz, "utilization": macs / (cycles * arch.compute.instances),
        "energy_by_level_pj": by_level, "operands": operands, "front": [],
    }


def _no_valid_message(spec: SweepSpec, designs: list[DesignPoint], failures: Sequence[dict[str, Any]] = ()) -> str:
    kinds: dict[str, list[str]] = {}
    for d in designs:
        if d.kind is not None:
            kinds.setdefault(d.kind, []).append(d.reason or "")
    for f in failures:
        kinds.setdefault(f"no valid mapping on workload {f['workload']}", []).append(f"{f['design']}: {f['error']}")
    reasons = "; ".join(f"{len(v)}× {v[0]}" for v in sorted(kinds.values(), key=len, reverse=True)[:3])
    blame = ""
    valid_params = [d.params for d in designs if d.valid]
    for p in spec.parameters:
        if len(p.values) > 1 and not any(v.get(p.name) in p.labels for v in valid_params):
            blame = f" No value of parameter {p.name!r} ({p.where}) gives a valid design."
            break
    return (f"{spec.source}: no valid design among the {len(designs)} combination(s) of the sweep {spec.name!r}: "
            f"{reasons}.{blame}")
