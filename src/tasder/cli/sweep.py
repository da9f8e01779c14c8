"""``tasder hw sweep``: a design-space sweep from a YAML spec, on every core or a Ray cluster.

::

    tasder hw sweep SPEC.yaml [--output DIR] [--executor auto|serial|process|ray] [--workers N]
                    [--address HOST:PORT] [--cache-dir DIR | --no-cache] [--dry-run] [--json]

A thin layer over :mod:`tasder.hw.sweep`: the spec is validated first (exit 2 with ``FILE:LINE``),
the output folder checked before any mapping, searches run through :mod:`tasder.hw.executor`
(cached in ``$TASDER_HW_CACHE`` or ``~/.cache/tasder/hw`` unless ``--no-cache``), and the report
(:mod:`tasder.hw.sweep_report`) lands in ``DIR`` (default ``sweep-<name>``). Ctrl-C keeps every
finished search in the cache and says how to resume (exit 130).
"""

from __future__ import annotations

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
    resolve_config,
    resolve_network,
    run_executor,
)
from tasder.cli.common import JsonOption, emit, status, table, warn, with_examples

__all__ = ["register", "sweep_cmd"]


def _best_rows(result: Any) -> list[dict[str, Any]]:
    from tasder.hw.sweep import METRIC_FIELDS

    out = []
    for w in result.spec.workloads:
        for obj in result.spec.objectives:
            b = result.best(w.name, obj)
            if b is None:
                continue
            out.append({"workload": w.name, "objective": obj, "design": b["design"], "params": b["params"],
                        "value": b[METRIC_FIELDS[obj]], "area_mm2": b["area_mm2"],
                        "front": len(result.fronts[w.name][obj])})
    return out


SWEEP_HELP = with_examples(
    """Sweep a design space: the cross product of the spec's parameters (MACs, buffer capacities and
    bandwidths under an SRAM budget, supported patterns, sparse features, TASD series order) on its
    workloads; report the best design per workload and the (EDP | energy | latency, area) Pareto fronts.

    Every mapper search is cached; a rerun or an extended sweep computes only what is new.
    The spec format is in docs/hw_sweep.md.""",
    "tasder hw sweep docs/examples/sweep-resnet50.yaml -o rn50-sweep",
    "tasder hw sweep sweep.yaml --dry-run",
    "tasder hw sweep sweep.yaml --executor ray --address 10.0.0.5:6379",
)


def sweep_cmd(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="The sweep spec (YAML).", show_default=False)],
    output: Annotated[Path | None, typer.Option("--output", "-o", metavar="DIR", show_default=False,
                                                help="The report folder (default: sweep-<name>).")] = None,
    executor: ExecutorOption = "auto",
    workers: WorkersOption = None,
    address: AddressOption = None,
    cache_dir: CacheDirOption = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the result cache.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate the spec, count designs and searches, "
                                          "and stop before mapping.")] = False,
    as_json: JsonOption = False,
) -> None:
    from tasder.hw.executor import LayerTask, SweepInterrupted, task_key
    from tasder.hw.sweep import expand_designs, load_sweep, run_sweep, workload_layers
    from tasder.hw.sweep_report import check_output_dir, write_sweep_report

    if no_cache and cache_dir is not None:
        raise ValueError("--no-cache and --cache-dir contradict each other; give one")
    ex = run_executor(executor, workers, address)  # bad option combinations fail before any work
    spec = load_sweep(spec_path, resolve_network=resolve_network, resolve_config=resolve_config)
    out = output if output is not None else Path(f"sweep-{spec.name}")
    if not dry_run:
        check_output_dir(out)
    cache = None if no_cache else make_cache(cache_dir, default=True)
    designs = expand_designs(spec)
    valid = [d for d in designs if d.valid]
    if dry_run:
        tasks = [LayerTask(d.arch, p, spec.mapper) for d in valid for w in spec.workloads
                 for p in workload_layers(w, d)]
        keys = {task_key(t) for t in tasks}
        cached = sum(1 for k in keys if cache is not None and cache.path(k).is_file())
        filtered: dict[str, int] = {}
        for d in designs:
            if d.kind is not None:
                filtered[d.kind] = filtered.get(d.kind, 0) + 1
        doc = {"sweep": spec.name, "designs": len(designs), "valid": len(valid), "filtered": filtered,
               "searches": len(tasks), "distinct_searches": len(keys), "cached": cached,
               "cache": None if cache is None else str(cache.root)}
        if as_json:
            emit(None, doc, None)
            return

        def render_dry(console: Console) -> None:
            console.print(f"sweep {spec.name}: {len(designs)} design(s), {len(valid)} valid; {len(tasks)} mapper "
                          f"search(es), {len(keys)} distinct, {cached} already cached", markup=False)
            for kind, n in sorted(filtered.items(), key=lambda kv: -kv[1]):
                console.print(f"  filtered {n}×: {kind}", markup=False)

        emit(render_dry, None, None)
        return
    with EtaProgress(f"sweep {spec.name}: mapping") as progress:
        try:
            result = run_sweep(spec, executor=ex, cache=cache, progress=progress, warn=warn, workers=workers,
                               designs=designs)
        except SweepInterrupted as exc:
            warn(str(exc))
            raise KeyboardInterrupt from None
        finally:
            if ex is not None:
                ex.close()
    paths = write_sweep_report(result, out)
    status(f"wrote {paths['dir']}")
    rows = _best_rows(result)
    st = result.stats
    if as_json:
        from tasder.hw.sweep_report import summary

        emit(None, {**summary(result), "report": {k: str(v) if isinstance(v, Path) else [str(x) for x in v]
                                                   for k, v in paths.items()}}, None)
        return

    def render(console: Console) -> None:
        n_valid = sum(d.valid for d in result.designs)
        console.print(f"sweep {spec.name}: {len(result.designs)} design(s), {n_valid} valid; "
                      f"{st.unique if st else 0} distinct search(es), {st.cached if st else 0} from the cache, "
                      f"{st.computed if st else 0} computed ({st.executor if st else '-'}, {st.workers if st else 0} "
                      f"worker(s)) in {result.seconds:.1f} s", markup=False)
        t = table("best design per workload and objective (front: designs on the objective-vs-area Pareto front)")
        for col in ("workload", "objective", "design", "parameters", "value", "area mm²", "front"):
            t.add_column(col, justify="right" if col in ("value", "area mm²", "front") else "left")
        for r in rows:
            params = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "(base)"
            t.add_row(r["workload"], r["objective"], r["design"], params, f"{r['value']:.4g}", f"{r['area_mm2']:.3f}",
                      str(r["front"]))
        console.print(t)
        filt = result.filtered()
        if filt:
            f = table("filtered combinations")
            f.add_column("count", justify="right")
            f.add_column("reason")
            for kind, v in filt.items():
                f.add_row(str(v["count"]), kind)
            console.print(f)
        console.print(f"report: {paths['html']}", markup=False, highlight=False)

    emit(render, None, None)


def register(hw_app: typer.Typer) -> None:
    """Add ``hw sweep`` to the ``hw`` group."""
    hw_app.command("sweep", help=SWEEP_HELP)(sweep_cmd)
