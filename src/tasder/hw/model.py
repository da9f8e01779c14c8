"""The model as stages (Timeloop's ``Topology::Evaluate``): dataflow → sparse → micro-architecture.

Each stage is a pure function over plain data (:class:`~tasder.hw.dataflow.ActionCounts` between
them). :func:`~tasder.hw.sparse.sparse_step` is the identity on a design without SAFs and splits
the dense counts into actual / gated / skipped / metadata actions otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tasder.hw.architecture import Architecture
from tasder.hw.dataflow import ActionCounts, analyze
from tasder.hw.mapping import Mapping, MappingBatch, check_mapping, loop_nest
from tasder.hw.microarch import ACTIONS, Costs, cost
from tasder.hw.sparse import sparse_step
from tasder.hw.workload import TENSORS, Problem

__all__ = ["Evaluation", "evaluate", "evaluate_batch", "sparse_step"]


def evaluate_batch(arch: Architecture, problem: Problem, batch: MappingBatch) -> tuple[ActionCounts, Costs]:
    """Run the three stages on a batch of (already validated) mappings."""
    counts = sparse_step(arch, problem, analyze(arch, batch))
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

    def to_dict(self) -> dict[str, Any]:
        c = self.counts
        return {
            "layer": self.problem.name, "M": self.problem.M, "K": self.problem.K, "N": self.problem.N,
            "repeat": self.problem.repeat, "cycles": self.cycles, "energy_pj": self.energy_pj, "edp": self.edp,
            "utilization": self.utilization,
            "compute_cycles": float(self.costs.compute_cycles[0]),
            "level_cycles": {lv.name: float(self.costs.level_cycles[0, i]) for i, lv in enumerate(self.arch.levels)},
            "energy_breakdown_pj": self.energy_breakdown(),
            "accesses": {lv.name: {t: {"tile": float(c.tile[0, i, ti]), "fills": float(c.fills[0, i, ti]),
                                       "reads": float(c.reads[0, i, ti]), "updates": float(c.updates[0, i, ti])}
                                   for ti, t in enumerate(TENSORS) if t in lv.keep}
                         for i, lv in enumerate(self.arch.levels)},
            "mapping": [{"level": lv.name, "temporal": dict(zip("MKN", m.temporal, strict=True)), "order": m.order,
                         "spatial": dict(zip("MKN", m.spatial, strict=True))}
                        for lv, m in zip(self.arch.levels, self.mapping.levels, strict=True)],
            "loop_nest": loop_nest(self.arch, self.problem, self.mapping),
        }


def evaluate(arch: Architecture, problem: Problem, mapping: Mapping) -> Evaluation:
    """Check ``mapping`` (raises :class:`~tasder.hw.mapping.MappingError` naming the level/dim) and cost it."""
    check_mapping(arch, problem, mapping)
    counts, costs = evaluate_batch(arch, problem, mapping.to_batch())
    return Evaluation(arch, problem, mapping, counts, costs)


