"""TASDER searches on the built-in models: MAC cut, held-out metric ratio, evaluations and time.

Prints one line per (workload, mode, method)::

    search <workload> <mode> <method>: mac_cut=<percent> metric_ratio=<test metric / original> evals=<n> seconds=<s>

The search decides on each zoo entry's validation split; ``metric_ratio`` is the *test* split
metric of the chosen config over the original model's, measured once after the search. The MAC
cut is over the whole model's dense MACs on the first calibration batch (``count_macs``): TASD-W
layers count their series' effective density, TASD-A layers the measured kept fraction.

    python benchmarks/bench_search.py [--only digits] [--minilm-val-n 511] [--minilm-n 1500] [--equal-budget]

``--equal-budget`` adds a ``cost-aware(max_evals=N)`` line, N = the evaluations the paper
method of the same workload used (the first one listed).
"""

from __future__ import annotations

import argparse

from tasder import zoo
from tasder.nn import apply_tasd, count_macs
from tasder.search import search
from tasder.search.methods import default_layers

RUNS = [
    ("digits-cnn-sparse-95", "W", ("paper-greedy", "cost-aware")),
    ("digits-cnn", "A", ("paper-threshold", "paper-greedy", "cost-aware")),
    ("minilm", "A", ("paper-threshold", "cost-aware")),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run only workloads whose name contains this")
    parser.add_argument("--minilm-val-n", type=int, default=511)
    parser.add_argument("--minilm-n", type=int, default=1500)
    parser.add_argument("--constraint", type=float, default=0.99)
    parser.add_argument("--equal-budget", action="store_true",
                        help="also run cost-aware with max_evals = the paper method's evaluation count")
    parser.add_argument("--methods", default="", help="comma-separated subset of methods to run")
    args = parser.parse_args()
    wanted = set(filter(None, args.methods.split(",")))
    for name, mode, methods in RUNS:
        if args.only not in name:
            continue
        kwargs = {"n": args.minilm_n, "val_n": args.minilm_val_n} if name == "minilm" else {"progress": False}
        entry = zoo.load(name, **kwargs)
        assert entry.model is not None and entry.evaluate is not None
        original_test = entry.evaluate(entry.model)
        paper_evals: int | None = None
        runs = [(m, None) for m in methods if not wanted or m in wanted]
        if args.equal_budget:
            runs.append(("cost-aware", -1))
        for method, budget in runs:
            max_evals = paper_evals if budget == -1 else None
            if budget == -1 and max_evals is None:
                continue
            r = search(entry.model, "ttc-vegeta-m8", entry.metadata["evaluate_val"], entry.calibration, mode,
                       args.constraint, method, layers=default_layers(name, mode), model_id=name,
                       max_evals=max_evals, progress=False)
            if method != "cost-aware" and paper_evals is None:
                paper_evals = r.evaluations
            model = apply_tasd(entry.model, r.config) if r.config.layers else entry.model
            macs = count_macs(model, entry.calibration[0])
            test = entry.evaluate(model)
            label = method if max_evals is None else f"{method}(max_evals={max_evals})"
            print(f"search {name} {mode} {label}: mac_cut={100 * (1 - macs.density):.1f}% "
                  f"metric_ratio={test / original_test:.4f} evals={r.evaluations} seconds={r.seconds:.1f}",
                  flush=True)


if __name__ == "__main__":
    main()
