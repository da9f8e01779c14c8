"""Dense loop analysis (Timeloop's ``loop-analysis`` stage): tiles and access counts from a mapping.

Reuse rules (Timeloop's), for any problem shape (docs/design.md §4.4):

* The tile of tensor X at level ``c`` is the footprint of X's projection over the extents of
  every loop at ``c`` and below (a convolution's input tile includes its sliding-window halo).
  It is (re)loaded each time a temporal loop above ``c`` that indexes X iterates — *or* any loop
  outer to such a loop, since an irrelevant loop only keeps X stationary when it sits inside
  every relevant loop. So the tiles loaded are the product of the temporal factors above ``c``
  from the outermost loop down to the innermost relevant one (factor-1 loops do not count).
* **Sliding windows**: when that innermost relevant loop steps (not when it restarts), the new
  tile overlaps the one still held (a convolution's halo) and only the new words are loaded
  (Timeloop's delta).
* The compute level stores nothing unless the design declares an **operand latch**
  (``operand_latch``): then it acts as a level with a 1-word tile for the latched tensors, so an
  operand is re-read, and a partial sum re-updated, only when an enclosing loop that indexes it
  iterates. Without it every MAC reads its operands and updates Z in the innermost level keeping them.
* Every active child instance receives its own copy (fills scale with all spatial factors above
  the child), but the parent reads a tile once for all children that share it: spatial loops
  between parent and child that do not index X are **multicast**.
* Outputs Z flow back up as partial-sum **updates**; spatial loops that do not index Z are
  **reduced** before they reach the parent. The first visit of an output word needs no read of
  an old partial sum, so reads/fills of Z exclude the first touches. A Z tile sent up is a
  **drain** of the level it leaves, counted on its own (not as a read).

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
from tasder.hw.workload import GEMM, TENSORS, Problem, ProblemShape

__all__ = ["ActionCounts", "analyze", "analyze_reference"]


@dataclass(frozen=True)
class ActionCounts:
    """Per-level, per-tensor word counts for a batch of ``B`` mappings (arrays (B, L, 3), tensors in
    :data:`~tasder.hw.workload.TENSORS` order; the whole batch, all instances of a level summed).

    Attributes:
        tile: words of each tensor's tile held by one instance (0 where the level bypasses it).
        fills: words written into the level from its parent (A/B fills; Z partial sums read back).
        reads: words read out of the level: operands to its child (or to the MACs), and Z partial
            sums sent down to be accumulated further (or read by each MAC without an accumulator).
            Drains are not reads (see ``drains``).
        updates: Z words written into the level from below (partial sums, after spatial reduction).
        active: (B, L + 1) instances in use at each level and at the compute level.
        macs: (B,) multiply-accumulates (the product of the bounds).
        steps: (B,) temporal iterations = compute cycles when nothing stalls.
        extents: (B, L + 1, D) per-instance tile extents per dim at each level and the compute
            (all 1): the sparse step reads tile shapes from them.
        co_extents: (B, L, 3 tensors, D) for each level and tensor X it keeps, the extents per dim
            of the iteration space that *one* X tile read from that level meets in its child (the
            next level keeping X, or the compute): X's tile there, widened along the dims X does
            not index by the loops it stays resident across (the temporal loops above the child
            inner to X's innermost relevant loop; none at an unlatched compute) and by the spatial
            loops it is multicast (or, for Z, reduced) over. A leader→follower SAF checks the
            leader over this region (thesis 4.6.4: "the leader and follower tiles ... are
            determined based on the data reuse defined in the mapping").
        spatial: (B, L, D) spatial factors of each level's fan-out (the last level's spread the
            compute across the MACs).
        drains: (B, L, 3) Z words sent up from each level to its parent (write-backs; never
            eliminated by a SAF); zero for A and B. The parent counts them as updates.
        gated, skipped, metadata: (B, L, 3, 3) words per level, tensor and action (read, fill,
            update) that the sparse step gated, skipped, or moved as format metadata (None: dense).
            After the sparse step ``reads``/``fills``/``updates`` hold the *actual* words.
        algorithmic: (B, L, 3, 3) the dense reads, fills and updates (what a dense run moves; set by
            the sparse step, None before it — then the counts themselves are dense).
        mac_gated, mac_skipped: (B,) MACs gated / skipped (``macs`` then counts actual MACs).
        extra_energy: (B,) pJ of sparse-only units (accumulation buffers, TASD units).
        dense_macs: (B,) the product of the bounds when ``macs`` is the actual count.
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
    algorithmic: np.ndarray | None = None
    mac_gated: np.ndarray | None = None
    mac_skipped: np.ndarray | None = None
    extra_energy: np.ndarray | None = None
    dense_macs: np.ndarray | None = None


def _shape_of(shape: ProblemShape | Problem | None) -> ProblemShape:
    if shape is None:
        return GEMM
    if isinstance(shape, Problem):
        assert shape.shape is not None
        return shape.shape
    return shape


def _co_extent_pairs(arch: Architecture) -> set[tuple[int, int]]:
    """(level, tensor) pairs whose :attr:`ActionCounts.co_extents` a storage-level SAF reads; only
    those are computed (dense designs skip the work; the rest stay 1)."""
    spec = getattr(arch, "sparse", None)
    if spec is None:
        return set()
    names = [lv.name for lv in arch.levels]
    return {(names.index(saf.level), TENSORS.index(saf.target)) for saf in spec.safs
            if saf.level in names and saf.granularity is None}


def analyze(arch: Architecture, batch: MappingBatch, shape: ProblemShape | Problem | None = None) -> ActionCounts:
    """Tiles and access counts of every mapping in ``batch`` for ``shape`` (a problem or its
    shape; a GEMM's when None). No validity check: see the mapper."""
    shape = _shape_of(shape)
    tf = batch.temporal.astype(np.float64)
    sf = batch.spatial.astype(np.float64)
    order = batch.order
    nb, nl, nd = tf.shape
    if nd != len(shape.dims):
        raise ValueError(f"the mappings have {nd} dims per level but {shape.name} has {len(shape.dims)}")
    nloop = nd * nl
    # Temporal loops in nest order: fac (nb, D·L) factors, dim_of (nb, D·L) their dims.
    dim_of = order.reshape(nb, nloop)
    fac = np.take_along_axis(tf, order, axis=2).reshape(nb, nloop)
    cp = np.cumprod(fac, axis=1)
    cp = np.concatenate([np.ones((nb, 1)), cp], axis=1)  # cp[:, k] = product of the first k loops
    pos = np.arange(nloop)
    # Tile extents per level (index nl = compute: 1 word): product of temporal·spatial at levels ≥ i.
    ts = tf * sf
    ext = np.ones((nb, nl + 1, nd))
    ext[:, :nl] = np.cumprod(ts[:, ::-1], axis=1)[:, ::-1]
    sprod = np.prod(sf, axis=2)  # (nb, nl)
    s_above = np.ones((nb, nl + 1))
    s_above[:, 1:] = np.cumprod(sprod, axis=1)  # active instances at each level / compute
    zeros = np.zeros((nb, nl, 3))
    tile, fills, reads, updates, drains = (zeros.copy() for _ in range(5))
    pairs = _co_extent_pairs(arch)
    co_ext = np.ones((nb, nl, 3, nd)) if pairs else None
    rows = np.arange(nb)
    if co_ext is not None:
        # dim_cp[:, k, d] = product of the first k temporal loops' factors in dim d (residency windows).
        dim_cp = np.ones((nb, nloop + 1, nd))
        for d in range(nd):
            dim_cp[:, 1:, d] = np.cumprod(np.where(dim_of == d, fac, 1.0), axis=1)
    sliding = any(shape.sliding)
    if sliding:
        sf_cum = np.ones((nb, nl + 1, nd))  # spatial factors above each level, per dim
        sf_cum[:, 1:] = np.cumprod(sf, axis=1)
    latch = arch.compute.latch
    for t, name in enumerate(TENSORS):
        rel = shape.rel[t]
        tile_t = np.ones((nb, nl + 1))
        tile_t[:, :nl] = shape.footprint(ext[:, :nl], t)
        relevant = rel[dim_of] & (fac > 1)
        last = np.maximum.accumulate(np.where(relevant, pos, -1), axis=1)  # innermost relevant loop so far
        last_c = last[:, nd - 1::nd]  # (nb, nl): after level c-1's loops, i.e. above level c = 1..nl
        # Tiles loaded at c: the loops from the outermost down to the innermost relevant one.
        reload = np.ones((nb, nl + 1))
        reload[:, 1:] = np.take_along_axis(cp, last_c + 1, axis=1)
        if name not in latch:
            reload[:, nl] = cp[:, nloop]  # no latch: every MAC reads (or updates) it again
        loads = tile_t * reload  # words loaded per child instance (before the sliding-window delta)
        if shape.sliding[t] and nl > 1:
            # Each step of the innermost relevant loop (not its restarts) moves the tile by `shift`
            # along that loop's dim; the part still held is not loaded again (Timeloop's delta).
            lc = np.maximum(last_c[:, :-1], 0)  # children 1..nl-1 (storage levels)
            dstar = np.take_along_axis(dim_of, lc, axis=1)
            fstar = np.take_along_axis(fac, lc, axis=1)
            outer = np.take_along_axis(cp, lc, axis=1)  # the loops outside it
            lvl = lc // nd
            ext_c = ext[:, 1:nl]
            shift = (np.take_along_axis(ext_c, dstar[..., None], axis=2)[..., 0]
                     * np.take_along_axis(sf_cum[:, 1:nl], dstar[..., None], axis=2)[..., 0]
                     / np.take_along_axis(sf_cum[rows[:, None], lvl], dstar[..., None], axis=2)[..., 0])
            held = np.zeros_like(shift)
            for d in shape.sliding[t]:
                on = (last_c[:, :-1] >= 0) & (dstar == d)
                if on.any():
                    held = np.where(on, shape.overlap(ext_c, t, d, shift), held)
            loads[:, 1:nl] -= held * outer * (fstar - 1.0)
        s_rel = np.prod(np.where(rel, sf, 1.0), axis=2)  # (nb, nl) spatial factors that index t
        s_rel_cum = np.ones((nb, nl + 1))
        s_rel_cum[:, 1:] = np.cumprod(s_rel, axis=1)
        if name == "Z":
            # Words of Z each child instance touches for the first time (no old partial sum to read).
            if shape.simple[t]:
                distinct = np.ones((nb, nl + 1))
                distinct[:, 1:] = np.cumprod(np.where(rel[dim_of], fac, 1.0), axis=1)[:, nd - 1::nd]
                first = tile_t * distinct
            else:  # a sliding window on Z (a data gradient): count what one instance touches
                first = np.ones((nb, nl + 1))
                for c in range(1, nl + 1):
                    first[:, c] = shape.touched(ext[:, c], tf[:, :c], sf[:, :c], t)
        chain = [i for i, lv in enumerate(arch.levels) if name in lv.keep] + [nl]
        for p, c in pairwise(chain):
            tile[:, p, t] = tile_t[:, p]
            if co_ext is not None and (p, t) in pairs:
                # One tile read from p stays at c across the temporal loops above c that are inner
                # to t's innermost relevant loop (positions last_c+1 .. D·c-1; none at a compute
                # without a latch for t), and is multicast over the spatial loops at levels p..c-1
                # that do not index t.
                if c == nl and name not in latch:
                    resident = 1.0
                else:
                    resident = dim_cp[:, nd * c] / dim_cp[rows, last_c[:, c - 1] + 1]
                multicast = np.prod(np.where(rel, 1.0, sf[:, p:c]), axis=1)
                co_ext[:, p, t] = np.where(rel, ext[:, c], ext[:, c] * resident * multicast)
            mult = s_rel_cum[:, c] / s_rel_cum[:, p] * s_above[:, p]  # multicast / reduced children
            if name != "Z":
                reads[:, p, t] += loads[:, c] * mult
                if c < nl:
                    fills[:, c, t] += loads[:, c] * s_above[:, c]
            else:
                updates[:, p, t] += loads[:, c] * mult
                reads[:, p, t] += (loads[:, c] - first[:, c]) * mult
                if c < nl:
                    fills[:, c, t] += (loads[:, c] - first[:, c]) * s_above[:, c]
                    drains[:, c, t] += loads[:, c] * s_above[:, c]  # Z tiles sent up to the parent
    return ActionCounts(
        level_names=tuple(lv.name for lv in arch.levels), tile=tile, fills=fills, reads=reads, updates=updates,
        active=s_above, macs=np.prod(ts, axis=(1, 2)), steps=np.prod(tf, axis=(1, 2)), extents=ext,
        co_extents=co_ext, spatial=sf, drains=drains,
    )


def analyze_reference(arch: Architecture, mapping: Mapping,
                      shape: ProblemShape | Problem | None = None) -> ActionCounts:
    """The same rules as :func:`analyze`, for one mapping, in plain Python loops (a test oracle)."""
    shape = _shape_of(shape)
    dims = mapping.dims
    nl = len(arch.levels)
    loops = []  # (level, dim, factor, spatial?) outermost first
    for i, lv in enumerate(mapping.levels):
        loops += [(i, d, lv.temporal[dims.index(d)], False) for d in lv.order]
        loops += [(i, d, lv.spatial[j], True) for j, d in enumerate(dims)]

    def indexes(t: str, d: str) -> bool:
        return any(d == dd for rank in shape.projections[TENSORS.index(t)] for dd, _ in rank)

    def extents(c: int) -> np.ndarray:
        """Extents per dim of the loops at levels ≥ c."""
        e = np.ones(len(dims))
        for lvl, d, f, _ in loops:
            if lvl >= c:
                e[dims.index(d)] *= f
        return e

    def tile(t: str, c: int) -> float:
        return 1.0 if c == nl else float(shape.footprint(extents(c), TENSORS.index(t)))

    def temporal_above(c: int) -> list[tuple[int, str, int, bool]]:
        return [lp for lp in loops if lp[0] < c and not lp[3]]

    def innermost_relevant(t: str, c: int) -> int:
        inner = -1
        for k, (_, d, f, _) in enumerate(temporal_above(c)):
            if indexes(t, d) and f > 1:
                inner = k
        return inner

    def loads(t: str, c: int) -> float:
        """Words loaded per instance of c: whole tiles at each (re)start of the innermost relevant
        loop, and per step of it only the words not held already (a sliding window's overlap)."""
        temporal = temporal_above(c)
        if c == nl and t not in arch.compute.latch:
            return float(np.prod([f for _, _, f, _ in temporal]))
        inner = innermost_relevant(t, c)
        if inner < 0:
            return tile(t, c)
        outer = float(np.prod([f for _, _, f, _ in temporal[:inner]]))
        lvl, d, f, _ = temporal[inner]
        whole = tile(t, c)
        if c == nl:
            return outer * f * whole
        # The step moves the tile by the extent of everything inside that loop along its dim.
        shift = extents(c)[dims.index(d)]
        for lv2, d2, f2, sp in loops:
            if sp and d2 == d and lvl <= lv2 < c:
                shift *= f2
        held = float(shape.overlap(extents(c), TENSORS.index(t), dims.index(d), np.float64(shift)))
        return outer * (whole + (f - 1) * (whole - held))

    def first_touch(c: int) -> float:
        """Z words one instance of c touches over the whole run: per dim the coordinates its loops
        reach (instance 0 of every spatial loop above c), per rank the distinct values they give."""
        coords = {}
        for d in dims:
            vals = {0}
            for k in reversed(range(len(loops))):  # innermost first
                lvl, d2, f, sp = loops[k]
                if d2 != d:
                    continue
                step = int(np.prod([f3 for _, d3, f3, _ in loops[k + 1:] if d3 == d]))
                if lvl >= c or not sp:  # the tile's own loops and the temporal loops above it
                    vals = {v + i * step for v in vals for i in range(f)}
            coords[d] = vals
        coef = dict(shape.coefficients)
        n = 1
        for rank in shape.projections[2]:
            values = {0}
            for d, cn in rank:
                values = {v + x * (1 if cn is None else coef[cn]) for v in values for x in coords[d]}
            n *= len(values)
        return float(n)

    def spatial(c_lo: int, c_hi: int, t: str | None) -> int:
        n = 1
        for lvl, d, f, sp in loops:
            if sp and c_lo <= lvl < c_hi and (t is None or indexes(t, d)):
                n *= f
        return n

    shape3 = (1, nl, 3)
    tiles, fills, reads, updates, drains = (np.zeros(shape3) for _ in range(5))
    for ti, t in enumerate(TENSORS):
        chain = [i for i, lv in enumerate(arch.levels) if t in lv.keep] + [nl]
        for p, c in pairwise(chain):
            tiles[0, p, ti] = tile(t, p)
            n = loads(t, c)
            mult = spatial(p, c, t) * spatial(0, p, None)
            if t != "Z":
                reads[0, p, ti] += n * mult
                if c < nl:
                    fills[0, c, ti] += n * spatial(0, c, None)
            else:
                first = first_touch(c)
                updates[0, p, ti] += n * mult
                reads[0, p, ti] += (n - first) * mult
                if c < nl:
                    fills[0, c, ti] += (n - first) * spatial(0, c, None)
                    drains[0, c, ti] += n * spatial(0, c, None)
    active = np.array([[spatial(0, c, None) for c in range(nl + 1)]], dtype=np.float64)
    steps = 1
    for _, _, f, sp in loops:
        if not sp:
            steps *= f
    return ActionCounts(tuple(lv.name for lv in arch.levels), tiles, fills, reads, updates, active,
                        np.array([float(steps * spatial(0, nl, None))]), np.array([float(steps)]), drains=drains)
