"""Micro-architecture stage (Timeloop's ``model``): cycles and energy from access counts.

* **Accesses**: words / ``block_size`` (transfers are streamed in whole blocks).
* **Cycles**: the compute needs ``steps`` cycles (one MAC per MAC unit per cycle); each level needs
  ``read words / (read_bandwidth · active instances)`` and likewise for writes (fills + updates;
  separate read and write ports). The total is the bottleneck: the maximum of all of these, i.e.
  perfect overlap by double-buffering (Timeloop's assumption too).
* **Energy** (pJ): level × tensor × action (read, write = fill, update, drain) accesses ×
  per-access energy, plus MACs × energy per MAC, plus leakage (pJ/cycle/instance × instances ×
  cycles).
* **Drains** (Z tiles sent up to the parent) are their own action. By default they cost nothing
  at the level they leave and use none of its ports — Timeloop v3.0.3 counts only the parent's
  update (docs/design.md §4.12). A design with ``drain_reads: true`` charges them as reads of
  that level (its read energy and read-port time), as the physical buffer is read out.
* **EDP**: energy (J) × delay (s), delay = cycles / clock.
* **Sparse actions** (after :func:`tasder.hw.sparse.sparse_step`): metadata words cost like data;
  gated words and MACs keep their port/MAC cycles at ``gated_energy_ratio`` of the energy; skipped
  ones cost nothing; ``extra_energy`` (accumulation buffers, TASD units) is added to the compute.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasder.hw.architecture import Architecture
from tasder.hw.dataflow import ActionCounts

__all__ = ["ACTIONS", "Costs", "cost"]

#: Per-level actions, in the order of :attr:`Costs.energy`'s last axis.
ACTIONS: tuple[str, ...] = ("read", "write", "update", "drain")


@dataclass(frozen=True)
class Costs:
    """Costs of a batch of ``B`` mappings.

    Attributes:
        cycles: (B,) total cycles (the bottleneck).
        compute_cycles: (B,) cycles the MACs alone need.
        level_cycles: (B, L) cycles each storage level's bandwidth alone needs.
        energy: (B, L, 3 tensors, 4 actions: :data:`ACTIONS`) storage energy in pJ.
        compute_energy: (B,) MAC energy in pJ.
        leakage_energy: (B, L) leakage in pJ.
        total_energy: (B,) pJ.
        utilization: (B,) MACs / (cycles · MAC units).
        edp: (B,) J·s.
    """

    cycles: np.ndarray
    compute_cycles: np.ndarray
    level_cycles: np.ndarray
    energy: np.ndarray
    compute_energy: np.ndarray
    leakage_energy: np.ndarray
    total_energy: np.ndarray
    utilization: np.ndarray
    edp: np.ndarray


def cost(arch: Architecture, counts: ActionCounts) -> Costs:
    """Cycles and energy of every mapping in ``counts`` on ``arch``."""
    lv = arch.levels
    block = np.array([x.block_size for x in lv], dtype=np.float64)[None, :, None]
    e_action = np.array([[x.read_energy, x.write_energy, x.update_energy] for x in lv])  # (L, 3)
    words = np.stack([counts.reads, counts.fills, counts.updates], axis=-1)  # (B, L, 3, 3) actual
    busy = words  # words that occupy the ports: actual + gated + metadata (skipped ones do not)
    gated_ratio = arch.sparse.gated_energy_ratio if arch.sparse is not None else 0.0
    if counts.gated is not None:
        words = words + counts.metadata + counts.gated * gated_ratio
        busy = busy + counts.metadata + counts.gated
    accesses = words / block[..., None]
    drains = counts.drains if counts.drains is not None else np.zeros(counts.reads.shape)
    e_drain = np.array([x.read_energy if arch.drain_reads else 0.0 for x in lv])[None, :, None]
    energy = np.concatenate([accesses * e_action[None, :, None, :], (drains / block * e_drain)[..., None]], axis=-1)
    active = counts.active[:, : len(lv)]
    rbw = np.array([x.read_bandwidth for x in lv])[None, :]
    wbw = np.array([x.write_bandwidth for x in lv])[None, :]
    read_words = busy[..., 0] + drains if arch.drain_reads else busy[..., 0]
    read_cycles = read_words.sum(axis=2) / (rbw * active)
    write_cycles = (busy[..., 1] + busy[..., 2]).sum(axis=2) / (wbw * active)
    level_cycles = np.maximum(read_cycles, write_cycles)
    cycles = np.maximum(counts.steps, level_cycles.max(axis=1))
    leak = np.array([x.leakage_power * x.instances for x in lv])[None, :] * cycles[:, None]
    compute_energy = counts.macs * arch.compute.energy_per_mac
    if counts.mac_gated is not None:
        compute_energy = compute_energy + counts.mac_gated * arch.compute.energy_per_mac * gated_ratio
    if counts.extra_energy is not None:
        compute_energy = compute_energy + counts.extra_energy
    total = energy.sum(axis=(1, 2, 3)) + compute_energy + leak.sum(axis=1)
    return Costs(
        cycles=cycles, compute_cycles=counts.steps.astype(np.float64), level_cycles=level_cycles, energy=energy,
        compute_energy=compute_energy, leakage_energy=leak, total_energy=total,
        utilization=(counts.macs if counts.mac_gated is None else counts.macs + counts.mac_gated)
        / (cycles * arch.compute.instances),
        edp=total * 1e-12 * cycles / arch.clock_hz,
    )
