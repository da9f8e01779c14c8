"""An analytical accelerator model in the spirit of Timeloop/Sparseloop (docs/design.md §4).

Specs are data (YAML → frozen dataclasses); the model is stages over plain data:

* :mod:`~tasder.hw.workload` — layers (:class:`Problem`: GEMMs, native convolutions, any loop nest with
  per-tensor projections) and networks, workload YAML files;
* :mod:`~tasder.hw.architecture` — storage hierarchy + MAC array, energies from :mod:`~tasder.hw.energy`;
* :mod:`~tasder.hw.mapping` — loop factors/orders per level, validated;
* :mod:`~tasder.hw.dataflow` — dense loop analysis → ``ActionCounts``;
* :mod:`~tasder.hw.density` — operand density models (dense, uniform, G:H/HSS, TASD series, actual);
* :mod:`~tasder.hw.formats` — per-rank formats (U, B, CP, RLE, UOP): compressed tile sizes;
* :mod:`~tasder.hw.sparse` — the sparse step: SAFs split dense counts into actual/gated/skipped/metadata;
* :mod:`~tasder.hw.model` — dataflow → sparse step → :mod:`~tasder.hw.microarch`;
* :mod:`~tasder.hw.mapper` — vectorized search over many mappings per NumPy call;
* :mod:`~tasder.hw.training` — the FF/BP/WU GEMMs of a training step (N:M sparse training, SAT);
* :mod:`~tasder.hw.area` — area per component from a cited 45 nm table;
* :mod:`~tasder.hw.executor` — searches as cached (design, layer) tasks on one core, every core or Ray;
* :mod:`~tasder.hw.sweep` — design-space sweeps: YAML spec → designs × workloads → Pareto fronts.

This namespace holds what a user of the model needs; everything else stays importable from its
submodule. The model depends on :mod:`tasder.sparsity`'s notation alone (no torch, no zoo):
PyTorch models and zoo names become workloads in :mod:`tasder.workloads`.

>>> from tasder.hw import load_architecture, Problem, map_layer
>>> arch = load_architecture("tc")
>>> result = map_layer(arch, Problem("fc", M=64, K=64, N=16), budget=2000, seed=0)
>>> result.best.problem.macs == 64 * 64 * 16
True
"""

from __future__ import annotations

import warnings
from typing import Any

from tasder.hw.architecture import Architecture, list_designs, load_architecture
from tasder.hw.area import AreaBreakdown, area_breakdown, area_mm2
from tasder.hw.density import DensityModel, density_model
from tasder.hw.mapper import (
    MapperConstraints,
    MapperResult,
    NetworkResult,
    NoValidMappingError,
    map_layer,
    map_network,
)
from tasder.hw.mapping import Mapping, MappingError, load_mapping
from tasder.hw.model import Evaluation, evaluate
from tasder.hw.spec import SpecError
from tasder.hw.sweep import load_sweep, run_sweep
from tasder.hw.training import TrainingResult, map_training, training_network
from tasder.hw.workload import Network, Problem, from_conv2d, from_linear, load_network

__all__ = [
    "Architecture",
    "AreaBreakdown",
    "DensityModel",
    "Evaluation",
    "MapperConstraints",
    "MapperResult",
    "Mapping",
    "MappingError",
    "Network",
    "NetworkResult",
    "NoValidMappingError",
    "Problem",
    "SpecError",
    "TrainingResult",
    "area_breakdown",
    "area_mm2",
    "density_model",
    "evaluate",
    "from_conv2d",
    "from_linear",
    "list_designs",
    "load_architecture",
    "load_mapping",
    "load_network",
    "load_sweep",
    "map_layer",
    "map_network",
    "map_training",
    "run_sweep",
    "training_network",
]

#: Former names of the mapper's entry points (the README promised ``hw.search`` and
#: ``hw.search_training``): still answered, with a DeprecationWarning naming the new one.
_DEPRECATED: dict[str, str] = {"search": "map_layer", "search_network": "map_network",
                               "search_training": "map_training"}


def __getattr__(name: str) -> Any:
    new = _DEPRECATED.get(name)
    if new is None:
        raise AttributeError(f"module 'tasder.hw' has no attribute {name!r}")
    warnings.warn(f"tasder.hw.{name} is deprecated: use tasder.hw.{new} (same arguments)", DeprecationWarning,
                  stacklevel=2)
    return globals()[new]
