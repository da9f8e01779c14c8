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

Bounds (each refused with a ValueError naming the value and the limit): an H, and the block of
an HSS pattern (the product of its H's), at most :data:`~tasder.sparsity.patterns.MAX_BLOCK`
(65,536) elements; at most :data:`~tasder.sparsity.patterns.MAX_RANKS` (8) HSS ranks and
:data:`~tasder.sparsity.patterns.MAX_ORDER` (16) series terms; a series' effective density at
most 1; :func:`expand_ranges` at most :data:`MAX_EXPANSIONS` (4,096) patterns.
"""

from __future__ import annotations

import itertools
import math
import re
from functools import lru_cache

from tasder.sparsity.patterns import (
    GH,
    HSS,
    MAX_BLOCK,
    MAX_ORDER,
    MAX_RANKS,
    Dense,
    Pattern,
    Rank,
    Series,
    Unstructured,
)

__all__ = ["MAX_EXPANSIONS", "NOTATION_EXAMPLES", "expand_ranges", "parse_pattern", "parse_series"]

#: Most concrete patterns one ``{a..b}`` text may expand to. Hardware families are small
#: (HighLight's HSS family is 21 patterns, STC-flexible's 5); every pattern becomes a candidate
#: the search evaluates, so a typo such as ``2:{1..100000000}`` must fail at once, not fill memory.
MAX_EXPANSIONS = 4096

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
#: Digits a G or H may have before it is refused without converting it (any H above MAX_BLOCK is).
_MAX_DIGITS = len(str(MAX_BLOCK))


def _show(text: str, limit: int = 60) -> str:
    """``repr(text)`` for an error message, shortened when a user pasted something huge."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"...({len(text)} characters)"


def _int(digits: str, what: str, whole: str) -> int:
    """A G or H from the notation; too many digits is refused before int() (which would be slow)."""
    stripped = digits.lstrip("0") or "0"
    if len(stripped) > _MAX_DIGITS:
        raise ValueError(f"{what}={_show(stripped, 12)} in {_show(whole)} is above the limit of {MAX_BLOCK} "
                         f"(tasder.sparsity.MAX_BLOCK, the most elements one block may span); use a smaller value")
    return int(stripped)


def _gh(m: re.Match[str], g_group: int, whole: str) -> tuple[int, int]:
    return _int(m.group(g_group), "G", whole), _int(m.group(g_group + 1), "H", whole)


def _parse_rank(text: str, whole: str) -> Rank:
    m = _RANK_RE.match(text) or _GH_RE.match(text)
    if m is None:
        raise ValueError(f"cannot read rank {_show(text)} in pattern {_show(whole)}; a rank is NAME(G:H) or G:H")
    if m.re is _GH_RE:
        return Rank(*_gh(m, 1, whole))
    return Rank(*_gh(m, 2, whole), m.group(1))


def _parse_pattern_text(text: str, whole: str) -> Pattern:
    if not text:
        raise ValueError(f"empty pattern in {_show(whole)}; {_HINT}")
    if text.lower() == "dense":
        return Dense()
    m = _UNSTRUCTURED_RE.match(text)
    if m is not None:
        try:
            value = float(m.group(1))
        except ValueError:
            raise ValueError(
                f"unstructured density must be a number in (0, 1]; got {_show(m.group(1))} in {_show(whole)}"
            ) from None
        return Unstructured(value)
    m = _GH_RE.match(text)
    if m is not None:
        return GH(*_gh(m, 1, whole))
    if "(" in text or "->" in text:
        parts = text.split("->")
        if len(parts) > MAX_RANKS:
            raise ValueError(f"HSS {_show(text)} has {len(parts)} ranks, above the limit of {MAX_RANKS} "
                             f"(tasder.sparsity.MAX_RANKS); merge ranks or drop the 1:1 ones")
        ranks = tuple(_parse_rank(part, whole) for part in parts)
        if len(ranks) == 1:
            return GH(ranks[0].g, ranks[0].h)  # a one-rank HSS *is* a G:H
        return HSS(ranks)
    raise ValueError(f"unknown sparsity notation {_show(text)} in {_show(whole)}; {_HINT}")


@lru_cache(maxsize=512)
def _parse_series_cached(text: str) -> Series:
    compact = "".join(text.split())
    if not compact:
        raise ValueError(f"empty series {_show(text)}; {_HINT}")
    parts = compact.split("+")
    if len(parts) > MAX_ORDER:  # before parsing each term of a pasted megabyte
        raise ValueError(f"series {_show(text)} has {len(parts)} terms, above the limit of {MAX_ORDER} "
                         f"(tasder.sparsity.MAX_ORDER); every term is a pass and an output the size of the input: "
                         f"use fewer, denser terms")
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
        raise ValueError(f"expected one pattern, got a series of {series.order} terms: {_show(str(spec))}")
    return series.terms[0]


_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")


def expand_ranges(text: str) -> list[str]:
    """Every concrete notation of ``text`` with its ``{a..b}`` ranges expanded, first range slowest.

    Hardware families are written this way: ``C1(2:{2..8})->C0(2:{2..4})`` is HighLight's 21 HSS
    patterns, ``2:{4..8}`` STC-flexible's. At most :data:`MAX_EXPANSIONS` patterns; a range must
    run upwards (``{2..8}``, not ``{8..2}``).
    """
    ranges = []
    for m in _RANGE.finditer(text):
        a, b = (_range_bound(m.group(i), text) for i in (1, 2))
        if a > b:
            raise ValueError(f"range {{{a}..{b}}} in {_show(text)} is empty (it runs downwards); "
                             f"write {{{b}..{a}}}")
        ranges.append((a, b))
    if not ranges:
        return [text]
    count = math.prod(b - a + 1 for a, b in ranges)
    if count > MAX_EXPANSIONS:
        raise ValueError(f"{_show(text)} expands to {_show_count(count)} patterns, above the limit of "
                         f"{MAX_EXPANSIONS} (tasder.sparsity.notation.MAX_EXPANSIONS); narrow the ranges")
    pieces = _RANGE.split(text)[::3]  # split keeps the two groups: take the text between ranges
    out = []
    for values in itertools.product(*(range(a, b + 1) for a, b in ranges)):
        out.append("".join(piece + (str(v) if i < len(values) else "")
                           for i, (piece, v) in enumerate(itertools.zip_longest(pieces, values, fillvalue=""))))
    return out


def _range_bound(digits: str, text: str) -> int:
    # A bound is a G or an H: anything longer than MAX_BLOCK's digits cannot give a valid pattern.
    stripped = digits.lstrip("0") or "0"
    if len(stripped) > _MAX_DIGITS:
        raise ValueError(f"range bound {_show(stripped, 12)} in {_show(text)} is above the limit of {MAX_BLOCK} "
                         f"(tasder.sparsity.MAX_BLOCK: no G or H may exceed it); use a smaller bound")
    return int(stripped)


def _show_count(n: int) -> str:
    return f"{n:,}" if n < 10**15 else f"~1e{len(str(n)) - 1}"
