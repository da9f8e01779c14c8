"""``tasder demo``: the whole idea on real data in a few minutes, leaving a report worth opening.

::

    tasder demo [--model digits|minilm] [--quick] [--output DIR] [--seed S] [--json]

A thin layer over :func:`tasder.demo.run_demo`: status lines and progress bars go to stderr (only
on a terminal), the summary to stdout, the report to ``DIR`` (default ``tasder-report/``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from tasder.cli.common import JsonOption, emit, interactive, stderr_console, table, warn, with_examples

__all__ = ["demo_cmd", "register", "summary_rows"]


def summary_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per model: the summary table (and ``--json``'s ``summary``); the report's headline is the
    same rows (:func:`tasder.report._content.summary_rows`, imported here lazily: matplotlib)."""
    from tasder.report._content import summary_rows as rows

    return rows(doc)


def _cut(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def _norm(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _ratio(pair: tuple[float | None, float | None]) -> str:
    a, b = pair
    if a is None or b is None or not a:
        return "–"
    return f"{100 * b / a:.2f} %"


DEMO_HELP = with_examples(
    """Search TASD configs for the built-in models (TASDER, modelled EDP on TTC-VEGETA-M8, 99 % constraint),
    re-score them on the test split, compare TC, STC, DSTC, HighLight and TTC-VEGETA-M8 on the resulting
    workloads, and write an HTML + markdown report with plots (the README's main job).""",
    "tasder demo",
    "tasder demo --quick -o /tmp/report",
    "tasder demo --model minilm",
)


def demo_cmd(
    model: Annotated[str, typer.Option("--model", help="digits (digits-cnn-sparse-95 TASD-W + digits-cnn "
                                       "TASD-A) or minilm (TASD-A).")] = "digits",
    quick: Annotated[bool, typer.Option("--quick", help="A capped search and small mapper budget (≤ 60 s); "
                                        "a smoke test, not the real numbers.")] = False,
    output: Annotated[Path, typer.Option("--output", "-o", metavar="DIR", help="The report folder.")]
    = Path("tasder-report"),
    out: Annotated[Path | None, typer.Option("--out", hidden=True, show_default=False)] = None,  # same as --output
    seed: Annotated[int, typer.Option("--seed", help="Seeds torch and the mapper (results are repeatable).")] = 0,
    json_out: JsonOption = False,
) -> None:
    from tasder.demo import run_demo

    if out is not None and output != Path("tasder-report") and out != output:
        raise ValueError("--out and --output both name the report folder; give one of them")
    folder = out if out is not None else output

    err = stderr_console()
    tty = interactive()

    def log(message: str) -> None:
        if tty:  # status lines are for people watching; a pipe or CI log gets the summary only
            err.print(f"[dim]·[/dim] {message}", highlight=False)

    doc = run_demo(model, out_dir=folder, quick=quick, seed=seed, progress=tty, log=log)
    rows = summary_rows(doc)
    html = doc["paths"]["html"]
    if json_out:
        emit(None, {"summary": rows, "report": doc["paths"], "seconds": doc["seconds"]}, None)
        _warn_holdout(doc)
        return

    def render(console: Console) -> None:
        t = table()
        for col in ("model", "TASD", "test", "MACs cut", "EDP/TC (TTC)", "best EDP/TC", "by"):
            t.add_column(col, justify="left" if col in ("model", "TASD", "by") else "right")
        for r in rows:
            t.add_row(r["model"], r["mode"], _ratio(r["test"]), _cut(r["mac_cut"]), _norm(r["ttc_edp_vs_tc"]),
                      _norm(r["best_edp_vs_tc"]), r["best_design"])
        console.print(t)
        console.print("test: the transformed model's test metric as % of the original's (searched on the validation "
                      "split); MACs cut: effective MACs per inference vs dense; EDP: modelled for one inference, × TC "
                      "running the original model.",
                      markup=False, highlight=False)
        console.print(f"{'quick run (capped search): ' if quick else ''}{doc['seconds']:.0f} s; "
                      f"report: {html}", markup=False, highlight=False)

    emit(render, None, None)
    _warn_holdout(doc)


def _warn_holdout(doc: dict[str, Any]) -> None:
    from tasder.report._content import holdout_breaks

    for m in doc["models"]:
        text = holdout_breaks(m)
        if text:
            warn(text)


def register(app: typer.Typer) -> None:
    """Add ``demo`` to ``app``."""
    app.command("demo", help=DEMO_HELP)(demo_cmd)
