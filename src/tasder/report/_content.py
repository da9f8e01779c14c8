"""What the report says, as a list of format-neutral blocks that the HTML and markdown writers print.

Building the words and numbers once is what keeps ``report.html`` and ``report.md`` saying the
same thing: the writers only decide how a heading, a table or a figure looks, never which
numbers go in it or which unit they carry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

from tasder.report._format import DASH, count, num, pct, sci, slug, times
from tasder.report._schema import finite
from tasder.report.figures import ReportFigure, constraint_ratio, design_label

__all__ = ["Block", "Box", "Facts", "FigureRef", "Heading", "Paragraph", "Table", "build_blocks", "holdout_breaks",
           "summary_rows"]

#: The one-sentence description of tasder at the top of every report.
ABOUT = (
    "tasder approximates DNN tensors as short series of N:M-sparse terms (TASD), searches a series per layer "
    "under an accuracy constraint (TASDER), and estimates with an analytical accelerator model what that saves "
    "in cycles, energy and energy-delay product (EDP) on sparse tensor-core designs."
)


@dataclass(frozen=True)
class Heading:
    """A section title; ``anchor`` is its HTML id (unique within the report)."""

    level: int
    text: str
    anchor: str


@dataclass(frozen=True)
class Paragraph:
    """Plain text; writers escape it."""

    text: str


@dataclass(frozen=True)
class Facts:
    """Label/value pairs (command, machine, date …)."""

    items: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Box:
    """A highlighted note with titled bullet lists (the measured-vs-modelled box)."""

    title: str
    groups: tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True)
class Table:
    """A table of preformatted cells; ``numeric[i]`` right-aligns column ``i``."""

    caption: str
    columns: tuple[str, ...]
    numeric: tuple[bool, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class FigureRef:
    """A figure with its report-wide number."""

    number: int
    figure: ReportFigure


Block = Union[Heading, Paragraph, Facts, Box, Table, FigureRef]  # noqa: UP007 (runtime alias, py3.10 target)

_MODES = {"W": "TASD-W (weights)", "A": "TASD-A (activations)"}


def _duration(seconds: object) -> str:
    """Wall time in seconds plus minutes for long runs: "123.4 s (2 min 3 s)"."""
    s = finite(seconds)
    if s is None:
        return DASH
    if s < 60:
        return f"{s:.1f} s"
    minutes, rest = divmod(round(s), 60)
    return f"{s:.1f} s ({minutes} min {rest} s)"


def _ratio_text(new: float | None, old: float | None) -> str:
    if new is None or old is None or old == 0:
        return DASH
    return f"{100 * new / old:.2f} % of original"


def _search_rows(model: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]:
    """The design rows for the original and the transformed model on the design the search used."""
    rows = [row for row in model["designs"] if row["design"] == model["design"]]
    original = next((row for row in rows if row["workload"] == "original"), None)
    transformed = next((row for row in rows if row["workload"] != "original"), None)
    return original, transformed


def summary_rows(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per model: the headline the CLI prints and the report opens with (also ``tasder demo
    --json``'s ``summary``). EDPs are × TC running the original model, MACs per inference."""
    rows = []
    for m in doc["models"]:
        val, test = m["scores"]["validation"], m["scores"]["test"]
        ttc = next((d for d in m["designs"] if d["design"] == m["design"] and d["workload"] != "original"), None)
        best = min(m["designs"], key=lambda d: finite(d["edp_norm"]) if finite(d["edp_norm"]) is not None
                   else float("inf"))
        dense, transformed = finite(m["macs"]["dense"]), finite(m["macs"]["transformed"])
        rows.append({
            "model": m["model"], "mode": m["mode"], "metric": m["metric_name"],
            "validation": (val["original"], val["transformed"]), "test": (test["original"], test["transformed"]),
            "mac_cut": 1.0 - transformed / dense if dense and transformed is not None else None,
            "ttc_edp_vs_tc": None if ttc is None else ttc["edp_norm"],
            "best_design": best["label"] + ("+TASD" if best["workload"] != "original" else ""),
            "best_edp_vs_tc": best["edp_norm"], "evaluations": m["search"]["evaluations"],
            "config": m.get("config_file"),
            "test_meets_constraint": m.get("holdout", {}).get("meets_constraint"),
        })
    return rows


def holdout_breaks(model: Mapping[str, Any]) -> str | None:
    """A sentence when the chosen config breaks the constraint on the test split, else None."""
    holdout = model.get("holdout") or {}
    if holdout.get("meets_constraint") is not False:
        return None
    test = model["scores"]["test"]
    return (f"{model['model']}: the chosen config breaks the constraint ({model['constraint']}) on the test split: "
            f"{num(test['original'])} → {num(test['transformed'])}, below {num(holdout.get('threshold'))}; the "
            f"search decided on the validation split.")


def _share(new: object, old: object) -> str:
    a, b = finite(old), finite(new)
    return DASH if a is None or b is None or a == 0 else f"{100 * b / a:.2f} %"


def _headline_table(doc: Mapping[str, Any]) -> Table:
    rows = []
    for r in summary_rows(doc):
        cut = r["mac_cut"]
        rows.append((r["model"], f"TASD-{r['mode']}", _share(r["test"][1], r["test"][0]),
                     DASH if cut is None else f"{100 * cut:.1f} %", num(r["ttc_edp_vs_tc"], 3),
                     num(r["best_edp_vs_tc"], 3), r["best_design"]))
    design = design_label(doc["models"][0], doc["models"][0]["design"])
    return Table(
        caption=(f"Headline (what tasder demo prints): test metric of the chosen config as % of the original's "
                 f"(searched on the validation split); effective MACs per inference cut vs dense; modelled EDP of one "
                 f"inference on {design} running the config, and the lowest of every design, × TC running the "
                 f"original model."),
        columns=("model", "TASD", "test (% of original)", "MACs cut", f"EDP on {design} (× TC)", "best EDP (× TC)",
                 "best design"),
        numeric=(False, False, True, True, True, True, False),
        rows=tuple(rows),
    )


def _summary_table(model: Mapping[str, Any]) -> Table:
    metric = model["metric_name"]
    rows: list[tuple[str, ...]] = []
    acceptance = model["search"].get("acceptance")
    for split in ("validation", "test"):
        scores = model["scores"][split]
        old, new = finite(scores["original"]), finite(scores["transformed"])
        ratio = _ratio_text(new, old)
        if split == "validation" and acceptance is not None and acceptance["bound_kind"] == "ratio" \
                and finite(acceptance["bound"]) is not None and ratio != DASH:
            ratio += f" (≥ {100 * acceptance['bound']:.2f} % at {100 * acceptance['confidence']:g} % confidence)"
        rows.append((f"{metric}, {split} set (fraction)", num(old), num(new), ratio))
    dense, eff = finite(model["macs"]["dense"]), finite(model["macs"]["transformed"])
    if dense is None or dense == 0 or eff is None:
        cut = DASH
    else:
        cut = f"{100 * eff / dense:.1f} % of dense ({100 * (1 - eff / dense):.1f} % cut)"
    unit = str(model["macs"].get("unit", "MACs per inference")).removeprefix("MACs ")
    rows.append((f"effective MACs {unit} (original = dense)", count(dense, " MACs"), count(eff, " MACs"), cut))
    label = design_label(model, model["design"])
    before, after = _search_rows(model)
    for name, key in (("cycles", "cycles_norm"), ("energy", "energy_norm"), ("EDP", "edp_norm")):
        old = finite(before[key]) if before else None
        new = finite(after[key]) if after else None
        rows.append((f"modelled {name} on {label}", times(old), times(new), _ratio_text(new, old)))
    return Table(
        caption=(
            f"Summary for {model['model']}: scores are measured; cycles, energy and EDP are modelled on {label} and "
            "normalised to TC running the original model (× TC)."
        ),
        columns=("quantity", "original model", "transformed model", "transformed vs original"),
        numeric=(False, True, True, True),
        rows=tuple(rows),
    )


def _designs_table(model: Mapping[str, Any]) -> Table:
    """Every design's modelled cost of one inference (batch 1)."""
    rows = []
    for row in model["designs"]:
        cycles, energy = finite(row["cycles"]), finite(row["energy_pj"])
        norms = [finite(row[key]) for key in ("cycles_norm", "energy_norm", "edp_norm")]
        rows.append(
            (
                str(row["label"]),
                str(row["workload"]),
                DASH if cycles is None else f"{cycles:,.0f}",
                DASH if energy is None else f"{energy / 1e6:,.2f}",
                sci(row["edp_js"]),
                *(DASH if x is None else f"{x:.3f}" for x in norms),
            )
        )
    return Table(
        caption=("Modelled cost of one inference (batch 1) on each design and workload; the last three columns are "
                 "normalised to TC running the original model (× TC)."),
        columns=(
            "design",
            "workload",
            "cycles",
            "energy (µJ)",
            "EDP (J·s)",
            "cycles (× TC)",
            "energy (× TC)",
            "EDP (× TC)",
        ),
        numeric=(False, False, True, True, True, True, True, True),
        rows=tuple(rows),
    )


def _layers_table(model: Mapping[str, Any]) -> Table:
    rows = []
    for layer in model["layers"]:
        rows.append(
            (
                str(layer["name"]),
                str(layer["kind"]),
                str(layer.get("k", DASH)),
                count(layer["dense_macs"]),
                str(layer["series"]),
                pct(layer["density"]),
                pct(layer.get("executed")),
                pct(layer["weight_sparsity"]),
                pct(layer["activation_sparsity"]),
                num(layer["damage"]),
            )
        )
    return Table(
        caption=(
            "Chosen series per layer. K is the GEMM reduction length (Linear: in_features; Conv2d: C·R·S); dense "
            "MACs are per inference (one sample); density and executed MACs are % of the dense layer; sparsities are "
            "% zeros (measured); output damage is the layer's relative output error ‖y−ŷ‖/‖y‖ (— where not measured)."
        ),
        columns=(
            "layer",
            "kind",
            "K",
            "dense MACs per inference",
            "series",
            "density (% of dense)",
            "executed MACs (% of dense)",
            "weight sparsity (% zeros)",
            "activation sparsity (% zeros)",
            "output damage (rel. error)",
        ),
        numeric=(False, False, True, True, False, True, True, True, True, True),
        rows=tuple(rows),
    )


#: How the report names the search options beyond the paper (tasder.nn.LayerSpec).
OPTION_TEXT = {
    "permute": "a permuted reduction dim (ours: the layout in which each series drops least)",
    "bias_correction": "bias correction (ours: each output channel's mean error on the calibration data "
                       "added back)",
    "activation_score": "activation-aware weight scores (ours: TASD-W keeps the weights with the largest "
                        "|W_ij|·‖X_j‖₂ on the calibration data)",
    "reconstruct": "reconstruction (ours: TASD-W refits the kept weights so that the layer's output on the "
                   "calibration data changes least)",
}


def _and_list(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``: how a sentence lists the options."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _search_text(model: Mapping[str, Any]) -> str:
    search = model["search"]
    cost = model["cost"].upper() if len(model["cost"]) <= 4 else model["cost"]
    seconds = finite(search["seconds"])
    chosen = search["chosen"]
    options = list(model.get("options") or [])
    method = model["method"] + (f" method with {_and_list([OPTION_TEXT.get(o, o) for o in options])}" if options
                                else " method")
    text = (
        f"Search: {method}, target {model['target']}, minimising modelled {cost} on "
        f"{design_label(model, model['design'])} subject to validation {model['metric_name']} "
        f"{model['constraint']}. {search['evaluations']} configurations evaluated"
        f"{'' if seconds is None else f' in {seconds:.1f} s'}; "
        + ("no configuration was chosen." if chosen is None else f"configuration #{chosen} was chosen.")
    )
    ratio, original = constraint_ratio(model["constraint"]), finite(model["scores"]["validation"]["original"])
    if ratio is not None and original is not None:
        text += f" Threshold: {ratio:g} × {original:.4f} = {ratio * original:.4f}."
    acceptance = search.get("acceptance")
    if acceptance is not None:
        bound = finite(acceptance["bound"])
        what = "ratio to the original" if acceptance["bound_kind"] == "ratio" else "difference from the original"
        text += (f" A configuration was accepted only when a paired one-sided bound on its {what}, at "
                 f"{100 * acceptance['confidence']:g} % confidence over the {acceptance['examples']} validation "
                 f"examples, met the constraint; the chosen one's bound is "
                 f"{DASH if bound is None else f'{bound:.4f}'}.")
        picked = next((h for i, h in enumerate(search["history"]) if h.get("index", i) == chosen), None)
        if picked is not None and picked.get("worse") is not None and picked.get("better") is not None:
            text += (f" Under it {picked['worse']} validation examples score worse than under the original model "
                     f"and {picked['better']} better (the bound is set by both counts, not only by their difference).")
    if model.get("config_file"):
        text += f" The chosen configuration is saved as {model['config_file']}."
    return text


def build_blocks(doc: Mapping[str, Any], figures: Sequence[ReportFigure]) -> list[Block]:
    """The whole report as blocks, in reading order (``doc`` must already be validated)."""
    blocks: list[Block] = [
        Heading(1, doc["title"], "top"),
        Paragraph(ABOUT),
        _headline_table(doc),
        *(Paragraph(f"Note: {text}") for text in map(holdout_breaks, doc["models"]) if text),
        Facts(
            (
                ("command", doc["command"]),
                ("machine", doc["machine"]),
                ("created", doc["created"]),
                ("total wall time", _duration(doc["seconds"])),
                ("tasder version", doc["tasder_version"]),
                ("run", "quick (reduced data and search budget)" if doc.get("quick") else "full"),
            )
        ),
        Box(
            "What is measured and what is modelled",
            (
                ("Measured on this machine", tuple(doc["modelled_vs_measured"]["measured"])),
                ("Modelled (analytical, not measured)", tuple(doc["modelled_vs_measured"]["modelled"])),
            ),
        ),
    ]
    number = 0
    anchors: set[str] = {"top"}
    for m, model in enumerate(doc["models"]):
        anchor = f"model-{slug(model['model'])}"
        if anchor in anchors:
            anchor = f"{anchor}-{m + 1}"
        anchors.add(anchor)
        mode = _MODES.get(model["mode"], f"mode {model['mode']}")
        blocks.append(Heading(2, f"{model['model']}: {mode}", anchor))
        if model.get("description"):
            blocks.append(Paragraph(model["description"]))
        blocks.append(Paragraph(_search_text(model)))
        blocks += [
            Heading(3, "Summary", f"{anchor}-summary"),
            _summary_table(model),
            Heading(3, "Design comparison", f"{anchor}-designs"),
            _designs_table(model),
            Heading(3, "Per-layer choices", f"{anchor}-layers"),
            _layers_table(model),
            Heading(3, "Plots", f"{anchor}-plots"),
        ]
        for fig in figures:
            if fig.model_index == m:
                number += 1
                blocks.append(FigureRef(number, fig))
    return blocks
