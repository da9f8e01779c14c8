"""``tasder search``: find a per-layer TASD config of a zoo model for a hardware target.

::

    tasder search MODEL --target ttc-vegeta-m8 --mode W|A|auto [--method cost-aware] [--constraint 0.99]
                  [--drop 0.005] [--confidence 0.9] [--layers GLOB ...] [--cost macs|edp|energy|cycles]
                  [--design NAME] [--permute] [--bias-correction] [--score magnitude|activation]
                  [--reconstruct] [--out config.yaml] [--report report.md] [--json]

The search decides on the zoo entry's validation split (``metadata["evaluate_val"]``) and the
chosen config is re-scored on the test split afterwards; both are printed. The zoo's evaluators
return per-example scores, so a config is accepted when a paired confidence bound (``--confidence``)
on its ratio to the original meets the constraint; the bound is printed next to the ratio. A zoo
entry that lists its stages (``metadata["stages"]``: MiniLM's embeddings and encoder layers)
is evaluated with the unchanged prefix replayed (:mod:`tasder.search.prefix`). Output paths are
checked writable before the (possibly long) search starts. ``--cost edp --design ttc-vegeta-m8``
makes the modelled EDP of the whole model on that design (:class:`tasder.search.HardwareCost`) the
cost the search minimises; the summary then also shows the chosen config's EDP normalised to TC.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from tasder.cli.common import (
    DEFAULT_MAPPER_BUDGET,
    JsonOption,
    ModelArgument,
    emit,
    format_count,
    interactive,
    load_zoo_model,
    status,
    table,
    user_caches,
    warn,
    with_examples,
)
from tasder.targets import DEFAULT_TARGET

__all__ = ["register", "search_cmd"]


def _cost_function(cost: str, design: str | None, target: str, entry: Any, mode: str, budget: int,
                   seed: int) -> tuple[Any, Any]:
    """(the search's cost, the same cost on TC) for ``--cost``; (None, None) = effective MACs."""
    from tasder.hw import list_designs
    from tasder.search import HardwareCost
    from tasder.search.cost import COST_METRICS

    key = cost.strip().lower()
    if key == "macs":
        if design is not None:
            raise ValueError("--design only applies to a modelled cost: add --cost edp (or energy, cycles)")
        return None, None
    if key not in COST_METRICS:
        raise ValueError(f"--cost {cost!r}: expected macs, {', '.join(COST_METRICS)}")
    if design is None:
        if target not in list_designs():
            raise ValueError(f"--cost {key} needs --design: the target {target!r} is not a shipped design "
                             f"(shipped: {', '.join(list_designs())})")
        design = target
    fn = HardwareCost.for_model(entry.model, entry.calibration[0], design, mode,  # type: ignore[arg-type]
                                metric=key, budget=budget, seed=seed)
    tc = HardwareCost("tc", fn.problems, fn.mode, metric=key, budget=budget, seed=seed)
    return fn, tc


SEARCH_HELP = with_examples(
    """Search a per-layer TASD configuration of MODEL (a zoo name or your own FILE.py:FACTORY) that keeps the
    validation metric under the constraint and minimises effective MACs or a modelled hardware cost; print a
    summary, re-score the chosen config on the test split (a note when it breaks the constraint there),
    optionally write the config (YAML) and a markdown report.""",
    "tasder search digits-cnn-sparse-95 --mode W -o config.yaml",
    "tasder search examples/my_model.py:make --mode W --cost edp --design ttc-vegeta-m8",
    "tasder search digits-cnn --mode A --cost edp --design ttc-vegeta-m8 --report report.md",
    "tasder search digits-cnn-sparse-95 --mode W --permute --bias-correction -o config.yaml",
    "tasder search minilm --mode A --method paper-threshold --json",
    "tasder search minilm --mode auto --score activation --confidence 0.9",
)


def search_cmd(
    model: ModelArgument,
    target: Annotated[str, typer.Option("--target", "-t", help="Built-in target name or a target YAML path.")]
    = DEFAULT_TARGET,
    mode: Annotated[str, typer.Option("--mode", help="W (TASD-W, weights), A (TASD-A, activations) or auto "
                                      "(either, per layer).")]
    = "W",
    method: Annotated[str, typer.Option("--method", help="cost-aware, paper-greedy or paper-threshold (A).")]
    = "cost-aware",
    constraint: Annotated[float, typer.Option("--constraint", help="Keep ≥ this fraction of the original "
                                              "validation metric, in (0, 1].")] = 0.99,
    drop: Annotated[float | None, typer.Option("--drop", help="Instead: an absolute allowed drop of the metric.",
                                               show_default=False)] = None,
    confidence: Annotated[float, typer.Option("--confidence", help="Confidence of the paired bound a config must "
                                              "meet the constraint at, in (0, 1).")] = 0.9,
    layers: Annotated[list[str] | None, typer.Option("--layers", help="Globs of the layers to search "
                      "(repeatable; default: all, minilm TASD-A: encoder.layer.?.output.dense).",
                      show_default=False)] = None,
    statistic: Annotated[str, typer.Option("--statistic", help="paper-threshold's S(L): mean or p99.")] = "mean",
    max_evals: Annotated[int | None, typer.Option("--max-evals", min=1, show_default=False,
                                                   help="Stop after this many evaluations.")] = None,
    max_seconds: Annotated[float | None, typer.Option("--max-seconds", min=0.001, show_default=False,
                                                       help="Start no evaluation after this many seconds; the "
                                                       "best config found by then is the result.")] = None,
    cost: Annotated[str, typer.Option("--cost", help="What to minimise: macs (effective MACs), or the modelled "
                                      "edp, energy or cycles on --design.")] = "macs",
    design: Annotated[str | None, typer.Option("--design", help="Accelerator design for a modelled cost (default: "
                                               "the target's name when it is a shipped design).",
                                               show_default=False)] = None,
    mapper_budget: Annotated[int, typer.Option("--mapper-budget", min=1,
                                               help="Mappings tried per distinct layer for a modelled cost "
                                               "(the demo's and tasder apply's).")] = DEFAULT_MAPPER_BUDGET,
    seed: Annotated[int, typer.Option("--seed", help="Seeds torch and the mapper (results are repeatable).")] = 0,
    permute: Annotated[bool, typer.Option("--permute", help="Decompose in a permuted order of each layer's "
                                          "reduction dim that drops less (ours; TASD-W from the weight, TASD-A "
                                          "from the calibration data).")] = False,
    bias_correction: Annotated[bool, typer.Option("--bias-correction", help="Add each output channel's mean "
                                                  "error on the calibration data back (ours; no training).")]
    = False,
    score: Annotated[str, typer.Option("--score", help="How TASD-W ranks weights: magnitude |W| or activation "
                                       "|W|·‖X‖ on the calibration data (ours).")] = "magnitude",
    reconstruct: Annotated[bool, typer.Option("--reconstruct", help="TASD-W: refit the kept weights from the "
                                              "calibration activations (ours).")] = False,
    json_out: JsonOption = False,
    output: Annotated[Path | None, typer.Option("--output", "-o", metavar="FILE", show_default=False,
                                                help="Write the chosen config (YAML) to FILE.")] = None,
    out: Annotated[Path | None, typer.Option("--out", hidden=True, show_default=False)] = None,  # former name
    report: Annotated[Path | None, typer.Option("--report", help="Write a markdown report here.",
                                                show_default=False)] = None,
) -> None:
    from tasder.io import atomic_write_text, check_writable
    from tasder.search import Drop, render_markdown, search
    from tasder.search.acceptance import check_confidence
    from tasder.search.methods import check_constraint, default_layers
    from tasder.targets import load_target

    if output is not None and out is not None and output != out:
        raise ValueError("--out is the former name of --output; give one of them")
    out = output if output is not None else out
    limit = check_constraint(Drop(drop) if drop is not None else constraint)
    check_confidence(confidence)
    load_target(target)
    for path in (out, report):
        if path is not None:
            check_writable(path)
    entry = load_zoo_model(model)
    name = entry.name  # a zoo name, or what your factory calls its model
    evaluate = entry.metadata.get("evaluate_val")
    if evaluate is None:
        raise ValueError(f"model {model!r} has no validation split evaluator (metadata['evaluate_val']; "
                         f"tasder.zoo.make_entry sets it)")
    mode_u = "auto" if mode.strip().lower() == "auto" else mode.strip().upper()
    chosen_layers = layers if layers else default_layers(name, mode_u)
    # (auto: every candidate spec carries its own mode, which HardwareCost follows)
    cost_fn, tc_cost = _cost_function(cost, design, target, entry, "W" if mode_u == "auto" else mode_u,
                                      mapper_budget, seed)
    with user_caches(), warnings.catch_warnings():
        # what the search warns about (too little slack, the prefix cache turned off) is in
        # result.notes, printed with the summary
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        result = search(entry.model, target, evaluate, entry.calibration, mode_u, limit,  # type: ignore[arg-type]
                        method,  # type: ignore[arg-type]
                        holdout_evaluate=entry.evaluate, seed=seed, max_evals=max_evals, max_seconds=max_seconds,
                        layers=chosen_layers,
                        statistic=statistic, model_id=name, progress=interactive(),
                        cost=cost_fn,  # type: ignore[arg-type]
                        permute=permute, bias_correction=bias_correction, score=score,  # type: ignore[arg-type]
                        reconstruct=reconstruct, confidence=confidence, stages=entry.metadata.get("stages"))
    if tc_cost is not None and cost_fn is not None:
        result.hardware = cost_fn.summarize(result, tc_cost)
    val_name = str(entry.metadata.get("val_metric", f"validation {entry.metric}"))
    test_name = entry.metric if "test" in entry.metric else f"test {entry.metric}"
    if out is not None:
        result.config_with_provenance().save(out)
    if report is not None:
        atomic_write_text(report, render_markdown(result, val_name, test_name))

    def render(console: Console) -> None:
        r = result
        console.print(f"{name} on {r.target}: TASD-{r.mode}, {r.method}, constraint {r.constraint}", markup=False)
        hold = r.holdout_ratio
        bound = ""
        if r.confidence is not None and r.bound_final is not None:
            what = "ratio" if r.bound_kind == "ratio" else "difference"
            bound = (f"; {what} ≥ {r.bound_final:.4f} at {100 * r.confidence:g} % confidence over "
                     f"{r.examples} examples")
            if r.chosen.worse is not None:
                bound += f", {r.chosen.worse} worse and {r.chosen.better} better than the original"
        console.print(f"{val_name}: {r.metric_original:.4f} → {r.metric_final:.4f} "
                      f"({100 * r.metric_ratio:.2f} %{bound})", markup=False)
        if r.holdout_original is not None and r.holdout_final is not None:
            console.print(f"{test_name}: {r.holdout_original:.4f} → {r.holdout_final:.4f}"
                          + ("" if hold is None else f" ({100 * hold:.2f} %)")
                          + (" — breaks the constraint on this split" if r.holdout_meets_constraint is False else ""),
                          markup=False)
        hw = r.hardware
        tail = f"; {r.evaluations} evaluations, {r.seconds:.1f} s" + (" — interrupted, best so far" if r.interrupted
                                                                       else "")
        if hw is None:
            console.print(f"effective MACs per inference: {format_count(r.cost_per_inference(r.cost_before))} → "
                          f"{format_count(r.cost_per_inference(r.cost_after))} ({100 * r.cost_cut:.1f} % cut; "
                          f"counted on a calibration batch of {r.samples}){tail}", markup=False)
        else:
            console.print(f"modelled {hw.metric} on {hw.design}, one inference: original {hw.before_vs_tc:.3f} → "
                          f"config {hw.after_vs_tc:.3f} × TC running the original model ({100 * r.cost_cut:.1f} % "
                          f"cut; {r.cost_before:.3g} → {r.cost_after:.3g} {hw.unit}){tail}", markup=False)
        t = table()
        for col in ("layer", "K", "series", "mode", "dense MACs/inf.", "executed", "output rel. err."):
            t.add_column(col, justify="left" if col in ("layer", "series", "mode") else "right")
        for row in r.layers:
            t.add_row(row.name, row.k_text, row.series, row.mode, format_count(r.cost_per_inference(row.dense_macs)),
                      f"{row.fraction:.3f}", "-" if row.damage is None else f"{row.damage:.3f}")
        console.print(t)
        for f in r.failures:
            console.print(f"failed evaluation: {f}", markup=False)
        for n in r.notes:
            console.print(f"note: {n}", markup=False)

    if json_out:
        emit(None, result.as_dict(), None)
    else:
        emit(render, None, None)
    warning = result.holdout_warning(test_name)
    if warning is not None:
        warn(warning)
    for path, what in ((out, "config"), (report, "report")):
        if path is not None:
            status(f"wrote {what}: {path}")


def register(app: typer.Typer) -> None:
    """Add ``search`` to ``app``."""
    app.command("search", help=SEARCH_HELP)(search_cmd)
