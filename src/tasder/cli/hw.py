"""``tasder hw eval``: map a workload onto an accelerator design and report cycles, energy and EDP.

::

    tasder hw eval --arch tc|ARCH.yaml --workload resnet50|bert-base|deit-small|MODEL|WORKLOAD.yaml
                   [--im2col] [--counts] [--mapper-budget N] [--objective edp|energy|cycles] [--seed S]
                   [--json] [-o FILE]
                   [--executor auto|serial|process|ray] [--workers N] [--address HOST:PORT] [--cache-dir DIR]

    tasder hw compare --designs tc,stc,dstc,highlight,ttc-vegeta-m8
                      --workload gemm:MxKxN:A=<density>,B=<density> [--workload ...]
                      [--mapper-budget N] [--objective edp|energy|cycles] [--json] [--plot FILE] [-o FILE]

``eval`` is a thin layer over :func:`tasder.hw.map_network`: every layer gets its own best mapping, totals
weight layers by their repeat count. ``--counts`` prints, per layer, level and tensor, the counters
Timeloop's ``stats.txt`` prints (reads, fills, updates: algorithmic / actual / gated / skipped, and
metadata; drains apart), totals over every utilized instance, so numbers compare line by line;
``--json`` always carries them (``layers[i].counts``). Convolutions are native unless ``--im2col``.
The searches run through :mod:`tasder.hw.executor` (every core once the job is big enough, or a
Ray cluster; cached with ``--cache-dir``); ``tasder hw sweep`` (cli/sweep.py) explores design spaces.
The workload loads with :func:`tasder.workloads.load_network`: a zoo MODEL without a shape table
(e.g. digits-cnn) is traced on its first calibration batch. Bad specs end with exit code 2 and one
``error:`` line naming the file, line and key.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from tasder.cli._hwrun import (
    AddressOption,
    CacheDirOption,
    EtaProgress,
    ExecutorOption,
    WorkersOption,
    make_cache,
    run_executor,
)
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

__all__ = [
    "compare_cmd",
    "compare_rows",
    "counts_rows",
    "eval_cmd",
    "hw_app",
    "map_network_with_progress",
    "network_report",
    "parse_gemm_workload",
    "register",
]

hw_app = typer.Typer(name="hw", no_args_is_help=True, add_completion=False, help=with_examples(
    "The analytical accelerator model: map and evaluate workloads.",
    "tasder hw eval --arch tc --workload resnet50",
    "tasder hw compare --designs tc,stc,dstc --workload gemm:512x512x512:A=2:4,B=dense",
))



def network_report(arch: Any, result: Any) -> dict[str, Any]:
    """The JSON document of a :class:`~tasder.hw.NetworkResult` (also what the tables show)."""
    from tasder.hw.microarch import ACTIONS

    breakdown: dict[str, dict[str, float]] = {lv.name: dict.fromkeys((*ACTIONS, "leakage"), 0.0)
                                              for lv in arch.levels}
    mac_energy = 0.0
    for r in result.layers:
        rep = r.best.problem.repeat
        for i, lv in enumerate(arch.levels):
            for ai, a in enumerate(ACTIONS):
                breakdown[lv.name][a] += float(r.best.costs.energy[0, i, :, ai].sum()) * rep
            breakdown[lv.name]["leakage"] += float(r.best.costs.leakage_energy[0, i]) * rep
        mac_energy += float(r.best.costs.compute_energy[0]) * rep
    breakdown[arch.compute.name] = {"mac": mac_energy}
    from tasder.hw.area import area_breakdown

    return {
        "architecture": arch.name, "workload": result.network.name, **area_breakdown(arch).to_dict(),
        "total": {"cycles": result.cycles, "energy_pj": result.energy_pj, "edp_js": result.edp,
                  "utilization": result.utilization(arch.compute.instances),
                  "seconds": result.cycles / arch.clock_hz},
        "energy_breakdown_pj": breakdown,
        "layers": [dict(r.best.to_dict(), mapper={"objective": r.objective, "candidates": r.candidates,
                                                  "valid": r.valid, "exhaustive": r.exhaustive})
                   for r in result.layers],
    }


def _render(doc: dict[str, Any], console: Console, counts: bool = False) -> None:
    t = table(f"{doc['workload']} on {doc['architecture']}")
    for col in ("layer", "shape (M-K-N)", "×", "cycles", "energy µJ", "EDP J·s", "util"):
        t.add_column(col, justify="left" if col == "layer" else "right")
    for layer in doc["layers"]:
        t.add_row(layer["layer"], layer["label"], str(layer["repeat"]),
                  f"{layer['cycles']:,.0f}", f"{layer['energy_pj'] / 1e6:,.2f}", f"{layer['edp']:.3e}",
                  f"{layer['utilization']:.1%}")
    tot = doc["total"]
    t.add_section()
    t.add_row("TOTAL", "", "", f"{tot['cycles']:,.0f}", f"{tot['energy_pj'] / 1e6:,.2f}", f"{tot['edp_js']:.3e}",
              f"{tot['utilization']:.1%}", style="bold")
    console.print(t)
    console.print()
    b = table("energy by level and action (µJ, all layers × repeat)")
    actions = ("read", "write", "update", "drain", "leakage", "mac")
    b.add_column("level")
    for a in (*actions, "total"):
        b.add_column(a, justify="right")
    for level, row in doc["energy_breakdown_pj"].items():
        b.add_row(level, *[f"{row.get(a, 0.0) / 1e6:,.2f}" for a in actions], f"{sum(row.values()) / 1e6:,.2f}")
    console.print(b)
    for layer in doc["layers"]:
        console.print(f"\n[bold]{layer['layer']}[/bold] mapping:", highlight=False)
        console.print(layer["loop_nest"], markup=False, highlight=False)
        if counts:
            _render_counts(layer, console)


def counts_rows(counts: dict[str, Any]) -> list[list[str]]:
    """The rows of the ``--counts`` table of one layer: per level, tensor and action the algorithmic,
    actual, gated, skipped and metadata words (totals over the utilized instances), a drains row
    per level keeping Z, and the compute."""
    rows = []
    for level, lv in counts["levels"].items():
        inst = lv["utilized_instances"]
        for t, row in lv["tensors"].items():
            for action in ("reads", "fills", "updates"):
                a = row[action]
                rows.append([level, f"{t} {row['name']}" if row["name"] != t else t, action, f"{inst:g}",
                             f"{row['tile']:,.0f}", *(f"{a[k]:,.6g}" for k in
                                                      ("algorithmic", "actual", "gated", "skipped", "metadata"))])
            if t == "Z":
                rows.append([level, f"{t} {row['name']}" if row["name"] != t else t, "drains", f"{inst:g}",
                             f"{row['tile']:,.0f}", "", f"{row['drains']:,.6g}", "", "", ""])
    c = counts["compute"]
    rows.append([c["name"], "", "computes", f"{c['utilized_instances']:g}", "",
                 *(f"{c[k]:,.6g}" for k in ("algorithmic", "actual", "gated", "skipped")), ""])
    return rows


def _render_counts(layer: dict[str, Any], console: Console) -> None:
    t = table(f"{layer['layer']}: counts (totals over utilized instances; Timeloop prints per instance)")
    for col in ("level", "tensor", "action", "instances", "tile", "algorithmic", "actual", "gated", "skipped",
                "metadata"):
        t.add_column(col, justify="left" if col in ("level", "tensor", "action") else "right")
    for row in counts_rows(layer["counts"]):
        t.add_row(*row)
    console.print(t)


def map_network_with_progress(arch: Any, network: Any, *, budget: int = 5000, objective: str = "edp",
                               seed: int = 0, executor: Any = None, cache: Any = None,
                               workers: int | None = None) -> Any:
    """:func:`tasder.hw.map_network` through :func:`tasder.hw.executor.run_network`, with a progress
    bar: one step per distinct search (layers that map alike share one,
    :func:`tasder.hw.mapper.mapping_key`)."""
    from tasder.hw.executor import MapperSettings, run_network

    settings = MapperSettings(budget=budget, objective=objective, seed=seed)
    with EtaProgress(f"mapping {network.name} onto {arch.name}") as progress:
        return run_network(arch, network, settings, executor=executor, cache=cache, progress=progress, warn=warn,
                           workers=workers)


@hw_app.command("eval", help=with_examples(
    "Map every layer of WORKLOAD onto ARCH; report cycles, energy by level and action, EDP and mappings.",
    "tasder hw eval --arch tc --workload resnet50",
    "tasder hw eval --arch stc --workload bert-base --mapper-budget 2000 --objective energy",
    "tasder hw eval --arch my_design.yaml --workload workload.yaml --json -o eval.json",
    "tasder hw eval --arch tc --workload resnet50 --counts --mapper-budget 500",
))
def eval_cmd(
    arch: Annotated[str, typer.Option("--arch", show_default=False,
                                      help="The design: a shipped name (e.g. tc) or an architecture YAML.")],
    workload: Annotated[str, typer.Option(
        "--workload", show_default=False,
        help="resnet50, bert-base, deit-small, another zoo model (traced) or a workload YAML.")],
    mapper_budget: Annotated[int, typer.Option("--mapper-budget", min=1, help="Mappings tried per layer.")] = 5000,
    objective: ObjectiveOption = "edp",
    seed: SeedOption = 0,
    counts: Annotated[bool, typer.Option(
        "--counts", help="Also print Timeloop's counters per layer, level and tensor (reads, fills, updates: "
                         "algorithmic/actual/gated/skipped, metadata; drains apart).")] = False,
    im2col: Annotated[bool, typer.Option(
        "--im2col", help="Lower the zoo's convolutions to im2col GEMMs (default: native convolutions).")] = False,
    as_json: JsonOption = False,
    output: OutputOption = None,
    executor: ExecutorOption = "auto",
    workers: WorkersOption = None,
    address: AddressOption = None,
    cache_dir: CacheDirOption = None,
) -> None:
    from tasder.hw import load_architecture
    from tasder.workloads import load_network

    ex = run_executor(executor, workers, address)
    architecture = load_architecture(arch)
    network = load_network(workload, im2col=im2col)
    try:
        result = map_network_with_progress(architecture, network, budget=mapper_budget, objective=objective,
                                           seed=seed, executor=ex, cache=make_cache(cache_dir, default=False),
                                           workers=workers)
    finally:
        if ex is not None:
            ex.close()
    doc = network_report(architecture, result)
    if as_json:
        emit(None, doc, output)
    else:
        emit(lambda console: _render(doc, console, counts), None, output)


def parse_gemm_workload(text: str) -> Any:
    """``gemm:MxKxN:A=<density>,B=<density>`` → a :class:`~tasder.hw.Problem` (densities in the pattern
    notation: ``dense``, ``2:4``, ``K1(2:4)->K0(2:4)``, ``4:8+1:8``, ``unstructured(0.1)``; omitted = dense)."""
    import re

    from tasder.hw import Problem

    m = re.fullmatch(r"gemm:(\d+)[xX](\d+)[xX](\d+)(?::(.*))?", text.strip())
    if m is None:
        raise ValueError(f"workload {text!r}: expected gemm:MxKxN:A=<density>,B=<density> "
                         f"(e.g. gemm:256x1024x256:A=2:4,B=dense)")
    dens: dict[str, str] = {}
    rest = m.group(4) or ""
    for part in re.split(r",(?=\s*[ABab]\s*=)", rest) if rest else []:
        key, eq, value = part.partition("=")
        key = key.strip().upper()
        if not eq or key not in ("A", "B") or key in dens:
            raise ValueError(f"workload {text!r}: densities are given as A=<pattern>,B=<pattern>; got {part!r}")
        dens[key] = value.strip()  # Problem parses it, once
    return Problem(text.strip(), M=int(m.group(1)), K=int(m.group(2)), N=int(m.group(3)),
                   a_density=dens.get("A"), b_density=dens.get("B"))


def compare_rows(designs: list[str], problems: list[Any], *, budget: int = 3000, objective: str = "edp",
                 seed: int = 0, on_search: Callable[[], None] | None = None, executor: Any = None,
                 cache: Any = None, workers: int | None = None, progress: Any = None) -> list[dict[str, Any]]:
    """Search every (design, workload) and normalize cycles, energy and EDP to TC on the same workload.

    Why each design gets its own mapper search: a design is judged at its best dataflow, as the
    papers do; TC is evaluated as the baseline even when not listed. The searches run through
    :func:`tasder.hw.executor.run_problems` (``executor``, ``cache``, ``progress`` as there);
    ``on_search`` is called once per search that completes (a progress bar's advance).
    """
    from tasder.hw import load_architecture
    from tasder.hw.area import area_mm2
    from tasder.hw.executor import MapperSettings, run_problems

    archs = {d: load_architecture(d) for d in dict.fromkeys(["tc", *designs])}
    pairs = [(a, p) for p in problems for a in archs.values()]
    if progress is None and on_search is not None:
        progress = _CallbackProgress(on_search)
    results, _ = run_problems(pairs, MapperSettings(budget=budget, objective=objective, seed=seed),
                              executor=executor, cache=cache, progress=progress, warn=warn, workers=workers)
    found = {(id(a), id(p)): r.best for (a, p), r in zip(pairs, results, strict=True)}
    labels = design_labels(designs, {d: archs[d].name for d in designs})
    rows = []
    for p in problems:
        base = found[(id(archs["tc"]), id(p))]
        for d in designs:
            e = found[(id(archs[d]), id(p))]
            rows.append({"design": labels[d], "source": d, "workload": p.name, "cycles": e.cycles,
                         "energy_pj": e.energy_pj, "edp": e.edp, "cycles_norm": e.cycles / base.cycles,
                         "energy_norm": e.energy_pj / base.energy_pj, "edp_norm": e.edp / base.edp,
                         "area_mm2": area_mm2(archs[d]), "baseline": {"design": "tc", "cycles": base.cycles,
                                                                     "energy_pj": base.energy_pj, "edp": base.edp}})
    return rows


def design_labels(designs: list[str], names: dict[str, str]) -> dict[str, str]:
    """Each ``--designs`` entry → the ``name:`` its spec gives (``my-stc.yaml`` → ``my-stc``); a name two
    entries share keeps its source in brackets so the rows stay apart."""
    counts: dict[str, int] = {}
    for d in designs:
        counts[names[d]] = counts.get(names[d], 0) + 1
    return {d: names[d] if counts[names[d]] == 1 or names[d] == d else f"{names[d]} ({d})" for d in designs}


class _CallbackProgress:
    """``on_search()`` once per completed search, as the Progress protocol's ``advance(n)``."""

    def __init__(self, on_search: Callable[[], None]) -> None:
        self._on_search = on_search

    def start(self, total: int, cached: int) -> None:
        for _ in range(cached):  # answered by the cache: done too
            self._on_search()

    def advance(self, n: int) -> None:
        for _ in range(n):
            self._on_search()


def _tc_area() -> float:
    from tasder.hw import load_architecture
    from tasder.hw.area import area_mm2

    return float(area_mm2(load_architecture("tc")))


def _save_plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Bar chart of normalized EDP per workload and design, written atomically.

    Drawn on an Agg canvas, not through pyplot: the caller's matplotlib backend and pyplot's
    figure list stay untouched (the CLI runs in-process in tests and notebooks too).
    """
    from io import BytesIO

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from tasder.io import atomic_write_bytes

    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    designs = list(dict.fromkeys(r["design"] for r in rows))
    fig = Figure(figsize=(min(9.0, 2.5 + 1.2 * len(workloads) * len(designs) / 3), 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / len(designs)
    for j, d in enumerate(designs):
        ys = [next(r["edp_norm"] for r in rows if r["design"] == d and r["workload"] == w) for w in workloads]
        ax.bar([i + j * width for i in range(len(workloads))], ys, width, label=d)
    ax.axhline(1.0, color="0.4", lw=0.8, ls="--")
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(workloads))], workloads, rotation=15, fontsize=7,
                  ha="right")
    ax.set_ylabel("EDP / TC (modelled; lower is better)")
    ax.legend(fontsize=7)
    buf = BytesIO()
    fig.savefig(buf, format=path.suffix.lstrip(".").lower() or "png", dpi=110)
    atomic_write_bytes(path, buf.getvalue())


@hw_app.command("compare", help=with_examples(
    "Cycles, energy and EDP of several designs on GEMM workloads, normalized to TC.",
    "tasder hw compare --designs tc,stc,dstc --workload gemm:512x512x512:A=2:4,B=dense",
    'tasder hw compare --designs stc,ttc-vegeta-m8 --workload "gemm:1024x1024x1024:A=2:4,B=unstructured(0.5)"',
    "tasder hw compare --designs tc,highlight --workload gemm:256x1024x256 --json -o compare.json --plot edp.png",
))
def compare_cmd(
    designs: Annotated[str, typer.Option("--designs", show_default=False,
                                         help="Comma-separated designs: shipped names or architecture YAMLs.")],
    workload: Annotated[list[str], typer.Option(
        "--workload", show_default=False, help="gemm:MxKxN:A=<density>,B=<density> (repeatable).")],
    mapper_budget: Annotated[int, typer.Option("--mapper-budget", min=1, help="Mappings tried per design.")] = 3000,
    objective: ObjectiveOption = "edp",
    seed: SeedOption = 0,
    as_json: JsonOption = False,
    plot: Annotated[Path | None, typer.Option("--plot", metavar="FILE", show_default=False,
                                              help="Also save a bar chart of EDP/TC to FILE.")] = None,
    output: OutputOption = None,
    executor: ExecutorOption = "auto",
    workers: WorkersOption = None,
    address: AddressOption = None,
    cache_dir: CacheDirOption = None,
) -> None:
    names = [d.strip() for d in designs.split(",") if d.strip()]
    if not names:
        raise ValueError("--designs lists no design")
    problems = [parse_gemm_workload(w) for w in workload]
    if plot is not None:  # checked now, not after minutes of mapping
        from tasder.io import check_writable

        if plot.suffix.lower() not in (".png", ".svg", ".pdf"):
            raise ValueError(f"--plot {str(plot)!r}: expected a .png, .svg or .pdf file name")
        check_writable(plot)
    ex = run_executor(executor, workers, address)
    try:
        with EtaProgress("mapping designs × workloads") as progress:
            rows = compare_rows(names, problems, budget=mapper_budget, objective=objective, seed=seed,
                                executor=ex, cache=make_cache(cache_dir, default=False), workers=workers,
                                progress=progress)
    finally:
        if ex is not None:
            ex.close()
    if plot is not None:
        _save_plot(rows, plot)
        status(f"wrote {plot}")
    if as_json:
        emit(None, rows, output)
        return

    tc_listed = "tc" in names

    def render(console: Console) -> None:
        for w in dict.fromkeys(r["workload"] for r in rows):
            mine = [r for r in rows if r["workload"] == w]
            title = ("normalized to TC; each design at its best mapping" if tc_listed else
                     "normalized to TC, the baseline, which is not among --designs: its row is shown for "
                     "reference; each design at its best mapping")
            t = table(f"{w} ({title})")
            for col in ("design", "cycles", "energy µJ", "EDP J·s", "cycles/TC", "energy/TC", "EDP/TC", "area mm²"):
                t.add_column(col, justify="left" if col == "design" else "right")
            if not tc_listed:
                b = mine[0]["baseline"]
                t.add_row("tc (baseline)", f"{b['cycles']:,.0f}", f"{b['energy_pj'] / 1e6:,.2f}", f"{b['edp']:.3e}",
                          "1.000", "1.000", "1.000", f"{_tc_area():.2f}", style="dim")
            for r in mine:
                t.add_row(r["design"], f"{r['cycles']:,.0f}", f"{r['energy_pj'] / 1e6:,.2f}", f"{r['edp']:.3e}",
                          f"{r['cycles_norm']:.3f}", f"{r['energy_norm']:.3f}", f"{r['edp_norm']:.3f}",
                          f"{r['area_mm2']:.2f}")
            console.print(t)

    emit(render, None, output)


def register(app: typer.Typer) -> None:
    """Add the ``hw`` group (``hw eval``, ``hw compare``, ``hw sweep``) to ``app``."""
    from tasder.cli import sweep

    sweep.register(hw_app)
    app.add_typer(hw_app, name="hw")
