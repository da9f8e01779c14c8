"""Representation formats (Sparseloop's per-rank formats, thesis ch. 3.2 / 4.6): data + metadata size of a tile.

A tile of an operand is ``rows`` fibers of ``k`` elements along K (see :mod:`tasder.hw.density`).
A format lists one entry per rank, outermost first; one entry describes the K rank only (the
row rank uncompressed), two entries describe [row rank, K rank]:

* ``U`` — uncompressed: every element stored, no metadata;
* ``B`` — bitmask: one bit per element position, nonzeros only;
* ``CP`` — coordinate/payload: a coordinate per nonzero of ``ceil(log2 k)`` bits; ``CP:2`` fixes
  the coordinate width (STC's 2-bit index within a 4-block);
* ``RLE`` — run length: a run (zeros skipped) per nonzero of ``ceil(log2 k)`` bits (``RLE:4``
  fixes it);
* ``UOP`` — offset pairs: ``fibers + 1`` offsets of ``ceil(log2(size + 1))`` bits (the row rank of
  CSR, ``[UOP, CP]``).

Why: the compressed tile size decides both the traffic (data + metadata words moved) and whether
a tile fits (capacity is checked at a high percentile of occupancy). A compressed K rank stores
nonzeros only; on dense data a bitmask still costs its bits — the "sparsity tax".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tasder.hw.density import DensityModel

__all__ = ["FORMATS", "Format", "RankFormat", "parse_format"]

#: Rank formats understood by :func:`parse_format`.
FORMATS: tuple[str, ...] = ("U", "B", "CP", "RLE", "UOP")


@dataclass(frozen=True)
class RankFormat:
    """One rank's format; ``bits`` overrides the coordinate/run width (None = derived from the shape)."""

    kind: str
    bits: int | None = None

    def __str__(self) -> str:
        return self.kind if self.bits is None else f"{self.kind}:{self.bits}"


def _log2(x: np.ndarray) -> np.ndarray:
    return np.maximum(1.0, np.ceil(np.log2(np.maximum(x, 2.0))))


@dataclass(frozen=True)
class Format:
    """A tensor's format at one level: ranks outermost first (one or two entries)."""

    ranks: tuple[RankFormat, ...]

    @property
    def compressed(self) -> bool:
        """True when zeros are not stored (the K rank is not ``U``)."""
        return self.ranks[-1].kind != "U"

    def __str__(self) -> str:
        return "[" + ", ".join(str(r) for r in self.ranks) + "]"

    def metadata_bits(self, rows: np.ndarray, k: np.ndarray, occ: np.ndarray, nonempty_rows: np.ndarray) -> np.ndarray:
        """Metadata bits of one tile holding ``occ`` nonzeros in ``nonempty_rows`` non-empty fibers."""
        size = rows * k
        inner = self.ranks[-1]
        w_inner = _log2(k) if inner.bits is None else np.full_like(k, float(inner.bits))
        # Only the rank's own kind is computed (the mapper calls this per sampled factor).
        rules: dict[str, Any] = {"U": lambda: np.zeros_like(occ), "B": lambda: size.astype(np.float64),
                                 "CP": lambda: occ * w_inner, "RLE": lambda: occ * w_inner,
                                 "UOP": lambda: (rows + 1) * _log2(size + 1)}
        bits = rules[inner.kind]()
        if len(self.ranks) == 2:
            outer = self.ranks[0]
            w_outer = _log2(rows) if outer.bits is None else np.full_like(rows, float(outer.bits))
            rules = {"U": lambda: np.zeros_like(occ), "B": lambda: rows.astype(np.float64),
                     "CP": lambda: nonempty_rows * w_outer, "RLE": lambda: nonempty_rows * w_outer,
                     "UOP": lambda: (rows + 1) * _log2(size + 1)}
            bits = bits + rules[outer.kind]()
        return bits

    def tile_words(self, model: DensityModel, rows: np.ndarray, k: np.ndarray, word_bits: int,
                   q: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(data words, metadata words) of a tile: expected values, or at quantile ``q`` for capacity checks."""
        rows = np.asarray(rows, dtype=np.float64)
        k = np.asarray(k, dtype=np.float64)
        if not self.compressed:
            data = rows * k
            occ = model.expected_occupancy(rows, k) if q is None else model.occupancy_quantile(rows, k, q)
        else:
            occ = model.expected_occupancy(rows, k) if q is None else model.occupancy_quantile(rows, k, q)
            data = occ
        # Non-empty fibers matter only to a row rank's metadata (a two-rank format): skip the odds otherwise.
        nonempty = rows * (1.0 - model.prob_empty(np.ones_like(rows), k)) if len(self.ranks) == 2 else rows
        return data, self.metadata_bits(rows, k, occ, nonempty) / word_bits


def parse_format(value: str | list[str] | tuple[str, ...]) -> Format:
    """``"CP"``, ``"CP:2"``, ``["UOP", "CP"]`` → :class:`Format` (ValueError naming the allowed kinds)."""
    items = [value] if isinstance(value, str) else list(value)
    if not 1 <= len(items) <= 2:
        raise ValueError(f"a format lists 1 or 2 ranks (outermost first); got {value!r}")
    ranks = []
    for item in items:
        kind, _, bits = str(item).partition(":")
        kind = kind.strip().upper()
        if kind not in FORMATS:
            raise ValueError(f"unknown rank format {item!r}; formats are {', '.join(FORMATS)} "
                             f"(CP/RLE may fix their width, e.g. CP:2)")
        if bits and (not bits.isdigit() or int(bits) < 1):
            raise ValueError(f"rank format {item!r}: the width after ':' must be a positive integer")
        ranks.append(RankFormat(kind, int(bits) if bits else None))
    return Format(tuple(ranks))
