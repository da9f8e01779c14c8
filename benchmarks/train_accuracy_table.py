"""digits-cnn trained from scratch: dense vs SR-STE vs BDWP at 2:8 and 1:4, several seeds.

Every run uses the same data split, epochs, optimizer (Adam, constant lr) and batch size; seed
``s`` fixes the initial weights and the batch order, so the methods see identical conditions.
Prints test accuracy mean ± std (sample std over seeds) and the training-operation fraction of
one step next to the ideal (2N/M + 1)/3.

    python benchmarks/train_accuracy_table.py [--seeds 0 1 2] [--epochs 40] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from tasder.train import count_training_ops, fit, ideal_fraction, parse_nm, sparsify_for_training
from tasder.zoo.digits import DigitsCNN, load_digits_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--patterns", nargs="+", default=["2:8", "1:4"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_digits_data()
    methods = ("srste", "bdwp", "bdwp-nested")  # BDWP with M_B independent of, or nested in, M_F
    configs = [("dense", "-")] + [(m, p) for p in args.patterns for m in methods]
    rows = []
    for method, pattern in configs:
        accs, fraction, start = [], 1.0, time.perf_counter()
        for seed in args.seeds:
            torch.manual_seed(seed)
            base, _, how = method.partition("-")
            model = sparsify_for_training(DigitsCNN(), pattern if method != "dense" else "2:8", base,
                                          backward_mask=how or "independent")
            result = fit(model, data, args.epochs, lr=args.lr, seed=seed, batch_size=args.batch, progress=False)
            accs.append(100 * float(result.test_accuracy or 0.0))
            fraction = count_training_ops(model, data.x_train[: args.batch]).fraction
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        ideal = "-" if method == "dense" else f"{ideal_fraction(*parse_nm(pattern)):.3f}"
        rows.append((method, pattern, statistics.mean(accs), std, accs, fraction, ideal))
        print(f"  done {method} {pattern} in {time.perf_counter() - start:.0f} s", flush=True)

    dense_mean = rows[0][2]
    print(f"\ndigits-cnn, {args.epochs} epochs, Adam lr {args.lr}, batch {args.batch}, seeds {args.seeds}")
    print(f"{'method':11s} {'pattern':7s} {'test acc % (mean ± std)':>24s} {'Δ vs dense':>10s} "
          f"{'train ops':>9s} {'ideal':>6s}  per seed")
    for method, pattern, mean, std, accs, fraction, ideal in rows:
        delta = "" if method == "dense" else f"{mean - dense_mean:+.2f}"
        per_seed = " ".join(f"{a:.2f}" for a in accs)
        print(f"{method:11s} {pattern:7s} {mean:17.2f} ± {std:4.2f} {delta:>10s} {fraction:9.3f} {ideal:>6s}  "
              f"{per_seed}")


if __name__ == "__main__":
    main()
