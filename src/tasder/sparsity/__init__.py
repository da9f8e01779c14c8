"""Sparsity patterns: types, the notation parser, masks and checks.

>>> from tasder.sparsity import parse_series
>>> s = parse_series("2:8+1:8")
>>> str(s), s.effective_density
('2:8+1:8', 0.375)

The pattern types and the parser are pure Python: ``import tasder.sparsity`` loads neither torch
nor numba (the accelerator model uses only these). The tensor functions (``compute_mask``,
``satisfies``, ``magnitude_key``...) live in :mod:`tasder.sparsity.masks`, imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tasder.sparsity.notation import NOTATION_EXAMPLES, expand_ranges, parse_pattern, parse_series
from tasder.sparsity.patterns import (
    GH,
    HSS,
    MAX_BLOCK,
    MAX_ORDER,
    MAX_RANKS,
    Dense,
    Pattern,
    Rank,
    Series,
    StructuredPattern,
    Unstructured,
    implies,
)

if TYPE_CHECKING:  # what the lazy names below resolve to, for type checkers and IDEs
    from tasder.sparsity.masks import compute_mask, keep_top, magnitude_key, satisfies, scored_mask

__all__ = [
    "GH",
    "HSS",
    "MAX_BLOCK",
    "MAX_ORDER",
    "MAX_RANKS",
    "NOTATION_EXAMPLES",
    "Dense",
    "Pattern",
    "Rank",
    "Series",
    "StructuredPattern",
    "Unstructured",
    "compute_mask",
    "expand_ranges",
    "implies",
    "keep_top",
    "magnitude_key",
    "parse_pattern",
    "parse_series",
    "satisfies",
    "scored_mask",
]

# Names that need torch, resolved from tasder.sparsity.masks on first access (PEP 562).
_LAZY = frozenset({"compute_mask", "keep_top", "magnitude_key", "satisfies", "scored_mask"})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module("tasder.sparsity.masks"), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
