"""tasder: structured sparsity for DNNs — TASD series, patterns and their analysis."""

from tasder.sparsity import (
    compute_mask,
    parse_pattern,
    parse_series,
    satisfies,
)
from tasder.tasd import TASDResult, approximate, decompose, gemm_output_error

__version__ = "0.1.0"

__all__ = [
    "TASDResult",
    "__version__",
    "approximate",
    "compute_mask",
    "decompose",
    "gemm_output_error",
    "parse_pattern",
    "parse_series",
    "satisfies",
]
