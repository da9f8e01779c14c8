"""``report.html``: one self-contained file that opens anywhere, offline, years from now.

Everything the page needs is inside it: a small inline stylesheet and every plot as a base64
PNG ``data:`` URI. There is no script, web font, external stylesheet or URL, so the file can be
mailed, archived or opened from a sandbox without breaking, and it leaks nothing when opened.
All text from the document is escaped with :func:`html.escape`.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from typing import Any

from tasder.report._content import Block, Box, Facts, FigureRef, Heading, Paragraph, Table, build_blocks
from tasder.report._schema import validate_doc
from tasder.report.figures import DPI, ReportFigure, make_figures

__all__ = ["render_html"]

_CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d1d1f;
       max-width: 1040px; margin: 2em auto; padding: 0 1.2em; }
h1 { font-size: 1.8em; margin-bottom: .2em; }
h2 { font-size: 1.4em; margin-top: 2.2em; border-bottom: 2px solid #d0d7de; padding-bottom: .2em; }
h3 { font-size: 1.1em; margin-top: 1.6em; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .15em 1em; }
dl.facts dt { font-weight: 600; color: #555; }
dl.facts dd { margin: 0; }
code { font: .92em ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f3f4f6;
       padding: .05em .3em; border-radius: 3px; }
.box { background: #f6f8fa; border: 1px solid #d0d7de; border-left: 4px solid #0969da; border-radius: 6px;
       padding: .6em 1.1em; margin: 1.2em 0; }
.box h2 { font-size: 1.05em; margin: .3em 0; border: 0; }
.box h3 { font-size: .95em; margin: .6em 0 .1em; }
.box ul { margin: .2em 0 .4em; padding-left: 1.3em; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: .9em; }
caption { caption-side: bottom; text-align: left; color: #555; font-size: .9em; padding-top: .4em; }
th, td { padding: .3em .7em; border-bottom: 1px solid #e1e4e8; vertical-align: top; }
th { background: #f6f8fa; text-align: left; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num { white-space: nowrap; }
th { max-width: 9em; }
tbody tr:nth-child(even) { background: #fafbfc; }
figure { margin: 1.4em 0 2em; }
figure img { max-width: 100%; height: auto; border: 1px solid #e1e4e8; }
figcaption { color: #444; font-size: .9em; margin-top: .4em; max-width: 990px; }
""".strip()


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _table(block: Table) -> str:
    def cls(i: int) -> str:
        return ' class="num"' if block.numeric[i] else ""

    head = "".join(f'<th scope="col"{cls(i)}>{_esc(c)}</th>' for i, c in enumerate(block.columns))
    body = "\n".join(
        "<tr>" + "".join(f"<td{cls(i)}>{_esc(cell)}</td>" for i, cell in enumerate(row)) + "</tr>" for row in block.rows
    )
    return (
        f'<div class="scroll"><table>\n<caption>{_esc(block.caption)}</caption>\n'
        f"<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table></div>"
    )


def _figure(block: FigureRef) -> str:
    fig = block.figure
    data = base64.b64encode(fig.png).decode("ascii")
    width = _png_width(fig.png)
    size = f' width="{round(width * 96 / DPI)}"' if width else ""
    return (
        f'<figure id="fig-{block.number}">\n'
        f'<img src="data:image/png;base64,{data}" alt="{_esc(fig.alt)}"{size}>\n'
        f"<figcaption><strong>Figure {block.number}.</strong> {_esc(fig.title)}. {_esc(fig.caption)}</figcaption>\n"
        "</figure>"
    )


def _png_width(png: bytes) -> int | None:
    """The pixel width from a PNG header, so the page shows the plot at its intended size."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or len(png) < 24:
        return None
    return int.from_bytes(png[16:20], "big")


def _block(block: Block) -> str:
    if isinstance(block, Heading):
        return f'<h{block.level} id="{_esc(block.anchor)}">{_esc(block.text)}</h{block.level}>'
    if isinstance(block, Paragraph):
        return f"<p>{_esc(block.text)}</p>"
    if isinstance(block, Facts):
        items = "\n".join(
            f"<dt>{_esc(k)}</dt><dd>{f'<code>{_esc(v)}</code>' if k == 'command' else _esc(v)}</dd>"
            for k, v in block.items
        )
        return f'<dl class="facts">\n{items}\n</dl>'
    if isinstance(block, Box):
        groups = "\n".join(
            f"<h3>{_esc(title)}</h3>\n<ul>\n" + "\n".join(f"<li>{_esc(item)}</li>" for item in items) + "\n</ul>"
            for title, items in block.groups
        )
        return f'<section class="box">\n<h2>{_esc(block.title)}</h2>\n{groups}\n</section>'
    if isinstance(block, Table):
        return _table(block)
    return _figure(block)


def render_html(doc: Mapping[str, Any], figures: Sequence[ReportFigure] | None = None) -> str:
    """The report as one self-contained HTML page (validates ``doc``; draws figures if not given).

    Pass ``figures`` from :func:`~tasder.report.make_figures` to reuse plots already drawn for
    the markdown report instead of drawing them twice.
    """
    validate_doc(doc)
    if figures is None:
        figures = make_figures(doc)
    body = "\n".join(_block(b) for b in build_blocks(doc, figures))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(doc['title'])}</title>\n<style>\n{_CSS}\n</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )
