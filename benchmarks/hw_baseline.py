"""A frozen copy of the GEMM mapper path before issue 16 (tasder 1a6be27), the reference of bench_hw.py's ratio.

Why a copy: "no slowdown of the mapper beyond 1.3× on GEMM workloads" is a ratio that must be
measured in one run (the development machine is 2 shared cores, so absolute rates move with the
load, ratios much less). This module is that older code path for a **dense** design — the
sampler, the validity check, the dataflow analysis (fixed M, K, N arrays; the MACs as a one-word
latch; drains counted as reads) and the micro-architecture stage — with the search loop of
``map_layer`` around them (chunks, validity, evaluation, the best few per chunk). It reads only
the storage levels, fan-outs and MAC count of an :class:`~tasder.hw.Architecture`. Not used by
the package; do not change it (it is the yardstick).
"""

from __future__ import annotations

import math
from collections import Counter
from itertools import pairwise, permutations

import numpy as np

DIMS = ("M", "K", "N")
TENSORS = ("A", "B", "Z")
TENSOR_DIMS = {"A": ("M", "K"), "B": ("K", "N"), "Z": ("M", "N")}
ORDERS = tuple("".join(p) for p in permutations(DIMS))
_REL = np.array([[d in TENSOR_DIMS[t] for d in DIMS] for t in TENSORS])


def _primes(n: int) -> list[int]:
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    if n > 1:
        out.append(n)
    return out


def _order_array(choices: list[list[str]], idx: np.ndarray) -> np.ndarray:
    tables = [np.array([[DIMS.index(d) for d in o] for o in ch], dtype=np.int64) for ch in choices]
    return np.stack([tables[i][idx[:, i]] for i in range(len(choices))], axis=1)


def sample(arch, sizes: tuple[int, int, int], b: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    nl = len(arch.levels)
    slots = [list(range(nl)) + [nl + i for i, fan in enumerate(arch.fanouts) if fan > 1] for _ in DIMS]
    order_choices = [list(ORDERS) for _ in arch.levels]
    caps = np.array([np.inf if lv.capacity is None else lv.capacity for lv in arch.levels])
    fans = np.array(arch.fanouts)
    keep = [[[DIMS.index(d) for d in TENSOR_DIMS[t]] for t in lv.keep] for lv in arch.levels]
    f = np.ones((b, 2 * nl, 3), dtype=np.int64)
    ext = np.ones((b, nl, 3))
    sp = np.ones((b, nl))
    rows = np.arange(b)
    levels = np.arange(nl)
    items = [(j, p) for j, n in enumerate(sizes) for p in _primes(n)]
    for k in rng.permutation(len(items)):
        d, p = items[k]
        sl = np.asarray(slots[d])
        trial = ext.copy()
        trial[:, :, d] *= p
        need = np.stack([sum(np.prod(trial[:, i, ts], axis=1) for ts in keep[i]) if keep[i] else np.zeros(b)
                         for i in range(nl)], axis=1)
        cap_ok = np.logical_and.accumulate(need <= caps, axis=1)
        lvl = sl % nl
        feasible = cap_ok[:, lvl]
        spatial = sl >= nl
        if spatial.any():
            feasible[:, spatial] &= sp[:, lvl[spatial]] * p <= fans[lvl[spatial]]
        keys = np.where(feasible, rng.random((b, len(sl))), -1.0)
        pick = np.argmax(keys, axis=1)
        slot, j = sl[pick], lvl[pick]
        f[rows, slot, d] *= p
        ext[:, :, d] *= np.where(levels[None, :] <= j[:, None], p, 1)
        is_sp = slot >= nl
        sp[rows[is_sp], j[is_sp]] *= p
    oidx = np.stack([rng.integers(0, len(c), size=b) for c in order_choices], axis=1)
    return f[:, :nl], f[:, nl:], _order_array(order_choices, oidx)


def validity(arch, sizes: tuple[int, int, int], tf: np.ndarray, sf: np.ndarray) -> np.ndarray:
    fails = []
    prod = np.prod(tf * sf, axis=1)
    for j in range(3):
        fails.append(prod[:, j] != sizes[j])
    ext = np.cumprod((tf * sf)[:, ::-1], axis=1)[:, ::-1]
    for i, (lv, fan) in enumerate(zip(arch.levels, arch.fanouts, strict=True)):
        fails.append(np.prod(sf[:, i], axis=1) > fan)
        if lv.capacity is not None:
            need = sum(np.prod(ext[:, i, [DIMS.index(d) for d in TENSOR_DIMS[t]]], axis=1) for t in lv.keep)
            fails.append(need > lv.capacity)
    bad = np.zeros(len(tf), dtype=bool)
    for mask in fails:
        bad |= mask
    return ~bad


def analyze(arch, tf_i: np.ndarray, sf_i: np.ndarray, order: np.ndarray) -> dict[str, np.ndarray]:
    tf = tf_i.astype(np.float64)
    sf = sf_i.astype(np.float64)
    nb, nl, _ = tf.shape
    dim_of = order.reshape(nb, 3 * nl)
    fac = np.take_along_axis(tf, order, axis=2).reshape(nb, 3 * nl)
    cp = np.cumprod(fac, axis=1)
    cp = np.concatenate([np.ones((nb, 1)), cp], axis=1)
    pos = np.arange(3 * nl)
    ts = tf * sf
    ext = np.ones((nb, nl + 1, 3))
    ext[:, :nl] = np.cumprod(ts[:, ::-1], axis=1)[:, ::-1]
    sprod = np.prod(sf, axis=2)
    s_above = np.ones((nb, nl + 1))
    s_above[:, 1:] = np.cumprod(sprod, axis=1)
    zeros = np.zeros((nb, nl, 3))
    tile, fills, reads, updates, drains = (zeros.copy() for _ in range(5))
    for t, name in enumerate(TENSORS):
        rel = _REL[t]
        tile_t = np.prod(np.where(rel, ext, 1.0), axis=2)
        tile_t[:, nl] = 1.0
        relevant = rel[dim_of] & (fac > 1)
        last = np.maximum.accumulate(np.where(relevant, pos, -1), axis=1)
        last_c = last[:, 2::3]
        reload = np.ones((nb, nl + 1))
        reload[:, 1:] = np.take_along_axis(cp, last_c + 1, axis=1)
        distinct = np.ones((nb, nl + 1))
        distinct[:, 1:] = np.cumprod(np.where(rel[dim_of], fac, 1.0), axis=1)[:, 2::3]
        s_rel = np.prod(np.where(rel, sf, 1.0), axis=2)
        s_rel_cum = np.ones((nb, nl + 1))
        s_rel_cum[:, 1:] = np.cumprod(s_rel, axis=1)
        chain = [i for i, lv in enumerate(arch.levels) if name in lv.keep] + [nl]
        for p, c in pairwise(chain):
            tile[:, p, t] = tile_t[:, p]
            per_child = tile_t[:, c] * s_rel_cum[:, c] / s_rel_cum[:, p] * s_above[:, p]
            if name != "Z":
                reads[:, p, t] += per_child * reload[:, c]
                if c < nl:
                    fills[:, c, t] += tile_t[:, c] * reload[:, c] * s_above[:, c]
            else:
                updates[:, p, t] += per_child * reload[:, c]
                reads[:, p, t] += per_child * (reload[:, c] - distinct[:, c])
                if c < nl:
                    fills[:, c, t] += tile_t[:, c] * (reload[:, c] - distinct[:, c]) * s_above[:, c]
                    drain = tile_t[:, c] * reload[:, c] * s_above[:, c]
                    reads[:, c, t] += drain
                    drains[:, c, t] += drain
    return {"fills": fills, "reads": reads, "updates": updates, "active": s_above, "macs": np.prod(ts, axis=(1, 2)),
            "steps": np.prod(tf, axis=(1, 2))}


def cost(arch, counts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    lv = arch.levels
    block = np.array([x.block_size for x in lv], dtype=np.float64)[None, :, None]
    e_action = np.array([[x.read_energy, x.write_energy, x.update_energy] for x in lv])
    words = np.stack([counts["reads"], counts["fills"], counts["updates"]], axis=-1)
    busy = words
    accesses = words / block[..., None]
    energy = accesses * e_action[None, :, None, :]
    active = counts["active"][:, : len(lv)]
    rbw = np.array([x.read_bandwidth for x in lv])[None, :]
    wbw = np.array([x.write_bandwidth for x in lv])[None, :]
    read_cycles = busy[..., 0].sum(axis=2) / (rbw * active)
    write_cycles = (busy[..., 1] + busy[..., 2]).sum(axis=2) / (wbw * active)
    level_cycles = np.maximum(read_cycles, write_cycles)
    cycles = np.maximum(counts["steps"], level_cycles.max(axis=1))
    leak = np.array([x.leakage_power * x.instances for x in lv])[None, :] * cycles[:, None]
    compute_energy = counts["macs"] * arch.compute.energy_per_mac
    total = energy.sum(axis=(1, 2, 3)) + compute_energy + leak.sum(axis=1)
    return {"cycles": cycles, "total_energy": total, "edp": total * 1e-12 * cycles / arch.clock_hz}


def map_layer(arch, sizes: tuple[int, int, int], budget: int, seed: int = 0, chunk: int = 8192,
              top_k: int = 5) -> tuple[int, float]:
    """The old search loop on a dense design: (valid mappings evaluated, best EDP). It keeps the best
    few scores of each chunk but builds no Mapping objects for them (the package does: a few per
    chunk), so it errs on the baseline's side."""
    nl = len(arch.levels)
    slots_n = nl + sum(1 for fan in arch.fanouts if fan > 1)
    space = math.prod(math.prod(math.comb(e + slots_n - 1, slots_n - 1) for e in Counter(_primes(n)).values())
                      for n in sizes) * len(ORDERS) ** nl
    assert space > budget, "the baseline samples; give a layer whose space exceeds the budget"
    rng = np.random.default_rng(seed)
    left, valid, best = budget, 0, math.inf
    while left > 0:
        b = min(chunk, left)
        left -= b
        tf, sf, order = sample(arch, sizes, b, rng)
        ok = validity(arch, sizes, tf, sf)
        idx = np.flatnonzero(ok)
        scores = cost(arch, analyze(arch, tf[idx], sf[idx], order[idx]))["edp"]
        for r in np.argsort(scores, kind="stable")[:top_k]:
            best = min(best, float(scores[r]))
        valid += len(idx)
    return valid, best
