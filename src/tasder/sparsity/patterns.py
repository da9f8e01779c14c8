"""Sparsity pattern types: dense, G:H, hierarchical structured (HSS), unstructured, and TASD series.

Patterns are small immutable values. They know their density and their canonical notation
(``str(pattern)``); what a pattern does to a tensor lives in :mod:`tasder.sparsity.masks`.

Vocabulary (docs/design.md §2): *density* is the fraction of nonzeros, *sparsity* is 1 − density.
A G:H rule allows at most G nonzeros in every block of H consecutive elements of one rank.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

__all__ = [
    "GH",
    "HSS",
    "MAX_BLOCK",
    "MAX_ORDER",
    "MAX_RANKS",
    "Dense",
    "Pattern",
    "Rank",
    "Series",
    "StructuredPattern",
    "Unstructured",
    "implies",
]


#: Most elements one block may span: the H of a G:H rank, and the product of the H's of an HSS
#: pattern. 65,536 covers the reduction dim K of every GEMM in today's models in one block (the
#: largest FFN dims are ~53,000) and keeps a position within a block in 16 bits of metadata, while
#: bounding what a pattern string can make the kernels and the reference allocate per row.
MAX_BLOCK = 1 << 16

#: Most ranks of an HSS pattern (hardware uses 2-3; each rank is a pass over a row's blocks).
MAX_RANKS = 8

#: Most terms of a TASD series: every term is a pass over the tensor and an output as large as
#: the input (hardware runs 1-4; the search's targets allow at most 4).
MAX_ORDER = 16


def _show_int(v: int) -> str:
    """``v`` for an error message; a number with thousands of digits is abbreviated."""
    text = str(v)
    return text if len(text) <= 24 else f"{text[:12]}...({len(text)} digits)"


def _check_gh(g: object, h: object, where: str) -> None:
    # bool is an int subclass; "True:4" is never what anyone meant.
    if not (isinstance(g, int) and isinstance(h, int)) or isinstance(g, bool) or isinstance(h, bool):
        raise ValueError(f"{where}: G and H must be integers; got G={g!r}, H={h!r}")
    if h > MAX_BLOCK:
        raise ValueError(f"{where}: H={_show_int(h)} is above the limit of {MAX_BLOCK} elements per block "
                         f"(tasder.sparsity.MAX_BLOCK); use a smaller H, or unstructured(d) to rank the "
                         f"whole tensor")
    if g <= 0 or h <= 0 or g > h:
        raise ValueError(f"{where}: a G:H rule needs integers 0 < G <= H; got G={_show_int(g)}, H={_show_int(h)}")


class Pattern:
    """Base class of every sparsity pattern (a single term of a TASD series)."""

    @property
    def density(self) -> float:
        """Fraction of the elements the pattern may keep."""
        raise NotImplementedError

    @property
    def sparsity(self) -> float:
        """1 − density."""
        return 1.0 - self.density

    @property
    def is_structured(self) -> bool:
        """True for patterns with a fixed per-block budget (G:H and HSS)."""
        return False


@dataclass(frozen=True)
class Dense(Pattern):
    """The identity pattern: every element is kept."""

    @property
    def density(self) -> float:
        return 1.0

    def __str__(self) -> str:
        return "dense"


@dataclass(frozen=True)
class Unstructured(Pattern):
    """Keep the largest ``density`` fraction of the elements anywhere in the tensor."""

    fraction: float

    def __post_init__(self) -> None:
        if isinstance(self.fraction, bool) or not isinstance(self.fraction, (int, float)):
            raise ValueError(f"unstructured density must be a number in (0, 1]; got {self.fraction!r}")
        if not (0.0 < float(self.fraction) <= 1.0):
            raise ValueError(f"unstructured density must be in (0, 1]; got {self.fraction!r}")
        object.__setattr__(self, "fraction", float(self.fraction))

    @property
    def density(self) -> float:
        return self.fraction

    def __str__(self) -> str:
        return f"unstructured({self.fraction!r})"


@dataclass(frozen=True)
class Rank:
    """One rank of a structured pattern: at most ``g`` non-empty children in every ``h``.

    ``name`` is the fibertree rank name from the notation (``K1``, ``C0``...), kept only so the
    canonical string reads as the user wrote it; it does not change the behaviour.
    """

    g: int
    h: int
    name: str | None = None

    def __post_init__(self) -> None:
        _check_gh(self.g, self.h, f"rank {self.name or ''}({_show_int(self.g)}:{_show_int(self.h)})")

    @property
    def fraction(self) -> Fraction:
        return Fraction(self.g, self.h)

    @property
    def index_bits(self) -> int:
        """Bits needed to store a position inside one block of ``h`` (CP metadata width)."""
        return max(1, math.ceil(math.log2(self.h)))

    def __str__(self) -> str:
        body = f"{self.g}:{self.h}"
        return f"{self.name}({body})" if self.name else body


class StructuredPattern(Pattern):
    """A pattern built from G:H ranks along one dimension (a G:H, or an HSS of several ranks).

    ``ranks`` are stored highest rank first, as written; ``ranks_lowest_first`` is the order in
    which masks are built (thesis §5.2.2).
    """

    ranks: tuple[Rank, ...]

    @property
    def is_structured(self) -> bool:
        return True

    @property
    def ranks_lowest_first(self) -> tuple[Rank, ...]:
        return tuple(reversed(self.ranks))

    @property
    def block_size(self) -> int:
        """Number of consecutive elements one outermost block spans (the product of the H's)."""
        return math.prod(r.h for r in self.ranks)

    @property
    def kept_per_block(self) -> int:
        """Maximum nonzeros in one outermost block (the product of the G's)."""
        return math.prod(r.g for r in self.ranks)

    @property
    def exact_density(self) -> Fraction:
        return math.prod((r.fraction for r in self.ranks), start=Fraction(1))

    @property
    def density(self) -> float:
        return float(self.exact_density)


@dataclass(frozen=True)
class GH(StructuredPattern):
    """G:H (also written N:M): at most ``g`` nonzeros in every ``h`` consecutive elements."""

    g: int
    h: int

    def __post_init__(self) -> None:
        _check_gh(self.g, self.h, f"pattern {_show_int(self.g)}:{_show_int(self.h)}")

    @property
    def ranks(self) -> tuple[Rank, ...]:  # type: ignore[override]
        return (Rank(self.g, self.h),)

    def __str__(self) -> str:
        return f"{self.g}:{self.h}"


@dataclass(frozen=True)
class HSS(StructuredPattern):
    """Hierarchical structured sparsity: G:H rules on several ranks of one split dimension.

    ``HSS((Rank(3, 4, "K1"), Rank(2, 4, "K0")))`` is ``K1(3:4)->K0(2:4)``: K is cut into
    blocks of 4 (at most 2 nonzeros each) and groups of 4 blocks keep at most 3 non-empty ones.
    """

    ranks: tuple[Rank, ...]

    def __post_init__(self) -> None:
        ranks = tuple(self.ranks)
        if not all(isinstance(r, Rank) for r in ranks):
            raise ValueError(f"HSS needs Rank objects, highest rank first; got {self.ranks!r}")
        if len(ranks) < 2:
            # One canonical object per pattern: a single rank is a G:H, and parses back as one.
            raise ValueError(f"an HSS needs at least two ranks; a single rank is a G:H, use GH(g, h); got {ranks!r}")
        text = "->".join(str(r) for r in ranks)
        if len(ranks) > MAX_RANKS:
            raise ValueError(f"HSS {text!r} has {len(ranks)} ranks, above the limit of {MAX_RANKS} "
                             f"(tasder.sparsity.MAX_RANKS); merge ranks or drop the 1:1 ones")
        block = math.prod(r.h for r in ranks)
        if block > MAX_BLOCK:
            raise ValueError(f"HSS {text!r} spans blocks of {block} elements (the product of its H's), above the "
                             f"limit of {MAX_BLOCK} (tasder.sparsity.MAX_BLOCK); use smaller H's")
        object.__setattr__(self, "ranks", ranks)

    def __str__(self) -> str:
        return "->".join(str(r) for r in self.ranks)


@dataclass(frozen=True)
class Series:
    """A TASD series (configuration): an ordered tuple of patterns, one per term.

    The approximation of a tensor is the sum of its terms; ``dense`` alone is the identity
    configuration.
    """

    terms: tuple[Pattern, ...]

    def __post_init__(self) -> None:
        terms = tuple(self.terms)
        if not terms:
            raise ValueError("a TASD series needs at least one term; got an empty series")
        for t in terms:
            if not isinstance(t, Pattern):
                raise ValueError(f"series terms must be patterns; got {t!r}")
        text = "+".join(map(str, terms))
        if len(terms) > 1 and any(isinstance(t, Dense) for t in terms):
            raise ValueError(f"'dense' keeps everything, so it can only stand alone as a series; got {text!r}")
        if len(terms) > MAX_ORDER:
            raise ValueError(f"series of {len(terms)} terms is above the limit of {MAX_ORDER} "
                             f"(tasder.sparsity.MAX_ORDER); every term is a pass and an output the size of the "
                             f"input: use fewer, denser terms")
        total = sum((_exact_density(t) for t in terms), start=Fraction(0))
        if total > 1:
            raise ValueError(f"series {text!r} has effective density {float(total):g} > 1: its terms may keep more "
                             f"than every element, so the later ones cannot add anything; drop terms or use "
                             f"sparser ones (at most density 1 in all)")
        object.__setattr__(self, "terms", terms)

    @property
    def order(self) -> int:
        """Number of terms."""
        return len(self.terms)

    @property
    def effective_density(self) -> float:
        """Sum of the term densities: the fraction of dense MACs the hardware executes.

        At most 1: a series whose terms add up to more (``2:4+2:4+2:4``, 1.5) is refused when it
        is built, since its later terms could only hold zeros. Exactly 1 (``2:4+2:4``) is allowed:
        it keeps every element.
        """
        return sum(t.density for t in self.terms)

    @property
    def density(self) -> float:
        return self.effective_density

    @property
    def approximated_sparsity(self) -> float:
        """1 − the sum of the term densities (the TASD paper's "approximated sparsity"; may be < 0)."""
        return 1.0 - self.effective_density

    @property
    def is_dense(self) -> bool:
        return len(self.terms) == 1 and isinstance(self.terms[0], Dense)

    def __str__(self) -> str:
        return "+".join(str(t) for t in self.terms)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.terms)

    def __len__(self) -> int:
        return len(self.terms)


def _exact_density(p: Pattern) -> Fraction:
    """A term's density as an exact fraction (an unstructured density as the decimal it prints as)."""
    if isinstance(p, StructuredPattern):
        return p.exact_density
    if isinstance(p, Unstructured):
        return Fraction(repr(p.fraction))
    return Fraction(1)


def _ranks_for_implication(p: Pattern) -> tuple[tuple[int, int], ...]:
    if isinstance(p, Dense):
        return ((1, 1),)
    if isinstance(p, StructuredPattern):
        return tuple((r.g, r.h) for r in p.ranks_lowest_first)
    raise ValueError(f"implies(): expected dense, G:H or HSS, not {p!r}")


def _most_children(p: tuple[tuple[int, int], ...], child: int, window: int) -> int:
    """Most non-empty aligned ``child``-blocks any tensor obeying ``p`` has in one aligned ``window``.

    A tensor obeying ``p`` stays valid when nonzeros are removed, so the worst case puts at most one
    nonzero per child block and nothing outside the window. A dynamic programme over the window's
    positions tracks, per rank of ``p``, how many non-empty children its current block has. The
    window starts at every offset a multiple of ``window`` can have inside ``p``'s outermost block.
    """
    sizes, b = [], 1
    for _, h in p:
        b *= h
        sizes.append(b)
    best = 0
    for offset in range(0, b, math.gcd(window, b)):
        states: dict[tuple[tuple[int, ...], bool], int] = {((0,) * len(p), False): 0}
        for i in range(window):
            pos = offset + i
            nxt: dict[tuple[tuple[int, ...], bool], int] = {}
            for (cnt, used), val in states.items():
                cnt = tuple(0 if pos % s == 0 else c for c, s in zip(cnt, sizes, strict=True))
                used = used and i % child != 0
                key = (cnt, used)
                nxt[key] = max(nxt.get(key, -1), val)
                if used:
                    continue
                new, ok, r = list(cnt), True, 0
                while r < len(p):  # the element opens a child at rank r: count it, maybe open one above
                    new[r] += 1
                    if new[r] > p[r][0]:
                        ok = False
                        break
                    if new[r] > 1:
                        break
                    r += 1
                if ok:
                    key = (tuple(new), True)
                    nxt[key] = max(nxt.get(key, -1), val + 1)
            states = nxt
        best = max(best, max(states.values()))
    return best


@lru_cache(maxsize=4096)
def _ranks_imply(p: tuple[tuple[int, int], ...], q: tuple[tuple[int, int], ...]) -> bool:
    child = 1
    for g, h in q:  # each rank of q is its own constraint: at most g non-empty children per block
        if _most_children(p, child, child * h) > g:
            return False
        child *= h
    return True


def implies(p: Pattern | str, q: Pattern | str) -> bool:
    """True when every tensor obeying ``p`` also obeys ``q`` (along the same dim).

    What a structured engine needs: an operand pruned to ``p`` runs on an engine built for ``q``
    (with ``q``'s density: explicit zeros fill ``q``'s slots). Exact for dense, G:H and HSS:
    the rules are checked per rank of ``q`` for the worst case ``p`` allows (tensors of any length;
    a short tail block is padded with zeros, as :func:`~tasder.sparsity.satisfies` does).
    ``unstructured(d)`` guarantees no structure, and no structured pattern guarantees a global
    density on a tensor of any length (a tail shorter than a block may be full): unstructured
    targets are implied only by a sparser unstructured pattern or when ``d`` = 1.

    >>> implies("2:4", "4:8"), implies("4:8", "2:4"), implies("1:8", "2:8"), implies("2:8", "2:4")
    (True, False, True, True)
    >>> implies("K1(2:4)->K0(2:4)", "4:16"), implies("K1(2:4)->K0(2:4)", "2:4"), implies("2:4", "1:2")
    (True, True, False)
    >>> implies("dense", "2:4"), implies("3:4", "dense")
    (False, True)
    """
    from tasder.sparsity.notation import parse_pattern  # notation imports this module

    pp, qq = parse_pattern(p), parse_pattern(q)
    if isinstance(qq, Unstructured) and qq.fraction < 1.0:
        return isinstance(pp, Unstructured) and pp.fraction <= qq.fraction
    if isinstance(qq, Unstructured):
        return True
    if isinstance(pp, Unstructured):
        return pp.fraction >= 1.0 and _ranks_imply(((1, 1),), _ranks_for_implication(qq))
    return _ranks_imply(_ranks_for_implication(pp), _ranks_for_implication(qq))
