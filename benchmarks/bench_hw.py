"""Throughput of the vectorized mapper (docs/design.md §4.11).

Prints three lines:

* ``mappings per second: <n>`` — valid mappings sampled + analysed + costed per second on one
  ResNet-50 layer (layer3 3×3 conv: M=256, K=2304, N=196) on ``tc.yaml``; target ≥ 20,000/s.
* ``resnet50 map+eval seconds: <s>`` — a mapper search for every distinct ResNet-50 GEMM on
  ``tc.yaml`` (repeated layers share one search); target ≤ 20 s.
* ``cphc: <n>`` — Sparseloop's "computes simulated per host cycle": the MACs of every mapping
  evaluated in the ResNet-50 run, divided by (wall seconds × host clock). The host clock is
  read from /proc/cpuinfo ("cpu MHz", the first core's current value); if absent we assume
  3.0 GHz. The line ``host clock assumed: <GHz>`` says which was used.
* ``sparse/dense evaluation time ratio: <r>`` — the same batch of mappings of that layer evaluated
  (dataflow + sparse step + micro-architecture) on a sparse design with sparse operands, divided
  by the time on tc.yaml with dense operands (the sparse step's cost); target ≤ 3. Printed per
  sparse case (DSTC unstructured both sides, HighLight HSS + gating, TTC-VEGETA-M8 two-term
  series), then the worst.

Run: ``python benchmarks/bench_hw.py [--budget N]``.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

from tasder.hw import Problem, load_architecture, map_layer
from tasder.hw.mapper import sample_mappings, validity
from tasder.hw.model import evaluate_batch
from tasder.workloads import load_network


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
        p = Problem(layer.name, M=layer.M, K=layer.K, N=layer.N, a_density=a, b_density=b)
        out.append((design, _best_of(lambda arch=arch, p=p: evaluate_batch(arch, p, batch)) / dense))
    return out


def host_clock_hz() -> tuple[float, str]:
    """The first 'cpu MHz' in /proc/cpuinfo, else 3.0 GHz (and where the number came from)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return 3.0e9, "assumed"
    m = re.search(r"^cpu MHz\s*:\s*([\d.]+)", text, re.MULTILINE)
    return (float(m.group(1)) * 1e6, "/proc/cpuinfo") if m else (3.0e9, "assumed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=20_000, help="mappings per layer in the ResNet-50 run")
    args = parser.parse_args()
    arch = load_architecture("tc")

    layer = Problem("layer3.0.conv2", M=256, K=2304, N=196)
    map_layer(arch, layer, budget=2000, seed=1)  # warm-up (imports, caches)
    n = 60_000
    t0 = time.perf_counter()
    r = map_layer(arch, layer, budget=n, seed=0)
    dt = time.perf_counter() - t0
    print(f"mappings per second: {r.valid / dt:.0f}")

    net = load_network("resnet50")
    t0 = time.perf_counter()
    seen: dict[tuple[int, int, int], int] = {}
    macs_evaluated = 0
    for p in net.layers:
        key = (p.M, p.K, p.N)
        if key in seen:
            continue
        res = map_layer(arch, p, budget=args.budget, seed=0)
        seen[key] = res.valid
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


if __name__ == "__main__":
    main()
