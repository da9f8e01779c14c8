"""TASDER: layer-wise TASD configuration search under an accuracy constraint (docs/design.md §3.4).

>>> from tasder.search import candidate_series
>>> [str(s) for s in candidate_series("ttc-vegeta-m8")]
['1:8', '2:8', '2:8+1:8', '4:8', '4:8+1:8', '4:8+2:8', 'dense']

``search(model, target, evaluate, calibration, mode="W", constraint=0.99, method="cost-aware")``
returns a :class:`SearchResult`; :func:`render_markdown` turns it into a report.
"""

from tasder.search.cost import CostFn, HardwareCost, MACCost
from tasder.search.methods import METHODS, Drop, search
from tasder.search.report import render_markdown
from tasder.search.result import EvalPoint, HardwareSummary, LayerRow, SearchResult, pareto_front
from tasder.targets import Target, candidate_series, list_targets, load_target

__all__ = [
    "METHODS",
    "CostFn",
    "Drop",
    "EvalPoint",
    "HardwareCost",
    "HardwareSummary",
    "LayerRow",
    "MACCost",
    "SearchResult",
    "Target",
    "candidate_series",
    "list_targets",
    "load_target",
    "pareto_front",
    "render_markdown",
    "search",
]
