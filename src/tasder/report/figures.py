"""The report's plots, drawn to PNG bytes with matplotlib's object API.

Figures are built as :class:`matplotlib.figure.Figure` objects on a
:class:`~matplotlib.backends.backend_agg.FigureCanvasAgg`, never through ``pyplot``: the
report can then be rendered inside a notebook or a GUI program without switching the user's
backend or leaking figures into pyplot's global list.

Each figure comes back as a :class:`ReportFigure` holding the PNG bytes plus the words the
HTML and markdown writers need around it (title, ``alt`` text, caption with units and the
normalisation used), so both outputs describe the plot the same way.
"""

from __future__ import annotations

import io
import itertools
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tasder.report._format import short_name, slug
from tasder.report._schema import finite, validate_doc

if TYPE_CHECKING:  # matplotlib loads with the first plot: the report's text and its workers' jobs need none
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.transforms import Bbox

__all__ = ["DPI", "MAX_WIDTH_IN", "BackgroundFigures", "ReportFigure", "constraint_ratio", "design_label",
           "figure_stems", "make_figures", "render_figure"]

#: Resolution of every PNG: sharp on a laptop screen, small enough to embed in one HTML file.
DPI = 110
#: Widest figure, in inches (≈ 990 px at :data:`DPI`): fits the report's text column.
MAX_WIDTH_IN = 9.0


@dataclass(frozen=True)
class ReportFigure:
    """One rendered plot and the text that goes around it in the report.

    ``key`` is ``"<kind>"`` (``search``, ``layers``, ``energy``, ``error-curve``, ``designs``);
    ``model_index`` is the position of the model in ``doc['models']``; ``filename`` is unique
    within one report and safe on every file system.
    """

    key: str
    model_index: int
    filename: str
    title: str
    alt: str
    caption: str
    png: bytes


def constraint_ratio(constraint: str) -> float | None:
    """The ratio in a constraint such as ``"≥ 0.99 × original"``, or None if it has another form.

    >>> constraint_ratio("≥ 0.99 × original")
    0.99
    >>> constraint_ratio(">= 98% of original")
    0.98
    >>> constraint_ratio("latency ≤ 3 ms") is None
    True
    """
    text = constraint.strip()
    m = re.fullmatch(r"(?:≥|>=|>)\s*([0-9]*\.?[0-9]+)\s*(%?)\s*(?:×|x|\*|of)?\s*(?:the\s+)?original\b.*", text)
    if not m:
        return None
    value = float(m.group(1))
    return value / 100 if m.group(2) else value


def design_label(model: Mapping[str, Any], design: str) -> str:
    """The display label of ``design`` (e.g. ``TTC-VEGETA-m8``), falling back to its id."""
    for row in model["designs"]:
        if row["design"] == design:
            return str(row["label"])
    return design


def _bar_label(row: Mapping[str, Any]) -> str:
    """Axis label of one design row: the design and the workload it ran, on two lines."""
    return f"{row['label']}\n{row['workload']}"


def _figure(width: float, height: float) -> Figure:
    """A figure on an Agg canvas (no pyplot), constrained layout so texts never collide."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(min(width, MAX_WIDTH_IN), height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _wrap(title: str, fig: Figure) -> str:
    """Wrap a title to the figure's width (≈ 11 characters per inch at 11 pt) so it is never cut off."""
    return textwrap.fill(title, width=max(30, int(fig.get_figwidth() * 11)))


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _empty(ax: Axes, message: str) -> None:
    """Say in the plot area why it is empty, instead of drawing a blank frame."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, fontsize=10, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _line_obstacles(ax: Axes) -> list[Bbox]:
    """Small boxes along every plotted line and marker, in display pixels, for labels to avoid."""
    from matplotlib.transforms import Bbox

    boxes: list[Bbox] = []
    for line in ax.get_lines():
        xy = ax.transData.transform(np.column_stack([line.get_xdata(), line.get_ydata()]).astype(float))
        xy = xy[np.isfinite(xy).all(axis=1)]
        for (x0, y0), (x1, y1) in itertools.pairwise(xy):
            steps = max(1, int(np.hypot(x1 - x0, y1 - y0) / 5))
            for t in np.linspace(0, 1, steps + 1):
                x, y = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
                boxes.append(Bbox.from_extents(x - 2, y - 2, x + 2, y + 2))
        boxes += [Bbox.from_extents(x - 5, y - 5, x + 5, y + 5) for x, y in xy]
    return boxes


def _place_labels(fig: Figure, ax: Axes, points: Sequence[tuple[float, float, str]]) -> None:
    """Annotate points so that labels overlap neither each other, the legend, the lines, nor the frame.

    Greedy: for each point try a ring of offsets (right-above first) and keep the first whose
    box hits nothing; if none is free, take the least bad one (labels and legend count most).
    Layout is settled first and the labels are kept out of it, so positions stay valid.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas
    assert isinstance(canvas, FigureCanvasAgg)
    fig.draw_without_rendering()  # settles the constrained layout without rasterising
    renderer = canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    lines = _line_obstacles(ax)
    taken: list[Bbox] = []
    legend = ax.get_legend()
    if legend is not None:
        taken.append(legend.get_window_extent(renderer))
    offsets = [
        (6, 5, "left", "bottom"), (6, -5, "left", "top"), (-6, 5, "right", "bottom"), (-6, -5, "right", "top"),
        (0, 9, "center", "bottom"), (0, -9, "center", "top"), (10, 0, "left", "center"), (-10, 0, "right", "center"),
        (10, 16, "left", "bottom"), (10, -16, "left", "top"), (-10, 16, "right", "bottom"),
        (-10, -16, "right", "top"), (0, 24, "center", "bottom"), (0, -24, "center", "top"),
    ]  # fmt: skip
    for x, y, text in points:
        ann = ax.annotate(
            text, (x, y), xytext=(6, 5), textcoords="offset points", fontsize=8, color="0.1",
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
        )  # fmt: skip
        ann.set_in_layout(False)
        best: tuple[float, tuple[float, float, str, str]] | None = None
        for dx, dy, ha, va in offsets:
            ann.set_position((dx, dy))
            ann.set_horizontalalignment(ha)
            ann.set_verticalalignment(va)
            box = ann.get_window_extent(renderer)
            badness = (
                10 * sum(_overlap_area(box, other) for other in taken)
                + sum(_overlap_area(box, other) for other in lines)
                + 40 * (box.width * box.height - _overlap_area(box, frame))
            )
            if best is None or badness < best[0]:
                best = (badness, (dx, dy, ha, va))
            if badness == 0:
                break
        assert best is not None
        dx, dy, ha, va = best[1]
        ann.set_position((dx, dy))
        ann.set_horizontalalignment(ha)
        ann.set_verticalalignment(va)
        taken.append(ann.get_window_extent(renderer).expanded(1.05, 1.1))


def _overlap_area(a: Bbox, b: Bbox) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(w, 0.0) * max(h, 0.0)


# --- a. metric vs modelled cost ---------------------------------------------------------------


def _search_figure(model: Mapping[str, Any]) -> tuple[Figure, str, str, str]:
    search = model["search"]
    metric_name = model["metric_name"]
    cost_name = model["cost"].upper() if len(model["cost"]) <= 4 else model["cost"]
    design = design_label(model, model["design"])
    # One normalisation for every EDP in the report: TC running the original model (the tables'
    # "× TC"). Older documents without it fall back to the original model on the searched design.
    reference = finite(search.get("cost_reference"))
    baseline = reference if reference is not None and reference > 0 else finite(search["cost_baseline"])
    normalise = baseline is not None and baseline > 0
    by_tc = normalise and reference is not None and reference > 0
    if by_tc:
        xlabel = f"modelled {cost_name} on {design} (× TC running the original model)"
    elif normalise:
        xlabel = f"modelled {cost_name} / original model on {design} (1 = original)"
    else:
        xlabel = f"modelled {cost_name} on {design} ({search['cost_unit']})"

    points: dict[int, tuple[float, float, bool, str]] = {}
    for i, entry in enumerate(search["history"]):
        metric, cost = finite(entry["metric"]), finite(entry["cost"])
        if metric is None or cost is None:
            continue
        x = cost / baseline if normalise else cost  # type: ignore[operator]
        points[entry.get("index", i)] = (x, metric, bool(entry["ok"]), str(entry.get("step") or ""))

    fig = _figure(8.0, 4.8)
    ax = fig.add_subplot()
    title = f"{model['model']}: {metric_name} vs modelled {cost_name}, {len(points)} evaluated configurations"
    ax.set_title(_wrap(title, fig), fontsize=11)
    if not points:
        _empty(ax, f"no evaluated configuration has a finite {metric_name} and cost")
    else:
        ok = [p for p in points.values() if p[2]]
        bad = [p for p in points.values() if not p[2]]
        if ok:
            ax.scatter(
                [p[0] for p in ok],
                [p[1] for p in ok],
                s=28,
                color="C0",
                alpha=0.75,
                label="evaluated, meets constraint",
            )
        if bad:
            ax.scatter(
                [p[0] for p in bad],
                [p[1] for p in bad],
                s=36,
                marker="x",
                color="C3",
                label="evaluated, fails constraint",
            )
        front = sorted(points[i][:2] for i in search["pareto"] if i in points)
        if front:
            ax.step(
                [p[0] for p in front],
                [p[1] for p in front],
                where="post",
                color="C2",
                lw=1.8,
                marker="o",
                ms=4,
                label="Pareto front",
            )
        originals = [p for p in points.values() if p[3] == "original"]
        if originals:
            ax.scatter(
                [p[0] for p in originals],
                [p[1] for p in originals],
                s=70,
                marker="s",
                facecolor="none",
                edgecolor="k",
                lw=1.2,
                label="original model",
                zorder=4,
            )
        chosen = search["chosen"]
        if chosen in points:
            x, y = points[chosen][:2]
            ax.scatter(
                [x],
                [y],
                s=260,
                marker="*",
                color="gold",
                edgecolor="k",
                lw=0.9,
                zorder=5,
                label=f"chosen (#{chosen}): {x:.3g}, {y:.4f}",
            )
        ratio = constraint_ratio(model["constraint"])
        original = finite(model["scores"]["validation"]["original"])
        if ratio is not None and original is not None:
            threshold = ratio * original
            ax.axhline(
                threshold, color="0.35", ls="--", lw=1, label=f"constraint: {ratio:g} × original = {threshold:.4f}"
            )
        xs = [p[0] for p in points.values()]
        if min(xs) > 0 and max(xs) / min(xs) > 30:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best", framealpha=0.9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{metric_name} on validation set (fraction)")
    alt = (
        f"Scatter plot of validation {metric_name} against modelled {cost_name} for {len(points)} configurations "
        f"of {model['model']}, with the Pareto front, the chosen configuration and the accuracy constraint."
    )
    if by_tc:
        norm = f"× TC running the original model (= {baseline:.3g} {search['cost_unit']}), as in the tables"
    elif normalise:
        norm = f"normalised by the original model's {cost_name} on {design} (= {baseline:.3g} {search['cost_unit']})"
    else:
        norm = f"in {search['cost_unit']}"
    caption = (
        f"Every configuration the search evaluated: validation {metric_name} (fraction, higher is better) against "
        f"modelled {cost_name} on {design}, {norm}; lower is better. Crosses fail the constraint "
        f"({model['constraint']}); the green steps are the Pareto front; the star is the chosen configuration."
    )
    return fig, title, alt, caption


# --- b. per-layer density and sparsity ----------------------------------------------------------


def _common_prefix(names: Sequence[str]) -> str:
    """The dotted prefix all layer names share (``encoder.layer.``), dropped from axis labels."""
    if len(names) < 2:
        return ""
    prefix = names[0]
    for name in names[1:]:
        while not name.startswith(prefix):
            prefix = prefix[:-1]
    prefix = prefix[: prefix.rfind(".") + 1]
    return prefix if all(len(name) > len(prefix) for name in names) else ""


def _layers_figure(model: Mapping[str, Any]) -> tuple[Figure, str, str, str]:
    layers = model["layers"]
    title = f"{model['model']}: chosen series density and tensor sparsity per layer"
    series = [
        ("chosen series density", "density", "C0"),
        ("weight sparsity", "weight_sparsity", "C1"),
        ("activation sparsity", "activation_sparsity", "C2"),
    ]
    n = len(layers)
    horizontal = n > 14
    if horizontal:
        fig = _figure(8.0, max(3.5, 0.3 * n + 1.6))
    else:
        fig = _figure(max(6.0, min(MAX_WIDTH_IN, 1.5 + 0.7 * n)), 4.8)
    fig.suptitle(_wrap(title, fig), fontsize=11)
    ax = fig.add_subplot()
    prefix = _common_prefix([str(layer["name"]) for layer in layers])
    if not layers:
        _empty(ax, "no layers in this model's report")
    else:
        limit = 30 if horizontal else 18
        names = [short_name(str(layer["name"])[len(prefix) :], limit) for layer in layers]
        width = 0.8 / len(series)
        centers = list(range(n))
        for k, (label, key, color) in enumerate(series):
            pos = [c + (k - 1) * width for c in centers]
            values = [finite(layer[key]) or 0.0 for layer in layers]
            if horizontal:
                ax.barh(pos, values, height=width, color=color, label=label)
            else:
                ax.bar(pos, values, width=width, color=color, label=label)
        where = f" (names without the common prefix '{prefix}')" if prefix else ""
        if horizontal:
            labels = [f"{name} ({layer['series']})" for name, layer in zip(names, layers, strict=True)]
            ax.set_yticks(centers, labels, fontsize=8)
            ax.set_ylim(n - 0.5, -0.5)
            ax.set_xlim(0, 1.0)
            ax.set_xlabel("fraction (0–1): density = kept share of the tensor, sparsity = share of zeros")
            ax.set_ylabel(f"layer (chosen series){where}", fontsize=9)
            ax.grid(axis="x", alpha=0.3)
        else:
            labels = [f"{name}\n{layer['series']}" for name, layer in zip(names, layers, strict=True)]
            tilt = n > 6
            ax.set_xticks(centers, labels, fontsize=8, rotation=30 if tilt else 0, ha="right" if tilt else "center")
            ax.set_ylim(0, 1.0)
            ax.set_ylabel("fraction (0–1)")
            ax.set_xlabel(f"layer and chosen series{where}", fontsize=9)
            ax.grid(axis="y", alpha=0.3)
        fig.legend(fontsize=8, loc="outside lower center", ncols=3)
    alt = (
        f"Grouped bar chart over the {n} layers of {model['model']}: density of the chosen TASD series next to "
        f"the layer's weight sparsity and activation sparsity, all between 0 and 1."
    )
    caption = (
        "Per layer: effective density of the chosen series (share of the dense tensor kept; 1 = dense) next to the "
        "measured weight and activation sparsity (share of zeros). All three are fractions between 0 and 1."
    )
    return fig, title, alt, caption


# --- c. energy breakdown ----------------------------------------------------------------------


def _ordered_keys(maps: Sequence[Mapping[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for m in maps:
        for key in m:
            seen.setdefault(str(key), None)
    return list(seen)


def _energy_figure(model: Mapping[str, Any]) -> tuple[Figure, str, str, str]:
    rows = model["designs"]
    title = f"{model['model']}: modelled energy breakdown per design (µJ)"
    breakdowns = [row["energy_breakdown_pj"] for row in rows]
    levels = _ordered_keys(breakdowns)
    actions = _ordered_keys([a for b in breakdowns for a in b.values()])
    labels = [_bar_label(row) for row in rows]
    n = len(rows)
    fig = _figure(max(6.5, min(MAX_WIDTH_IN, 3.0 + 1.1 * n)), 7.2)
    fig.suptitle(_wrap(title, fig), fontsize=11)
    ax_level, ax_action = fig.subplots(2, 1, sharex=True)
    positions = list(range(n))
    for ax, keys, by_level in ((ax_level, levels, True), (ax_action, actions, False)):
        ax.set_title("by storage level / compute" if by_level else "by action type", fontsize=10)
        if not keys:
            _empty(ax, "the document has no energy breakdown for these designs")
            continue
        bottom = [0.0] * n
        for k, key in enumerate(keys):
            values = []
            for b in breakdowns:
                if by_level:
                    pj = sum(finite(v) or 0.0 for v in b.get(key, {}).values())
                else:
                    pj = sum(finite(level.get(key)) or 0.0 for level in b.values())
                values.append(pj / 1e6)
            ax.bar(
                positions,
                values,
                bottom=bottom,
                width=0.6,
                color=f"C{k % 10}",
                label=key,
                hatch=None if by_level else "//" if k % 2 else None,
                edgecolor="white",
                lw=0.5,
            )
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        ax.set_ylabel("energy (µJ)")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(
            fontsize=8,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            title="level" if by_level else "action",
            title_fontsize=8,
        )
    ax_action.set_xlim(-0.5, n - 0.5)
    ax_action.set_xticks(positions, labels, fontsize=8, rotation=25 if n > 5 else 0, ha="right" if n > 5 else "center")
    alt = (
        f"Two stacked bar charts of modelled energy in microjoules for {n} design and workload pairs of "
        f"{model['model']}: the top one split by storage level ({', '.join(levels)}), the bottom one by action "
        f"({', '.join(actions)})."
    )
    caption = (
        "Modelled energy per design and workload in µJ (absolute, not normalised), stacked by storage level "
        "(top) and by action type (bottom); both bars of one design sum to the same total."
    )
    return fig, title, alt, caption


# --- d. TASD error curve ----------------------------------------------------------------------


def _error_curve_figure(model: Mapping[str, Any]) -> tuple[Figure, str, str, str] | None:
    curve = model["error_curve"]
    if curve is None:
        return None
    points = sorted(curve["points"], key=lambda p: (p["effective_density"], -(finite(p["dropped_nonzeros"]) or 0)))
    title = f"{model['model']}: TASD error vs effective density, {curve['tensor']} of {curve['layer']}"
    fig = _figure(8.0, 4.8)
    ax = fig.add_subplot()
    ax.set_title(_wrap(title, fig), fontsize=11)
    if not points:
        _empty(ax, "no TASD series were measured for this layer")
    else:
        xs = [float(p["effective_density"]) for p in points]
        lines = [
            ("dropped nonzeros", "dropped_nonzeros", "o-", "C0"),
            ("dropped magnitude (L1 share)", "dropped_magnitude", "s--", "C1"),
            ("relative error ‖X−X̂‖/‖X‖", "rel_error", "^:", "C2"),
        ]
        for label, key, style, color in lines:
            ys = [finite(p.get(key)) for p in points]
            if all(y is None for y in ys):
                continue
            pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
            ax.plot([p[0] for p in pairs], [p[1] for p in pairs], style, color=color, ms=5, lw=1.2, label=label)
        permuted = sorted(curve.get("permuted_points") or [], key=lambda p: p["effective_density"])
        if permuted:  # the layout the search's `permute` option chose: what the chosen config really drops
            pairs = [(float(p["effective_density"]), finite(p["dropped_nonzeros"])) for p in permuted]
            pairs = [(x, y) for x, y in pairs if y is not None]
            ax.plot([p[0] for p in pairs], [p[1] for p in pairs], "D-", color="C3", ms=5, lw=1.6,
                    label="dropped nonzeros, permuted layout")
        ax.set_xlim(0, max(1.0, max(xs) * 1.05))
        ax.set_ylim(-0.02, 1.05)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper right", framealpha=0.9)
        grouped: dict[tuple[float, float], list[str]] = {}
        for p in points:
            y = finite(p["dropped_nonzeros"])
            if y is not None:
                grouped.setdefault((round(float(p["effective_density"]), 4), round(y, 3)), []).append(p["series"])
        _place_labels(fig, ax, [(x, y, " / ".join(names)) for (x, y), names in grouped.items()])
    ax.set_xlabel("effective density of the TASD series (kept share of the dense tensor, 0–1)")
    ax.set_ylabel("fraction of the original tensor (0–1)")
    alt = (
        f"Line chart for the {curve['tensor']} of layer {curve['layer']} of {model['model']}: share of nonzeros "
        f"and of magnitude that each of {len(points)} TASD series drops, against the series' effective density."
    )
    caption = (
        f"What each TASD series drops from the {curve['tensor']} of {curve['layer']}: share of the nonzeros and "
        "of the L1 magnitude not represented, and the relative error, all as fractions of the original tensor, "
        "against the series' effective density (1 = dense). Points are labelled with their series."
        + (" The red line is the share of nonzeros dropped in the permuted layout our permute option chooses"
           + (", keeping the weights with the largest activation-aware scores |W|·‖X‖"
              if "activation_score" in model.get("options", ()) else "")
           + (" (reconstruction then refits the weights kept, not which ones)"
              if "reconstruct" in model.get("options", ()) else "")
           + " (as the search did); the other lines are for the original layout, by magnitude."
           if curve.get("permuted_points") else "")
    )
    return fig, title, alt, caption


# --- e. design comparison -----------------------------------------------------------------------


def _designs_figure(model: Mapping[str, Any]) -> tuple[Figure, str, str, str]:
    rows = model["designs"]
    n = len(rows)
    title = f"{model['model']}: modelled cycles, energy and EDP per design (× TC)"
    fig = _figure(max(6.5, min(MAX_WIDTH_IN, 2.5 + 1.2 * n)), 4.8)
    ax = fig.add_subplot()
    ax.set_title(_wrap(title, fig), fontsize=11)
    metrics = [("cycles", "cycles_norm", "C0"), ("energy", "energy_norm", "C1"), ("EDP", "edp_norm", "C2")]
    width = 0.26
    top = 0.0
    for k, (label, key, color) in enumerate(metrics):
        values = [finite(row[key]) for row in rows]
        pos = [i + (k - 1) * width for i in range(n)]
        bars = ax.bar(pos, [v or 0.0 for v in values], width=width, color=color, label=label)
        ax.bar_label(
            bars,
            labels=["—" if v is None else f"{v:.2f}" for v in values],
            fontsize=7,
            padding=2,
            rotation=90 if n > 5 else 0,
        )
        top = max([top, *(v for v in values if v is not None)])
    ax.axhline(1.0, color="0.3", lw=1, ls="--", label="TC = 1")
    ax.set_ylim(0, max(1.2, top * 1.25))
    ax.set_xticks(
        list(range(n)),
        [_bar_label(row) for row in rows],
        fontsize=8,
        rotation=25 if n > 5 else 0,
        ha="right" if n > 5 else "center",
    )
    ax.set_ylabel("normalised to TC (× TC, lower is better)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    alt = (
        f"Grouped bar chart of modelled cycles, energy and energy-delay product for {n} design and workload pairs "
        f"of {model['model']}, each normalised to the dense TC design (dashed line at 1)."
    )
    caption = (
        "Modelled cycles, energy and EDP of each design and workload, normalised to TC running the original "
        "model (× TC; dashed line = 1; lower is better). Bar labels give the values."
    )
    return fig, title, alt, caption


_BUILDERS = (
    ("search", _search_figure),
    ("layers", _layers_figure),
    ("energy", _energy_figure),
    ("error-curve", _error_curve_figure),
    ("designs", _designs_figure),
)


def figure_stems(names: Sequence[str]) -> list[str]:
    """The file-name stem of each model's figures (a repeated name gets its position appended)."""
    stems: list[str] = []
    used: set[str] = set()
    for m, name in enumerate(names):
        stem = slug(name)
        if stem in used:
            stem = f"{stem}-{m + 1}"
        used.add(stem)
        stems.append(stem)
    return stems


def render_figure(model: Mapping[str, Any], index: int, stem: str, key: str) -> ReportFigure | None:
    """One plot (``key`` of :data:`_BUILDERS`) of ``model``, the ``index``-th model of the document."""
    build = dict(_BUILDERS)[key]
    built = build(model)
    if built is None:
        return None
    fig, title, alt, caption = built
    return ReportFigure(key, index, f"{stem}-{key}.png", title, alt, caption, _png(fig))


def make_figures(doc: Mapping[str, Any]) -> list[ReportFigure]:
    """Draw every plot of the report for ``doc`` (validated first) and return them in report order.

    The order per model is: search (metric vs cost), layers, energy breakdown, TASD error curve
    (absent when the model has no ``error_curve``), design comparison.
    """
    validate_doc(doc)
    stems = figure_stems([m["model"] for m in doc["models"]])
    figures = [render_figure(model, m, stems[m], key) for m, model in enumerate(doc["models"]) for key, _ in _BUILDERS]
    return [f for f in figures if f is not None]


class BackgroundFigures:
    """Draw a report's plots in worker processes while the caller goes on computing.

    Why: rasterising a plot costs a few tenths of a second and a report has ten; the demo hands each
    model's plots over as soon as the model is done, so they are drawn while the next model is
    searched (a 2-core machine runs both at once) and the last model's are drawn by all workers
    together. A worker is a fresh ``python -c`` interpreter that imports this module and draws what
    it reads from its stdin (length-prefixed pickles of plain data), never a fork of the caller
    (which holds torch's threads) and never a re-import of the caller's main script (which
    ``multiprocessing`` would do). Where no process starts (or ``workers=0``), the plots are drawn
    in this process by :meth:`result`. The figures are the same either way, byte for byte.
    """

    def __init__(self, workers: int = 2) -> None:
        self._workers: list[_Worker] = []
        self._local: list[tuple[Mapping[str, Any], int, str, str]] = []
        self._jobs = 0
        for _ in range(max(0, workers)):
            try:
                self._workers.append(_Worker())
            except OSError:  # a sandbox without processes: draw in-process
                break

    def submit(self, model: Mapping[str, Any], index: int, stem: str) -> None:
        """Start drawing every plot of ``model`` (the document's ``index``-th model)."""
        for key, _ in _BUILDERS:
            job = (dict(model), index, stem, key)
            if self._workers:
                self._workers[self._jobs % len(self._workers)].send(job)
            else:
                self._local.append(job)
            self._jobs += 1

    def result(self) -> list[ReportFigure]:
        """Every submitted plot, in report order (waits for the workers)."""
        out: list[ReportFigure | None] = []
        try:
            for w in self._workers:
                out += w.finish()
        finally:
            self.close()
        out += [render_figure(*job) for job in self._local]
        order = [k for k, _ in _BUILDERS]
        return sorted((f for f in out if f is not None), key=lambda f: (f.model_index, order.index(f.key)))

    def close(self) -> None:
        """Stop the workers (what they were drawing is dropped)."""
        for w in self._workers:
            w.kill()
        self._workers = []

    def __enter__(self) -> BackgroundFigures:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Worker:
    """One drawing process and a thread that collects what it sends back (so its pipe never fills)."""

    def __init__(self) -> None:
        import os
        import subprocess
        import sys
        import threading
        from pathlib import Path

        root = str(Path(__file__).resolve().parents[2])  # the folder holding the tasder package
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])}
        self._proc = subprocess.Popen([sys.executable, "-c", "from tasder.report.figures import _serve; _serve()"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, start_new_session=True)
        self._sent = 0
        self._results: list[Any] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        import pickle

        assert self._proc.stdout is not None
        while True:
            head = self._proc.stdout.read(8)
            if len(head) < 8:
                return
            self._results.append(pickle.loads(self._proc.stdout.read(int.from_bytes(head, "little"))))

    def send(self, job: tuple[Any, ...]) -> None:
        import pickle

        assert self._proc.stdin is not None
        data = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
        self._proc.stdin.write(len(data).to_bytes(8, "little") + data)
        self._proc.stdin.flush()
        self._sent += 1

    def finish(self) -> list[ReportFigure | None]:
        assert self._proc.stdin is not None
        self._proc.stdin.close()  # end of jobs: the worker exits when it has sent the last one
        self._reader.join()
        self._proc.wait()
        errors = [r for r in self._results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        if len(self._results) != self._sent:
            raise RuntimeError(f"a report drawing process stopped early (exit code {self._proc.returncode})")
        return list(self._results)

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        for pipe in (self._proc.stdin, self._proc.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()


def _serve() -> None:
    """A drawing worker's loop: jobs from stdin, figures (or the exception) to stdout, until EOF."""
    import pickle
    import signal
    import sys

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the caller, which ends the workers
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = stdin.read(8)
        if len(head) < 8:
            return
        job = pickle.loads(stdin.read(int.from_bytes(head, "little")))
        try:
            result: Any = render_figure(*job)
        except Exception as exc:  # sent back and raised in the caller, which names it
            result = RuntimeError(f"drawing the {job[3]} plot of {job[0].get('model')!r}: {type(exc).__name__}: {exc}")
        data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        stdout.write(len(data).to_bytes(8, "little") + data)
        stdout.flush()
