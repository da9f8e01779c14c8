"""Wall time of ``tasder demo`` and ``tasder demo --quick`` as a user runs them: whole processes.

Each run is ``python -m tasder demo [--quick] -o DIR`` in a fresh interpreter (start-up and imports
included), timed from outside. The first run fills the caches (mapper searches, permutations) when
they are empty, later runs are warm; pass ``--cold`` to point both caches at an empty temporary
folder first, so the first run of each kind shows the cold time. Prints the load average before
each run: compare only runs at a similar load (a shared machine's other work moves the seconds).
The CPU seconds (user + system, the demo and its worker processes) move much less with the load:
on a quiet machine with two cores the wall time is roughly between half of them and all of them.

    python benchmarks/bench_demo.py [--runs 3] [--cold] [--taskset 0,1]

``--taskset 0,1`` pins every run to those CPUs (``taskset -c``): the issue's target machine is
"2 quiet cores", which a bigger idle machine reproduces this way.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time


def _run(args: list[str], env: dict[str, str], taskset: str | None) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of the run and its worker processes, exit code)."""
    cmd = [sys.executable, "-m", "tasder", "demo", *args]
    if taskset:
        cmd = ["taskset", "-c", taskset, *cmd]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="start from empty mapper and permutation caches")
    parser.add_argument("--taskset", default=None, help="CPUs to pin to, e.g. 0,1")
    args = parser.parse_args()
    env = dict(os.environ)
    scratch = tempfile.mkdtemp(prefix="bench-demo-")
    if args.cold:
        env["TASDER_HW_CACHE"] = os.path.join(scratch, "hw")
        env["TASDER_CACHE_DIR"] = os.path.join(scratch, "cache")
    print(f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
          + (f", pinned to CPUs {args.taskset}" if args.taskset else ""))
    try:
        for label, extra in (("demo", []), ("demo --quick", ["--quick"])):
            times = []
            for i in range(args.runs):
                load = os.getloadavg()[0]
                folder = os.path.join(scratch, f"out-{label[-5:]}-{i}")
                seconds, cpu, code = _run([*extra, "-o", folder], env, args.taskset)
                if code != 0:
                    raise SystemExit(f"tasder {label} failed (exit {code})")
                times.append(seconds)
                print(f"tasder {label} run {i + 1}: {seconds:.1f} s wall, {cpu:.1f} s CPU (load before: {load:.2f})",
                      flush=True)
            print(f"tasder {label}: {min(times):.1f}–{max(times):.1f} s over {len(times)} runs")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
