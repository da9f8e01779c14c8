"""Dense loop analysis (Timeloop's ``loop-analysis`` stage): tiles and access counts from a mapping.

Reuse rules (Timeloop's, for a GEMM where a changed index gives a wholly new tile):

* The tile of tensor X at level ``c`` is (re)filled each time a temporal loop above ``c`` that
  indexes X iterates — *or* any loop outer to such a loop, since an irrelevant loop only keeps X
  stationary when it sits inside every relevant loop. So the number of fills is the product of
  the temporal factors above ``c`` from the outermost loop down to the innermost relevant one
  (factor-1 loops do not count). The compute level is treated as a level with a 1-word tile: its
  operand latches give the same stationarity at the innermost loops.
* Every active child instance receives its own copy (fills scale with all spatial factors above
  the child), but the parent reads a tile once for all children that share it: spatial loops
  between parent and child that do not index X are **multicast**.
* Outputs Z flow back up as partial-sum **updates**; spatial loops that do not index Z (K) are
  **reduced** before they reach the parent. The first visit of an output tile needs no read of an
  old partial sum, so reads/fills of Z exclude ``distinct`` = the number of distinct Z tiles.

The result is :class:`ActionCounts`, the narrow interface between the stages: the sparse step
(part 2) filters it, :mod:`tasder.hw.microarch` costs it. :func:`analyze` works on a whole
:class:`~tasder.hw.mapping.MappingBatch` at once with array ops; :func:`analyze_reference` is a
plain scalar implementation of the same rules used to check it.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from tasder.hw.architecture import Architecture
from tasder.hw.mapping import Mapping, MappingBatch
from tasder.hw.workload import DIMS, TENSOR_DIMS, TENSORS

__all__ = ["ActionCounts", "analyze", "analyze_reference"]

_REL = np.array([[d in TENSOR_DIMS[t] for d in DIMS] for t in TENSORS])  # (3 tensors, 3 dims)


@dataclass(frozen=True)
class ActionCounts:
    """Per-level, per-tensor word counts for a batch of ``B`` mappings (arrays (B, L, 3), tensors in
    :data:`~tasder.hw.workload.TENSORS` order; the whole batch, all instances of a level summed).

    Attributes:
        tile: words of each tensor's tile held by one instance (0 where the level bypasses it).
        fills: words written into the level from its parent (A/B fills; Z partial sums read back).
        reads: words read out of the level: operands to its child, Z partial sums to its child and
            Z tiles drained to its parent.
        updates: Z words written into the level from below (partial sums, after spatial reduction).
        active: (B, L + 1) instances in use at each level and at the compute level.
        macs: (B,) multiply-accumulates (always M·K·N).
        steps: (B,) temporal iterations = compute cycles when nothing stalls.
        extents: (B, L + 1, 3) per-instance tile extents (M, K, N) at each level and the compute
            (1, 1, 1): the sparse step reads tile shapes from them.
        co_extents: (B, L, 3 tensors, 3 dims) for each level and tensor X it keeps, the extents
            (M, K, N) of the iteration space that *one* X tile read from that level meets in its
            child (the next level keeping X, or the compute): X's tile there, widened along the
            dims X does not index by the loops it stays resident across (the temporal loops above
            the child inner to X's innermost relevant loop) and by the spatial loops it is
            multicast (or, for Z, reduced) over. A leader→follower SAF checks the leader over this
            region (thesis 4.6.4: "the leader and follower tiles ... are determined based on the
            data reuse defined in the mapping").
        spatial: (B, L, 3) spatial factors (M, K, N) of each level's fan-out (the last level's spread
            the compute across the MACs).
        drains: (B, L, 3) the part of ``reads`` that drains Z tiles up to the parent (write-backs,
            never eliminated by a SAF on the way down); zero for A and B.
        gated, skipped, metadata: (B, L, 3, 3) words per level, tensor and action (read, fill,
            update) that the sparse step gated, skipped, or moved as format metadata (None: dense).
            After the sparse step ``reads``/``fills``/``updates`` hold the *actual* words.
        mac_gated, mac_skipped: (B,) MACs gated / skipped (``macs`` then counts actual MACs).
        extra_energy: (B,) pJ of sparse-only units (accumulation buffers, TASD units).
        dense_macs: (B,) M·K·N when ``macs`` is the actual count.
    """

    level_names: tuple[str, ...]
    tile: np.ndarray
    fills: np.ndarray
    reads: np.ndarray
    updates: np.ndarray
    active: np.ndarray
    macs: np.ndarray
    steps: np.ndarray
    extents: np.ndarray | None = None
    co_extents: np.ndarray | None = None
    spatial: np.ndarray | None = None
    drains: np.ndarray | None = None
    gated: np.ndarray | None = None
    skipped: np.ndarray | None = None
    metadata: np.ndarray | None = None
    mac_gated: np.ndarray | None = None
    mac_skipped: np.ndarray | None = None
    extra_energy: np.ndarray | None = None
    dense_macs: np.ndarray | None = None


def _co_extent_pairs(arch: Architecture) -> set[tuple[int, int]]:
    """(level, tensor) pairs whose :attr:`ActionCounts.co_extents` a storage-level SAF reads; only
    those are computed (dense designs skip the work; the rest stay 1)."""
    spec = getattr(arch, "sparse", None)
    if spec is None:
        return set()
    names = [lv.name for lv in arch.levels]
    return {(names.index(saf.level), TENSORS.index(saf.target)) for saf in spec.safs
            if saf.level in names and saf.granularity is None}


def analyze(arch: Architecture, batch: MappingBatch) -> ActionCounts:
    """Tiles and access counts of every mapping in ``batch`` (no validity check: see the mapper)."""
    tf = batch.temporal.astype(np.float64)
    sf = batch.spatial.astype(np.float64)
    order = batch.order
    nb, nl, _ = tf.shape
    # Temporal loops in nest order: fac (nb, 3L) factors, dim_of (nb, 3L) their dims.
    dim_of = order.reshape(nb, 3 * nl)
    fac = np.take_along_axis(tf, order, axis=2).reshape(nb, 3 * nl)
    cp = np.cumprod(fac, axis=1)
    cp = np.concatenate([np.ones((nb, 1)), cp], axis=1)  # cp[:, k] = product of the first k loops
    pos = np.arange(3 * nl)
    # Tile extents per level (index nl = compute: 1 word): product of temporal·spatial at levels ≥ i.
    ts = tf * sf
    ext = np.ones((nb, nl + 1, 3))
    ext[:, :nl] = np.cumprod(ts[:, ::-1], axis=1)[:, ::-1]
    sprod = np.prod(sf, axis=2)  # (nb, nl)
    s_above = np.ones((nb, nl + 1))
    s_above[:, 1:] = np.cumprod(sprod, axis=1)  # active instances at each level / compute
    zeros = np.zeros((nb, nl, 3))
    tile, fills, reads, updates, drains = (zeros.copy() for _ in range(5))
    pairs = _co_extent_pairs(arch)
    co_ext = np.ones((nb, nl, 3, 3)) if pairs else None
    if co_ext is not None:
        # dim_cp[:, k, d] = product of the first k temporal loops' factors in dim d (residency windows).
        dim_cp = np.ones((nb, 3 * nl + 1, 3))
        for d in range(3):
            dim_cp[:, 1:, d] = np.cumprod(np.where(dim_of == d, fac, 1.0), axis=1)
        rows = np.arange(nb)
    for t, name in enumerate(TENSORS):
        rel = _REL[t]
        tile_t = np.prod(np.where(rel, ext, 1.0), axis=2)  # (nb, nl + 1)
        tile_t[:, nl] = 1.0
        relevant = rel[dim_of] & (fac > 1)
        last = np.maximum.accumulate(np.where(relevant, pos, -1), axis=1)  # innermost relevant loop so far
        # reload[c] for c = 1..L: product of loops 0..last over the first 3c loops.
        last_c = last[:, 2::3]  # (nb, nl): after level c-1's loops, i.e. above level c
        reload = np.ones((nb, nl + 1))
        reload[:, 1:] = np.take_along_axis(cp, last_c + 1, axis=1)
        distinct = np.ones((nb, nl + 1))
        distinct[:, 1:] = np.cumprod(np.where(rel[dim_of], fac, 1.0), axis=1)[:, 2::3]
        s_rel = np.prod(np.where(rel, sf, 1.0), axis=2)  # (nb, nl) spatial factors that index t
        s_rel_cum = np.ones((nb, nl + 1))
        s_rel_cum[:, 1:] = np.cumprod(s_rel, axis=1)
        chain = [i for i, lv in enumerate(arch.levels) if name in lv.keep] + [nl]
        for p, c in pairwise(chain):
            tile[:, p, t] = tile_t[:, p]
            if co_ext is not None and (p, t) in pairs:
                # One tile read from p stays at c across the temporal loops above c that are inner
                # to t's innermost relevant loop (positions last_c+1 .. 3c-1), and is multicast over
                # the spatial loops at levels p..c-1 that do not index t.
                resident = dim_cp[:, 3 * c] / dim_cp[rows, last[:, 3 * c - 1] + 1]
                multicast = np.prod(np.where(rel, 1.0, sf[:, p:c]), axis=1)
                co_ext[:, p, t] = np.where(rel, ext[:, c], ext[:, c] * resident * multicast)
            per_child = tile_t[:, c] * s_rel_cum[:, c] / s_rel_cum[:, p] * s_above[:, p]  # multicast/reduced
            if name != "Z":
                reads[:, p, t] += per_child * reload[:, c]
                if c < nl:
                    fills[:, c, t] += tile_t[:, c] * reload[:, c] * s_above[:, c]
            else:
                updates[:, p, t] += per_child * reload[:, c]
                reads[:, p, t] += per_child * (reload[:, c] - distinct[:, c])
                if c < nl:
                    fills[:, c, t] += tile_t[:, c] * (reload[:, c] - distinct[:, c]) * s_above[:, c]
                    drain = tile_t[:, c] * reload[:, c] * s_above[:, c]  # drains to the parent
                    reads[:, c, t] += drain
                    drains[:, c, t] += drain
    return ActionCounts(
        level_names=tuple(lv.name for lv in arch.levels), tile=tile, fills=fills, reads=reads, updates=updates,
        active=s_above, macs=np.prod(ts, axis=(1, 2)), steps=np.prod(tf, axis=(1, 2)), extents=ext,
        co_extents=co_ext, spatial=sf, drains=drains,
    )


def analyze_reference(arch: Architecture, mapping: Mapping) -> ActionCounts:
    """The same rules as :func:`analyze`, for one mapping, in plain Python loops (a test oracle)."""
    nl = len(arch.levels)
    loops = []  # (level, dim, factor, spatial?) outermost first
    for i, lv in enumerate(mapping.levels):
        loops += [(i, d, lv.temporal[DIMS.index(d)], False) for d in lv.order]
        loops += [(i, d, lv.spatial[j], True) for j, d in enumerate(DIMS)]

    def above(c: int) -> list[tuple[int, str, int, bool]]:
        return [lp for lp in loops if lp[0] < c]

    def tile(t: str, c: int) -> int:
        n = 1
        for lvl, d, f, _ in loops:
            if lvl >= c and d in TENSOR_DIMS[t]:
                n *= f
        return n

    def reload(t: str, c: int) -> int:
        temporal = [lp for lp in above(c) if not lp[3]]
        inner = -1
        for k, (_, d, f, _) in enumerate(temporal):
            if d in TENSOR_DIMS[t] and f > 1:
                inner = k
        n = 1
        for _, _, f, _ in temporal[: inner + 1]:
            n *= f
        return n

    def distinct(t: str, c: int) -> int:
        n = 1
        for _, d, f, sp in above(c):
            if not sp and d in TENSOR_DIMS[t]:
                n *= f
        return n

    def spatial(c_lo: int, c_hi: int, t: str | None) -> int:
        n = 1
        for lvl, d, f, sp in loops:
            if sp and c_lo <= lvl < c_hi and (t is None or d in TENSOR_DIMS[t]):
                n *= f
        return n

    shape = (1, nl, 3)
    tiles, fills, reads, updates = (np.zeros(shape) for _ in range(4))
    for ti, t in enumerate(TENSORS):
        chain = [i for i, lv in enumerate(arch.levels) if t in lv.keep] + [nl]
        for p, c in pairwise(chain):
            tiles[0, p, ti] = tile(t, p)
            tc = 1 if c == nl else tile(t, c)
            per_child = tc * spatial(p, c, t) * spatial(0, p, None)
            if t != "Z":
                reads[0, p, ti] += per_child * reload(t, c)
                if c < nl:
                    fills[0, c, ti] += tc * reload(t, c) * spatial(0, c, None)
            else:
                first = reload(t, c) - distinct(t, c)
                updates[0, p, ti] += per_child * reload(t, c)
                reads[0, p, ti] += per_child * first
                if c < nl:
                    fills[0, c, ti] += tc * first * spatial(0, c, None)
                    reads[0, c, ti] += tc * reload(t, c) * spatial(0, c, None)
    active = np.array([[spatial(0, c, None) for c in range(nl + 1)]], dtype=np.float64)
    steps = 1
    for _, _, f, sp in loops:
        if not sp:
            steps *= f
    return ActionCounts(tuple(lv.name for lv in arch.levels), tiles, fills, reads, updates, active,
                        np.array([float(steps * spatial(0, nl, None))]), np.array([float(steps)]))
