"""Parse the pattern notations users type; ``str(parsed)`` gives the canonical form back.

Accepted notations (whitespace is ignored, case too for the keywords):

=====================================  =============================================
``2:4``                                G:H on one rank (N:M)
``dense``                              keep everything
``unstructured(0.2)``                  keep the largest 20 % anywhere
``K1(3:4)->K0(2:4)``                   HSS, highest rank first; rank names free-form
``3:4->2:4``                           HSS without rank names
``2:8+1:8``, ``2:4+2:8+2:16``          a TASD series (terms joined by ``+``)
=====================================  =============================================

Parsing is cached: a notation string is parsed once per process.
"""

from __future__ import annotations

import itertools
import re
from functools import lru_cache

from tasder.sparsity.patterns import GH, HSS, Dense, Pattern, Rank, Series, Unstructured

__all__ = ["NOTATION_EXAMPLES", "expand_ranges", "parse_pattern", "parse_series"]

#: (example, meaning) pairs shown by ``tasder patterns`` and quoted in error messages.
NOTATION_EXAMPLES: tuple[tuple[str, str], ...] = (
    ("dense", "keep every element (the identity configuration)"),
    ("2:4", "G:H: at most 2 nonzeros in every 4 consecutive elements (NVIDIA sparse tensor cores)"),
    ("1:8", "G:H with a longer block: density 1/8"),
    ("unstructured(0.2)", "keep the largest 20 % of the elements anywhere in the tensor"),
    ("K1(3:4)->K0(2:4)", "HSS: blocks of 4 keep 2, groups of 4 blocks keep 3 non-empty (density 0.375)"),
    ("C1(2:8)->C0(2:4)", "HSS of HighLight's family; rank names are free-form"),
    ("2:8+1:8", "TASD series: a 2:8 term plus a 1:8 term on what the first left (density 3/8)"),
    ("2:4+2:8+2:16", "TASD series of order 3"),
)

_GH_RE = re.compile(r"^(\d+):(\d+)$")
_RANK_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)?\((\d+):(\d+)\)$")
_UNSTRUCTURED_RE = re.compile(r"^unstructured\(([^()]*)\)$", re.IGNORECASE)
_HINT = "expected e.g. 2:4, dense, unstructured(0.2), K1(3:4)->K0(2:4) or a series like 2:8+1:8"


def _parse_rank(text: str, whole: str) -> Rank:
    m = _RANK_RE.match(text) or _GH_RE.match(text)
    if m is None:
        raise ValueError(f"cannot read rank {text!r} in pattern {whole!r}; a rank is NAME(G:H) or G:H")
    if m.re is _GH_RE:
        return Rank(int(m.group(1)), int(m.group(2)))
    return Rank(int(m.group(2)), int(m.group(3)), m.group(1))


def _parse_pattern_text(text: str, whole: str) -> Pattern:
    if not text:
        raise ValueError(f"empty pattern in {whole!r}; {_HINT}")
    if text.lower() == "dense":
        return Dense()
    m = _UNSTRUCTURED_RE.match(text)
    if m is not None:
        try:
            value = float(m.group(1))
        except ValueError:
            raise ValueError(
                f"unstructured density must be a number in (0, 1]; got {m.group(1)!r} in {whole!r}"
            ) from None
        return Unstructured(value)
    m = _GH_RE.match(text)
    if m is not None:
        return GH(int(m.group(1)), int(m.group(2)))
    if "(" in text or "->" in text:
        ranks = tuple(_parse_rank(part, whole) for part in text.split("->"))
        if len(ranks) == 1:
            return GH(ranks[0].g, ranks[0].h)  # a one-rank HSS *is* a G:H
        return HSS(ranks)
    raise ValueError(f"unknown sparsity notation {text!r} in {whole!r}; {_HINT}")


@lru_cache(maxsize=512)
def _parse_series_cached(text: str) -> Series:
    compact = "".join(text.split())
    if not compact:
        raise ValueError(f"empty series {text!r}; {_HINT}")
    parts = compact.split("+")
    return Series(tuple(_parse_pattern_text(p, text) for p in parts))


def parse_series(spec: str | Pattern | Series) -> Series:
    """Parse a TASD series such as ``"2:8+1:8"``; a single pattern gives a series of order 1.

    Pattern and Series objects pass through, so every public function can take either.
    """
    if isinstance(spec, Series):
        return spec
    if isinstance(spec, Pattern):
        return Series((spec,))
    if not isinstance(spec, str):
        raise ValueError(f"a series must be a string like '2:8+1:8' or a Series; got {type(spec).__name__}")
    return _parse_series_cached(spec)


def parse_pattern(spec: str | Pattern) -> Pattern:
    """Parse one pattern such as ``"2:4"``, ``"dense"`` or ``"K1(3:4)->K0(2:4)"``."""
    if isinstance(spec, Pattern):
        return spec
    series = parse_series(spec)
    if series.order != 1:
        raise ValueError(f"expected one pattern, got a series of {series.order} terms: {spec!r}")
    return series.terms[0]


_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")


def expand_ranges(text: str) -> list[str]:
    """Every concrete notation of ``text`` with its ``{a..b}`` ranges expanded, first range slowest.

    Hardware families are written this way: ``C1(2:{2..8})->C0(2:{2..4})`` is HighLight's 21 HSS
    patterns, ``2:{4..8}`` STC-flexible's.
    """
    ranges = [(int(a), int(b)) for a, b in _RANGE.findall(text)]
    if not ranges:
        return [text]
    pieces = _RANGE.split(text)[::3]  # split keeps the two groups: take the text between ranges
    out = []
    for values in itertools.product(*(range(a, b + 1) for a, b in ranges)):
        out.append("".join(piece + (str(v) if i < len(values) else "")
                           for i, (piece, v) in enumerate(itertools.zip_longest(pieces, values, fillvalue=""))))
    return out
