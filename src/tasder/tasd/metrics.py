"""How much a TASD series drops: the paper's error signals and the storage it needs.

All sums are taken in float64 so float16/bfloat16 inputs do not overflow.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from tasder._validation import check_float_tensor
from tasder.sparsity.patterns import Dense, Pattern, Series, StructuredPattern, Unstructured

__all__ = ["TASDMetrics", "compute_metrics", "gemm_output_error", "packed_nbytes"]


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
    nonzeros = int(torch.count_nonzero(x))
    dropped = int(torch.count_nonzero(residual))
    x64 = x.to(torch.float64)
    r64 = residual.to(torch.float64)
    total_mag = float(x64.abs().sum())
    dropped_mag = float(r64.abs().sum())
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
        relative_error=_ratio(float(torch.linalg.vector_norm(r64)), float(torch.linalg.vector_norm(x64))),
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
