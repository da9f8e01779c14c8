"""Wall time of one BDWP training step relative to a dense step on DigitsCNN (same batch).

The N:M masks are *emulated* on CPU (dense GEMMs on masked weights), so BDWP cannot be faster;
the point is that emulation is cheap: two top-N mask selections per sparse layer, one extra
elementwise product, and a fused conv backward. Steps (forward + backward + optimizer step) of
the two models alternate in one run and the medians are compared, because the machines are
shared and noisy. The last line is ``bdwp/dense step time ratio: <value>``.

    python benchmarks/bench_train.py [--batch 64] [--steps 100] [--pattern 2:8] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from tasder.train import sparsify_for_training
from tasder.zoo.digits import DigitsCNN, load_digits_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--pattern", default="2:8")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: OpenMP threads oversubscribe a shared machine; 0: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    data = load_digits_data()
    x, y = data.x_train[: args.batch], data.y_train[: args.batch]
    models, optimizers = {}, {}
    for method in ("dense", "bdwp"):
        torch.manual_seed(0)
        models[method] = sparsify_for_training(DigitsCNN(), args.pattern, method)
        optimizers[method] = torch.optim.Adam(models[method].parameters(), lr=1e-3)

    def step(method: str) -> float:
        model, opt = models[method], optimizers[method]
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        return time.perf_counter() - start

    times: dict[str, list[float]] = {"dense": [], "bdwp": []}
    for i in range(args.warmup + args.steps):
        order = ("dense", "bdwp") if i % 2 == 0 else ("bdwp", "dense")  # no first-mover bias
        for method in order:
            t = step(method)
            if i >= args.warmup:
                times[method].append(t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"DigitsCNN, batch {args.batch}, {args.pattern}, {torch.get_num_threads()} thread(s), "
          f"{args.steps} interleaved steps each (forward + backward + Adam step)")
    for method, t in med.items():
        print(f"  {method:5s} median step {1e3 * t:.2f} ms")
    print(f"bdwp/dense step time ratio: {med['bdwp'] / med['dense']:.3f}")


if __name__ == "__main__":
    main()
