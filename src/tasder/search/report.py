"""A markdown report of a :class:`~tasder.search.result.SearchResult`: summary, per-layer table,
and metric vs cost of every evaluated config (Pareto points marked)."""

from __future__ import annotations

import math

from tasder.search.result import SearchResult, format_cost

__all__ = ["render_markdown"]


def _num(x: float | None, digits: int = 4) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _cost(x: float) -> str:
    # MACs are large integers; a modelled EDP is ~1e-11 J·s: print both readably.
    return format_cost(x)


def _bound(r: SearchResult, x: float | None) -> str:
    if x is None:
        return "–"
    if not math.isfinite(x):
        return "none"
    return f"{x:.4f}"


def acceptance_text(r: SearchResult) -> str:
    """One line saying how configs were accepted and the chosen one's bound."""
    if r.confidence is None:
        return "point estimate ≥ threshold (evaluate returned one number per model: no confidence bound)"
    what = "metric / original" if r.bound_kind == "ratio" else "metric − original"
    return (f"paired one-sided bound at {100 * r.confidence:g} % confidence over {r.examples} examples: "
            f"{what} ≥ {_bound(r, r.bound_final)} for the chosen config")


def _bound_header(r: SearchResult) -> str:
    if r.confidence is None:
        return "bound"
    return f"{'ratio' if r.bound_kind == 'ratio' else 'difference'} bound ({100 * r.confidence:g} %)"


def render_markdown(result: SearchResult, metric_name: str = "validation metric",
                    holdout_name: str = "held-out metric") -> str:
    """The report as markdown text (tables render on GitHub and in any markdown viewer).

    ``metric_name`` names what the search's ``evaluate`` returned, ``holdout_name`` the re-scoring.
    """
    r = result
    hold = r.holdout_ratio
    hw = r.hardware
    hw_unit = "" if hw is None else f" (modelled {hw.metric} on {hw.design}, {hw.unit})"
    lines = [
        f"# TASDER search: {r.model_id or 'model'} on {r.target} (TASD-{r.mode}, {r.method})",
        "",
        "| | value |",
        "|---|---|",
        f"| constraint | {r.constraint} (threshold {r.threshold:.4f} on the {metric_name}) |",
        f"| {metric_name} | {r.metric_original:.4f} → {r.metric_final:.4f} ({100 * r.metric_ratio:.2f} %) |",
        f"| acceptance | {acceptance_text(r)} |",
        f"| {holdout_name} | {_num(r.holdout_original)} → {_num(r.holdout_final)}"
        f"{'' if hold is None else f' ({100 * hold:.2f} %)'}"
        f"{' — **breaks the constraint on this split**' if r.holdout_meets_constraint is False else ''} |",
        (f"| cost{hw_unit} | {_cost(r.cost_before)} → {_cost(r.cost_after)} ({100 * r.cost_cut:.1f} % cut) |"
         if hw is not None else
         f"| effective MACs per inference | {_cost(r.cost_per_inference(r.cost_before))} → "
         f"{_cost(r.cost_per_inference(r.cost_after))} ({100 * r.cost_cut:.1f} % cut; counted on a calibration batch "
         f"of {r.samples}) |"),
        f"| evaluations | {r.evaluations} ({r.cache_hits} cache hits), {r.seconds:.1f} s |",
    ]
    if hw is not None:
        lines.append(f"| {hw.metric} × TC | original model {hw.before_vs_tc:.3f} → chosen config "
                     f"{hw.after_vs_tc:.3f} (one inference on {hw.design}, × TC running the original model) |")
    if r.slack_examples is not None:
        lines.append(f"| slack | the constraint lets a config lose {r.slack_examples:.1f} examples |")
    if r.skipped:
        lines.append(f"| skipped | {r.skipped} configs not evaluated: at least as damaging, layer by layer, as a "
                     f"clear miss |")
    if r.interrupted:
        lines.append("| interrupted | yes: the best valid config found so far |")
    warning = r.holdout_warning(holdout_name)
    if warning is not None:
        lines += ["", f"**Note:** {warning}."]
    lines += ["", "## Per layer", "",
              "K: the GEMM reduction length (Linear: in_features; Conv2d: C·R·S). MACs are per inference (one "
              "sample).", "",
              "| layer | kind | K | dense MACs per inference | series | mode | executed fraction | output rel. error |",
              "|---|---|---|---|---|---|---|---|"]
    for row in r.layers:
        lines.append(f"| `{row.name}` | {row.kind} | {row.k_text} | {r.cost_per_inference(row.dense_macs):,.0f} | "
                     f"{row.series} | {row.mode} | {row.fraction:.3f} | {_num(row.damage)} |")
    pareto = {p.index for p in r.pareto}
    paired = r.confidence is not None
    flips = ("; worse / better: examples scoring below / above the original's score for them — near the "
             "constraint these two, more than their difference, set the bound") if paired else ""
    lines += ["", "## Every evaluated config", "",
              f"`*` marks the Pareto front (higher {metric_name}, lower cost); ok = meets the constraint{flips}.", "",
              f"| # | step | {metric_name} | cost{hw_unit or ' (effective MACs, calibration batch)'} | ok | "
              f"non-dense layers | {_bound_header(r)} |" + (" worse / better |" if paired else ""),
              "|---|---|---|---|---|---|---|" + ("---|" if paired else "")]
    for p in r.history:
        layers = ", ".join(f"{k}={v}" for k, v in p.layers.items()) or "(dense)"
        metric = _num(p.metric) if p.error is None else f"failed: {p.error}"
        changed = "" if not paired else \
            f" {'–' if p.worse is None or p.better is None else f'{p.worse} / {p.better}'} |"
        lines.append(f"| {p.index}{'*' if p.index in pareto else ''} | {p.step} | {metric} | {_cost(p.cost)} | "
                     f"{'yes' if p.ok else 'no'} | {layers} | {_bound(r, p.bound)} |{changed}")
    if r.failures:
        lines += ["", "## Failed evaluations", ""] + [f"- {f}" for f in r.failures]
    if r.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in r.notes]
    return "\n".join(lines) + "\n"
