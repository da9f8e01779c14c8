"""One rule for feeding a calibration batch to a model, shared by profiling, MAC counting, the
search and the zoo: a mapping is keyword arguments (a tokenizer's output), a tuple or list is
positional arguments, anything else (a tensor) is the single input."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["call_with_batch"]


def call_with_batch(model: Any, batch: Any) -> Any:
    """``model(**batch)``, ``model(*batch)`` or ``model(batch)``, by the batch's type."""
    if isinstance(batch, Mapping):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    return model(batch)
