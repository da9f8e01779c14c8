"""Mappings: per storage level, temporal loop factors with a loop order, and spatial factors.

The loop nest, outermost first, is: level 0's temporal loops (in its ``order``), level 0's
spatial loops (across the fan-out to level 1), level 1's temporal loops, …, the last level's
spatial loops (across the MACs). The tile an instance of level ``i`` holds covers every loop
at level ``i`` and below. A batch of mappings is three integer arrays
(:class:`MappingBatch`), which is what the vectorized dataflow analysis consumes.
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
from tasder.hw.workload import DIMS, TENSOR_DIMS, Problem

__all__ = ["ORDERS", "LevelMapping", "Mapping", "MappingBatch", "MappingError", "check_mapping", "load_mapping",
           "loop_nest"]

#: Every loop order of the three dims, outermost first ("MKN" = for m: for k: for n).
ORDERS: tuple[str, ...] = tuple("".join(p) for p in permutations(DIMS))


class MappingError(TasderError, ValueError):
    """A mapping that is not valid for an architecture and a problem; the message names the level and dim."""


def _factors(value: Any, what: str) -> tuple[int, int, int]:
    if isinstance(value, dict):
        unknown = set(value) - set(DIMS)
        if unknown:
            raise MappingError(f"{what}: unknown dim(s) {sorted(unknown)}; dims are {', '.join(DIMS)}")
        value = tuple(value.get(d, 1) for d in DIMS)
    out = tuple(value)
    if len(out) != 3 or any(isinstance(f, bool) or not isinstance(f, (int, np.integer)) or f < 1 for f in out):
        raise MappingError(f"{what}: factors must be 3 positive integers (M, K, N); got {value!r}")
    return tuple(int(f) for f in out)  # type: ignore[return-value]


@dataclass(frozen=True)
class LevelMapping:
    """Loops at one storage level: ``temporal``/``spatial`` factors in (M, K, N), ``order`` outer→inner."""

    temporal: tuple[int, int, int] = (1, 1, 1)
    order: str = "MKN"
    spatial: tuple[int, int, int] = (1, 1, 1)

    def __post_init__(self) -> None:
        object.__setattr__(self, "temporal", _factors(self.temporal, "temporal"))
        object.__setattr__(self, "spatial", _factors(self.spatial, "spatial"))
        if self.order not in ORDERS:
            raise MappingError(f"order {self.order!r} must be a permutation of M, K, N (one of {', '.join(ORDERS)})")


@dataclass(frozen=True)
class Mapping:
    """One :class:`LevelMapping` per storage level, outermost first."""

    levels: tuple[LevelMapping, ...]

    @classmethod
    def from_levels(cls, levels: list[dict[str, Any]]) -> Mapping:
        """From plain data: ``[{"temporal": {"M": 4}, "order": "KMN", "spatial": {"N": 2}}, ...]``."""
        return cls(tuple(LevelMapping(_factors(lv.get("temporal", {}), "temporal"), lv.get("order", "MKN"),
                                      _factors(lv.get("spatial", {}), "spatial")) for lv in levels))

    def to_batch(self) -> MappingBatch:
        return MappingBatch(
            temporal=np.array([[lv.temporal for lv in self.levels]], dtype=np.int64),
            spatial=np.array([[lv.spatial for lv in self.levels]], dtype=np.int64),
            order=np.array([[[DIMS.index(d) for d in lv.order] for lv in self.levels]], dtype=np.int64),
        )


@dataclass(frozen=True)
class MappingBatch:
    """``B`` mappings as arrays: ``temporal``/``spatial`` (B, L, 3) factors in DIMS order, ``order``
    (B, L, 3) the dim index of each temporal loop at each level, outermost first."""

    temporal: np.ndarray
    spatial: np.ndarray
    order: np.ndarray

    def __len__(self) -> int:
        return int(self.temporal.shape[0])

    def take(self, idx: np.ndarray | list[int] | int) -> MappingBatch:
        idx = np.atleast_1d(np.asarray(idx))
        return MappingBatch(self.temporal[idx], self.spatial[idx], self.order[idx])

    def mapping(self, b: int) -> Mapping:
        """The ``b``-th mapping as a :class:`Mapping`."""
        return Mapping(tuple(
            LevelMapping(tuple(int(x) for x in self.temporal[b, i]), "".join(DIMS[j] for j in self.order[b, i]),
                         tuple(int(x) for x in self.spatial[b, i]))
            for i in range(self.temporal.shape[1])))


def tile_words(arch: Architecture, mapping: Mapping) -> list[dict[str, int]]:
    """Words of each kept tensor's tile per instance, per storage level (a scalar helper)."""
    out = []
    for i, level in enumerate(arch.levels):
        dims = {d: 1 for d in DIMS}
        for lv in mapping.levels[i:]:
            for j, d in enumerate(DIMS):
                dims[d] *= lv.temporal[j] * lv.spatial[j]
        sizes = {}
        for t in level.keep:
            sizes[t] = int(np.prod([dims[d] for d in TENSOR_DIMS[t]]))
        out.append(sizes)
    return out


def check_mapping(arch: Architecture, problem: Problem, mapping: Mapping) -> None:
    """Raise :class:`MappingError` unless ``mapping`` is valid: one entry per level, factors that
    multiply to the problem size, spatial factors within each fan-out, tiles within each capacity.

    A tile that overflows is rejected, never clipped: the model would otherwise report traffic
    for a buffer that does not exist.
    """
    if len(mapping.levels) != len(arch.levels):
        raise MappingError(f"the mapping has {len(mapping.levels)} level(s) but architecture {arch.name!r} has "
                           f"{len(arch.levels)} storage level(s): {', '.join(lv.name for lv in arch.levels)}")
    for j, d in enumerate(DIMS):
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
            factors = dict(zip(DIMS, lv.spatial, strict=True))
            raise MappingError(f"level {arch.levels[i].name}: spatial factors {factors} "
                               f"use {used} instances but the fan-out to {below} is {fan}")
    for level, sizes in zip(arch.levels, tile_words(arch, mapping), strict=True):
        if level.capacity is not None and sum(sizes.values()) > level.capacity:
            detail = ", ".join(f"{t}={n}" for t, n in sizes.items())
            raise MappingError(f"level {level.name}: the tiles need {sum(sizes.values())} words ({detail}) but the "
                               f"capacity is {level.capacity} words")


def loop_nest(arch: Architecture, problem: Problem, mapping: Mapping) -> str:
    """The mapping as an indented loop nest (loops with factor 1 are left out), for reports."""
    lines = []
    depth = 0
    for level, lv in zip(arch.levels, mapping.levels, strict=True):
        lines.append(f"{'  ' * depth}[{level.name}] keeps {','.join(level.keep) or '-'}")
        for d in lv.order:
            f = lv.temporal[DIMS.index(d)]
            if f > 1:
                lines.append(f"{'  ' * depth}for {d.lower()} in [0:{f})")
                depth += 1
        for j, d in enumerate(DIMS):
            if lv.spatial[j] > 1:
                lines.append(f"{'  ' * depth}parallel-for {d.lower()} in [0:{lv.spatial[j]})")
                depth += 1
    lines.append(f"{'  ' * depth}{arch.compute.name}: Z[m,n] += A[m,k]·B[k,n]")
    return "\n".join(lines)




def load_mapping(path: str | Path, arch: Architecture) -> Mapping:
    """A mapping YAML for ``arch``: one entry per storage level, keyed by level name (levels not
    listed get no loops)::

        version: 0.1
        mapping:
          DRAM: {temporal: {M: 4}, order: KMN}
          Buffer: {temporal: {K: 8, N: 2}, order: MNK, spatial: {M: 2}}

    Raises:
        SpecError: unknown levels/keys/dims or non-integer factors, with file, line and key.
    """
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
                raise SpecError(f"{entry.where(key)}: mapping.{lv.name}.{key} must map dims (M, K, N) to factors")
            check_keys(factors, DIMS)
            for d, f in factors.items():
                if isinstance(f, bool) or not isinstance(f, int) or f < 1:
                    raise SpecError(f"{factors.where(d)}: mapping.{lv.name}.{key}.{d} must be an integer ≥ 1; "
                                    f"got {f!r}")
        order = get_str(entry, "order", "MKN", choices=ORDERS)
        levels.append(LevelMapping(_factors(entry.get("temporal") or {}, "temporal"), order,
                                   _factors(entry.get("spatial") or {}, "spatial")))
    return Mapping(tuple(levels))
