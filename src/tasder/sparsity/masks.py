"""Structured masks and pattern checks: the compiled kernel, and the PyTorch reference it must equal.

The rules (docs/design.md §3.1):

* G:H along ``dim``: in every block of H consecutive elements keep the G with the largest score
  (default ``|x|``); ties go to the lower index, so masks are deterministic.
* HSS, lowest rank first (thesis §5.2.2): the lowest rank keeps its G largest elements per block;
  each higher rank then scores every block of the rank below by the mean ``|x|`` of what that
  block still holds (pruned elements count as zero) and keeps the G best blocks of every H.
* A dimension whose length is not a multiple of the block size is padded with zeros for the
  computation only (the padding ranks below every real element, so it is never kept instead of
  one; the code ranks the short block's real elements alone, which gives the same mask).

The default score is the float's bit pattern with the sign bit cleared: for IEEE floats that
orders exactly like ``|x|`` and puts NaN above Inf, and it is what the compiled kernel
(``tasder.sparsity._kernel``) compares, so both paths pick the same elements bit for bit.
Upper-rank block scores are float64 sums taken in index order, again exactly as the kernel does.
:func:`compute_mask` runs the kernel for G:H and HSS patterns under the default score on CPU
tensors, and :func:`scored_mask` (the reference, any score, any device) otherwise.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from tasder._validation import check_dim, check_float_tensor, check_has_data, check_score
from tasder.sparsity import _kernel
from tasder.sparsity.notation import parse_pattern
from tasder.sparsity.patterns import Dense, Pattern, Rank, Series, StructuredPattern, Unstructured

__all__ = ["MaskBackend", "compute_mask", "keep_top", "magnitude_key", "satisfies", "scored_mask"]

MaskBackend = Literal["auto", "numba", "torch"]

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


def keep_top(scores: torch.Tensor, g: int) -> torch.Tensor:
    """Boolean mask of the ``g`` largest entries along the last dim; ties to the lower index.

    NaN ranks above every number (``torch.sort``'s order). Used for the blocks of a pattern and,
    on a flattened tensor, for ``unstructured(d)``.
    """
    if g >= scores.shape[-1]:
        return torch.ones_like(scores, dtype=torch.bool)
    # A stable descending sort keeps equal scores in index order, which is the tie rule.
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :g]
    keep = torch.zeros_like(scores, dtype=torch.bool)
    return keep.scatter_(-1, order, True)


def _ordered_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over the last dim strictly in index order (float64), matching the compiled kernel."""
    if t.numel() == 0:  # no groups (or none of them holds anything): skip the loop over a long last dim
        return t.new_zeros(t.shape[:-1])
    acc = t[..., 0].clone()
    for j in range(1, t.shape[-1]):
        acc += t[..., j]
    return acc


def _blocks(t: torch.Tensor, h: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The last dim of ``t`` as (..., full blocks, h) and the short tail (..., length mod h)."""
    full = t.shape[-1] // h
    head = t[..., : full * h]
    # Explicit block counts (not -1): a zero-size leading dim makes -1 ambiguous for reshape.
    return head.reshape(*t.shape[:-1], full, h), t[..., full * h :]


def _keep_top_blocks(key: torch.Tensor, h: int, g: int) -> torch.Tensor:
    """Per block of ``h`` along the last dim, the ``g`` largest keys; the short last block on its own.

    Ranking the tail's real elements alone equals ranking it padded: padding would rank last
    (the lowest key at a higher index), so it is never kept in place of a real element.
    """
    full, tail = _blocks(key, h)
    head = keep_top(full, g).reshape(*key.shape[:-1], full.shape[-2] * h)
    if tail.shape[-1] == 0:
        return head
    return torch.cat([head, keep_top(tail, g)], dim=-1)


def _group_sums(t: torch.Tensor, h: int) -> torch.Tensor:
    """Ordered sums of every group of ``h`` along the last dim, the short last group included.

    Summing a short group alone equals summing it zero-padded (padding adds +0.0 at the end).
    """
    full, tail = _blocks(t, h)
    sums = _ordered_sum(full)
    return sums if tail.shape[-1] == 0 else torch.cat([sums, _ordered_sum(tail)[..., None]], dim=-1)


def _keep_top_groups(scores: torch.Tensor, h: int, g: int) -> torch.Tensor:
    """The ``g`` best children of every group of ``h`` along the last dim (an upper HSS rank).

    The short last group stands for a group padded with ``h - n`` children of score 0.0 after its
    ``n`` real ones. Those rank above a real child only when its score is negative (a user score
    can be), so a real child's place there is its place among the real ones, plus ``h - n`` when
    its score is below zero: the padding is accounted for without being materialised.
    """
    full, tail = _blocks(scores, h)
    head = keep_top(full, g).reshape(*scores.shape[:-1], full.shape[-2] * h)
    n = tail.shape[-1]
    if n == 0:
        return head
    if g >= h:
        keep_tail = torch.ones_like(tail, dtype=torch.bool)
    else:
        order = torch.sort(tail, dim=-1, descending=True, stable=True).indices
        place = torch.empty_like(order).scatter_(-1, order, torch.arange(n).expand_as(order).contiguous())
        keep_tail = place + (h - n) * (tail < 0) < g
    return torch.cat([head, keep_tail], dim=-1)


def _structured_mask_last(
    key: torch.Tensor, magnitude: torch.Tensor | None, ranks_lowest_first: tuple[Rank, ...]
) -> torch.Tensor:
    """Mask along the last dim of ``key`` for a G:H or HSS pattern (see :func:`scored_mask`)."""
    length = key.shape[-1]
    r0 = ranks_lowest_first[0]
    mask = _keep_top_blocks(key, r0.h, r0.g)
    if len(ranks_lowest_first) == 1:
        return mask
    assert magnitude is not None
    # Lowest-rank block scores: ordered sums of what each block keeps.
    block_score = _group_sums(torch.where(mask, magnitude, 0.0), r0.h)  # (..., n0)
    n0 = block_score.shape[-1]
    children = 1  # how many lowest-rank blocks one child of the current rank spans
    block_keep = torch.ones_like(block_score, dtype=torch.bool)
    for rank in ranks_lowest_first[1:]:
        keep = _keep_top_groups(block_score, rank.h, rank.g)
        block_score = _group_sums(torch.where(keep, block_score, 0.0), rank.h)
        # Expand this rank's decision to the lowest-rank blocks it covers.
        block_keep &= keep.repeat_interleave(children, dim=-1)[..., :n0]
        children *= rank.h
    return mask & block_keep.repeat_interleave(r0.h, dim=-1)[..., :length]


def scored_mask(
    key: torch.Tensor, pattern: str | Pattern, dim: int = -1, block_score: torch.Tensor | None = None
) -> torch.Tensor:
    """The reference mask of ``pattern`` when elements rank by ``key`` (larger first, ties to the lower index).

    ``key``: any real tensor (the default |x| ranking is :func:`magnitude_key`; NaN ranks first).
    ``block_score`` (float64, shaped like ``key``) is what the upper ranks of an HSS pattern sum
    to score a block (``|x|`` by default in :func:`compute_mask`); required for HSS. This is the
    plain PyTorch definition the compiled kernel is tested against; it runs on any device.
    """
    p = parse_pattern(pattern)
    d = check_dim(dim, key.dim())
    if isinstance(p, Dense):
        return torch.ones_like(key, dtype=torch.bool)
    if isinstance(p, Unstructured):
        flat = key.reshape(-1)
        k = math.floor(p.fraction * flat.numel() + 0.5)
        return keep_top(flat, k).reshape(key.shape)
    assert isinstance(p, StructuredPattern)
    if len(p.ranks) > 1 and block_score is None:
        raise ValueError(f"scored_mask: HSS pattern {str(p)!r} needs `block_score` for its upper ranks")
    magnitude = None if block_score is None or len(p.ranks) == 1 else block_score.movedim(d, -1)
    return _structured_mask_last(key.movedim(d, -1), magnitude, p.ranks_lowest_first).movedim(-1, d)


def compute_mask(
    x: torch.Tensor,
    pattern: str | Pattern,
    dim: int = -1,
    score: torch.Tensor | None = None,
    *,
    backend: MaskBackend = "auto",
) -> torch.Tensor:
    """Boolean mask of the elements ``pattern`` keeps in ``x``, groups running along ``dim``.

    ``score`` (shaped like ``x``) replaces the default ``|x|`` ranking, e.g. Wanda's
    ``|w|·‖x_k‖``. ``unstructured(d)`` ignores ``dim`` and keeps the top ``d`` fraction overall.
    ``backend``: ``"numba"`` (the compiled kernel: G:H or HSS, default score, CPU), ``"torch"``
    (the reference) or ``"auto"`` (the kernel where it applies); both give the same mask.
    """
    p = parse_pattern(pattern)
    x = check_float_tensor(x)
    check_has_data(x)
    d = check_dim(dim, x.dim())
    s = None if score is None else check_score(score, x)
    if backend not in ("auto", "numba", "torch"):
        raise ValueError(f"`backend` must be 'auto', 'numba' or 'torch'; got {backend!r}")
    kernel_ok = s is None and _kernel.supports(p) and x.device.type == "cpu"
    if backend == "numba" and not kernel_ok:
        reason = "numba is not installed" if not _kernel.AVAILABLE else (
            "it needs the default |x| score, a CPU tensor and a G:H or HSS pattern")
        raise ValueError(f"backend='numba' cannot compute a {str(p)!r} mask here: {reason}")
    if kernel_ok and backend != "torch":
        assert isinstance(p, StructuredPattern)
        return _kernel.mask_structured(x, p, d)
    if isinstance(p, Dense):
        return torch.ones_like(x, dtype=torch.bool)
    key = magnitude_key(x) if s is None else s
    block_score = None
    if isinstance(p, StructuredPattern) and len(p.ranks) > 1:
        block_score = x.abs().to(torch.float64) if s is None else s
    return scored_mask(key, p, d, block_score)


def satisfies(x: torch.Tensor, pattern: str | Pattern, dim: int = -1) -> bool:
    """True when the nonzeros of ``x`` obey ``pattern`` along ``dim`` (NaN counts as nonzero)."""
    if isinstance(pattern, Series) or (isinstance(pattern, str) and "+" in pattern):
        raise ValueError(f"satisfies() checks one pattern, not a series; got {str(pattern)!r}")
    p = parse_pattern(pattern)
    x = check_float_tensor(x)
    check_has_data(x)
    d = check_dim(dim, x.dim())
    nonzero = x != 0
    if isinstance(p, Dense):
        return True
    if isinstance(p, Unstructured):
        return int(nonzero.sum()) <= math.floor(p.fraction * x.numel() + 0.5)
    assert isinstance(p, StructuredPattern)
    occupied = nonzero.movedim(d, -1)
    for rank in p.ranks_lowest_first:
        # A short last group counts its real children (padding children are empty).
        full, tail = _blocks(occupied, rank.h)
        if bool((full.sum(dim=-1) > rank.g).any()) or bool((tail.sum(dim=-1) > rank.g).any()):
            return False
        occupied = full.any(dim=-1)
        if tail.shape[-1]:
            occupied = torch.cat([occupied, tail.any(dim=-1, keepdim=True)], dim=-1)
    return True
