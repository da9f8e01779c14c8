"""SAT (N:M sparse training) vs TC: modelled speedup and energy per training phase (issue 7).

One training step of a network = three GEMMs per layer (:mod:`tasder.hw.training`):
FF ``Z = W·X`` (N:M W along K), BP ``dX = Wᵀ·dZ`` (N:M W along C_out: BDWP's second mask, see
``--bp-mask``), WU ``dW = dZ·Xᵀ`` (dense). Each GEMM is mapped separately on each design
(mapper best by EDP, same budget and seed); TC runs everything dense. Per phase it prints

    sat <net> <pattern> <phase>: speedup=<tc cycles / sat cycles> energy_ratio=<sat energy / tc energy>

then the whole step (``total``) and the analytic ideal 3/(2·N/M + 1) (FF and BP at N/M of the
MACs, WU dense; the BDWP paper (docs/design.md §3.5) measures 1.75x at 2:8 on its FPGA, 87.5 % of 2.0x).
Activations are taken dense (ReLU zeros are not exploited by SAT). The first layer's BP is not
computed (nothing needs the input's gradient).

Run: ``python benchmarks/bench_sat.py [--network resnet50] [--patterns 2:8,2:4] [--budget N]
[--bp-mask bidirectional|forward|dense]``.
"""

from __future__ import annotations

import argparse
import time

from tasder.hw import load_architecture, map_training
from tasder.hw.density import density_model
from tasder.hw.training import BP_MASKS, PHASES
from tasder.workloads import load_network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="resnet50")
    parser.add_argument("--patterns", default="2:8,2:4", help="comma-separated N:M patterns of W")
    parser.add_argument("--budget", type=int, default=3000, help="mappings per GEMM")
    parser.add_argument("--bp-mask", default="bidirectional", choices=BP_MASKS)
    args = parser.parse_args()
    t0 = time.perf_counter()
    net = load_network(args.network)
    kw = {"budget": args.budget, "seed": 0}
    tc = map_training(load_architecture("tc"), net, "dense", **kw)
    sat = load_architecture("sat")
    print(f"{args.network}: {len(net.layers)} layers; TC training step {tc.cycles:.4g} cycles, "
          f"{tc.energy_pj / 1e6:.4g} uJ; BP mask: {args.bp_mask}")
    for pattern in args.patterns.split(","):
        res = map_training(sat, net, pattern, bp_mask=args.bp_mask, **kw)
        for phase in PHASES:
            t, s = tc.phases[phase], res.phases[phase]
            print(f"sat {args.network} {pattern} {phase}: speedup={t.cycles / s.cycles:.3f} "
                  f"energy_ratio={s.energy_pj / t.energy_pj:.3f}")
        d = density_model(pattern).density
        print(f"sat {args.network} {pattern} total: speedup={tc.cycles / res.cycles:.3f} "
              f"energy_ratio={res.energy_pj / tc.energy_pj:.3f} (ideal speedup {3 / (2 * d + 1):.3f})")
    print(f"seconds: {time.perf_counter() - t0:.1f}")


if __name__ == "__main__":
    main()
