"""Permute the reduction dimension so that a TASD series drops less (ours; docs/design.md §3.2).

G:H groups are *consecutive* elements along the reduction dim K of a GEMM, but which elements
are consecutive is a layout choice: permuting K permutes the columns of A and the rows of B
alike and leaves ``A @ B`` unchanged. NVIDIA's ASP uses this for 2:4 ("channel permutation");
here it serves any series whose terms are one-rank G:H patterns with one block size H (every
TTC target: ``1:8``, ``4:8+1:8``, ``2:4+1:4``...). Such a series keeps exactly the ΣG largest
|x| of every block (each greedy term takes the largest of what the previous ones left), so a
permutation is better when the blocks hold their large elements more evenly.

:func:`find_permutation` maximises the kept score Σ_rows Σ_blocks top-ΣG(score), score = |x| by
default, over the permutations of K shared by every row (the other dims of ``x``):

1. start from the blocks dealt "snake-wise" by each column's total score (the heaviest columns
   land in different blocks);
2. repeat rounds: pair the blocks at random, and for every pair evaluate *all* H×H column swaps
   at once (vectorised; a swap's gain has a closed form from each row's sorted block — no
   re-sorting), applying the best one where it gains; stop after ``patience`` rounds in a row
   that gain less than 0.01 % of the kept score, or after ``max_rounds`` rounds;
3. return the result only if it keeps strictly more than the identity (else the identity), so
   the permutation never makes a series drop more than it does in the original order.

When K is not a multiple of H the last block is short (the padding slots stay at the end and
are never swapped), exactly as :func:`~tasder.tasd.decompose` pads the last block.

**Cache.** A search builds the same TASD layer again for every configuration it evaluates, and
``apply_tasd`` with calibration builds each layer twice (a probe, then the layer), so the same
permutation is asked for many times. :func:`find_permutation` keeps its results in a bounded
in-process LRU cache keyed by the *content* of what it ranks — a BLAKE2b digest of the score rows'
bytes, their shape, the series' (ΣG, H) and the search settings — so a changed weight or another
calibration sample can never get a stale permutation, and two series with the same (ΣG, H)
(``4:8+1:8`` and ``5:8``) share one search. :func:`permutation_cache_info` reports hits and
misses, :func:`clear_permutation_cache` empties it; ``cache=False`` bypasses it. Inside
``with permutation_store(folder):`` results are also kept on disk, one small file per key, so the
next process (the next ``tasder demo``, a ``tasder apply`` after ``tasder search``) reads them
instead of searching again; a file that does not hold a permutation of the right length is
ignored and rewritten.

>>> import torch
>>> x = torch.tensor([[5., 4., 0., 0., 3., 0., 0., 0.]])   # two blocks of 4 along dim -1
>>> perm = find_permutation(x, "1:4")
>>> kept_score(x, "1:4"), kept_score(x, "1:4", perm=perm)
(8.0, 9.0)
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from tasder._threads import single_thread
from tasder._validation import check_dim, check_float_tensor, check_score
from tasder.sparsity.notation import parse_series
from tasder.sparsity.patterns import GH, Pattern, Series

__all__ = ["clear_permutation_cache", "find_permutation", "is_permutation", "kept_score", "permutable_block",
           "permutation_cache_info", "permutation_store"]

#: Elements of the per-chunk block tensors (pairs × rows × H) evaluated at once: bounds memory.
_CHUNK_ELEMENTS = 1 << 23

#: Bounds of the permutation cache: entries, and bytes of the cached permutations (8 per element of
#: K). 4,096 entries hold every (layer, series) of a ResNet-50 search several times over.
CACHE_MAX_ENTRIES = 4096
CACHE_MAX_BYTES = 64 << 20

#: Files a :func:`permutation_store` folder may hold; past it the oldest half is removed when a store opens.
STORE_MAX_FILES = 20_000

_CacheKey = tuple[Any, ...]
_cache: OrderedDict[_CacheKey, torch.Tensor] = OrderedDict()
_cache_lock = threading.Lock()
_cache_stats = {"hits": 0, "misses": 0, "bytes": 0, "disk_hits": 0}
_store: list[Path] = []  # the open permutation_store folders, innermost last


@contextmanager
def permutation_store(folder: str | os.PathLike[str] | None) -> Iterator[None]:
    """Also keep :func:`find_permutation`'s results on disk in ``folder`` while the block runs
    (None: memory only). Unusable entries are ignored; a folder past :data:`STORE_MAX_FILES` files
    loses its oldest half when the store opens."""
    if folder is None:
        yield
        return
    path = Path(folder)
    _prune(path)
    _store.append(path)
    try:
        yield
    finally:
        _store.remove(path)


def _prune(folder: Path) -> None:
    try:
        files = sorted(folder.glob("*/*.perm"), key=lambda f: f.stat().st_mtime)
    except OSError:
        return
    if len(files) > STORE_MAX_FILES:
        for f in files[: len(files) - STORE_MAX_FILES // 2]:
            f.unlink(missing_ok=True)


def _store_path(key: _CacheKey) -> Path | None:
    if not _store:
        return None
    name = hashlib.sha256(repr(key).encode()).hexdigest()[:40]
    return _store[-1] / name[:2] / f"{name}.perm"


def _store_get(key: _CacheKey, k: int) -> torch.Tensor | None:
    path = _store_path(key)
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if len(data) != 4 * k:
        return None
    perm = torch.frombuffer(bytearray(data), dtype=torch.int32).to(torch.long)
    if not is_permutation(perm, k):
        return None
    with _cache_lock:
        _cache_stats["disk_hits"] += 1
    return perm


def _store_put(key: _CacheKey, perm: torch.Tensor) -> None:
    from tasder.io import atomic_write_bytes

    path = _store_path(key)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, perm.to(torch.int32).numpy().tobytes())
    except OSError:
        pass  # a store that cannot be written costs the search next time, never the result


def permutation_cache_info() -> dict[str, int]:
    """``{"hits", "misses", "entries", "bytes", "disk_hits"}`` of :func:`find_permutation`'s cache since
    the last clear (``disk_hits``: misses in memory answered by a :func:`permutation_store`)."""
    with _cache_lock:
        return {"hits": _cache_stats["hits"], "misses": _cache_stats["misses"], "entries": len(_cache),
                "bytes": _cache_stats["bytes"], "disk_hits": _cache_stats["disk_hits"]}


def clear_permutation_cache() -> None:
    """Empty :func:`find_permutation`'s cache and zero its counters."""
    with _cache_lock:
        _cache.clear()
        _cache_stats.update(hits=0, misses=0, bytes=0, disk_hits=0)


def _cache_key(rows: torch.Tensor, g: int, h: int, *settings: int) -> _CacheKey:
    """What a search result depends on: the rows' bytes (digested) and shape, (ΣG, H), the settings."""
    data = rows.detach().cpu().contiguous().numpy()
    return (hashlib.blake2b(memoryview(data).cast("B"), digest_size=20).hexdigest(), tuple(rows.shape),
            g, h, *settings)


def _cache_get(key: _CacheKey) -> torch.Tensor | None:
    with _cache_lock:
        perm = _cache.get(key)
        if perm is None:
            _cache_stats["misses"] += 1
            return None
        _cache.move_to_end(key)
        _cache_stats["hits"] += 1
        return perm.clone()  # the caller may modify what it gets


def _cache_put(key: _CacheKey, perm: torch.Tensor) -> None:
    size = perm.numel() * perm.element_size()
    if size > CACHE_MAX_BYTES:
        return
    with _cache_lock:
        if key in _cache:
            return
        _cache[key] = perm.clone()
        _cache_stats["bytes"] += size
        while len(_cache) > CACHE_MAX_ENTRIES or _cache_stats["bytes"] > CACHE_MAX_BYTES:
            _, old = _cache.popitem(last=False)
            _cache_stats["bytes"] -= old.numel() * old.element_size()


def permutable_block(series: str | Pattern | Series) -> tuple[int, int]:
    """``(kept, H)`` of a series :func:`find_permutation` handles: ΣG over its terms and their H.

    Raises ValueError for a series with an HSS, dense or unstructured term, or terms of different H
    (their greedy result is not "the ΣG largest per block", which the search relies on).
    """
    s = parse_series(series) if not isinstance(series, Series) else series
    terms = s.terms
    if s.is_dense or not all(isinstance(t, GH) for t in terms):
        raise ValueError(f"a K permutation needs a series of G:H terms (e.g. '4:8+1:8'); got '{s}'")
    blocks = {t.h for t in terms if isinstance(t, GH)}
    if len(blocks) != 1:
        raise ValueError(f"a K permutation needs terms with one block size H; '{s}' mixes H = "
                         f"{', '.join(str(h) for h in sorted(blocks))}")
    h = blocks.pop()
    return min(h, sum(t.g for t in terms if isinstance(t, GH))), h


def _rows(x: torch.Tensor, dim: int, max_rows: int | None) -> torch.Tensor:
    """``x`` as (rows, K) float64 with K = ``dim``; at most ``max_rows`` evenly spaced rows."""
    k = x.shape[dim]
    rows = x.movedim(dim, -1).reshape(-1, k)
    if max_rows is not None and rows.shape[0] > max_rows:
        rows = rows[torch.linspace(0, rows.shape[0] - 1, max_rows).round().long()]
    return rows.to(torch.float64)


def _blocks_score(s_ext: torch.Tensor, slots: torch.Tensor, g: int) -> float:
    """Σ over rows and blocks of the top-g scores; ``slots`` (blocks, H) index columns of ``s_ext``."""
    return float(s_ext[:, slots].topk(g, dim=-1).values.sum())


def _swap_gains(x: torch.Tensor, y: torch.Tensor, g: int) -> torch.Tensor:
    """Gain of swapping column i of every block ``x`` with column j of its partner ``y``.

    ``x``, ``y``: (pairs, rows, H). Returns (pairs, H, H). For a block with sorted values
    t1 ≥ … ≥ tH and kept sum S = t1+…+tg, replacing an element e by v keeps
    S − e + max(v, t_{g+1}) when e ≥ t_g (e was kept; ties give the same value either way) and
    S + max(0, v − t_g) otherwise.

    Why matrix products: the gain of (i, j) summed over rows is Σ_r kept_ri·(max(v_rj, t_{g+1}) − e_ri)
    + Σ_r (1 − kept_ri)·max(0, v_rj − t_g), i.e. two (H × rows) @ (rows × H) products per pair, so
    the (pairs, rows, H, H) tensor of every row's gains is never built (H times less memory
    traffic; this loop is the whole cost of choosing a permutation).
    """
    h = x.shape[-1]

    def replaced(block: torch.Tensor, incoming: torch.Tensor) -> torch.Tensor:
        top = block.topk(min(g + 1, h), dim=-1).values
        t_g = top[..., g - 1 : g]  # (pairs, rows, 1)
        t_next = top[..., g : g + 1] if g < h else torch.zeros_like(t_g)
        kept = (block >= t_g).to(block.dtype)  # (pairs, rows, H): the element leaving was kept
        if_kept = torch.maximum(incoming, t_next)  # (pairs, rows, H): what the block keeps instead of e
        if_dropped = (incoming - t_g).clamp_min(0.0)
        out = kept.transpose(1, 2) @ if_kept + (1.0 - kept).transpose(1, 2) @ if_dropped
        return out - (kept * block).sum(1)[..., None]  # (pairs, H_out, H_in)

    return replaced(x, y) + replaced(y, x).transpose(1, 2)


def kept_score(x: torch.Tensor, series: str | Pattern | Series, dim: int = -1, *,
               perm: torch.Tensor | None = None, score: torch.Tensor | None = None) -> float:
    """Σ of the score (default |x|) that ``series`` keeps along ``dim`` after permuting it by ``perm``."""
    x = check_float_tensor(x)
    dim = check_dim(dim, x.dim())
    g, h = permutable_block(series)
    s = check_score(score, x).abs() if score is not None else x.abs()
    rows = _rows(s, dim, None)
    k = rows.shape[1]
    order = torch.arange(k) if perm is None else _check_perm(perm, k)
    nb = -(-k // h)
    slots = torch.cat([order, torch.full((nb * h - k,), k, dtype=torch.long)]).view(nb, h)
    return _blocks_score(torch.cat([rows, rows.new_zeros(rows.shape[0], 1)], 1), slots, g)


def is_permutation(perm: object, k: int) -> bool:
    """True when ``perm`` is a LongTensor of shape (k,) holding each of 0 … k−1 once."""
    return isinstance(perm, torch.Tensor) and perm.dtype == torch.long and perm.shape == (k,) \
        and torch.equal(torch.sort(perm.cpu()).values, torch.arange(k))


def _check_perm(perm: object, k: int) -> torch.Tensor:
    if not is_permutation(perm, k):
        raise ValueError(f"`perm` must be a permutation of range({k}) as a LongTensor of shape ({k},)")
    assert isinstance(perm, torch.Tensor)
    return perm


def find_permutation(
    x: torch.Tensor,
    series: str | Pattern | Series,
    dim: int = -1,
    *,
    score: torch.Tensor | None = None,
    seed: int = 0,
    max_rounds: int = 200,
    patience: int = 6,
    max_rows: int | None = 4096,
    cache: bool = True,
) -> torch.Tensor:
    """A permutation of ``x``'s ``dim`` under which ``series`` keeps at least as much of ``x``.

    Args:
        x: the tensor (weights: rows = output units; activations: rows = samples × positions).
        series: G:H terms with one H (see :func:`permutable_block`).
        dim: the reduction dimension the groups run along.
        score: rank by this instead of |x| (same shape; e.g. |w|·‖x_k‖); its magnitude is used.
        seed: the block pairings are random; the result is deterministic per seed.
        max_rounds, patience: stop after this many rounds, or this many rounds in a row without
            a gain.
        max_rows: use at most this many evenly spaced rows (None: all) — a sample of activation
            rows decides a layout as well as all of them, at a fraction of the time.
        cache: reuse (and keep) the result for the same content and settings (see the module doc).

    Returns:
        A LongTensor ``perm`` of shape ``(K,)``: ``x.index_select(dim, perm)`` is the layout in which
        the groups are consecutive. The identity when no permutation keeps strictly more.

    Raises:
        ValueError: an empty ``x``, or NaN/Inf in the rows it ranks (``x``, or ``score`` if given).
    """
    x = check_float_tensor(x)
    dim = check_dim(dim, x.dim())
    g, h = permutable_block(series)
    for name, value in (("max_rounds", max_rounds), ("patience", patience)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive int; got {value!r}")
    if max_rows is not None and (isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1):
        raise ValueError(f"`max_rows` must be a positive int or None; got {max_rows!r}")
    if x.numel() == 0:
        raise ValueError(f"`x` has no elements (shape {tuple(x.shape)}); a permutation is chosen from the values "
                         f"of at least one row, so pass a non-empty tensor")
    s = check_score(score, x).detach().abs() if score is not None else x.detach().abs()
    # NaN has no place in a sum of kept magnitudes (every layout would score NaN, and Inf makes
    # every gain Inf - Inf): refuse rather than return a layout chosen from nothing.
    if not bool(torch.isfinite(s).all()):
        what = "`score`" if score is not None else "`x`"
        bad = int((~torch.isfinite(s)).sum())
        raise ValueError(f"{what} holds {bad} NaN/Inf value(s); the layout that keeps the most |x| is undefined "
                         f"with them: clean the tensor before choosing a permutation")
    with single_thread():
        rows = _rows(s, dim, max_rows)
        k = rows.shape[1]
        nb = -(-k // h)
        if g >= h or nb < 2:
            return torch.arange(k)
        key = _cache_key(rows, g, h, seed, max_rounds, patience) if cache else None
        found = _cache_get(key) if key is not None else None
        if found is None and key is not None:
            found = _store_get(key, k)
            if found is not None:
                _cache_put(key, found)
        if found is None:
            found = _search(rows, g, h, seed, max_rounds, patience)
            if key is not None:
                _cache_put(key, found)
                _store_put(key, found)
    return found


def _search(rows: torch.Tensor, g: int, h: int, seed: int, max_rounds: int, patience: int) -> torch.Tensor:
    """The block-pair swap search of the module doc on (rows, K) scores (g < h, at least two blocks)."""
    n_rows, k = rows.shape
    identity = torch.arange(k)
    nb = -(-k // h)
    s_ext = torch.cat([rows, rows.new_zeros(n_rows, 1)], 1)  # column k: the padding slots' zero score
    pad = torch.full((nb * h - k,), k, dtype=torch.long)
    base = _blocks_score(s_ext, torch.cat([identity, pad]).view(nb, h), g)

    # Snake deal by column mass: block 0, 1, …, nb-1, nb-1, …, 0, … — only full blocks' slots, so
    # the short last block keeps its padding at the end.
    slots = torch.full((nb, h), k, dtype=torch.long)
    order = torch.argsort(rows.sum(0), descending=True, stable=True).tolist()
    cells = [(b, j) for j in range(h) for b in (range(nb) if j % 2 == 0 else reversed(range(nb)))
             if b < nb - 1 or j < k - (nb - 1) * h]
    for col, (b, j) in zip(order, cells, strict=True):
        slots[b, j] = col
    swappable = slots != k

    gen = torch.Generator().manual_seed(seed)
    chunk = max(1, _CHUNK_ELEMENTS // (n_rows * h))
    tol = 1e-12 * max(base, 1e-300)
    stale = 0
    for _ in range(max_rounds):
        pairing = torch.randperm(nb, generator=gen)
        n_pairs = nb // 2
        a_all, b_all = pairing[:n_pairs], pairing[n_pairs:2 * n_pairs]
        round_gain = 0.0
        for start in range(0, n_pairs, chunk):
            a, b = a_all[start:start + chunk], b_all[start:start + chunk]
            gains = _swap_gains(s_ext[:, slots[a]].transpose(0, 1), s_ext[:, slots[b]].transpose(0, 1), g)
            ok = swappable[a][:, :, None] & swappable[b][:, None, :]
            gains = torch.where(ok, gains, torch.tensor(-math.inf, dtype=gains.dtype))
            best, arg = gains.flatten(1).max(1)
            for p in torch.nonzero(best > tol).flatten().tolist():
                i, j = divmod(int(arg[p]), h)
                ba, bb = int(a[p]), int(b[p])
                slots[ba, i], slots[bb, j] = slots[bb, j].clone(), slots[ba, i].clone()
                round_gain += float(best[p])
        # A round that gains less than 0.01 % of the kept score counts as no gain: on data
        # that is already balanced (dense Gaussian-like activations) swaps keep finding crumbs.
        stale = 0 if round_gain > 1e-4 * base else stale + 1
        if stale >= patience:
            break
    perm = slots.flatten()
    perm = perm[perm != k]
    found = _blocks_score(s_ext, torch.cat([perm, pad]).view(nb, h), g)
    return perm if found > base + tol else identity
