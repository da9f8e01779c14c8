"""``tasder models``: list the built-in zoo entries (tasder.zoo) without loading any of them.

Listing is instant because it reads only the registry (names, kinds, metrics, descriptions);
loading an entry may train a model the first time (``tasder.zoo.load``).
"""

from __future__ import annotations

import typer
from rich.console import Console

from tasder.cli.common import JsonOption, OutputOption, emit, table, with_examples

__all__ = ["models_cmd", "register"]


MODELS_HELP = with_examples(
    "List the built-in models (trained, pretrained, and shape-only tables for the hardware model).",
    "tasder models",
    "tasder models --json -o models.json",
)


def models_cmd(as_json: JsonOption = False, output: OutputOption = None) -> None:
    from tasder import zoo

    entries = zoo.model_entries()
    if as_json:
        emit(None, [
            {"name": e.name, "kind": e.kind, "metric": e.metric or None, "description": e.description}
            for e in entries.values()
        ], output)
        return

    def render(console: Console) -> None:
        t = table("Built-in models (python: tasder.zoo.load(name))")
        t.add_column("name", no_wrap=True)
        t.add_column("kind", no_wrap=True)
        t.add_column("metric", no_wrap=True)
        t.add_column("description", ratio=1)
        for e in entries.values():
            t.add_row(e.name, e.kind, e.metric or "-", e.description)
        console.print(t)

    emit(render, None, output)


def register(app: typer.Typer) -> None:
    """Add ``models`` to ``app``."""
    app.command("models", help=MODELS_HELP)(models_cmd)
