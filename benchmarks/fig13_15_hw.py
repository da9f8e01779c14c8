"""The TASD paper's Figs. 13, 14 and 15 on our model, each next to the paper's number.

Same workloads, layers and operand rule as ``fig12_hw.py`` (TASD paper Table 4 and §4; see its
docstring), on the paper's Table 3 designs:

* **Fig. 13** — latency and energy of each design normalised to TC per workload. The paper gives
  no cell values in its text, only two statements, checked here: TTC-VEGETA-M8 is the most
  energy-efficient design on every workload, and it is slower than DSTC only on sparse ResNet-50.
* **Fig. 14** — TASD-W on the 95 %-sparse ResNet-50 layers: the network-wise configurations the
  paper found to keep 99 % accuracy, 3:4 (2:4+1:4 on TTC-VEGETA-M4), 5:8 (4:8+1:8 on
  TTC-VEGETA-M8) and 10:16 (8:16+2:16 on a TTC-VEGETA-M16: ttc-vegeta-m8.yaml with {1,2,4,8}:16
  patterns and 4-bit coordinates, built here since no M16 design ships), with activations
  unstructured(0.5) and gated, and "layer-wise" (each layer's series by fig12_hw's drop rule on
  TTC-VEGETA-M8), as cycles, energy and EDP change vs TC. Paper: 5:8 −24 % / −53 % / −75 %;
  layer-wise −61 % / −47 % / −83 %; layer-wise beats network-wise on EDP.
* **Fig. 15** — the energy of TC and TTC-VEGETA-M8 on one representative sparse-ResNet-50 layer
  (M784-N128-K1152) with A = 4:8+1:8, by component (DRAM, L2, L1, RF, MACs, TASD units,
  leakage), as a share of TC's total. Paper: −55 %.
* ``--sensitivity`` — TTC-VEGETA-M8's EDP change vs TC on the four workloads when one modelling
  choice is switched: the term loop placed by the mapper anywhere (no Fig. 11 constraint), the
  term loop innermost at DRAM (B and Z reused in L2 only), DRAM at the Sparseloop artifact's
  energy in both designs (LPDDR4, 512 pJ per 64-bit access = 8 pJ/bit, the Accelergy ERT of the
  artifact's TC/STC/DSTC case study that TASD Table 3 says its TC and DSTC follow; ours is
  Horowitz's 1.3–2.6 nJ midpoint, 30.5 pJ/bit), and L2's capacity doubled in both (buffer sizes:
  the paper gives none; ours are tc.yaml's). Then Fig. 13's two orderings under the choices that
  move them: the mapper's objective (EDP, as shipped, or energy: Fig. 13 plots each design's
  energy, the paper does not say at which mappings) and the artifact's DRAM energy.

Run: ``python benchmarks/fig13_15_hw.py [--budget N] [--executor ...] [--sensitivity]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fig12_hw  # the workloads, layers and operand rule, next to this file
from fig12_hw import LAYERS, WORKLOADS, operands
from tasder.hw import Architecture, Problem, load_architecture
from tasder.hw.architecture import design_path
from tasder.hw.executor import EXECUTORS, MapperSettings, make_executor, run_problems
from tasder.hw.sparse import TermLoop

TABLE3 = ("tc", "dstc", "ttc-stc-m4", "ttc-stc-m8", "ttc-vegeta-m4", "ttc-vegeta-m8")
#: Fig. 14: configuration → (design, series); the paper's change vs TC in % (cycles, energy, EDP).
FIG14 = {"3:4": ("ttc-vegeta-m4", "2:4+1:4"), "5:8": ("ttc-vegeta-m8", "4:8+1:8"),
         "10:16": ("ttc-vegeta-m16", "8:16+2:16")}
PAPER14 = {"5:8": (-24, -53, -75), "layer-wise": (-61, -47, -83)}
FIG15_LAYER = (784, 128, 1152)  # M, N, K
PAPER15 = -55


def vegeta_m16(tmp: Path) -> Architecture:
    """ttc-vegeta-m8.yaml with M = 16: patterns {1,2,4,8}:16, 4-bit coordinates (log2 M, as the M8's 3)."""
    text = Path(design_path("ttc-vegeta-m8")).read_text()
    text = text.replace('["1:8", "2:8", "4:8"]', '["1:16", "2:16", "4:16", "8:16"]').replace("CP:3", "CP:4")
    text = text.replace("name: ttc-vegeta-m8", "name: ttc-vegeta-m16")
    path = tmp / "ttc-vegeta-m16.yaml"
    path.write_text(text)
    return load_architecture(path)


#: DRAM energy per bit of the Sparseloop artifact's ERT (micro22-sparseloop-artifact,
#: fig15_stc_related_setup/.../ert_art/int8/{TC,STC,DSTC}-RF2x-24-bandwidth/ERT_summary.yaml: LPDDR4,
#: 64-bit wide, 512 pJ per read or write).
ARTIFACT_DRAM_PJ_PER_BIT = 512 / 64


def artifact_dram(arch: Architecture) -> Architecture:
    """``arch`` with its DRAM at the Sparseloop artifact's LPDDR4 energy (per access: block bits × 8 pJ)."""
    d = arch.levels[0]
    e = ARTIFACT_DRAM_PJ_PER_BIT * d.block_size * d.word_bits
    d2 = replace(d, read_energy=e, write_energy=e, update_energy=e)
    return replace(arch, name=arch.name + "-lpddr4", levels=(d2, *arch.levels[1:]))


def run(pairs: list[tuple[Architecture, Problem]], budget: int, executor: str, objective: str = "edp") -> list:
    ex = make_executor(executor)
    try:
        results, _ = run_problems(pairs, MapperSettings(budget=budget, seed=0, objective=objective), executor=ex)
    finally:
        if ex is not None:
            ex.close()
    return results


def layers(workload: str, a: str, b: str) -> list[Problem]:
    return [Problem(f"{m}-{n}-{k}", M=m, K=k, N=n, a_density=a, b_density=b)
            for m, n, k in LAYERS[WORKLOADS[workload][0]]]


def totals(archs: dict[str, Architecture], cases: dict[tuple[str, str], tuple[str, str, str]], budget: int,
           executor: str, objective: str = "edp") -> dict[tuple[str, str], tuple[float, float, float]]:
    """case key → (cycles, energy pJ, EDP J·s) summed over the workload's layers; a case is
    (design, workload, A, B) keyed by any pair."""
    pairs, owner = [], []
    for key, (design, workload, a_b) in cases.items():
        a, b = a_b.split("|")
        for p in layers(workload, a, b):
            pairs.append((archs[design], p))
            owner.append(key)
    out: dict[tuple[str, str], list[float]] = {}
    for key, r in zip(owner, run(pairs, budget, executor, objective), strict=True):
        acc = out.setdefault(key, [0.0, 0.0])
        acc[0] += r.best.cycles
        acc[1] += r.best.energy_pj
    return {k: (c, e, e * 1e-12 * c / 1e9) for k, (c, e) in out.items()}


def fig13(archs: dict[str, Architecture], budget: int, executor: str) -> None:
    cases = {(d, w): (d, w, "|".join(operands(d, w))) for d in TABLE3 for w in WORKLOADS}
    res = totals(archs, cases, budget, executor)
    print("Fig. 13: latency / energy normalised to TC (ours; the paper's text gives orderings, not cells)")
    print(f"{'design':15s}" + "".join(f"{w:>22s}" for w in WORKLOADS))
    for d in TABLE3:
        cells = [f"{res[(d, w)][0] / res[('tc', w)][0]:>11.2f} /{res[(d, w)][1] / res[('tc', w)][1]:>5.2f}    "
                 for w in WORKLOADS]
        print(f"{d:15s}" + "".join(cells))
    best = {w: min(TABLE3, key=lambda d, w=w: res[(d, w)][1]) for w in WORKLOADS}
    faster = [w for w in WORKLOADS if res[("dstc", w)][0] < res[("ttc-vegeta-m8", w)][0]]
    print("  most energy-efficient per workload: " + "; ".join(f"{w}: {d}" for w, d in best.items())
          + " | paper: ttc-vegeta-m8 on every workload")
    print(f"  workloads where DSTC is faster than ttc-vegeta-m8: {', '.join(faster) or 'none'} | paper: sparse-resnet50"
          " only")


def fig14(archs: dict[str, Architecture], budget: int, executor: str) -> None:
    cases: dict[tuple[str, str], tuple[str, str, str]] = {("tc", ""): ("tc", "sparse-resnet50",
                                                                       "unstructured(0.05)|unstructured(0.5)")}
    for cfg, (design, series) in FIG14.items():
        cases[(design, cfg)] = (design, "sparse-resnet50", f"{series}|unstructured(0.5)")
    cases[("ttc-vegeta-m8", "layer-wise")] = ("ttc-vegeta-m8", "sparse-resnet50",
                                              "|".join(operands("ttc-vegeta-m8", "sparse-resnet50")))
    res = totals(archs, cases, budget, executor)
    tc = res[("tc", "")]
    print("Fig. 14: TASD-W on 95 %-sparse ResNet-50, change vs TC in % (ours | paper): cycles, energy, EDP")
    for key in [*((d, c) for c, (d, _) in FIG14.items()), ("ttc-vegeta-m8", "layer-wise")]:
        c, e, edp = res[key]
        paper = PAPER14.get(key[1])
        cells = [f"{100 * (x / y - 1):+5.0f} | {'  -' if paper is None else f'{paper[i]:+d}':>4s}"
                 for i, (x, y) in enumerate(((c, tc[0]), (e, tc[1]), (edp, tc[2])))]
        label = key[1] if key[1] == "layer-wise" else f"{key[1]} ({FIG14[key[1]][1]})"
        print(f"  {label:22s} {key[0]:15s} " + "   ".join(cells))


def fig15(archs: dict[str, Architecture], budget: int, executor: str) -> None:
    m, n, k = FIG15_LAYER
    pairs = [(archs["tc"], Problem("rn50", M=m, K=k, N=n, a_density="unstructured(0.05)",
                                   b_density="unstructured(0.5)")),
             (archs["ttc-vegeta-m8"], Problem("rn50", M=m, K=k, N=n, a_density="4:8+1:8",
                                              b_density="unstructured(0.5)"))]
    tc, ttc = (r.best for r in run(pairs, budget, executor))
    print(f"Fig. 15: energy by component on the sparse-ResNet-50 layer M{m}-N{n}-K{k}, A = 4:8+1:8, "
          f"as % of TC's total")

    def parts(ev: object) -> dict[str, float]:
        out = {}
        for lv, row in ev.energy_breakdown().items():  # type: ignore[attr-defined]
            out[lv] = sum(v for key, v in row.items() if key != "leakage")
            out["leakage"] = out.get("leakage", 0.0) + row.get("leakage", 0.0)
        x = ev.counts.extra_energy  # type: ignore[attr-defined]
        out["TASD units"] = 0.0 if x is None else float(x[0])
        return out

    a, b = parts(tc), parts(ttc)
    total = tc.energy_pj
    for key in a:
        print(f"  {key:11s} TC {100 * a[key] / total:6.1f} %   TTC-VEGETA-M8 {100 * b[key] / total:6.1f} %")
    print(f"  total change: {100 * (ttc.energy_pj / total - 1):+.0f} % | paper {PAPER15:+d} %")


def sensitivity(archs: dict[str, Architecture], budget: int, executor: str) -> None:
    ttc, tc = archs["ttc-vegeta-m8"], archs["tc"]
    spec = ttc.sparse
    assert spec is not None

    def l2_double(arch: Architecture) -> Architecture:
        lv = arch.levels[1]
        assert lv.capacity is not None
        return replace(arch, name=arch.name + "-l2x2", levels=(arch.levels[0], replace(lv, capacity=2 * lv.capacity),
                                                               *arch.levels[2:]))

    variants = {
        "as shipped (Fig. 11: term loop innermost in L2)": (tc, ttc),
        "term loop anywhere (mapper's choice)": (tc, replace(ttc, sparse=replace(spec, term_loop=TermLoop()))),
        "term loop innermost at DRAM (reuse in L2 only)": (tc, replace(ttc, sparse=replace(
            spec, term_loop=TermLoop("DRAM", True, 2)))),
        "DRAM at the artifact's 8 pJ/bit (both designs)": (artifact_dram(tc), artifact_dram(ttc)),
        "L2 capacity doubled (both designs)": (l2_double(tc), l2_double(ttc)),
    }
    print("Sensitivity: ttc-vegeta-m8's EDP change vs TC in % per workload (paper Fig. 12: "
          + ", ".join(f"{x:+d}" for x in fig12_hw.PAPER["ttc-vegeta-m8"]) + ")")
    for name, (base, design) in variants.items():
        cases, archs2 = {}, {"tc": base, "ttc": design}
        for w in WORKLOADS:
            cases[("tc", w)] = ("tc", w, "|".join(operands("tc", w)))
            cases[("ttc", w)] = ("ttc", w, "|".join(operands("ttc-vegeta-m8", w)))
        res = totals(archs2, cases, budget, executor)
        change = [100 * (res[("ttc", w)][2] / res[("tc", w)][2] - 1) for w in WORKLOADS]
        print(f"  {name:50s}" + "".join(f"{x:+7.0f}" for x in change))
    fig13_orderings(archs, budget, executor)


def fig13_orderings(archs: dict[str, Architecture], budget: int, executor: str) -> None:
    """Fig. 13's two orderings when the mapper's objective and DRAM's energy are switched."""
    print("Sensitivity of Fig. 13's orderings (energy vs TC: ttc-vegeta-m8 / the lowest other design):")
    lpddr4 = {d: artifact_dram(a) for d, a in archs.items()}
    for name, designs, objective in (("as shipped (EDP-best mappings)", archs, "edp"),
                                     ("energy-best mappings", archs, "energy"),
                                     ("DRAM at the artifact's 8 pJ/bit", lpddr4, "edp"),
                                     ("both", lpddr4, "energy")):
        cases = {(d, w): (d, w, "|".join(operands(d, w))) for d in TABLE3 for w in WORKLOADS}
        res = totals(designs, cases, budget, executor, objective)
        cells = []
        for w in WORKLOADS:
            rival = min((d for d in TABLE3 if d != "ttc-vegeta-m8"), key=lambda d, w=w: res[(d, w)][1])
            cells.append(f"{res[('ttc-vegeta-m8', w)][1] / res[('tc', w)][1]:.3f} / "
                         f"{res[(rival, w)][1] / res[('tc', w)][1]:.3f} {rival}")
        faster = [w for w in WORKLOADS if res[("dstc", w)][0] < res[("ttc-vegeta-m8", w)][0]]
        print(f"  {name:31s} " + "; ".join(cells) + f" | DSTC faster on: {', '.join(faster) or 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=3000, help="mappings tried per layer")
    parser.add_argument("--executor", choices=EXECUTORS, default="auto", help="where the searches run")
    parser.add_argument("--sensitivity", action="store_true", help="also switch modelling choices one at a time")
    args = parser.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        archs = {d: load_architecture(d) for d in TABLE3}
        archs["ttc-vegeta-m16"] = vegeta_m16(Path(tmp))
        fig13(archs, args.budget, args.executor)
        fig14(archs, args.budget, args.executor)
        fig15(archs, args.budget, args.executor)
        if args.sensitivity:
            sensitivity(archs, args.budget, args.executor)
    print(f"seconds: {time.perf_counter() - t0:.1f}")


if __name__ == "__main__":
    main()
