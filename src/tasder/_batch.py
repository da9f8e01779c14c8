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

__all__ = ["Batch", "batch_size", "call_with_batch", "floating_to"]

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


def floating_to(batch: Any, dtype: torch.dtype) -> Any:
    """``batch`` with every floating-point tensor in it (at any depth of mappings, tuples and lists)
    converted to ``dtype``; integer tensors (token ids, masks) and other values are kept as they are."""
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.to(dtype) if batch.is_floating_point() else batch
    if isinstance(batch, Mapping):
        return {k: floating_to(v, dtype) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        items = [floating_to(v, dtype) for v in batch]
        if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a namedtuple takes its fields apart
            return type(batch)(*items)
        return type(batch)(items) if type(batch) in (tuple, list) else items
    return batch
