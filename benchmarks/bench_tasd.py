"""Speed and memory of TASD decomposition and structured masks, relative to copying the tensor.

Both are memory-bound work: a decomposition reads x once and writes one tensor per term plus the
residual; a mask reads x and writes one bool per element. Times are medians of interleaved runs
(clone, op, clone, op, ...) taken in one process, and each is printed as a ratio
``time(op) / time(x.clone())``, which survives a noisy, shared machine better than absolute
seconds do. Lower is better; 1.0 would mean "as fast as a copy".

* ``decompose``: ``tasder.decompose(x, series)`` (the compiled kernel where it applies).
* ``mask``: ``tasder.compute_mask(x, pattern)`` (single-pattern cases).
* ``topk mask``: a plain PyTorch G:H mask (``|x|`` in blocks, ``topk``, ``scatter``) for scale.
* ``peak``: a fresh process per case decomposes x and computes the metrics; the growth of its
  peak resident memory (VmHWM) is divided by the bytes of x plus the outputs (1.0 = no
  temporaries at all).
* ``largest H``: seconds for the largest block the notation allows (``MAX_BLOCK``) on one row
  of 2**21 elements (one block per thread at most: the worst case for the kernel's sort path).

    python benchmarks/bench_tasd.py                 # 4096x4096 float32, the issue's setting
    python benchmarks/bench_tasd.py --size 2048 --repeats 5 --reference --no-memory
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch

import tasder
from tasder.sparsity import GH, MAX_BLOCK, parse_series

CASES = ("2:8+1:8", "2:4", "2:8", "4:16", "K1(3:4)->K0(2:4)", "2:4+2:8+2:16")


def _median_time(fn: Callable[[], object], other: Callable[[], object], repeats: int) -> tuple[float, float]:
    a, b = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        a.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        other()
        b.append(time.perf_counter() - t0)
    return statistics.median(a), statistics.median(b)


def _topk_mask(x: torch.Tensor, g: int, h: int) -> torch.Tensor:
    """What a user would write by hand: blocks of |x|, topk, scatter (the last dim a multiple of h)."""
    blocks = x.abs().reshape(-1, h)
    keep = torch.zeros_like(blocks, dtype=torch.bool).scatter_(1, blocks.topk(g, dim=1).indices, True)
    return keep.reshape(x.shape)


def _status_bytes(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _memory_case(series: str, size: int) -> None:
    """Run in a fresh process: print JSON with the peak growth of one decomposition + its metrics."""
    warm = torch.randn(256, 256)  # loads the threaded kernel too (≥ 65,536 elements)
    _ = tasder.decompose(warm, series).metrics
    del warm
    torch.manual_seed(0)
    before = _status_bytes("VmRSS")  # x itself counts in the peak
    x = torch.randn(size, size)
    try:  # reset the high-water mark to the current RSS (Linux); else it includes the warm-up
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    r = tasder.decompose(x, series)
    _ = r.metrics
    peak = _status_bytes("VmHWM") - before
    outputs = sum(t.numel() * t.element_size() for t in [*r.terms, r.residual])
    inp = x.numel() * x.element_size()
    print(json.dumps({"peak": peak, "input": inp, "outputs": outputs, "reset": reset}))


def _memory_ratio(series: str, size: int) -> str:
    run = subprocess.run([sys.executable, __file__, "--_memory-case", series, "--size", str(size)],
                         capture_output=True, text=True, check=False, timeout=600)
    if run.returncode != 0:
        return "failed: " + (run.stderr.strip().splitlines() or ["?"])[-1]
    m = json.loads(run.stdout)
    note = "" if m["reset"] else " (peak since start: VmHWM not resettable here)"
    return f"{m['peak'] / (m['input'] + m['outputs']):.2f}{note}"


def _largest_h() -> None:
    x = torch.randn(1, 2**21)
    small = torch.randn(4, 12)
    series = f"2:{MAX_BLOCK}"
    tasder.decompose(small, series)  # compile / warm outside the timing
    tasder.compute_mask(small, series)
    for label, fn in (
        (f"decompose(randn(1, 2**21), '{series}')", lambda: tasder.decompose(x, series)),
        (f"compute_mask(randn(1, 2**21), '{series}')", lambda: tasder.compute_mask(x, series)),
        (f"decompose(randn(4, 12), '1:{MAX_BLOCK}')", lambda: tasder.decompose(small, f"1:{MAX_BLOCK}")),
    ):
        t0 = time.perf_counter()
        fn()
        print(f"  {label:<44} {time.perf_counter() - t0:7.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=4096, help="square tensor side (default 4096)")
    parser.add_argument("--repeats", type=int, default=9, help="timed runs per case (default 9)")
    parser.add_argument("--reference", action="store_true", help="also time the pure-PyTorch reference path")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--no-large-h", action="store_true", help="skip the largest-H timing")
    parser.add_argument("--series", nargs="*", default=list(CASES), help="series to time")
    parser.add_argument("--_memory-case", dest="memory_case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_case:
        _memory_case(args.memory_case, args.size)
        return

    torch.manual_seed(0)
    x = torch.randn(args.size, args.size)
    print(f"x: {args.size}x{args.size} float32, torch threads={torch.get_num_threads()}")
    print("ratios are time(op) / time(x.clone()), measured in one run (lower is better; 1.0 = a copy)")
    header = f"{'series':<20} {'clone ms':>9} {'decompose ratio':>16} {'mask ratio':>11} {'topk mask':>10}"
    print(header + ("  reference ratio" if args.reference else ""))
    for series in args.series:
        parsed = parse_series(series)
        tasder.decompose(x[:64], series)  # compile / warm the kernel outside the timing
        t_clone, t_dec = _median_time(x.clone, lambda s=series: tasder.decompose(x, s), args.repeats)
        mask = topk = "-"
        if parsed.order == 1:
            p = parsed.terms[0]
            tasder.compute_mask(x[:64], p)
            t_c, t_mask = _median_time(x.clone, lambda p=p: tasder.compute_mask(x, p), args.repeats)
            mask = f"{t_mask / t_c:.2f}"
            if isinstance(p, GH) and args.size % p.h == 0:
                t_c, t_topk = _median_time(x.clone, lambda p=p: _topk_mask(x, p.g, p.h), args.repeats)
                topk = f"{t_topk / t_c:.2f}"
        line = f"{series:<20} {t_clone * 1e3:9.1f} {t_dec / t_clone:16.2f} {mask:>11} {topk:>10}"
        if args.reference:
            reps = max(1, args.repeats // 3)
            t_clone_r, t_ref = _median_time(
                x.clone, lambda s=series: tasder.decompose(x, s, backend="torch"), reps
            )
            line += f"  {t_ref / t_clone_r:15.1f}"
        print(line, flush=True)
    if not args.no_memory:
        print("peak memory of decompose + metrics (fresh process per case): peak / (input + outputs)")
        for series in args.series:
            print(f"  {series:<20} {_memory_ratio(series, args.size)}", flush=True)
    if not args.no_large_h:
        print(f"largest H (MAX_BLOCK = {MAX_BLOCK}), seconds:")
        _largest_h()


if __name__ == "__main__":
    main()
