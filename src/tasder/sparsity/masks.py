"""Structured masks (reference implementation in PyTorch) and pattern checks.

The rules (DESIGN.md §3.1):

* G:H along ``dim``: in every block of H consecutive elements keep the G with the largest score
  (default ``|x|``); ties go to the lower index, so masks are deterministic.
* HSS, lowest rank first (thesis §5.2.2): the lowest rank keeps its G largest elements per block;
  each higher rank then scores every block of the rank below by the mean ``|x|`` of what that
  block still holds (pruned elements count as zero) and keeps the G best blocks of every H.
* A dimension whose length is not a multiple of the block size is padded with zeros for the
  computation only.

The default score is the float's bit pattern with the sign bit cleared: for IEEE floats that
orders exactly like ``|x|`` and puts NaN above Inf, and it is what the compiled kernel in
:mod:`tasder.tasd._kernel` compares, so both paths pick the same elements bit for bit.
Upper-rank block scores are float64 sums taken in index order, again exactly as the kernel does.
"""

from __future__ import annotations

import math

import torch

from tasder._validation import check_dim, check_float_tensor, check_score
from tasder.sparsity.notation import parse_pattern
from tasder.sparsity.patterns import Dense, Pattern, Rank, Series, StructuredPattern, Unstructured

__all__ = ["compute_mask", "magnitude_key", "satisfies"]

_INT_VIEW = {
    torch.float16: (torch.int16, 0x7FFF),
    torch.bfloat16: (torch.int16, 0x7FFF),
    torch.float32: (torch.int32, 0x7FFFFFFF),
    torch.float64: (torch.int64, 0x7FFFFFFFFFFFFFFF),
}


def magnitude_key(x: torch.Tensor) -> torch.Tensor:
    """Integer tensor that orders like ``|x|`` (NaN above Inf); exact for every float dtype."""
    int_dtype, no_sign = _INT_VIEW[x.dtype]
    return x.contiguous().view(int_dtype) & no_sign


def _pad_last(t: torch.Tensor, multiple: int, value: float | int) -> torch.Tensor:
    extra = (-t.shape[-1]) % multiple
    if extra == 0:
        return t
    pad = t.new_full((*t.shape[:-1], extra), value)
    return torch.cat([t, pad], dim=-1)


def _keep_top(scores: torch.Tensor, g: int) -> torch.Tensor:
    """Boolean mask of the ``g`` largest entries along the last dim; ties to the lower index."""
    if g >= scores.shape[-1]:
        return torch.ones_like(scores, dtype=torch.bool)
    # A stable descending sort keeps equal scores in index order, which is the tie rule.
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :g]
    keep = torch.zeros_like(scores, dtype=torch.bool)
    return keep.scatter_(-1, order, True)


def _ordered_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over the last dim strictly in index order (float64), matching the compiled kernel."""
    acc = t[..., 0].clone()
    for j in range(1, t.shape[-1]):
        acc += t[..., j]
    return acc


def structured_mask_last(
    key: torch.Tensor, magnitude: torch.Tensor | None, ranks_lowest_first: tuple[Rank, ...]
) -> torch.Tensor:
    """Mask along the last dim of ``key`` (the per-element score) for a G:H or HSS pattern.

    ``magnitude`` (float64, same shape) scores the blocks of the upper ranks; it may be None for
    a one-rank pattern. Returns a bool tensor shaped like ``key``.
    """
    length = key.shape[-1]
    block = math.prod(r.h for r in ranks_lowest_first)
    # Padding ranks last: lowest key, and ties go to the lower (real) index.
    pad_key = -math.inf if key.is_floating_point() else 0
    k = _pad_last(key, block, pad_key)
    lead = k.shape[:-1]
    r0 = ranks_lowest_first[0]
    # Explicit block counts (not -1): a zero-size leading dim makes -1 ambiguous for reshape.
    mask = _keep_top(k.reshape(*lead, k.shape[-1] // r0.h, r0.h), r0.g)  # (..., n0, H0)
    if len(ranks_lowest_first) > 1:
        assert magnitude is not None
        mag = _pad_last(magnitude, block, 0.0).reshape(mask.shape)
        block_score = _ordered_sum(torch.where(mask, mag, 0.0))  # (..., n0)
        children = 1  # how many lowest-rank blocks one block of the current rank spans
        block_keep = torch.ones_like(block_score, dtype=torch.bool)
        for rank in ranks_lowest_first[1:]:
            grouped = block_score.reshape(*lead, block_score.shape[-1] // rank.h, rank.h)
            keep = _keep_top(grouped, rank.g)
            block_score = _ordered_sum(torch.where(keep, grouped, 0.0))
            # Expand this rank's decision to the lowest-rank blocks it covers.
            children_keep = keep.reshape(*lead, grouped.shape[-2] * rank.h).repeat_interleave(children, dim=-1)
            block_keep &= children_keep
            children *= rank.h
        mask &= block_keep.unsqueeze(-1)
    return mask.reshape(k.shape)[..., :length]


def _unstructured_mask(key: torch.Tensor, fraction: float) -> torch.Tensor:
    flat = key.reshape(-1)
    k = math.floor(fraction * flat.numel() + 0.5)
    return _keep_top(flat, k).reshape(key.shape)


def compute_mask(
    x: torch.Tensor,
    pattern: str | Pattern,
    dim: int = -1,
    score: torch.Tensor | None = None,
) -> torch.Tensor:
    """Boolean mask of the elements ``pattern`` keeps in ``x``, groups running along ``dim``.

    ``score`` (shaped like ``x``) replaces the default ``|x|`` ranking, e.g. Wanda's
    ``|w|·‖x_k‖``. ``unstructured(d)`` ignores ``dim`` and keeps the top ``d`` fraction overall.
    """
    p = parse_pattern(pattern)
    x = check_float_tensor(x)
    d = check_dim(dim, x.dim())
    s = None if score is None else check_score(score, x)
    if isinstance(p, Dense):
        return torch.ones_like(x, dtype=torch.bool)
    key = magnitude_key(x) if s is None else s
    if isinstance(p, Unstructured):
        return _unstructured_mask(key, p.fraction)
    assert isinstance(p, StructuredPattern)
    key_last = key.movedim(d, -1)
    magnitude = None
    if len(p.ranks) > 1:
        magnitude = (x.abs().to(torch.float64) if s is None else s).movedim(d, -1)
    return structured_mask_last(key_last, magnitude, p.ranks_lowest_first).movedim(-1, d)


def satisfies(x: torch.Tensor, pattern: str | Pattern, dim: int = -1) -> bool:
    """True when the nonzeros of ``x`` obey ``pattern`` along ``dim`` (NaN counts as nonzero)."""
    if isinstance(pattern, Series) or (isinstance(pattern, str) and "+" in pattern):
        raise ValueError(f"satisfies() checks one pattern, not a series; got {str(pattern)!r}")
    p = parse_pattern(pattern)
    x = check_float_tensor(x)
    d = check_dim(dim, x.dim())
    nonzero = x != 0
    if isinstance(p, Dense):
        return True
    if isinstance(p, Unstructured):
        return int(nonzero.sum()) <= math.floor(p.fraction * x.numel() + 0.5)
    assert isinstance(p, StructuredPattern)
    nz = _pad_last(nonzero.movedim(d, -1), p.block_size, False)
    occupied = nz
    for rank in p.ranks_lowest_first:
        grouped = occupied.reshape(*occupied.shape[:-1], occupied.shape[-1] // rank.h, rank.h)
        if bool((grouped.sum(dim=-1) > rank.g).any()):
            return False
        occupied = grouped.any(dim=-1)
    return True
