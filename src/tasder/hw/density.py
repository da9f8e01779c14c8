"""Density models of the operands (Sparseloop's statistical density models, thesis 4.6.2).

Why statistics rather than data: the sparse step must price *thousands* of mappings per NumPy
call, and every mapping tiles the operands differently. A density model answers, for a batch of
tile shapes at once, the three questions the sparse step and the formats need:

* ``prob_empty(rows, k)`` — probability that a tile is all zeros (what a leader→follower skip
  or gate saves);
* ``expected_occupancy(rows, k)`` — mean nonzeros in the tile (compressed traffic, metadata);
* ``occupancy_quantile(rows, k, q)`` — a high percentile of the nonzeros (the capacity check of a
  compressed tile: a buffer sized for the mean overflows half the time).

A tile is ``rows`` fibers of ``k`` consecutive elements along the reduction dim K (A is M×K,
B is K×N; structured patterns are along K for both). ``occupancy_distribution`` gives the whole
distribution for one tile shape (reports, tests).

Models: :class:`DenseModel`, :class:`UniformModel` (random nonzeros; hypergeometric occupancy of a
tile drawn from the tensor, binomial when the tensor size is unknown), :class:`StructuredModel`
(G:H and HSS: deterministic per-block occupancy), :class:`SeriesModel` (a TASD series: the sum
of structured terms, each its own stream) and :class:`ActualModel` (statistics measured on a
real tensor at the tile shapes the mapping produces). :func:`density_model` parses the pattern
notation (``dense``, ``2:4``, ``K1(2:4)->K0(2:4)``, ``4:8+1:8``, ``unstructured(0.1)``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["ActualModel", "DenseModel", "DensityModel", "SeriesModel", "StructuredModel", "UniformModel",
           "density_model", "series_fills", "with_data_density"]


def _special() -> ModuleType:
    """``scipy.special``, imported on first use: it costs half a second, and ``import tasder.hw``
    (the command line's ``tasder hw --help`` included) must not pay for it."""
    from scipy import special

    return special


def _pmf_ufunc(name: str) -> Any:
    """scipy.special's private ufunc ``name`` (``_binom_pmf``, ``_hypergeom_pmf``): what scipy.stats'
    binom/hypergeom evaluate with (Boost's pdfs). Importing ``scipy.stats`` itself costs 1.2-1.9 s
    of start-up (its distributions build their docstrings), a tenth of a warm ``tasder demo``.
    None on a SciPy without it (< 1.9): the callers then use scipy.stats."""
    return getattr(getattr(_special(), "_ufuncs", None), name, None)


def _binom_pmf(x: np.ndarray, n: int, p: float) -> np.ndarray:
    """``scipy.stats.binom.pmf(x, n, p)`` for ``x`` in ``0..n``, value for value."""
    ufunc = _pmf_ufunc("_binom_pmf")
    if ufunc is None:  # pragma: no cover - SciPy < 1.9
        from scipy import stats

        return stats.binom.pmf(x, n, p)
    return ufunc(x, n, p)


def _hypergeom_pmf(x: np.ndarray, total: int, successes: int, draws: int) -> np.ndarray:
    """``scipy.stats.hypergeom.pmf(x, total, successes, draws)``, value for value: zero outside the
    support, NaN for draws the population cannot give."""
    ufunc = _pmf_ufunc("_hypergeom_pmf")
    if ufunc is None:  # pragma: no cover - SciPy < 1.9
        from scipy import stats

        return stats.hypergeom.pmf(x, total, successes, draws)
    if not (total > 0 and 0 <= successes <= total and 0 <= draws <= total):
        return np.full(np.shape(x), np.nan)
    lo, hi = max(0, draws - (total - successes)), min(successes, draws)
    inside = (x >= lo) & (x <= hi)
    return np.where(inside, ufunc(np.clip(x, lo, hi), successes, draws, total), 0.0)


def _arr(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


class DensityModel:
    """Base class: a model of where an operand's nonzeros are. Subclasses vectorize over tile shapes."""

    #: Expected fraction of nonzeros.
    density: float = 1.0
    #: True when nonzeros follow a fixed structure a structured engine can exploit exactly.
    structured: bool = False

    @property
    def label(self) -> str:
        return type(self).__name__

    def __str__(self) -> str:
        """The model in the pattern notation where it has one (``2:4``, ``unstructured(0.1)``, ``dense``)."""
        return self.label

    @property
    def terms(self) -> tuple[DensityModel, ...]:
        """The streams a term-by-term engine executes (a TASD series has one per term)."""
        return (self,)

    @property
    def value_density(self) -> float:
        """Expected fraction of elements whose *value* is nonzero. Below :attr:`density` for a
        structured pattern whose slots the data does not always fill (a 4:8 block of data with three
        nonzeros stores one zero): a zero detector gates those, position-based skipping does not."""
        return self.density

    def prob_empty(self, rows: Any, k: Any) -> np.ndarray:
        raise NotImplementedError

    def expected_occupancy(self, rows: Any, k: Any) -> np.ndarray:
        return _arr(rows) * _arr(k) * self.density

    def occupancy_quantile(self, rows: Any, k: Any, q: float = 0.99) -> np.ndarray:
        raise NotImplementedError

    def occupancy_distribution(self, rows: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(occupancies, probabilities) of one tile shape."""
        raise NotImplementedError

    def _fiber_distribution(self, rows: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Occupancy distribution of one tile; a fiber across rows (``k == 1``) is one element
        per row, independent along K-structured rules too, so binomial at the model's density."""
        if k == 1 and rows > 1 and not isinstance(self, (DenseModel, UniformModel, ActualModel)):
            x = np.arange(rows + 1)
            return x, _binom_pmf(x, rows, self.density)
        return self.occupancy_distribution(rows, k)

    def expected_steps(self, rows: Any, k: Any, lanes: Any) -> np.ndarray:
        """E[ceil(occupancy / lanes)] of a (rows, k) tile: the steps ``lanes`` parallel units need
        when the tile's nonzeros are dealt out among them in position space (Sparseloop's
        position-skipping), so a lane idles whenever the occupancy is not a multiple of ``lanes``."""
        rows, k, lanes = (np.asarray(x, dtype=np.int64) for x in np.broadcast_arrays(rows, k, lanes))
        trip = np.stack([rows.ravel(), k.ravel(), lanes.ravel()], axis=1)
        if trip.size and (trip.max(axis=0) < (1 << 23, 1 << 24, 1 << 16)).all():
            # One scalar key per triple (much faster than a row-wise unique); a batch of mappings
            # has only a few distinct tile shapes.
            key = (trip[:, 0] << 40) | (trip[:, 1] << 16) | trip[:, 2]
            _, first, inv = np.unique(key, return_index=True, return_inverse=True)
            uniq = trip[first]
        else:
            uniq, inv = np.unique(trip, axis=0, return_inverse=True)
        # Value-hashable (frozen) models share a cache across calls; an ActualModel (hashed by
        # identity, holding a whole tensor) is not kept alive by it: its tile counts are cached anyway.
        one = _expected_steps if not isinstance(self, ActualModel) else _expected_steps.__wrapped__
        vals = np.array([one(self, int(r), int(kk), int(n)) for r, kk, n in uniq])
        return vals[inv.ravel()].reshape(rows.shape)


@lru_cache(maxsize=16384)
def _expected_steps(model: DensityModel, rows: int, k: int, lanes: int) -> float:
    """E[ceil(occupancy / lanes)] of one tile shape (cached: mappings share few shapes)."""
    x, pmf = model._fiber_distribution(rows, k)
    return float(np.dot(np.ceil(np.asarray(x, dtype=np.float64) / lanes - 1e-9), pmf))


@dataclass(frozen=True)
class DenseModel(DensityModel):
    """Every element nonzero."""

    density: float = 1.0

    @property
    def label(self) -> str:
        return "dense"

    def prob_empty(self, rows: Any, k: Any) -> np.ndarray:
        return np.zeros(np.broadcast(_arr(rows), _arr(k)).shape)

    def occupancy_quantile(self, rows: Any, k: Any, q: float = 0.99) -> np.ndarray:
        return _arr(rows) * _arr(k)

    def occupancy_distribution(self, rows: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        return np.array([rows * k]), np.array([1.0])


@dataclass(frozen=True)
class UniformModel(DensityModel):
    """Nonzeros placed uniformly at random at ``density``.

    With ``size`` (elements of the whole tensor) a tile's occupancy is hypergeometric — drawing the
    tile's elements without replacement from a tensor with ``round(density·size)`` nonzeros; without
    it, binomial (the limit of a large tensor). The quantile uses the normal approximation with
    the exact variance, clipped to [0, tile size] (exact enough for capacity checks, vectorized).
    """

    density: float = 0.5
    size: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.density <= 1.0:
            raise ValueError(f"uniform density must be in (0, 1]; got {self.density}")

    @property
    def label(self) -> str:
        return f"unstructured({self.density:g})"

    def prob_empty(self, rows: Any, k: Any) -> np.ndarray:
        n = _arr(rows) * _arr(k)
        if self.size is None:
            return (1.0 - self.density) ** n
        total = float(self.size)
        nnz = round(self.density * total)
        n = np.minimum(n, total)
        # C(total - nnz, n) / C(total, n), in logs; zero when n exceeds the zeros available.
        special = _special()
        with np.errstate(invalid="ignore"):
            log_p = (special.gammaln(total - nnz + 1) - special.gammaln(total - nnz - n + 1)
                     - special.gammaln(total + 1) + special.gammaln(total - n + 1))
        return np.where(n > total - nnz, 0.0, np.exp(np.nan_to_num(log_p, nan=-np.inf)))

    def _variance(self, n: np.ndarray) -> np.ndarray:
        d = self.density
        var = n * d * (1.0 - d)
        if self.size is not None and self.size > 1:
            var = var * np.clip((self.size - n) / (self.size - 1.0), 0.0, 1.0)
        return var

    def occupancy_quantile(self, rows: Any, k: Any, q: float = 0.99) -> np.ndarray:
        n = _arr(rows) * _arr(k)
        z = float(_special().ndtri(q))  # the standard normal's quantile (scipy.stats.norm.ppf)
        return np.clip(np.ceil(n * self.density + z * np.sqrt(self._variance(n))), 0.0, n)

    def occupancy_distribution(self, rows: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        n = rows * k
        x = np.arange(n + 1)
        if self.size is None:
            return x, _binom_pmf(x, n, self.density)
        return x, _hypergeom_pmf(x, self.size, round(self.density * self.size), n)


@dataclass(frozen=True)
class StructuredModel(DensityModel):
    """G:H or HSS along K: ``ranks`` lowest first as (g, h) pairs (``K1(3:4)->K0(2:4)`` → ((2,4),(3,4))).

    Occupancy is deterministic for tiles that cover whole top-level blocks (density · size, never
    empty): that is what lets a structured engine skip exactly. A tile shorter than a block along K
    is empty with the probability that none of the block's kept positions fall in it (positions
    taken as uniformly placed within the block); its quantile is the worst case the rule allows.
    """

    ranks: tuple[tuple[int, int], ...] = ((2, 4),)
    text: str = ""
    structured: bool = field(default=True, init=False)
    #: Expected share of the pattern's slots that hold a nonzero value (1: the data fills every slot;
    #: see :func:`series_fills`). Positions, occupancy and formats count slots; only
    #: :attr:`value_density` (what a zero detector sees) uses it.
    fill: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.fill <= 1.0:
            raise ValueError(f"structured model {self.label}: fill must be in [0, 1]; got {self.fill}")

    @property
    def density(self) -> float:  # type: ignore[override]
        return math.prod(g / h for g, h in self.ranks)

    @property
    def value_density(self) -> float:
        return self.density * self.fill

    @property
    def label(self) -> str:
        return self.text or "->".join(f"{g}:{h}" for g, h in reversed(self.ranks))

    @property
    def block(self) -> int:
        return math.prod(h for _, h in self.ranks)

    def _row_empty(self, k: np.ndarray) -> np.ndarray:
        special = _special()
        out = np.zeros_like(k)
        below = 1  # block size of the ranks below rank r
        for r, (g, h) in enumerate(self.ranks):
            # The enclosing rank-r block may itself be pruned by a higher rank.
            kept_above = math.prod(gg / hh for gg, hh in self.ranks[r + 1:])
            top = below * h
            in_rank = (k < top) & (k >= below) if below > 1 else (k < top)
            j = np.clip(np.ceil(k / below), 1, h)
            with np.errstate(invalid="ignore", divide="ignore"):
                p = np.exp(special.gammaln(h - j + 1) - special.gammaln(h - j - g + 1)
                           - special.gammaln(h + 1) + special.gammaln(h - g + 1))
            p = np.where(h - j < g, 0.0, np.nan_to_num(p))
            out = np.where(in_rank, 1.0 - kept_above * (1.0 - p), out)
            below = top
        return out

    def prob_empty(self, rows: Any, k: Any) -> np.ndarray:
        rows, k = np.broadcast_arrays(_arr(rows), _arr(k))
        # A batch of mappings has few distinct fiber lengths: evaluate the rule once per length.
        uk, inv = np.unique(k, return_inverse=True)
        return self._row_empty(uk)[inv.reshape(k.shape)] ** rows

    def _row_max(self, k: np.ndarray) -> np.ndarray:
        """Most nonzeros a K-aligned segment of length ``k`` can hold under the rule."""
        full, rem = np.floor(k / self.block), np.mod(k, self.block)
        per_block = math.prod(g for g, _ in self.ranks)
        part = np.zeros_like(k)
        below, kept_below = 1, 1
        for g, h in self.ranks:
            top = below * h
            j = np.ceil(rem / below)
            part = np.where((rem > 0) & (rem <= top) & (rem > (below if below > 1 else 0)),
                            np.minimum(np.minimum(j, g) * kept_below, rem), part)
            below, kept_below = top, kept_below * g
        return full * per_block + part

    def occupancy_quantile(self, rows: Any, k: Any, q: float = 0.99) -> np.ndarray:
        rows, k = np.broadcast_arrays(_arr(rows), _arr(k))
        uk, inv = np.unique(k, return_inverse=True)  # few distinct fiber lengths per batch, as prob_empty
        return rows * np.minimum(self._row_max(uk), uk)[inv.reshape(k.shape)]

    def occupancy_distribution(self, rows: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        if k % self.block == 0:
            return np.array([rows * k * self.density]), np.array([1.0])
        mean = float(self.expected_occupancy(rows, k))
        return np.array([mean]), np.array([1.0])


@dataclass(frozen=True)
class SeriesModel(DensityModel):
    """A TASD series: the sum of structured terms, each stored and executed as its own stream.

    Terms hold disjoint nonzeros, so occupancies add; a tile is empty only if it is empty in every
    term (taken as independent for tiles of more than one element; exact for one element).
    """

    parts: tuple[StructuredModel, ...] = ()
    text: str = ""

    @property
    def density(self) -> float:  # type: ignore[override]
        return float(sum(t.density for t in self.parts))

    @property
    def value_density(self) -> float:
        return float(sum(t.value_density for t in self.parts))

    @property
    def structured(self) -> bool:  # type: ignore[override]
        return True

    @property
    def label(self) -> str:
        return self.text or "+".join(t.label for t in self.parts)

    @property
    def terms(self) -> tuple[DensityModel, ...]:
        return self.parts

    def prob_empty(self, rows: Any, k: Any) -> np.ndarray:
        # One element: the terms' positions are disjoint, so it is zero with probability 1 - Σ d.
        single = (_arr(rows) * _arr(k)) <= 1
        return np.where(single, max(0.0, 1.0 - self.density), np.prod([t.prob_empty(rows, k) for t in self.parts],
                                                                      axis=0))

    def occupancy_quantile(self, rows: Any, k: Any, q: float = 0.99) -> np.ndarray:
        return np.minimum(sum(t.occupancy_quantile(rows, k, q) for t in self.parts), _arr(rows) * _arr(k))

    def occupancy_distribution(self, rows: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        return np.array([float(self.expected_occupancy(rows, k))]), np.array([1.0])


class ActualModel(DensityModel):
    """Statistics of a real operand (2-D, rows × K: A as M×K, B given as N×K i.e. transposed).

    Why measured per tile shape: real data is clustered (whole channels pruned, dead ReLUs), so
    the chance a tile is empty is not what a uniform model predicts at the same density. Each
    distinct (rows, k) is measured once — the tensor cut into tiles, nonzeros counted per tile
    (edge tiles zero-padded) — and cached, so a batch of mappings costs one pass per distinct shape.
    """

    def __init__(self, tensor: Any, name: str = "actual") -> None:
        arr = np.asarray(tensor.detach().cpu().numpy() if hasattr(tensor, "detach") else tensor)
        if arr.ndim != 2:
            arr = arr.reshape(arr.shape[0], -1)
        self.nz = arr != 0
        self.density = float(self.nz.mean())
        self.name = name
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    @property
    def label(self) -> str:
        return f"actual({self.name}, {self.density:.3g})"

    def _counts(self, rows: int, k: int) -> np.ndarray:
        key = (int(rows), int(k))
        if key not in self._cache:
            r, c = self.nz.shape
            rr, kk = max(1, min(key[0], r)), max(1, min(key[1], c))
            pr, pc = -r % rr, -c % kk
            padded = np.pad(self.nz, ((0, pr), (0, pc)))
            tiles = padded.reshape(padded.shape[0] // rr, rr, padded.shape[1] // kk, kk).sum(axis=(1, 3))
            self._cache[key] = tiles.ravel() * (key[0] * key[1]) / (rr * kk)
        return self._cache[key]

    def _map(self, rows: Any, k: Any, fn: Any) -> np.ndarray:
        rows, k = np.broadcast_arrays(_arr(rows), _arr(k))
        out = np.empty(rows.shape)
        pairs = np.stack([rows.ravel(), k.ravel()], axis=1)
        uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
        vals = np.array([fn(self._counts(int(a), int(b))) for a, b in uniq])
        out.ravel()[:] = vals[inv.ravel()]
        return out

    def prob_empty(self, rows: Any, k: Any) -> np.ndarray:
        return self._map(rows, k, lambda c: float(np.mean(c == 0)))

    def expected_occupancy(self, rows: Any, k: Any) -> np.ndarray:
        return self._map(rows, k, lambda c: float(np.mean(c)))

    def occupancy_quantile(self, rows: Any, k: Any, q: float = 0.99) -> np.ndarray:
        return self._map(rows, k, lambda c: float(np.quantile(c, q)))

    def occupancy_distribution(self, rows: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        vals, counts = np.unique(self._counts(rows, k), return_counts=True)
        return vals, counts / counts.sum()


def series_fills(ranks: Sequence[tuple[int, int]], data_density: float) -> tuple[float, ...]:
    """Per term of a TASD series of G_t:H patterns (``ranks`` = ((G_1, H), (G_2, H), ...), terms in
    order) on data whose nonzeros are uniformly random at ``data_density``: the expected share of
    each term's slots that hold a nonzero.

    A block of H elements holds X ~ Binomial(H, d) nonzeros; term t keeps the next largest
    min(max(X − C, 0), G_t) of them, C = G_1 + … + G_{t−1} (TASD's greedy order), and pads its other
    slots with zeros. So fill_t = E[min(max(X − C, 0), G_t)] / G_t. Example: 4:8+1:8 at d = 0.5 →
    (0.863, 0.363): the series stores 0.625 of the positions but 0.477 of them hold values.
    """
    if not 0.0 < data_density <= 1.0:
        raise ValueError(f"data density must be in (0, 1]; got {data_density}")
    hs = {h for _, h in ranks}
    if len(hs) != 1:
        raise ValueError(f"a fill needs one block size H for every term; got {sorted(hs)}")
    h = hs.pop()
    x = np.arange(h + 1)
    pmf = _binom_pmf(x, h, data_density)
    fills, before = [], 0
    for g, _ in ranks:
        held = float(np.dot(np.clip(x - before, 0, g), pmf))
        fills.append(min(1.0, held / g))
        before += g
    return tuple(fills)


def with_data_density(series: Any, density: float) -> str:
    """``series`` (text or a parsed series) in the notation, carrying the density of the data it was
    made from (``4:8+1:8@0.477``) where that changes what a zero-gating engine sees: the density is
    below 1 and every term is a G:H of one block size H (what :func:`series_fills` is defined for).
    Otherwise the series as it is. The one rule for every place that puts a TASD series on an
    operand of measured or stated density (the search's workloads, sweeps, the paper's figures)."""
    from tasder.sparsity.notation import parse_series
    from tasder.sparsity.patterns import GH

    text = str(series)
    terms = parse_series(series).terms
    if density < 1.0 and all(isinstance(t, GH) for t in terms) and len({t.h for t in terms}) == 1:
        return f"{text}@{density:g}"
    return text


def density_model(spec: str | DensityModel | None, size: int | None = None) -> DensityModel:
    """A density model from the pattern notation (or a model, passed through; ``None`` = dense).

    ``dense``; ``unstructured(0.1)`` or a bare ``0.1`` (uniform); ``2:4``; ``K1(2:4)->K0(2:4)``
    (HSS); ``4:8+1:8`` (TASD series). ``size`` (tensor elements) makes uniform models hypergeometric.
    A G:H pattern or series of them may name the density of the data it was made from after an
    ``@`` (``4:8+1:8@0.5``): its slots are then filled as :func:`series_fills` says, which is what a
    zero-gating engine sees (:attr:`DensityModel.value_density`); without it every slot holds a value.
    """
    if spec is None:
        return DenseModel()
    if isinstance(spec, DensityModel):
        return spec
    text = str(spec).strip()
    if "@" in text:
        return _filled(text, size)
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is not None:
        return DenseModel() if value >= 1.0 else UniformModel(value, size)
    from tasder.sparsity.notation import parse_series
    from tasder.sparsity.patterns import GH, HSS, Dense, Unstructured

    series = parse_series(text)
    models: list[DensityModel] = []
    for term in series.terms:
        if isinstance(term, Dense):
            models.append(DenseModel())
        elif isinstance(term, Unstructured):
            models.append(UniformModel(float(term.fraction), size) if term.fraction < 1 else DenseModel())
        elif isinstance(term, (GH, HSS)):
            ranks = tuple((r.g, r.h) for r in term.ranks_lowest_first)
            models.append(StructuredModel(ranks, str(term)))
        else:  # pragma: no cover - parse_series only yields the kinds above
            raise ValueError(f"density model: unsupported pattern {term!r}")
    if len(models) == 1:
        return models[0]
    if not all(isinstance(m, StructuredModel) for m in models):
        raise ValueError(f"density model {text!r}: every term of a TASD series must be structured (G:H or HSS)")
    return SeriesModel(tuple(models), text)  # type: ignore[arg-type]


def _filled(text: str, size: int | None) -> DensityModel:
    """``pattern@d``: the pattern's model with each term's slot fill on data of density d."""
    pattern, _, value = text.partition("@")
    try:
        data = float(value)
    except ValueError:
        raise ValueError(f"density model {text!r}: after '@' comes the data's density, a number in (0, 1]; "
                         f"got {value!r}") from None
    if not 0.0 < data <= 1.0:
        raise ValueError(f"density model {text!r}: the data's density after '@' must be in (0, 1]; got {value!r}")
    base = density_model(pattern.strip(), size)
    parts = base.parts if isinstance(base, SeriesModel) else (base,)
    if not all(isinstance(m, StructuredModel) and len(m.ranks) == 1 for m in parts):
        raise ValueError(f"density model {text!r}: '@density' applies to a G:H pattern or a series of them; "
                         f"got {pattern.strip()!r}")
    try:
        fills = series_fills([m.ranks[0] for m in parts], data)  # type: ignore[union-attr]
    except ValueError as exc:
        raise ValueError(f"density model {text!r}: {exc}") from None
    filled = tuple(replace(m, fill=f, text=m.label) for m, f in zip(parts, fills, strict=True))  # type: ignore[arg-type]
    label = f"{base.label}@{data:g}"
    if isinstance(base, SeriesModel):
        return SeriesModel(filled, label)  # type: ignore[arg-type]
    return replace(filled[0], text=label)
