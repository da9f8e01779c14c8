"""Compiled (numba) kernel: structured masks and TASD series of G:H / HSS terms under the |x| score.

Private module (the public entry points are :func:`tasder.sparsity.compute_mask` and
:func:`tasder.tasd.decompose`); the names below are what those two use.

Why a kernel: the work is memory-bound, and the PyTorch reference makes a dozen passes over the
tensor per term (sort, scatter, where...). This kernel reads each row once, runs every term of a
series on a row buffer that stays in cache, and writes each output once.

It works on the *bit patterns* of the floats (int16/32/64 views): moving bits is exact for every
dtype, bfloat16 and float16 included (numba has no native half types), and the bit pattern with
the sign cleared orders exactly like ``|x|`` with NaN above Inf — the same key the reference path
(:func:`tasder.sparsity.masks.magnitude_key`) sorts by, so both select identical elements.
Upper HSS ranks score blocks by float64 sums of ``|x|`` taken in index order, as the reference does.

Selection inside a block of H (ties to the lower index):

* H ≤ :data:`PAIRWISE_MAX_H`: every element counts the elements that beat it (O(H) compares per
  element, but branch-free and vectorised across blocks: the fastest for the H hardware uses);
* larger H: a stable merge sort of the block (O(log H) per element, whatever the data), so no H
  makes the kernel quadratic.

The zero padding of a short last block ranks below every real element (equal key, higher index),
so it never changes what is kept: the pairwise path pads (fewer than 256 slots), the sort path and
the upper HSS ranks leave it out — a row of 12 elements under ``1:65536`` costs 12 elements of
work, not 65,536.
"""

from __future__ import annotations

import math
import types

import numpy as np
import torch

from tasder.sparsity.patterns import Pattern, Series, StructuredPattern

try:  # numba is a hard dependency, but keep the package importable (torch path) without it.
    import numba
    from numba import njit, prange

    AVAILABLE = True
except ImportError:  # pragma: no cover - exercised only where numba is missing
    AVAILABLE = False

__all__ = [
    "AVAILABLE",
    "PAIRWISE_MAX_H",
    "approximate_structured",
    "decompose_structured",
    "mask_structured",
    "supports",
    "supports_fast_approximation",
]

# dtype -> (integer view, mask clearing the sign bit, bit pattern of +Inf)
_BITS = {
    torch.float16: (torch.int16, 0x7FFF, 0x7C00),
    torch.bfloat16: (torch.int16, 0x7FFF, 0x7F80),
    torch.float32: (torch.int32, 0x7FFFFFFF, 0x7F800000),
    torch.float64: (torch.int64, 0x7FFFFFFFFFFFFFFF, 0x7FF0000000000000),
}

_NP_INT = {torch.int16: np.int16, torch.int32: np.int32, torch.int64: np.int64}

#: Largest H ranked by pairwise counting; above it a block is merge-sorted. Measured on float32
#: 4096² (time / clone of a mask, 2 cores): pairwise 11 at H=129, 20 at 192, 18-23 at 256 and 52 at
#: 512; sorting 21-23 from H=129 to 256, 28 at 1024, 38-46 at 4096 and 65536.
PAIRWISE_MAX_H = 256

#: Upper HSS ranks pick by repeated scans while G·H stays below this; above it they sort.
_SCAN_MAX_WORK = 1024

# Output modes of the kernels.
_TERMS, _APPROX, _MASK = 0, 1, 2


def supports(series: Series | Pattern) -> bool:
    """True when the kernel can run ``series`` (or one pattern): numba present, G:H / HSS terms only."""
    terms = series.terms if isinstance(series, Series) else (series,)
    return AVAILABLE and all(isinstance(t, StructuredPattern) for t in terms)


if AVAILABLE:

    @njit(cache=True, nogil=True)
    def _load_row(bits, o, j, row, no_sign, inf_bits):  # pragma: no cover - compiled
        """Copy one row (the decomposed dim) into ``row``; count NaN/Inf."""
        length = bits.shape[1]
        bad = 0
        for i in range(length):
            v = bits[o, i, j]
            row[i] = v
            bad += (v & no_sign) >= inf_bits
        return bad

    @njit(cache=True, nogil=True)
    def _pairwise_ranks(row, length, h, no_sign, key_t, rank_t, rank):  # pragma: no cover - compiled
        """rank[i] = place of element i within its block of ``h`` in (|x| desc, index asc) order.

        Keys are laid out transposed (position-in-block major) so that every comparison loop
        runs over consecutive blocks: LLVM turns it into SIMD compares, which is what makes the
        kernel memory-bound instead of compute-bound. A short last block is zero-padded (fewer
        than H slots, H ≤ PAIRWISE_MAX_H): padding zeros rank after every real element of their
        block (equal key, higher index), so they never displace one.
        """
        n_blocks = (length + h - 1) // h
        padded = n_blocks * h
        for i in range(length, padded):
            row[i] = 0
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
    def _order_desc(keys, start, n, idx, tmp):  # pragma: no cover - compiled
        """Positions start..start+n-1 ordered by ``keys`` descending, equal keys in index order.

        A bottom-up merge sort on preallocated index buffers: O(n log n) whatever the data (no
        quicksort worst case for a crafted tensor), stable, and no allocation per block. Returns
        whichever of ``idx``/``tmp`` holds the result in its first ``n`` entries.
        """
        for i in range(n):
            idx[i] = start + i
        src, dst = idx, tmp
        width = 1
        while width < n:
            for lo in range(0, n, 2 * width):
                mid = min(lo + width, n)
                hi = min(lo + 2 * width, n)
                i, j, k = lo, mid, lo
                while i < mid and j < hi:
                    if _greater(keys[src[j]], keys[src[i]]):  # only a strictly better right one jumps ahead
                        dst[k] = src[j]
                        j += 1
                    else:
                        dst[k] = src[i]
                        i += 1
                    k += 1
                while i < mid:
                    dst[k] = src[i]
                    i += 1
                    k += 1
                while j < hi:
                    dst[k] = src[j]
                    j += 1
                    k += 1
            src, dst = dst, src
            width *= 2
        return src

    @njit(cache=True, nogil=True)
    def _assign(row, length, h, cum_g, no_sign, key_t, rank_t, rank, idx, tmp, who):  # pragma: no cover
        """who[i] = how many of the cumulative budgets ``cum_g`` element i's in-block rank reaches.

        With ``cum_g = [g]`` that is 0 for the ``g`` kept elements of each block and 1 for the rest;
        with the cumulative G's of a same-H series it is the index of the term that takes the
        element (``len(cum_g)``: the residual). ``row`` has room for the padding of a short block.
        """
        n_terms = cum_g.shape[0]
        if h <= PAIRWISE_MAX_H:
            _pairwise_ranks(row, length, h, no_sign, key_t, rank_t, rank)
            for i in range(length):
                w = 0
                for t in range(n_terms):
                    w += rank[i] >= cum_g[t]
                who[i] = w
            return
        # Sort path: a short block (a row shorter than H) sorts its real elements only.
        for start in range(0, length, h):
            n = min(h, length - start)
            for i in range(start, start + n):
                key_t[i] = row[i] & no_sign
            order = _order_desc(key_t, start, n, idx, tmp)
            t = 0
            for r in range(n):
                while t < n_terms and cum_g[t] <= r:
                    t += 1
                who[order[r]] = t

    @njit(cache=True, nogil=True)
    def _greater(a, b):  # pragma: no cover - compiled
        # NaN ranks above everything, as torch.sort does; two NaNs tie.
        if a != a:
            return b == b
        return a > b

    @njit(cache=True, nogil=True)
    def _select_blocks(score, keep, start, n, g, idx, tmp):  # pragma: no cover - compiled
        """keep[start:start+n] = the min(g, n) best block scores (NaN first, ties to the lower index).

        Scores are float64 sums of |x| (never negative), so a short group's missing children —
        zero-score padding after every real child in the definition — are never preferred to a
        real one and can be left out.
        """
        if g >= n:
            for i in range(start, start + n):
                keep[i] = True
            return
        for i in range(start, start + n):
            keep[i] = False
        if g * n <= _SCAN_MAX_WORK:
            for _ in range(g):
                best = -1
                for i in range(start, start + n):
                    if not keep[i] and (best < 0 or _greater(score[i], score[best])):
                        best = i
                keep[best] = True
            return
        order = _order_desc(score, start, n, idx, tmp)
        for r in range(g):
            keep[order[r]] = True

    @njit(cache=True, nogil=True)
    def _upper_ranks(block_score, block_keep, level_keep, n_blocks, g, h, n_ranks, idx, tmp):  # pragma: no cover
        """block_keep[b] for every lowest-rank block b: does every upper rank keep what holds it?

        ``block_score[:n_blocks]`` holds the lowest-rank block scores (overwritten rank by rank);
        ``g``/``h``: the pattern's ranks, lowest first. A rank that keeps every child (G ≥ H)
        decides nothing, and the top rank's own scores are never needed: both are skipped.
        """
        for b in range(n_blocks):
            block_keep[b] = True
        children = 1  # lowest-rank blocks spanned by one child of rank r
        n_cur = n_blocks
        for r in range(1, n_ranks):
            hr = h[r]
            gr = g[r]
            if gr < hr:
                for b in range(0, n_cur, hr):
                    _select_blocks(block_score, level_keep, b, min(hr, n_cur - b), gr, idx, tmp)
                for q in range(n_cur):
                    if not level_keep[q]:
                        for b in range(q * children, min((q + 1) * children, n_blocks)):
                            block_keep[b] = False
            else:
                for q in range(n_cur):
                    level_keep[q] = True
            if r == n_ranks - 1:
                break
            n_next = (n_cur + hr - 1) // hr
            for b in range(n_next):  # next rank's scores: ordered sums of the kept children
                s = 0.0
                for q in range(b * hr, min((b + 1) * hr, n_cur)):
                    s += block_score[q] if level_keep[q] else 0.0
                block_score[b] = s
            n_cur = n_next
            children *= hr

    def _same_h_py(bits, out, mask_out, mode, h, cum_g, no_sign, inf_bits):  # pragma: no cover
        """Every term is a one-rank G:H with the same H (2:8+1:8, 4:8+2:8, 2:4, a G:H mask...).

        Term t then takes exactly the elements ranked [cum_g[t-1], cum_g[t]) in their block:
        once a term takes its picks they are zeros, which rank below every remaining nonzero.
        (A later term may "take" such a zero instead of a real zero, but a zero moved or not
        leaves the same bits, so the outputs equal the term-by-term definition.) One ranking
        per element replaces a selection per term.

        mode: _TERMS writes the terms and the residual to ``out``, _APPROX their sum to
        ``out[0]``, _MASK ``who == 0`` (the first term's selection) to ``mask_out[0]``.
        """
        outer, length, inner = bits.shape
        n_terms = cum_g.shape[0]
        rows = outer * inner
        n_chunks = min(rows, 1024)
        room = length + (h - 1 if h <= PAIRWISE_MAX_H else 0)  # the pairwise path pads a short block
        bad = np.zeros(n_chunks, dtype=np.int64)
        for c in prange(n_chunks):
            row = np.empty(room, dtype=bits.dtype)
            key_t = np.empty(room, dtype=bits.dtype)
            rank_t = np.empty(room, dtype=bits.dtype)
            rank = np.empty(room, dtype=bits.dtype)
            idx = np.empty(min(h, length), dtype=np.int64)
            tmp = np.empty(min(h, length), dtype=np.int64)
            who = np.empty(length, dtype=np.uint8)
            count = 0
            for rix in range(c * rows // n_chunks, (c + 1) * rows // n_chunks):
                o = rix // inner
                j = rix % inner
                count += _load_row(bits, o, j, row, no_sign, inf_bits)
                _assign(row, length, h, cum_g, no_sign, key_t, rank_t, rank, idx, tmp, who)
                if mode == _MASK:
                    for i in range(length):
                        mask_out[0, o, i, j] = who[i] == 0
                    continue
                if mode == _APPROX:  # the sum of the terms, nothing else
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

    def _general_py(
        bits, vals, table, out, mask_out, mode, ranks_g, ranks_h, n_ranks, no_sign, inf_bits, need_mag
    ):  # pragma: no cover - compiled
        """Term by term: mixed block sizes (2:4+2:8+2:16) and HSS terms.

        ranks_g/ranks_h: (T, max_ranks), lowest rank first. Upper HSS ranks score each block
        of the rank below by the float64 sum of the |x| it still holds, summed in index order;
        |x| comes from ``vals`` (float32/float64 inputs) or, for the half types, from ``table``
        (|x| of every 15-bit pattern), so no widened copy of the input is made.
        mode: _TERMS writes the terms and the residual to ``out``; _MASK the (single) term's
        selection to ``mask_out[0]``.
        """
        outer, length, inner = bits.shape
        n_terms = ranks_g.shape[0]
        rows = outer * inner
        n_chunks = min(rows, 1024)
        use_table = table.shape[0] > 1
        room = length + PAIRWISE_MAX_H  # the pairwise path pads a short block
        bad = np.zeros(n_chunks, dtype=np.int64)
        for c in prange(n_chunks):
            row = np.empty(room, dtype=bits.dtype)
            key_t = np.empty(room, dtype=bits.dtype)
            rank_t = np.empty(room, dtype=bits.dtype)
            rank = np.empty(room, dtype=bits.dtype)
            idx = np.empty(length, dtype=np.int64)
            tmp = np.empty(length, dtype=np.int64)
            who = np.empty(length, dtype=np.uint8)
            mag = np.zeros(length if need_mag else 1, dtype=np.float64)
            keep = np.zeros(length, dtype=np.bool_)
            block_score = np.zeros(length if need_mag else 1, dtype=np.float64)
            block_keep = np.zeros(length if need_mag else 1, dtype=np.bool_)
            level_keep = np.zeros(length if need_mag else 1, dtype=np.bool_)
            count = 0
            for rix in range(c * rows // n_chunks, (c + 1) * rows // n_chunks):
                o = rix // inner
                j = rix % inner
                count += _load_row(bits, o, j, row, no_sign, inf_bits)
                if need_mag:
                    if use_table:
                        for i in range(length):
                            mag[i] = table[row[i] & no_sign]
                    else:
                        for i in range(length):
                            mag[i] = abs(np.float64(vals[o, i, j]))
                for t in range(n_terms):
                    h0 = ranks_h[t, 0]
                    _assign(row, length, h0, ranks_g[t, 0:1], no_sign, key_t, rank_t, rank, idx, tmp, who)
                    if n_ranks[t] == 1:
                        for i in range(length):
                            keep[i] = who[i] == 0
                    else:
                        n_blocks = (length + h0 - 1) // h0
                        for b in range(n_blocks):  # the selection and its block score in one pass
                            s = 0.0
                            for i in range(b * h0, min((b + 1) * h0, length)):
                                k = who[i] == 0
                                keep[i] = k
                                s += mag[i] if k else 0.0
                            block_score[b] = s
                        _upper_ranks(block_score, block_keep, level_keep, n_blocks, ranks_g[t], ranks_h[t],
                                     n_ranks[t], idx, tmp)
                        for b in range(n_blocks):
                            if not block_keep[b]:
                                for i in range(b * h0, min((b + 1) * h0, length)):
                                    keep[i] = False
                    if mode == _MASK:
                        for i in range(length):
                            mask_out[0, o, i, j] = keep[i]
                        break
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
                if mode == _TERMS:
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
    _same_h_parallel = njit(parallel=True, cache=True, nogil=True)(_renamed(_same_h_py, "_parallel"))
    _same_h_serial = njit(cache=True, nogil=True)(_renamed(_same_h_py, "_serial"))
    _general_parallel = njit(parallel=True, cache=True, nogil=True)(_renamed(_general_py, "_parallel"))
    _general_serial = njit(cache=True, nogil=True)(_renamed(_general_py, "_serial"))

#: Below this many elements the serial kernels run (measured: thread start-up dominates there).
PARALLEL_MIN_ELEMENTS = 1 << 16


def _threaded(numel: int) -> bool:
    """Whether a kernel over ``numel`` elements runs on numba's threads.

    Not when the caller asked torch for one thread (:func:`tasder._threads.single_thread`: the
    demo, permutation searches): that is a request to stay on one core, and a threaded kernel
    beside other busy work (the demo's figure workers, another job) waits on its slowest thread —
    measured 36-48 ms vs 8-11 ms serial for a 147k-element 4:8+1:8 at load 5. The outputs are the
    same either way (each row is ranked on its own).
    """
    return numel >= PARALLEL_MIN_ELEMENTS and torch.get_num_threads() > 1


def _same_h_kernel(numel: int):  # type: ignore[no-untyped-def]
    return _same_h_parallel if _threaded(numel) else _same_h_serial


def _general_kernel(numel: int):  # type: ignore[no-untyped-def]
    return _general_parallel if _threaded(numel) else _general_serial


def supports_fast_approximation(series: Series) -> bool:
    """True when :func:`approximate_structured` has a single-output kernel for ``series``."""
    return supports(series) and _same_h(series) is not None


def _same_h(series: Series) -> int | None:
    """The common H when every term is a one-rank G:H with the same H, else None."""
    hs = {t.block_size for t in series.terms if isinstance(t, StructuredPattern) and len(t.ranks) == 1}
    if len(hs) != 1 or any(not isinstance(t, StructuredPattern) or len(t.ranks) != 1 for t in series.terms):
        return None
    return hs.pop()


def _layout(x: torch.Tensor, dim: int) -> tuple[int, int, int]:
    shape = tuple(x.shape)
    return math.prod(shape[:dim]), shape[dim], math.prod(shape[dim + 1 :])


def _bits_view(xc: torch.Tensor, dim: int) -> np.ndarray:
    """The bits of a contiguous ``xc`` as an (outer, length, inner) integer array (no copy)."""
    return xc.view(_BITS[xc.dtype][0]).reshape(_layout(xc, dim)).numpy()


_DUMMY_MASK = np.zeros((1, 1, 1, 1), dtype=np.bool_)
_DUMMY_VALS = {np.dtype(np.float32): np.zeros((1, 1, 1), dtype=np.float32),
               np.dtype(np.float64): np.zeros((1, 1, 1), dtype=np.float64)}
_NO_TABLE = np.zeros(1, dtype=np.float64)
_TABLES: dict[torch.dtype, np.ndarray] = {}


def _magnitude_table(dtype: torch.dtype) -> np.ndarray:
    """float64 |x| of every sign-cleared 16-bit pattern of a half type (exact; 256 KiB, built once)."""
    if dtype not in _TABLES:
        codes = torch.arange(0x8000, dtype=torch.int32).to(torch.int16)
        _TABLES[dtype] = codes.view(dtype).to(torch.float64).numpy().copy()
    return _TABLES[dtype]


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
    out_np = np.empty((1, *_layout(x, dim)), dtype=np_int)
    nonfinite = 0
    if x.numel() > 0:
        cum_g = np.cumsum([t.ranks[0].g for t in series.terms]).astype(np.int64)  # type: ignore[attr-defined]
        nonfinite = _run_same_h(_bits_view(x.detach().contiguous(), dim), out_np, _DUMMY_MASK, _APPROX, h, cum_g,
                                np_int(no_sign), np_int(inf_bits))
    return torch.from_numpy(out_np).view(x.dtype).reshape(x.shape), int(nonfinite)


def mask_structured(x: torch.Tensor, pattern: StructuredPattern, dim: int) -> torch.Tensor:
    """Boolean mask of what ``pattern`` (G:H or HSS) keeps in ``x`` along ``dim`` under the |x| score.

    Bit-identical selection to the reference :func:`tasder.sparsity.masks.scored_mask` with
    :func:`~tasder.sparsity.masks.magnitude_key` (NaN above Inf, ties to the lower index).
    """
    int_dtype, no_sign, inf_bits = _BITS[x.dtype]
    np_int = _NP_INT[int_dtype]
    mask_np = np.empty((1, *_layout(x, dim)), dtype=np.bool_)
    if x.numel() > 0:
        xc = x.detach().contiguous()  # a copy only when x is not contiguous
        bits = _bits_view(xc, dim)
        if len(pattern.ranks) == 1:
            cum_g = np.array([pattern.ranks[0].g], dtype=np.int64)
            dummy_out = np.zeros((1, 1, 1, 1), dtype=np_int)
            _run_same_h(bits, dummy_out, mask_np, _MASK, pattern.block_size, cum_g, np_int(no_sign),
                        np_int(inf_bits))
        else:
            dummy_out = np.zeros((1, 1, 1, 1), dtype=np_int)
            _run_general(xc, bits, dummy_out, mask_np, _MASK, [pattern], np_int(no_sign), np_int(inf_bits))
    return torch.from_numpy(mask_np).reshape(x.shape)


def decompose_structured(
    x: torch.Tensor, series: Series, dim: int
) -> tuple[list[torch.Tensor], torch.Tensor, int]:
    """Run ``series`` on ``x`` along ``dim``; returns (terms, residual, count of NaN/Inf in x)."""
    int_dtype, no_sign, inf_bits = _BITS[x.dtype]
    np_int = _NP_INT[int_dtype]
    n_terms = series.order
    # NumPy allocates large buffers with transparent huge pages (madvise) where the OS offers
    # them; first-touch page faults otherwise cost more than the decomposition itself.
    out_np = np.empty((n_terms + 1, *_layout(x, dim)), dtype=np_int)
    nonfinite = 0
    if x.numel() > 0:
        xc = x.detach().contiguous()  # a copy only when x is not contiguous
        bits = _bits_view(xc, dim)
        patterns = [t for t in series.terms if isinstance(t, StructuredPattern)]
        h = _same_h(series)
        if h is not None:
            cum_g = np.cumsum([p.ranks[0].g for p in patterns]).astype(np.int64)
            nonfinite = _run_same_h(bits, out_np, _DUMMY_MASK, _TERMS, h, cum_g, np_int(no_sign), np_int(inf_bits))
        else:
            nonfinite = _run_general(xc, bits, out_np, _DUMMY_MASK, _TERMS, patterns, np_int(no_sign),
                                     np_int(inf_bits))
    as_float = torch.from_numpy(out_np).view(x.dtype)
    terms = [as_float[t].reshape(x.shape) for t in range(n_terms)]
    return terms, as_float[n_terms].reshape(x.shape), int(nonfinite)


#: Blocks ranked per kernel row when short rows are regrouped into long ones.
_REGROUP_BLOCKS = 512


def _run_same_h(bits, out_np, mask_np, mode, h, cum_g, no_sign, inf_bits) -> int:  # type: ignore[no-untyped-def]
    """Same-H kernel; many short rows are ranked as one long row where that is exact.

    The SIMD compare loops of the pairwise ranking run over the blocks of one row, and a 384-wide
    row has only 48 blocks of 8. When the decomposed dim is innermost and a multiple of H, blocks
    never straddle rows, so the rows can be cut into spans of ``_REGROUP_BLOCKS`` blocks instead.
    """
    _, length, inner = bits.shape
    if inner == 1 and h <= PAIRWISE_MAX_H and length % h == 0 and length < _REGROUP_BLOCKS * h:
        flat_in = bits.reshape(-1)
        outs = out_np if mode != _MASK else mask_np
        flat_out = outs.reshape(outs.shape[0], -1)
        span = _REGROUP_BLOCKS * h
        main = (flat_in.size // span) * span
        count = 0
        for start, stop, width in ((0, main, span), (main, flat_in.size, flat_in.size - main)):
            if stop > start:
                part_in = flat_in[start:stop].reshape(-1, width, 1)
                part_out = flat_out[:, start:stop].reshape(outs.shape[0], -1, width, 1)
                assert np.shares_memory(part_out, outs)  # a copy would silently lose the output
                o, m = (part_out, mask_np) if mode != _MASK else (out_np, part_out)
                count += _same_h_kernel(stop - start)(part_in, o, m, mode, h, cum_g, no_sign, inf_bits)
        return count
    return _same_h_kernel(bits.size)(bits, out_np, mask_np, mode, h, cum_g, no_sign, inf_bits)


def _run_general(xc, bits, out_np, mask_np, mode, patterns, no_sign, inf_bits) -> int:  # type: ignore[no-untyped-def]
    """Term-by-term kernel: mixed block sizes and HSS terms (``xc``: the contiguous input)."""
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
    need_mag = max_ranks > 1
    # One value dtype per bit width (float64 with int64, float32 otherwise), so each input dtype
    # compiles one specialisation whether or not the series needs |x|.
    vals = _DUMMY_VALS[np.dtype(np.float64 if xc.dtype == torch.float64 else np.float32)]
    table = _NO_TABLE
    if need_mag and xc.dtype in (torch.float32, torch.float64):
        vals = xc.reshape(bits.shape).numpy()  # a view: |x| is read where it lies
    elif need_mag:
        table = _magnitude_table(xc.dtype)
    return _general_kernel(bits.size)(
        bits, vals, table, out_np, mask_np, mode, ranks_g, ranks_h, n_ranks, no_sign, inf_bits, need_mag
    )


if AVAILABLE:
    # Use every core numba was configured with; documented here so profiles are not a surprise.
    THREADS = numba.get_num_threads()
