"""Throughput of the vectorized mapper (docs/design.md §4.11), GEMM and native convolution.

Prints:

* ``load: <1, 5, 15 min>`` — the machine's load averages (``uptime``) while the run starts: the
  development machine is 2 shared cores, so absolute rates move with it; the ratios much less.
* ``mapper GEMM time, new/old: <r>`` — one ResNet-50 layer's GEMM (layer3 3×3 conv as M=256,
  K=2304, N=196) mapped on ``tc.yaml`` by :func:`tasder.hw.map_layer` against the pre-issue-16 GEMM
  path frozen in ``hw_baseline.py`` (same budget, same seed, same search loop), interleaved and the
  fastest of several runs each; target ≤ 1.3.
* ``mappings per second: <n>`` — valid GEMM mappings sampled + analysed + costed per second (that layer).
* ``conv mappings per second: <n>`` — the same for that layer as a native convolution (C = M = 256,
  3×3, 14×14 output); target ≥ 20,000.
* ``series mappings per second: <n>`` — the same for that GEMM with A = 4:8+1:8 on
  ``ttc-vegeta-m8`` (a two-term series: the term loop is a dim of the mapping, and the sparse step
  runs once per term); target ≥ 20,000.
* ``resnet50 map+eval seconds: <s>`` — a mapper search for every distinct ResNet-50 layer (native
  convolutions) on ``tc.yaml`` (repeated layers share one search); target ≤ 20 s.
* ``cphc: <n>`` — Sparseloop's "computes simulated per host cycle": the MACs of every mapping
  evaluated in the ResNet-50 run, divided by (wall seconds × host clock). The host clock is
  read from /proc/cpuinfo ("cpu MHz", the first core's current value); if absent we assume
  3.0 GHz. The line ``host clock assumed: <GHz>`` says which was used.
* ``sparse/dense evaluation time ratio: <r>`` — the same batch of mappings of that GEMM evaluated
  (dataflow + sparse step + micro-architecture) on a sparse design with sparse operands, divided
  by the time on tc.yaml with dense operands (the sparse step's cost); target ≤ 3. Printed per
  sparse case (DSTC unstructured both sides, HighLight HSS + gating, TTC-VEGETA-M8 two-term
  series), then the worst.

Run: ``python benchmarks/bench_hw.py [--budget N]``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

from tasder.hw import Architecture, Problem, load_architecture, map_layer
from tasder.hw.mapper import mapping_key, sample_mappings, validity
from tasder.hw.model import evaluate_batch
from tasder.hw.workload import conv_problem
from tasder.workloads import load_network

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hw_baseline  # the frozen pre-issue-16 path, next to this file


def _best_of(fn: object, repeats: int = 5) -> float:
    """Fastest of a few runs (the machine is shared; the minimum is the least disturbed)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return min(times)


def sparse_dense_ratio(layer: Problem, n: int = 20_000) -> list[tuple[str, float]]:
    """Evaluation time of one batch of mappings: sparse design + sparse operands over tc + dense."""
    import numpy as np

    tc = load_architecture("tc")
    batch = sample_mappings(tc, layer, n, np.random.default_rng(0))
    batch = batch.take(np.flatnonzero(validity(tc, layer, batch)[0]))
    dense = _best_of(lambda: evaluate_batch(tc, layer, batch))
    out = []
    for design, a, b in (("dstc", "unstructured(0.1)", "unstructured(0.1)"),
                         ("highlight", "C1(2:4)->C0(2:4)", "unstructured(0.5)"),
                         ("ttc-vegeta-m8", "4:8+1:8", "dense")):
        arch = load_architecture(design)
        p = replace(layer, a_density=a, b_density=b)
        out.append((design, _best_of(lambda arch=arch, p=p: evaluate_batch(arch, p, batch)) / dense))
    return out


def gemm_ratio(layer: Problem, budget: int = 40_000, repeats: int = 4) -> tuple[float, float]:
    """(new / old time of one mapper search, new valid mappings per second), interleaved runs."""
    arch = load_architecture("tc")
    sizes = (layer.M, layer.K, layer.N)
    hw_baseline.map_layer(arch, sizes, 2000)  # warm-up
    old, new, valid = [], [], 0
    for i in range(repeats):
        for which in ((0, 1) if i % 2 == 0 else (1, 0)):
            t0 = time.perf_counter()
            if which == 0:
                hw_baseline.map_layer(arch, sizes, budget, seed=0)
                old.append(time.perf_counter() - t0)
            else:
                valid = map_layer(arch, layer, budget=budget, seed=0).valid
                new.append(time.perf_counter() - t0)
    return min(new) / min(old), valid / min(new)


def host_clock_hz() -> tuple[float, str]:
    """The first 'cpu MHz' in /proc/cpuinfo, else 3.0 GHz (and where the number came from)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return 3.0e9, "assumed"
    m = re.search(r"^cpu MHz\s*:\s*([\d.]+)", text, re.MULTILINE)
    return (float(m.group(1)) * 1e6, "/proc/cpuinfo") if m else (3.0e9, "assumed")


def best_rate(arch: Architecture, problem: Problem) -> float:
    """Valid mappings per second of a 40,000-mapping search, best of three after a warm-up."""
    map_layer(arch, problem, budget=2000, seed=1)  # warm-up (imports, caches)
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        r = map_layer(arch, problem, budget=40_000, seed=0)
        best = max(best, r.valid / (time.perf_counter() - t0))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=20_000, help="mappings per layer in the ResNet-50 run")
    args = parser.parse_args()
    print("load: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1, 5, 15 min; uptime)")
    arch = load_architecture("tc")

    layer = Problem("layer3.0.conv2", M=256, K=2304, N=196)
    map_layer(arch, layer, budget=2000, seed=1)  # warm-up (imports, caches)
    ratio, rate = gemm_ratio(layer)
    print(f"mapper GEMM time, new/old: {ratio:.2f} (the pre-issue-16 path in hw_baseline.py; target <= 1.3)")
    print(f"mappings per second: {rate:.0f}")
    conv = conv_problem("layer3.0.conv2", C=256, M=256, R=3, S=3, P=14, Q=14)
    print(f"conv mappings per second: {best_rate(arch, conv):.0f} (target >= 20,000)")
    series = replace(layer, a_density="4:8+1:8")
    print(f"series mappings per second: {best_rate(load_architecture('ttc-vegeta-m8'), series):.0f} "
          "(ttc-vegeta-m8, A = 4:8+1:8 with its term loop; target >= 20,000)")

    net = load_network("resnet50")
    t0 = time.perf_counter()
    seen: set = set()
    macs_evaluated = 0
    for p in net.layers:
        key = mapping_key(p)
        if key in seen:
            continue
        res = map_layer(arch, p, budget=args.budget, seed=0)
        seen.add(key)
        macs_evaluated += res.valid * p.macs
    wall = time.perf_counter() - t0
    clock, where = host_clock_hz()
    print(f"resnet50 map+eval seconds: {wall:.2f}")
    print(f"host clock assumed: {clock / 1e9:.2f} GHz ({where})")
    print(f"cphc: {macs_evaluated / (wall * clock):.0f}")
    ratios = sparse_dense_ratio(layer)
    for design, r in ratios:
        print(f"  {design}: sparse/dense evaluation time {r:.2f}")
    print(f"sparse/dense evaluation time ratio: {max(r for _, r in ratios):.2f}")
    print("load: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()) + " (at the end)")


if __name__ == "__main__":
    main()
