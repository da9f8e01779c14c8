"""One rule for feeding a calibration batch to a model, shared by profiling, the GEMM tracer, the
search and the zoo (package-internal: the public functions document it where they take batches).

A batch is a mapping (keyword arguments: a tokenizer's output), a tuple or list (positional
arguments) or anything else, typically a tensor (the single input). Calibration data is a
sequence of such batches (the parameter is called ``calibration`` everywhere); one batch given
on its own is an ``example``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    import torch

__all__ = ["Batch", "call_with_batch"]

#: A calibration batch: a tensor (``model(batch)``), a mapping (``model(**batch)``) or a tuple/list
#: of positional arguments (``model(*batch)``). A string, so that importing this costs no torch.
Batch: TypeAlias = "torch.Tensor | Mapping[str, Any] | tuple[Any, ...] | list[Any]"


def call_with_batch(model: Any, batch: Any) -> Any:
    """``model(**batch)``, ``model(*batch)`` or ``model(batch)``, by the batch's type."""
    if isinstance(batch, Mapping):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    return model(batch)
