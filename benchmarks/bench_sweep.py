"""How the design-space sweep scales (issue 18's targets), every ratio measured in one run.

The sweep: 16 designs (``tc``'s hierarchy with sparse features from tc, stc, dstc or ttc-vegeta-m8 ×
512 or 1024 MACs × a 32K- or 64K-word L1) × dense ResNet-50 (B = ReLU activations,
unstructured(0.5)): 16 × 21 distinct layer shapes = 336 mapper searches of ``--budget`` mappings.

Prints the machine load (``/proc/loadavg``, as ``uptime`` shows it) before and after, the wall
times of :func:`tasder.hw.sweep.run_sweep` (the mapping; the report is not part of it), and:

* ``process pool / serial speed-up`` — target ≥ 1.7 on 2 cores (the pool's time includes starting
  its workers);
* ``ray / pool wall time`` — Ray in local mode with 2 CPUs, target ≤ 1.25; printed with and without
  ``ray.init`` (starting a local Ray instance), which a cluster user pays once per session;
* ``warm-cache speed-up`` — the same sweep again with every search in the cache, target ≥ 20;
* that all executors gave the same rows, bit for bit;
* CPU accounting of the pool (a second pool run that times each chunk in its worker): the CPU seconds
  each worker spent searching, and the speed-up those imply on an idle machine (serial CPU seconds ÷
  (a worker's CPU seconds + the pool's start), the work shared evenly and as measured). Why: Linux's
  autogroup scheduler shares the CPU between *sessions*, so while other sessions keep a shared machine
  busy, a session's pool gets no more CPU than its one process would — wall-time ratios then say
  nothing about the pool.

Run: ``python benchmarks/bench_sweep.py [--budget N] [--workers 2] [--skip-ray]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tasder.hw.executor import (
    LayerTask,
    ProcessExecutor,
    ResultCache,
    SerialExecutor,
    _chunks,
    _run_chunk,
    model_version,
)
from tasder.hw.sweep import load_sweep, run_sweep
from tasder.workloads import load_network

T = TypeVar("T")

SPEC = """version: 0.1
sweep:
  name: bench-16
  base: tc
  parameters:
    sparse: [null, stc, dstc, ttc-vegeta-m8]
    macs: [512, 1024]
    L1.capacity: [32768, 65536]
  workloads:
    - {{network: resnet50, name: dense-resnet50, b: "unstructured(0.5)"}}
  mapper: {{budget: {budget}}}
"""


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:  # pragma: no cover - not Linux
        return "n/a"


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def timed_chunk(tasks: list[LayerTask], version: str) -> tuple[int, float, list[dict]]:
    """A worker's chunk with the CPU seconds it took (top level: the pool imports it by name)."""
    c0 = time.process_time()
    out = _run_chunk(tasks, version)
    return os.getpid(), time.process_time() - c0, out


def cpu_accounting(spec: object, workers: int) -> tuple[float, dict[int, float]]:
    """(pool start s, CPU s per worker) for the sweep's searches."""
    from tasder.hw.executor import task_key
    from tasder.hw.sweep import expand_designs, workload_layers

    designs = [d for d in expand_designs(spec) if d.valid]  # type: ignore[arg-type]
    tasks = [LayerTask(d.arch, p, spec.mapper) for d in designs for w in spec.workloads  # type: ignore[attr-defined]
             for p in workload_layers(w, d)]
    unique = list({task_key(t): t for t in tasks}.values())
    version = model_version()
    per_worker: dict[int, float] = {}
    with ProcessExecutor(workers) as ex:
        t0 = time.perf_counter()
        list(ex.run(timed_chunk, [unique[:1]] * workers, version))  # start the workers
        start = time.perf_counter() - t0
        for _, (pid, cpu, _) in ex.run(timed_chunk, _chunks(unique, workers), version):
            per_worker[pid] = per_worker.get(pid, 0.0) + cpu
    return start, per_worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=3000, help="mappings per layer search (the sweep default)")
    parser.add_argument("--workers", type=int, default=2, help="pool workers and Ray CPUs")
    parser.add_argument("--skip-ray", action="store_true", help="leave Ray out")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(SPEC.format(budget=args.budget), encoding="utf-8")
        spec = load_sweep(path, resolve_network=load_network)
        print(f"load average before: {load()}")
        cache = ResultCache(Path(tmp) / "cache")
        c0 = time.process_time()  # the cold serial run's CPU: fresh caches, as a pool worker starts with
        serial, t_serial = timed(lambda: run_sweep(spec, executor=SerialExecutor(), cache=cache))
        serial_cpu = time.process_time() - c0
        assert serial.stats is not None
        print(f"designs: {len(serial.designs)}, searches: {serial.stats.unique}, mapper budget {args.budget}")
        print(f"serial (cold cache) seconds: {t_serial:.1f}")
        warm, t_warm = timed(lambda: run_sweep(spec, executor=SerialExecutor(), cache=cache))
        assert warm.stats is not None and warm.stats.computed == 0
        print(f"warm cache seconds: {t_warm:.2f}")
        with ProcessExecutor(args.workers) as ex:
            pool, t_pool = timed(lambda: run_sweep(spec, executor=ex))
        print(f"process pool ({args.workers} workers, incl. start) seconds: {t_pool:.1f}")
        same = pool.rows == serial.rows and warm.rows == serial.rows
        print(f"process pool / serial speed-up: {t_serial / t_pool:.2f} (target >= 1.7)")
        print(f"warm-cache speed-up: {t_serial / t_warm:.1f} (target >= 20)")
        if not args.skip_ray:
            import ray

            from tasder.hw.executor import RayExecutor

            _, t_init = timed(lambda: ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False))
            try:
                with RayExecutor() as ex:
                    rayed, t_ray = timed(lambda: run_sweep(spec, executor=ex))
            finally:
                ray.shutdown()
            same = same and rayed.rows == serial.rows
            print(f"ray.init seconds: {t_init:.1f}; ray (local, {args.workers} CPUs) sweep seconds: {t_ray:.1f}")
            print(f"ray / pool wall time: {t_ray / t_pool:.2f} without ray.init, {(t_ray + t_init) / t_pool:.2f} "
                  f"with it (target <= 1.25)")
        print(f"identical rows across executors: {same}")
        start, per_worker = cpu_accounting(spec, args.workers)
        busiest = max(per_worker.values())
        print(f"CPU seconds: serial (cold) {serial_cpu:.1f}; pool workers " +
              ", ".join(f"{v:.1f}" for v in sorted(per_worker.values(), reverse=True)) +
              f" (sum {sum(per_worker.values()):.1f}); pool start {start:.1f} s wall")
        even = sum(per_worker.values()) / args.workers
        print(f"process pool / serial speed-up implied on an idle machine: {serial_cpu / (even + start):.2f} with the "
              f"work shared evenly, {serial_cpu / (busiest + start):.2f} with the busiest worker's share as measured "
              f"here (serial CPU / (worker CPU + start))")
        print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
