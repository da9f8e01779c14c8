"""The mapper (Timeloop's ``search``): sample or enumerate valid mappings, evaluate them in batches.

:func:`map_layer` finds the best mapping of one problem on a design, :func:`map_network` of every
layer of a network (layers that map alike share one search: :func:`mapping_key`).

Why vectorized: a mapping is a handful of integers, so a batch of them is a few (B, L, D) arrays
and the whole dataflow + cost model runs as NumPy array ops over the batch — thousands of
mappings per call instead of one Python call per mapping.

Mapspace: each dim's bound is split into per-level temporal and spatial factors by assigning each
of its prime factors to a slot (uniformly at random, or every assignment when the whole space
fits in the budget); each level gets a loop order. A GEMM's orders are all 3! permutations of
M, K, N; a problem of more dims permutes only its dims of bound > 1 (a loop of factor 1 is
nowhere: a 3×3 convolution's 6 non-unit dims give 720 orders per level, not 7! = 5,040), and
the orders are drawn at random when the space is too big to enumerate. User constraints fix loop
orders, restrict which dims may be spatial at a level, or ask for a named dataflow
("output-stationary": the reduction dims innermost at every level; "weight-stationary": the
dims of B and Z only (N; a convolution's N, P, Q); "input-stationary": those of A and Z only
(M)). Constraints written with the letters M, K, N name GEMM roles (:attr:`ProblemShape.roles`),
so a design's constraints apply to convolutions too; any other letters name the problem's dims.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from tasder.errors import InvalidParameterError
from tasder.hw.architecture import Architecture
from tasder.hw.mapping import Mapping, MappingBatch, MappingError
from tasder.hw.microarch import Costs
from tasder.hw.model import Evaluation, evaluate_batch
from tasder.hw.sparse import compressed_need
from tasder.hw.workload import DIMS, TENSORS, Network, Problem

__all__ = ["MAX_MAPPER_BUDGET", "OBJECTIVES", "STATIONARY", "MapperConstraints", "MapperResult", "NetworkResult",
           "NoValidMappingError", "check_budget", "map_layer", "map_network", "mapping_key", "sample_mappings",
           "validity"]

OBJECTIVES: tuple[str, ...] = ("edp", "energy", "cycles")
#: Named dataflows → the GEMM role whose dims must be innermost at every level.
STATIONARY: dict[str, str] = {"output-stationary": "K", "weight-stationary": "N", "input-stationary": "M"}


class NoValidMappingError(MappingError):
    """No candidate mapping satisfied the architecture's constraints; the message names the tightest one."""


def _dims_of(problem: Problem, text: str, what: str) -> list[str]:
    """The problem dims a constraint string names: GEMM roles when made of M, K, N only, else dims."""
    dims = problem.dims
    if all(c in DIMS for c in text) and not problem.is_gemm:
        roles = problem.shape.roles  # type: ignore[union-attr]
        return [d for d, r in zip(dims, roles, strict=True) if r in text]
    unknown = [c for c in text if c not in dims]
    if unknown:
        raise InvalidParameterError(f"{what}={text!r}: {unknown[0]!r} is no dim of {problem.name} "
                                    f"({', '.join(dims)}) and no GEMM role (M, K, N)")
    return list(text)


@lru_cache(maxsize=1024)
def _orders(dims: tuple[str, ...], free: tuple[str, ...], groups: tuple[tuple[str, ...], ...]) -> tuple[str, ...]:
    """Every order (outermost first) of ``dims``: the dims not in ``free`` first (outermost, in
    ``dims`` order: their loops have factor 1), then each permutation of ``free`` in which the dims
    of ``groups`` appear group by group (dims in no group may go anywhere)."""
    fixed = "".join(d for d in dims if d not in free)
    where = {d: g for g, group in enumerate(groups) for d in group}
    out = []
    for perm in itertools.permutations(free):
        ranked = [where[d] for d in perm if d in where]
        if all(a <= b for a, b in itertools.pairwise(ranked)):
            out.append(fixed + "".join(perm))
    return tuple(out)


@dataclass(frozen=True)
class MapperConstraints:
    """User constraints on the mapspace, keyed by storage-level name.

    Attributes:
        orders: level → fixed loop order: a permutation of the problem's dims (e.g. ``{"RF": "MNK"}``),
            or of the GEMM roles M, K, N (``KMN`` on a convolution: the reduction dims C, R, S
            outermost, then M, then N, P, Q; any order within a role).
        spatial_dims: level → dims (or GEMM roles) that may be spatial there (e.g. ``{"L2": "MN"}``;
            ``""`` = none).
        dataflow: a key of :data:`STATIONARY`, applied at every level without a fixed order.
    """

    orders: dict[str, str] = field(default_factory=dict)
    spatial_dims: dict[str, str] = field(default_factory=dict)
    dataflow: str | None = None

    def allowed_orders(self, arch: Architecture, problem: Problem | None = None) -> list[list[str]]:
        """Per level, the loop orders (outermost first) the mapper may choose for ``problem`` (a GEMM when None)."""
        problem = problem or Problem("gemm", M=2, K=2, N=2)
        dims = problem.dims
        for name, order in self.orders.items():
            arch.level_index(name)
            if sorted(order) != sorted(dims) and sorted(order) != sorted(DIMS):
                raise ValueError(f"MapperConstraints.orders[{name!r}]={order!r} must be a permutation of "
                                 f"{''.join(dims)} (the dims of {problem.name}) or of the GEMM roles MKN")
        if self.dataflow is not None and self.dataflow not in STATIONARY:
            raise ValueError(f"MapperConstraints.dataflow={self.dataflow!r} must be one of {', '.join(STATIONARY)}")
        # A GEMM permutes all three dims (as ever); a bigger problem only its dims of bound > 1.
        free = dims if problem.is_gemm else tuple(d for d, n in zip(dims, problem.sizes, strict=True) if n > 1)
        roles = dict(zip(dims, problem.shape.roles, strict=True))  # type: ignore[union-attr]
        out = []
        for lv in arch.levels:
            if lv.name in self.orders:
                order = self.orders[lv.name]
                if sorted(order) == sorted(dims):
                    groups = tuple((d,) for d in order)
                else:  # GEMM roles, group by group
                    groups = tuple(tuple(d for d in dims if roles[d] == r) for r in order)
            elif self.dataflow is not None:
                inner = STATIONARY[self.dataflow]
                groups = (tuple(d for d in dims if roles[d] != inner), tuple(d for d in dims if roles[d] == inner))
            else:
                groups = ()
            out.append(list(_orders(dims, free, tuple(tuple(d for d in g if d in free) for g in groups))))
        return out

    def spatial_slots(self, arch: Architecture, problem: Problem | None = None) -> list[str]:
        """Per level, the dims that may be spatial there (none below a level without fan-out)."""
        problem = problem or Problem("gemm", M=2, K=2, N=2)
        allowed = {}
        for name, text in self.spatial_dims.items():
            arch.level_index(name)
            if problem.is_gemm and any(d not in DIMS for d in text):
                raise ValueError(f"MapperConstraints.spatial_dims[{name!r}]={text!r} may only hold M, K, N")
            allowed[name] = "".join(_dims_of(problem, text, f"MapperConstraints.spatial_dims[{name!r}]"))
        every = "".join(problem.dims)
        return [allowed.get(lv.name, every) if fan > 1 else ""
                for lv, fan in zip(arch.levels, arch.fanouts, strict=True)]


def _primes(n: int) -> list[int]:
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    if n > 1:
        out.append(n)
    return out


def _slots(arch: Architecture, dim: str, spatial_dims: list[str]) -> list[int]:
    """Slot indices a dim's factors may go to: 0..L-1 temporal, L..2L-1 spatial."""
    nl = len(arch.levels)
    return list(range(nl)) + [nl + i for i in range(nl) if dim in spatial_dims[i]]


def _compositions(n: int, slots: list[int], width: int) -> np.ndarray:
    """Every way to split ``n`` into factors over ``slots`` (rows of length ``width``)."""
    rows = [np.ones(width, dtype=np.int64)]
    for p, e in Counter(_primes(n)).items():
        new = []
        for combo in itertools.combinations_with_replacement(slots, e):
            for r in rows:
                r2 = r.copy()
                for s in combo:
                    r2[s] *= p
                new.append(r2)
        rows = new
    return np.unique(np.array(rows), axis=0)


def _n_compositions(n: int, n_slots: int) -> int:
    return math.prod(math.comb(e + n_slots - 1, n_slots - 1) for e in Counter(_primes(n)).values())


def _assemble(per_dim: list[np.ndarray], orders: np.ndarray, nl: int, dims: tuple[str, ...]) -> MappingBatch:
    f = np.stack(per_dim, axis=2)  # (B, 2L, D)
    return MappingBatch(temporal=f[:, :nl], spatial=f[:, nl:], order=orders, dims=dims)


def _order_tables(choices: list[list[str]], dims: tuple[str, ...]) -> list[np.ndarray]:
    """Each level's order choices as a (choices, D) table of dim indices."""
    return [np.array([[dims.index(d) for d in o] for o in ch], dtype=np.int64) for ch in choices]


def _order_array(tables: list[np.ndarray], idx: np.ndarray) -> np.ndarray:
    """(B, L) indices into each level's choices → (B, L, D) dim indices."""
    return np.stack([tables[i][idx[:, i]] for i in range(len(tables))], axis=1)


def _need(arch: Architecture, problem: Problem, ext: np.ndarray) -> np.ndarray:
    """(B, L) words each level's kept tiles need for extents ``ext`` (B, L, D): compressed tiles at
    the 99th percentile of occupancy (data + metadata, :func:`~tasder.hw.sparse.compressed_need`),
    dense ones at their footprint."""
    compressed = compressed_need(arch, problem, ext)
    if compressed is not None:
        return compressed
    shape = problem.shape
    assert shape is not None
    need = np.zeros(ext.shape[:2])
    for ti, t in enumerate(TENSORS):
        kept = np.array([t in lv.keep for lv in arch.levels])
        if kept.any():
            need += np.where(kept, shape.footprint(ext, ti), 0.0)
    return need


def validity(arch: Architecture, problem: Problem, batch: MappingBatch) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Vectorized validity: (B,) mask and, per constraint name, the (B,) mask of candidates it rejects.

    Factor products are correct by construction for sampled batches but checked anyway, so the
    function also serves hand-built batches.
    """
    if tuple(batch.dims) != problem.dims:
        raise MappingError(f"the mappings' dims ({', '.join(batch.dims)}) are not the dims of {problem.name} "
                           f"({', '.join(problem.dims)})")
    tf, sf = batch.temporal, batch.spatial
    fails: dict[str, np.ndarray] = {}
    prod = np.prod(tf * sf, axis=1)  # (B, D)
    for j, d in enumerate(problem.dims):
        fails[f"dim {d}: factors must multiply to {problem.sizes[j]}"] = prod[:, j] != problem.sizes[j]
    ext = np.cumprod((tf * sf)[:, ::-1], axis=1)[:, ::-1]  # (B, L, D)
    # Compressed tiles are checked at the 99th percentile of occupancy (data + metadata).
    need = _need(arch, problem, ext.astype(np.float64))
    for i, (lv, fan) in enumerate(zip(arch.levels, arch.fanouts, strict=True)):
        fails[f"level {lv.name}: spatial fan-out {fan}"] = np.prod(sf[:, i], axis=1) > fan
        if lv.capacity is not None:
            fails[f"level {lv.name}: capacity {lv.capacity} words"] = need[:, i] > lv.capacity
    bad = np.zeros(len(batch), dtype=bool)
    for mask in fails.values():
        bad |= mask
    return ~bad, fails


def _sample(arch: Architecture, problem: Problem, slots: list[list[int]], order_tables: list[np.ndarray], b: int,
            rng: np.random.Generator) -> MappingBatch:
    """``b`` mappings drawn by placing prime factors one at a time into a random *feasible* slot.

    Why this works: adding a factor never shrinks a tile or a spatial product, so a slot that is
    infeasible now stays infeasible, and every prefix of a valid mapping is feasible — the sampler
    reaches every valid mapping and never produces an invalid one (the outermost temporal slot is
    always feasible). Capacity is the one :func:`validity` checks: compressed tiles at their 99th
    percentile of occupancy (whose rounding can, rarely, shrink as a tile grows: ``map_layer``
    checks every candidate with :func:`validity` anyway). The primes are placed in a random order
    per call.
    """
    nl, nd = len(arch.levels), len(problem.dims)
    caps = np.array([np.inf if lv.capacity is None else lv.capacity for lv in arch.levels])
    fans = np.array(arch.fanouts)
    shape = problem.shape
    assert shape is not None
    compressed = arch.sparse is not None and bool(arch.sparse.formats)
    kept = [np.array([t in lv.keep for lv in arch.levels]) for t in TENSORS]
    f = np.ones((b, 2 * nl, nd), dtype=np.int64)
    ext = np.ones((b, nl, nd))
    fp = [np.ones((b, nl)) for _ in TENSORS]  # each tensor's footprint per level, kept up to date
    sp = np.ones((b, nl))
    rows = np.arange(b)
    levels = np.arange(nl)
    items = [(j, p) for j, n in enumerate(problem.sizes) for p in _primes(n)]
    for k in rng.permutation(len(items)):
        d, p = items[k]
        sl = np.asarray(slots[d])
        trial = None
        if compressed or not shape.scales[:, d].all():
            trial = ext.copy()
            trial[:, :, d] *= p
        if compressed:
            need = _need(arch, problem, trial)
        else:  # a dense tile grows by p where p's dim indexes it (one-dim ranks), else recomputed
            need = np.zeros((b, nl))
            for t in range(3):
                if kept[t].any():
                    grown = fp[t] if not shape.rel[t, d] else fp[t] * p if shape.scales[t, d] \
                        else shape.footprint(trial, t)
                    need += np.where(kept[t], grown, 0.0)
        cap_ok = np.logical_and.accumulate(need <= caps, axis=1)  # (b, nl): levels 0..j all fit
        lvl = sl % nl
        feasible = cap_ok[:, lvl]
        spatial = sl >= nl
        if spatial.any():
            feasible[:, spatial] &= sp[:, lvl[spatial]] * p <= fans[lvl[spatial]]
        keys = np.where(feasible, rng.random((b, len(sl))), -1.0)
        pick = np.argmax(keys, axis=1)
        slot, j = sl[pick], lvl[pick]
        f[rows, slot, d] *= p
        grow = np.where(levels[None, :] <= j[:, None], p, 1)
        ext[:, :, d] *= grow
        if not compressed:
            for t in range(3):
                if shape.rel[t, d]:
                    fp[t] = fp[t] * grow if shape.scales[t, d] else shape.footprint(ext, t)
        is_sp = slot >= nl
        sp[rows[is_sp], j[is_sp]] *= p
    oidx = np.stack([rng.integers(0, len(c), size=b) for c in order_tables], axis=1)
    return MappingBatch(temporal=f[:, :nl], spatial=f[:, nl:], order=_order_array(order_tables, oidx),
                        dims=problem.dims)


def _design_constraints(arch: Architecture, constraints: MapperConstraints | None) -> MapperConstraints:
    """The user's constraints over the design's own dataflow (its mapper orders and spatial dims)."""
    constraints = constraints or MapperConstraints()
    if arch.mapper_orders or arch.mapper_spatial:
        constraints = MapperConstraints(orders={**dict(arch.mapper_orders), **constraints.orders},
                                        spatial_dims={**dict(arch.mapper_spatial), **constraints.spatial_dims},
                                        dataflow=constraints.dataflow)
    return constraints


def sample_mappings(arch: Architecture, problem: Problem, n: int, rng: np.random.Generator, *,
                    constraints: MapperConstraints | None = None) -> MappingBatch:
    """``n`` mappings of ``problem`` on ``arch``, drawn as :func:`map_layer` draws them (every valid
    mapping can come out; an invalid one only through the rounding of compressed capacities, see
    ``_sample``)."""
    constraints = _design_constraints(arch, constraints)
    spatial_dims = constraints.spatial_slots(arch, problem)
    tables = _order_tables(constraints.allowed_orders(arch, problem), problem.dims)
    return _sample(arch, problem, [_slots(arch, d, spatial_dims) for d in problem.dims], tables, n, rng)


@dataclass(frozen=True)
class MapperResult:
    """The best mapping for ``objective``, the top-k, and search statistics."""

    best: Evaluation
    top: tuple[tuple[Mapping, float], ...]
    objective: str
    candidates: int
    valid: int
    exhaustive: bool


def _objective(costs: Costs, objective: str) -> np.ndarray:
    return {"edp": costs.edp, "energy": costs.total_energy, "cycles": costs.cycles}[objective]


#: Most mappings the mapper evaluates per layer. Why a limit: the work grows linearly with the
#: budget (30,000-80,000 mappings per second per layer shape on one core), so a typo'd budget of
#: 10⁹ would run for hours; a million is 200× the CLI's default and 10-40 s per layer shape.
MAX_MAPPER_BUDGET = 1_000_000


def check_budget(budget: object) -> int:
    """``budget`` as a mapper budget: an int in [1, :data:`MAX_MAPPER_BUDGET`], else ValueError saying why."""
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise InvalidParameterError(f"mapper budget must be a positive integer; got {budget!r}")
    if budget > MAX_MAPPER_BUDGET:
        raise InvalidParameterError(
            f"mapper budget {int(budget):,} is above the limit of {MAX_MAPPER_BUDGET:,} mappings per layer (10-40 s "
            f"per layer shape at that size; the work grows linearly with the budget, and a mapping space smaller "
            f"than the budget is enumerated whole anyway)")
    return int(budget)


def map_layer(arch: Architecture, problem: Problem, *, budget: int = 20_000, objective: str = "edp", seed: int = 0,
              top_k: int = 5, constraints: MapperConstraints | None = None, chunk: int = 8192) -> MapperResult:
    """The best mapping of ``problem`` on ``arch`` for ``objective`` (and the top ``top_k``);
    deterministic for a ``seed``.

    If the whole constrained mapspace has at most ``budget`` points it is enumerated (so the
    result is optimal); otherwise ``budget`` candidates are sampled. Either way candidates are
    made and evaluated ``chunk`` at a time, keeping only the best few of each chunk, so memory
    does not grow with the budget. Ties keep the earlier candidate.

    Raises:
        NoValidMappingError: no candidate is valid; names the constraint that rejected most of them.
        ValueError: bad ``objective``, ``budget`` (above :data:`MAX_MAPPER_BUDGET`: the message says
            why) or constraints.
    """
    if objective not in OBJECTIVES:
        raise InvalidParameterError(f"objective={objective!r} must be one of {', '.join(OBJECTIVES)}")
    budget = check_budget(budget)
    constraints = _design_constraints(arch, constraints)  # the design's own dataflow, under the user's
    order_choices = constraints.allowed_orders(arch, problem)
    tables = _order_tables(order_choices, problem.dims)
    spatial_dims = constraints.spatial_slots(arch, problem)
    nl = len(arch.levels)
    slots = [_slots(arch, d, spatial_dims) for d in problem.dims]
    # The size of the space is counted, never enumerated, before choosing: a 64³ GEMM on a 4-level
    # design already has ~10¹² mappings, whose enumeration would need terabytes.
    space = math.prod(_n_compositions(n, len(s)) for n, s in zip(problem.sizes, slots, strict=True))
    space *= math.prod(len(c) for c in order_choices)
    exhaustive = space <= budget

    def batches() -> Iterator[MappingBatch]:
        if exhaustive:
            comps = [_compositions(n, s, 2 * nl) for n, s in zip(problem.sizes, slots, strict=True)]
            order_idx = np.array(list(itertools.product(*[range(len(c)) for c in order_choices])), dtype=np.int64)
            shape = (*(len(c) for c in comps), len(order_idx))
            total = math.prod(shape)
            nd = len(comps)
            for start in range(0, total, chunk):  # C order: the order of the whole grid, chunk by chunk
                idx = np.unravel_index(np.arange(start, min(start + chunk, total)), shape)
                yield _assemble([c[i] for c, i in zip(comps, idx[:nd], strict=True)],
                                _order_array(tables, order_idx[idx[nd]]), nl, problem.dims)
        else:
            rng = np.random.default_rng(seed)
            left = budget
            while left > 0:
                b = min(chunk, left)
                left -= b
                yield _sample(arch, problem, slots, tables, b, rng)

    candidates = valid = 0
    best: list[tuple[bool, float, int, Mapping]] = []  # (score is NaN, score, index among valid ones, mapping)
    fail_counts: Counter[str] = Counter()
    for batch in batches():
        candidates += len(batch)
        ok, fails = validity(arch, problem, batch)
        for name, mask in fails.items():
            fail_counts[name] += int(mask.sum())
        if not ok.any():
            continue
        good = batch.take(np.flatnonzero(ok))
        _, costs = evaluate_batch(arch, problem, good)
        scores = _objective(costs, objective)
        # The chunk's top_k distinct mappings: the overall top_k are among them (a mapping beaten
        # by top_k others in its own chunk is beaten by them overall).
        seen_here: set[Mapping] = set()
        for r in np.argsort(scores, kind="stable"):
            m = good.mapping(int(r))
            if m in seen_here:
                continue
            seen_here.add(m)
            score = float(scores[r])
            best.append((math.isnan(score), score, valid + int(r), m))
            if len(seen_here) == top_k:
                break
        valid += len(scores)
    if not valid:
        name, n = fail_counts.most_common(1)[0]
        others = ", ".join(f"'{k}' {v}" for k, v in fail_counts.most_common()[1:4] if v)
        raise NoValidMappingError(
            f"no valid mapping of {problem.name} ({_describe(problem)}) on {arch.name}: "
            f"{candidates} candidate(s) tried; the tightest constraint is '{name}', which rejected {n} of them"
            + (f" (also failing: {others})" if others else "")
            + "; enlarge that level, bypass a tensor there, or relax the mapper constraints")
    best.sort(key=lambda t: t[:3])
    top: list[tuple[Mapping, float]] = []
    seen: set[Mapping] = set()
    for _, score, _, m in best:
        if m in seen:
            continue
        seen.add(m)
        top.append((m, score))
        if len(top) == top_k:
            break
    best_map = top[0][0]
    counts, costs = evaluate_batch(arch, problem, best_map.to_batch())
    return MapperResult(best=Evaluation(arch, problem, best_map, counts, costs), top=tuple(top), objective=objective,
                        candidates=candidates, valid=valid, exhaustive=exhaustive)


@dataclass(frozen=True)
class NetworkResult:
    """Per-layer best mappings and totals weighted by each layer's ``repeat``; ``print()`` gives a table.

    ``cycles``, ``energy_pj`` and ``edp`` (J·s, at the design's clock) are properties alike.
    """

    network: Network
    layers: tuple[MapperResult, ...]

    @property
    def cycles(self) -> float:
        return sum(r.best.cycles * r.best.problem.repeat for r in self.layers)

    @property
    def energy_pj(self) -> float:
        return sum(r.best.energy_pj * r.best.problem.repeat for r in self.layers)

    @property
    def candidates(self) -> int:
        return sum(r.candidates for r in self.layers)

    @property
    def clock_hz(self) -> float:
        """The design's clock (every layer is mapped on the same design)."""
        return self.layers[0].best.arch.clock_hz if self.layers else 1.0

    @property
    def edp(self) -> float:
        """Network EDP in J·s: total energy × total delay at the design's clock (not the sum of
        per-layer EDPs). A property, like ``cycles`` and ``energy_pj``."""
        return self.energy_pj * 1e-12 * self.cycles / self.clock_hz

    def __str__(self) -> str:
        arch = self.layers[0].best.arch.name if self.layers else "?"
        head = ["layer", "M-K-N", "×", "A", "B", "cycles", "energy µJ", "util"]
        rows = [[r.best.problem.name, f"{r.best.problem.M}-{r.best.problem.K}-{r.best.problem.N}",
                 str(r.best.problem.repeat), str(r.best.problem.a_density), str(r.best.problem.b_density),
                 f"{r.best.cycles:,.0f}", f"{r.best.energy_pj / 1e6:,.3f}", f"{r.best.utilization:.0%}"]
                for r in self.layers]
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]

        def line(cells: list[str]) -> str:
            return "  ".join(c.ljust(w) if i in (0, 3, 4) else c.rjust(w)
                             for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

        return "\n".join([
            f"{self.network.name} on {arch}: {self.cycles:,.0f} cycles, {self.energy_pj / 1e6:,.3f} µJ, "
            f"EDP {self.edp:.3e} J·s (totals × repeat; A = weights, B = inputs)",
            line(head), "  ".join("─" * w for w in widths), *(line(r) for r in rows)])

    def utilization(self, mac_units: int) -> float:
        return sum(r.best.problem.macs * r.best.problem.repeat for r in self.layers) / (self.cycles * mac_units)


def _describe(problem: Problem) -> str:
    if problem.is_gemm:
        return f"M={problem.M}, K={problem.K}, N={problem.N}"
    return ", ".join(f"{d}={n}" for d, n in zip(problem.dims, problem.sizes, strict=True)) + f"; {problem.label}"


def mapping_key(problem: Problem) -> tuple[Hashable, ...]:
    """What a mapping search depends on besides the design and the mapper's settings: the shape and
    its bounds, the word width and the operands' density models. Layers with equal keys share one
    search (the name and the repeat count do not change the best mapping)."""
    if problem.is_gemm:
        return (problem.M, problem.K, problem.N, problem.word_bits, problem.a_density, problem.b_density)
    return (problem.shape, problem.sizes, problem.word_bits, problem.a_density, problem.b_density)


def map_network(arch: Architecture, network: Network, *, cache: dict[Hashable, MapperResult] | None = None,
                on_map: Callable[[], None] | None = None, **kwargs: Any) -> NetworkResult:
    """:func:`map_layer` every layer of ``network`` (layers with the same :func:`mapping_key` share one search).

    ``cache`` (key → result) is filled and reused: a caller that maps variants of one network on
    one design with the same ``kwargs`` passes the same dict every time (e.g.
    :class:`tasder.search.HardwareCost`). ``on_map`` is called after each search that ran
    (a progress bar's advance). ``kwargs`` go to :func:`map_layer`.
    """
    cache = {} if cache is None else cache
    out = []
    for p in network.layers:
        key = mapping_key(p)
        if key not in cache:
            cache[key] = map_layer(arch, p, **kwargs)
            if on_map is not None:
                on_map()
        r = cache[key]
        best = Evaluation(arch, p, r.best.mapping, r.best.counts, r.best.costs)
        out.append(MapperResult(best, r.top, r.objective, r.candidates, r.valid, r.exhaustive))
    return NetworkResult(network, tuple(out))
