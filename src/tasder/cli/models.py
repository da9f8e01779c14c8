"""``tasder models``: list the built-in zoo entries (tasder.zoo) without loading any of them.

Listing is instant because it reads only the registry (names, kinds, metrics, descriptions);
loading an entry may train a model the first time (``tasder.zoo.load``).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from tasder.cli.app import _emit, app
from tasder.zoo import model_entries

__all__ = ["models_cmd"]


@app.command("models")
def models_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the built-in models (trained, pretrained, and shape-only tables for the hardware model)."""
    entries = model_entries()
    if as_json:
        _emit(None, [
            {"name": e.name, "kind": e.kind, "metric": e.metric or None, "description": e.description}
            for e in entries.values()
        ], None)
        return

    def render(console: Console) -> None:
        table = Table(title="Built-in models (python: tasder.zoo.load(name))", box=box.SIMPLE_HEAD,
                      title_justify="left", show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
        table.add_column("name", no_wrap=True)
        table.add_column("kind", no_wrap=True)
        table.add_column("metric", no_wrap=True)
        table.add_column("description", ratio=1)
        for e in entries.values():
            table.add_row(e.name, e.kind, e.metric or "-", e.description)
        console.print(table)

    _emit(render, None, None)
