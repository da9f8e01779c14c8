"""Workloads: problems with named dims and per-tensor projections (docs/design.md §4.1), and networks of them.

A problem is a loop nest over named **dims** with three tensors, as Timeloop's problem shapes
have: ``A`` (weights), ``B`` (inputs) and ``Z`` (outputs, the read-write one). Each tensor has
**ranks**, and each rank is a sum of ``dim·coefficient`` terms (Timeloop's projections). Two
shapes ship:

* **GEMM** ``Z[m,n] += A[m,k]·B[k,n]`` — dims M, K, N (a linear layer over T tokens: M = out,
  K = in, N = T);
* **convolution** ``Z[n,m,p,q] += A[m,c,r,s]·B[n, c, p·σh + r·δh, q·σw + s·δw]`` — dims R, S, P,
  Q, C, M, N with strides σ and dilations δ: the input rank along the height runs over
  ``(P−1)·σh + (R−1)·δh + 1`` rows (the sliding window's halo included), as in Timeloop's
  ``cnn-layer`` shape (which names the output channels K). Its backward passes
  (:func:`conv_shape` ``phase="BP"`` / ``"WU"``) are the same loop nest with other tensors in
  the A/B/Z roles: the data gradient's output has the sliding projection, the weight gradient's
  input does.

Every other part of the model reads a problem through its :class:`ProblemShape` (tile footprints,
reuse, the density ranks of the operands), so a new shape — a grouped dim, the term dim of a
TASD series — needs no new code there. A problem also has a **GEMM view** (``M``, ``K``, ``N``):
the product of the dims that index A and Z only, A and B only, and B and Z only (a convolution's
im2col GEMM: M = out channels, K = C·R·S, N = N·P·Q), used for reports and the GEMM-role mapper
constraints. A network is an ordered list of layers with repeat counts; layers are evaluated
independently and summed, as Timeloop/Sparseloop users do.

This module knows problems and workload YAML files only: the zoo's models and shape tables, and
tracing a PyTorch model, are one layer up in :mod:`tasder.workloads` (the accelerator model
depends on nothing but :mod:`tasder.sparsity`'s notation).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from tasder.errors import InvalidParameterError
from tasder.hw.density import DenseModel, DensityModel, density_model
from tasder.hw.spec import SpecError, check_keys, get_int, get_str, load_section

__all__ = [
    "CONV_DIMS",
    "DIMS",
    "GEMM",
    "TENSORS",
    "TENSOR_DIMS",
    "Network",
    "Problem",
    "ProblemShape",
    "conv_problem",
    "conv_shape",
    "from_conv2d",
    "from_layer_shapes",
    "from_linear",
    "load_network",
]

#: Largest bound of a dim (and repeat, word_bits) of a Problem: tensor sizes are products of
#: bounds computed in 64-bit integers, so each bound stays below 2**31 (LLM vocabularies are ~2**18).
MAX_DIM = 2**31
_WHY_DIM = "tensor sizes, products of dims, must fit the model's 64-bit integers"

#: The GEMM's loop dimensions, in the order used by every GEMM array in :mod:`tasder.hw`.
DIMS: tuple[str, str, str] = ("M", "K", "N")
#: The three data spaces: weights, inputs, outputs (Timeloop's Weights/Inputs/Outputs); Z is read-write.
TENSORS: tuple[str, str, str] = ("A", "B", "Z")
#: Which dimensions index which tensor of a GEMM.
TENSOR_DIMS: dict[str, tuple[str, ...]] = {"A": ("M", "K"), "B": ("K", "N"), "Z": ("M", "N")}
#: A convolution's dims, in Timeloop's ``cnn-layer`` order (M for its K, the output channels).
CONV_DIMS: tuple[str, ...] = ("R", "S", "P", "Q", "C", "M", "N")

#: One term of a rank: (dim, coefficient name), None for a coefficient of 1.
Term = tuple[str, "str | None"]
#: One rank of a tensor: the sum of its terms' dim·coefficient.
Rank = tuple[Term, ...]

_DIM_NAME = re.compile(r"[A-Z]")


def _bad(msg: str) -> InvalidParameterError:
    return InvalidParameterError(msg)


@dataclass(frozen=True)
class ProblemShape:
    """A problem's dims and how they index each tensor (Timeloop's ``problem.shape``).

    Attributes:
        name: ``GEMM``, ``CNN-Layer`` (and its ``-BP``/``-WU`` passes) or a user's.
        dims: loop dimensions, single capital letters (Timeloop allows no longer names).
        projections: per tensor in :data:`TENSORS` order (A, B, Z), its ranks outermost first;
            a rank is a tuple of ``(dim, coefficient)`` terms (coefficient None = 1).
        coefficients: ``(name, value)`` of the coefficients the terms name (strides, dilations);
            each value is an integer ≥ 1.
        density_dims: for A and B, the dims their sparsity patterns run along (a G:H block is H
            consecutive elements of these ranks): K for a GEMM, the input channels C for a
            convolution's weights (at each kernel position, as ``tasder.nn`` prunes them,
            docs/design.md §3.3) and inputs (at each position). Empty = the operand's dims that do
            not index Z, of its one-dim ranks.
        tensor_names: what each tensor is called (``Weights``/``Inputs``/``Outputs`` for a
            convolution, as Timeloop names them); reports and exporters use them.
    """

    name: str
    dims: tuple[str, ...]
    projections: tuple[tuple[Rank, ...], tuple[Rank, ...], tuple[Rank, ...]]
    coefficients: tuple[tuple[str, int], ...] = ()
    density_dims: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
    tensor_names: tuple[str, str, str] = ("A", "B", "Z")

    def __post_init__(self) -> None:
        dims = tuple(self.dims)
        object.__setattr__(self, "dims", dims)
        if not dims:
            raise _bad(f"problem shape {self.name!r}: no dims")
        for d in dims:
            if not isinstance(d, str) or not _DIM_NAME.fullmatch(d):
                raise _bad(f"problem shape {self.name!r}: dim {d!r} must be one capital letter (A-Z)")
        if len(set(dims)) != len(dims):
            raise _bad(f"problem shape {self.name!r}: dims {dims} repeat a name")
        coefs = tuple((str(k), v) for k, v in self.coefficients)
        object.__setattr__(self, "coefficients", coefs)
        names = [k for k, _ in coefs]
        if len(set(names)) != len(names):
            raise _bad(f"problem shape {self.name!r}: coefficient names {names} repeat")
        for k, v in coefs:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise _bad(f"problem shape {self.name!r}: coefficient {k}={v!r} must be an integer ≥ 1 "
                           f"(a stride or dilation below 1 has no meaning)")
        if len(self.projections) != 3:
            raise _bad(f"problem shape {self.name!r}: projections must give the ranks of A, B and Z")
        used: set[str] = set()
        proj = []
        for t, ranks in zip(TENSORS, self.projections, strict=True):
            if not ranks:
                raise _bad(f"problem shape {self.name!r}: tensor {t} has no rank")
            out = []
            for rank in ranks:
                if not rank:
                    raise _bad(f"problem shape {self.name!r}: tensor {t} has an empty rank")
                terms = []
                for term in rank:
                    d, c = term
                    if d not in dims:
                        raise _bad(f"problem shape {self.name!r}: tensor {t} names the unknown dim {d!r}; "
                                   f"dims are {', '.join(dims)}")
                    if c is not None and c not in names:
                        raise _bad(f"problem shape {self.name!r}: tensor {t} names the unknown coefficient {c!r}")
                    terms.append((d, c))
                    used.add(d)
                if len({d for d, _ in terms}) != len(terms):
                    raise _bad(f"problem shape {self.name!r}: a rank of {t} names one dim twice")
                out.append(tuple(terms))
            proj.append(tuple(out))
        object.__setattr__(self, "projections", tuple(proj))
        unused = [d for d in dims if d not in used]
        if unused:
            raise _bad(f"problem shape {self.name!r}: dim(s) {', '.join(unused)} index no tensor")
        dd = []
        for ti, t in enumerate(("A", "B")):
            given = tuple(self.density_dims[ti]) if self.density_dims else ()
            simple = {r[0][0] for r in proj[ti] if len(r) == 1}
            if not given:
                z_dims = {d for r in proj[2] for d, _ in r}
                given = tuple(d for d in dims if d in simple and d not in z_dims)
            for d in given:
                if d not in simple:
                    raise _bad(f"problem shape {self.name!r}: density dim {d!r} of {t} must be a one-dim rank of {t}")
            dd.append(given)
        object.__setattr__(self, "density_dims", (dd[0], dd[1]))

    # -- compiled forms for the vectorized model ------------------------------------------------

    @cached_property
    def _coef(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.coefficients}

    @cached_property
    def rel(self) -> np.ndarray:
        """(3, D) bool: which dims index which tensor."""
        return np.array([[any(d == dd for r in ranks for dd, _ in r) for d in self.dims]
                         for ranks in self.projections])

    @cached_property
    def _ranks(self) -> tuple[tuple[tuple[np.ndarray, np.ndarray], ...], ...]:
        """Per tensor, per rank: (dim indices, coefficients)."""
        out = []
        for ranks in self.projections:
            out.append(tuple((np.array([self.dims.index(d) for d, _ in r]),
                              np.array([1.0 if c is None else float(self._coef[c]) for _, c in r])) for r in ranks))
        return tuple(out)

    @cached_property
    def simple(self) -> tuple[bool, bool, bool]:
        """Per tensor: every rank is one dim with coefficient 1 (the footprint is a product of extents)."""
        return tuple(all(len(r) == 1 and r[0][1] is None for r in ranks)  # type: ignore[return-value]
                     for ranks in self.projections)

    @cached_property
    def sliding(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """Per tensor: indices of the dims that share a rank with another dim (a sliding window:
        consecutive tiles along them can overlap). Only these dims give fill deltas."""
        out = []
        for ranks in self._ranks:
            s = sorted({int(i) for idx, _ in ranks if len(idx) > 1 for i in idx})
            out.append(tuple(s))
        return tuple(out)  # type: ignore[return-value]

    @cached_property
    def scales(self) -> np.ndarray:
        """(3, D) bool: the tensor's footprint scales by p when the dim's extent does (the dim is in
        one-dim ranks of coefficient 1 only, or not in the tensor at all)."""
        out = np.ones((3, len(self.dims)), dtype=bool)
        for t, ranks in enumerate(self.projections):
            for r in ranks:
                if len(r) > 1 or r[0][1] is not None:
                    for d, _ in r:
                        out[t, self.dims.index(d)] = False
        return out

    @cached_property
    def roles(self) -> tuple[str, ...]:
        """Per dim its GEMM role: ``M`` (indexes A and Z, not B), ``K`` (A and B, not Z: a reduction
        dim), ``N`` (B and Z, not A), or ``-`` (any other pattern, e.g. a dim of A alone)."""
        out = []
        for j in range(len(self.dims)):
            a, b, z = (bool(self.rel[t, j]) for t in range(3))
            out.append("M" if (a and z and not b) else "K" if (a and b and not z) else "N" if (b and z and not a)
                       else "-")
        return tuple(out)

    @cached_property
    def _k_ranks(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """For A and B: indices of their one-dim ranks along the density dims."""
        out = []
        for ti in (0, 1):
            out.append(tuple(i for i, r in enumerate(self.projections[ti])
                             if len(r) == 1 and r[0][0] in self.density_dims[ti]))
        return (out[0], out[1])

    def rank_extents(self, ext: np.ndarray, t: int) -> list[np.ndarray]:
        """Distinct coordinates of each rank of tensor ``t`` (index in TENSORS) a tile with dim
        extents ``ext`` (..., D) touches: a one-dim rank its extent; a two-dim rank x·a + y·b
        (a sliding window) X·Y − max(0, X − b/g)·max(0, Y − a/g) with g = gcd(a, b) — each value's
        representations form one chain (x + k·b/g, y − k·a/g), so the count is the grid less the
        points with a successor in it; (X−1)·a + (Y−1)·b + 1 when the window has no gaps, as
        Timeloop's bounding box; fewer when the stride skips words (a 1×1 stride-2 window touches
        every other one). A rank of more dims: its bounding box."""
        out = []
        for idx, coef in self._ranks[t]:
            if len(idx) == 1:
                out.append(ext[..., idx[0]])
            elif len(idx) == 2:
                a, b = int(coef[0]), int(coef[1])
                g = math.gcd(a, b)
                x, y = ext[..., idx[0]], ext[..., idx[1]]
                out.append(x * y - np.maximum(0.0, x - b // g) * np.maximum(0.0, y - a // g))
            else:
                out.append((ext[..., idx] - 1.0) @ coef + 1.0)
        return out

    @cached_property
    def _simple_dims(self) -> tuple[tuple[int, ...] | None, ...]:
        """Per tensor: the dim indices of its ranks when all are one dim with coefficient 1, else None."""
        return tuple(tuple(self.dims.index(r[0][0]) for r in ranks) if simple else None
                     for ranks, simple in zip(self.projections, self.simple, strict=True))

    def footprint(self, ext: np.ndarray, t: int) -> np.ndarray:
        """Words of tensor ``t``'s tile spanning dim extents ``ext`` (..., D): the product over its
        ranks of the coordinates each touches (:meth:`rank_extents`)."""
        idx = self._simple_dims[t]
        if idx is not None:
            out = ext[..., idx[0]] * 1.0  # a new array, never a view of ext
            for i in idx[1:]:
                out = out * ext[..., i]
            return out
        out = None
        for r in self.rank_extents(ext, t):
            out = r if out is None else out * r
        return out  # type: ignore[return-value]

    def rows_k(self, ext: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, k) of operand ``t`` (0 = A, 1 = B) for extents ``ext``: ``k`` the extent along its
        density ranks (the fibers its patterns run along), ``rows`` = footprint / k."""
        if self.simple[t] and len(self._k_ranks[t]) == 1:
            j = self.dims.index(self.projections[t][self._k_ranks[t][0]][0][0])
            k = ext[..., j]
        else:
            ranks = self.rank_extents(ext, t)
            k = np.ones(np.shape(ranks[0]))
            for i in self._k_ranks[t]:
                k = k * ranks[i]
        return self.footprint(ext, t) / k, k

    def overlap(self, ext: np.ndarray, t: int, d: int, shift: np.ndarray) -> np.ndarray:
        """Words a tile of ``t`` (extents ``ext``) shares with itself moved by ``shift`` along dim
        ``d`` (``shift`` ≥ the tile's extent along ``d``: a step of a loop outside it). Per rank: all
        of it without ``d``; none for a one-dim rank; for a window without gaps the interval
        max(0, extent − coefficient·shift); for one with gaps the common words of the two grids
        (counted once per distinct shape, :func:`_grid_overlap`)."""
        out = None
        for (idx, coef), r in zip(self._ranks[t], self.rank_extents(ext, t), strict=True):
            hit = np.flatnonzero(idx == d)
            if not hit.size:
                part = r
            elif len(idx) == 1:
                part = np.maximum(0.0, ext[..., d] - shift)
            else:
                box = (ext[..., idx] - 1.0) @ coef + 1.0
                part = np.maximum(0.0, box - coef[hit[0]] * shift)
                gapped = r < box
                if len(idx) == 2 and np.any(gapped):
                    x, y = np.broadcast_arrays(ext[..., idx[0]], ext[..., idx[1]], shift)[:2]
                    sh = np.broadcast_to(shift, x.shape)
                    keys = np.stack([x[gapped], y[gapped], sh[gapped]], axis=-1).astype(np.int64)
                    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
                    vals = np.array([_grid_overlap(int(coef[0]), int(coef[1]), int(hit[0]), *map(int, k))
                                     for k in uniq])
                    part = np.array(part, dtype=np.float64, copy=True)
                    part[gapped] = vals[inv.ravel()]
            out = part if out is None else out * part
        return out  # type: ignore[return-value]

    def touched(self, ext_c: np.ndarray, tf: np.ndarray, sf: np.ndarray, t: int) -> np.ndarray:
        """Words of tensor ``t`` one instance of a level touches over a run (B,): its tile (extents
        ``ext_c`` (B, D)) moved by the temporal loops above it (``tf``, ``sf``: (B, levels above, D)
        factors). Where those loops leave the instance's coordinates contiguous — no spatial loop of
        a dim inside a temporal loop of it — this is the footprint of the whole range; a sliding
        rank over spread coordinates is counted point by point (once per distinct loop structure)."""
        ext = ext_c * np.prod(tf, axis=1)
        out = self.footprint(ext, t)
        nl = tf.shape[1]
        if self.simple[t] or nl == 0:
            return out
        # spread[b, d]: some temporal loop of d above has a spatial loop of d inside it.
        inner = np.cumprod(sf[:, ::-1], axis=1)[:, ::-1]  # spatial factors at levels ≥ j
        spread = np.any((tf > 1) & (inner > 1), axis=1)  # (B, D)
        for (idx, coef), r in zip(self._ranks[t], self.rank_extents(ext, t), strict=True):
            if len(idx) != 2:
                continue
            rows = np.flatnonzero(spread[:, idx[0]] | spread[:, idx[1]])
            if not rows.size:
                continue
            dx, dy = int(idx[0]), int(idx[1])
            keys = np.concatenate([ext_c[rows][:, [dx, dy]], tf[rows][:, :, dx], sf[rows][:, :, dx], tf[rows][:, :, dy],
                                   sf[rows][:, :, dy]], axis=1).astype(np.int64)
            uniq, inv = np.unique(keys, axis=0, return_inverse=True)
            vals = np.array([_touched(int(coef[0]), int(coef[1]),
                                      (int(k[0]), tuple(k[2:2 + nl].tolist()), tuple(k[2 + nl:2 + 2 * nl].tolist())),
                                      (int(k[1]), tuple(k[2 + 2 * nl:2 + 3 * nl].tolist()),
                                       tuple(k[2 + 3 * nl:].tolist())))
                             for k in uniq])
            out = np.array(out, dtype=np.float64, copy=True)
            out[rows] = out[rows] / r[rows] * vals[inv.ravel()]
        return out

    def index_text(self, t: int) -> str:
        """``A[m,k]``-style text of tensor ``t`` (``B[n,c,p+r,q+s]`` for a convolution's inputs)."""
        parts = []
        for rank in self.projections[t]:
            parts.append("+".join(d.lower() if c is None or self._coef[c] == 1 else f"{self._coef[c]}{d.lower()}"
                                  for d, c in rank))
        return f"{TENSORS[t]}[{','.join(parts)}]"


@lru_cache(maxsize=4096)
def _grid_overlap(a: int, b: int, moving: int, x: int, y: int, shift: int) -> float:
    """Common values of {a·i + b·j : i < x, j < y} and the same grid moved by ``shift`` along its
    term ``moving`` (0: i, 1: j). Only windows with gaps get here (rare: a stride that skips words
    with a split window); their shapes repeat across a batch of mappings, hence the cache."""
    i, j = np.meshgrid(np.arange(x), np.arange(y), indexing="ij")
    values = np.unique(a * i + b * j)
    moved = values + (a if moving == 0 else b) * shift
    return float(np.intersect1d(values, moved, assume_unique=True).size)


def _coordinates(extent: int, temporal: tuple[int, ...], spatial: tuple[int, ...]) -> np.ndarray:
    """The coordinates along one dim that one instance of a level covers over a run: its tile's
    ``extent`` repeated by the temporal loops above it (``temporal``/``spatial`` factors per level,
    outermost first), the other instances of each spatial loop taking the coordinates between."""
    coords, span = np.arange(extent), extent
    for t, sp in zip(reversed(temporal), reversed(spatial), strict=True):
        span *= sp
        coords = (coords[None, :] + span * np.arange(t)[:, None]).ravel()
        span *= t
    return coords


@lru_cache(maxsize=16384)
def _touched(a: int, b: int, x: tuple[int, tuple[int, ...], tuple[int, ...]],
             y: tuple[int, tuple[int, ...], tuple[int, ...]]) -> float:
    """Distinct values of a·i + b·j over one instance's coordinates i, j (see :func:`_coordinates`)."""
    i, j = _coordinates(*x), _coordinates(*y)
    return float(np.unique(a * i[:, None] + b * j[None, :]).size)


def _simple(*dims: str) -> tuple[Rank, ...]:
    return tuple(((d, None),) for d in dims)


#: The GEMM shape ``Z[m,n] += A[m,k]·B[k,n]``.
GEMM = ProblemShape("GEMM", DIMS, (_simple("M", "K"), _simple("K", "N"), _simple("M", "N")),
                    density_dims=(("K",), ("K",)))

#: Convolution passes: FF (inference), BP (the input gradient), WU (the weight gradient).
PHASES = ("FF", "BP", "WU")


@lru_cache(maxsize=256)
def conv_shape(stride: tuple[int, int] = (1, 1), dilation: tuple[int, int] = (1, 1),
               phase: str = "FF") -> ProblemShape:
    """A 2-D convolution's shape over ``CONV_DIMS`` (R, S kernel; P, Q output; C in, M out channels;
    N batch), with ``stride``/``dilation`` per spatial dim (height pairs P with R, width Q with S).

    ``phase`` puts other tensors in the A/B/Z roles over the same loop nest (training,
    docs/design.md §4.9): ``FF`` A = weights, B = inputs (sliding), Z = outputs; ``BP`` A = weights,
    B = output gradient, Z = input gradient (sliding: the overlapping windows add up in place);
    ``WU`` A = output gradient, B = inputs (sliding), Z = weight gradient.
    """
    for name, pair in (("stride", stride), ("dilation", dilation)):
        if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in pair):
            raise _bad(f"convolution {name} {pair!r} must be integers ≥ 1 (one per spatial dim)")
    coefs = (("Hstride", int(stride[0])), ("Wstride", int(stride[1])),
             ("Hdilation", int(dilation[0])), ("Wdilation", int(dilation[1])))
    weights = _simple("M", "C", "R", "S")
    outputs = _simple("N", "M", "P", "Q")
    inputs = (((("N", None),)), (("C", None),), (("R", "Hdilation"), ("P", "Hstride")),
              (("S", "Wdilation"), ("Q", "Wstride")))
    if phase == "FF":
        return ProblemShape("CNN-Layer", CONV_DIMS, (weights, inputs, outputs), coefs, (("C",), ("C",)),
                            ("Weights", "Inputs", "Outputs"))
    if phase == "BP":
        return ProblemShape("CNN-Layer-BP", CONV_DIMS, (weights, outputs, inputs), coefs, (("M",), ("M",)),
                            ("Weights", "OutputGradients", "InputGradients"))
    if phase == "WU":
        return ProblemShape("CNN-Layer-WU", CONV_DIMS, (outputs, inputs, weights), coefs, (("N", "P", "Q"), ("N",)),
                            ("OutputGradients", "Inputs", "WeightGradients"))
    raise _bad(f"convolution phase {phase!r} must be one of {', '.join(PHASES)}")


def _pair(value: Any, what: str) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise _bad(f"{what} {value!r}: expected an integer ≥ 1 or a pair (height, width) of them")
        out = (value[0], value[1])
    else:
        out = (value, value)
    for v in out:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise _bad(f"{what} {value!r}: expected an integer ≥ 1 or a pair (height, width) of them")
    return int(out[0]), int(out[1])


#: The density model of an operand given as None (frozen, so one instance serves every Problem).
_DENSE = DenseModel()


@dataclass(frozen=True)
class Problem:
    """One layer: a loop nest (``shape`` with ``bounds``), operand word width in bits, how often it
    runs per forward pass, and the density models of its operands.

    A GEMM is given by ``M``, ``K``, ``N``; any other shape by ``shape`` and ``bounds`` (a mapping
    dim → bound, or a tuple in ``shape.dims`` order), and ``M``/``K``/``N`` are then its GEMM
    view (see the module doc). :func:`conv_problem` and :func:`from_conv2d` build convolutions.

    ``a_density`` (weights) and ``b_density`` (inputs) accept the pattern notation (``dense``,
    ``2:4``, ``4:8+1:8``, ``K1(2:4)->K0(2:4)``, ``unstructured(0.1)``), None (dense) or a
    :class:`~tasder.hw.density.DensityModel`; strings and None are converted here, once, with the
    operand's size (so a uniform model is exact for the tensor), and the fields always hold a
    ``DensityModel`` afterwards (``str(p.a_density)`` gives the notation back). Patterns run along
    the shape's density dims (K; a convolution's input channels C).

    >>> p = Problem("fc", M=64, K=128, N=8, a_density="2:4")
    >>> type(p.a_density).__name__, str(p.a_density), str(p.b_density), p.dims
    ('StructuredModel', '2:4', 'dense', ('M', 'K', 'N'))
    >>> c = conv_problem("conv", C=64, M=128, R=3, S=3, P=28, Q=28, stride=2)
    >>> (c.M, c.K, c.N), c.macs == c.M * c.K * c.N, c.tensor_size("B")  # the inputs: 64 × 57 × 57
    ((128, 576, 784), True, 207936)
    """

    name: str
    M: int | None = None
    K: int | None = None
    N: int | None = None
    repeat: int = 1
    word_bits: int = 16
    a_density: DensityModel = _DENSE
    b_density: DensityModel = _DENSE
    shape: ProblemShape | None = None
    bounds: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        shape: Any = self.shape
        if shape is None:
            for key in ("M", "K", "N"):
                self._check_int(key, getattr(self, key), MAX_DIM)
            object.__setattr__(self, "shape", GEMM)
            object.__setattr__(self, "bounds", (self.M, self.K, self.N))
        else:
            if not isinstance(shape, ProblemShape):
                raise _bad(f"Problem {self.name!r}: shape must be a ProblemShape; got {type(shape).__name__}")
            bounds = self._bounds(shape, self.bounds)
            object.__setattr__(self, "bounds", bounds)
            view = self._gemm_view(shape, bounds)
            for key, value in zip(DIMS, view, strict=True):
                given = getattr(self, key)
                if given is not None and given != value:
                    raise _bad(f"Problem {self.name!r}: {key}={given!r} is not its {shape.name} shape's GEMM view "
                               f"({key}={value}); give the bounds only")
                object.__setattr__(self, key, value)
        for key in ("repeat", "word_bits"):
            self._check_int(key, getattr(self, key), MAX_DIM)
        for key, t in (("a_density", "A"), ("b_density", "B")):
            spec: Any = getattr(self, key)
            if not isinstance(spec, DensityModel):
                if spec is not None and (isinstance(spec, bool) or not isinstance(spec, (str, int, float))):
                    raise _bad(f"Problem {self.name!r}: {key} must be a pattern string, a density, None or a "
                               f"DensityModel; got {type(spec).__name__}")
                try:
                    model = density_model(spec, self.tensor_size(t))
                except ValueError as exc:
                    raise ValueError(f"Problem {self.name!r}: {key}={spec!r}: {exc}") from None
                object.__setattr__(self, key, model)  # frozen: set once, here

    def _check_int(self, key: str, value: Any, limit: int) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise _bad(f"Problem {self.name!r}: {key} must be a positive integer; got {value!r}")
        if value > limit:
            raise _bad(f"Problem {self.name!r}: {key}={value:,} is above the limit of 2**31 ({_WHY_DIM})")

    def _bounds(self, shape: ProblemShape, bounds: Any) -> tuple[int, ...]:
        if bounds is None:
            raise _bad(f"Problem {self.name!r}: a {shape.name} problem needs bounds for {', '.join(shape.dims)}")
        if isinstance(bounds, Mapping):
            unknown = [d for d in bounds if d not in shape.dims]
            if unknown:
                raise _bad(f"Problem {self.name!r}: unknown dim {unknown[0]!r}; {shape.name} dims are "
                           f"{', '.join(shape.dims)}")
            missing = [d for d in shape.dims if d not in bounds]
            if missing:
                raise _bad(f"Problem {self.name!r}: no bound for dim {missing[0]!r} of {shape.name}")
            values = [bounds[d] for d in shape.dims]
        else:
            values = list(bounds)
            if len(values) != len(shape.dims):
                raise _bad(f"Problem {self.name!r}: {len(values)} bound(s) for the {len(shape.dims)} dims "
                           f"{', '.join(shape.dims)} of {shape.name}")
        for d, v in zip(shape.dims, values, strict=True):
            self._check_int(d, v, MAX_DIM)
        out = tuple(int(v) for v in values)
        for t in range(3):
            if shape.footprint(np.array(out, dtype=np.float64), t) > 2**62:
                raise _bad(f"Problem {self.name!r}: tensor {TENSORS[t]} has more than 2**62 words ({_WHY_DIM})")
        return out

    @staticmethod
    def _gemm_view(shape: ProblemShape, bounds: tuple[int, ...]) -> tuple[int, int, int]:
        out = []
        for role in DIMS:
            out.append(math.prod(b for b, r in zip(bounds, shape.roles, strict=True) if r == role))
        return (out[0], out[1], out[2])

    @property
    def dims(self) -> tuple[str, ...]:
        """The loop dims (``('M', 'K', 'N')`` for a GEMM)."""
        return self.shape.dims  # type: ignore[union-attr]

    @property
    def sizes(self) -> tuple[int, ...]:
        """The bounds in :attr:`dims` order (``(M, K, N)`` for a GEMM)."""
        return self.bounds  # type: ignore[return-value]

    @property
    def is_gemm(self) -> bool:
        return self.shape == GEMM

    def bound(self, dim: str) -> int:
        """The bound of one dim (``p.bound("N")`` is a convolution's batch; ``p.N`` its GEMM view)."""
        if dim not in self.dims:
            raise _bad(f"Problem {self.name!r} has no dim {dim!r}; dims are {', '.join(self.dims)}")
        return self.sizes[self.dims.index(dim)]

    @property
    def macs(self) -> int:
        """MACs of one instance (not multiplied by ``repeat``): the product of the bounds."""
        return math.prod(self.sizes)

    def tensor_size(self, tensor: str) -> int:
        """Words of ``tensor`` (A, B or Z): its footprint over the whole problem (a convolution's
        inputs: N·C·H·W with H = (P−1)·stride + (R−1)·dilation + 1)."""
        if tensor not in TENSORS:
            raise _bad(f"tensor {tensor!r} must be one of {', '.join(TENSORS)}")
        return int(self.shape.footprint(np.array(self.sizes, dtype=np.float64), TENSORS.index(tensor)))  # type: ignore[union-attr]

    def geometry(self) -> dict[str, Any] | None:
        """A convolution's ``C, M, R, S, P, Q, N`` bounds, ``stride`` and ``dilation`` (height,
        width); None for any other shape."""
        shape = self.shape
        assert shape is not None
        if shape.dims != CONV_DIMS or not shape.name.startswith("CNN-Layer"):
            return None
        out: dict[str, Any] = dict(zip(self.dims, self.sizes, strict=True))
        c = dict(shape.coefficients)
        out["stride"] = (c["Hstride"], c["Wstride"])
        out["dilation"] = (c["Hdilation"], c["Wdilation"])
        return out

    @property
    def label(self) -> str:
        """A short description of the loop nest: ``64-576-3136`` (M-K-N) for a GEMM,
        ``conv 3x3/2 C64 M128 28x28`` for a convolution (``/2`` the stride, ``d2`` a dilation, ``N4`` a batch)."""
        g = self.geometry()
        if g is None:
            if self.is_gemm:
                return f"{self.M}-{self.K}-{self.N}"
            return f"{self.shape.name} " + " ".join(f"{d}{b}" for d, b in zip(self.dims, self.sizes, strict=True))  # type: ignore[union-attr]
        phase = {"CNN-Layer": "conv", "CNN-Layer-BP": "conv-BP", "CNN-Layer-WU": "conv-WU"}.get(
            self.shape.name, self.shape.name)  # type: ignore[union-attr]
        st = "" if g["stride"] == (1, 1) else f"/{_pair_text(g['stride'])}"
        dl = "" if g["dilation"] == (1, 1) else f" d{_pair_text(g['dilation'])}"
        batch = "" if g["N"] == 1 else f" N{g['N']}"
        return f"{phase} {g['R']}x{g['S']}{st}{dl} C{g['C']} M{g['M']} {g['P']}x{g['Q']}{batch}"


def _pair_text(p: tuple[int, int]) -> str:
    return str(p[0]) if p[0] == p[1] else f"{p[0]},{p[1]}"


@dataclass(frozen=True)
class Network:
    """An ordered list of layers; totals weight each layer by its ``repeat``."""

    name: str
    layers: tuple[Problem, ...]

    def __post_init__(self) -> None:
        if not self.layers:
            raise ValueError(f"Network {self.name!r} has no layers")

    @property
    def macs(self) -> int:
        return sum(p.macs * p.repeat for p in self.layers)


def from_linear(name: str, in_features: int, out_features: int, tokens: int = 1, *, repeat: int = 1,
                word_bits: int = 16) -> Problem:
    """An ``nn.Linear(in, out)`` applied to ``tokens`` rows: M = out, K = in, N = tokens."""
    return Problem(name, M=out_features, K=in_features, N=tokens, repeat=repeat, word_bits=word_bits)


def conv_problem(name: str, *, C: int, M: int, R: int, S: int, P: int, Q: int, N: int = 1,  # noqa: N803
                 stride: int | tuple[int, int] = 1, dilation: int | tuple[int, int] = 1, repeat: int = 1,
                 word_bits: int = 16, a_density: Any = None, b_density: Any = None, phase: str = "FF") -> Problem:
    """A native convolution: ``C`` input and ``M`` output channels, an ``R``×``S`` kernel, a
    ``P``×``Q`` output, batch ``N``, ``stride``/``dilation`` (an int or (height, width)).
    Padding is not a loop bound: the inputs are the padded tensor the windows read (as Timeloop's)."""
    shape = conv_shape(_pair(stride, f"Conv {name!r}: stride"), _pair(dilation, f"Conv {name!r}: dilation"), phase)
    return Problem(name, repeat=repeat, word_bits=word_bits, a_density=a_density, b_density=b_density, shape=shape,
                   bounds={"R": R, "S": S, "P": P, "Q": Q, "C": C, "M": M, "N": N})


def from_conv2d(name: str, in_channels: int, out_channels: int, kernel: int | tuple[int, int],
                out_hw: int | tuple[int, int], batch: int = 1, *, stride: int | tuple[int, int] = 1,
                dilation: int | tuple[int, int] = 1, groups: int = 1, repeat: int = 1, word_bits: int = 16,
                im2col: bool = False) -> Problem:
    """A Conv2d, once per group (``repeat`` × ``groups``): natively (the 7-dim convolution with its
    sliding window, :func:`conv_problem`) or, with ``im2col=True``, as its im2col GEMM (M = out/groups,
    K = (C/groups)·R·S, N = P·Q·batch)."""
    r, s = (kernel, kernel) if isinstance(kernel, int) else kernel
    p, q = (out_hw, out_hw) if isinstance(out_hw, int) else out_hw
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or in_channels % groups \
            or out_channels % groups:
        raise ValueError(f"Conv2d {name!r}: groups={groups} must divide in_channels={in_channels} "
                         f"and out_channels={out_channels}")
    if im2col:
        _pair(stride, f"Conv2d {name!r}: stride")
        _pair(dilation, f"Conv2d {name!r}: dilation")
        return Problem(name, M=out_channels // groups, K=in_channels // groups * r * s, N=p * q * batch,
                       repeat=repeat * groups, word_bits=word_bits)
    return conv_problem(name, C=in_channels // groups, M=out_channels // groups, R=r, S=s, P=p, Q=q, N=batch,
                        stride=stride, dilation=dilation, repeat=repeat * groups, word_bits=word_bits)


def from_layer_shapes(name: str, layers: Sequence[Any], *, word_bits: int = 16, im2col: bool = False) -> Network:
    """Rows of a :mod:`tasder.zoo.shapes` table as a Network: a row with convolution geometry
    (``conv`` not None) is a native convolution unless ``im2col``; every other row its GEMM
    (``M``, ``K``, ``N``)."""
    out = []
    for x in layers:
        g = getattr(x, "conv", None)
        if g is not None and not im2col:
            out.append(conv_problem(x.name, C=g.C, M=g.M, R=g.R, S=g.S, P=g.P, Q=g.Q, N=g.N, stride=g.stride,
                                    dilation=g.dilation, repeat=x.repeat, word_bits=word_bits))
        else:
            out.append(Problem(x.name, M=x.M, K=x.K, N=x.N, repeat=x.repeat, word_bits=word_bits))
    return Network(name, tuple(out))


_GEMM_KEYS = ("name", "M", "K", "N", "repeat", "word_bits")
_CONV_KEYS = ("name", "C", "M", "R", "S", "P", "Q", "N", "stride", "dilation", "repeat", "word_bits")


def _layer(layer: Any, i: int, bits: int, where: str) -> Problem:
    if not isinstance(layer, dict):
        raise SpecError(f"{where}: workload.layers[{i}] must be a mapping with M, K, N (a GEMM) or C, M, R, S, P, Q "
                        f"(a convolution)")
    is_conv = "C" in layer
    if is_conv == ("K" in layer):
        raise SpecError(f"{layer.where()}: workload.layers[{i}] must give K (a GEMM: M, K, N) or C (a convolution: "
                        f"C, M, R, S, P, Q), not {'both' if is_conv else 'neither'}")
    name = get_str(layer, "name", f"layer{i}")
    word_bits = get_int(layer, "word_bits", bits, maximum=1024, why="wider than any datatype")
    repeat = get_int(layer, "repeat", 1, maximum=MAX_DIM, why=_WHY_DIM)
    if not is_conv:
        check_keys(layer, _GEMM_KEYS, required=("M", "K", "N"))
        dims = {k: get_int(layer, k, maximum=MAX_DIM, why=_WHY_DIM) for k in ("M", "K", "N")}
        return Problem(name, M=dims["M"], K=dims["K"], N=dims["N"], repeat=repeat, word_bits=word_bits)
    check_keys(layer, _CONV_KEYS, required=("C", "M", "R", "S", "P", "Q"))
    dims = {k: get_int(layer, k, 1 if k == "N" else None, maximum=MAX_DIM, why=_WHY_DIM)
            for k in ("C", "M", "R", "S", "P", "Q", "N")}
    pairs = {}
    for key in ("stride", "dilation"):
        value = layer.get(key, 1)
        try:
            pairs[key] = _pair(value, f"workload.layers[{i}].{key}")
        except InvalidParameterError as exc:
            raise SpecError(f"{layer.where(key)}: {exc}") from None
    return conv_problem(name, **dims, stride=pairs["stride"], dilation=pairs["dilation"], repeat=repeat,
                        word_bits=word_bits)


def load_network(source: str | Path, *, word_bits: int = 16) -> Network:
    """A workload YAML file as a :class:`Network` (zoo models and shape tables by name:
    :func:`tasder.workloads.load_network`).

    The YAML format (see docs/hw_spec.md)::

        version: 0.1
        workload:
          name: tiny
          word_bits: 16          # optional
          layers:
            - {name: fc1, M: 64, K: 128, N: 32, repeat: 1}                       # a GEMM
            - {name: c1, C: 64, M: 64, R: 3, S: 3, P: 56, Q: 56, stride: 1}      # a convolution
    """
    text = str(source)
    if not text.endswith((".yaml", ".yml")) and not Path(text).is_file():
        raise ValueError(f"workload {text!r}: expected a workload YAML file (.yaml/.yml); a zoo model or "
                         f"shape table by name loads with tasder.workloads.load_network({text!r})")
    _, wl = load_section(text, "workload")
    check_keys(wl, ("name", "word_bits", "layers"), required=("layers",))
    bits = get_int(wl, "word_bits", word_bits)
    layers = wl["layers"]
    if not isinstance(layers, list) or not layers:
        raise SpecError(f"{wl.where('layers')}: workload.layers must be a non-empty list of layers")
    out = []
    for i, layer in enumerate(layers):
        try:
            out.append(_layer(layer, i, bits, wl.where("layers")))
        except InvalidParameterError as exc:
            where = layer.where() if hasattr(layer, "where") else wl.where("layers")
            raise SpecError(f"{where}: workload.layers[{i}]: {exc}") from None
    return Network(get_str(wl, "name", Path(text).stem), tuple(out))
