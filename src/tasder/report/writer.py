"""Write the report folder: ``report.html``, ``report.md``, ``figures/*.png`` and ``results.json``.

Everything is validated and rendered in memory first, and only then written, each file
atomically (:mod:`tasder.io`): a bad document leaves the folder exactly as it was, and a
crash mid-way never leaves a half-written file for a reader to trip over.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tasder.io import atomic_write_bytes, atomic_write_text
from tasder.report._schema import jsonable, validate_doc
from tasder.report.figures import ReportFigure, make_figures
from tasder.report.html import render_html
from tasder.report.markdown import render_markdown_report

__all__ = ["FIGURE_DIR", "write_report"]

#: Sub-folder of the report folder holding the PNGs that ``report.md`` links to.
FIGURE_DIR = "figures"


def write_report(doc: Mapping[str, Any], out_dir: str | os.PathLike[str],
                 figures: Sequence[ReportFigure] | None = None) -> dict[str, Any]:
    """Render ``doc`` into ``out_dir`` (created with its parents) and return the paths written.

    ``figures``: the plots, already drawn (:class:`~tasder.report.figures.BackgroundFigures`);
    drawn here when None.

    Returns ``{"html": Path, "markdown": Path, "json": Path, "figures": [Path, ...]}``.
    Raises ValueError naming the key path (``doc['models'][0]['designs']: missing``) when the
    document does not follow the schema; nothing is written then. ``results.json`` is the
    document itself, with NaN/Inf replaced by ``null`` so that strict JSON readers accept it.
    """
    validate_doc(doc)
    if figures is None:
        figures = make_figures(doc)
    page = render_html(doc, figures)
    markdown = render_markdown_report(doc, figures, FIGURE_DIR)
    results = json.dumps(jsonable(doc), indent=2, allow_nan=False, ensure_ascii=False) + "\n"

    root = Path(out_dir)
    (root / FIGURE_DIR).mkdir(parents=True, exist_ok=True)
    figure_paths = [atomic_write_bytes(root / FIGURE_DIR / fig.filename, fig.png) for fig in figures]
    return {
        "json": atomic_write_text(root / "results.json", results),
        "markdown": atomic_write_text(root / "report.md", markdown),
        "html": atomic_write_text(root / "report.html", page),
        "figures": figure_paths,
    }
