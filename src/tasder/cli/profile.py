"""``tasder profile`` and ``tasder apply``: a zoo model's per-layer sparsity, and a TASD config's effect.

::

    tasder profile MODEL [--series 2:8,4:8+1:8 ...] [--batches N] [--json] [-o FILE]
    tasder apply MODEL --config config.yaml [--json] [-o FILE]

Both are thin layers over :func:`tasder.nn.profile.profile_model`, :func:`tasder.nn.apply_tasd`
and :func:`tasder.nn.count_macs`; MODEL is a name from :func:`tasder.zoo.list_models`. The
imports of :mod:`tasder.nn` and the zoo loader happen inside the commands so that ``tasder --help``
and the other commands stay fast and work even where those modules are unavailable.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from tasder.cli.common import (
    DEFAULT_MAPPER_BUDGET,
    JsonOption,
    ModelArgument,
    OutputOption,
    SeedOption,
    emit,
    format_count,
    load_zoo_model,
    progress_bar,
    table,
    user_caches,
    with_examples,
    wrap_dotted,
)
from tasder.targets import DEFAULT_TARGET

if TYPE_CHECKING:
    from tasder.nn.profile import ModelProfile
    from tasder.sparsity.patterns import Series

__all__ = ["apply_cmd", "parse_candidates", "profile_cmd", "register", "render_profile"]


# ---------------------------------------------------------------------------------------------
# Helpers (pure; tested directly)
# ---------------------------------------------------------------------------------------------


def parse_candidates(values: list[str] | None) -> list[Series] | None:
    """``["2:8,4:8+1:8", "1:8"]`` (``--series`` values) → the parsed series, duplicates (by canonical
    form) dropped.

    None (the option not given) stays None: the API's default candidates apply.
    """
    if not values:
        return None
    from tasder.sparsity.notation import parse_series

    parsed: dict[str, Series] = {}
    for value in values:
        for spec in value.split(","):
            if not spec.strip():
                raise ValueError(f"empty series in --series {value!r}; separate series with commas")
            s = parse_series(spec.strip())
            parsed.setdefault(str(s), s)
    return list(parsed.values())


def _pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{100.0 * value:.{digits}f}%"


# ---------------------------------------------------------------------------------------------
# tasder profile
# ---------------------------------------------------------------------------------------------


def render_profile(console: Console, name: str, description: str, p: ModelProfile) -> None:
    """Two tables: per-layer statistics, then dropped nonzeros % (weights / activations) per
    candidate — one wide table would not fit ~120 columns with six candidates."""
    console.print(f"{name}: {description}", markup=False)
    console.print(
        f"{len(p)} layers profiled on {p.batches} calibration batch(es) ({p.samples:,} samples); "
        f"{format_count(p.macs_per_inference)} dense MACs per inference", markup=False)
    console.print()

    console.print("Layer statistics", markup=False, style="bold")
    stats = table()
    headers = ["weight", "K", "MACs per\ninference", "weight\nsparsity", "act. sp.\nmean", "act. sp.\np99",
               "pseudo-\ndensity"]
    rows = []
    for layer in p:
        rows.append([
            "×".join(map(str, layer.weight_shape)), layer.k_text, format_count(p.layer_macs_per_inference(layer)),
            _pct(layer.weight_sparsity),
            _pct(layer.activation_sparsity_mean), _pct(layer.activation_sparsity_p99), _pct(layer.pseudo_density),
        ])
    fixed = [max(len(h.split("\n")[-1]) if "\n" in h else len(h), *(len(r[i]) for r in rows))
             for i, h in enumerate(headers)]
    name_width = max(16, console.width - sum(fixed) - 2 * (len(fixed) + 1))
    stats.add_column("layer", overflow="fold", max_width=name_width)
    stats.add_column("type", no_wrap=True)
    for i, h in enumerate(headers):
        stats.add_column(h, justify="left" if i == 0 else "right", no_wrap=True)
    for layer, cells in zip(p, rows, strict=True):
        stats.add_row(wrap_dotted(layer.name, name_width), layer.module_type, *cells)
    console.print(stats)
    for note in (
        "K: the GEMM reduction length (Linear: in_features; Conv2d: C·R·S, groups along C at each kernel position)",
        "act. sp.: fraction of zero inputs per calibration sample, mean and 99th percentile over samples",
        "pseudo-density: share of a sample's inputs holding 99% of its Σ|x|, mean over samples (§3.4)",
    ):
        console.print(note, markup=False)
    console.print()
    if not p.candidates:
        return

    console.print("Dropped nonzeros % per candidate series: weights/activations", markup=False, style="bold")
    drops = table()
    cell_width = len("100.0/100.0")
    name_width = max(16, console.width - (cell_width + 1) * len(p.candidates) - 1)
    drops.add_column("layer", overflow="fold", max_width=name_width)
    for s in p.candidates:
        drops.add_column(s, justify="right", no_wrap=True)
    reasons: dict[tuple[str, str], list[str]] = {}  # (layer, reason) -> the series it holds for
    for layer in p:
        cells = []
        for c in layer.candidates:
            if not c.applicable:
                cells.append("n/a")
                reasons.setdefault((layer.name, c.reason or ""), []).append(c.series)
                continue
            w, a = c.weight_dropped_nonzeros_pct, c.activation_dropped_nonzeros_pct
            cells.append(f"{w:.1f}/{'-' if a is None else f'{a:.1f}'}")
        drops.add_row(wrap_dotted(layer.name, name_width), *cells)
    totals = []
    for s in p.candidates:
        w, a = p.totals(s)
        totals.append(f"{w.dropped_nonzeros_pct:.1f}/{a.dropped_nonzeros_pct:.1f}" if w.numel else "n/a")
    drops.add_section()
    drops.add_row("pooled", *totals, style="bold")
    console.print(drops)
    console.print("groups along K (docs/design.md §3.3); activations pooled over all batches (Σdropped/Σnnz);\n"
                  "pooled row: over the layers where the series applies", markup=False)
    for (layer_name, reason), series in reasons.items():
        which = "every candidate" if len(series) == len(p.candidates) else ", ".join(series)
        console.print(f"n/a {layer_name} ({which}): {reason}", markup=False)
    if p.skipped:
        console.print(f"not profiled: {'; '.join(f'{n}: {r}' for n, r in p.skipped)}", markup=False)


PROFILE_HELP = with_examples(
    """Per-layer sparsity profile of MODEL (a zoo name or your own FILE.py:FACTORY) on its calibration data,
    and what each candidate TASD series would drop from every layer's weights and input activations.""",
    "tasder profile digits-cnn",
    "tasder profile examples/my_model.py:make",
    "tasder profile minilm --series 2:8,4:8+1:8 --batches 2",
    "tasder profile digits-cnn --json -o profile.json",
)


def profile_cmd(
    model: ModelArgument,
    series: Annotated[
        list[str] | None,
        typer.Option("--series", "-s", show_default=False,
                     help="Candidate TASD series, comma-separated or repeated (default: every series of "
                     f"the {DEFAULT_TARGET} target, from its YAML)."),
    ] = None,
    candidates: Annotated[  # the option's former name, kept working
        list[str] | None, typer.Option("--candidates", "-c", hidden=True, show_default=False)
    ] = None,
    batches: Annotated[
        int | None, typer.Option("--batches", "-n", min=1, show_default=False,
                                 help="Use only the first N calibration batches (default: all).")
    ] = None,
    as_json: JsonOption = False,
    output: OutputOption = None,
) -> None:
    from tasder.nn.profile import profile_model

    parsed = parse_candidates([*(series or []), *(candidates or [])])
    entry = load_zoo_model(model)
    calibration = list(entry.calibration)
    if batches is not None:
        calibration = calibration[:batches]
    if not calibration:
        raise ValueError(f"model {model!r} has no calibration batches to profile with")
    with progress_bar(f"profiling {entry.name}", len(calibration)) as advance:
        result = profile_model(entry.model, calibration, candidates=parsed, on_batch=lambda _: advance())
    if as_json:
        emit(None, {"model": entry.name, "description": entry.description, **result.as_dict()}, output)
        return
    emit(lambda console: render_profile(console, entry.name, entry.description, result), None, output)


# ---------------------------------------------------------------------------------------------
# tasder apply
# ---------------------------------------------------------------------------------------------


def _relative_change(before: float | None, after: float | None) -> float | None:
    """``(after − before) / |before|``; None when either is missing or ``before`` is 0."""
    if before is None or after is None or before == 0 or not math.isfinite(before):
        return None
    return (after - before) / abs(before)


APPLY_HELP = with_examples(
    """Apply a TASD config to MODEL (a zoo name or your own FILE.py:FACTORY): its metric before and after,
    the MACs per inference it saves and, with --design, the modelled EDP of one inference × TC running the
    original model.""",
    "tasder apply digits-cnn --config config.yaml",
    "tasder apply digits-cnn-sparse-95 --config cfg.yaml --design ttc-vegeta-m8",
    "tasder apply examples/my_model.py:make --config my-config.yaml --json -o apply.json",
)


def _modelled_edp(entry: Any, config: Any, design: str, budget: int, seed: int) -> dict[str, Any]:
    """The config's modelled EDP on ``design`` next to the original's, both × TC running the original
    model (one inference; the search's cost model and mapper settings, so the numbers match ``tasder
    search --cost edp`` and the demo)."""
    from tasder.search import HardwareCost
    from tasder.search.cost import edp_vs_tc

    modes = {spec.mode for spec in config.layers.values() if not spec.is_dense}
    cost = HardwareCost.for_model(entry.model, entry.calibration[0], design, "A" if modes == {"A"} else "W",
                                  metric="edp", budget=budget, seed=seed)
    return {"design": cost.design, **edp_vs_tc(cost, config.layers), "mapper_budget": budget, "seed": seed}


def apply_cmd(
    model: ModelArgument,
    config: Annotated[Path, typer.Option("--config", help="A TASD config YAML (version: 1, layers: ...), "
                                         "e.g. written by `tasder search`.", show_default=False)],
    design: Annotated[str | None, typer.Option("--design", show_default=False,
                                               help="Also model one inference on this accelerator design: EDP "
                                               "before and after, × TC running the original model.")] = None,
    mapper_budget: Annotated[int, typer.Option("--mapper-budget", min=1, help="Mappings tried per distinct layer "
                                               "with --design.")] = DEFAULT_MAPPER_BUDGET,
    seed: SeedOption = 0,
    as_json: JsonOption = False,
    output: OutputOption = None,
) -> None:
    from tasder.nn import TASDConfig, apply_tasd, count_macs
    from tasder.nn.transform import tasd_report

    if design is not None:
        from tasder.hw import list_designs

        if design not in list_designs() and not Path(design).is_file():
            raise ValueError(f"--design {design!r}: not a shipped design ({', '.join(list_designs())}) or a file")
    cfg = TASDConfig.coerce(config)
    entry = load_zoo_model(model)
    calibration = list(entry.calibration)
    if not calibration:
        raise ValueError(f"model {model!r} has no calibration batch to count MACs with")
    # A converted copy (entry.model is unchanged); configs with bias_correction or a TASD-A permutation
    # are calibrated on the entry's calibration batches, as the search that found them was.
    with user_caches():
        transformed = apply_tasd(entry.model, cfg, calibration=calibration)
    report = tasd_report(transformed)
    before = after = None
    with progress_bar(f"evaluating {entry.name}", 3 if entry.evaluate is not None else 1) as advance:
        if entry.evaluate is not None:
            before = float(entry.evaluate(entry.model))
            advance()
            after = float(entry.evaluate(transformed))
            advance()
        macs = count_macs(transformed, calibration[0])
        advance()
    hardware = _modelled_edp(entry, cfg, design, mapper_budget, seed) if design is not None else None
    change = _relative_change(before, after)
    dense, effective = macs.dense_per_inference, macs.effective_per_inference
    reduction = 1.0 - effective / dense if dense else None
    per = max(macs.samples, 1)

    if as_json:
        doc = {
            "model": entry.name,
            "config": str(config),
            "metric": entry.metric,
            "before": before,
            "after": after,
            "relative_change": change,
            "macs": {"unit": "MACs per inference", "counted_on_samples": macs.samples, "dense": dense,
                     "effective": effective, "reduction": reduction,
                     "layers": [{**row, "dense_macs": row["dense_macs"] / per,
                                 "effective_macs": row["effective_macs"] / per} for row in macs.to_rows()[:-1]]},
            "hardware": hardware,
            "layers": {name: spec.to_dict() for name, spec in report.layers.items()},
            "skipped": dict(report.skipped),
            "dense": list(report.dense),
        }
        emit(None, doc, output)
        return

    def render(console: Console) -> None:
        console.print(f"{entry.name}: {entry.description}", markup=False)
        console.print(f"config: {config}", markup=False)
        console.print(f"{len(report.layers)} layer(s) converted, {len(report.skipped)} skipped, "
                      f"{len(report.dense)} left dense by the config", markup=False)
        console.print()
        if before is None:
            console.print(f"{entry.metric}: the model has no test evaluation function", markup=False)
        else:
            delta = "" if change is None else f" ({100.0 * change:+.2f}% relative)"
            console.print(f"{entry.metric}: {before:.4f} before → {after:.4f} after{delta}", markup=False)
        saved = "" if reduction is None else f": {100.0 * reduction:.1f}% fewer"
        speedup = f" ({dense / effective:.2f}×)" if effective else ""
        console.print(f"MACs per inference: {format_count(dense)} dense → {format_count(effective)} effective"
                      f"{saved}{speedup} (counted on a calibration batch of {macs.samples})", markup=False)
        if hardware is not None:
            console.print(f"modelled EDP on {hardware['design']}, one inference: original "
                          f"{hardware['before_vs_tc']:.3f} → config {hardware['after_vs_tc']:.3f} × TC running the "
                          f"original model "
                          f"(TC: {hardware['tc_original']:.3g} J·s; mapper budget {mapper_budget})", markup=False)
        console.print()
        layers_table = table()
        layers_table.add_column("layer", overflow="fold", max_width=max(16, console.width - 60))
        layers_table.add_column("type", no_wrap=True)
        layers_table.add_column("TASD", no_wrap=True)
        layers_table.add_column("dense MACs/inf.", justify="right", no_wrap=True)
        layers_table.add_column("effective MACs/inf.", justify="right", no_wrap=True)
        layers_table.add_column("density", justify="right", no_wrap=True)
        for layer in macs.layers:
            tasd = "dense" if layer.mode == "dense" else f"{layer.series} ({layer.mode})"
            density = "-" if not layer.dense_macs else f"{layer.density:.3f}"
            layers_table.add_row(wrap_dotted(layer.name, max(16, console.width - 60)), layer.kind, tasd,
                                 format_count(layer.dense_macs / per), format_count(layer.effective_macs / per),
                                 density)
        layers_table.add_section()
        layers_table.add_row("total", "", "", format_count(dense), format_count(effective),
                             "-" if not dense else f"{effective / dense:.3f}", style="bold")
        console.print(layers_table)
        if report.skipped:
            console.print(f"skipped {len(report.skipped)} layer(s) (left dense):", markup=False)
            for name, reason in report.skipped.items():
                console.print(f"  {name}: {reason}", markup=False, soft_wrap=True)

    emit(render, None, output)


def register(app: typer.Typer) -> None:
    """Add ``profile`` and ``apply`` to ``app``."""
    app.command("profile", help=PROFILE_HELP)(profile_cmd)
    app.command("apply", help=APPLY_HELP)(apply_cmd)
