"""An analytical accelerator model in the spirit of Timeloop/Sparseloop (DESIGN §4).

Specs are data (YAML → frozen dataclasses); the model is stages over plain data:

* :mod:`~tasder.hw.workload` — GEMM layers and networks (zoo tables, nn.Linear/Conv2d, traced modules);
* :mod:`~tasder.hw.architecture` — storage hierarchy + MAC array, energies from :mod:`~tasder.hw.energy`;
* :mod:`~tasder.hw.mapping` — loop factors/orders per level, validated;
* :mod:`~tasder.hw.dataflow` — dense loop analysis → :class:`ActionCounts`;
* :mod:`~tasder.hw.density` — operand density models (dense, uniform, G:H/HSS, TASD series, actual);
* :mod:`~tasder.hw.formats` — per-rank formats (U, B, CP, RLE, UOP): compressed tile sizes;
* :mod:`~tasder.hw.sparse` — the sparse step: SAFs split dense counts into actual/gated/skipped/metadata;
* :mod:`~tasder.hw.model` — dataflow → sparse step → :mod:`~tasder.hw.microarch`;
* :mod:`~tasder.hw.mapper` — vectorized search over many mappings per NumPy call;
* :mod:`~tasder.hw.training` — the FF/BP/WU GEMMs of a training step (N:M sparse training, SAT);
* :mod:`~tasder.hw.area` — area per component from a cited 45 nm table;
* :mod:`~tasder.hw.executor` — searches as cached (design, layer) tasks on one core, every core or Ray;
* :mod:`~tasder.hw.sweep` — design-space sweeps: YAML spec → designs × workloads → Pareto fronts.

>>> from tasder.hw import load_architecture, Problem, search
>>> arch = load_architecture("tc")
>>> result = search(arch, Problem("fc", M=64, K=64, N=16), budget=2000, seed=0)
>>> result.best.problem.macs == 64 * 64 * 16
True
"""

from tasder.hw.architecture import (
    Architecture,
    ComputeLevel,
    StorageLevel,
    architecture_from_doc,
    list_designs,
    load_architecture,
)
from tasder.hw.area import AreaBreakdown, area_breakdown, area_mm2
from tasder.hw.dataflow import ActionCounts, analyze, analyze_reference
from tasder.hw.density import (
    ActualModel,
    DenseModel,
    DensityModel,
    SeriesModel,
    StructuredModel,
    UniformModel,
    density_model,
)
from tasder.hw.energy import EnergyTable, default_energy_table, load_energy_table
from tasder.hw.formats import Format, parse_format
from tasder.hw.mapper import (
    MapperConstraints,
    MapperResult,
    NetworkResult,
    NoValidMappingError,
    search,
    search_network,
)
from tasder.hw.mapping import (
    LevelMapping,
    Mapping,
    MappingBatch,
    MappingError,
    check_mapping,
    load_mapping,
    loop_nest,
)
from tasder.hw.microarch import Costs, cost
from tasder.hw.model import Evaluation, evaluate, evaluate_batch
from tasder.hw.sparse import SAF, SparseSpec, sparse_step
from tasder.hw.spec import SpecError
from tasder.hw.sweep import load_sweep, run_sweep
from tasder.hw.training import PHASES, TrainingResult, search_training, training_gemms, training_network
from tasder.hw.workload import (
    Network,
    Problem,
    from_conv2d,
    from_layer_shapes,
    from_linear,
    load_network,
    trace_module,
)

__all__ = [
    "PHASES",
    "SAF",
    "ActionCounts",
    "ActualModel",
    "Architecture",
    "AreaBreakdown",
    "ComputeLevel",
    "Costs",
    "DenseModel",
    "DensityModel",
    "EnergyTable",
    "Evaluation",
    "Format",
    "LevelMapping",
    "MapperConstraints",
    "MapperResult",
    "Mapping",
    "MappingBatch",
    "MappingError",
    "Network",
    "NetworkResult",
    "NoValidMappingError",
    "Problem",
    "SeriesModel",
    "SparseSpec",
    "SpecError",
    "StorageLevel",
    "StructuredModel",
    "TrainingResult",
    "UniformModel",
    "analyze",
    "analyze_reference",
    "architecture_from_doc",
    "area_breakdown",
    "area_mm2",
    "check_mapping",
    "cost",
    "default_energy_table",
    "density_model",
    "evaluate",
    "evaluate_batch",
    "from_conv2d",
    "from_layer_shapes",
    "from_linear",
    "list_designs",
    "load_architecture",
    "load_energy_table",
    "load_mapping",
    "load_network",
    "load_sweep",
    "loop_nest",
    "parse_format",
    "run_sweep",
    "search",
    "search_network",
    "search_training",
    "sparse_step",
    "trace_module",
    "training_gemms",
    "training_network",
]
