"""Start-up time of the command line and of the accelerator model, against ``import torch``.

    python3 benchmarks/bench_startup.py [--runs 5]

Each command runs in ``--runs`` fresh Python processes (the median counts), interleaved so that
machine load hits every command alike; the baseline is ``python -c "import torch"`` measured in
the same run. Prints the seconds and::

    startup ratio: <tasder --help seconds / import torch seconds>   (target ≤ 0.2)
    startup ratio (import tasder.hw): <import tasder.hw seconds / import torch seconds>

``tasder --help`` and ``import tasder.hw`` load neither torch nor numba, so their time is
Python's own start, typer/rich and NumPy; ``tests/test_layout.py`` asserts which heavy modules
they load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

COMMANDS: dict[str, list[str]] = {
    "import torch": [sys.executable, "-c", "import torch"],
    "tasder --help": [sys.executable, "-m", "tasder", "--help"],
    "import tasder.hw": [sys.executable, "-c", "import tasder.hw"],
    "import tasder": [sys.executable, "-c", "import tasder"],
    "python (nothing)": [sys.executable, "-c", "pass"],
}


def _seconds(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per command (the median counts)")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    for argv in COMMANDS.values():  # warm the file cache and the byte-code caches once
        _seconds(argv, env)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):
        for name, argv in COMMANDS.items():
            times[name].append(_seconds(argv, env))
    median = {name: statistics.median(ts) for name, ts in times.items()}
    for name, t in median.items():
        print(f"{name:<18} {t:6.3f} s  (median of {args.runs}; min {min(times[name]):.3f} s)")
    torch_s = median["import torch"]
    print(f"startup ratio: {median['tasder --help'] / torch_s:.3f}  (tasder --help / import torch; target ≤ 0.2)")
    print(f"startup ratio (import tasder.hw): {median['import tasder.hw'] / torch_s:.3f}  (target ≤ 0.2)")


if __name__ == "__main__":
    main()
