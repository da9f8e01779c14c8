"""The end-to-end job behind ``tasder demo``: search, re-score, model the hardware, write a report.

One flow, every step a public API call (the CLI is a thin layer over :func:`run_demo`):

1. load the zoo models (trained and cached on first use, fully offline);
2. run TASDER (``cost-aware``) with the modelled EDP on ``ttc-vegeta-m8`` as the cost, at the
   99 % constraint on the validation split — TASD-W on a sparse model, TASD-A on a dense one;
3. re-score the chosen configs on the test split the search never saw;
4. evaluate TC, STC, DSTC, HighLight and TTC-VEGETA-M8 on the resulting workloads — every design
   sees the operands as they are (measured densities), the TTC also runs the TASD config;
5. hand the collected document to :func:`tasder.report.write_report` (HTML, markdown, JSON,
   plots) and write each config as YAML next to it.

Why a document (plain dict) between the pipeline and the renderer: the report, ``results.json``
and the tests all read the same numbers, and the renderer can be tested without running models.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tasder._threads import single_thread

__all__ = ["DEMO_DESIGNS", "DEMO_FLOWS", "DEMO_TARGET", "DemoCase", "run_demo"]

#: The designs compared (docs/design.md §4), TC first: everything is normalised to it.
DEMO_DESIGNS: tuple[str, ...] = ("tc", "stc", "dstc", "highlight", "ttc-vegeta-m8")
#: The hardware target the search picks series for, and the design its EDP is modelled on.
DEMO_TARGET = "ttc-vegeta-m8"

#: Display names for the designs' rows and plots.
_LABELS = {"tc": "TC", "stc": "STC", "dstc": "DSTC", "highlight": "HighLight", "ttc-vegeta-m8": "TTC-VEGETA-M8"}


@dataclass(frozen=True)
class DemoCase:
    """One model of the demo: which zoo entry, which TASD mode, and our search options (a permuted
    reduction dim, bias correction and, for TASD-W, activation-aware weight scores: see
    :class:`tasder.nn.LayerSpec`)."""

    model_id: str
    mode: Literal["W", "A"]
    permute: bool = True
    bias_correction: bool = True
    #: TASD-W ranks the weights a series keeps by |W_ij|·‖X_j‖₂ on the calibration data: a weight
    #: on an input that is small (or dead) on real data matters less than its magnitude says. On the
    #: 95 %-sparse CNN it lowers conv2's measured 1:8 output error from 0.208 to 0.164. TASD-A has no
    #: weight choice.
    score: Literal["magnitude", "activation"] = "magnitude"
    #: TASD-W refits the kept weights to the calibration activations (an OBS column sweep, as
    #: SparseGPT does for 2:4). Together with activation scores it is what lets `1:8` on conv2 pass
    #: the 90 % bound on the sparse CNN (README, "Search quality").
    reconstruct: bool = False
    #: Run on one torch thread: a digits batch is too small for threads to pay (on a busy 2-core
    #: machine two threads made the calibration passes several times slower).
    one_thread: bool = True

    @property
    def options(self) -> list[str]:
        return [o for o in ("permute", "bias_correction") if getattr(self, o)] + \
            (["activation_score"] if self.score == "activation" else []) + \
            (["reconstruct"] if self.reconstruct else [])


#: ``tasder demo --model NAME`` → the cases it runs.
DEMO_FLOWS: dict[str, tuple[DemoCase, ...]] = {
    "digits": (DemoCase("digits-cnn-sparse-95", "W", score="activation", reconstruct=True),
               DemoCase("digits-cnn", "A")),
    # No permutation on MiniLM: choosing one per (layer, series) over 1,536 channels takes minutes and
    # cuts the dropped magnitude of its GELU inputs by only 1–2 points (20.8 → 19.3 % at 4:8).
    "minilm": (DemoCase("minilm", "A", permute=False, one_thread=False),),
}


@dataclass(frozen=True)
class _Settings:
    mapper_budget: int
    max_evals: int | None
    constraint: float
    seed: int


def _settings(quick: bool, seed: int) -> _Settings:
    # --quick: a capped search and a smaller mapper budget, so the test suite can run the whole
    # flow in under a minute; the numbers are then a smoke test, and the report says so.
    from tasder.search.cost import DEFAULT_MAPPER_BUDGET

    return _Settings(mapper_budget=400 if quick else DEFAULT_MAPPER_BUDGET, max_evals=6 if quick else None,
                     constraint=0.99, seed=seed)


def _energy_by_level_action(result: Any) -> dict[str, dict[str, float]]:
    """pJ by storage level then action (``read``/``write``/``update``/``leakage``), plus the MAC array."""
    out: dict[str, dict[str, float]] = {}
    for layer in result.layers:
        rep = layer.best.problem.repeat
        for level, row in layer.best.energy_breakdown().items():
            acc = out.setdefault(level, {})
            for key, pj in row.items():
                action = key.split(".", 1)[1] if "." in key else key
                acc[action] = acc.get(action, 0.0) + pj * rep
    return out


def _compare_designs(hc: Any, config: Mapping[str, Any], designs: Sequence[str], settings: _Settings
                     ) -> list[dict[str, Any]]:
    """Every design on the original workload; the TASD-capable target also on the chosen config."""
    from tasder.search.cost import HardwareCost

    rows: list[dict[str, Any]] = []
    for design in dict.fromkeys(["tc", *designs]):
        model = HardwareCost(design, hc.problems, hc.mode, metric="edp", budget=settings.mapper_budget,
                             seed=settings.seed, cache_dir=hc.cache_dir)
        workloads = [("original", {})]
        if design == DEMO_TARGET:
            workloads.append(("TASD config", config))
        for workload, cfg in workloads:
            r = model.evaluate(cfg)
            rows.append({"design": design, "label": _LABELS.get(design, design), "workload": workload,
                         "cycles": r.cycles, "energy_pj": r.energy_pj, "edp_js": r.edp,
                         "seconds": r.cycles / model.arch.clock_hz,
                         "energy_breakdown_pj": _energy_by_level_action(r)})
    base = rows[0]
    for row in rows:
        row["cycles_norm"] = row["cycles"] / base["cycles"]
        row["energy_norm"] = row["energy_pj"] / base["energy_pj"]
        row["edp_norm"] = row["edp_js"] / base["edp_js"]
    return rows


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _run_case(case: DemoCase, settings: _Settings, out_dir: Path, progress: bool,
              log: Callable[[str], None]) -> dict[str, Any]:
    from tasder.nn.accounting import count_macs
    from tasder.nn.profile import profile_model
    from tasder.search import candidate_series, search
    from tasder.search.cost import HardwareCost
    from tasder.search.methods import constraint_text, default_layers
    from tasder.zoo import load

    t0 = time.perf_counter()
    log(f"{case.model_id}: loading (trained and cached on first use)")
    entry = load(case.model_id, progress=progress)
    evaluate_val = entry.metadata.get("evaluate_val")
    if evaluate_val is None:
        raise ValueError(f"zoo model {case.model_id!r} has no validation evaluator (metadata['evaluate_val'])")
    calibration = list(entry.calibration)
    log(f"{case.model_id}: tracing the model for {DEMO_TARGET} (modelled EDP is the search's cost)")
    # Mapper searches are kept on disk (content-keyed): a second demo reads them back, bit for bit.
    hc = HardwareCost.for_model(entry.model, calibration[0], DEMO_TARGET, case.mode, metric="edp",
                                budget=settings.mapper_budget, seed=settings.seed, cache_dir=True)
    extra = "".join(f" + {o.replace('_', ' ')}" for o in case.options)
    log(f"{case.model_id}: TASDER cost-aware{extra} search, TASD-{case.mode}, constraint {settings.constraint}")
    result = search(entry.model, DEMO_TARGET, evaluate_val, calibration, case.mode, settings.constraint, "cost-aware",
                    holdout_evaluate=entry.evaluate, cost=hc, seed=settings.seed, max_evals=settings.max_evals,
                    layers=default_layers(case.model_id, case.mode), model_id=case.model_id, progress=progress,
                    permute=case.permute, bias_correction=case.bias_correction, score=case.score,
                    reconstruct=case.reconstruct, stages=entry.metadata.get("stages"))
    config_name = f"{case.model_id}.tasd.yaml"
    result.config_with_provenance().save(out_dir / config_name)

    log(f"{case.model_id}: profiling layers and comparing designs")
    series = [s for s in (str(c) for c in candidate_series(DEMO_TARGET)) if s != "dense"]
    # The sparsities every searched layer needs, then what each series drops on the one layer the
    # error curve shows (decomposing every layer's activations for every series was the demo's
    # single largest cost, and only one layer's numbers were used).
    prof = profile_model(entry.model, calibration, candidates=[], layers=[r.name for r in result.layers])
    curve_layer = _curve_layer(prof, [r.name for r in result.layers], series)
    curve_prof = (profile_model(entry.model, calibration, candidates=series, layers=[curve_layer])
                  if curve_layer is not None else None)
    # MACs per inference: the calibration batch's count divided by its size (the search counted on it).
    per = result.samples
    layer_rows = []
    for row in result.layers:
        p = prof[row.name]
        density = 1.0 if row.series == "dense" else _series_density(row.series)
        layer_rows.append({"name": row.name, "kind": row.kind, "k": row.k_text, "dense_macs": row.dense_macs / per,
                           "series": row.series, "density": density, "executed": row.fraction,
                           "weight_sparsity": p.weight_sparsity, "activation_sparsity": p.activation_sparsity_mean,
                           "damage": _finite(row.damage)})
    designs = _compare_designs(hc, result.config.layers, DEMO_DESIGNS, settings)

    dense_total = count_macs(entry.model, calibration[0]).dense_per_inference
    saved = sum(r.dense_macs * (1.0 - r.fraction) for r in result.layers) / per
    chosen = result.chosen.index
    curve = _error_curve(curve_prof, [curve_layer], case.mode) if curve_prof is not None and curve_layer else None
    if curve is not None and case.permute:
        curve["permuted_points"] = _permuted_points(entry.model, curve["layer"], case.mode, calibration,
                                                    [p["series"] for p in curve["points"]], case.score)
    val_name = str(entry.metadata.get("val_metric", "validation metric"))
    return {
        "model": case.model_id, "description": entry.description, "mode": case.mode, "target": DEMO_TARGET,
        "method": result.method, "options": case.options, "cost": "edp", "design": DEMO_TARGET,
        "constraint": constraint_text(settings.constraint),
        "metric_name": entry.metric.replace("test ", ""), "validation_metric_name": val_name,
        "scores": {"validation": {"original": result.metric_original, "transformed": result.metric_final},
                   "test": {"original": result.holdout_original, "transformed": result.holdout_final}},
        "macs": {"dense": dense_total, "transformed": dense_total - saved, "unit": "MACs per inference"},
        "holdout": {"threshold": result.holdout_threshold, "meets_constraint": result.holdout_meets_constraint},
        "search": {"evaluations": result.evaluations, "cache_hits": result.cache_hits,
                   "seconds": result.seconds, "interrupted": result.interrupted,
                   "history": [p.as_dict() for p in result.history], "pareto": [p.index for p in result.pareto],
                   "chosen": chosen, "cost_unit": hc.unit, "cost_baseline": result.cost_before,
                   # The report's one EDP normalisation: TC running the original model (designs[0]).
                   "cost_reference": designs[0]["edp_js"], "cost_reference_label": "TC running the original model",
                   "failures": list(result.failures),
                   **({} if result.confidence is None else {"acceptance": {
                       "confidence": result.confidence, "bound_kind": result.bound_kind,
                       "bound": _finite(result.bound_final), "examples": result.examples}})},
        "layers": layer_rows,
        "designs": designs,
        "error_curve": curve,
        "config_file": config_name,
        "seconds": time.perf_counter() - t0,
    }


def _series_density(text: str) -> float:
    from tasder.sparsity import parse_series

    return float(parse_series(text).effective_density)


def _curve_layer(prof: Any, searched: Sequence[str], series: Sequence[str]) -> str | None:
    """The searched layer the error curve shows: the one with the most MACs where some series applies
    (its reduction dim holds at least one block), as :func:`_error_curve` picks among profiled ones."""
    from tasder.sparsity import parse_series
    from tasder.sparsity.patterns import StructuredPattern

    smallest = min((max((t.block_size for t in parse_series(s).terms if isinstance(t, StructuredPattern)),
                        default=1) for s in series), default=1)
    layers = [prof[n] for n in searched if prof[n].k >= smallest]
    return max(layers, key=lambda p: p.macs).name if layers else None


def _error_curve(prof: Any, searched: Sequence[str], mode: str) -> dict[str, Any] | None:
    """TASD's trade-off on the searched layer with the most MACs: dropped nonzeros vs density."""
    layers = [prof[n] for n in searched]
    layers = [p for p in layers if any(c.applicable for c in p.candidates)]
    if not layers:
        return None
    layer = max(layers, key=lambda p: p.macs)
    tensor = "weight" if mode == "W" else "activation"
    points = []
    for c in layer.candidates:
        sums = c.weight if mode == "W" else c.activation
        if sums is None:
            continue
        points.append({"series": c.series, "effective_density": _series_density(c.series),
                       "dropped_nonzeros": sums.dropped_nonzeros_pct / 100.0,
                       "dropped_magnitude": sums.dropped_magnitude_pct / 100.0,
                       "rel_error": _finite(sums.relative_error)})
    points.sort(key=lambda p: p["effective_density"])
    return {"layer": layer.name, "tensor": tensor, "points": points}


def _permuted_points(model: Any, name: str, mode: str, calibration: Sequence[Any], series: Sequence[str],
                     score: str = "magnitude") -> list[dict[str, Any]]:
    """The error curve's points in the layout the search's ``permute`` option used: the weight's
    flattened K permuted from the weight (W); the input channels permuted by the same calibration
    the search ran (A, one pass for every series), measured on every calibration input. A TASD-W
    ``score`` other than magnitude selects as the search did (calibrated on the same data), and the
    points are what the calibrated layer's weight drops."""
    import torch

    from tasder._batch import call_with_batch
    from tasder.nn import LayerSpec
    from tasder.nn.calibration import calibrate_probes
    from tasder.nn.layers import make_tasd_layer
    from tasder.tasd import decompose
    from tasder.tasd.metrics import tensor_sums

    module = model.get_submodule(name)
    probes = {}
    for text in series:
        try:
            w_opts = {"score": score} if mode == "W" else {}
            probes[text] = make_tasd_layer(module, LayerSpec(text, mode, permute=True, **w_opts))  # type: ignore[arg-type]
        except ValueError:
            continue  # a series a permutation does not apply to (mixed block sizes)
    inputs: list[torch.Tensor] = []
    scored = mode == "W" and score != "magnitude"
    if (mode == "A" or scored) and probes:
        calibrate_probes(model, {name: list(probes.values())}, calibration)
        handle = module.register_forward_hook(lambda m, a, o: inputs.append(a[0].detach()))
        try:
            with torch.no_grad():
                for batch in calibration:
                    call_with_batch(model, batch)
        finally:
            handle.remove()
    dim = -3 if isinstance(module, torch.nn.Conv2d) else -1  # the input channels TASD-A groups along
    points = []
    for text, probe in probes.items():
        if scored:  # the calibrated layer's own selection: what it drops from W is the residual
            w = module.weight.detach()
            nonzeros, magnitude, square = tensor_sums(w)
            dropped, dropped_mag, dropped_sq = tensor_sums(w - probe.weight.detach())
            points.append({"series": text, "effective_density": _series_density(text),
                           "dropped_nonzeros": dropped / nonzeros if nonzeros else 0.0,
                           "dropped_magnitude": dropped_mag / magnitude if magnitude else 0.0,
                           "rel_error": _finite(math.sqrt(dropped_sq / square) if square else 0.0)})
            continue
        if mode == "W":
            view, gdim = probe.grouped_view(module.weight.detach())
        else:
            perm = probe.permutation
            assert perm is not None
            view = torch.cat([x.index_select(dim, perm).movedim(dim, -1).reshape(-1, x.shape[dim]) for x in inputs])
            gdim = 1
        m = decompose(view, text, gdim).metrics
        points.append({"series": text, "effective_density": _series_density(text),
                       "dropped_nonzeros": m.dropped_nonzeros_pct / 100.0,
                       "dropped_magnitude": m.dropped_magnitude_pct / 100.0, "rel_error": _finite(m.relative_error)})
    return points


def _machine() -> str:
    import torch

    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} torch threads")


def run_demo(model: str = "digits", *, out_dir: str | os.PathLike[str] = "tasder-report", quick: bool = False,
             seed: int = 0, progress: bool = True, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the demo flow for ``model`` (a key of :data:`DEMO_FLOWS`) and write the report to ``out_dir``.

    Returns the report document (also written as ``results.json``) with the written paths under
    ``"paths"``. ``quick`` caps the search at a few evaluations and shrinks the mapper budget.
    """
    from tasder.io import staged_folder

    if model not in DEMO_FLOWS:
        raise ValueError(f"--model {model!r}: expected one of {', '.join(DEMO_FLOWS)}")
    out = Path(out_dir)
    # Everything goes to a hidden folder next to `out` and moves into place at the end: a run that
    # fails, fills the disk or is interrupted leaves `out` (and any earlier report in it) as it was.
    from tasder.tasd.permutation import permutation_store
    from tasder.zoo.cache import cache_dir

    # Permutations and mapper searches are kept on disk, content-keyed: a second demo reads them back.
    with staged_folder(out) as stage, permutation_store(cache_dir() / "permutations"):
        doc, written = _run_flow(model, stage, quick, seed, progress, log)
    doc["paths"] = {k: (str(out / Path(v).relative_to(stage)) if not isinstance(v, list)
                        else [str(out / Path(x).relative_to(stage)) for x in v])
                    for k, v in written.items()}
    return doc


def _run_flow(model: str, out: Path, quick: bool, seed: int, progress: bool,
              log: Callable[[str], None] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The demo's work, writing into ``out``; returns the document and :func:`write_report`'s paths."""
    from tasder import __version__
    from tasder.report import write_report
    from tasder.report.figures import BackgroundFigures, figure_stems

    say = log or (lambda _msg: None)
    settings = _settings(quick, seed)
    t0 = time.perf_counter()
    models: list[dict[str, Any]] = []
    # Each model's plots are drawn in worker processes as soon as it is done, while the next one runs.
    drawer = BackgroundFigures(workers=min(2, os.cpu_count() or 1))
    try:
        for case in DEMO_FLOWS[model]:
            with single_thread() if case.one_thread else contextlib.nullcontext():
                models.append(_run_case(case, settings, out, progress, say))
            drawer.submit(models[-1], len(models) - 1, figure_stems([m["model"] for m in models])[-1])
    except BaseException:
        drawer.close()
        raise
    doc: dict[str, Any] = {
        "title": "tasder demo report",
        "tasder_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": _machine(),
        "command": "tasder demo" + (f" --model {model}" if model != "digits" else "") + (" --quick" if quick else ""),
        "quick": quick,
        "settings": {"mapper_budget": settings.mapper_budget, "max_evals": settings.max_evals,
                     "constraint": settings.constraint, "seed": settings.seed, "target": DEMO_TARGET,
                     "designs": list(DEMO_DESIGNS)},
        "modelled_vs_measured": {
            "measured": [
                "accuracy / recall on the validation split (what the search decides on) and the test split "
                "(scored once, after the search), by running the transformed PyTorch model on this CPU",
                "weight and activation sparsity, TASD dropped nonzeros and errors, on the calibration batches",
                "effective MACs: dense MACs of each layer × the fraction its series executes (TASD-A: the "
                "measured kept fraction)",
                "wall-clock times on this machine",
            ],
            "modelled": [
                "cycles, energy (pJ) and EDP (J·s) of every design: tasder.hw's analytical model (dataflow → "
                "sparse acceleration features → micro-architecture), each layer at its best mapping found by "
                "the mapper, one inference (batch 1), operands at their measured densities",
                "energy per action from the shipped energy table (45 nm-class numbers, see docs/hw_spec.md)",
            ],
        },
        "models": models,
    }
    doc["seconds"] = time.perf_counter() - t0
    say("writing the report")
    return doc, write_report(doc, out, drawer.result())




if __name__ == "__main__":  # pragma: no cover - `python -m tasder.demo` is a convenience
    run_demo(*sys.argv[1:2])
