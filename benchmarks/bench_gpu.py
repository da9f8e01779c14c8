"""TASD's 2:4 terms on a real NVIDIA GPU: measured speed-up over dense, next to the analytical model's.

One prepared run (sized for a few minutes of a lent GPU; every case is guarded, so a failing one
prints its error and the run goes on):

    PYTHONPATH=src python3 benchmarks/bench_gpu.py --out $OUT        # on a GPU (compute capability >= 8.0)
    PYTHONPATH=src python3 benchmarks/bench_gpu.py --quick --out /tmp/b # CPU dry run of everything CUDA-free

Sections (each prints its elapsed time):

1. **env**: GPU, driver (nvidia-smi), torch, CUDA, cuSPARSELt.
2. **model**: the analytical model's speed-up of the STC design over the TC design (``tasder.hw``,
   the mapper's fastest mapping, ``objective="cycles"``) for each GEMM: TASD-W 2:4 (weights
   ``a_density="2:4"``), 2:4+2:4, and TASD-A 2:4 (the transposed GEMM, activation as the sparse
   operand; the model has no compression stage, so this is the GEMM alone).
3. **gemm**: the TASD paper's representative GEMMs (ResNet-50, BERT) and large ones, float16 and
   bfloat16. ``M`` = weight rows (out features), ``K`` = reduction, ``N`` = columns of the
   activation operand (tokens); as a linear layer: ``x (N, K) @ W (M, K)ᵀ``. Variants: dense
   (cuBLAS, ``F.linear``); TASD-W 2:4 and 2:4+2:4 (two sparse GEMMs) through
   ``tasder.nn.semi_structured`` on CUTLASS and cuSPARSELt; TASD-A: TASD's own 2:4 selection +
   cuSPARSELt compression + sparse GEMM per call, the sparse GEMM alone (input compressed
   beforehand), and torch's fused 4×4-tile pruning (``prune_dense_static_sort``, not TASD's
   selection: its mismatch rate is printed). Each sparse output is checked against the dense
   TASD layer (``err`` = max |Δ| / max |reference|); the CUTLASS buffers built from tasder's
   packing are compared with torch's own compression of the same term (``buffers==torch``).
4. **e2e**: a BERT-base-shaped encoder (``BertConfig()`` defaults) and a MiniLM-shaped one (hidden
   384, 6 layers, 12 heads, intermediate 1536), random weights (speed does not depend on the
   values; the pretrained MiniLM weights are not on the GPU machine), float16, batch 1/32/128 ×
   128 tokens: dense vs every encoder Linear TASD-W 2:4 (``apply_tasd`` then
   ``to_semi_structured``), CUTLASS and cuSPARSELt.

Timing method: CUDA events around batches of ``n`` back-to-back calls (``n`` chosen so one batch
lasts >= 1 ms), after warm-up; the median over ``--reps`` batches, per call. "eager" is what a
PyTorch program sees (Python dispatch and kernel launches included; torch's semi-structured
tensors dispatch through Python); "graph" replays the same ``n`` calls captured in one CUDA graph
(launch overhead removed). Inputs are fixed and the L2 cache is not flushed (dense and sparse
alike). Speed-up = dense time / variant time (> 1: faster than dense).

Results: a table on stdout, ``bench_gpu.json`` and ``bench_gpu.md`` in ``--out``.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: never reach out
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse
import json
import math
import platform
import statistics
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from tasder.nn import TASDLinear, apply_tasd
from tasder.nn import semi_structured as ss

warnings.filterwarnings("ignore", message=".*SparseSemiStructuredTensor.*prototype.*")


def _process_age() -> float:
    """Seconds since this process started (Linux /proc; 0 elsewhere), so the imports count too."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


T0 = time.perf_counter() - _process_age()

#: (label, M, N, K): M weight rows, N activation columns (tokens), K reduction.
SHAPES: list[tuple[str, int, int, int]] = [
    ("ResNet-50 M784-N128-K1152", 784, 128, 1152),
    ("ResNet-50 M3136-N64-K576", 3136, 64, 576),
    ("ResNet-50 M196-N256-K2304", 196, 256, 2304),
    ("BERT M768-N128-K768", 768, 128, 768),
    ("BERT M3072-N128-K768", 3072, 128, 768),
    ("BERT M768-N128-K3072", 768, 128, 3072),
    ("4096^3 (= 4096 tokens, 4096->4096)", 4096, 4096, 4096),
    ("4096 tokens, 768->3072", 3072, 4096, 768),
    ("4096 tokens, 3072->768", 768, 4096, 3072),
]
PAPER_SHAPES = 6  # the first six are the TASD paper's
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
ENCODERS = {
    "BERT-base": {},  # transformers BertConfig defaults: hidden 768, 12 layers, 12 heads, intermediate 3072
    "MiniLM-L6 shape": {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
                        "intermediate_size": 1536},
}
BATCHES = (1, 32, 128)
SEQ = 128
DEVICE = "cuda"


def log(*parts: object) -> None:
    print(*parts, flush=True)


def elapsed() -> float:
    return time.perf_counter() - T0


class Budget:
    """Stop starting new cases once the run has used its time (the rest print as skipped)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def left(self) -> bool:
        return elapsed() < self.seconds


def short_error(exc: BaseException) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text[:300]


def guarded(record: dict[str, Any], key: str, fn: Callable[[], Any]) -> Any:
    """Run one case; on failure store and print the error under ``key`` and return None."""
    try:
        return fn()
    except Exception as exc:  # one failing case must not end the run
        record.setdefault("errors", {})[key] = short_error(exc)
        log(f"    ! {key}: {short_error(exc)}")
        if os.environ.get("BENCH_TRACEBACK"):
            traceback.print_exc()
        return None


# -- timing -----------------------------------------------------------------------------------------


def _sync() -> None:
    torch.cuda.synchronize()


def time_eager(fn: Callable[[], Any], reps: int, min_batch_s: float = 1e-3) -> tuple[float, int]:
    """(median seconds per call, calls per batch): CUDA events around batches of back-to-back calls."""
    for _ in range(3):
        fn()
    _sync()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(3):
        fn()
    end.record()
    end.synchronize()
    estimate = max(start.elapsed_time(end) / 3e3, 1e-7)
    n = max(1, min(2000, math.ceil(min_batch_s / estimate)))
    times = []
    for _ in range(reps):
        start.record()
        for _ in range(n):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3 / n)
    return statistics.median(times), n


def time_graph(fn: Callable[[], Any], reps: int, n: int) -> float:
    """Median seconds per call of ``n`` calls captured in one CUDA graph and replayed."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    _sync()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(n):
            fn()
    graph.replay()
    _sync()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(reps):
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3 / n)
    del graph
    return statistics.median(times)


#: Graph timings run after every eager one (a failed capture cannot spoil the eager numbers):
#: (record, key, function, calls per graph).
GRAPH_JOBS: list[tuple[dict[str, Any], str, Callable[[], Any], int]] = []


def measure(record: dict[str, Any], key: str, fn: Callable[[], Any], reps: int, graph: bool = True,
            max_graph_calls: int = 64) -> None:
    """Eager time of ``fn`` into ``record["eager_s"][key]`` now; its graph time is queued."""
    result = guarded(record, f"{key} eager", lambda: time_eager(fn, reps))
    if result is None:
        return
    seconds, n = result
    record.setdefault("eager_s", {})[key] = seconds
    if graph:
        GRAPH_JOBS.append((record, key, fn, max(1, min(n, max_graph_calls))))


def run_graph_jobs(reps: int, budget: Budget) -> None:
    done = 0
    with torch.no_grad():
        for record, key, fn, calls in GRAPH_JOBS:
            if not budget.left():
                record.setdefault("errors", {})[f"{key} graph"] = "skipped: time budget"
                continue
            g = guarded(record, f"{key} graph ({record.get('shape') or record.get('model')})",
                        lambda fn=fn, calls=calls: time_graph(fn, reps, calls))
            if g is not None:
                record.setdefault("graph_s", {})[key] = g
                done += 1
    log(f"  {done} of {len(GRAPH_JOBS)} graph timings")
    GRAPH_JOBS.clear()


def rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    scale = float(ref.float().abs().max())
    return float((y.float() - ref.float()).abs().max()) / (scale if scale > 0 else 1.0)


# -- the model column -------------------------------------------------------------------------------


def map_layer(arch: Any, problem: Any, budget: int) -> Any:
    """The mapper's fastest mapping of ``problem`` on ``arch`` (seed 0)."""
    from tasder import hw

    return hw.map_layer(arch, problem, budget=budget, seed=0, objective="cycles")


def model_speedups(m: int, n: int, k: int, budget: int) -> dict[str, float]:
    """STC-vs-TC modelled speed-up (cycles ratio) for TASD-W 2:4, 2:4+2:4 and TASD-A 2:4."""
    from tasder.hw import Problem, load_architecture

    tc, stc = load_architecture("tc"), load_architecture("stc")
    out = {}
    cases = {"W 2:4": dict(M=m, K=k, N=n, a_density="2:4"),
             "W 2:4+2:4": dict(M=m, K=k, N=n, a_density="2:4+2:4"),
             "A 2:4": dict(M=n, K=k, N=m, a_density="2:4")}  # the activation as the sparse operand
    for name, dims in cases.items():
        problem = Problem(f"{m}-{n}-{k}", **dims)
        out[name] = map_layer(tc, problem, budget).best.cycles / map_layer(stc, problem, budget).best.cycles
    return out


# -- sections ---------------------------------------------------------------------------------------


def section_env(quick: bool) -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
    }
    try:
        import transformers

        env["transformers"] = transformers.__version__
    except Exception as exc:
        env["transformers"] = short_error(exc)
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                   memory_gib=round(props.total_memory / 2**30, 1), sm_count=props.multi_processor_count)
        try:
            env["cusparselt"] = torch.backends.cusparselt.version() if ss.cusparselt_available() else None
        except Exception as exc:
            env["cusparselt"] = short_error(exc)
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm,power.limit",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        env["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
        if smi.returncode == 0 and smi.stdout.strip():
            env["driver"] = smi.stdout.strip().splitlines()[0].split(",")[1].strip()
    except (OSError, subprocess.SubprocessError) as exc:
        env["nvidia_smi"] = f"not available ({short_error(exc)})"
    for key, value in env.items():
        log(f"  {key}: {value}")
    if quick:
        log("  --quick: a CPU dry run; no GPU column is measured")
    return env


def section_model(shapes: list[tuple[str, int, int, int]], budget: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for label, m, n, k in shapes:
        record: dict[str, Any] = {}
        speedups = guarded(record, f"model {label}", lambda m=m, n=n, k=k: model_speedups(m, n, k, budget))
        out[label] = speedups or {}
        if speedups:
            log(f"  {label:36s} " + "  ".join(f"{name} {s:.2f}x" for name, s in speedups.items()))
    return out


def _tasd_linear(weight_rows: int, k: int, dtype: torch.dtype, device: str, series: str, mode: str) -> TASDLinear:
    torch.manual_seed(weight_rows * 31 + k)
    with torch.device(device):
        linear = nn.Linear(k, weight_rows, bias=False).to(dtype)
    return TASDLinear.from_linear(linear, series, mode)  # type: ignore[arg-type]


def check_cutlass_buffers(layer: ss.SemiStructuredLinear, tasd: TASDLinear) -> bool:
    """tasder's CUTLASS buffers == torch's own compression (from_dense) of the same padded terms."""
    from torch.sparse import SparseSemiStructuredTensorCUTLASS

    ok = True
    for w, term in zip(layer.weights, tasd.terms(), strict=True):
        padded = ss._pad_rows(term.contiguous(), layer.rule.rows)
        ref = SparseSemiStructuredTensorCUTLASS.from_dense(padded)
        ok &= torch.equal(w.meta, ref.meta)
        ok &= torch.equal(w.packed.view(torch.int16), ref.packed.view(torch.int16))
    return bool(ok)


def gemm_case(label: str, m: int, n: int, k: int, dtype_name: str, reps: int, budget: Budget) -> dict[str, Any]:
    """Every variant of one GEMM in one dtype on the GPU."""
    dtype = DTYPES[dtype_name]
    rec: dict[str, Any] = {"shape": label, "M": m, "N": n, "K": k, "dtype": dtype_name}
    backends = ["cutlass"] + (["cusparselt"] if ss.cusparselt_available() else [])
    if "cusparselt" not in backends:
        rec.setdefault("errors", {})["cusparselt"] = "torch.backends.cusparselt.is_available() is False"
    torch.manual_seed(n * 17 + k)
    x = torch.randn(n, k, device=DEVICE, dtype=dtype)
    w24 = _tasd_linear(m, k, dtype, DEVICE, "2:4", "W")
    w = w24.weight.detach()
    measure(rec, "dense", lambda: F.linear(x, w), reps)
    errors: dict[str, float] = {}
    for series in ("2:4", "2:4+2:4"):
        tasd = w24 if series == "2:4" else _tasd_linear(m, k, dtype, DEVICE, series, "W")
        ref = F.linear(x, tasd.weight)
        for backend in backends:
            key = f"W {series} {backend}"
            if not budget.left():
                rec.setdefault("errors", {})[key] = "skipped: time budget"
                continue
            layer = guarded(rec, f"{key} build", lambda t=tasd, b=backend: ss.SemiStructuredLinear.from_tasd(t, b))
            if layer is None:
                continue
            y = guarded(rec, f"{key} run", lambda layer=layer: layer(x))
            if y is None:
                continue
            errors[key] = rel_err(y, ref)
            if backend == "cutlass":
                rec.setdefault("buffers_equal_torch", {})[series] = guarded(
                    rec, f"{key} buffers", lambda layer=layer, t=tasd: check_cutlass_buffers(layer, t))
            measure(rec, key, lambda layer=layer: layer(x), reps)
    if "cusparselt" in backends and budget.left():
        activation_cases(rec, x, w, reps, errors)
    rec["err"] = errors
    return rec


def activation_cases(rec: dict[str, Any], x: torch.Tensor, w: torch.Tensor, reps: int,
                     errors: dict[str, float]) -> None:
    """TASD-A: TASD's selection + cuSPARSELt compression + sparse GEMM; the GEMM alone; torch's tile pruning."""
    tasd_a = TASDLinear.from_linear(_plain(w), "2:4", "A")
    ref = tasd_a(x)  # tasder's own TASD-A (torch path on the GPU)
    layer = guarded(rec, "A tasd build", lambda: ss.SemiStructuredActivationLinear.from_tasd(tasd_a, "cusparselt"))
    if layer is not None:
        y = guarded(rec, "A tasd run", lambda: layer(x))
        if y is not None:
            errors["A 2:4 tasd cusparselt"] = rel_err(y, ref)
            measure(rec, "A 2:4 tasd cusparselt (select+compress+GEMM)", lambda: layer(x), reps)
            measure(rec, "A select only", lambda: ss.tasd_2to4_mask(x), reps)
            compressed = guarded(rec, "A compress", lambda: layer.compress(x))
            if compressed is not None:
                measure(rec, "A 2:4 GEMM only (pre-compressed)", lambda: torch.mm(compressed, layer.weight_t), reps)
    mask = ss.tasd_2to4_mask(x)
    for backend in ("cusparselt", "cutlass"):
        tile = guarded(rec, f"A tile {backend} build",
                       lambda b=backend: ss.SemiStructuredActivationLinear(w, None, backend=b, pruning="tile"))
        if tile is None:
            continue
        if guarded(rec, f"A tile {backend} run", lambda tile=tile: tile(x)) is None:
            continue
        measure(rec, f"A 2:4 tile {backend} (prune+compress+GEMM)", lambda tile=tile: tile(x), reps)
        if backend == "cutlass":
            kept = guarded(rec, "A tile mask", lambda tile=tile: tile.compress(x).to_dense() != 0)
            if kept is not None:
                nonzero = x != 0
                tasd_kept = mask & nonzero
                rec["tile_vs_tasd"] = {
                    "elements_differing": float((kept != tasd_kept).float().mean()),
                    "tasd_abs_kept": float((x.abs() * tasd_kept).float().sum() / x.abs().float().sum()),
                    "tile_abs_kept": float((x.abs() * kept).float().sum() / x.abs().float().sum()),
                }


def _plain(w: torch.Tensor) -> nn.Linear:
    with torch.device(w.device):
        linear = nn.Linear(w.shape[1], w.shape[0], bias=False).to(w.dtype)
    with torch.no_grad():
        linear.weight.copy_(w)
    return linear


def section_gemm(shapes: list[tuple[str, int, int, int]], reps: int, budget: Budget) -> list[dict[str, Any]]:
    rows = []
    with torch.no_grad():
        for label, m, n, k in shapes:
            for dtype_name in DTYPES:
                if not budget.left():
                    rows.append({"shape": label, "M": m, "N": n, "K": k, "dtype": dtype_name,
                                 "errors": {"all": "skipped: time budget"}})
                    log(f"  {label} {dtype_name}: skipped (time budget)")
                    continue
                t = time.perf_counter()
                rec = guarded({}, f"{label} {dtype_name}", lambda label=label, m=m, n=n, k=k, d=dtype_name:
                              gemm_case(label, m, n, k, d, reps, budget))
                rec = rec or {"shape": label, "M": m, "N": n, "K": k, "dtype": dtype_name,
                              "errors": {"all": "failed"}}
                rows.append(rec)
                log(f"  {label} {dtype_name}: {time.perf_counter() - t:.1f}s  " + _gemm_brief(rec))
    return rows


def _gemm_brief(rec: dict[str, Any]) -> str:
    eager = rec.get("eager_s", {})
    dense = eager.get("dense")
    if not dense:
        return "(no dense time)"
    parts = [f"dense {dense * 1e6:.1f}us"]
    for key in ("W 2:4 cutlass", "W 2:4 cusparselt", "W 2:4+2:4 cutlass",
                "A 2:4 tasd cusparselt (select+compress+GEMM)"):
        if key in eager:
            parts.append(f"{key.split(' (')[0]} x{dense / eager[key]:.2f}")
    return ", ".join(parts)


def _encoder(config_overrides: dict[str, int], device: str) -> nn.Module:
    from transformers import BertConfig, BertModel

    config = BertConfig(**config_overrides)
    torch.manual_seed(0)
    with torch.device(device):
        model = BertModel(config, add_pooling_layer=False)
    return model.to(torch.float16).eval()


def section_e2e(reps: int, budget: Budget) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name, overrides in ENCODERS.items():
        if not budget.left():
            rows.append({"model": name, "errors": {"all": "skipped: time budget"}})
            continue
        holder: dict[str, Any] = {"model": name}
        guarded(holder, f"{name}", lambda name=name, o=overrides: e2e_encoder(name, o, reps, budget, rows))
        if "errors" in holder:
            rows.append(holder)
    return rows


def e2e_encoder(name: str, overrides: dict[str, int], reps: int, budget: Budget, rows: list[dict[str, Any]]) -> None:
    """Dense vs 2:4 (each backend) for one encoder at every batch size, a row per batch into ``rows``."""
    t = time.perf_counter()
    config = {"*": {"series": "dense"}, "encoder.*": {"series": "2:4", "mode": "W"}}
    holder: dict[str, Any] = {}
    dense = _encoder(overrides, DEVICE)
    tasd = apply_tasd(dense, config)  # a copy: `dense` stays dense
    sparse = {}
    for backend in ["cutlass"] + (["cusparselt"] if ss.cusparselt_available() else []):
        model = guarded(holder, f"{name} to_semi_structured {backend}",
                        lambda b=backend: ss.to_semi_structured(tasd, backend=b))
        if model is not None:
            sparse[backend] = model
    converted = sum(isinstance(m, ss.SemiStructuredLinear) for m in next(iter(sparse.values())).modules()) \
        if sparse else 0
    log(f"  {name}: built, {converted} Linear layers as 2:4 ({time.perf_counter() - t:.1f}s)")
    for batch in BATCHES:
        rec: dict[str, Any] = {"model": name, "batch": batch, "seq": SEQ, "converted_linears": converted,
                               "errors": dict(holder.get("errors", {}))}
        rows.append(rec)
        if not budget.left():
            rec["errors"]["all"] = "skipped: time budget"
            continue
        t = time.perf_counter()
        ids = torch.randint(0, dense.config.vocab_size, (batch, SEQ), device=DEVICE)
        with torch.no_grad():
            ref = guarded(rec, "tasd dense run", lambda ids=ids: tasd(input_ids=ids).last_hidden_state)
            measure(rec, "dense", lambda ids=ids: dense(input_ids=ids), reps, max_graph_calls=4)
            for backend, model in sparse.items():
                key = f"W 2:4 {backend}"
                y = guarded(rec, f"{key} run", lambda m=model, ids=ids: m(input_ids=ids).last_hidden_state)
                if y is None:
                    continue
                if ref is not None:
                    rec.setdefault("err", {})[key] = rel_err(y, ref)
                measure(rec, key, lambda m=model, ids=ids: m(input_ids=ids), reps, max_graph_calls=4)
        eager = rec.get("eager_s", {})
        brief = ", ".join(f"{k} x{eager['dense'] / v:.2f}" for k, v in eager.items()
                          if k != "dense" and eager.get("dense"))
        log(f"  {name} batch {batch}: {time.perf_counter() - t:.1f}s  {brief}")


# -- the CPU dry run (--quick) ----------------------------------------------------------------------


def quick_checks(shapes: list[tuple[str, int, int, int]]) -> list[dict[str, Any]]:
    """What runs without CUDA: the conversions' CPU parts (checks, tasder's CUTLASS buffers vs
    torch's CPU conversion, TASD's 2:4 mask vs tasder's TASD-A) on the paper's shapes."""
    from torch.sparse._semi_structured_conversions import sparse_semi_structured_from_dense_cutlass

    from tasder.tasd import approximate, pack

    rows = []
    for label, m, n, k in shapes:
        for dtype_name, dtype in DTYPES.items():
            rec: dict[str, Any] = {"shape": label, "M": m, "N": n, "K": k, "dtype": dtype_name}

            def run(m: int = m, n: int = n, k: int = k, dtype: torch.dtype = dtype, rec: dict = rec) -> None:
                tasd = _tasd_linear(m, k, dtype, "cpu", "2:4", "W")
                rec["check"] = ss.check_semi_structured(nn.Sequential(tasd))
                padded = ss._pad_rows(tasd.terms()[0].contiguous(), ss.shape_rule("cutlass", dtype).rows)
                values, meta = ss.cutlass_layout(pack(padded, "2:4", dim=1))
                ref_values, ref_meta = sparse_semi_structured_from_dense_cutlass(padded)
                rec["buffers_equal_torch"] = {"2:4": bool(torch.equal(meta, ref_meta) and torch.equal(
                    values.view(torch.int16), ref_values.view(torch.int16)))}
                x = torch.randn(n, k).to(dtype)
                kept = torch.where(ss.tasd_2to4_mask(x), x, torch.zeros((), dtype=dtype))
                rec["mask_equals_tasd_a"] = bool(torch.equal(kept, approximate(x, "2:4", -1)))

            guarded(rec, "cpu checks", run)
            rows.append(rec)
            log(f"  {label} {dtype_name}: buffers==torch {rec.get('buffers_equal_torch')}, "
                f"mask==TASD-A {rec.get('mask_equals_tasd_a')}")
    return rows


def quick_e2e() -> list[dict[str, Any]]:
    rows = []
    for name, overrides in ENCODERS.items():
        rec: dict[str, Any] = {"model": name}

        def run(overrides: dict[str, int] = overrides, rec: dict = rec) -> None:
            small = {**overrides, "num_hidden_layers": 1}  # one layer is enough for the checks
            tasd = apply_tasd(_encoder(small, "cpu"), {"*": {"series": "dense"}, "encoder.*": "2:4"})
            plan = ss.check_semi_structured(tasd)
            rec["converted_linears_per_layer"] = len(plan)
            try:
                ss.to_semi_structured(tasd)
            except RuntimeError as exc:  # the expected refusal on a machine without CUDA
                rec["to_semi_structured"] = short_error(exc)

        guarded(rec, "cpu e2e", run)
        rows.append(rec)
        log(f"  {name} (1 layer, CPU): {rec.get('converted_linears_per_layer')} Linear layers pass the checks; "
            f"to_semi_structured says: {rec.get('to_semi_structured', '(converted)')[:90]}")
    return rows


# -- report -----------------------------------------------------------------------------------------

W_COLUMNS = ["W 2:4 cutlass", "W 2:4 cusparselt", "W 2:4+2:4 cutlass", "W 2:4+2:4 cusparselt"]
A_COLUMNS = ["A 2:4 tasd cusparselt (select+compress+GEMM)", "A 2:4 GEMM only (pre-compressed)",
             "A 2:4 tile cusparselt (prune+compress+GEMM)", "A 2:4 tile cutlass (prune+compress+GEMM)"]


def _speed(rec: dict[str, Any], key: str, kind: str) -> str:
    times = rec.get(f"{kind}_s", {})
    if "dense" not in times or key not in times:
        return "-"
    return f"{times['dense'] / times[key]:.2f}x"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _gemm_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per shape and dtype, in SHAPES order (shapes without a measured record still show
    the model column)."""
    found = {(r.get("shape"), r.get("dtype")): r for r in result["gemm"]}
    return [found.get((label, d), {"shape": label, "dtype": d}) for label, *_ in SHAPES for d in DTYPES]


def tables(result: dict[str, Any]) -> str:
    """The markdown tables (also printed)."""
    env = result["env"]
    lines = [f"GPU: {env.get('gpu', 'none')} (capability {env.get('capability', '-')}), driver "
             f"{env.get('driver', '-')}, torch {env['torch']}, CUDA {env['cuda']}, cuSPARSELt "
             f"{env.get('cusparselt', '-')}, transformers {env.get('transformers', '-')}", ""]
    model = result["model"]
    lines += ["TASD-W: speed-up over dense (eager | CUDA graph); model = tasder.hw STC/TC cycles ratio", "",
              "| GEMM | dtype | dense µs (eager/graph) | " + " | ".join(W_COLUMNS) + " | model 2:4 | model 2:4+2:4 "
              "| err 2:4 | CUTLASS buffers == torch |",
              "|" + "---|" * (len(W_COLUMNS) + 7)]
    for rec in _gemm_rows(result):
        dense_e = rec.get("eager_s", {}).get("dense")
        dense_g = rec.get("graph_s", {}).get("dense")
        dense = (f"{dense_e * 1e6:.1f} / {dense_g * 1e6:.1f}" if dense_e and dense_g else
                 f"{dense_e * 1e6:.1f} / -" if dense_e else "-")
        cells = [f"{_speed(rec, c, 'eager')} \\| {_speed(rec, c, 'graph')}" for c in W_COLUMNS]
        ms = model.get(rec["shape"], {})
        err = rec.get("err", {}).get("W 2:4 cutlass")
        buffers = ", ".join(f"{series}: {'yes' if ok else 'NO' if ok is not None else '-'}"
                            for series, ok in rec.get("buffers_equal_torch", {}).items()) or "-"
        lines.append(f"| {rec['shape']} | {rec['dtype']} | {dense} | " + " | ".join(cells) +
                     f" | {_x(ms.get('W 2:4'))} | {_x(ms.get('W 2:4+2:4'))} | "
                     f"{'-' if err is None else f'{err:.1e}'} | {buffers} |")
    lines += ["", "TASD-A 2:4 at run time: speed-up over dense (eager | CUDA graph); "
              "tile = torch's 4x4-tile pruning (not TASD's selection)", "",
              "| GEMM | dtype | " + " | ".join(A_COLUMNS) + " | model (GEMM only) | err tasd | tile vs TASD: "
              "elements differing, |x| kept tile/TASD |",
              "|" + "---|" * (len(A_COLUMNS) + 5)]
    for rec in _gemm_rows(result):
        cells = [f"{_speed(rec, c, 'eager')} \\| {_speed(rec, c, 'graph')}" for c in A_COLUMNS]
        ms = model.get(rec["shape"], {})
        err = rec.get("err", {}).get("A 2:4 tasd cusparselt")
        tv = rec.get("tile_vs_tasd")
        tile = (f"{tv['elements_differing']:.1%}, {tv['tile_abs_kept']:.3f}/{tv['tasd_abs_kept']:.3f}" if tv else "-")
        lines.append(f"| {rec['shape']} | {rec['dtype']} | " + " | ".join(cells) +
                     f" | {_x(ms.get('A 2:4'))} | {'-' if err is None else f'{err:.1e}'} | {tile} |")
    lines += ["", f"End to end, float16, seq {SEQ}, every encoder Linear TASD-W 2:4 (random weights; the MiniLM "
              "row is MiniLM-L6's shape, not its pretrained weights): speed-up over dense (eager | CUDA graph)", "",
              "| model | batch | dense ms (eager/graph) | 2:4 CUTLASS | 2:4 cuSPARSELt | err CUTLASS "
              "| err cuSPARSELt |",
              "|---|---|---|---|---|---|---|"]
    for rec in result["e2e"]:
        if "batch" not in rec:
            continue
        dense_e = rec.get("eager_s", {}).get("dense")
        dense_g = rec.get("graph_s", {}).get("dense")
        dense = (f"{dense_e * 1e3:.2f} / {dense_g * 1e3:.2f}" if dense_e and dense_g else
                 f"{dense_e * 1e3:.2f} / -" if dense_e else "-")
        cells = [f"{_speed(rec, f'W 2:4 {b}', 'eager')} \\| {_speed(rec, f'W 2:4 {b}', 'graph')}"
                 for b in ("cutlass", "cusparselt")]
        errs = [rec.get("err", {}).get(f"W 2:4 {b}") for b in ("cutlass", "cusparselt")]
        lines.append(f"| {rec['model']} | {rec['batch']} | {dense} | " + " | ".join(cells) + " | " +
                     " | ".join("-" if e is None else f"{e:.1e}" for e in errs) + " |")
    lines += ["", "Method: CUDA events around batches of back-to-back calls (>= 1 ms per batch) after warm-up, "
              "median of the batches per call; graph = the same calls replayed from one CUDA graph; L2 not flushed. "
              "err = max |sparse - dense TASD| / max |dense TASD| (same weights, same dtype)."]
    return "\n".join(lines)


OVERHEAD_SHAPES = [SHAPES[3], SHAPES[6]]  # BERT M768-N128-K768 and 4096^3


def section_overhead(reps: int, budget: Budget) -> list[dict[str, Any]]:
    """Where the eager time of the cuSPARSELt path goes, fp16: torch's subclass dispatch
    (``F.linear`` on a ``SparseSemiStructuredTensorCUSPARSELT``) vs the op it ends in,
    ``torch._cslt_sparse_mm``, called directly, with the default algorithm and with the one
    ``torch._cslt_sparse_mm_search`` picks for the shape."""
    out = []
    for label, m, n, k in OVERHEAD_SHAPES:
        if not budget.left():
            break
        rec: dict[str, Any] = {"shape": label, "dtype": "fp16"}
        torch.manual_seed(0)
        w = torch.randn(m, k, device=DEVICE, dtype=torch.float16)
        x = torch.randn(n, k, device=DEVICE, dtype=torch.float16)
        term = ss.tasd_2to4_mask(w).to(w.dtype) * w
        ref = F.linear(x, term)
        sparse = guarded(rec, "build", lambda term=term: torch.sparse.SparseSemiStructuredTensorCUSPARSELT
                         .from_dense(term))
        if sparse is None:
            out.append(rec)
            continue
        packed, xt = sparse.packed, x.t()

        def direct(alg: int = 0, packed=packed, xt=xt) -> torch.Tensor:
            return torch._cslt_sparse_mm(packed, xt, transpose_result=True, alg_id=alg)

        with torch.no_grad():
            measure(rec, "dense", lambda x=x, w=w: F.linear(x, w), reps)
            measure(rec, "subclass F.linear", lambda x=x, sparse=sparse: F.linear(x, sparse), reps)
            y = guarded(rec, "direct run", direct)
            if y is not None:
                rec["err_direct"] = rel_err(y, ref)
                measure(rec, "direct _cslt_sparse_mm", direct, reps)
            found = guarded(rec, "alg search", lambda packed=packed, xt=xt: torch._cslt_sparse_mm_search(packed, xt))
            alg = found[0] if isinstance(found, (tuple, list)) else found
            if isinstance(alg, int):
                rec["alg_id"] = alg
                if guarded(rec, "searched run", lambda direct=direct, alg=alg: direct(alg)) is not None:
                    measure(rec, "direct, searched alg", lambda direct=direct, alg=alg: direct(alg), reps)
        log(f"  {label}: " + ", ".join(f"{key} {v * 1e6:.1f}us" for key, v in rec.get("eager_s", {}).items())
            + f" (alg {rec.get('alg_id')}, err {rec.get('err_direct')})")
        out.append(rec)
    return out


def overhead_table(rows: list[dict[str, Any]]) -> str:
    keys = ["dense", "subclass F.linear", "direct _cslt_sparse_mm", "direct, searched alg"]
    lines = ["Where the eager time goes (cuSPARSELt, fp16, µs per call, eager | CUDA graph)", "",
             "| GEMM | " + " | ".join(keys) + " | searched alg |", "|---|" + "---|" * (len(keys) + 1)]
    for rec in rows:
        cells = []
        for key in keys:
            e, g = rec.get("eager_s", {}).get(key), rec.get("graph_s", {}).get(key)
            cells.append(f"{e * 1e6:.1f} \\| {g * 1e6:.1f}" if e and g else f"{e * 1e6:.1f} \\| -" if e else "-")
        lines.append(f"| {rec['shape']} | " + " | ".join(cells) + f" | {rec.get('alg_id', '-')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".", help="directory for bench_gpu.json and bench_gpu.md")
    parser.add_argument("--quick", action="store_true", help="CPU dry run of everything that needs no CUDA")
    parser.add_argument("--reps", type=int, default=15, help="timed batches per measurement (median)")
    parser.add_argument("--budget-s", type=float, default=300.0,
                        help="stop starting new cases after this many seconds (default 300)")
    parser.add_argument("--mapper-budget", type=int, default=2000, help="mappings the model tries per GEMM")
    parser.add_argument("--sections", default="env,model,gemm,e2e,overhead",
                        help="comma-separated subset of env,model,gemm,e2e,overhead (graph timings follow them)")
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    budget = Budget(args.budget_s)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"argv": sys.argv[1:], "quick": args.quick, "env": {}, "model": {}, "gemm": [],
                              "e2e": [], "sections_s": {}}
    log(f"imports: {elapsed():.1f}s")

    def run_section(name: str, fn: Callable[[], Any]) -> Any:
        if name not in sections:
            return None
        log(f"== {name} ==")
        t = time.perf_counter()
        value = guarded(result, f"section {name}", fn)
        result["sections_s"][name] = round(time.perf_counter() - t, 2)
        log(f"== {name}: {time.perf_counter() - t:.1f}s (total {elapsed():.1f}s) ==")
        return value

    def write() -> None:  # after every section, so a run cut short still leaves its numbers
        result["total_s"] = round(elapsed(), 2)
        (out / "bench_gpu.json").write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")
        text = tables(result)
        if result.get("overhead"):
            text += "\n\n" + overhead_table(result["overhead"])
        (out / "bench_gpu.md").write_text(text + "\n", encoding="utf-8")

    result["env"] = run_section("env", lambda: section_env(args.quick)) or {"torch": torch.__version__,
                                                                          "cuda": torch.version.cuda}
    result["model"] = run_section("model", lambda: section_model(SHAPES, args.mapper_budget)) or {}
    write()
    cuda_ok = torch.cuda.is_available() and torch.cuda.get_device_capability(0) >= ss.MIN_CAPABILITY
    if args.quick or not cuda_ok:
        if not args.quick:
            log("no CUDA GPU with compute capability >= 8.0: running the CPU dry run instead")
        result["gemm"] = run_section("gemm", lambda: quick_checks(SHAPES[:PAPER_SHAPES])) or []
        write()
        result["e2e"] = run_section("e2e", quick_e2e) or []
    else:
        result["gemm"] = run_section("gemm", lambda: section_gemm(SHAPES, args.reps, budget)) or []
        write()
        result["e2e"] = run_section("e2e", lambda: section_e2e(args.reps, budget)) or []
        write()
        result["overhead"] = run_section("overhead", lambda: section_overhead(args.reps, budget)) or []
        write()
        sections.add("graph")
        run_section("graph", lambda: run_graph_jobs(args.reps, budget))
    write()
    log("")
    log(tables(result))
    if result.get("overhead"):
        log("\n" + overhead_table(result["overhead"]))
    log(f"\nwrote {out / 'bench_gpu.json'} and {out / 'bench_gpu.md'}; total {elapsed():.1f}s")


if __name__ == "__main__":
    main()
