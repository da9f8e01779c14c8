"""The model as stages (Timeloop's ``Topology::Evaluate``): dataflow → sparse → micro-architecture.

Each stage is a pure function over plain data (:class:`~tasder.hw.dataflow.ActionCounts` between
them). :func:`~tasder.hw.sparse.sparse_step` is the identity on a design without SAFs and splits
the dense counts into actual / gated / skipped / metadata actions otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tasder.hw.architecture import Architecture
from tasder.hw.dataflow import ActionCounts, analyze
from tasder.hw.mapping import Mapping, MappingBatch, check_mapping, loop_nest
from tasder.hw.microarch import ACTIONS, Costs, cost
from tasder.hw.sparse import sparse_step
from tasder.hw.workload import TENSORS, Problem

__all__ = ["Evaluation", "evaluate", "evaluate_batch", "sparse_step"]


def evaluate_batch(arch: Architecture, problem: Problem, batch: MappingBatch) -> tuple[ActionCounts, Costs]:
    """Run the three stages on a batch of (already validated) mappings."""
    counts = sparse_step(arch, problem, analyze(arch, batch, problem))
    return counts, cost(arch, counts)


@dataclass(frozen=True)
class Evaluation:
    """One mapping of one layer: its counts and costs (batch size 1) with scalar accessors."""

    arch: Architecture
    problem: Problem
    mapping: Mapping
    counts: ActionCounts
    costs: Costs

    @property
    def cycles(self) -> float:
        return float(self.costs.cycles[0])

    @property
    def energy_pj(self) -> float:
        return float(self.costs.total_energy[0])

    @property
    def edp(self) -> float:
        return float(self.costs.edp[0])

    @property
    def utilization(self) -> float:
        return float(self.costs.utilization[0])

    def energy_breakdown(self) -> dict[str, dict[str, float]]:
        """pJ by level then ``<tensor>.<action>``, plus ``compute`` and ``leakage`` entries."""
        out: dict[str, dict[str, float]] = {}
        for i, lv in enumerate(self.arch.levels):
            row = {f"{t}.{a}": float(self.costs.energy[0, i, ti, ai])
                   for ti, t in enumerate(TENSORS) for ai, a in enumerate(ACTIONS)
                   if self.costs.energy[0, i, ti, ai] > 0}
            if self.costs.leakage_energy[0, i] > 0:
                row["leakage"] = float(self.costs.leakage_energy[0, i])
            out[lv.name] = row
        out[self.arch.compute.name] = {"mac": float(self.costs.compute_energy[0])}
        return out

    def counters(self) -> dict[str, Any]:
        """Timeloop's per-level, per-tensor counters (``stats.txt``), as totals over every utilized
        instance (Timeloop prints per instance: divide by ``utilized_instances``).

        Per level: ``instances``, ``utilized_instances``, ``cycles`` (what its bandwidth alone
        needs) and per kept tensor (keyed A/B/Z, with the shape's ``name``: Weights, Inputs,
        Outputs for a convolution) its ``tile`` (words per instance) and, for each of ``reads``,
        ``fills`` and ``updates``: ``algorithmic`` (dense), ``actual``, ``gated``, ``skipped`` and
        ``metadata`` words; and ``drains`` (Z words sent up to the parent, which counts them as
        updates; Timeloop has no such counter). The compute: algorithmic, actual, gated and
        skipped MACs, utilized instances and cycles.
        """
        c, i0 = self.counts, 0
        shape = self.problem.shape
        assert shape is not None
        dense = c.algorithmic if c.algorithmic is not None else np.stack([c.reads, c.fills, c.updates], axis=-1)
        zero = np.zeros_like(dense)
        gated = c.gated if c.gated is not None else zero
        skipped = c.skipped if c.skipped is not None else zero
        meta = c.metadata if c.metadata is not None else zero
        actual = np.stack([c.reads, c.fills, c.updates], axis=-1)
        drains = c.drains if c.drains is not None else np.zeros(c.reads.shape)
        levels: dict[str, Any] = {}
        for i, lv in enumerate(self.arch.levels):
            tensors: dict[str, Any] = {}
            for ti, t in enumerate(TENSORS):
                if t not in lv.keep:
                    continue
                row: dict[str, Any] = {"name": shape.tensor_names[ti], "tile": float(c.tile[i0, i, ti])}
                for ai, action in enumerate(("reads", "fills", "updates")):
                    row[action] = {"algorithmic": float(dense[i0, i, ti, ai]), "actual": float(actual[i0, i, ti, ai]),
                                   "gated": float(gated[i0, i, ti, ai]), "skipped": float(skipped[i0, i, ti, ai]),
                                   "metadata": float(meta[i0, i, ti, ai])}
                row["drains"] = float(drains[i0, i, ti])
                tensors[t] = row
            levels[lv.name] = {"instances": lv.instances, "utilized_instances": float(c.active[i0, i]),
                               "cycles": float(self.costs.level_cycles[i0, i]), "tensors": tensors}
        dense_macs = c.dense_macs if c.dense_macs is not None else c.macs
        compute = {"name": self.arch.compute.name, "instances": self.arch.compute.instances,
                   "utilized_instances": float(c.active[i0, -1]), "algorithmic": float(dense_macs[i0]),
                   "actual": float(c.macs[i0]),
                   "gated": float(c.mac_gated[i0]) if c.mac_gated is not None else 0.0,
                   "skipped": float(c.mac_skipped[i0]) if c.mac_skipped is not None else 0.0,
                   "cycles": float(self.costs.compute_cycles[i0])}
        return {"levels": levels, "compute": compute, "cycles": self.cycles, "energy_pj": self.energy_pj}

    def to_dict(self) -> dict[str, Any]:
        c = self.counts
        p = self.problem
        dims = self.mapping.dims
        out = {
            "layer": p.name, "M": p.M, "K": p.K, "N": p.N, "shape": p.shape.name,  # type: ignore[union-attr]
            "bounds": dict(zip(p.dims, p.sizes, strict=True)), "label": p.label,
            "repeat": p.repeat, "cycles": self.cycles, "energy_pj": self.energy_pj, "edp": self.edp,
            "utilization": self.utilization,
            "compute_cycles": float(self.costs.compute_cycles[0]),
            "level_cycles": {lv.name: float(self.costs.level_cycles[0, i]) for i, lv in enumerate(self.arch.levels)},
            "energy_breakdown_pj": self.energy_breakdown(),
            "accesses": {lv.name: {t: {"tile": float(c.tile[0, i, ti]), "fills": float(c.fills[0, i, ti]),
                                       "reads": float(c.reads[0, i, ti]), "updates": float(c.updates[0, i, ti]),
                                       "drains": float(c.drains[0, i, ti]) if c.drains is not None else 0.0}
                                   for ti, t in enumerate(TENSORS) if t in lv.keep}
                         for i, lv in enumerate(self.arch.levels)},
            "counts": self.counters(),
            "mapping": [{"level": lv.name, "temporal": dict(zip(dims, m.temporal, strict=True)), "order": m.order,
                         "spatial": dict(zip(dims, m.spatial, strict=True))}
                        for lv, m in zip(self.arch.levels, self.mapping.levels, strict=True)],
            "loop_nest": loop_nest(self.arch, self.problem, self.mapping),
        }
        g = p.geometry()
        if g is not None:
            out["conv"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()}
        return out


def evaluate(arch: Architecture, problem: Problem, mapping: Mapping) -> Evaluation:
    """Check ``mapping`` (raises :class:`~tasder.hw.mapping.MappingError` naming the level/dim) and cost it."""
    check_mapping(arch, problem, mapping)
    counts, costs = evaluate_batch(arch, problem, mapping.to_batch())
    return Evaluation(arch, problem, mapping, counts, costs)


