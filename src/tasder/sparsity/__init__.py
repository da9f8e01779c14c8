"""Sparsity patterns: types, the notation parser, masks and checks.

>>> from tasder.sparsity import parse_series
>>> s = parse_series("2:8+1:8")
>>> str(s), s.effective_density
('2:8+1:8', 0.375)
"""

from tasder.sparsity.masks import compute_mask, magnitude_key, satisfies
from tasder.sparsity.notation import NOTATION_EXAMPLES, expand_ranges, parse_pattern, parse_series
from tasder.sparsity.patterns import (
    GH,
    HSS,
    Dense,
    Pattern,
    Rank,
    Series,
    StructuredPattern,
    Unstructured,
    implies,
)

__all__ = [
    "GH",
    "HSS",
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
    "magnitude_key",
    "parse_pattern",
    "parse_series",
    "satisfies",
]
