"""Speed of TASD decomposition relative to copying the tensor (``x.clone()``).

The decomposition is memory-bound work: it reads x once and writes one tensor per term plus the
residual. Times are medians of interleaved runs (clone, decompose, clone, decompose, ...) taken
in one process, so the printed ratio ``time(clone) / time(decompose)`` survives a noisy, shared
machine better than absolute seconds do. Higher is better; 1.0 would mean "as fast as a copy".

    python benchmarks/bench_tasd.py                 # 4096x4096 float32, the issue's setting
    python benchmarks/bench_tasd.py --size 2048 --repeats 5 --reference
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

import tasder

CASES = ("2:8+1:8", "2:4", "4:16", "K1(3:4)->K0(2:4)", "2:4+2:8+2:16")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=4096, help="square tensor side (default 4096)")
    parser.add_argument("--repeats", type=int, default=9, help="timed runs per case (default 9)")
    parser.add_argument("--reference", action="store_true", help="also time the pure-PyTorch reference path")
    parser.add_argument("--series", nargs="*", default=list(CASES), help="series to time")
    args = parser.parse_args()

    torch.manual_seed(0)
    x = torch.randn(args.size, args.size)
    print(f"x: {args.size}x{args.size} float32, torch threads={torch.get_num_threads()}")
    header = f"{'series':<20} {'clone ms':>9} {'decompose ms':>13} {'ratio':>7}"
    print(header + ("  reference ratio" if args.reference else ""))
    for series in args.series:
        tasder.decompose(x[:64], series)  # compile / warm the kernel outside the timing
        t_clone, t_dec = _median_time(x.clone, lambda s=series: tasder.decompose(x, s), args.repeats)
        line = f"{series:<20} {t_clone * 1e3:9.1f} {t_dec * 1e3:13.1f} {t_clone / t_dec:7.2f}"
        if args.reference:
            reps = max(1, args.repeats // 3)
            t_clone_r, t_ref = _median_time(
                x.clone, lambda s=series: tasder.decompose(x, s, backend="torch"), reps
            )
            line += f"  {t_clone_r / t_ref:15.3f}"
        print(line)


if __name__ == "__main__":
    main()
