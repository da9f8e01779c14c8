"""The sparse step (Sparseloop's sparse modeling, thesis ch. 4.6): SAFs filter the dense traffic.

Input: the dense :class:`~tasder.hw.dataflow.ActionCounts` of a batch of mappings and a density
model per operand. Output: the same counts split into fine-grained actions:

* **actual** (``reads``/``fills``/``updates``): accesses that happen, at full energy;
* **gated**: the unit stays idle — costs the cycle, ``gated_energy_ratio`` of the energy;
* **skipped**: neither cycle nor energy;
* **metadata**: format overhead words (bitmasks, coordinates, offsets), at the level's energy.

Rules (per tile, then scaled by the number of tiles moved, as thesis 4.6):

* **Formats**: a compressed tensor moves ``density`` of its words plus its metadata
  (:mod:`tasder.hw.formats`), measured on the tile the level holds.
* **Gating/skipping at a storage level**, target ``T`` conditioned on leaders ``S``: a read (or
  partial-sum update) of a ``T`` tile at that level is eliminated when the corresponding leader tile
  is empty — probability from the leader's density model. The corresponding tile is the leader data
  that one ``T`` tile meets in its child during its residency there (thesis 4.6.4: "determined based
  on the data reuse defined in the mapping"; :attr:`ActionCounts.co_extents`), unless the SAF fixes a
  ``granularity``. Double-sided = both directions listed. Savings **propagate** downwards: the
  fraction eliminated at a level is the largest of its own and every level above (a tile not sent
  is not stored or read below), combined over different leaders as independent events. Z tiles
  drained up to the parent are write-backs, never eliminated.
* **Compute**: a MAC is ineffectual unless every listed leader is nonzero; skipping removes its
  cycle, gating keeps the cycle at ``gated_energy_ratio`` of the energy. Skipping a leader that is
  not run as an engine pattern (unstructured data) deals its nonzeros out among the MACs in position
  space, so lanes idle when a fiber's occupancy is not a multiple of the lanes (:func:`_imbalance`).
* **Structured engines** (``structured_support``): a structured operand runs at the sparsest engine
  pattern its own pattern is guaranteed to satisfy (:func:`tasder.sparsity.implies`; e.g. 2:4 on a
  4:8 engine runs as 4:8, 1:8 on a {1,2,4}:8 engine as 1:8, 1:4 on a 2:4 engine as 2:4): the
  operand's model becomes that pattern's (density, format slots, empty-tile odds), explicit zeros
  filling the slots its own pattern leaves empty; skips are deterministic, so cycles = steps ·
  that density. A TASD series is mapped term by term; it is exploited only if every term maps.
  An operand with no such pattern (unstructured, dense, or a pattern no engine pattern contains)
  makes the engine run it dense — no format, no skipping (gating needs only a zero detector, so
  gating SAFs apply to any model, with the operand's own density). Without a support list the
  SAFs always apply (DSTC pays its bitmask even on dense data).
* **TASD series** (TTC: a design with a ``term_loop``): the series' term index is a loop dim of
  the problem (:func:`term_problem`: it indexes the series operand alone) that the mapper places
  where the design allows (the TASD paper's Fig. 11: innermost in L2, so B's tiles and the partial
  sums stay in L1 while the terms stream past). Reuse across terms, the partial sums re-read at
  each term after the first, and capacity (a level holds every term its tile spans) all follow
  from the loop's position in the dataflow; each term's own model drives its share of the sparse
  step (each action's dense words split evenly over the terms). Other designs see a series as one
  operand of its total density.
* **Extra energy**: ``accumulation_energy`` per effectual MAC (DSTC's accumulation buffer),
  ``tasd_unit_energy`` per element of B the TASD units decompose at run time (TASD-A: any
  structured B on a design with the units, each element once, as it streams into shared memory).

Bandwidth-bound cycles use actual + gated + metadata words (compressed traffic); see
:func:`tasder.hw.microarch.cost`. Leader metadata reads are part of the leader's format traffic.
Not modelled: per-term loop nests (every term runs the same loops below the term loop); imbalance
across PEs above the last fan-out (their work sums many tiles, so it stays close to the mean).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from tasder.hw.density import DenseModel, DensityModel, SeriesModel, StructuredModel, UniformModel, density_model
from tasder.hw.formats import Format, parse_format
from tasder.hw.spec import SpecError, check_keys, get_float, get_int, get_str
from tasder.sparsity.notation import expand_ranges
from tasder.sparsity.patterns import GH, HSS, Rank, implies

if TYPE_CHECKING:
    from tasder.hw.architecture import Architecture
    from tasder.hw.dataflow import ActionCounts
    from tasder.hw.workload import Problem

__all__ = [
    "SAF",
    "SparseSpec",
    "TermLoop",
    "compressed_need",
    "engine_pattern",
    "executed_models",
    "insert_term_loop",
    "operand_models",
    "parse_sparse_spec",
    "sparse_step",
    "term_problem",
]

_TENSORS = ("A", "B", "Z")


@dataclass(frozen=True)
class SAF:
    """One gating/skipping feature: at ``level`` (a storage level or the compute), ``kind`` on ``target``
    conditioned on ``condition_on`` (leaders)."""

    level: str
    kind: str
    target: str
    condition_on: tuple[str, ...]
    #: Leader elements checked per row along K for one decision: None = the leader's tile one level
    #: down (Sparseloop's per-transfer rule); an int; or "block" = the leader's lowest-rank G:H block
    #: (HighLight's rank-1 SAF skips B for an empty rank-0 block of A).
    granularity: int | str | None = None


@dataclass(frozen=True)
class TermLoop:
    """Where a TASD-enabled design runs a series' term loop (``sparse_optimizations.term_loop``).

    The term index of the series operand is a loop dim (docs/design.md §4.6) that the mapper
    places; a design fixes where. ``level``: the storage level among whose temporal loops it runs
    (None: any level); ``innermost``: inside every other loop of that level (the TASD paper's
    Fig. 11: the other operand's tile and the partial sums stay put while the terms stream past);
    ``max_terms``: the longest series the engine runs (its "order", TASD paper Table 2/3; None: any).
    """

    level: str | None = None
    innermost: bool = True
    max_terms: int | None = None


@dataclass(frozen=True)
class SparseSpec:
    """A design's sparse acceleration features (Sparseloop's ``sparse_optimizations``)."""

    formats: dict[tuple[str, str], Format] = field(default_factory=dict)
    safs: tuple[SAF, ...] = ()
    structured_support: dict[str, tuple[tuple[tuple[int, int], ...], ...]] = field(default_factory=dict)
    gated_energy_ratio: float = 0.1
    accumulation_energy: float = 0.0
    tasd_unit_energy: float = 0.0
    #: Term-by-term execution of a TASD series (a TTC); None: a series is one operand of its total density.
    term_loop: TermLoop | None = None


def _ranks_of(model: DensityModel) -> tuple[tuple[int, int], ...] | None:
    if isinstance(model, StructuredModel):
        # G:G rules (dense ranks) carry no structure an engine needs: drop them for matching.
        return tuple(r for r in model.ranks if r[0] != r[1]) or ((1, 1),)
    return None


def parse_sparse_spec(node: Any, level_names: list[str], compute_name: str) -> SparseSpec:
    """Parse ``sparse_optimizations`` (see docs/hw_spec.md) with line-numbered errors."""
    check_keys(node, ("targets", "structured_support", "gated_energy_ratio", "accumulation_energy",
                      "tasd_unit_energy", "term_loop", "term_reuse"))
    names = [*level_names, compute_name]
    formats: dict[tuple[str, str], Format] = {}
    safs: list[SAF] = []
    for i, tgt in enumerate(node.get("targets") or []):
        if not isinstance(tgt, dict):
            raise SpecError(f"{node.where('targets')}: sparse_optimizations.targets[{i}] must be a mapping")
        check_keys(tgt, ("name", "representation_format", "action_optimization"), required=("name",))
        name = get_str(tgt, "name", choices=names)
        fmt = tgt.get("representation_format") or {}
        if fmt and name == compute_name:
            raise SpecError(f"{tgt.where('representation_format')}: the compute level stores nothing; "
                            f"formats belong to storage levels")
        if fmt:
            check_keys(fmt, ("A", "B"))
            for t, value in fmt.items():
                try:
                    formats[(name, t)] = parse_format(value)
                except ValueError as exc:
                    raise SpecError(f"{fmt.where(t)}: {exc}") from None
        for j, act in enumerate(tgt.get("action_optimization") or []):
            if not isinstance(act, dict):
                raise SpecError(f"{tgt.where('action_optimization')}: action_optimization[{j}] must be a mapping")
            check_keys(act, ("type", "target", "condition_on", "granularity"),
                       required=("type", "target", "condition_on"))
            gran = act.get("granularity")
            if gran is not None and gran != "block" and (isinstance(gran, bool) or not isinstance(gran, int)
                                                         or gran < 1):
                raise SpecError(f"{act.where('granularity')}: granularity must be a positive integer or 'block'; "
                                f"got {gran!r}")
            kind = get_str(act, "type", choices=("gating", "skipping"))
            target = get_str(act, "target", choices=_TENSORS)
            leaders = act["condition_on"]
            if not isinstance(leaders, list) or not leaders or any(x not in ("A", "B") for x in leaders):
                raise SpecError(f"{act.where('condition_on')}: condition_on must be a non-empty list of A/B; "
                                f"got {leaders!r}")
            if name != compute_name and target in leaders:
                raise SpecError(f"{act.where('condition_on')}: a storage SAF's target cannot lead itself "
                                f"(its own zeros are removed by its format)")
            safs.append(SAF(name, kind, target, tuple(leaders), gran))
    support: dict[str, tuple[tuple[tuple[int, int], ...], ...]] = {}
    sup = node.get("structured_support") or {}
    if sup:
        check_keys(sup, ("A", "B"))
        for t, pats in sup.items():
            if not isinstance(pats, list):
                raise SpecError(f"{sup.where(t)}: structured_support.{t} must be a list of patterns")
            out = []
            for p in pats:
                for text in expand_ranges(str(p)):
                    try:
                        r = _ranks_of(density_model(text))
                    except ValueError as exc:
                        raise SpecError(f"{sup.where(t)}: {exc}") from None
                    if r is None:
                        raise SpecError(f"{sup.where(t)}: {text!r} is not a structured pattern")
                    out.append(r)
            support[t] = tuple(out)
    term_loop = _parse_term_loop(node, level_names, support)
    return SparseSpec(formats=formats, safs=tuple(safs), structured_support=support,
                      gated_energy_ratio=get_float(node, "gated_energy_ratio", 0.1, allow_zero=True),
                      accumulation_energy=get_float(node, "accumulation_energy", 0.0, allow_zero=True),
                      tasd_unit_energy=get_float(node, "tasd_unit_energy", 0.0, allow_zero=True),
                      term_loop=term_loop)


def _parse_term_loop(node: Any, level_names: list[str], support: dict[str, Any]) -> TermLoop | None:
    """``term_loop: {level, innermost, max_terms}``; the older ``term_reuse: {Z: level, ...}`` reads
    as a term loop innermost in the parent of Z's level (Z stays there across terms)."""
    if node.get("term_loop") is not None and node.get("term_reuse") is not None:
        raise SpecError(f"{node.where('term_reuse')}: sparse_optimizations gives both term_loop and term_reuse "
                        f"(its older form); keep term_loop")
    if node.get("term_reuse") is not None:
        reuse = node["term_reuse"]
        if not isinstance(reuse, dict):
            raise SpecError(f"{node.where('term_reuse')}: sparse_optimizations.term_reuse must map tensors to levels")
        check_keys(reuse, _TENSORS)
        for t in reuse:
            get_str(reuse, t, choices=level_names)
        z = reuse.get("Z")
        level = None if z is None or level_names.index(z) == 0 else level_names[level_names.index(z) - 1]
        loop = TermLoop(level=level)
        where = node.where("term_reuse")
    elif node.get("term_loop") is not None:
        tl = node["term_loop"]
        if not isinstance(tl, dict):
            raise SpecError(f"{node.where('term_loop')}: sparse_optimizations.term_loop must be a mapping "
                            f"(level, innermost, max_terms)")
        check_keys(tl, ("level", "innermost", "max_terms"))
        innermost = tl.get("innermost", True)
        if not isinstance(innermost, bool):
            raise SpecError(f"{tl.where('innermost')}: term_loop.innermost must be true or false; got {innermost!r}")
        loop = TermLoop(level=get_str(tl, "level", None, choices=level_names), innermost=innermost,
                        max_terms=get_int(tl, "max_terms", None, maximum=64, why="no engine runs longer series"))
        where = node.where("term_loop")
    else:
        return None
    if not support:
        raise SpecError(f"{where}: a term loop needs an engine that runs series term by term, and this design "
                        f"lists no structured_support (its patterns); without one a series is one operand")
    return loop


def operand_models(problem: Problem) -> dict[str, DensityModel]:
    """The density model of A and B (Z is dense)."""
    return {"A": problem.a_density, "B": problem.b_density, "Z": DenseModel()}


def _pattern(ranks: tuple[tuple[int, int], ...]) -> GH | HSS:
    if len(ranks) == 1:
        return GH(*ranks[0])
    return HSS(tuple(Rank(g, h) for g, h in reversed(ranks)))


@lru_cache(maxsize=4096)
def engine_pattern(support: tuple[tuple[tuple[int, int], ...], ...],
                   ranks: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...] | None:
    """The engine pattern (ranks, lowest first) an operand pattern ``ranks`` runs at, or None (dense).

    The sparsest of ``support`` that ``ranks`` is guaranteed to satisfy; an exact match wins a tie.
    Patterns of density 1 are never a target (nothing to skip) unless the operand is exactly one.

    >>> engine_pattern((((4, 8),),), ((2, 4),)), engine_pattern((((2, 4),),), ((1, 4),))
    (((4, 8),), ((2, 4),))
    >>> engine_pattern((((1, 8),), ((2, 8),), ((4, 8),)), ((1, 8),)), engine_pattern((((2, 4),),), ((4, 8),))
    (((1, 8),), None)
    """
    def density(r: tuple[tuple[int, int], ...]) -> float:
        return math.prod(g / h for g, h in r)

    p = _pattern(ranks)
    fits = [q for q in support if q == ranks or (density(q) < 1.0 and implies(p, _pattern(q)))]
    if not fits:
        return None
    best = min(density(q) for q in fits)
    return ranks if ranks in fits and density(ranks) == best else next(q for q in fits if density(q) == best)


def _executed(spec: SparseSpec, t: str, model: DensityModel) -> tuple[DensityModel, bool]:
    """(model the design executes for ``t``, whether it exploits its sparsity).

    Designs without a support list exploit any model. A structured engine maps each structured term
    to :func:`engine_pattern`; any term without one makes the engine run the operand dense.
    """
    if t not in spec.structured_support:
        return model, True
    support = spec.structured_support[t]
    terms: list[StructuredModel] = []
    for m in model.terms:
        ranks = _ranks_of(m)
        q = None if ranks is None else engine_pattern(support, ranks)
        if q is None:
            return model, False
        assert isinstance(m, StructuredModel)
        if q != ranks:  # run on a wider native pattern: the same values, in more slots
            wider = StructuredModel(q, str(_pattern(q)))
            m = replace(wider, fill=min(1.0, m.value_density / wider.density))
        terms.append(m)
    if isinstance(model, SeriesModel):
        same = all(a is b for a, b in zip(terms, model.parts, strict=True))
        return (model if same else SeriesModel(tuple(terms))), True
    return terms[0], True


def executed_models(arch: Architecture, problem: Problem) -> tuple[dict[str, DensityModel], dict[str, bool]]:
    """The operand models ``arch`` executes for ``problem`` (after engine-pattern mapping) and which
    operands it exploits; a design without sparse features exploits nothing."""
    models = operand_models(problem)
    spec: SparseSpec | None = getattr(arch, "sparse", None)
    if spec is None:
        return models, {"A": False, "B": False}
    active = {}
    for t in ("A", "B"):
        models[t], active[t] = _executed(spec, t, models[t])
    return models, active


def _granularity(value: int | str, model: DensityModel) -> int:
    if value != "block":
        return int(value)
    return model.ranks[0][1] if isinstance(model, StructuredModel) else 1


def _tile(problem: Problem, ext: np.ndarray, t: str) -> tuple[np.ndarray, np.ndarray]:
    """(rows, k) of operand ``t``'s tile for extents (..., D): ``k`` along its density dims (K; a
    convolution's input channels), ``rows`` the rest of its footprint — of one term, when ``t`` is
    a series indexed by the problem's term dim (its terms are separate tensors of the same shape)."""
    shape = problem.shape
    assert shape is not None
    ti = _TENSORS.index(t)
    rows, k = shape.rows_k(ext, ti)
    tix = shape.term_index
    if tix is not None and shape.rel[ti, tix]:
        rows = rows / ext[..., tix]
    return rows, k


def series_operand(arch: Architecture, problem: Problem) -> tuple[str, int] | None:
    """(operand, terms) of the TASD series ``arch`` runs term by term for ``problem``, if any.

    Raises:
        MappingError: both operands are series, or the series is longer than the design's
            ``term_loop.max_terms``.
    """
    spec: SparseSpec | None = getattr(arch, "sparse", None)
    if spec is None or spec.term_loop is None:
        return None
    models, active = executed_models(arch, problem)
    series = [t for t in ("A", "B") if isinstance(models[t], SeriesModel) and active[t]]
    if not series:
        return None
    from tasder.hw.mapping import MappingError  # mapping imports the architecture, which imports this module

    if len(series) > 1:
        raise MappingError(f"{problem.name}: A ({models['A']}) and B ({models['B']}) are both TASD series, but "
                           f"{arch.name}'s term loop runs the terms of one operand (sparse_optimizations.term_loop)")
    s = series[0]
    n = len(models[s].terms)
    most = spec.term_loop.max_terms
    if most is not None and n > most:
        raise MappingError(f"{problem.name}: {s} = {models[s]} has {n} terms, but {arch.name} runs series of at most "
                           f"{most} term(s) (sparse_optimizations.term_loop.max_terms = {most})")
    return s, n


def term_problem(arch: Architecture, problem: Problem) -> Problem:
    """``problem`` as ``arch`` runs it: with a term dim when the design runs a TASD series term
    by term (docs/design.md §4.6), else ``problem`` itself (a single term changes nothing)."""
    if problem.shape is not None and problem.shape.term_dim is not None:
        return problem
    so = series_operand(arch, problem)
    return problem if so is None else problem.with_terms(*so)


def term_level(arch: Architecture) -> int:
    """The level whose temporal loops hold the term loop when a mapping does not place it: the
    design's ``term_loop.level`` (else the outermost level, reusing nothing across terms)."""
    tl = arch.sparse.term_loop if arch.sparse is not None else None
    return 0 if tl is None or tl.level is None else arch.level_index(tl.level)


def insert_term_loop(arch: Architecture, problem: Problem, batch: Any) -> Any:
    """``batch`` (a :class:`~tasder.hw.mapping.MappingBatch` over ``problem``'s dims less its term
    dim) with the term loop placed as the design places it: among :func:`term_level`'s temporal
    loops, innermost there when ``term_loop.innermost`` (the TASD paper's Fig. 11), outermost
    elsewhere (factor 1). ``batch`` itself when it has the term dim or the problem has none."""
    from tasder.hw.mapping import MappingBatch, MappingError

    shape = problem.shape
    assert shape is not None
    td = shape.term_dim
    if td is None or td in batch.dims:
        return batch
    base = tuple(d for d in problem.dims if d != td)
    if tuple(batch.dims) != base:
        raise MappingError(f"the mappings' dims ({', '.join(batch.dims)}) are not the dims of {problem.name} "
                           f"({', '.join(base)}, and its term dim {td})")
    tix = shape.term_index
    assert tix == 0  # with_term_dim puts the term dim first
    lvl = term_level(arch)
    tf = np.insert(batch.temporal, 0, 1, axis=2)
    tf[:, lvl, 0] = problem.terms
    sf = np.insert(batch.spatial, 0, 1, axis=2)
    shifted = batch.order + 1
    zero = np.zeros((*shifted.shape[:2], 1), dtype=shifted.dtype)
    order = np.concatenate([zero, shifted], axis=2)
    tl = arch.sparse.term_loop if arch.sparse is not None else None
    if tl is not None and tl.innermost:
        order[:, lvl] = np.concatenate([shifted[:, lvl], zero[:, lvl]], axis=1)
    return MappingBatch(temporal=tf, spatial=sf, order=order, dims=problem.dims)


def compressed_need(arch: Architecture, problem: Problem, ext: np.ndarray, q: float = 0.99) -> np.ndarray | None:
    """(B, L) words each level needs at occupancy quantile ``q`` with its formats (None = all dense).

    A series run term by term (a term dim) holds at each level the terms its tile spans: all of
    them (their words add) where the term loop is at or below the level, one at a time (the largest
    one's need) below it. ``ext`` without the term dim (a problem given without it) places the term
    loop as :func:`insert_term_loop` does."""
    spec = arch.sparse
    if spec is None or not spec.formats:
        return None
    shape = problem.shape
    assert shape is not None
    if shape.term_dim is None:
        tp = term_problem(arch, problem)
        if tp is not problem:
            t_ext = np.ones((*ext.shape[:2], 1))
            t_ext[:, : term_level(arch) + 1] = tp.terms
            ext = np.concatenate([t_ext, ext], axis=2)
            problem, shape = tp, tp.shape
            assert shape is not None
    models, active = executed_models(arch, problem)
    tix = shape.term_index
    need = np.zeros(ext.shape[:2])
    for i, lv in enumerate(arch.levels):
        for t in lv.keep:
            e = ext[:, i]
            fmt = spec.formats.get((lv.name, t))
            if t == "Z" or fmt is None or not active[t]:
                need[:, i] += shape.footprint(e, _TENSORS.index(t))
                continue
            rows, k = _tile(problem, e, t)
            if tix is not None and shape.rel[_TENSORS.index(t), tix]:
                words = np.array([np.add(*fmt.tile_words(m, rows, k, lv.word_bits, q)) for m in models[t].terms])
                need[:, i] += np.where(e[:, tix] > 1, words.sum(axis=0), words.max(axis=0))
            else:
                need[:, i] += np.add(*fmt.tile_words(models[t], rows, k, lv.word_bits, q))
    return need


def _one_pass(arch: Architecture, problem: Problem, spec: SparseSpec, counts: ActionCounts,
              models: dict[str, DensityModel], active: dict[str, bool],
              whole: DensityModel | None = None) -> dict[str, np.ndarray]:
    """Actual/gated/skipped/metadata words of one pass (one set of operand models).

    With a term dim, ``models`` holds one term of the series operand and ``whole`` the series: a
    leader tile that spans the term loop (a tile resident across it) is empty only when every
    term is there (the series' model), one inside it when this term is."""
    nb, nl = counts.reads.shape[:2]
    ext = counts.extents
    shape = problem.shape
    assert shape is not None
    tix = shape.term_index
    words = np.stack([counts.reads, counts.fills, counts.updates], axis=-1)  # (B, L, 3, 3)
    names = [lv.name for lv in arch.levels]
    # Per-level elimination fractions of each target. Per leader, a level eliminates what it or any
    # level above eliminates (propagation); leaders combine as independent events; gating only
    # counts what skipping left.
    skip_lv = np.zeros((nb, nl, 3))
    gate_lv = np.zeros((nb, nl, 3))
    for ti, t in enumerate(_TENSORS):
        keep_skip, keep_any = np.ones((nb, nl)), np.ones((nb, nl))
        for s in ("A", "B"):
            safs = [saf for saf in spec.safs if saf.target == t and s in saf.condition_on and saf.level in names
                    and (saf.kind == "gating" or active[s])]
            if not safs:
                continue
            p = {"skipping": np.zeros((nb, nl)), "gating": np.zeros((nb, nl))}
            for saf in safs:
                i = names.index(saf.level)
                if saf.granularity is None:
                    # The leader region one read of t meets below (its reuse in the child, thesis 4.6.4).
                    region = counts.co_extents[:, i, ti] if counts.co_extents is not None else ext[:, i + 1]
                    rows, k = _tile(problem, region, s)
                    pe = models[s].prob_empty(rows, k)
                    if whole is not None and tix is not None and shape.rel[_TENSORS.index(s), tix]:
                        span = region[:, tix] > 1  # the region spans the terms: every term's tile is in it
                        if span.any():
                            pe = np.where(span, whole.prob_empty(rows, k), pe)
                else:
                    rows, k = np.ones(nb), np.full(nb, float(_granularity(saf.granularity, models[s])))
                    pe = models[s].prob_empty(rows, k)
                p[saf.kind][:, i] = np.maximum(p[saf.kind][:, i], pe)
            p_skip = np.maximum.accumulate(p["skipping"], axis=1)
            p_any = np.maximum(p_skip, np.maximum.accumulate(p["gating"], axis=1))
            keep_skip *= 1.0 - p_skip
            keep_any *= 1.0 - p_any
        skip_lv[:, :, ti] = 1.0 - keep_skip
        gate_lv[:, :, ti] = keep_skip - keep_any
    # Compressed words per dense word (data, metadata) of each level's tiles.
    ratio, meta_ratio = np.ones((nb, nl, 3)), np.zeros((nb, nl, 3))
    for i, lv in enumerate(arch.levels):
        for ti, t in enumerate(_TENSORS):
            fmt = spec.formats.get((lv.name, t)) if t != "Z" and active.get(t, False) else None
            if fmt is not None and t in lv.keep:
                rows, k = _tile(problem, ext[:, i], t)
                data, md = fmt.tile_words(models[t], rows, k, lv.word_bits)
                dense = np.maximum(rows * k, 1.0)
                ratio[:, i, ti], meta_ratio[:, i, ti] = data / dense, md / dense
    # Reads and updates leave/enter through this level's eliminations; fills arrive from the parent
    # (its eliminations). Actions on the last axis: read, fill, update.
    s_fill, g_fill = np.zeros_like(skip_lv), np.zeros_like(gate_lv)
    s_fill[:, 1:], g_fill[:, 1:] = skip_lv[:, :-1], gate_lv[:, :-1]
    s_act = np.stack([skip_lv, s_fill, skip_lv], axis=-1)  # (B, L, 3, 3)
    g_act = np.stack([gate_lv, g_fill, gate_lv], axis=-1)
    # Z tiles drained up to the parent are write-backs, not reads a leader can eliminate: they are
    # counted apart (counts.drains) and pass through unchanged.
    w = words * ratio[..., None]
    actual = w * np.clip(1.0 - s_act - g_act, 0.0, None)
    gated = w * g_act
    skipped = w * s_act
    meta = words * (1.0 - s_act) * meta_ratio[..., None]
    # Compute: a MAC is ineffectual when any listed (active) leader operand is zero.
    lead: dict[str, set[str]] = {"skipping": set(), "gating": set()}
    for saf in spec.safs:
        if saf.level == arch.compute.name:
            lead[saf.kind] |= {s for s in saf.condition_on if active[s] or saf.kind == "gating"}

    def ineffectual(leaders: set[str], gating: set[str]) -> float:
        # Skipping works on positions (a structured slot always runs); gating detects zero values,
        # so it also idles the MACs of the zeros padding a pattern's slots (value_density).
        return 1.0 - math.prod((models[s].value_density if s in gating else 1.0 - float(models[s].prob_empty(1, 1)))
                               for s in leaders)

    mac_skip = np.full(nb, ineffectual(lead["skipping"], set()))
    mac_gate = np.full(nb, ineffectual(lead["skipping"] | lead["gating"], lead["gating"])) - mac_skip
    steps = counts.steps * (1.0 - mac_skip) * _imbalance(problem, spec, counts, models, lead["skipping"])
    drains = counts.drains if counts.drains is not None else np.zeros(counts.reads.shape)
    return {"actual": actual, "gated": gated, "skipped": skipped, "metadata": meta, "drains": drains.copy(),
            "macs": counts.macs * (1.0 - mac_skip - mac_gate), "mac_gated": counts.macs * mac_gate,
            "mac_skipped": counts.macs * mac_skip, "steps": steps}


def _imbalance(problem: Problem, spec: SparseSpec, counts: ActionCounts, models: dict[str, DensityModel],
               leaders: set[str]) -> np.ndarray:
    """(B,) factor ≥ 1 on the compute steps of skipping unstructured leaders (position-space tiling).

    A structured engine's skips are deterministic: every block holds exactly G nonzeros, so the
    MACs stay in lock step (:func:`engine_pattern`). Skipping any other leader (DSTC's unstructured
    operands, thesis 4.9.1 / 6.4.2: "not all compute units are active") deals the nonzeros of the
    innermost storage tile out among the MACs in position space, as the Sparseloop artifact models
    DSTC (position-skipping over the exact spatial fan-out): along each spatial dim ``d`` only that
    leader indexes (M for A; N, and a convolution's P, Q for B), a fiber of the innermost tile
    (extent ``L``) with ``X`` nonzeros over ``s`` lanes takes ``ceil(X / s)`` steps instead of the
    ideal ``X / s``. Along the reduction dims (K; C, R, S), when spatial, the lanes hold the
    effectual pairs of all such leaders (independent, so binomial at the product of their
    densities). The factor is E[steps] / (ideal steps) per dim, multiplied over dims.
    """
    nb = len(counts.steps)
    out = np.ones(nb)
    imb = sorted(s for s in leaders if s not in spec.structured_support and models[s].density < 1.0)
    if not imb or counts.spatial is None or counts.extents is None:
        return out
    shape = problem.shape
    assert shape is not None
    lanes = counts.spatial[:, -1].astype(np.float64)  # (B, D) fan-out from the innermost level to the MACs
    ext = counts.extents[:, -2]  # (B, D) the innermost level's tile extents
    rel = shape.rel
    for s in imb:
        si, other = _TENSORS.index(s), 1 - _TENSORS.index(s)
        for d in np.flatnonzero(rel[si] & ~rel[other]):
            n, length = lanes[:, d], ext[:, d]
            on = n > 1
            if on.any():
                steps = models[s].expected_steps(length[on], np.ones(int(on.sum())), n[on])
                out[on] *= steps * n[on] / (length[on] * models[s].density)
    red = np.flatnonzero(rel[0] & rel[1])  # the reduction dims both operands index
    n, length = np.prod(lanes[:, red], axis=1), np.prod(ext[:, red], axis=1)
    on = n > 1
    if on.any():
        joint = imb[0] if len(imb) == 1 else None
        density = math.prod(models[s].density for s in imb)
        model = models[joint] if joint is not None else UniformModel(density)
        steps = model.expected_steps(np.ones(int(on.sum())), length[on], n[on])
        out[on] *= steps * n[on] / (length[on] * density)
    return out


def sparse_step(arch: Architecture, problem: Problem, counts: ActionCounts) -> ActionCounts:
    """Filter dense counts through the design's SAFs for the problem's operand densities (see module doc).

    A problem with a term dim (:func:`term_problem`) has counts over every term: each term's pass
    filters them with that term's model and the passes are averaged (every term is one iteration
    of the term loop, so each action's dense words split evenly over the terms)."""
    spec: SparseSpec | None = getattr(arch, "sparse", None)
    if spec is None or counts.extents is None:
        return counts
    models, active = executed_models(arch, problem)
    shape = problem.shape
    assert shape is not None
    if shape.term_dim is None and spec.term_loop is not None and series_operand(arch, problem) is not None:
        raise ValueError(f"{problem.name}: {arch.name} runs its TASD series term by term; analyse "
                         f"term_problem(arch, problem) (the problem with its term loop), as evaluate_batch does")
    if shape.term_dim is not None:
        s = "A" if shape.rel[0, shape.term_index] else "B"
        whole = models[s]
        terms = whole.terms
        if len(terms) != problem.terms:
            raise ValueError(f"{problem.name}: {s} = {whole} has {len(terms)} term(s) on {arch.name} but the term "
                             f"dim has bound {problem.terms}")
        passes = [_one_pass(arch, problem, spec, counts, {**models, s: term}, active, whole) for term in terms]
        out = {k: sum(p[k] for p in passes) / len(passes) for k in passes[0]}
    else:
        out = _one_pass(arch, problem, spec, counts, models, active)
    extra = out["macs"] * spec.accumulation_energy
    if spec.tasd_unit_energy and active["B"] and models["B"].structured:
        # TASD-A: the TASD units decompose each element of B once, as the previous layer's outputs
        # stream past them into shared memory (TASD paper §4.4); refills of B read the stored terms.
        extra = extra + float(problem.without_terms().tensor_size("B")) * spec.tasd_unit_energy
    dense = np.stack([counts.reads, counts.fills, counts.updates], axis=-1)
    return replace(counts, reads=out["actual"][..., 0], fills=out["actual"][..., 1], updates=out["actual"][..., 2],
                   gated=out["gated"], skipped=out["skipped"], metadata=out["metadata"], drains=out["drains"],
                   algorithmic=dense, macs=out["macs"], mac_gated=out["mac_gated"], mac_skipped=out["mac_skipped"],
                   steps=out["steps"], extra_energy=extra, dense_macs=counts.macs)
