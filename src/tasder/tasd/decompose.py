"""TASD: approximate a tensor by a short series of structured-sparse terms (docs/design.md §3.2).

::

    R0 = X
    for each pattern P_i of the series:
        T_i = R_{i-1} where mask(R_{i-1}, P_i) else 0
        R_i = R_{i-1} - T_i
    approximation = sum(T_i); residual = R_n

Every element of X is *moved*, never computed, into exactly one term or the residual, so
``sum(terms) + residual == x`` holds bit for bit. The positions a tensor does not hold are
filled with ``+0.0`` except where ``x`` itself is a signed zero, which is copied into every
output: ``-0.0 + +0.0`` would otherwise come back as ``+0.0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import torch

from tasder._validation import check_dim, check_finite, check_float_tensor, check_has_data, check_score
from tasder.sparsity import _kernel
from tasder.sparsity.masks import magnitude_key, scored_mask
from tasder.sparsity.notation import parse_series
from tasder.sparsity.patterns import Dense, Pattern, Series, StructuredPattern
from tasder.tasd.metrics import TASDMetrics, compute_metrics
from tasder.tasd.packing import PackedTensor, pack

__all__ = ["Backend", "TASDResult", "approximate", "decompose"]

Backend = Literal["auto", "numba", "torch"]


@dataclass(frozen=True, eq=False)
class TASDResult:
    """The outcome of :func:`decompose`.

    Attributes:
        series: the parsed series that was applied.
        dim: the (non-negative) dimension the groups run along.
        terms: one tensor per pattern, each shaped like the input and satisfying its pattern.
        residual: what the series dropped (``input - approximation``, exactly).
        input: the tensor that was decomposed (a reference; it is never modified).
    """

    series: Series
    dim: int
    terms: list[torch.Tensor]
    residual: torch.Tensor
    input: torch.Tensor = field(repr=False)

    @cached_property
    def approximation(self) -> torch.Tensor:
        """Sum of the terms (exact: each element lives in at most one term)."""
        total = self.terms[0].clone()
        for t in self.terms[1:]:
            total += t
        return total

    @cached_property
    def metrics(self) -> TASDMetrics:
        """Dropped nonzeros %, dropped magnitude %, relative error, densities, packed size."""
        return compute_metrics(self.input, self.terms, self.residual, self.series, self.dim)

    def pack(self) -> list[PackedTensor]:
        """Each term in its compressed form (CP values + position metadata), see :mod:`.packing`.

        Supports series of G:H and HSS terms; a dense or unstructured term raises ValueError.
        """
        return [pack(t, p, dim=self.dim) for t, p in zip(self.terms, self.series.terms, strict=True)]

    def __repr__(self) -> str:
        m = self.metrics
        return (
            f"TASDResult(series='{self.series}', shape={tuple(self.input.shape)}, dim={self.dim}, "
            f"dropped_nonzeros={m.dropped_nonzeros_pct:.2f}%, relative_error={m.relative_error:.4f})"
        )


def _signed_zeros(x: torch.Tensor) -> torch.Tensor:
    """``x`` where it is ±0, +0 elsewhere: the fill value that keeps the sum bit-exact."""
    return torch.where(x == 0, x, torch.zeros((), dtype=x.dtype))


def _decompose_torch(x: torch.Tensor, series: Series, dim: int, score: torch.Tensor | None):
    """Reference implementation (vectorised PyTorch); the tests compare the kernel to it."""
    fill = _signed_zeros(x)
    residual = x.clone()
    taken = torch.zeros_like(x, dtype=torch.bool) if score is not None else None
    terms: list[torch.Tensor] = []
    for pattern in series.terms:
        if isinstance(pattern, Dense):
            mask = torch.ones_like(x, dtype=torch.bool)
        else:
            # What earlier terms took must not be picked again: with |x| it is zero now; a
            # user score still remembers it, so push those positions to the bottom.
            if score is None:
                key = magnitude_key(residual)
            else:
                assert taken is not None
                key = torch.where(taken, -math.inf, score)
            block_score = None
            if isinstance(pattern, StructuredPattern) and len(pattern.ranks) > 1:
                block_score = residual.abs().to(torch.float64) if score is None else torch.where(taken, 0.0, score)
            mask = scored_mask(key, pattern, dim, block_score)
        if taken is not None:
            taken |= mask
        terms.append(torch.where(mask, residual, fill))
        residual = torch.where(mask, fill, residual)
    return terms, residual


def decompose(
    x: torch.Tensor,
    series: str | Pattern | Series,
    dim: int = -1,
    score: torch.Tensor | None = None,
    *,
    allow_nonfinite: bool = False,
    backend: Backend = "auto",
) -> TASDResult:
    """Decompose ``x`` into the TASD ``series`` (e.g. ``"2:8+1:8"``) with groups along ``dim``.

    Args:
        x: a float16/bfloat16/float32/float64 tensor (or NumPy array) of any rank ≥ 1. Not modified.
        series: a series string, a parsed :class:`~tasder.sparsity.Series`, or one pattern.
        dim: the dimension the G:H blocks run along (the GEMM reduction dim K for weights).
        score: optional ranking shaped like ``x`` (default ``|x|``), e.g. ``|w|·‖x_k‖``.
        allow_nonfinite: accept NaN/Inf (they rank above every finite value) instead of raising.
        backend: ``"numba"`` (compiled kernel), ``"torch"`` (reference) or ``"auto"`` (the kernel
            when it applies: structured terms, the default score).

    Returns:
        A :class:`TASDResult` with ``terms``, ``residual``, ``approximation`` and ``metrics``.
    """
    parsed = parse_series(series)
    x = check_float_tensor(x, allow_nonfinite=True)
    check_has_data(x)
    d = check_dim(dim, x.dim())
    s = None if score is None else check_score(score, x)
    if backend not in ("auto", "numba", "torch"):
        raise ValueError(f"`backend` must be 'auto', 'numba' or 'torch'; got {backend!r}")
    kernel_ok = s is None and _kernel.supports(parsed) and x.device.type == "cpu"
    if backend == "numba" and not kernel_ok:
        reason = "numba is not installed" if not _kernel.AVAILABLE else (
            "it needs the default |x| score, a CPU tensor and G:H/HSS terms only")
        raise ValueError(f"backend='numba' cannot run series {str(parsed)!r} here: {reason}")

    if kernel_ok and backend != "torch":
        terms, residual, nonfinite = _kernel.decompose_structured(x, parsed, d)
        if nonfinite and not allow_nonfinite:
            raise ValueError(
                f"`x` holds {nonfinite} NaN/Inf value(s); clean the tensor or pass allow_nonfinite=True"
            )
    else:
        if not allow_nonfinite:
            check_finite(x)
        terms, residual = _decompose_torch(x, parsed, d, s)
    return TASDResult(series=parsed, dim=d, terms=terms, residual=residual, input=x)


def approximate(
    x: torch.Tensor,
    series: str | Pattern | Series,
    dim: int = -1,
    *,
    allow_nonfinite: bool = False,
) -> torch.Tensor:
    """Only the approximation of :func:`decompose` (the sum of the terms), computed cheaply.

    Bit for bit ``decompose(x, series, dim).approximation``. For series of one-rank G:H terms
    with a common H (``4:8+1:8``, ``2:4``...) a single-output kernel writes just this tensor —
    what TASD-A needs on every forward pass. Not differentiable: pass a detached tensor (use
    :func:`compute_mask`-style masking yourself where gradients must flow).
    """
    parsed = parse_series(series)
    x = check_float_tensor(x, allow_nonfinite=True)
    check_has_data(x)
    d = check_dim(dim, x.dim())
    if parsed.is_dense:
        if not allow_nonfinite:
            check_finite(x)
        return x.clone()
    if x.device.type == "cpu" and _kernel.supports_fast_approximation(parsed):
        approx, nonfinite = _kernel.approximate_structured(x.detach(), parsed, d)
        if nonfinite and not allow_nonfinite:
            raise ValueError(
                f"`x` holds {nonfinite} NaN/Inf value(s); clean the tensor or pass allow_nonfinite=True"
            )
        return approx
    return decompose(x, parsed, d, allow_nonfinite=allow_nonfinite).approximation
