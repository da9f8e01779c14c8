"""tasder: structured sparsity for DNNs — TASD series, patterns and their analysis."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tasder.sparsity import parse_pattern, parse_series

if TYPE_CHECKING:
    from tasder.sparsity import compute_mask, satisfies
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

# The tensor functions need torch (and numba): imported on first use (PEP 562), so that
# `import tasder` and the pattern parser stay light.
_LAZY = {
    "compute_mask": "tasder.sparsity",
    "satisfies": "tasder.sparsity",
    "TASDResult": "tasder.tasd",
    "approximate": "tasder.tasd",
    "decompose": "tasder.tasd",
    "gemm_output_error": "tasder.tasd",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
