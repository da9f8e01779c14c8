"""``tasder hw import`` / ``tasder hw export``: Timeloop/Sparseloop specs in and out (docs/timeloop.md).

::

    tasder hw import FILE.yaml [FILE.yaml ...] [--counts] [--mapper-budget N] [--objective edp|energy|cycles]
                     [--seed S] [--json] [-o FILE]

    tasder hw export --arch tc|ARCH.yaml [--workload WORKLOAD.yaml|gemm:MxKxN:A=..,B=..|MODEL] [--layer NAME]
                     [--mapping MAPPING.yaml] [--mapper-budget N] [--objective ...] [--seed S] [--extensions]
                     -o OUT.yaml|OUT_DIR

``import`` reads Timeloop v0.3 files (and the v0.4 node list) as ``timeloop-model`` merges them,
says how each part was read, and evaluates the problem on the mapping the files give (or, with no
mapping, on the best one the mapper finds). ``export`` writes one Timeloop v0.3 file per layer
(design, problem, mapping, sparse optimisations and ERT; a folder when the workload has several
layers) with the mapping given or the mapper's best; what Timeloop has no key for is refused,
naming each key and why, unless ``--extensions`` carries it in a ``tasder:`` section Timeloop
ignores (then each such key is named on stderr). Bad files end with exit code 2 and one ``error:``
line naming the file, the line and the key; nothing is written.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from tasder.cli.common import (
    JsonOption,
    ObjectiveOption,
    OutputOption,
    SeedOption,
    emit,
    status,
    table,
    warn,
    with_examples,
)

__all__ = ["export_cmd", "import_cmd", "import_report", "register"]


def import_report(spec: Any, *, budget: int = 2000, objective: str = "edp", seed: int = 0) -> dict[str, Any]:
    """The JSON document of a :class:`~tasder.hw.timeloop.TimeloopSpec`: its architecture, notes and,
    with a problem, the evaluation (on the files' mapping, else the mapper's best)."""
    from tasder.hw import evaluate, map_layer

    arch = spec.architecture

    def bw(x: float) -> float | None:
        return None if math.isinf(x) else x

    doc: dict[str, Any] = {
        "sources": list(spec.sources), "notes": list(spec.notes),
        "architecture": {
            "name": arch.name, "technology_nm": arch.technology_nm, "clock_hz": arch.clock_hz,
            "drain_reads": arch.drain_reads,
            "levels": [{"name": lv.name, "class": lv.cls, "instances": lv.instances, "capacity": lv.capacity,
                        "block_size": lv.block_size, "word_bits": lv.word_bits, "keep": list(lv.keep),
                        "read_bandwidth": bw(lv.read_bandwidth), "write_bandwidth": bw(lv.write_bandwidth),
                        "read_energy": lv.read_energy, "write_energy": lv.write_energy,
                        "update_energy": lv.update_energy} for lv in arch.levels],
            "compute": {"name": arch.compute.name, "instances": arch.compute.instances,
                        "energy_per_mac": arch.compute.energy_per_mac, "operand_latch": list(arch.compute.latch)},
            "sparse": None if arch.sparse is None else {
                "formats": {f"{lv}.{t}": str(f) for (lv, t), f in arch.sparse.formats.items()},
                "safs": [{"level": s.level, "type": s.kind, "target": s.target, "condition_on": list(s.condition_on)}
                         for s in arch.sparse.safs],
                "gated_energy_ratio": arch.sparse.gated_energy_ratio},
        },
        "evaluation": None,
    }
    if spec.problem is not None:
        if spec.mapping is not None:
            ev, source = evaluate(arch, spec.problem, spec.mapping), "the files' mapping"
        else:
            ev = map_layer(arch, spec.problem, budget=budget, objective=objective, seed=seed).best
            source = f"the mapper's best ({objective}, {budget} tried)"
        doc["evaluation"] = dict(ev.to_dict(), mapping_source=source)
    return doc


def _render_import(doc: dict[str, Any], console: Console, counts: bool) -> None:
    from tasder.cli.hw import _render_counts

    a = doc["architecture"]
    t = table(f"{a['name']} (from {', '.join(doc['sources'])})")
    for col in ("level", "class", "instances", "capacity", "block", "keep", "read bw", "write bw", "read pJ",
                "write pJ", "update pJ"):
        t.add_column(col, justify="left" if col in ("level", "class", "keep") else "right")
    for lv in a["levels"]:
        t.add_row(lv["name"], lv["class"], f"{lv['instances']:,}",
                  "-" if lv["capacity"] is None else f"{lv['capacity']:,}", str(lv["block_size"]),
                  ",".join(lv["keep"]) or "-", *("∞" if lv[k] is None else f"{lv[k]:g}"
                                                 for k in ("read_bandwidth", "write_bandwidth")),
                  *(f"{lv[k]:g}" for k in ("read_energy", "write_energy", "update_energy")))
    c = a["compute"]
    t.add_row(c["name"], "compute", f"{c['instances']:,}", "", "", ",".join(c["operand_latch"]) or "-", "", "",
              f"{c['energy_per_mac']:g}", "", "")
    console.print(t)
    for note in doc["notes"]:
        console.print(f"note: {note}", markup=False, highlight=False)
    ev = doc["evaluation"]
    if ev is None:
        return
    console.print(f"\n[bold]{ev['layer']}[/bold] ({ev['label']}) on {ev['mapping_source']}: "
                  f"cycles {ev['cycles']:,.0f}, energy {ev['energy_pj']:,.6g} pJ, utilization {ev['utilization']:.1%}, "
                  f"EDP {ev['edp']:.4g} J·s", highlight=False)
    console.print(ev["loop_nest"], markup=False, highlight=False)
    if counts:
        _render_counts(ev, console)


def import_cmd(
    files: Annotated[list[Path], typer.Argument(show_default=False, metavar="FILE.yaml...",
                                                help="Timeloop YAML files (merged as timeloop-model merges them).")],
    counts: Annotated[bool, typer.Option("--counts",
                                         help="Also print Timeloop's counters per level and tensor.")] = False,
    mapper_budget: Annotated[int, typer.Option("--mapper-budget", min=1,
                                               help="Mappings tried when the files give no mapping.")] = 2000,
    objective: ObjectiveOption = "edp",
    seed: SeedOption = 0,
    as_json: JsonOption = False,
    output: OutputOption = None,
) -> None:
    from tasder.hw.timeloop import load_timeloop

    spec = load_timeloop(*files)
    doc = import_report(spec, budget=mapper_budget, objective=objective, seed=seed)
    if as_json:
        emit(None, doc, output)
    else:
        emit(lambda console: _render_import(doc, console, counts), None, output)


def _problems(workload: str | None, layer: str | None) -> list[Any]:
    if workload is None:
        if layer is not None:
            raise ValueError("--layer picks a layer of --workload; give --workload too")
        return []
    if workload.startswith("gemm:"):
        from tasder.cli.hw import parse_gemm_workload

        layers = [parse_gemm_workload(workload)]
    else:
        from tasder.workloads import load_network

        layers = list(load_network(workload).layers)
    if layer is not None:
        picked = [p for p in layers if p.name == layer]
        if not picked:
            raise ValueError(f"--layer {layer!r}: no such layer (layers: {', '.join(p.name for p in layers)})")
        return picked
    return layers


def _file_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "layer"


def export_cmd(
    arch: Annotated[str, typer.Option("--arch", show_default=False,
                                      help="The design: a shipped name (e.g. tc) or an architecture YAML.")],
    output: Annotated[Path, typer.Option("--output", "-o", metavar="OUT", show_default=False,
                                         help="The Timeloop YAML to write (a folder when several layers).")],
    workload: Annotated[str | None, typer.Option(
        "--workload", show_default=False,
        help="A workload YAML, gemm:MxKxN:A=<density>,B=<density>, or a zoo model (omit: the design alone).")] = None,
    layer: Annotated[str | None, typer.Option("--layer", show_default=False,
                                              help="Export this layer of the workload only.")] = None,
    mapping: Annotated[Path | None, typer.Option(
        "--mapping", show_default=False, help="A tasder mapping YAML for the (one) layer (default: the mapper's "
                                              "best).")] = None,
    mapper_budget: Annotated[int, typer.Option("--mapper-budget", min=1, help="Mappings tried per layer.")] = 2000,
    objective: ObjectiveOption = "edp",
    seed: SeedOption = 0,
    extensions: Annotated[bool, typer.Option(
        "--extensions", help="Carry what Timeloop has no key for in a 'tasder:' section Timeloop ignores "
                             "(default: refuse, naming each key).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was written (files, layers, keys carried in "
                                                         "the tasder section) as JSON.")] = False,
) -> None:
    from tasder.hw import load_architecture, load_mapping, map_layer
    from tasder.hw.timeloop_export import timeloop_yaml
    from tasder.io import atomic_write_text, check_writable, staged_folder

    design = load_architecture(arch)
    problems = _problems(workload, layer)
    if mapping is not None and len(problems) != 1:
        raise ValueError("--mapping maps one layer: give --workload with one layer (or --layer NAME)")
    if len(problems) <= 1:
        check_writable(output)
    # Everything is built before anything is written: a refusal leaves no file behind.
    texts: list[tuple[str, str]] = []
    notes: list[str] = []
    if not problems:
        text, notes = timeloop_yaml(design, extensions=extensions)
        texts.append((output.name, text))
    for p in problems:
        m = load_mapping(mapping, design, p) if mapping is not None else \
            map_layer(design, p, budget=mapper_budget, objective=objective, seed=seed).best.mapping
        text, n = timeloop_yaml(design, p, m, extensions=extensions)
        notes += [x for x in n if x not in notes]
        texts.append((f"{_file_name(p.name)}.yaml", text))
    for note in notes:
        warn(note)
    if len(texts) == 1:
        atomic_write_text(output, texts[0][1])
        status(f"wrote {output}")
        files = [str(output)]
    else:
        with staged_folder(output) as folder:
            for name, text in texts:
                (folder / name).write_text(text, encoding="utf-8")
        status(f"wrote {len(texts)} files to {output}/")
        files = [str(output / name) for name, _ in texts]
    if as_json:
        emit(None, {"architecture": design.name, "files": files, "layers": [p.name for p in problems],
                    "extensions": notes}, None)


def register(hw_app: typer.Typer) -> None:
    """Add ``hw import`` and ``hw export`` to the ``hw`` group."""
    hw_app.command("import", help=with_examples(
        "Read Timeloop/Sparseloop YAML (v0.3, v0.4 node lists) into tasder and evaluate it.",
        "tasder hw import arch.yaml problem.yaml mapping.yaml ert.yaml --counts",
        "tasder hw import exported.yaml --json -o eval.json",
    ))(import_cmd)
    hw_app.command("export", help=with_examples(
        "Write a design (and a workload's layers with their mappings) as Timeloop v0.3 YAML.",
        "tasder hw export --arch tc --workload gemm:64x64x64 -o tc_gemm.yaml",
        "tasder hw export --arch stc --workload gemm:256x256x256:A=2:4 --extensions -o stc.yaml",
        "tasder hw export --arch tc --workload workload.yaml -o timeloop_specs/",
    ))(export_cmd)
