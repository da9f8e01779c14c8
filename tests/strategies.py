"""Shared hypothesis strategies for the sparsity and TASD tests.

Everything stays small (≤ 2,000 elements per tensor) so property tests run quickly on 2 cores.

* ``dtypes``: float16, bfloat16, float32, float64.
* ``shapes_and_dims``: shapes of 1–4 dims plus a dim to group along (given as a positive or a
  negative index); the grouping dim is drawn first (1–72 long) so G:H blocks of up to 16 and HSS
  blocks of up to 64 elements, with and without a short tail block, are exercised.
* ``tensors``: values with many ties, exact zeros, negative zeros, wide magnitude ranges
  (subnormals included) and, on request, NaN/Inf; sometimes non-contiguous.
* ``gh_patterns``, ``hss_patterns`` (2–3 ranks), ``structured_patterns``, ``unstructured_patterns``,
  ``patterns``, ``series`` (1–3 terms).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import torch
from hypothesis import strategies as st

from tasder.sparsity import GH, HSS, Dense, Pattern, Rank, Series, StructuredPattern, Unstructured

__all__ = [
    "DTYPES",
    "INT_VIEW",
    "MAX_NUMEL",
    "bits",
    "dtypes",
    "gh_patterns",
    "hss_patterns",
    "patterns",
    "rank_names",
    "series",
    "shapes",
    "shapes_and_dims",
    "structured_patterns",
    "tensors",
    "unstructured_patterns",
]

DTYPES: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
INT_VIEW = {
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
    torch.float32: torch.int32,
    torch.float64: torch.int64,
}
MAX_NUMEL = 2000

dtypes = st.sampled_from(DTYPES)


def bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bit pattern of a float tensor (an integer tensor of the same shape)."""
    return t.contiguous().view(INT_VIEW[t.dtype])


# --------------------------------------------------------------------------------------- shapes


@st.composite
def shapes_and_dims(
    draw: st.DrawFn, min_dims: int = 1, max_dims: int = 4, max_len: int = 72, max_numel: int = MAX_NUMEL
) -> tuple[tuple[int, ...], int]:
    """A shape of ``min_dims``–``max_dims`` dims (≤ ``max_numel`` elements) and a dim index into it."""
    ndim = draw(st.integers(min_dims, max_dims))
    pos = draw(st.integers(0, ndim - 1))
    length = draw(st.integers(1, max_len))
    budget = max(1, max_numel // length)
    others = []
    for _ in range(ndim - 1):
        side = draw(st.integers(1, max(1, min(8, budget))))
        budget = max(1, budget // side)
        others.append(side)
    shape = (*others[:pos], length, *others[pos:])
    assert math.prod(shape) <= max(max_numel, length)
    dim = pos if draw(st.booleans()) else pos - ndim
    return tuple(shape), dim


@st.composite
def shapes(draw: st.DrawFn, min_dims: int = 1, max_dims: int = 4, max_numel: int = MAX_NUMEL) -> tuple[int, ...]:
    """A shape of ``min_dims``–``max_dims`` dims with at most ``max_numel`` elements."""
    return draw(shapes_and_dims(min_dims=min_dims, max_dims=max_dims, max_numel=max_numel))[0]


# -------------------------------------------------------------------------------------- tensors


def _values(rng: np.random.Generator, n: int, kind: str, dtype: torch.dtype) -> np.ndarray:
    if kind == "ties":  # few distinct magnitudes: most blocks hold ties
        return rng.integers(-3, 4, n).astype(np.float64)
    if kind == "normal":
        return rng.standard_normal(n)
    # "wide": magnitudes from the dtype's smallest subnormal up to 2**min(max_exp/2, 60), both signs.
    info = torch.finfo(dtype)
    low = math.log2(info.tiny * info.eps)
    high = min(math.log2(info.max) / 2, 60.0)
    mags = np.exp2(rng.uniform(low, high, n))
    return np.where(rng.random(n) < 0.5, -mags, mags)


@st.composite
def tensors(
    draw: st.DrawFn,
    shape: tuple[int, ...] | None = None,
    dtype: torch.dtype | None = None,
    *,
    nonfinite: bool = False,
    kinds: tuple[str, ...] = ("ties", "normal", "wide"),
    allow_noncontiguous: bool = True,
) -> torch.Tensor:
    """A float tensor with ties, exact zeros and negative zeros (and NaN/Inf if ``nonfinite``).

    Values come from a seeded NumPy generator (fast for 2,000 elements); hypothesis draws the seed
    and the mix: the kind of values, the fraction of zeros and of negative zeros among them.
    """
    if shape is None:
        shape = draw(shapes())
    if dtype is None:
        dtype = draw(dtypes)
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(kinds))
    zero_frac = draw(st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]))
    negzero_frac = draw(st.sampled_from([0.0, 0.5, 1.0]))
    n = math.prod(shape)
    rng = np.random.default_rng(seed)
    vals = _values(rng, n, kind, dtype)
    zero = rng.random(n) < zero_frac
    negative = rng.random(n) < negzero_frac
    vals = np.where(zero, np.where(negative, -0.0, 0.0), vals)
    if nonfinite:
        special = np.array([np.nan, np.inf, -np.inf, -np.nan])
        where = rng.random(n) < draw(st.sampled_from([0.05, 0.3]))
        vals = np.where(where, special[rng.integers(0, 4, n)], vals)
    x = torch.from_numpy(vals).reshape(shape).to(dtype)
    if allow_noncontiguous and draw(st.booleans()):
        holder = torch.zeros((*shape, 2), dtype=dtype)
        holder[..., 1] = x
        x = holder[..., 1]  # same values, stride 2 in the last dim
    return x


# ------------------------------------------------------------------------------------- patterns

#: Free-form fibertree rank names (or none), as the notation allows.
rank_names = st.one_of(st.none(), st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,3}", fullmatch=True))


@st.composite
def gh_patterns(draw: st.DrawFn, max_h: int = 16) -> GH:
    h = draw(st.integers(1, max_h))
    return GH(draw(st.integers(1, h)), h)


@st.composite
def hss_patterns(
    draw: st.DrawFn, min_ranks: int = 2, max_ranks: int = 3, max_h: int = 4, named: bool | None = None
) -> HSS:
    """HSS of 2–3 ranks (highest first), each H ≤ ``max_h`` (outermost block ≤ 64 by default)."""
    n = draw(st.integers(min_ranks, max_ranks))
    ranks = []
    for _ in range(n):
        h = draw(st.integers(1, max_h))
        g = draw(st.integers(1, h))
        name = None if named is False else draw(rank_names)
        ranks.append(Rank(g, h, name))
    return HSS(tuple(ranks))


def structured_patterns(max_h: int = 16) -> st.SearchStrategy[Pattern]:
    return st.one_of(gh_patterns(max_h=max_h), hss_patterns())


def unstructured_patterns() -> st.SearchStrategy[Unstructured]:
    return st.floats(min_value=0.0, max_value=1.0, exclude_min=True).map(Unstructured)


def patterns(unstructured: bool = True, max_h: int = 16) -> st.SearchStrategy[Pattern]:
    base = [gh_patterns(max_h=max_h), hss_patterns()]
    if unstructured:
        base.append(unstructured_patterns())
    return st.one_of(*base)


@st.composite
def series(
    draw: st.DrawFn,
    min_terms: int = 1,
    max_terms: int = 3,
    unstructured: bool = False,
    dense: bool = False,
    max_h: int = 16,
) -> Series:
    """A TASD series of 1–3 terms (G:H with H ≤ ``max_h`` and HSS; unstructured and `dense` on request).

    A drawn term that would push the effective density above 1 (refused by ``Series``) is left
    out, so the series may come out shorter than drawn, never empty.
    """
    if dense and draw(st.integers(0, 9)) == 0:
        return Series((Dense(),))
    n = draw(st.integers(min_terms, max_terms))
    terms: list[Pattern] = []
    for _ in range(n):
        p = draw(patterns(unstructured=unstructured, max_h=max_h))
        if sum(_density(t) for t in terms) + _density(p) <= 1:
            terms.append(p)
    return Series(tuple(terms))


def _density(p: Pattern) -> Fraction:
    # Exact, as Series checks it: a structured density is a fraction, an unstructured one the decimal it prints as.
    return p.exact_density if isinstance(p, StructuredPattern) else Fraction(repr(p.density))
