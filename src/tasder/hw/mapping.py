"""Mappings: per storage level, temporal loop factors with a loop order, and spatial factors.

The loop nest, outermost first, is: level 0's temporal loops (in its ``order``), level 0's
spatial loops (across the fan-out to level 1), level 1's temporal loops, …, the last level's
spatial loops (across the MACs). The tile an instance of level ``i`` holds covers every loop
at level ``i`` and below. Factors are per dim of the problem (``Mapping.dims``: M, K, N for a
GEMM, R, S, P, Q, C, M, N for a convolution), in that order. A batch of mappings is three integer
arrays (:class:`MappingBatch`), which is what the vectorized dataflow analysis consumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations
from pathlib import Path
from typing import Any

import numpy as np

from tasder.errors import TasderError
from tasder.hw.architecture import Architecture
from tasder.hw.spec import SpecError, check_keys, get_str, load_section
from tasder.hw.workload import DIMS, TENSORS, Problem

__all__ = ["ORDERS", "LevelMapping", "Mapping", "MappingBatch", "MappingError", "check_mapping", "load_mapping",
           "loop_nest", "tile_words"]

#: Every loop order of the GEMM's three dims, outermost first ("MKN" = for m: for k: for n).
ORDERS: tuple[str, ...] = tuple("".join(p) for p in permutations(DIMS))


class MappingError(TasderError, ValueError):
    """A mapping that is not valid for an architecture and a problem; the message names the level and dim."""


def _factors(value: Any, what: str, dims: tuple[str, ...] = DIMS) -> tuple[int, ...]:
    """Factors per dim from a mapping ``{dim: factor}`` (missing dims are 1) or a sequence in ``dims`` order."""
    if isinstance(value, dict):
        unknown = [d for d in value if d not in dims]
        if unknown:
            raise MappingError(f"{what}: unknown dim {unknown[0]!r}; dims are {', '.join(dims)}")
        value = tuple(value.get(d, 1) for d in dims)
    out = tuple(value)
    if len(out) != len(dims) or any(isinstance(f, bool) or not isinstance(f, (int, np.integer)) or f < 1
                                    for f in out):
        raise MappingError(f"{what}: factors must be {len(dims)} positive integers ({', '.join(dims)}); "
                           f"got {value!r}")
    return tuple(int(f) for f in out)


def _check_order(order: Any, dims: tuple[str, ...], what: str) -> str:
    if not isinstance(order, str):
        raise MappingError(f"{what}: order must be a string of dims, outermost first; got {order!r}")
    unknown = [d for d in order if d not in dims]
    if unknown:
        raise MappingError(f"{what}: order {order!r} names the unknown dim {unknown[0]!r}; dims are {', '.join(dims)}")
    missing = [d for d in dims if d not in order]
    if missing or len(order) != len(dims):
        extra = f"misses the dim {missing[0]!r}" if missing else "repeats a dim"
        raise MappingError(f"{what}: order {order!r} {extra}; it must be a permutation of {''.join(dims)} "
                           f"(outermost first)")
    return order


@dataclass(frozen=True)
class LevelMapping:
    """Loops at one storage level: ``temporal``/``spatial`` factors per dim (in the mapping's dims
    order), ``order`` the temporal loops outer→inner. The defaults are a GEMM's."""

    temporal: tuple[int, ...] = (1, 1, 1)
    order: str = "MKN"
    spatial: tuple[int, ...] = (1, 1, 1)

    def __post_init__(self) -> None:
        if isinstance(self.temporal, dict) or isinstance(self.spatial, dict):
            raise MappingError("LevelMapping factors are tuples in the mapping's dims order; build from "
                               "{dim: factor} mappings with Mapping.from_levels")
        object.__setattr__(self, "temporal", self._ints(self.temporal, "temporal"))
        object.__setattr__(self, "spatial", self._ints(self.spatial, "spatial"))
        if len(self.temporal) != len(self.spatial):
            raise MappingError(f"temporal factors {self.temporal} and spatial factors {self.spatial} differ in length")
        if not isinstance(self.order, str) or len(self.order) != len(self.temporal) or \
                len(set(self.order)) != len(self.order):
            raise MappingError(f"order {self.order!r} must name each of the level's {len(self.temporal)} dims once "
                               f"(outermost first)")

    @staticmethod
    def _ints(value: Any, what: str) -> tuple[int, ...]:
        out = tuple(value)
        if not out or any(isinstance(f, bool) or not isinstance(f, (int, np.integer)) or f < 1 for f in out):
            raise MappingError(f"{what}: factors must be positive integers; got {value!r}")
        return tuple(int(f) for f in out)


@dataclass(frozen=True)
class Mapping:
    """One :class:`LevelMapping` per storage level, outermost first; factors per dim of ``dims``."""

    levels: tuple[LevelMapping, ...]
    dims: tuple[str, ...] = DIMS

    def __post_init__(self) -> None:
        object.__setattr__(self, "dims", tuple(self.dims))
        for i, lv in enumerate(self.levels):
            if len(lv.temporal) != len(self.dims):
                raise MappingError(f"mapping level {i}: {len(lv.temporal)} factors for the {len(self.dims)} dims "
                                   f"{', '.join(self.dims)}")
            _check_order(lv.order, self.dims, f"mapping level {i}")

    @classmethod
    def from_levels(cls, levels: list[dict[str, Any]], dims: tuple[str, ...] = DIMS) -> Mapping:
        """From plain data: ``[{"temporal": {"M": 4}, "order": "KMN", "spatial": {"N": 2}}, ...]``
        (a missing order is ``dims`` in order; missing factors are 1)."""
        dims = tuple(dims)
        return cls(tuple(LevelMapping(_factors(lv.get("temporal", {}), "temporal", dims),
                                      _check_order(lv.get("order", "".join(dims)), dims, f"level {i}"),
                                      _factors(lv.get("spatial", {}), "spatial", dims))
                         for i, lv in enumerate(levels)), dims)

    def to_batch(self) -> MappingBatch:
        return MappingBatch(
            temporal=np.array([[lv.temporal for lv in self.levels]], dtype=np.int64),
            spatial=np.array([[lv.spatial for lv in self.levels]], dtype=np.int64),
            order=np.array([[[self.dims.index(d) for d in lv.order] for lv in self.levels]], dtype=np.int64),
            dims=self.dims,
        )

    def factors(self, level: int, kind: str = "temporal") -> dict[str, int]:
        """``{dim: factor}`` of one level (``kind`` temporal or spatial)."""
        lv = self.levels[level]
        return dict(zip(self.dims, lv.temporal if kind == "temporal" else lv.spatial, strict=True))


@dataclass(frozen=True)
class MappingBatch:
    """``B`` mappings as arrays: ``temporal``/``spatial`` (B, L, D) factors in ``dims`` order,
    ``order`` (B, L, D) the dim index of each temporal loop at each level, outermost first."""

    temporal: np.ndarray
    spatial: np.ndarray
    order: np.ndarray
    dims: tuple[str, ...] = DIMS

    def __len__(self) -> int:
        return int(self.temporal.shape[0])

    def take(self, idx: np.ndarray | list[int] | int) -> MappingBatch:
        idx = np.atleast_1d(np.asarray(idx))
        return MappingBatch(self.temporal[idx], self.spatial[idx], self.order[idx], self.dims)

    def mapping(self, b: int) -> Mapping:
        """The ``b``-th mapping as a :class:`Mapping`."""
        return Mapping(tuple(
            LevelMapping(tuple(int(x) for x in self.temporal[b, i]), "".join(self.dims[j] for j in self.order[b, i]),
                         tuple(int(x) for x in self.spatial[b, i]))
            for i in range(self.temporal.shape[1])), self.dims)


def _check_dims(problem: Problem, dims: tuple[str, ...]) -> None:
    if tuple(dims) != problem.dims:
        raise MappingError(f"the mapping's dims ({', '.join(dims)}) are not the dims of {problem.name} "
                           f"({', '.join(problem.dims)})")


def tile_words(arch: Architecture, mapping: Mapping, problem: Problem | None = None) -> list[dict[str, int]]:
    """Words of each kept tensor's tile per instance, per storage level (a scalar helper); the
    footprints follow ``problem``'s projections (a GEMM's when None)."""
    shape = problem.shape if problem is not None else None
    from tasder.hw.workload import GEMM

    shape = shape or GEMM
    out = []
    for i, level in enumerate(arch.levels):
        ext = np.ones(len(mapping.dims))
        for lv in mapping.levels[i:]:
            ext *= np.array(lv.temporal, dtype=np.float64) * np.array(lv.spatial, dtype=np.float64)
        out.append({t: int(shape.footprint(ext, TENSORS.index(t))) for t in level.keep})
    return out


def check_mapping(arch: Architecture, problem: Problem, mapping: Mapping) -> None:
    """Raise :class:`MappingError` unless ``mapping`` is valid: one entry per level, the problem's
    dims, factors that multiply to each bound, spatial factors within each fan-out, tiles within
    each capacity.

    A tile that overflows is rejected, never clipped: the model would otherwise report traffic
    for a buffer that does not exist.
    """
    if len(mapping.levels) != len(arch.levels):
        raise MappingError(f"the mapping has {len(mapping.levels)} level(s) but architecture {arch.name!r} has "
                           f"{len(arch.levels)} storage level(s): {', '.join(lv.name for lv in arch.levels)}")
    _check_dims(problem, mapping.dims)
    for j, d in enumerate(mapping.dims):
        product = 1
        for lv in mapping.levels:
            product *= lv.temporal[j] * lv.spatial[j]
        if product != problem.sizes[j]:
            parts = " · ".join(f"{arch.levels[i].name}:{lv.temporal[j]}×{lv.spatial[j]}"
                               for i, lv in enumerate(mapping.levels))
            raise MappingError(f"dim {d}: the factors multiply to {product} but {problem.name} has {d}="
                               f"{problem.sizes[j]} (temporal×spatial per level: {parts})")
    for i, (lv, fan) in enumerate(zip(mapping.levels, arch.fanouts, strict=True)):
        used = int(np.prod(lv.spatial))
        if used > fan:
            below = arch.levels[i + 1].name if i + 1 < len(arch.levels) else arch.compute.name
            factors = {d: f for d, f in zip(mapping.dims, lv.spatial, strict=True) if f > 1}
            raise MappingError(f"level {arch.levels[i].name}: spatial factors {factors} "
                               f"use {used} instances but the fan-out to {below} is {fan}")
    for level, sizes in zip(arch.levels, tile_words(arch, mapping, problem), strict=True):
        if level.capacity is not None and sum(sizes.values()) > level.capacity:
            detail = ", ".join(f"{t}={n}" for t, n in sizes.items())
            raise MappingError(f"level {level.name}: the tiles need {sum(sizes.values())} words ({detail}) but the "
                               f"capacity is {level.capacity} words")


def loop_nest(arch: Architecture, problem: Problem, mapping: Mapping) -> str:
    """The mapping as an indented loop nest (loops with factor 1 are left out), for reports."""
    lines = []
    depth = 0
    dims = mapping.dims
    for level, lv in zip(arch.levels, mapping.levels, strict=True):
        lines.append(f"{'  ' * depth}[{level.name}] keeps {','.join(level.keep) or '-'}")
        for d in lv.order:
            f = lv.temporal[dims.index(d)]
            if f > 1:
                lines.append(f"{'  ' * depth}for {d.lower()} in [0:{f})")
                depth += 1
        for j, d in enumerate(dims):
            if lv.spatial[j] > 1:
                lines.append(f"{'  ' * depth}parallel-for {d.lower()} in [0:{lv.spatial[j]})")
                depth += 1
    shape = problem.shape
    assert shape is not None
    a, b, z = (shape.index_text(t) for t in range(3))
    lines.append(f"{'  ' * depth}{arch.compute.name}: {z} += {a}·{b}")
    return "\n".join(lines)


def load_mapping(path: str | Path, arch: Architecture, problem: Problem | None = None) -> Mapping:
    """A mapping YAML for ``arch`` (and ``problem``'s dims; a GEMM's M, K, N when None): one entry
    per storage level, keyed by level name (levels not listed get no loops)::

        version: 0.1
        mapping:
          DRAM: {temporal: {M: 4}, order: KMN}
          Buffer: {temporal: {K: 8, N: 2}, order: MNK, spatial: {M: 2}}

    ``order`` lists every dim, outermost first (default: the dims in the problem's order).

    Raises:
        SpecError: unknown levels/keys/dims, an order that misses a dim, or non-integer factors,
            with file, line and key.
    """
    dims = problem.dims if problem is not None else DIMS
    _, body = load_section(path, "mapping", what="of level name → loops")
    check_keys(body, [lv.name for lv in arch.levels])
    levels = []
    for lv in arch.levels:
        entry = body.get(lv.name) or {}
        if not isinstance(entry, dict):
            raise SpecError(f"{body.where(lv.name)}: mapping.{lv.name} must be a mapping")
        check_keys(entry, ("temporal", "order", "spatial"))
        for key in ("temporal", "spatial"):
            factors = entry.get(key) or {}
            if not isinstance(factors, dict):
                raise SpecError(f"{entry.where(key)}: mapping.{lv.name}.{key} must map dims ({', '.join(dims)}) to "
                                f"factors")
            check_keys(factors, dims)
            for d, f in factors.items():
                if isinstance(f, bool) or not isinstance(f, int) or f < 1:
                    raise SpecError(f"{factors.where(d)}: mapping.{lv.name}.{key}.{d} must be an integer ≥ 1; "
                                    f"got {f!r}")
        order = get_str(entry, "order", "".join(dims))
        try:
            _check_order(order, dims, f"mapping.{lv.name}")
        except MappingError as exc:
            raise SpecError(f"{entry.where('order')}: {exc}") from None
        levels.append(LevelMapping(_factors(entry.get("temporal") or {}, "temporal", dims), order,
                                   _factors(entry.get("spatial") or {}, "spatial", dims)))
    return Mapping(tuple(levels), dims)
