"""Render the end-to-end demo's data document as a report folder a person can read.

>>> from tasder.report import write_report
>>> paths = write_report(doc, "runs/demo")  # doctest: +SKIP
>>> paths["html"]  # doctest: +SKIP
PosixPath('runs/demo/report.html')

The document is plain JSON-compatible data built by the demo pipeline; its keys are listed in
:data:`tasder.report._schema.DOC_SCHEMA` and checked on entry (a missing key is a ValueError
that names its path). The folder gets a self-contained ``report.html`` (inline CSS, plots as
``data:`` PNGs, nothing fetched from anywhere), the same content as ``report.md`` with plots in
``figures/*.png``, and the document itself as ``results.json``.

Measured numbers (scores, sparsity, wall time) and modelled ones (cycles, energy, EDP from the
analytical accelerator model) are labelled as such everywhere: readers must never mistake a
model's estimate for a measurement.
"""

from tasder.report._schema import validate_doc
from tasder.report.figures import ReportFigure, make_figures
from tasder.report.html import render_html
from tasder.report.markdown import render_markdown_report
from tasder.report.writer import write_report

__all__ = ["ReportFigure", "make_figures", "render_html", "render_markdown_report", "validate_doc", "write_report"]
