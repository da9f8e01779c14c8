"""Compiled (numba) TASD kernel for series of G:H and HSS terms under the default |x| score.

Why a kernel: the decomposition is memory-bound, and the PyTorch reference makes a dozen passes
over the tensor per term (sort, scatter, where...). This kernel reads each row once, runs every
term of the series on a row buffer that stays in cache, and writes each output once.

It works on the *bit patterns* of the floats (int16/32/64 views): moving bits is exact for every
dtype, bfloat16 and float16 included (numba has no native half types), and the bit pattern with
the sign cleared orders exactly like ``|x|`` with NaN above Inf — the same key the reference path
(:func:`tasder.sparsity.masks.magnitude_key`) sorts by, so both select identical elements.
Upper HSS ranks score blocks by float64 sums of ``|x|`` taken in index order, as the reference does.
"""

from __future__ import annotations

import math
import types

import numpy as np
import torch

from tasder.sparsity.patterns import Series, StructuredPattern

try:  # numba is a hard dependency, but keep the package importable (torch path) without it.
    import numba
    from numba import njit, prange

    AVAILABLE = True
except ImportError:  # pragma: no cover - exercised only where numba is missing
    AVAILABLE = False

__all__ = ["AVAILABLE", "approximate_structured", "decompose_structured", "supports", "supports_fast_approximation"]

# dtype -> (integer view, mask clearing the sign bit, bit pattern of +Inf)
_BITS = {
    torch.float16: (torch.int16, 0x7FFF, 0x7C00),
    torch.bfloat16: (torch.int16, 0x7FFF, 0x7F80),
    torch.float32: (torch.int32, 0x7FFFFFFF, 0x7F800000),
    torch.float64: (torch.int64, 0x7FFFFFFFFFFFFFFF, 0x7FF0000000000000),
}

_NP_INT = {torch.int16: np.int16, torch.int32: np.int32, torch.int64: np.int64}



def supports(series: Series) -> bool:
    """True when the kernel can run ``series``: numba present and only G:H / HSS terms."""
    return AVAILABLE and all(isinstance(t, StructuredPattern) for t in series.terms)


if AVAILABLE:

    @njit(cache=True, nogil=True)
    def _load_row(bits, o, j, row, no_sign, inf_bits):  # pragma: no cover - compiled
        """Copy one row (the decomposed dim) into ``row``, zero the padding; count NaN/Inf."""
        length = bits.shape[1]
        bad = 0
        for i in range(length):
            v = bits[o, i, j]
            row[i] = v
            bad += (v & no_sign) >= inf_bits
        for i in range(length, row.shape[0]):
            row[i] = 0
        return bad

    @njit(cache=True, nogil=True)
    def _block_ranks(row, padded, h, no_sign, key_t, rank_t, rank):  # pragma: no cover - compiled
        """rank[i] = place of element i within its block of ``h`` in (|x| desc, index asc) order.

        Keys are laid out transposed (position-in-block major) so that every comparison loop
        runs over consecutive blocks: LLVM turns it into SIMD compares, which is what makes the
        kernel memory-bound instead of compute-bound. Padding zeros rank after every real
        element of their block (equal key, higher index), so they never displace one.
        """
        n_blocks = padded // h
        for b in range(n_blocks):
            for i in range(h):
                key_t[i * n_blocks + b] = row[b * h + i] & no_sign
        for i in range(h):
            ri = i * n_blocks
            for b in range(n_blocks):
                rank_t[ri + b] = 0
            for q in range(h):
                rq = q * n_blocks
                if q < i:  # an equal key at a lower index ranks first
                    for b in range(n_blocks):
                        rank_t[ri + b] += key_t[rq + b] >= key_t[ri + b]
                elif q > i:
                    for b in range(n_blocks):
                        rank_t[ri + b] += key_t[rq + b] > key_t[ri + b]
        for i in range(h):
            for b in range(n_blocks):
                rank[b * h + i] = rank_t[i * n_blocks + b]

    @njit(cache=True, nogil=True)
    def _greater(a, b):  # pragma: no cover - compiled
        # NaN ranks above everything, as torch.sort does.
        if a != a:
            return b == b
        return a > b

    @njit(cache=True, nogil=True)
    def _select_float(score, keep, start, h, g):  # pragma: no cover - compiled
        """keep[start:start+h] = the g best block scores (ties to the lower index)."""
        for i in range(start, start + h):
            keep[i] = False
        for _ in range(min(g, h)):
            best = -1
            for i in range(start, start + h):
                if not keep[i] and (best < 0 or _greater(score[i], score[best])):
                    best = i
            keep[best] = True

    def _decompose_same_h_py(bits, out, h, cum_g, padded, no_sign, inf_bits):  # pragma: no cover
        """Fast path: every term is a one-rank G:H with the same H (2:8+1:8, 4:8+2:8, 2:4...).

        Term t then takes exactly the elements ranked [cum_g[t-1], cum_g[t]) in their block:
        once a term takes its picks they are zeros, which rank below every remaining nonzero.
        (A later term may "take" such a zero instead of a real zero, but a zero moved or not
        leaves the same bits, so the outputs equal the term-by-term definition.) One ranking
        per element replaces a selection per term.
        """
        outer, length, inner = bits.shape
        n_terms = cum_g.shape[0]
        rows = outer * inner
        n_chunks = min(rows, 1024)
        bad = np.zeros(n_chunks, dtype=np.int64)
        for c in prange(n_chunks):
            row = np.empty(padded, dtype=bits.dtype)
            key_t = np.empty(padded, dtype=bits.dtype)
            rank_t = np.empty(padded, dtype=bits.dtype)
            rank = np.empty(padded, dtype=bits.dtype)
            who = np.empty(padded, dtype=np.uint8)
            count = 0
            for rix in range(c * rows // n_chunks, (c + 1) * rows // n_chunks):
                o = rix // inner
                j = rix % inner
                count += _load_row(bits, o, j, row, no_sign, inf_bits)
                _block_ranks(row, padded, h, no_sign, key_t, rank_t, rank)
                for i in range(length):
                    w = 0
                    for t in range(n_terms):
                        w += rank[i] >= cum_g[t]
                    who[i] = w
                if out.shape[0] == 1:  # approximation only: the sum of the terms, nothing else
                    for i in range(length):
                        v = row[i]
                        out[0, o, i, j] = v if (who[i] < n_terms or (v & no_sign) == 0) else 0
                    continue
                for t in range(n_terms + 1):
                    for i in range(length):
                        v = row[i]
                        # Where x is a (signed) zero every output holds that same zero.
                        out[t, o, i, j] = v if (who[i] == t or (v & no_sign) == 0) else 0
            bad[c] = count
        return bad.sum()

    def _decompose_general_py(
        bits, vals, out, ranks_g, ranks_h, n_ranks, padded_max, no_sign, inf_bits, need_mag
    ):  # pragma: no cover - compiled
        """Term by term: mixed block sizes (2:4+2:8+2:16) and HSS terms.

        ranks_g/ranks_h: (T, max_ranks), lowest rank first. Upper HSS ranks score each block
        of the rank below by the float64 sum of the |x| it still holds, summed in index order.
        """
        outer, length, inner = bits.shape
        n_terms = ranks_g.shape[0]
        rows = outer * inner
        n_chunks = min(rows, 1024)
        bad = np.zeros(n_chunks, dtype=np.int64)
        for c in prange(n_chunks):
            row = np.empty(padded_max, dtype=bits.dtype)
            key_t = np.empty(padded_max, dtype=bits.dtype)
            rank_t = np.empty(padded_max, dtype=bits.dtype)
            rank = np.empty(padded_max, dtype=bits.dtype)
            mag = np.zeros(padded_max if need_mag else 1, dtype=np.float64)
            keep = np.zeros(padded_max, dtype=np.bool_)
            block_score = np.zeros(padded_max, dtype=np.float64)
            block_keep = np.zeros(padded_max, dtype=np.bool_)
            level_keep = np.zeros(padded_max, dtype=np.bool_)
            count = 0
            for rix in range(c * rows // n_chunks, (c + 1) * rows // n_chunks):
                o = rix // inner
                j = rix % inner
                count += _load_row(bits, o, j, row, no_sign, inf_bits)
                if need_mag:
                    for i in range(length):
                        mag[i] = abs(np.float64(vals[o, i, j]))
                    for i in range(length, padded_max):
                        mag[i] = 0.0
                for t in range(n_terms):
                    block = 1
                    for r in range(n_ranks[t]):
                        block *= ranks_h[t, r]
                    padded = (length + block - 1) // block * block
                    h0 = ranks_h[t, 0]
                    g0 = ranks_g[t, 0]
                    _block_ranks(row, padded, h0, no_sign, key_t, rank_t, rank)
                    for i in range(padded):
                        keep[i] = rank[i] < g0
                    if n_ranks[t] > 1:
                        n_blocks = padded // h0
                        for b in range(n_blocks):
                            s = 0.0
                            for i in range(b * h0, (b + 1) * h0):
                                s += mag[i] if keep[i] else 0.0
                            block_score[b] = s
                            block_keep[b] = True
                        children = 1  # lowest-rank blocks spanned by one block of rank r
                        n_cur = n_blocks
                        for r in range(1, n_ranks[t]):
                            hr = ranks_h[t, r]
                            for b in range(0, n_cur, hr):
                                _select_float(block_score, level_keep, b, hr, ranks_g[t, r])
                            for b in range(n_blocks):
                                if not level_keep[b // children]:
                                    block_keep[b] = False
                            n_next = n_cur // hr
                            for b in range(n_next):  # next rank's scores: ordered sums of kept children
                                s = 0.0
                                for q in range(b * hr, (b + 1) * hr):
                                    s += block_score[q] if level_keep[q] else 0.0
                                block_score[b] = s
                            n_cur = n_next
                            children *= hr
                        for b in range(n_blocks):
                            if not block_keep[b]:
                                for i in range(b * h0, (b + 1) * h0):
                                    keep[i] = False
                    # Branch-free moves: the keep pattern is data-dependent and unpredictable.
                    for i in range(length):
                        v = row[i]
                        zero = v if (v & no_sign) == 0 else 0  # keep a signed zero's sign
                        k = keep[i]
                        out[t, o, i, j] = v if k else zero
                        row[i] = zero if k else v
                    if need_mag:
                        for i in range(length):
                            mag[i] = 0.0 if keep[i] else mag[i]
                for i in range(length):
                    out[n_terms, o, i, j] = row[i]
            bad[c] = count
        return bad.sum()


def _renamed(fn: types.FunctionType, suffix: str) -> types.FunctionType:
    """A copy of ``fn`` under its own name.

    numba's on-disk cache keys an entry by the function's qualified name, line and signature, not
    by the compile flags: compiling one Python function both with and without ``parallel=True``
    would give two dispatchers one cache entry, and whichever compiled first would serve both (a
    small decomposition compiled the serial kernel, and every large one after it ran on one
    thread, also in later processes). Distinct names keep distinct entries.
    """
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix, fn.__defaults__, fn.__closure__)
    copy.__qualname__ = fn.__qualname__ + suffix
    copy.__doc__ = fn.__doc__
    return copy


if AVAILABLE:
    # Each kernel is compiled twice: threaded for big tensors, serial for small ones, where
    # waking the thread pool costs more than the work (TASD-A on a small batch, a busy machine).
    _decompose_same_h_parallel = njit(parallel=True, cache=True, nogil=True)(
        _renamed(_decompose_same_h_py, "_parallel"))
    _decompose_same_h_serial = njit(cache=True, nogil=True)(_renamed(_decompose_same_h_py, "_serial"))
    _decompose_general_parallel = njit(parallel=True, cache=True, nogil=True)(
        _renamed(_decompose_general_py, "_parallel"))
    _decompose_general_serial = njit(cache=True, nogil=True)(_renamed(_decompose_general_py, "_serial"))

#: Below this many elements the serial kernels run (measured: thread start-up dominates there).
PARALLEL_MIN_ELEMENTS = 1 << 16


def _same_h_kernel(numel: int):  # type: ignore[no-untyped-def]
    return _decompose_same_h_parallel if numel >= PARALLEL_MIN_ELEMENTS else _decompose_same_h_serial


def _general_kernel(numel: int):  # type: ignore[no-untyped-def]
    return _decompose_general_parallel if numel >= PARALLEL_MIN_ELEMENTS else _decompose_general_serial


def supports_fast_approximation(series: Series) -> bool:
    """True when :func:`approximate_structured` has a single-output kernel for ``series``."""
    return supports(series) and _same_h(series) is not None


def _same_h(series: Series) -> int | None:
    """The common H when every term is a one-rank G:H with the same H, else None."""
    hs = {t.block_size for t in series.terms if isinstance(t, StructuredPattern) and len(t.ranks) == 1}
    if len(hs) != 1 or any(not isinstance(t, StructuredPattern) or len(t.ranks) != 1 for t in series.terms):
        return None
    return hs.pop()


def approximate_structured(x: torch.Tensor, series: Series, dim: int) -> tuple[torch.Tensor, int]:
    """Only the approximation (the sum of the terms) of a same-H G:H series, in one pass.

    Equal bit for bit to summing the terms of :func:`decompose_structured`; used where the terms
    themselves are not needed (TASD-A on every forward pass). Returns (approximation, NaN/Inf count).
    """
    h = _same_h(series)
    if h is None:
        raise ValueError(f"no single-output kernel for series {str(series)!r}")
    int_dtype, no_sign, inf_bits = _BITS[x.dtype]
    np_int = _NP_INT[int_dtype]
    shape = tuple(x.shape)
    length = shape[dim]
    outer = math.prod(shape[:dim])
    inner = math.prod(shape[dim + 1 :])
    out_np = np.empty((1, outer, length, inner), dtype=np_int)
    nonfinite = 0
    if x.numel() > 0:
        bits = x.contiguous().view(int_dtype).reshape(outer, length, inner).numpy()
        cum_g = np.cumsum([t.ranks[0].g for t in series.terms]).astype(np.int64)  # type: ignore[attr-defined]
        nonfinite = _run_same_h(bits, out_np, h, cum_g, np_int(no_sign), np_int(inf_bits))
    return torch.from_numpy(out_np).view(x.dtype).reshape(shape), int(nonfinite)


def decompose_structured(
    x: torch.Tensor, series: Series, dim: int
) -> tuple[list[torch.Tensor], torch.Tensor, int]:
    """Run ``series`` on ``x`` along ``dim``; returns (terms, residual, count of NaN/Inf in x)."""
    int_dtype, no_sign, inf_bits = _BITS[x.dtype]
    np_int = _NP_INT[int_dtype]
    shape = tuple(x.shape)
    length = shape[dim]
    outer = math.prod(shape[:dim])
    inner = math.prod(shape[dim + 1 :])
    n_terms = series.order
    # NumPy allocates large buffers with transparent huge pages (madvise) where the OS offers
    # them; first-touch page faults otherwise cost more than the decomposition itself.
    out_np = np.empty((n_terms + 1, outer, length, inner), dtype=np_int)
    nonfinite = 0
    if x.numel() > 0:
        xc = x.contiguous()
        bits = xc.view(int_dtype).reshape(outer, length, inner).numpy()
        patterns = [t for t in series.terms if isinstance(t, StructuredPattern)]
        h = _same_h(series)
        if h is not None:
            cum_g = np.cumsum([p.ranks[0].g for p in patterns]).astype(np.int64)
            nonfinite = _run_same_h(bits, out_np, h, cum_g, np_int(no_sign), np_int(inf_bits))
        else:
            nonfinite = _run_general(xc, bits, out_np, patterns, length, np_int(no_sign), np_int(inf_bits))
    as_float = torch.from_numpy(out_np).view(x.dtype)
    terms = [as_float[t].reshape(shape) for t in range(n_terms)]
    return terms, as_float[n_terms].reshape(shape), int(nonfinite)


#: Blocks ranked per kernel row when short rows are regrouped into long ones.
_REGROUP_BLOCKS = 512


def _run_same_h(bits, out_np, h, cum_g, no_sign, inf_bits) -> int:  # type: ignore[no-untyped-def]
    """Same-H fast path; many short rows are ranked as one long row where that is exact.

    The SIMD compare loops of the ranking run over the blocks of one row, and a 384-wide row
    has only 48 blocks of 8. When the decomposed dim is innermost and a multiple of H, blocks
    never straddle rows, so the rows can be cut into spans of ``_REGROUP_BLOCKS`` blocks instead.
    """
    _, length, inner = bits.shape
    if inner == 1 and length % h == 0 and length < _REGROUP_BLOCKS * h:
        n_out = out_np.shape[0]
        flat_in = bits.reshape(-1)
        flat_out = out_np.reshape(n_out, -1)
        span = _REGROUP_BLOCKS * h
        main = (flat_in.size // span) * span
        count = 0
        for start, stop, width in ((0, main, span), (main, flat_in.size, flat_in.size - main)):
            if stop > start:
                part_in = flat_in[start:stop].reshape(-1, width, 1)
                part_out = flat_out[:, start:stop].reshape(n_out, -1, width, 1)
                assert np.shares_memory(part_out, out_np)  # a copy would silently lose the output
                count += _same_h_kernel(stop - start)(part_in, part_out, h, cum_g, width, no_sign, inf_bits)
        return count
    padded = -(-length // h) * h
    return _same_h_kernel(bits.size)(bits, out_np, h, cum_g, padded, no_sign, inf_bits)


def _run_general(xc, bits, out_np, patterns, length, no_sign, inf_bits) -> int:  # type: ignore[no-untyped-def]
    """Term-by-term kernel: mixed block sizes and HSS terms."""
    outer, _, inner = bits.shape
    n_terms = len(patterns)
    max_ranks = max(len(p.ranks) for p in patterns)
    ranks_g = np.ones((n_terms, max_ranks), dtype=np.int64)
    ranks_h = np.ones((n_terms, max_ranks), dtype=np.int64)
    n_ranks = np.zeros(n_terms, dtype=np.int64)
    for t, p in enumerate(patterns):
        for r, rank in enumerate(p.ranks_lowest_first):
            ranks_g[t, r] = rank.g
            ranks_h[t, r] = rank.h
        n_ranks[t] = len(p.ranks)
    padded_max = max(-(-length // p.block_size) * p.block_size for p in patterns)
    need_mag = max_ranks > 1
    if need_mag:
        # Upper ranks need |x| as a float: a zero-copy view for float32/64, an exact upcast
        # for the half types.
        wide = xc if xc.dtype in (torch.float32, torch.float64) else xc.float()
        vals = wide.reshape(outer, length, inner).numpy()
    else:
        vals = np.zeros((1, 1, 1), dtype=np.float32)
    return _general_kernel(xc.numel())(
        bits, vals, out_np, ranks_g, ranks_h, n_ranks, padded_max, no_sign, inf_bits, need_mag
    )


if AVAILABLE:
    # Use every core numba was configured with; documented here so profiles are not a surprise.
    THREADS = numba.get_num_threads()
