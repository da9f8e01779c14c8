"""Run TASD's 2:4 terms on NVIDIA's sparse tensor cores (torch's semi-structured sparse tensors).

NVIDIA GPUs from Ampere (compute capability 8.0) on run a GEMM whose first operand is 2:4 sparse
along the reduction dim K at up to twice the dense tensor-core rate. torch reaches them through
``torch.sparse.SparseSemiStructuredTensor`` with two backends: CUTLASS (values and metadata in
two tensors, a layout we can write ourselves) and cuSPARSELt (one opaque compressed buffer).

**TASD-W** (:func:`to_semi_structured`): every TASD-W layer whose series is ``2:4`` becomes a
:class:`SemiStructuredLinear` holding its weight as one semi-structured tensor; a ``2:4+2:4``
layer holds its two terms as two, and its output is the sum of two sparse GEMMs plus the bias
(``2:4+2:4`` keeps all four elements of a block, so it is the dense weight split in two halves:
the same MACs as dense, in two sparse launches; the benchmark measures whether that ever pays).
With the CUTLASS backend the packed values and metadata are *tasder's own* terms
(:func:`tasder.tasd.pack`, the CP form: values + positions) rewritten into CUTLASS's layout by
:func:`cutlass_layout` — bit for bit what torch's own compression makes of the same term (up to
the sign of zeros in slots the CP form does not store).
With cuSPARSELt the compressed format is opaque, so torch compresses the dense term.

**TASD-A** (:class:`SemiStructuredActivationLinear`): the *input* is compressed on every forward
pass and multiplied as the sparse operand: ``sparse(x) @ Wᵀ``. ``pruning="tasd"`` keeps exactly
TASD's 2:4 selection (the 2 largest ``|x|`` of each 4 along K, ties to the lower index,
:func:`tasd_2to4_mask`) and compresses the masked input with cuSPARSELt (one kernel;
CUTLASS's compression is a chain of torch ops). ``pruning="tile"`` uses torch's fused
``prune_dense_static_sort`` instead, which is faster but does **not** pick TASD's elements: it
prunes each 4×4 tile so that rows *and columns* are 2:4 (what 2:4 training needs for the
transposed operand), so a row whose two largest values sit in columns another row also wants
loses one of them. The benchmark prints how often the two selections differ.

Which layers convert, and the refusals (each one error, raised before any weight is changed;
:func:`check_semi_structured` runs the model checks alone):

* series: TASD-W ``2:4`` or ``2:4+2:4``; TASD-A ``2:4``. Any other TASD layer is refused (its
  terms are not 2:4, which is the only pattern the hardware runs). Plain layers stay as they are.
* layer kind: ``nn.Linear``; ``nn.Conv2d`` only as a 1×1 convolution with padding 0 (any
  stride), which *is* a GEMM over the channels: ``(N·H·W, C) @ (O, C)ᵀ``. A larger kernel is not
  one GEMM: it needs im2col (``F.unfold``, which materialises R·S shifted copies of the input on
  every forward pass) or an implicit-GEMM sparse convolution, which torch does not provide, so it
  is refused. TASD-A on a convolution is refused (Linear only).
* dtype: float16 or bfloat16. float32 is refused: CUTLASS's float32 kernel is 1:2 over pairs of
  32-bit values (a 2:4 term does not follow it) and torch's cuSPARSELt path has no float32 entry.
  Convert the model first (``model.half()``, or ``.to(torch.bfloat16)``).
* shape (:func:`shape_rule`, read from the installed torch): the sparse operand must have rows a
  multiple of ``rows`` and columns (K) a multiple of ``cols``: CUTLASS 32 × 64, cuSPARSELt 16 × 16
  for float16/bfloat16. TASD-W: K = ``in_features`` (or C of a 1×1 convolution) must be a
  multiple of ``cols``, else refused (padding K would copy the input on every forward pass);
  ``out_features`` that is not a multiple of ``rows`` is padded with zero rows once, at conversion
  (exact; the extra outputs are sliced off). TASD-A: K must be a multiple of ``cols`` (refused
  otherwise); the token rows are padded to ``rows`` on the fly.
* calibration: a layer whose options (``permute``, ``bias_correction``) still need calibration
  data is refused. Both options are supported once set: the permutation reorders the input's K
  (an ``index_select`` per forward pass); the output correction is folded into the bias.
* CUDA: ``torch.cuda.is_available()`` must be true, every converted layer's weight on a CUDA
  device of compute capability ≥ 8.0, and cuSPARSELt available for that backend. torch's CUTLASS
  2:4 kernels run on compute capability 8.x only (Ampere, Ada; an H100/H200 refuses them), so the
  default ``backend="auto"`` picks cuSPARSELt wherever the build has it (:func:`resolve_backend`).

The converted layers are for inference: they hold no gradients, no ``state_dict`` entries for the
sparse weights, and refuse ``.to()`` / ``.half()`` / ``.cuda()`` (convert after moving).

>>> import torch
>>> from tasder.nn import apply_tasd
>>> from tasder.nn.semi_structured import check_semi_structured
>>> model = apply_tasd(torch.nn.Sequential(torch.nn.Linear(128, 64)).half(), {"0": "2:4"})
>>> check_semi_structured(model)  # the model checks only; to_semi_structured also needs CUDA
{'0': 'W 2:4 -> SemiStructuredLinear (1 sparse GEMM)'}
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 - the universal spelling

from tasder.nn.layers import TASDConv2d, TASDLayer, TASDLinear
from tasder.nn.transform import swap_modules
from tasder.sparsity.notation import parse_series
from tasder.tasd.packing import PackedTensor, pack

__all__ = [
    "BACKENDS",
    "SUPPORTED_DTYPES",
    "SemiStructuredActivationLinear",
    "SemiStructuredConv2d",
    "SemiStructuredLinear",
    "ShapeRule",
    "check_semi_structured",
    "cusparselt_available",
    "cutlass_layout",
    "resolve_backend",
    "shape_rule",
    "tasd_2to4_mask",
    "to_semi_structured",
]

Backend = Literal["auto", "cutlass", "cusparselt"]
Pruning = Literal["tasd", "tile"]

#: The sparse-GEMM backends torch offers for semi-structured tensors ("auto" picks one, see
#: :func:`resolve_backend`).
BACKENDS: tuple[str, ...] = ("auto", "cutlass", "cusparselt")
#: torch's CUTLASS 2:4 kernels are compiled for compute capability 8.x only (Ampere, Ada): on an
#: H100/H200 (9.0) they raise "Supported only on GPUs with compute capability 8.x" (measured).
CUTLASS_CAPABILITY_MAJOR = 8
#: torch's fused tile pruning (``prune_dense_static_sort``) works on whole 128×128 pieces: torch 2.11
#: raises "Only supports rows/cols multiples of 128" otherwise (measured on an H200).
TILE_MULTIPLE = 128
#: The dtypes the 2:4 kernels run for TASD terms (see the module doc for float32).
SUPPORTED_DTYPES: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16)
#: The smallest compute capability with sparse tensor cores (Ampere).
MIN_CAPABILITY = (8, 0)

_SERIES_2_4 = parse_series("2:4")
_SERIES_2_4_TWICE = parse_series("2:4+2:4")
# (rows, cols) multiples of the sparse operand, as torch 2.13 states them for float16/bfloat16;
# used only when the installed torch does not expose its table.
_FALLBACK_RULES = {"cutlass": (32, 64), "cusparselt": (16, 16)}


# -- rules ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShapeRule:
    """What a backend needs of the sparse operand (weight, or TASD-A input): ``(rows, cols)``
    both positive multiples of these (cols runs along K, the dim the 2:4 blocks lie on)."""

    backend: str
    dtype: torch.dtype
    rows: int
    cols: int

    def __str__(self) -> str:
        return (f"{self.backend} {str(self.dtype).removeprefix('torch.')}: the sparse operand's rows must be a "
                f"multiple of {self.rows} and its K a multiple of {self.cols}")


def _check_backend(backend: object) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {', '.join(map(repr, BACKENDS))}; got {backend!r}")
    return resolve_backend(str(backend))


def resolve_backend(backend: str) -> str:
    """``"auto"`` → the backend that runs here: cuSPARSELt when this torch build has it (every
    sparse-tensor-core GPU from Ampere to Hopper), else CUTLASS on a compute capability 8.x GPU.
    Without CUDA (model checks on a CPU machine) it is cuSPARSELt, the one backend that covers
    every such GPU. Other names pass through."""
    if backend != "auto":
        return backend
    if cusparselt_available() or not torch.cuda.is_available():
        return "cusparselt"
    return "cutlass"


def _sparse_class(backend: str) -> Any:
    from torch.sparse import SparseSemiStructuredTensorCUSPARSELT, SparseSemiStructuredTensorCUTLASS

    return SparseSemiStructuredTensorCUTLASS if backend == "cutlass" else SparseSemiStructuredTensorCUSPARSELT


def shape_rule(backend: str, dtype: torch.dtype) -> ShapeRule:
    """The shape rule of ``backend`` for ``dtype`` (float16/bfloat16), from the installed torch's
    own table (``_DTYPE_SHAPE_CONSTRAINTS``) when it has one.

    >>> shape_rule("cutlass", torch.float16).rows, shape_rule("cusparselt", torch.bfloat16).cols
    (32, 16)
    """
    backend = _check_backend(backend)
    if dtype not in SUPPORTED_DTYPES:
        raise TypeError(_dtype_reason(dtype))
    table = getattr(_sparse_class(backend), "_DTYPE_SHAPE_CONSTRAINTS", None)
    entry = table.get(dtype) if isinstance(table, dict) else None
    if entry is not None and hasattr(entry, "sparse_min_rows"):
        return ShapeRule(backend, dtype, int(entry.sparse_min_rows), int(entry.sparse_min_cols))
    rows, cols = _FALLBACK_RULES[backend]
    return ShapeRule(backend, dtype, rows, cols)


def _dtype_reason(dtype: torch.dtype) -> str:
    if dtype == torch.float32:
        return ("dtype float32: the 2:4 kernels run float16 and bfloat16 (CUTLASS's float32 kernel is 1:2 over pairs "
                "of 32-bit values, which a 2:4 term does not follow, and torch's cuSPARSELt path has no float32); "
                "convert the model first (model.half() or model.to(torch.bfloat16))")
    return f"dtype {dtype}: the 2:4 kernels run float16 and bfloat16 only; convert the model first (model.half())"


# -- TASD's 2:4 selection on any device ---------------------------------------------------------------

# dtype -> (integer view, mask clearing the sign bit, integer type wide enough for key·4 + 3)
_KEY_BITS = {
    torch.float16: (torch.int16, 0x7FFF, torch.int32),
    torch.bfloat16: (torch.int16, 0x7FFF, torch.int32),
    torch.float32: (torch.int32, 0x7FFFFFFF, torch.int64),
    torch.float64: (torch.int64, 0x7FFFFFFFFFFFFFFF, None),
}


def tasd_2to4_mask(x: torch.Tensor) -> torch.Tensor:
    """The elements TASD's ``2:4`` keeps along the last dim of ``x``: the 2 largest ``|x|`` of every
    block of 4, ties to the lower index (a bool tensor of ``x``'s shape; the last dim must be a
    multiple of 4).

    It ranks the bit patterns with the sign cleared — the order of ``|x|`` with NaN above Inf, the
    key tasder's kernel sorts by — with a few tensor ops, so it runs on the GPU as it runs here:
    ``torch.where(mask, x, 0)`` equals ``tasder.approximate(x, "2:4", -1)``.
    """
    if x.dtype not in _KEY_BITS:
        raise TypeError(f"`x` must be a float tensor; got dtype {x.dtype}")
    if x.dim() == 0 or x.shape[-1] % 4:
        raise ValueError(f"`x`'s last dim must be a multiple of 4 (the 2:4 block); got shape {tuple(x.shape)}")
    int_dtype, no_sign, wide = _KEY_BITS[x.dtype]
    keys = (x.contiguous().view(int_dtype) & no_sign).reshape(*x.shape[:-1], x.shape[-1] // 4, 4)
    if wide is not None:
        # key·4 + (3 − position) makes every key of a block distinct and breaks ties to the lower
        # index, so one top-2 (a single kernel on the GPU) picks TASD's elements.
        tiebreak = torch.arange(3, -1, -1, dtype=wide, device=x.device)
        top = (keys.to(wide) * 4 + tiebreak).topk(2, dim=-1).indices
        mask = torch.zeros(keys.shape, dtype=torch.bool, device=x.device).scatter_(-1, top, True)
        return mask.reshape(x.shape)
    # float64: key·4 would overflow; count, for each element, the elements of its block ranked before it.
    cols = keys.unbind(-1)
    ranks = []
    for i, ki in enumerate(cols):
        rank = torch.zeros_like(ki, dtype=torch.int8)
        for q, kq in enumerate(cols):
            if q < i:  # an equal key at a lower index ranks first
                rank += kq >= ki
            elif q > i:
                rank += kq > ki
        ranks.append(rank)
    return (torch.stack(ranks, dim=-1) < 2).reshape(x.shape)


# -- CUTLASS's layout from tasder's CP form -----------------------------------------------------------


def _fill_table() -> torch.Tensor:
    """(16, 2): for every occupancy mask of a 4-block (bit p = position p nonzero, at most 2 set),
    the two positions CUTLASS's metadata names. Both nonzeros when there are two; an emptier block
    is completed with position 2, then 3 (then 0, 1) — CUTLASS's convention, where tasder's CP
    form completes with the lowest empty positions. Either is a valid 2:4 block (the extra
    slots hold zeros); the table makes ours bit-identical to torch's."""
    table = torch.zeros(16, 2, dtype=torch.int64)
    for mask in range(16):
        occupied = [p for p in range(4) if mask >> p & 1]
        if len(occupied) > 2:
            continue  # not a 2:4 block; pack() never produces one
        fill = [p for p in (2, 3, 0, 1) if p not in occupied]
        table[mask] = torch.tensor(sorted(occupied + fill[: 2 - len(occupied)]))
    return table


_FILL = _fill_table()


def cutlass_layout(packed: PackedTensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values, metadata)`` of a packed 2:4 term in the layout of torch's CUTLASS sparse GEMM.

    ``packed`` is :func:`tasder.tasd.pack` of an ``(m, k)`` term with its blocks along dim 1
    (``m`` a multiple of 32, ``k`` of 32; the GEMM itself wants ``k`` a multiple of 64). Returns

    * ``values``, ``(m, k/2)``: each block's two values in increasing position order;
    * ``metadata``, ``(m, k/16)`` int16: per block the 4-bit code ``p0 | p1 << 2`` of its two
      positions, four blocks to an int16 (first block in the low bits), the matrix then stored in
      CUTLASS's interleaved order: within every 32 rows, row ``8q + s`` moves to ``4s + q``;
      every 2×2 tile of (row pair, column pair) is transposed; column pairs are stored one after
      another, each as ``m`` rows of 2.

    A block with fewer than two nonzeros names the positions CUTLASS's convention picks (see
    ``_fill_table``), with +0.0 for a value tasder did not store; so the result equals
    ``torch.sparse._semi_structured_conversions.sparse_semi_structured_from_dense_cutlass(
    packed.unpack())`` bit for bit. Of the raw term torch makes the same metadata and the same
    values except, possibly, the sign of a zero: a decomposition keeps the input's -0.0 where it
    drops an element, and the CP form does not store dropped elements.
    """
    if not isinstance(packed, PackedTensor):
        raise TypeError(f"`packed` must be a PackedTensor (tasder.tasd.pack); got {type(packed).__name__}")
    if str(packed.pattern) != "2:4" or len(packed.shape) != 2 or packed.dim != 1:
        raise ValueError(f"cutlass_layout needs a 2:4 term of a 2-D tensor packed along dim 1; got pattern "
                         f"'{packed.pattern}', shape {packed.shape}, dim {packed.dim}")
    if packed.dtype not in SUPPORTED_DTYPES:
        raise TypeError(_dtype_reason(packed.dtype))
    m, k = packed.shape
    if m % 32 or k % 32 or m == 0 or k == 0:
        raise ValueError(f"cutlass_layout needs rows a multiple of 32 and K a multiple of 32 (its metadata "
                         f"interleave); got shape {packed.shape}")
    values = packed.values  # (m, k/4, 2)
    positions = packed.positions[0].to(torch.int64)  # (m, k/4, 2), increasing
    occupied = (values != 0).to(torch.int64)  # NaN counts as nonzero, as in pack()
    mask = (occupied << positions).sum(-1)  # distinct positions: the sum is the bitwise or
    slots = _FILL.to(values.device)[mask]  # (m, k/4, 2)
    # The value at each slot: the stored one where tasder stored that position, else +0.0.
    hit = slots.unsqueeze(-1) == positions.unsqueeze(-2)  # (m, k/4, slot, stored)
    picked = values.gather(-1, hit.to(torch.int8).argmax(-1))
    out_values = torch.where(hit.any(-1), picked, torch.zeros((), dtype=values.dtype, device=values.device))
    codes = (slots[..., 0] | slots[..., 1] << 2).reshape(m, k // 16, 4)
    word = codes[..., 0] | codes[..., 1] << 4 | codes[..., 2] << 8 | codes[..., 3] << 12  # 16 bits in an int64
    word = torch.where(word >= 1 << 15, word - (1 << 16), word).to(torch.int16)  # same bits, two's complement
    mc = k // 16
    rows = word.reshape(m // 32, 4, 8, mc).transpose(1, 2).reshape(m // 2, 2, mc // 2, 2)
    meta = rows.permute(2, 0, 3, 1).reshape(m, mc)
    return out_values.reshape(m, k // 2).contiguous(), meta.contiguous()


# -- the layers ---------------------------------------------------------------------------------------


def _no_move(module: nn.Module) -> None:
    raise RuntimeError(
        f"{type(module).__name__} holds semi-structured sparse weights built for {module.device_note}; they cannot be "
        f"moved or cast: move/cast the model first, then call tasder.nn.to_semi_structured"
    )


class _SemiStructuredBase(nn.Module):
    """The parts every converted layer shares: the refusal to move, the input permutation."""

    backend: str
    permutation: torch.Tensor | None

    @property
    def device_note(self) -> str:
        return str(getattr(self, "_device", "its device"))

    def _apply(self, fn: Callable[..., Any], recurse: bool = True) -> nn.Module:  # type: ignore[override]
        _no_move(self)
        return self  # unreachable

    def _permute(self, x2d: torch.Tensor) -> torch.Tensor:
        return x2d if self.permutation is None else x2d.index_select(1, self.permutation)


def _pad_rows(t: torch.Tensor, multiple: int) -> torch.Tensor:
    extra = (-t.shape[0]) % multiple
    return t if extra == 0 else torch.cat([t, t.new_zeros((extra, *t.shape[1:]))])


def _semi_structured_weight(term: torch.Tensor, backend: str) -> Any:
    """One 2:4 term ``(rows, K)`` as a semi-structured tensor (CUTLASS: from tasder's packing)."""
    cls = _sparse_class(backend)
    term = term.contiguous()
    if backend == "cutlass":
        values, meta = cutlass_layout(pack(term, "2:4", dim=1))
        return cls(term.shape, packed=values, meta=meta, packed_t=None, meta_t=None,
                   compressed_swizzled_bitmask=None)
    return cls.from_dense(term)


class SemiStructuredLinear(_SemiStructuredBase):
    """A TASD-W ``2:4`` (one sparse GEMM) or ``2:4+2:4`` (two) linear layer on sparse tensor cores.

    Build it with :meth:`from_tasd` (what :func:`to_semi_structured` does). ``forward`` computes
    ``Σ_t x Wₜᵀ + bias`` where ``Wₜ`` are the layer's terms, each a semi-structured tensor; the
    input's leading dims are flattened into the GEMM's N.

    Attributes:
        weights: the terms as ``torch.sparse.SparseSemiStructuredTensor`` (rows padded to the rule).
        bias: the bias plus any output correction, zero-padded like the rows (None without either).
        permutation: the K order the terms were decomposed in (None: the natural order).
    """

    def __init__(self, terms: list[torch.Tensor], bias: torch.Tensor | None, *, backend: str, series: str,
                 permutation: torch.Tensor | None = None) -> None:
        super().__init__()
        self.backend = _check_backend(backend)
        self.series = series
        out_features, in_features = terms[0].shape
        self.out_features, self.in_features = int(out_features), int(in_features)
        rule = shape_rule(self.backend, terms[0].dtype)
        self.rule = rule
        self.padded_rows = self.out_features + (-self.out_features) % rule.rows
        self.weights = [_semi_structured_weight(_pad_rows(t.detach(), rule.rows), self.backend) for t in terms]
        self.bias = None if bias is None else _pad_rows(bias.detach().to(terms[0].dtype), rule.rows)
        self.permutation = permutation
        self._device = terms[0].device

    @classmethod
    def from_tasd(cls, layer: TASDLinear, backend: Backend = "auto") -> SemiStructuredLinear:
        """The sparse counterpart of a TASD-W ``2:4`` / ``2:4+2:4`` linear layer (which is not modified)."""
        problem = _problem(layer, backend)
        if problem:
            raise ValueError(problem)
        terms, perm = _weight_terms(layer)
        return cls(terms, layer._effective_bias(corrected=True), backend=backend, series=str(layer.series),
                   permutation=perm)

    def _gemm(self, x2d: torch.Tensor) -> torch.Tensor:
        x2d = self._permute(x2d)
        y = F.linear(x2d, self.weights[0], self.bias)
        for w in self.weights[1:]:
            y = y + F.linear(x2d, w)
        return y if self.padded_rows == self.out_features else y[:, : self.out_features]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        y = self._gemm(x.reshape(-1, self.in_features))
        return y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        pad = f", rows padded to {self.padded_rows}" if self.padded_rows != self.out_features else ""
        perm = ", permuted K" if self.permutation is not None else ""
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"series={self.series}, backend={self.backend}{pad}{perm}")


class SemiStructuredConv2d(SemiStructuredLinear):
    """A TASD-W 1×1 convolution (padding 0, any stride) as a sparse GEMM over the channels:
    ``(N·H'·W', C) @ (O, C)ᵀ`` after taking every stride-th pixel. The output is returned in
    channels-last memory order (an NCHW-shaped view of the GEMM's ``(N·H'·W', O)`` result)."""

    def __init__(self, terms: list[torch.Tensor], bias: torch.Tensor | None, *, backend: str, series: str,
                 stride: tuple[int, int], permutation: torch.Tensor | None = None) -> None:
        super().__init__(terms, bias, backend=backend, series=series, permutation=permutation)
        self.stride = stride

    @classmethod
    def from_tasd(cls, layer: TASDConv2d, backend: Backend = "auto") -> SemiStructuredConv2d:  # type: ignore[override]
        """The sparse counterpart of a TASD-W ``2:4`` / ``2:4+2:4`` 1×1 convolution (not modified)."""
        problem = _problem(layer, backend)
        if problem:
            raise ValueError(problem)
        terms, perm = _weight_terms(layer)
        return cls(terms, layer._effective_bias(corrected=True), backend=backend, series=str(layer.series),
                   stride=tuple(layer.stride), permutation=perm)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sh, sw = self.stride
        if sh != 1 or sw != 1:
            x = x[..., ::sh, ::sw]
        rows = x.movedim(-3, -1)  # (..., H', W', C)
        y = self._gemm(rows.reshape(-1, self.in_features))
        return y.reshape(*rows.shape[:-1], self.out_features).movedim(-1, -3)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, kernel_size=(1, 1), stride={self.stride}"


class SemiStructuredActivationLinear(_SemiStructuredBase):
    """TASD-A ``2:4`` at run time: every forward pass compresses the input and runs ``sparse(x) @ Wᵀ``.

    Args:
        weight: the dense ``(out_features, in_features)`` weight (float16/bfloat16, on CUDA).
        bias: added after the GEMM (None for none).
        backend: ``"auto"`` (default, :func:`resolve_backend`), ``"cusparselt"`` or ``"cutlass"``:
            which kernel runs the sparse GEMM.
        pruning: ``"tasd"`` (default): TASD's selection (:func:`tasd_2to4_mask`), then the backend's
            compression of the masked input (cuSPARSELt: one kernel; CUTLASS: torch's conversion, a
            chain of ops); ``"tile"``: torch's fused ``prune_dense_static_sort`` (4×4 tiles 2:4 by
            rows and columns — not TASD's selection; see the module doc).
        permutation: TASD-A's channel order (the input is approximated in that order).

    The token rows are zero-padded to the backend's row multiple (exact: zero rows give zero
    outputs, sliced off).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, *, backend: Backend = "auto",
                 pruning: Pruning = "tasd", permutation: torch.Tensor | None = None) -> None:
        super().__init__()
        self.backend = _check_backend(backend)
        if pruning not in ("tasd", "tile"):
            raise ValueError(f"`pruning` must be 'tasd' (TASD's 2:4 selection) or 'tile' (torch's 4x4-tile "
                             f"prune_dense_static_sort); got {pruning!r}")
        self.pruning = pruning
        self.out_features, self.in_features = (int(s) for s in weight.shape)
        self.rule = shape_rule(self.backend, weight.dtype)
        if self.in_features % self.rule.cols:
            raise ValueError(f"in_features={self.in_features}: {self.rule} (TASD-A's K is the input's last dim)")
        # Token rows are padded on the fly; the tile pruning needs whole 128-row pieces.
        self.row_multiple = self.rule.rows if pruning == "tasd" else math.lcm(self.rule.rows, TILE_MULTIPLE)
        if pruning == "tile" and self.in_features % TILE_MULTIPLE:
            raise ValueError(f"in_features={self.in_features}: torch's tile pruning (prune_dense_static_sort) needs "
                             f"K a multiple of {TILE_MULTIPLE}; use pruning='tasd' (TASD's own selection)")
        w = weight.detach()
        if permutation is not None:
            w = w.index_select(1, permutation)
        self.weight_t = w.t().contiguous()  # (K, out): the dense operand, row-major
        self.bias = None if bias is None else bias.detach().to(weight.dtype)
        self.permutation = permutation
        self._device = weight.device

    @classmethod
    def from_tasd(cls, layer: TASDLinear, backend: Backend = "auto",
                  pruning: Pruning = "tasd") -> SemiStructuredActivationLinear:
        """The runtime-compressed counterpart of a TASD-A ``2:4`` linear layer (not modified)."""
        problem = _problem(layer, backend)
        if problem:
            raise ValueError(problem)
        return cls(layer.weight, layer._effective_bias(corrected=True), backend=backend, pruning=pruning,
                   permutation=layer.permutation)

    def compress(self, x2d: torch.Tensor) -> Any:
        """The 2-D input (rows padded to the rule, K permuted) as a semi-structured tensor."""
        cls = _sparse_class(self.backend)
        if self.pruning == "tile":
            return cls.prune_dense_static_sort(x2d)
        kept = torch.where(tasd_2to4_mask(x2d), x2d, torch.zeros((), dtype=x2d.dtype, device=x2d.device))
        return cls.from_dense(kept)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x2d = self._permute(x.reshape(-1, self.in_features))
        n = x2d.shape[0]
        sparse = self.compress(_pad_rows(x2d.contiguous(), self.row_multiple))
        y = torch.mm(sparse, self.weight_t)
        if y.shape[0] != n:
            y = y[:n]
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        perm = ", permuted K" if self.permutation is not None else ""
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"series=2:4, mode=A, backend={self.backend}, pruning={self.pruning}{perm}")


# -- checks and the model transform ---------------------------------------------------------------------


def _weight_terms(layer: TASDLayer) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """The layer's terms as ``(out, K)`` matrices in the order their 2:4 blocks run along, and the
    K permutation that order is (None: natural)."""
    terms = layer.terms()
    mats = []
    for term in terms:
        view, _ = layer.grouped_view(term)
        mats.append(view.reshape(view.shape[0], -1))
    return mats, layer.permutation if layer.mode == "W" else None


def _problem(layer: TASDLayer, backend: str) -> str | None:
    """Why ``layer`` cannot run on the sparse GEMM of ``backend`` (None: it can). Model checks
    only: no CUDA needed."""
    series = layer.series
    if layer.mode == "W" and series not in (_SERIES_2_4, _SERIES_2_4_TWICE):
        return (f"TASD-W series '{series}': NVIDIA's sparse tensor cores run 2:4 terms only; the series must be "
                f"'2:4' or '2:4+2:4' (re-apply TASD with one of those, e.g. `tasder search --target nvidia-2:4`)")
    if layer.mode == "A" and series != _SERIES_2_4:
        return (f"TASD-A series '{series}': the input is compressed to one 2:4 term at run time; "
                f"the series must be '2:4'")
    if isinstance(layer, TASDConv2d):
        if layer.mode == "A":
            return "a TASD-A convolution: run-time input compression is implemented for Linear layers only"
        if tuple(layer.kernel_size) != (1, 1):
            r, s = layer.kernel_size
            return (f"a {r}x{s} convolution is not one GEMM: it needs im2col (F.unfold copies the input {r * s} times "
                    f"per forward pass) or an implicit-GEMM sparse convolution, which torch does not provide; only 1x1 "
                    f"convolutions (padding 0) convert")
        if layer.padding not in ("valid", "same") and tuple(layer.padding) != (0, 0):  # type: ignore[arg-type]
            return f"a 1x1 convolution with padding={layer.padding}: only padding 0 maps onto one GEMM"
    elif not isinstance(layer, TASDLinear):
        return f"unsupported layer type {type(layer).__name__}"
    dtype = layer.weight.dtype
    if dtype not in SUPPORTED_DTYPES:
        return _dtype_reason(dtype)
    missing = layer._missing_buffer()
    if missing is not None:
        return f"the layer has no {missing} yet (its spec needs calibration data): apply_tasd(..., calibration=batches)"
    k = int(layer.weight[0].numel())
    rule = shape_rule(backend, dtype)
    if k % rule.cols:
        what = "in_features" if isinstance(layer, TASDLinear) else "in_channels"
        return (f"{what}={k}: {rule}; K cannot be padded without copying the input on every forward pass, so "
                f"the layer is refused (choose a K that is a multiple of {rule.cols})")
    return None


def _describe(layer: TASDLayer) -> str:
    if layer.mode == "A":
        return "A 2:4 -> SemiStructuredActivationLinear (compressed per forward pass)"
    kind = "SemiStructuredConv2d" if isinstance(layer, TASDConv2d) else "SemiStructuredLinear"
    n = len(layer.series.terms)
    return f"W {layer.series} -> {kind} ({n} sparse GEMM{'s' if n > 1 else ''})"


def check_semi_structured(model: nn.Module, backend: Backend = "auto",
                          activation_backend: Backend = "auto") -> dict[str, str]:
    """The model checks of :func:`to_semi_structured`, without CUDA: every TASD layer's name →
    what it becomes. Raises ValueError naming every layer that cannot convert and why (series,
    layer kind, dtype, calibration, the shape rule of its backend: ``backend`` for TASD-W,
    ``activation_backend`` for TASD-A), or when the model has no TASD layer."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module; got {type(model).__name__}")
    _check_backend(backend)
    _check_backend(activation_backend)
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, TASDLayer)]
    if not layers:
        raise ValueError("the model has no TASD layer to convert: apply TASD first, e.g. "
                         "tasder.nn.apply_tasd(model, {'*': {'series': '2:4', 'mode': 'W'}})")
    problems = []
    for name, m in layers:
        problem = _problem(m, activation_backend if m.mode == "A" else backend)
        if problem is not None:
            problems.append((name, problem))
    if problems:
        shown = "; ".join(f"layer {name!r}: {p}" for name, p in problems[:5])
        more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise ValueError(f"to_semi_structured cannot convert {len(problems)} layer(s): {shown}{more}")
    return {name: _describe(m) for name, m in layers}


def _check_device(model: nn.Module, backends: set[str]) -> None:
    """CUDA present, every TASD layer's weight on a GPU with sparse tensor cores, cuSPARSELt when used."""
    if not torch.cuda.is_available():
        raise RuntimeError(
            "to_semi_structured needs CUDA: torch.cuda.is_available() is False. The 2:4 sparse GEMMs run on NVIDIA "
            "sparse tensor cores (compute capability >= 8.0, Ampere or later) with a CUDA build of torch"
        )
    for name, m in model.named_modules():
        if not isinstance(m, TASDLayer):
            continue
        device = m.weight.device
        if device.type != "cuda":
            raise ValueError(f"layer {name!r}: its weight is on {device}; the sparse kernels run on CUDA: move the "
                             f"model first (model.cuda())")
        capability = torch.cuda.get_device_capability(device)
        if capability < MIN_CAPABILITY:
            raise RuntimeError(f"layer {name!r}: {torch.cuda.get_device_name(device)} has compute capability "
                               f"{capability[0]}.{capability[1]}; 2:4 sparse tensor cores need >= 8.0 "
                               f"(Ampere or later)")
        if "cutlass" in backends and capability[0] != CUTLASS_CAPABILITY_MAJOR:
            raise RuntimeError(f"layer {name!r}: backend 'cutlass': torch's CUTLASS 2:4 kernels run on compute "
                               f"capability {CUTLASS_CAPABILITY_MAJOR}.x only and {torch.cuda.get_device_name(device)} "
                               f"is {capability[0]}.{capability[1]}; use backend='cusparselt' (or 'auto')")
    if "cusparselt" in backends and not cusparselt_available():
        raise RuntimeError("backend 'cusparselt': this torch build has no cuSPARSELt "
                           "(torch.backends.cusparselt.is_available() is False); use backend='cutlass'")


def cusparselt_available() -> bool:
    """True when this torch build can run cuSPARSELt (``torch.backends.cusparselt.is_available()``)."""
    module = getattr(torch.backends, "cusparselt", None)
    return bool(module is not None and module.is_available())


def to_semi_structured(model: nn.Module, *, backend: Backend = "auto", activation_backend: Backend = "auto",
                       pruning: Pruning = "tasd", inplace: bool = False) -> nn.Module:
    """Put every TASD layer of ``model`` on NVIDIA's 2:4 sparse tensor cores (inference).

    TASD-W ``2:4`` / ``2:4+2:4`` layers become :class:`SemiStructuredLinear` (1×1 convolutions
    :class:`SemiStructuredConv2d`) on ``backend``; TASD-A ``2:4`` linear layers become
    :class:`SemiStructuredActivationLinear` on ``activation_backend`` with ``pruning``. Plain layers
    stay. Everything is checked (:func:`check_semi_structured`, then CUDA and devices) and every new
    layer is built before the first one is swapped in, so a refusal leaves the model unchanged (also
    with ``inplace=True``); with ``inplace=False`` (default) the model is deep-copied first.

    Raises:
        ValueError: a layer that cannot convert (series, kind, dtype, calibration, shape rule; the
            message names each), a weight on the CPU, or a model without TASD layers.
        RuntimeError: no CUDA, a GPU without sparse tensor cores, or no cuSPARSELt for a backend
            that needs it.
    """
    if pruning not in ("tasd", "tile"):
        raise ValueError(f"`pruning` must be 'tasd' or 'tile'; got {pruning!r}")
    if not isinstance(inplace, bool):
        raise TypeError(f"`inplace` must be True or False; got {inplace!r}")
    backend, activation_backend = _check_backend(backend), _check_backend(activation_backend)
    check_semi_structured(model, backend, activation_backend)
    modes = {m.mode for m in model.modules() if isinstance(m, TASDLayer)}
    _check_device(model, {b for b, mode in ((backend, "W"), (activation_backend, "A")) if mode in modes})
    target = model if inplace else copy.deepcopy(model)
    replacements: dict[int, nn.Module] = {}
    for name, module in target.named_modules():
        if not isinstance(module, TASDLayer) or id(module) in replacements:
            continue
        try:
            new: nn.Module
            if module.mode == "A":
                assert isinstance(module, TASDLinear)
                new = SemiStructuredActivationLinear.from_tasd(module, activation_backend, pruning)
            elif isinstance(module, TASDConv2d):
                new = SemiStructuredConv2d.from_tasd(module, backend)
            else:
                assert isinstance(module, TASDLinear)
                new = SemiStructuredLinear.from_tasd(module, backend)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"layer {name!r}: {exc}") from None
        new.train(False)
        replacements[id(module)] = new
    # Nothing above changed `target`; swap every alias of each converted module.
    swap_modules(target, replacements)
    return target
