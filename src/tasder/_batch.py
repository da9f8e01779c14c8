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

__all__ = ["Batch", "batch_size", "call_with_batch"]

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


def batch_size(batch: Any) -> int:
    """Samples in ``batch``: dim 0 of its tensor (of a mapping's or tuple's first tensor with a dim),
    1 when it holds none — what "per inference" divides a batch's totals by."""
    import torch

    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    values = batch.values() if isinstance(batch, Mapping) else batch if isinstance(batch, (tuple, list)) else ()
    for v in values:
        if isinstance(v, torch.Tensor) and v.dim():
            return int(v.shape[0])
    return 1
