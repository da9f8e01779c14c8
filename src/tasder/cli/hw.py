"""``tasder hw eval``: map a workload onto an accelerator design and report cycles, energy and EDP.

::

    tasder hw eval --arch tc|ARCH.yaml --workload resnet50|bert-base|deit-small|MODEL|WORKLOAD.yaml
                   [--mapper-budget N] [--objective edp|energy|cycles] [--seed S] [--json] [-o FILE]

A thin layer over :func:`tasder.hw.search_network`: every layer gets its own best mapping, totals
weight layers by their repeat count. A zoo MODEL without a shape table (e.g. digits-cnn) is traced
on its first calibration batch. Bad specs end with exit code 2 and one ``error:`` line
naming the file, line and key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from tasder.cli.app import _emit, app

__all__ = ["eval_cmd", "hw_app", "network_report"]

hw_app = typer.Typer(name="hw", help="The analytical accelerator model: map and evaluate workloads.",
                     no_args_is_help=True, add_completion=False)
app.add_typer(hw_app, name="hw")


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
    return {
        "architecture": arch.name, "workload": result.network.name,
        "total": {"cycles": result.cycles, "energy_pj": result.energy_pj, "edp_js": result.edp(arch.clock_hz),
                  "utilization": result.utilization(arch.compute.instances),
                  "seconds": result.cycles / arch.clock_hz},
        "energy_breakdown_pj": breakdown,
        "layers": [dict(r.best.to_dict(), mapper={"objective": r.objective, "candidates": r.candidates,
                                                  "valid": r.valid, "exhaustive": r.exhaustive})
                   for r in result.layers],
    }


def _render(doc: dict[str, Any], console: Console) -> None:
    t = Table(title=f"{doc['workload']} on {doc['architecture']}", box=box.SIMPLE_HEAVY)
    for col in ("layer", "M-K-N", "×", "cycles", "energy µJ", "EDP J·s", "util"):
        t.add_column(col, justify="left" if col == "layer" else "right")
    for layer in doc["layers"]:
        t.add_row(layer["layer"], f"{layer['M']}-{layer['K']}-{layer['N']}", str(layer["repeat"]),
                  f"{layer['cycles']:,.0f}", f"{layer['energy_pj'] / 1e6:,.2f}", f"{layer['edp']:.3e}",
                  f"{layer['utilization']:.1%}")
    tot = doc["total"]
    t.add_row("TOTAL", "", "", f"{tot['cycles']:,.0f}", f"{tot['energy_pj'] / 1e6:,.2f}", f"{tot['edp_js']:.3e}",
              f"{tot['utilization']:.1%}", style="bold")
    console.print(t)
    b = Table(title="energy by level and action (µJ, all layers × repeat)", box=box.SIMPLE_HEAVY)
    actions = ("read", "write", "update", "leakage", "mac")
    b.add_column("level")
    for a in (*actions, "total"):
        b.add_column(a, justify="right")
    for level, row in doc["energy_breakdown_pj"].items():
        b.add_row(level, *[f"{row.get(a, 0.0) / 1e6:,.2f}" for a in actions], f"{sum(row.values()) / 1e6:,.2f}")
    console.print(b)
    for layer in doc["layers"]:
        console.print(f"\n[bold]{layer['layer']}[/bold] mapping:", highlight=False)
        console.print(layer["loop_nest"], markup=False, highlight=False)


@hw_app.command("eval")
def eval_cmd(
    arch: Annotated[str, typer.Option("--arch", help="a shipped design name (e.g. tc) or an architecture YAML")],
    workload: Annotated[str, typer.Option(
        "--workload", help="resnet50, bert-base, deit-small, another zoo model (traced) or a workload YAML")],
    mapper_budget: Annotated[int, typer.Option("--mapper-budget", min=1, help="mappings tried per layer")] = 5000,
    objective: Annotated[str, typer.Option("--objective", help="edp, energy or cycles")] = "edp",
    seed: Annotated[int, typer.Option("--seed", help="mapper seed (results are deterministic per seed)")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write the report to FILE")] = None,
) -> None:
    """Map every layer of WORKLOAD onto ARCH; report cycles, energy by level and action, EDP and mappings."""
    from tasder.hw import load_architecture, load_network, search_network

    architecture = load_architecture(arch)
    network = load_network(workload)
    result = search_network(architecture, network, budget=mapper_budget, objective=objective, seed=seed)
    doc = network_report(architecture, result)
    if json_out:
        _emit(None, doc, output)
    else:
        _emit(lambda console: _render(doc, console), None, output)
