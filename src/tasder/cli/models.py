"""``tasder models``: list the built-in zoo entries (tasder.zoo) without loading any of them.

Listing is instant because it reads only the registry (names, kinds, metrics, descriptions);
loading an entry may train a model the first time (``tasder.zoo.load``).
"""

from __future__ import annotations

from rich.console import Console

from tasder.cli.app import JsonOption, OutputOption, _emit, app, table, with_examples
from tasder.zoo import model_entries

__all__ = ["models_cmd"]


@app.command("models", help=with_examples(
    "List the built-in models (trained, pretrained, and shape-only tables for the hardware model).",
    "tasder models",
    "tasder models --json -o models.json",
))
def models_cmd(as_json: JsonOption = False, output: OutputOption = None) -> None:
    entries = model_entries()
    if as_json:
        _emit(None, [
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

    _emit(render, None, output)
