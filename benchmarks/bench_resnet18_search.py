"""A ResNet-18-shaped CNN of your own through apply_tasd and a 60-evaluation TASDER search (issue 20).

The network: ResNet-18's layout — a 3×3 stem, four stages of two basic blocks (two 3×3 convs each,
BatchNorm, residual adds, 1×1 projections where the shape changes) and a classifier: 21
conv/linear layers, widths 16, 32, 64, 128. The data: scikit-learn's digits (real, offline),
upsampled to 16×16 (bilinear), the package's fixed 60/20/20 split. It is trained here (Adam, one
torch thread, seeded), pruned to 80 % unstructured weights by global magnitude and fine-tuned with
the mask held — then cached in the tasder cache (``$TASDER_CACHE_DIR``), so a rerun starts at once.

Two measurements, each as ratios within one run (load on a shared machine moves the seconds, not
much the ratios):

1. ``apply_tasd`` of every searchable layer at ``1:8`` (TASD-W): plain, with bias correction, with
   ``permute`` (cold permutation cache, then warm), with both — the permutation's cost over plain;
2. the search: ``paper-greedy`` (it evaluates a config per (layer, series) pair, so 60 evaluations
   are reached), TASD-W, ``permute`` + ``bias_correction``, ``max_evals=60``, the 99 % constraint on
   the validation split, effective MACs as the cost: evaluations, wall seconds, seconds per
   evaluation, the permutation cache's hits and misses.

    python benchmarks/bench_resnet18_search.py [--evals 60] [--method paper-greedy] [--json FILE]

Prints ``uptime``'s load first: compare times only between runs at a similar load.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from tasder._threads import single_thread
from tasder.nn import apply_tasd
from tasder.search import search
from tasder.tasd.permutation import clear_permutation_cache, permutation_cache_info
from tasder.zoo.cache import cached_state_dict
from tasder.zoo.digits import evaluate_accuracy, load_digits_data

SIZE = 16  # the digits' 8×8 upsampled to SIZE×SIZE


class Block(nn.Module):
    """ResNet's basic block: conv-BN-ReLU-conv-BN, plus the input (1×1 conv-BN when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNet18Small(nn.Module):
    """ResNet-18's 21 conv/linear layers at widths 16–128, for 1×16×16 inputs and 10 classes."""

    def __init__(self, widths: tuple[int, int, int, int] = (16, 32, 64, 128), classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        layers, c = [], widths[0]
        for i, w in enumerate(widths):
            layers.append(nn.Sequential(Block(c, w, 1 if i == 0 else 2), Block(w, w, 1)))
            c = w
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _upsampled() -> dict[str, torch.Tensor]:
    d = load_digits_data()
    up = {k: F.interpolate(getattr(d, f"x_{k}"), size=(SIZE, SIZE), mode="bilinear", align_corners=False)
          for k in ("train", "val", "test")}
    return {**{f"x_{k}": v.contiguous() for k, v in up.items()},
            **{f"y_{k}": getattr(d, f"y_{k}") for k in ("train", "val", "test")}}


def _fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int,
         masks: dict[str, torch.Tensor] | None = None) -> None:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    params = dict(model.named_parameters())
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(64):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
            with torch.no_grad():
                for name, m in (masks or {}).items():
                    params[name].mul_(m)
    model.eval()


def _prune(model: nn.Module, sparsity: float) -> dict[str, torch.Tensor]:
    weights = {f"{n}.weight": m.weight for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    flat = torch.cat([w.detach().abs().flatten() for w in weights.values()])
    keep = torch.ones_like(flat)
    keep[torch.argsort(flat, stable=True)[: round(sparsity * flat.numel())]] = 0.0
    masks, offset = {}, 0
    with torch.no_grad():
        for name, w in weights.items():
            masks[name] = keep[offset : offset + w.numel()].view_as(w).clone()
            offset += w.numel()
            w.mul_(masks[name])
    return masks


def build_model(data: dict[str, torch.Tensor]) -> nn.Module:
    """The trained, 80 %-pruned network (cached: trained once, ≈ 1–2 min on one core)."""

    def train() -> dict[str, torch.Tensor]:
        with single_thread():
            model = ResNet18Small()
            _fit(model, data["x_train"], data["y_train"], epochs=12, seed=0)
            masks = _prune(model, 0.8)
            _fit(model, data["x_train"], data["y_train"], epochs=6, seed=1, masks=masks)
        return model.state_dict()

    state = cached_state_dict("bench-resnet18-digits16", {"version": 1, "size": SIZE, "epochs": [12, 6],
                                                          "sparsity": 0.8}, train)
    model = ResNet18Small()
    model.load_state_dict(state)
    return model.eval()


def _time(fn: Any, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--evals", type=int, default=60, help="max_evals of the search")
    parser.add_argument("--method", default="paper-greedy")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} on {os.cpu_count()} "
          f"CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads")
    data = _upsampled()
    t0 = time.perf_counter()
    model = build_model(data)
    layers = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    print(f"model: {len(layers)} conv/linear layers, {sum(p.numel() for p in model.parameters()):,} parameters, "
          f"weight sparsity {_sparsity(model):.3f}, built/loaded in {time.perf_counter() - t0:.1f} s")
    calibration = [data["x_train"][i : i + 64] for i in range(0, 256, 64)]

    def evaluate_val(m: nn.Module) -> float:
        return evaluate_accuracy(m, data["x_val"], data["y_val"])

    def evaluate_test(m: nn.Module) -> float:
        return evaluate_accuracy(m, data["x_test"], data["y_test"])

    print(f"accuracy: validation {evaluate_val(model):.4f}, test {evaluate_test(model):.4f}")
    out: dict[str, Any] = {"load": os.getloadavg(), "layers": len(layers)}

    # 1. apply_tasd: every layer with C ≥ 8 at 1:8 (TASD-W)
    config = {n: "1:8" for n in layers if _k(model, n) >= 8}
    opts = {"plain": {}, "bias correction": {"bias_correction": True}, "permute": {"permute": True},
            "permute + bias correction": {"permute": True, "bias_correction": True}}
    times: dict[str, float] = {}
    for name, o in opts.items():
        cfg = {n: {"series": s, "mode": "W", **o} for n, s in config.items()}
        if o.get("permute"):
            clear_permutation_cache()
            times[f"{name}, cold cache"] = _time(lambda c=cfg: apply_tasd(model, c, calibration=calibration))
        times[name] = _time(lambda c=cfg: apply_tasd(model, c, calibration=calibration), repeat=2)
    for name, t in times.items():
        print(f"apply_tasd {len(config)} layers 1:8, {name}: {t:.2f} s ({t / times['plain']:.2f}× plain)")
    out["apply_tasd"] = times

    # 2. the search
    clear_permutation_cache()
    t0 = time.perf_counter()
    r = search(model, "ttc-vegeta-m8", evaluate_val, calibration, "W", 0.99, args.method,  # type: ignore[arg-type]
               holdout_evaluate=evaluate_test, max_evals=args.evals, permute=True, bias_correction=True,
               model_id="resnet18-small-80", progress=False)
    seconds = time.perf_counter() - t0
    info = permutation_cache_info()
    print(f"search {args.method}, TASD-W, permute + bias correction: {r.evaluations} evaluations in {seconds:.1f} s "
          f"({seconds / max(r.evaluations, 1):.2f} s each); MAC cut {100 * r.cost_cut:.1f} %, validation "
          f"{r.metric_original:.4f} → {r.metric_final:.4f}, test {r.holdout_original:.4f} → {r.holdout_final:.4f}"
          f"{' (breaks the constraint on test)' if r.holdout_meets_constraint is False else ''}; permutation cache "
          f"{info['hits']} hits, {info['misses']} misses")
    out["search"] = {"method": args.method, "evaluations": r.evaluations, "seconds": seconds,
                     "mac_cut": r.cost_cut, "cache": info}
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2))


def _k(model: nn.Module, name: str) -> int:
    return int(model.get_submodule(name).weight.shape[1])


def _sparsity(model: nn.Module) -> float:
    ws = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws)


if __name__ == "__main__":
    main()
