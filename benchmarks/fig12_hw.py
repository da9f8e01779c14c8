"""The TASD paper's Fig. 12 on our model: EDP of each design normalized to TC, next to the paper's numbers.

Workloads (TASD paper Table 4; representative layers of §4, written M-N-K there):

* ResNet-50 layers 784-128-1152, 3136-64-576, 196-256-2304; BERT layers 768-128-768,
  3072-128-768, 768-128-3072. A network's EDP = (sum of layer energies) × (sum of layer cycles).
* Dense ResNet-50: A dense, B = ReLU activations, taken as unstructured(0.5).
* Sparse ResNet-50: A 95 % unstructured (SparseZoo), B = ReLU activations unstructured(0.5).
* Dense BERT: A dense, B = GELU activations: no exact zeros (dense to TC and DSTC), about half of
  them small negatives that TASD-A may drop.
* Sparse BERT: A unstructured(0.1) (an assumption: the paper does not state the sparsity; SparseZoo
  BERTs are commonly 80–90 % sparse), B GELU as above.

What each design is given (a stated rule, not a per-result choice): TC, DSTC, STC, HighLight and
S2TA see the operands as they are (unstructured data is not a pattern STC/HighLight/S2TA can
exploit, so they run it dense). A TTC applies TASD to one operand: TASD-W to A when A is sparse,
else TASD-A to B. The series is chosen with TASDER's criterion (dropped nonzeros, TASD paper
§4.2): the sparsest series the TTC runs natively (Table 2/3, ≤ 2 terms) that drops at most
``DROP_BUDGET`` = 5 % of the operand's nonzeros in expectation, for nonzeros placed uniformly at
the operand's density (a G:H term keeps min(G, nonzeros) of each block; a series of terms with the
same H keeps min(ΣG, ·)); when none qualifies the operand is not approximated and keeps its own
model, like the other operand (a TTC gates zero activations it cannot skip). A series carries the
density of the operand's data (``4:8+1:8@0.5``): the slots its zeros leave empty are padded with
zeros, which a TTC's activation gating idles at the MACs.
TASDER's layer-wise, accuracy-driven choices are not reproduced.

The mapper samples ``--budget`` mappings per layer, so the numbers move with the budget (most for
DSTC, whose fast mappings need long fibers of B at the register file to fill its lanes).

The searches run through :mod:`tasder.hw.executor` (every core by default; ``--executor ray`` for
a Ray cluster; ``--cache-dir`` makes a rerun answer from the cache).

Run: ``python benchmarks/fig12_hw.py [--budget N] [--executor auto|serial|process|ray] [--cache-dir DIR]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import stats

from tasder.hw import Problem, density_model, load_architecture
from tasder.hw.density import with_data_density
from tasder.hw.executor import EXECUTORS, MapperSettings, ResultCache, make_executor, run_problems
from tasder.targets import candidate_series

LAYERS = {"resnet50": [(784, 128, 1152), (3136, 64, 576), (196, 256, 2304)],
          "bert": [(768, 128, 768), (3072, 128, 768), (768, 128, 3072)]}  # M, N, K
#: workload → (network, A density, B density, the operand TASD approximates, its density to TASD)
WORKLOADS = {
    "dense-resnet50": ("resnet50", "dense", "unstructured(0.5)", "B", 0.5),
    "dense-bert": ("bert", "dense", "dense", "B", 0.5),
    "sparse-resnet50": ("resnet50", "unstructured(0.05)", "unstructured(0.5)", "A", 0.05),
    "sparse-bert": ("bert", "unstructured(0.1)", "dense", "A", 0.1),
}
#: Paper Fig. 12, EDP change vs TC in % (dense RN50, dense BERT, sparse RN50, sparse BERT).
PAPER = {"dstc": (12, 167, -87, -55), "ttc-stc-m4": (-4, -32, -49, -53), "ttc-vegeta-m8": (-58, -61, -83, -82)}
#: Series each TTC runs (TASD paper Table 2/3: its target YAML), effective density → notation.
TTC_SERIES = {t: {s.effective_density: str(s) for s in candidate_series(t)}
              for t in ("ttc-stc-m4", "ttc-stc-m8", "ttc-vegeta-m4", "ttc-vegeta-m8")}
DESIGNS = ("tc", "dstc", "stc", "highlight", "s2ta", "ttc-stc-m4", "ttc-stc-m8", "ttc-vegeta-m4", "ttc-vegeta-m8")


DROP_BUDGET = 0.05


def dropped_fraction(series: str, density: float) -> float:
    """Expected fraction of nonzeros a series drops on uniformly random data at ``density``."""
    if series == "dense":
        return 0.0
    terms = [t.split(":") for t in series.split("+")]
    g, h = sum(int(t[0]) for t in terms), int(terms[0][1])
    x = np.arange(h + 1)
    pmf = stats.binom.pmf(x, h, density)
    return float(np.dot(np.maximum(x - g, 0), pmf) / (h * density))


def operands(design: str, workload: str, budget: float = DROP_BUDGET) -> tuple[str, str]:
    """(A, B) densities as ``design`` sees them (see the module doc for the rule)."""
    _, a, b, side, density = WORKLOADS[workload]
    if design in TTC_SERIES:
        ok = [(d, s) for d, s in TTC_SERIES[design].items() if dropped_fraction(s, density) <= budget]
        series = min(ok)[1]
        if series == "dense":  # no series qualifies: the TTC runs the operand as it is (gating its zeros)
            return a, b
        # '@d': the series' slots hold the operand's exact zeros where its data (d nonzero) does not
        # fill them, and the engine's zero gating idles their MACs (hw.density.series_fills). Dense
        # BERT's GELU activations have no exact zeros: every slot holds a value there.
        series = with_data_density(series, density_model(a if side == "A" else b).density)
        return (series, b) if side == "A" else (a, series)
    return a, b


def network_edps(budget: int, drop: float, executor: str = "auto", workers: int | None = None,
                 address: str | None = None, cache_dir: str | None = None) -> dict[tuple[str, str], tuple[float, ...]]:
    """(design, workload) → (cycles, energy pJ, EDP J·s), every layer search through the executor."""
    archs = {d: load_architecture(d) for d in DESIGNS}
    pairs, owner = [], []
    for d in DESIGNS:
        for w in WORKLOADS:
            a, b = operands(d, w, drop)
            for m, n, k in LAYERS[WORKLOADS[w][0]]:
                pairs.append((archs[d], Problem(f"{m}-{n}-{k}", M=m, K=k, N=n, a_density=a, b_density=b)))
                owner.append((d, w))
    ex = make_executor(executor, workers=workers, address=address)
    try:
        results, _ = run_problems(pairs, MapperSettings(budget=budget, seed=0), executor=ex, workers=workers,
                                  cache=ResultCache(cache_dir) if cache_dir else None)
    finally:
        if ex is not None:
            ex.close()
    out: dict[tuple[str, str], list[float]] = {}
    for key, r in zip(owner, results, strict=True):
        acc = out.setdefault(key, [0.0, 0.0])
        acc[0] += r.best.cycles
        acc[1] += r.best.energy_pj
    return {(d, w): (c, e, e * 1e-12 * c / archs[d].clock_hz) for (d, w), (c, e) in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=3000, help="mappings tried per layer")
    parser.add_argument("--drop-budget", type=float, default=DROP_BUDGET,
                        help="fraction of nonzeros a TTC's TASD series may drop (sensitivity)")
    parser.add_argument("--executor", choices=EXECUTORS, default="auto", help="where the searches run")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: every core)")
    parser.add_argument("--address", default=None, help="a Ray cluster to join (with --executor ray)")
    parser.add_argument("--cache-dir", default=None, help="answer repeated searches from this cache")
    args = parser.parse_args()
    t0 = time.perf_counter()
    res = network_edps(args.budget, args.drop_budget, args.executor, args.workers, args.address, args.cache_dir)
    print(f"EDP change vs TC in % (ours | paper Fig. 12); cycles/TC and energy/TC in brackets; "
          f"TTC drop budget {args.drop_budget:.0%}")
    print(f"{'design':15s}" + "".join(f"{w:>34s}" for w in WORKLOADS))
    for d in DESIGNS:
        cells = []
        for j, w in enumerate(WORKLOADS):
            c, e, edp = res[(d, w)]
            tc = res[("tc", w)]
            ours = 100.0 * (edp / tc[2] - 1.0)
            paper = f"{PAPER[d][j]:+d}" if d in PAPER else "  -"
            cells.append(f"{ours:+6.0f} | {paper:>4s} [{c / tc[0]:.2f}, {e / tc[1]:.2f}]")
        print(f"{d:15s}" + "".join(f"{x:>34s}" for x in cells))
    print("operands per design (A / B):")
    for d in DESIGNS:
        print(f"  {d:15s} " + "; ".join(f"{w}: {'/'.join(operands(d, w, args.drop_budget))}" for w in WORKLOADS))
    print(f"seconds: {time.perf_counter() - t0:.1f}")


if __name__ == "__main__":
    main()
