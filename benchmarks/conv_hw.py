"""Native convolutions vs their im2col GEMMs on the accelerator model (issue 16): digits-cnn and ResNet-50.

Each network is mapped twice on each design — its convolutions native (R, S, P, Q, C, M, N with the
sliding window: input tiles hold the halo once) and lowered to im2col GEMMs (K = C·R·S: an input
tile holds each input word up to R·S times) — every layer at its best mapping for EDP, the mapper
budget the same. Operands as ``fig12_hw.py``'s dense ResNet-50: weights dense, inputs ReLU
activations ``unstructured(0.5)``; a TTC runs the inputs as the TASD series that script's rule
picks (the sparsest native series dropping ≤ 5 % of the nonzeros). digits-cnn is traced on one
sample (batch 1, as the TASD paper evaluates); ResNet-50 is the zoo's shape table (batch 1).

Printed per network and design: cycles, energy (µJ) and EDP (J·s), native and im2col, their ratio
(native / im2col), and the input words moved on chip (fills of B into every level below DRAM) and
from DRAM (reads of B there).

Run: ``python benchmarks/conv_hw.py [--budget N] [--designs tc,ttc-vegeta-m8]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

from tasder.hw import Network, load_architecture, map_network

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fig12_hw import operands  # the TASD rule of the Fig. 12 comparison


def _network(name: str, im2col: bool) -> Network:
    from tasder.workloads import load_network, trace_network

    if name == "digits-cnn":
        from tasder import zoo

        entry = zoo.load(name)
        return trace_network(entry.model, entry.calibration[0][:1], name=name, im2col=im2col)
    return load_network(name, im2col=im2col)


def _b_traffic(result) -> tuple[float, float]:
    """(B words filled into the on-chip levels, B words read from DRAM), all layers × repeat."""
    on_chip = dram = 0.0
    for r in result.layers:
        c, rep = r.best.counts, r.best.problem.repeat
        on_chip += float(c.fills[0, 1:, 1].sum()) * rep
        dram += float(c.reads[0, 0, 1]) * rep
    return on_chip, dram


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=5000, help="mappings tried per layer")
    parser.add_argument("--designs", default="tc,ttc-vegeta-m8", help="comma-separated shipped designs")
    args = parser.parse_args()
    t0 = time.perf_counter()
    print(f"{'network':11s} {'design':14s} {'':7s} {'cycles':>12s} {'energy µJ':>10s} {'EDP J·s':>10s} "
          f"{'B on chip':>12s} {'B from DRAM':>12s}")
    for name in ("digits-cnn", "resnet50"):
        nets = {kind: _network(name, kind == "im2col") for kind in ("native", "im2col")}
        for design in args.designs.split(","):
            arch = load_architecture(design)
            a, b = operands(design, "dense-resnet50")
            rows = {}
            for kind, net in nets.items():
                net = Network(net.name, tuple(replace(p, a_density=a, b_density=b) for p in net.layers))
                res = map_network(arch, net, budget=args.budget, seed=0)
                rows[kind] = (res.cycles, res.energy_pj / 1e6, res.edp, *_b_traffic(res))
            for kind in ("native", "im2col"):
                print(f"{name:11s} {design:14s} {kind:7s} " + " ".join(
                    f"{v:12,.0f}" if i in (0, 3, 4) else f"{v:10.2f}" if i == 1 else f"{v:10.3e}"
                    for i, v in enumerate(rows[kind])))
            ratio = [n / i for n, i in zip(rows["native"], rows["im2col"], strict=True)]
            print(f"{name:11s} {design:14s} {'ratio':7s} " + " ".join(
                f"{v:12.2f}" if i in (0, 3, 4) else f"{v:10.2f}" for i, v in enumerate(ratio)))
    print(f"operands: A dense, B unstructured(0.5); TTCs run B as {operands('ttc-vegeta-m8', 'dense-resnet50')[1]} "
          f"(ttc-vegeta-m8)")
    print(f"seconds: {time.perf_counter() - t0:.1f}")


if __name__ == "__main__":
    main()
