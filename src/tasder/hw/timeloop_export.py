"""tasder designs, problems and mappings out, as Timeloop v0.3 YAML that ``timeloop-model`` v3.0.3 reads.

:func:`to_timeloop` builds the document, :func:`timeloop_yaml` its text (``tasder hw export`` writes
it atomically; :mod:`tasder.hw` writes no files, the layering keeps :mod:`tasder.io` out of it). The rules
(docs/timeloop.md): hyphenated keys (v3.0.3 reads no others); the v0.3 tree with one ``subtree``
child per node, a new ``Name[0..f-1]`` node at each fan-out f, components outermost first and the
compute last; capacity as ``depth`` × ``block-size`` (``entries`` when the block does not divide
it); energies in an ``ERT`` per vector access (``read``, ``write`` for fills, ``random_update``,
the gated and metadata actions); the operand latch as a per-MAC ``regfile`` that keeps the
latched tensors, one word each, with free accesses and no loops (how a Timeloop spec declares
one); permutations innermost first; ``datatype`` keep/bypass at every level; formats with
``rank-application-order: inner-to-outer``.

What Timeloop has no key for (a drain charged as a read, a clock, leakage, structured-engine
support, TASD term reuse, G:H densities, SAF granularities...) is refused, each with its key path
and the reason, unless ``extensions=True``: then it travels in a top-level ``tasder:`` section that
Timeloop ignores and :func:`tasder.hw.timeloop.load_timeloop` reads back, so export → import gives
the same evaluation; the returned notes name every key carried there.
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml

from tasder.hw.architecture import Architecture
from tasder.hw.density import DenseModel, StructuredModel, UniformModel
from tasder.hw.formats import Format
from tasder.hw.mapping import Mapping, check_mapping
from tasder.hw.sparse import _pattern
from tasder.hw.spec import SpecError
from tasder.hw.timeloop import EXTENSION_KEY, EXTENSION_VERSION
from tasder.hw.workload import TENSORS, Problem, conv_shape

__all__ = ["ExportRefusedError", "timeloop_yaml", "to_timeloop"]


class ExportRefusedError(SpecError):
    """A design, problem or mapping with something Timeloop has no key for (and no ``extensions``)."""


def _num(x: float) -> int | float:
    """Integers as ints (``8`` not ``8.0``), everything else exactly as the float it is."""
    return int(x) if float(x).is_integer() and abs(x) < 2**53 else float(x)


def _tech(nm: float) -> str:
    return f"{_num(nm)}nm"


class _Out:
    """The document being built and what it could not say in Timeloop's own keys."""

    def __init__(self, extensions: bool) -> None:
        self.extensions = extensions
        self.carried: list[tuple[str, str]] = []  # (key path, why Timeloop cannot say it)
        self.ext: dict[str, Any] = {}

    def carry(self, section: str, key: str, value: Any, path: str, why: str) -> None:
        self.carried.append((path, why))
        self.ext.setdefault(section, {})[key] = value


def _names(problem: Problem | None) -> dict[str, str]:
    if problem is None:
        return dict(zip(TENSORS, TENSORS, strict=True))
    shape = problem.shape
    assert shape is not None
    return dict(zip(TENSORS, shape.tensor_names, strict=True))


def _is_conv_ff(problem: Problem) -> bool:
    g = problem.geometry()
    return g is not None and problem.shape == conv_shape(g["stride"], g["dilation"], "FF")


def _dim_out(problem: Problem | None) -> dict[str, str]:
    """tasder dim → Timeloop dim (a convolution's output channels are Timeloop's K)."""
    if problem is None:
        return {}
    if _is_conv_ff(problem):
        return {d: ("K" if d == "M" else d) for d in problem.dims}
    return {d: d for d in problem.dims}


# ------------------------------------------------------------------------------------------------
# Architecture + ERT
# ------------------------------------------------------------------------------------------------


def _architecture(arch: Architecture, out: _Out, names: dict[str, str], formats_at: set[str]) -> tuple[dict, dict]:
    comps: list[tuple[int, dict]] = []  # (instances, component)
    ert: list[dict] = []
    sp = arch.sparse
    gated = sp.gated_energy_ratio if sp is not None else None
    for i, lv in enumerate(arch.levels):
        attrs: dict[str, Any] = {"word-bits": lv.word_bits, "block-size": lv.block_size,
                                 "width": lv.word_bits * lv.block_size}
        if lv.capacity is not None:
            if lv.capacity % lv.block_size == 0:
                attrs["depth"] = lv.capacity // lv.block_size
            else:
                attrs["entries"] = lv.capacity
        for key, bw in (("read_bandwidth", lv.read_bandwidth), ("write_bandwidth", lv.write_bandwidth)):
            if math.isfinite(bw):
                attrs[key] = _num(bw)
        if lv.name in formats_at:
            # Metadata moves in blocks of the data's width. No metadata_datawidth: Timeloop would give
            # every coordinate that width, tasder derives ceil(log2 k) unless the rank fixes it
            # (CP:2 → metadata-word-bits: 2, exact in both).
            attrs["metadata_storage_width"] = lv.word_bits * lv.block_size
        if lv.leakage_power:
            out.carry("architecture", "leakage_power", {**out.ext.get("architecture", {}).get("leakage_power", {}),
                                                        lv.name: _num(lv.leakage_power)},
                      f"architecture.storage[{i}].attributes.leakage_power",
                      "Timeloop v3.0.3 does not use leakage (its ERT 'leak' action is ignored)")
        comps.append((lv.instances, {"name": lv.name, "class": lv.cls, "attributes": attrs}))
        actions = [{"name": "read", "energy": _num(lv.read_energy)}, {"name": "write", "energy": _num(lv.write_energy)},
                   {"name": "random_update", "energy": _num(lv.update_energy)}]
        if gated is not None:
            actions += [{"name": "gated_read", "energy": _num(lv.read_energy * gated)},
                        {"name": "gated_write", "energy": _num(lv.write_energy * gated)},
                        {"name": "gated_update", "energy": _num(lv.update_energy * gated)}]
        if lv.name in formats_at:
            actions += [{"name": "metadata_read", "energy": _num(lv.read_energy)},
                        {"name": "metadata_write", "energy": _num(lv.write_energy)}]
        ert.append({"name": lv.name, "actions": actions})
    c = arch.compute
    if c.latch:
        latch = f"{c.name}_latch"
        comps.append((c.instances, {"name": latch, "class": "regfile",
                                    "attributes": {"word-bits": arch.levels[-1].word_bits, "block-size": 1,
                                                   "width": arch.levels[-1].word_bits, "depth": len(c.latch)}}))
        ert.append({"name": latch, "actions": [{"name": "read", "energy": 0}, {"name": "write", "energy": 0},
                                               {"name": "random_update", "energy": 0}]})
        if out.extensions:
            out.ext.setdefault("architecture", {})["latch_level"] = latch
    bits = int("".join(ch for ch in c.datatype if ch.isdigit()) or 16)
    comps.append((c.instances, {"name": c.name, "class": "intmac" if c.datatype.startswith("int") else "fpmac",
                                "attributes": {"datawidth": bits, "datatype": c.datatype,
                                               "accumulator": c.accumulator}}))
    mac = [{"name": "mac_random", "energy": _num(c.energy_per_mac)}]
    if gated is not None:
        mac += [{"name": "mac_gated", "energy": _num(c.energy_per_mac * gated)}, {"name": "mac_skipped", "energy": 0}]
    ert.append({"name": c.name, "actions": mac})
    # The tree: a new subtree node wherever the instance count grows (its range is the fan-out).
    # The root node carries the design's name when Timeloop can hold it (no dots, brackets or spaces).
    top = arch.name if re.fullmatch(r"[A-Za-z0-9_-]+", arch.name) else "system"
    root: dict[str, Any] = {"name": top, "attributes": {"technology": _tech(arch.technology_nm)}, "local": []}
    node, count, paths, prefix = root, 1, {}, top
    for inst, comp in comps:
        if inst != count:
            fan = inst // count
            child = {"name": f"{comp['name']}_array[0..{fan - 1}]", "local": []}
            node["subtree"] = [child]
            prefix = f"{prefix}.{child['name']}"
            node, count = child, inst
        node["local"].append(comp)
        paths[comp["name"]] = f"{prefix}.{comp['name']}"
    for table in ert:
        table["name"] = paths[table["name"]]
    if top != arch.name:
        out.carry("architecture", "name", arch.name, "architecture.name",
                  "a Timeloop node name holds no dots, brackets or spaces")
    return {"version": 0.3, "subtree": [root]}, {"version": 0.3, "tables": ert}


def _extras(arch: Architecture, out: _Out) -> None:
    """Architecture keys Timeloop has none for."""
    if arch.clock_hz != 1e9:
        out.carry("architecture", "clock_hz", _num(arch.clock_hz), "architecture.clock_hz",
                  "Timeloop counts cycles only (its GFLOPs assume 1 GHz)")
    if arch.drain_reads:
        out.carry("architecture", "drain_reads", True, "architecture.drain_reads",
                  "Timeloop charges a partial-sum drain only as the parent's update, never as a read of the level "
                  "it leaves")
    if arch.mapper_orders:
        out.carry("architecture", "mapper_orders", dict(arch.mapper_orders), "mapper_constraints.orders",
                  "tasder's design constraints name GEMM roles; Timeloop's constraints name problem dimensions")
    if arch.mapper_spatial:
        out.carry("architecture", "mapper_spatial", dict(arch.mapper_spatial), "mapper_constraints.spatial_dims",
                  "tasder's design constraints name GEMM roles; Timeloop's constraints name problem dimensions")
    if out.extensions:
        out.ext.setdefault("architecture", {})["technology_nm"] = _num(arch.technology_nm)


def _format(fmt: Format) -> list[dict[str, Any]]:
    ranks = []
    for r in fmt.ranks:
        if r.kind == "U":
            # No Timeloop rank is plain "uncompressed, no metadata"; UOP with 0-bit offsets is.
            ranks.append({"format": "UOP", "payload-word-bits": 0})
        elif r.kind == "UOP":
            ranks.append({"format": "UOP"} if r.bits is None else {"format": "UOP", "payload-word-bits": r.bits})
        else:
            ranks.append({"format": r.kind} if r.bits is None else {"format": r.kind, "metadata-word-bits": r.bits})
    return ranks


def _sparse(arch: Architecture, out: _Out, names: dict[str, str]) -> dict | None:
    sp = arch.sparse
    if sp is None:
        return None
    if sp.structured_support:
        out.carry("sparse", "structured_support",
                  {t: [str(_pattern(r)) for r in pats] for t, pats in sp.structured_support.items()},
                  "sparse_optimizations.structured_support",
                  "Timeloop v3.0.3 has no structured-engine model (an operand runs at an engine pattern it implies)")
    # term_reuse (a dict) is becoming term_loop (a TermLoop, issue 17); either travels as written.
    reuse = getattr(sp, "term_reuse", None)
    if reuse:
        out.carry("sparse", "term_reuse", dict(reuse), "sparse_optimizations.term_reuse",
                  "Timeloop has no TASD series (terms as passes that reuse the other tensors)")
    loop = getattr(sp, "term_loop", None)
    if loop is not None:
        out.carry("sparse", "term_loop", {k: getattr(loop, k) for k in ("level", "innermost", "max_terms")},
                  "sparse_optimizations.term_loop", "Timeloop has no TASD series (a term loop)")
    for key in ("accumulation_energy", "tasd_unit_energy"):
        if getattr(sp, key):
            out.carry("sparse", key, _num(getattr(sp, key)), f"sparse_optimizations.{key}",
                      "Timeloop's compute has no per-MAC extra energy")
    if out.extensions:
        out.ext.setdefault("sparse", {})["gated_energy_ratio"] = _num(sp.gated_energy_ratio)
    targets = []
    order = [lv.name for lv in arch.levels] + [arch.compute.name]
    exact = []
    for name in order:
        tgt: dict[str, Any] = {"name": name}
        fmts = [(t, f) for (lv, t), f in sp.formats.items() if lv == name]
        if fmts:
            tgt["representation-format"] = {"data-spaces": [
                {"name": names[t], "rank-application-order": "inner-to-outer", "ranks": _format(f)}
                for t, f in sorted(fmts)]}
        safs = [s for s in sp.safs if s.level == name]
        if name == arch.compute.name and safs:
            tgt["compute-optimization"] = [{"type": s.kind} for s in safs]
            for s in safs:
                if s.condition_on != ("A", "B") or s.target != "Z" or s.granularity is not None:
                    out.carried.append((f"sparse_optimizations.targets[{name}].action_optimization",
                                        f"Timeloop's compute optimisation has no leaders (a MAC with any zero operand "
                                        f"is ineffectual); tasder's {s.kind} here is conditioned on "
                                        f"{', '.join(s.condition_on)} only"))
                    break
        elif safs:
            tgt["action-optimization"] = [{"type": s.kind, "target": names[s.target],
                                           "condition-on": [names[x] for x in s.condition_on]} for s in safs]
            for s in safs:
                if s.granularity is not None:
                    out.carried.append((f"sparse_optimizations.targets[{name}].action_optimization.granularity",
                                        "Timeloop decides a SAF on the leader's tile one level down; it has no "
                                        "fixed granularity"))
                    break
        exact += [{"target": s.target, "condition_on": list(s.condition_on),
                   **({"granularity": s.granularity} if s.granularity is not None else {})} for s in safs]
        if len(tgt) > 1:
            targets.append(tgt)
    if out.extensions:
        out.ext.setdefault("sparse", {})["safs"] = exact
    return {"targets": targets}


# ------------------------------------------------------------------------------------------------
# Problem and mapping
# ------------------------------------------------------------------------------------------------


def _problem(problem: Problem, out: _Out) -> dict:
    shape = problem.shape
    assert shape is not None
    names = _names(problem)
    rename = _dim_out(problem)
    instance: dict[str, Any] = {rename[d]: b for d, b in zip(problem.dims, problem.sizes, strict=True)}
    if _is_conv_ff(problem):
        c = dict(shape.coefficients)
        # tasder pairs P with R along its first spatial axis (Hstride); Timeloop names that axis W.
        shape_doc: dict[str, Any] = {
            "name": "CNN-Layer", "dimensions": ["R", "S", "P", "Q", "C", "K", "N"],
            "coefficients": [{"name": k, "default": 1} for k in ("Wstride", "Hstride", "Wdilation", "Hdilation")],
            "data-spaces": [
                {"name": names["A"], "projection": [[["C"]], [["K"]], [["R"]], [["S"]]]},
                {"name": names["B"], "projection": [[["N"]], [["C"]], [["R", "Wdilation"], ["P", "Wstride"]],
                                                    [["S", "Hdilation"], ["Q", "Hstride"]]]},
                {"name": names["Z"], "projection": [[["N"]], [["K"]], [["Q"]], [["P"]]], "read-write": True}]}
        instance.update({"Wstride": c["Hstride"], "Hstride": c["Wstride"], "Wdilation": c["Hdilation"],
                         "Hdilation": c["Wdilation"]})
    else:
        spaces = []
        for ti, t in enumerate(TENSORS):
            proj = [[[d] if c is None else [d, c] for d, c in rank] for rank in shape.projections[ti]]
            ds: dict[str, Any] = {"name": names[t], "projection": proj}
            if t == "Z":
                ds["read-write"] = True
            spaces.append(ds)
        shape_doc = {"name": shape.name, "dimensions": list(shape.dims)}
        if shape.coefficients:
            shape_doc["coefficients"] = [{"name": k, "default": 1} for k, _ in shape.coefficients]
            instance.update(dict(shape.coefficients))
        shape_doc["data-spaces"] = spaces
        # The density dims (a pattern's fibers) have no Timeloop key; keep them exact.
        if shape.name != "GEMM" and out.extensions:
            out.ext.setdefault("problem", {})["density_dims"] = [list(shape.density_dims[0]),
                                                                 list(shape.density_dims[1])]
    densities: dict[str, Any] = {}
    for t, model, key in (("A", problem.a_density, "a_density"), ("B", problem.b_density, "b_density")):
        if isinstance(model, DenseModel):
            continue
        if isinstance(model, UniformModel) and model.size == problem.tensor_size(t):
            densities[names[t]] = {"distribution": "hypergeometric", "density": _num(model.density)}
            continue
        if isinstance(model, UniformModel):
            raise ExportRefusedError(f"problem {problem.name!r}: {key}: a uniform model over {model.size} words "
                                     f"(not the tensor's {problem.tensor_size(t)}) has no form in Timeloop or in "
                                     f"tasder's notation")
        if not model.structured or not getattr(model, "label", ""):
            raise ExportRefusedError(f"problem {problem.name!r}: {key}: a {type(model).__name__} (measured data) "
                                     f"has no Timeloop form (v3.0.3 reads no real-data densities)")
        # Timeloop's nearest is fixed-structured at the same density; the pattern travels apart.
        densities[names[t]] = {"distribution": "fixed-structured", "density": _num(model.density)}
        why = ("Timeloop v3.0.3 has no G:H/HSS model; it is written as fixed-structured at the same density"
               if isinstance(model, StructuredModel) else
               "Timeloop has no TASD series; it is written as fixed-structured at the total density")
        out.carry("problem", key, model.label, f"problem.{key}", why)
    if densities:
        instance["densities"] = densities
    if problem.repeat != 1:
        out.carry("problem", "repeat", problem.repeat, "problem.repeat",
                  "a Timeloop problem is one layer run once")
    if out.extensions:
        out.ext.setdefault("problem", {}).update({"name": problem.name, "word_bits": problem.word_bits})
    return {"shape": shape_doc, "instance": instance}


def _mapping(arch: Architecture, problem: Problem, mapping: Mapping, names: dict[str, str]) -> list[dict]:
    rename = _dim_out(problem)
    dims = mapping.dims
    out = []

    def factors(values: tuple[int, ...]) -> str:
        return " ".join(f"{rename[d]}={v}" for d, v in zip(dims, values, strict=True))

    fan = arch.fanouts
    for i, (lv, m) in enumerate(zip(arch.levels, mapping.levels, strict=True)):
        out.append({"target": lv.name, "type": "temporal", "factors": factors(m.temporal),
                    "permutation": "".join(rename[d] for d in reversed(m.order))})
        if fan[i] > 1:
            out.append({"target": lv.name, "type": "spatial", "factors": factors(m.spatial),
                        "permutation": "".join(rename[d] for d in dims), "split": len(dims)})
        out.append({"target": lv.name, "type": "datatype", "keep": [names[t] for t in lv.keep],
                    "bypass": [names[t] for t in TENSORS if t not in lv.keep]})
    c = arch.compute
    if c.latch:
        latch = f"{c.name}_latch"
        out.append({"target": latch, "type": "temporal", "factors": factors((1,) * len(dims)),
                    "permutation": "".join(rename[d] for d in reversed(dims))})
        out.append({"target": latch, "type": "datatype", "keep": [names[t] for t in c.latch],
                    "bypass": [names[t] for t in TENSORS if t not in c.latch]})
    return out


def to_timeloop(arch: Architecture, problem: Problem | None = None, mapping: Mapping | None = None, *,
                extensions: bool = False) -> tuple[dict[str, Any], list[str]]:
    """The Timeloop v0.3 document of ``arch`` (and ``problem``, ``mapping``) and the notes naming every
    key carried in the ``tasder:`` section.

    Raises:
        ExportRefusedError: something Timeloop has no key for, when ``extensions`` is False (one line per
            key: its path and the reason); a density model no notation can carry, always.
        MappingError: ``mapping`` is not valid for ``arch`` and ``problem``.
    """
    if mapping is not None:
        if problem is None:
            raise ValueError("a mapping exports with the problem it maps")
        check_mapping(arch, problem, mapping)
    out = _Out(extensions)
    names = _names(problem)
    formats_at = {lv for lv, _ in (arch.sparse.formats if arch.sparse is not None else {})}
    if arch.compute.name == f"{arch.compute.name}" and any(lv.name == f"{arch.compute.name}_latch"
                                                          for lv in arch.levels):
        raise ExportRefusedError(f"a storage level is named {arch.compute.name}_latch, the name the exported operand "
                            f"latch takes; rename it")
    _extras(arch, out)
    arch_doc, ert = _architecture(arch, out, names, formats_at)
    doc: dict[str, Any] = {"architecture": arch_doc}
    if problem is not None:
        doc["problem"] = _problem(problem, out)
    if mapping is not None and problem is not None:
        doc["mapping"] = _mapping(arch, problem, mapping, names)
    keep = [{"target": lv.name, "type": "bypass", "keep": [names[t] for t in lv.keep],
             "bypass": [names[t] for t in TENSORS if t not in lv.keep]} for lv in arch.levels if len(lv.keep) < 3]
    if keep and mapping is None:
        doc["architecture_constraints"] = {"targets": keep}
    sparse = _sparse(arch, out, names)
    if sparse is not None and sparse["targets"]:
        doc["sparse_optimizations"] = sparse
    doc["ERT"] = ert
    if out.carried and not extensions:
        lines = "; ".join(f"{path}: {why}" for path, why in out.carried)
        raise ExportRefusedError(f"cannot export {arch.name} to Timeloop without losing {len(out.carried)} setting(s): "
                            f"{lines}. Pass extensions=True (tasder hw export --extensions) to carry them in a "
                            f"'{EXTENSION_KEY}:' section that Timeloop ignores")
    notes = [f"{path} → {EXTENSION_KEY}: section ({why})" for path, why in out.carried]
    if extensions:
        doc[EXTENSION_KEY] = {"version": EXTENSION_VERSION, **out.ext}
    return doc, notes


class _Dumper(yaml.SafeDumper):
    """Short lists and leaf mappings inline (as Timeloop's examples write them), the rest as blocks."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(not isinstance(x, (dict, list)) for x in data) or \
        all(isinstance(x, list) and all(isinstance(y, list) for y in x) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


def _represent_dict(dumper: yaml.SafeDumper, data: dict) -> yaml.Node:
    flow = all(not isinstance(v, (dict, list)) for v in data.values()) and len(data) <= 6
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=flow)


_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(dict, _represent_dict)


def timeloop_yaml(arch: Architecture, problem: Problem | None = None, mapping: Mapping | None = None, *,
                  extensions: bool = False) -> tuple[str, list[str]]:
    """:func:`to_timeloop` as YAML text (and its notes)."""
    doc, notes = to_timeloop(arch, problem, mapping, extensions=extensions)
    head = "# Timeloop v0.3 spec written by tasder (hyphenated keys: timeloop-model v3.0.3).\n"
    if extensions:
        head += f"# The '{EXTENSION_KEY}:' section holds what Timeloop has no key for; Timeloop ignores it.\n"
    return head + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=110, allow_unicode=True), notes
