"""``report.md``: the same report as markdown, for pull requests, wikis and terminals.

Markdown cannot embed images portably, so plots are referenced as PNG files in a folder next
to the report (``figures/`` by default) by relative path: the report folder can be moved or
committed as a whole. Text from the document is escaped so that names such as
``encoder.layer_0`` or a ``|`` in a description cannot turn into emphasis or break a table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from tasder.report._content import Block, Box, Facts, Heading, Paragraph, Table, build_blocks
from tasder.report._schema import validate_doc
from tasder.report.figures import ReportFigure, make_figures

__all__ = ["render_markdown_report"]

_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def _esc(text: object) -> str:
    """Escape markdown syntax and fold newlines, so document text stays literal and on one line."""
    return _SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def _table(block: Table) -> str:
    align = ["---:" if n else ":---" for n in block.numeric]
    lines = [
        "| " + " | ".join(_esc(c) for c in block.columns) + " |",
        "| " + " | ".join(align) + " |",
        *("| " + " | ".join(_esc(cell) for cell in row) + " |" for row in block.rows),
    ]
    return "\n".join(lines) + f"\n\n*{_esc(block.caption)}*"


def _block(block: Block, figure_dir: str) -> str:
    if isinstance(block, Heading):
        return f"{'#' * block.level} {_esc(block.text)}"
    if isinstance(block, Paragraph):
        return _esc(block.text)
    if isinstance(block, Facts):
        return "\n".join(
            f"- **{_esc(k)}:** " + (f"`{v.replace('`', '')}`" if k == "command" else _esc(v)) for k, v in block.items
        )
    if isinstance(block, Box):
        lines = [f"> **{_esc(block.title)}**"]
        for title, items in block.groups:
            lines += [">", f"> *{_esc(title)}:*", ">", *(f"> - {_esc(item)}" for item in items)]
        return "\n".join(lines)
    if isinstance(block, Table):
        return _table(block)
    fig = block.figure
    path = f"{figure_dir.rstrip('/')}/{fig.filename}" if figure_dir else fig.filename
    return f"![{_esc(fig.alt)}]({path})\n\n*Figure {block.number}. {_esc(fig.title)}. {_esc(fig.caption)}*"


def render_markdown_report(
    doc: Mapping[str, Any], figures: Sequence[ReportFigure] | None = None, figure_dir: str = "figures"
) -> str:
    """The report as markdown; figures are linked as ``<figure_dir>/<figure.filename>``.

    The caller writes the PNGs there (:func:`~tasder.report.write_report` does). ``doc`` is
    validated first; figures are drawn only if not given.
    """
    validate_doc(doc)
    if figures is None:
        figures = make_figures(doc)
    return "\n\n".join(_block(b, figure_dir) for b in build_blocks(doc, figures)) + "\n"
