"""How much a TASD series drops: the paper's error signals and the storage it needs.

All sums are taken in float64 so float16/bfloat16 inputs do not overflow.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch

from tasder._validation import check_float_tensor
from tasder.sparsity.patterns import Dense, Pattern, Series, StructuredPattern, Unstructured

if TYPE_CHECKING:
    from tasder.tasd.decompose import TASDResult

__all__ = [
    "DecompositionSums",
    "TASDMetrics",
    "aggregate",
    "compute_metrics",
    "gemm_output_error",
    "packed_nbytes",
    "tensor_sums",
]


@dataclass(frozen=True)
class TASDMetrics:
    """Error and size figures of one decomposition.

    Attributes:
        numel: number of elements of the input.
        nonzeros: nonzeros of the input.
        input_density: ``nonzeros / numel``.
        effective_density: sum of the term densities (fraction of MACs the hardware executes).
        kept_density: nonzeros of the approximation / ``numel``.
        dropped_nonzeros_pct: % of the input's nonzeros left in the residual (TASDER's signal).
        dropped_magnitude_pct: % of ``Σ|x|`` left in the residual.
        relative_error: ``‖residual‖_F / ‖x‖_F`` (0 for an all-zero input).
        dense_nbytes: bytes of the input stored densely.
        packed_nbytes: bytes of all terms in their compressed form (values + metadata).
    """

    numel: int
    nonzeros: int
    input_density: float
    effective_density: float
    kept_density: float
    dropped_nonzeros_pct: float
    dropped_magnitude_pct: float
    relative_error: float
    dense_nbytes: int
    packed_nbytes: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def packed_nbytes(pattern: Pattern, shape: tuple[int, ...], dim: int, itemsize: int, nonzeros: int) -> int:
    """Bytes one term needs in its compressed form.

    * G:H / HSS — hierarchical CP: every outermost block stores ``ΠG`` values and, per rank, one
      position of ``ceil(log2 H)`` bits for each child it keeps (NVIDIA's 2:4 format is the
      one-rank case: 2 bits per value). Blocks are counted after padding ``dim`` up to a multiple
      of the block size, as the hardware would store them.
    * unstructured — bitmask format: the nonzero values plus one bit per element.
    * dense — every element.
    """
    numel = math.prod(shape)
    if isinstance(pattern, Dense):
        return numel * itemsize
    if isinstance(pattern, Unstructured):
        return nonzeros * itemsize + math.ceil(numel / 8)
    assert isinstance(pattern, StructuredPattern)
    length = shape[dim]
    outer = numel // length if length else 0
    blocks = outer * math.ceil(length / pattern.block_size)
    values_per_block = pattern.kept_per_block
    metadata_bits = 0
    kept_children = 1
    for rank in pattern.ranks:  # highest rank first: each kept parent stores g child positions
        kept_children *= rank.g
        metadata_bits += kept_children * rank.index_bits
    return blocks * values_per_block * itemsize + math.ceil(blocks * metadata_bits / 8)


def compute_metrics(
    x: torch.Tensor, terms: list[torch.Tensor], residual: torch.Tensor, series: Series, dim: int
) -> TASDMetrics:
    """Metrics of a decomposition given its input, terms and residual."""
    numel = x.numel()
    nonzeros, total_mag, total_sq = tensor_sums(x)
    dropped, dropped_mag, dropped_sq = tensor_sums(residual)
    # The approximation's nonzeros are exactly the input's minus those the residual kept.
    kept = nonzeros - dropped
    itemsize = x.element_size()
    packed = 0
    for pattern, term in zip(series.terms, terms, strict=True):
        # Only an unstructured term's size depends on its nonzeros; structured sizes are fixed.
        term_nonzeros = int(torch.count_nonzero(term)) if isinstance(pattern, Unstructured) else 0
        packed += packed_nbytes(pattern, tuple(x.shape), dim, itemsize, nonzeros=term_nonzeros)
    return TASDMetrics(
        numel=numel,
        nonzeros=nonzeros,
        input_density=_ratio(nonzeros, numel),
        effective_density=series.effective_density,
        kept_density=_ratio(kept, numel),
        dropped_nonzeros_pct=100.0 * _ratio(dropped, nonzeros),
        dropped_magnitude_pct=100.0 * _ratio(dropped_mag, total_mag),
        relative_error=math.sqrt(_ratio(dropped_sq, total_sq)),
        dense_nbytes=numel * itemsize,
        packed_nbytes=packed,
    )


def gemm_output_error(a: torch.Tensor, a_approx: torch.Tensor, b: torch.Tensor) -> float:
    """Relative GEMM output error ``‖(A − Â)B‖_F / ‖AB‖_F`` (TASD paper, appendix A), in float64.

    ``a`` and ``a_approx`` are (M, K); ``b`` is (K, N).
    """
    a = check_float_tensor(a, "a")
    a_approx = check_float_tensor(a_approx, "a_approx")
    b = check_float_tensor(b, "b")
    if a.dim() != 2 or b.dim() != 2 or a.shape != a_approx.shape or a.shape[1] != b.shape[0]:
        raise ValueError(
            f"expected a and a_approx of shape (M, K) and b of shape (K, N); got a={tuple(a.shape)}, "
            f"a_approx={tuple(a_approx.shape)}, b={tuple(b.shape)}"
        )
    b64 = b.to(torch.float64)
    reference = a.to(torch.float64) @ b64
    error = (a.to(torch.float64) - a_approx.to(torch.float64)) @ b64
    return _ratio(float(torch.linalg.vector_norm(error)), float(torch.linalg.vector_norm(reference)))


# Pooling several decompositions (a model's layers, a file's tensors) into one set of figures.


#: Elements summed per step by :func:`tensor_sums`: bounds its float64 temporaries to a few MiB.
_SUM_CHUNK = 1 << 18


def _chunks(x: torch.Tensor, size: int) -> Iterator[torch.Tensor]:
    """Views of ``x`` that together cover it, each of at most ``size`` elements (or one row)."""
    if x.numel() <= size or x.dim() == 0:
        yield x
    elif x.is_contiguous():
        yield from x.view(-1).split(size)
    else:  # split the leading dim (no copy); recurse into a single slice that is still too large
        step = max(1, size // max(1, x.numel() // x.shape[0]))
        for part in x.split(step):
            yield from (_chunks(part[0], size) if part.shape[0] == 1 else (part,))


def tensor_sums(x: torch.Tensor) -> tuple[int, float, float]:
    """``(nonzeros, Σ|x|, Σx²)`` of a tensor, accumulated in float64.

    Chunk by chunk: torch widens its input to float64 before reducing, and a whole-tensor call
    would hold a float64 copy (twice a float32 input) at once.
    """
    nonzeros, abs_sum, sq_sum = 0, 0.0, 0.0
    for c in _chunks(x.detach(), _SUM_CHUNK):
        nonzeros += int(torch.count_nonzero(c))
        abs_sum += float(torch.linalg.vector_norm(c, 1, dtype=torch.float64))
        sq_sum += float(torch.linalg.vector_norm(c, 2, dtype=torch.float64)) ** 2
    return nonzeros, abs_sum, sq_sum


@dataclass(frozen=True)
class DecompositionSums:
    """Additive totals of one or more decompositions, from which the pooled metrics follow.

    Percentages of a group of tensors are *not* the mean of their percentages: a big matrix
    counts more than a small one. Add the sums (``a + b`` or :func:`aggregate`) and read the
    properties: dropped nonzeros % = Σdropped / Σnonzeros, dropped magnitude % = Σ|r| / Σ|x|,
    relative error = sqrt(Σ‖r‖² / Σ‖x‖²), effective density = Σ(density·numel) / Σnumel.
    """

    numel: int = 0
    nonzeros: int = 0
    dropped_nonzeros: int = 0
    abs_input: float = 0.0
    abs_residual: float = 0.0
    sq_input: float = 0.0
    sq_residual: float = 0.0
    executed: float = 0.0  # Σ effective_density · numel: the MACs the hardware executes
    packed_nbytes: int = 0
    dense_nbytes: int = 0

    @classmethod
    def of(cls, result: TASDResult, input_sums: tuple[int, float, float] | None = None) -> DecompositionSums:
        """The sums of one :class:`~tasder.tasd.TASDResult` (computed in float64).

        ``input_sums`` = :func:`tensor_sums` of ``result.input``, when several series share an input.
        """
        nonzeros, abs_input, sq_input = tensor_sums(result.input) if input_sums is None else input_sums
        dropped, abs_residual, sq_residual = tensor_sums(result.residual)
        metrics = result.metrics
        return cls(
            numel=metrics.numel,
            nonzeros=nonzeros,
            dropped_nonzeros=dropped,
            abs_input=abs_input,
            abs_residual=abs_residual,
            sq_input=sq_input,
            sq_residual=sq_residual,
            executed=metrics.effective_density * metrics.numel,
            packed_nbytes=metrics.packed_nbytes,
            dense_nbytes=metrics.dense_nbytes,
        )

    def __add__(self, other: DecompositionSums) -> DecompositionSums:
        if not isinstance(other, DecompositionSums):
            return NotImplemented
        return DecompositionSums(**{k: v + getattr(other, k) for k, v in asdict(self).items()})

    @property
    def effective_density(self) -> float:
        return self.executed / self.numel if self.numel else 0.0

    @property
    def dropped_nonzeros_pct(self) -> float:
        return 100.0 * self.dropped_nonzeros / self.nonzeros if self.nonzeros else 0.0

    @property
    def dropped_magnitude_pct(self) -> float:
        return 100.0 * self.abs_residual / self.abs_input if self.abs_input else 0.0

    @property
    def relative_error(self) -> float:
        return math.sqrt(self.sq_residual / self.sq_input) if self.sq_input else 0.0

    def summary(self) -> dict[str, float | int]:
        """The pooled metrics plus the counts they come from (JSON-ready)."""
        return {
            "numel": self.numel,
            "nonzeros": self.nonzeros,
            "dropped_nonzeros": self.dropped_nonzeros,
            "effective_density": self.effective_density,
            "dropped_nonzeros_pct": self.dropped_nonzeros_pct,
            "dropped_magnitude_pct": self.dropped_magnitude_pct,
            "relative_error": self.relative_error,
            "packed_nbytes": self.packed_nbytes,
            "dense_nbytes": self.dense_nbytes,
        }


def aggregate(items: Iterable[DecompositionSums | TASDResult]) -> DecompositionSums:
    """Pool several decompositions (results or their sums) into one :class:`DecompositionSums`."""
    total = DecompositionSums()
    for item in items:
        total = total + (item if isinstance(item, DecompositionSums) else DecompositionSums.of(item))
    return total
