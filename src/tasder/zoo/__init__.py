"""Ready-made workloads: real tensors to try TASD on, and the series of known hardware targets.

>>> from tasder.zoo import list_workloads, load_workload
>>> list(list_workloads())
['minilm-weights']
>>> weights = load_workload("minilm-weights")  # doctest: +SKIP
>>> len(weights)  # doctest: +SKIP
36
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from tasder.zoo.minilm import (
    MINILM_MODEL_NAME,
    WorkloadUnavailableError,
    load_minilm_linear_weights,
    minilm_weight_path,
)

__all__ = [
    "TTC_VEGETA_M8_SERIES",
    "Workload",
    "WorkloadUnavailableError",
    "get_workload",
    "list_workloads",
    "load_minilm_linear_weights",
    "load_workload",
    "minilm_weight_path",
]

#: Every series a TTC-VEGETA-M8-like target runs (DESIGN.md §3.4): the native 1:8, 2:8 and 4:8,
#: and with two terms 3:8 = 2:8+1:8, 5:8 = 4:8+1:8, 6:8 = 4:8+2:8.
TTC_VEGETA_M8_SERIES: tuple[str, ...] = ("1:8", "2:8", "4:8", "2:8+1:8", "4:8+1:8", "4:8+2:8")


@dataclass(frozen=True)
class Workload:
    """A named set of tensors.

    Attributes:
        name: the registry key (``tasder demo`` and :func:`load_workload` use it).
        description: one line saying what the tensors are.
        model: the model the tensors come from (for report headers).
        dim: the dimension TASD groups run along for these tensors (the GEMM reduction dim).
        loader: returns the tensors by name, in a stable order.
    """

    name: str
    description: str
    model: str
    dim: int
    loader: Callable[[], dict[str, torch.Tensor]]

    def load(self) -> dict[str, torch.Tensor]:
        return self.loader()


_WORKLOADS: dict[str, Workload] = {
    "minilm-weights": Workload(
        name="minilm-weights",
        description="the real all-MiniLM-L6-v2 encoder weights: 36 Linear matrices, groups along the input dim",
        model=MINILM_MODEL_NAME,
        dim=-1,
        loader=load_minilm_linear_weights,
    ),
}


def list_workloads() -> dict[str, str]:
    """Known workload names and their one-line descriptions."""
    return {name: w.description for name, w in _WORKLOADS.items()}


def get_workload(name: str) -> Workload:
    """The :class:`Workload` registered as ``name`` (ValueError listing the known ones if none)."""
    try:
        return _WORKLOADS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown workload {name!r}; known: {', '.join(_WORKLOADS)}") from None


def load_workload(name: str) -> dict[str, torch.Tensor]:
    """The tensors of workload ``name`` by name, e.g. ``load_workload("minilm-weights")``."""
    return get_workload(name).load()
