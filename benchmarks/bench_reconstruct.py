"""TASD-W on MiniLM's dense weights: magnitude vs activation-aware scores vs reconstruction.

For every one of the 36 encoder linears and each series (default ``2:8+1:8`` and ``4:8``), four
variants of TASD-W: ``magnitude`` (|W|, the paper's), ``activation`` (|W_ij|·‖X_j‖₂, Wanda's score),
``magnitude+recon`` and ``activation+recon`` (the kept weights refit from the calibration
activations, :mod:`tasder.nn.reconstruct`). Prints

* per sublayer kind (q, k, v, attention output, MLP up, MLP down; mean over the 6 encoder layers)
  the relative output error ‖x(Ŵ − W)ᵀ‖/‖xWᵀ + b‖ on *held-out* text (the first 64 validation pairs'
  queries and targets, never seen by calibration) and, in brackets, on the calibration text itself
  (what reconstruction fits);
* recall@1 on the validation split with all 36 layers in TASD-W at the series, per variant.

    python benchmarks/bench_reconstruct.py [--series 2:8+1:8,4:8] [--no-recall]
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict
from typing import Any

import torch
from torch import nn

from tasder import zoo
from tasder.nn import apply_tasd
from tasder.nn.calibration import calibrate_probes
from tasder.nn.config import LayerSpec
from tasder.nn.layers import make_tasd_layer
from tasder.zoo.retrieval import QUERY_MAX_TOKENS, TARGET_MAX_TOKENS

VARIANTS: dict[str, dict[str, Any]] = {
    "magnitude": {}, "activation": {"score": "activation"}, "magnitude+recon": {"reconstruct": True},
    "activation+recon": {"score": "activation", "reconstruct": True},
}
KINDS = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
         "intermediate.dense", "output.dense")


def _held_out(entry: zoo.ZooModel, pairs: int = 64) -> list[dict[str, torch.Tensor]]:
    tok = entry.metadata["tokenizer"]
    val = entry.metadata["val_task"].pairs[:pairs]
    out = []
    for i in range(0, len(val), 8):
        chunk = val[i : i + 8]
        q = tok([p.query for p in chunk], truncation=True, max_length=QUERY_MAX_TOKENS)["input_ids"]
        t = tok([p.target for p in chunk], truncation=True, max_length=TARGET_MAX_TOKENS)["input_ids"]
        out.append(dict(tok.pad({"input_ids": [x for a, b in zip(q, t, strict=True) for x in (a, b)]},
                                return_tensors="pt")))
    return out


@torch.no_grad()
def _errors(model: nn.Module, probes: dict[str, list[Any]], batches: list[Any]) -> dict[int, float]:
    errors, _ = calibrate_probes(model, probes, batches, measure=True)
    return {k: v.relative_error(False) for k, v in errors.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", default="2:8+1:8,4:8")
    parser.add_argument("--no-recall", action="store_true")
    args = parser.parse_args()
    entry = zoo.load("minilm")
    model = entry.model
    assert model is not None
    held = _held_out(entry)
    names = [n for n, m in model.named_modules() if type(m) is nn.Linear]
    modules = dict(model.named_modules())
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} load average {os.getloadavg()[0]:.2f}; calibration "
          f"{sum(int(b['attention_mask'].sum()) for b in entry.calibration)} tokens, held-out "
          f"{sum(int(b['attention_mask'].sum()) for b in held)} tokens", flush=True)
    for series in args.series.split(","):
        table: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
        for variant, opts in VARIANTS.items():
            spec = LayerSpec(series, "W", **opts)
            probes = {n: [make_tasd_layer(modules[n], spec).eval()] for n in names}
            inside = _errors(model, probes, entry.calibration)  # calibrates the probes too
            outside = _errors(model, probes, held)
            for n in names:
                kind = next(k for k in KINDS if n.endswith(k))
                p = probes[n][0]
                table[kind][variant].append((outside[id(p)], inside[id(p)]))
        print(f"\n## {series}: relative output error on held-out text (on the calibration text)", flush=True)
        print("| layer kind | " + " | ".join(VARIANTS) + " |")
        print("|---|" + "---|" * len(VARIANTS))
        for kind in KINDS:
            cells = []
            for variant in VARIANTS:
                vals = table[kind][variant]
                out = sum(v[0] for v in vals) / len(vals)
                ins = sum(v[1] for v in vals) / len(vals)
                cells.append(f"{out:.3f} ({ins:.3f})")
            print(f"| {kind} | " + " | ".join(cells) + " |", flush=True)
        means = []
        for variant in VARIANTS:
            vals = [v for kind in KINDS for v in table[kind][variant]]
            means.append(f"{sum(v[0] for v in vals) / len(vals):.3f} ({sum(v[1] for v in vals) / len(vals):.3f})")
        print("| all 36 | " + " | ".join(means) + " |", flush=True)
        if args.no_recall:
            continue
        evaluate = entry.metadata["evaluate_val"]
        base = float(evaluate(model))
        cells = []
        for variant, opts in VARIANTS.items():
            start = time.perf_counter()
            net = apply_tasd(model, {"encoder.layer.*": {"series": series, "mode": "W", **opts}},
                             calibration=entry.calibration)
            r = float(evaluate(net))
            cells.append(f"{r:.4f}")
            print(f"# {series} {variant}: recall@1 {r:.4f} ({time.perf_counter() - start:.0f} s)", flush=True)
        print(f"| recall@1, all 36 layers at {series} (original {base:.4f}) | " + " | ".join(cells) + " |",
              flush=True)


if __name__ == "__main__":
    main()
