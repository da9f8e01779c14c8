"""tasder: structured sparsity for DNNs — TASD series, patterns and their analysis.

The names below, and the subpackages (``tasder.hw``, ``tasder.nn``, ``tasder.search``, ...), are
loaded on first use (PEP 562): ``import tasder`` costs almost nothing, and ``tasder.decompose``
brings in torch and the compiled kernel only when it is first touched.
"""

from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

__version__ = "0.1.0"

#: Each public name → the module that defines it.
_EXPORTS: dict[str, str] = {
    "TASDResult": "tasder.tasd",
    "approximate": "tasder.tasd",
    "compute_mask": "tasder.sparsity",
    "decompose": "tasder.tasd",
    "gemm_output_error": "tasder.tasd",
    "parse_pattern": "tasder.sparsity",
    "parse_series": "tasder.sparsity",
    "satisfies": "tasder.sparsity",
}

#: The subpackages and modules ``tasder.<name>`` reaches without an import of its own.
_SUBMODULES: frozenset[str] = frozenset({
    "cli", "demo", "errors", "hw", "io", "nn", "report", "search", "sparsity", "targets", "tasd", "train",
    "workloads", "zoo",
})

__all__ = [  # __version__ and the keys of _EXPORTS (tests/test_layout.py resolves every one)
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

if _TYPE_CHECKING:  # what static checkers and IDEs see; at run time __getattr__ loads them
    from tasder.sparsity import compute_mask, parse_pattern, parse_series, satisfies
    from tasder.tasd import TASDResult, approximate, decompose, gemm_output_error


def __getattr__(name: str) -> _Any:
    if name in _SUBMODULES:
        return _importlib.import_module(f"tasder.{name}")  # the import binds it here
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tasder' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, *_SUBMODULES})
