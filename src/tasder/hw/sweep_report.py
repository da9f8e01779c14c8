"""The report folder of a design-space sweep: tables, fronts, plots, and the front's design files.

::

    OUT/
      report.html          self-contained (inline CSS, plots as data: URIs); open it in a browser
      report.md            the same, linking figures/*.png
      summary.json         counts, filtered reasons, fronts, the best design per workload and objective
      results.jsonl        one row per (valid design, workload): parameters, area, cycles, energy, EDP
      results.csv          the same rows, flat
      designs.jsonl        every combination: valid or filtered (with the reason), area, SRAM
      designs/<id>.yaml    each design on a front, as an ordinary design file (tasder hw eval --arch …)
      figures/front-<workload>-<objective>.png        objective vs area, the front highlighted
      figures/sensitivity-<workload>-<objective>.png  best and median objective per parameter value
      sweep.yaml           the spec that produced it

Everything is rendered in memory, written into a temporary folder next to ``OUT`` and moved into
place at the end, so a failure or Ctrl-C never leaves a half-written report; a previous sweep report
at ``OUT`` is replaced, any other non-empty folder is refused (:func:`check_output_dir`). Plots are
drawn on matplotlib's Agg canvas, not through pyplot (the caller's backend stays untouched).
"""

from __future__ import annotations

import base64
import contextlib
import csv
import html
import io
import json
import math
import os
import shutil
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import yaml

from tasder.hw.sweep import METRIC_FIELDS, SweepResult

__all__ = ["MARKER", "check_output_dir", "summary", "write_sweep_report"]

#: The file that marks a folder as a sweep report (so a rerun may replace it).
MARKER = "summary.json"
_DPI = 110
_UNITS = {"edp": "EDP (J·s)", "energy": "energy (µJ)", "latency": "latency (ms)"}
_SCALE = {"edp": 1.0, "energy": 1e-6, "latency": 1e3}  # row value → plotted unit


def check_output_dir(path: Path) -> None:
    """Raise now (not after hours of mapping) if ``path`` cannot take the report: its parent must be
    a writable folder, and ``path`` absent, empty, or an earlier sweep report."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(2, "No such directory", str(parent))
    if not os.access(parent, os.W_OK):
        raise PermissionError(13, "Permission denied", str(parent))
    if path.exists():
        if not path.is_dir():
            raise NotADirectoryError(20, "Not a directory (the sweep report is a folder)", str(path))
        if any(path.iterdir()) and not (path / MARKER).is_file():
            raise FileExistsError(17, "Folder exists and is not a sweep report; pick another --output or empty it",
                                  str(path))


def summary(result: SweepResult) -> dict[str, Any]:
    """The JSON summary: counts, filtered kinds, fronts and the best row per workload and objective."""
    spec = result.spec
    best = {w.name: {o: _brief(result.best(w.name, o)) for o in spec.objectives} for w in spec.workloads}
    from tasder.hw.area import default_area_table

    return {
        "sweep": spec.name, "spec": spec.source, "base": spec.base_name,
        "parameters": {p.name: list(p.labels) for p in spec.parameters},
        "workloads": [{"name": w.name, "network": w.network.name, "layers": len(w.network.layers),
                       "tasd": None if w.tasd is None else vars(w.tasd)} for w in spec.workloads],
        "objectives": list(spec.objectives),
        "mapper": {"budget": spec.mapper.budget, "objective": spec.mapper.objective, "seed": spec.mapper.seed},
        "constraints": {"sram_budget_bytes": spec.sram_budget_bytes, "max_area_mm2": spec.max_area_mm2},
        "designs": len(result.designs), "valid": sum(d.valid for d in result.designs),
        "filtered": result.filtered(), "fronts": result.fronts, "best": best,
        "run": None if result.stats is None else result.stats.to_dict(), "seconds": result.seconds,
        "area_sources": default_area_table().sources,
    }


def _brief(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    keys = ("design", "params", "area_mm2", "cycles", "latency_s", "energy_pj", "edp_js", "utilization", "operands")
    return {k: row[k] for k in keys}


# ---------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return buf.getvalue()


def _color_parameter(result: SweepResult) -> str | None:
    """The parameter whose values colour the scatter: a categorical one (sparse features, patterns,
    formats, SAFs) with 2–10 values, else any with 2–10 values."""
    params = [p for p in result.spec.parameters if 2 <= len(p.values) <= 10]
    for p in params:
        if p.kind in ("design", "patterns", "format", "safs"):
            return p.name
    return params[0].name if params else None


def _front_png(result: SweepResult, workload: str, objective: str) -> bytes:
    rows = [r for r in result.rows if r["workload"] == workload]
    key, scale = METRIC_FIELDS[objective], _SCALE[objective]
    fig = _figure(7.5, 4.6)
    ax = fig.add_subplot()
    colour_by = _color_parameter(result)
    if colour_by is not None:
        labels = list(dict.fromkeys(r["params"][colour_by] for r in rows))
        for i, lab in enumerate(labels):  # a marker per value too: equal results would hide a colour
            pts = [r for r in rows if r["params"][colour_by] == lab]
            ax.scatter([r["area_mm2"] for r in pts], [r[key] * scale for r in pts], s=18, alpha=0.6,
                       color=f"C{i % 10}", marker="os^Dv<>PXh"[i % 10], label=f"{colour_by}={lab}", linewidths=0)
    else:
        ax.scatter([r["area_mm2"] for r in rows], [r[key] * scale for r in rows], s=14, alpha=0.5, color="0.5",
                   label="designs", linewidths=0)
    ids = result.fronts[workload][objective]
    by_id = {r["design"]: r for r in rows}
    front = [by_id[i] for i in ids]
    ax.step([r["area_mm2"] for r in front], [r[key] * scale for r in front], where="post", color="black", lw=1.2,
            label="Pareto front")
    ax.scatter([r["area_mm2"] for r in front], [r[key] * scale for r in front], s=36, facecolors="none",
               edgecolors="black", linewidths=1.2)
    best = result.best(workload, objective)
    if best is not None:
        ax.annotate(f"best {objective}: {best['design']}", (best["area_mm2"], best[key] * scale), xytext=(8, 8),
                    textcoords="offset points", fontsize=8,
                    arrowprops={"arrowstyle": "-", "color": "0.3", "lw": 0.8})
    values = [r[key] * scale for r in rows if r[key] > 0]
    if values and max(values) / min(values) > 20:
        ax.set_yscale("log")
    ax.set_xlabel("area (mm², 45 nm)")
    ax.set_ylabel(f"{_UNITS[objective]} on {workload} (lower is better)")
    ax.set_title(textwrap.fill(f"{result.spec.name}: {objective} vs area on {workload} ({len(rows)} designs, "
                               f"{len(front)} on the front)", 80), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best", markerscale=1.5)
    return _png(fig)


def _sensitivity_png(result: SweepResult, workload: str, objective: str) -> bytes | None:
    sens = result.sensitivity(workload, objective)
    if not sens:
        return None
    best_row = result.best(workload, objective)
    assert best_row is not None
    ref = best_row[METRIC_FIELDS[objective]]
    n = len(sens)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig = _figure(min(9.0, 3.0 * cols + 0.5), 2.6 * rows + 0.4)
    for k, (name, entries) in enumerate(sens.items()):
        ax = fig.add_subplot(rows, cols, k + 1)
        xs = list(range(len(entries)))
        bests = [e["best"] / ref if e["best"] is not None else math.nan for e in entries]
        meds = [e["median"] / ref if e["median"] is not None else math.nan for e in entries]
        ax.plot(xs, bests, "o-", color="C0", label="best")
        ax.plot(xs, meds, "s--", color="C1", mfc="none", label="median")
        ax.set_xticks(xs, [textwrap.shorten(e["value"], 14, placeholder="…") for e in entries], rotation=30,
                      fontsize=7, ha="right")
        ax.set_title(name, fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(alpha=0.3)
        if k == 0:
            ax.set_ylabel(f"{objective} / best", fontsize=8)
            ax.legend(fontsize=7)
    fig.suptitle(f"sensitivity on {workload}: {objective} of the designs taking each value, ÷ the sweep's best",
                 fontsize=9)
    return _png(fig)


# ---------------------------------------------------------------------------------------------
# Tables and pages
# ---------------------------------------------------------------------------------------------


def _fmt(objective: str, row: dict[str, Any]) -> str:
    v = row[METRIC_FIELDS[objective]] * _SCALE[objective]
    return f"{v:.4g}"


def _params_text(params: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "(base design)"


def _tables(result: SweepResult) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of every table, shared by the markdown and HTML pages."""
    spec = result.spec
    out = []
    s = summary(result)
    counts = [["designs (combinations)", str(s["designs"])], ["valid designs", str(s["valid"])]]
    if result.stats is not None:
        st = result.stats
        counts += [["mapper searches", f"{st.unique} distinct of {st.tasks}"],
                   ["answered from the cache", str(st.cached)], ["computed", f"{st.computed} ({st.executor}, "
                                                                            f"{st.workers} worker(s))"],
                   ["wall time", f"{result.seconds:.1f} s"]]
    out.append(("Sweep", ["", ""], counts))
    filt = result.filtered()
    if filt:
        out.append(("Filtered combinations", ["count", "reason (kind)", "example"],
                    [[str(v["count"]), k, v["example"]] for k, v in filt.items()]))
    for w in spec.workloads:
        for obj in spec.objectives:
            by_id = {r["design"]: r for r in result.rows if r["workload"] == w.name}
            rows = []
            for i in result.fronts[w.name][obj]:
                r = by_id[i]
                rows.append([i, _params_text(r["params"]), f"{r['area_mm2']:.3f}", _fmt(obj, r),
                             f"{r['cycles']:,.0f}", f"{r['energy_pj'] / 1e6:,.2f}", f"{r['utilization']:.2f}",
                             "; ".join(r["operands"])])
            out.append((f"Pareto front: {obj} vs area on {w.name}",
                        ["design", "parameters", "area mm²", _UNITS[obj], "cycles", "energy µJ", "util.",
                         "operands (A / B)"], rows))
    return out


def _markdown(result: SweepResult, figures: list[tuple[str, str]]) -> str:
    spec = result.spec
    lines = [f"# Design-space sweep: {spec.name}", "",
             f"Base design `{spec.base_name}`; parameters: "
             + (", ".join(f"`{p.name}` ({len(p.values)})" for p in spec.parameters) or "none")
             + f"; workloads: {', '.join(w.name for w in spec.workloads)}; mapper budget {spec.mapper.budget} per "
               f"layer (objective {spec.mapper.objective}, seed {spec.mapper.seed}). Areas at 45 nm from "
               f"`tasder/hw/data/area_45nm.yaml` (sources cited there); bandwidth is not priced in area.", ""]
    for w in spec.workloads:
        for obj in spec.objectives:
            b = result.best(w.name, obj)
            if b is not None:
                lines.append(f"* **Best {obj} on {w.name}**: `{b['design']}` ({_params_text(b['params'])}): "
                             f"{_fmt(obj, b)} {_UNITS[obj]}, {b['area_mm2']:.3f} mm².")
    lines.append("")
    for title, header, rows in _tables(result):
        lines += [f"## {title}", ""]
        if header == ["", ""]:
            lines += ["| | |", "|---|---|"]
        else:
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
        lines.append("")
    for title, name in figures:
        lines += [f"## {title}", "", f"![{title}](figures/{name})", ""]
    lines += ["Files: `results.jsonl`/`results.csv` (every valid design × workload), `designs.jsonl` (every "
              "combination, with the reason for the filtered ones), `designs/<id>.yaml` (the designs on a front: "
              "`tasder hw eval --arch designs/<id>.yaml …`), `summary.json`, `sweep.yaml` (the spec).", ""]
    return "\n".join(lines)


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1000px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.85em}
th,td{border-bottom:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}th{background:#f4f4f4}
img{max-width:100%;height:auto}code{background:#f4f4f4;padding:0 .2em}h1{font-size:1.5em}h2{font-size:1.15em;
margin-top:1.6em}"""


def _html(result: SweepResult, figures: list[tuple[str, str, bytes]]) -> str:
    md_intro = _markdown(result, []).split("\n## ")[0].split("\n", 2)[2]
    esc = html.escape
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{esc(result.spec.name)} — tasder hw sweep</title><style>{_CSS}</style></head><body>",
             f"<h1>Design-space sweep: {esc(result.spec.name)}</h1>"]
    for para in md_intro.strip().split("\n\n"):
        items = [ln[2:] for ln in para.splitlines() if ln.startswith("* ")]
        if items:
            parts.append("<ul>" + "".join(f"<li>{_inline(esc(i))}</li>" for i in items) + "</ul>")
        else:
            parts.append(f"<p>{_inline(esc(para))}</p>")
    for title, header, rows in _tables(result):
        parts.append(f"<h2>{esc(title)}</h2><table>")
        if header != ["", ""]:
            parts.append("<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows]
        parts.append("</table>")
    for title, _, png in figures:
        data = base64.b64encode(png).decode("ascii")
        parts.append(f'<h2>{esc(title)}</h2><img alt="{esc(title)}" src="data:image/png;base64,{data}">')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _inline(text: str) -> str:
    """``code`` and **bold** of the markdown intro, as HTML (input already escaped)."""
    import re

    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def _csv(rows: list[dict[str, Any]], params: list[str]) -> str:
    buf = io.StringIO()
    cols = ["design", "workload", *params, "area_mm2", "sram_kib", "mac_units", "cycles", "latency_s", "energy_pj",
            "edp_js", "utilization", "front", "operands"]
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow([r["design"], r["workload"], *(r["params"].get(p, "") for p in params),
                    *(repr(r[k]) if isinstance(r[k], float) else r[k]
                      for k in ("area_mm2", "sram_kib", "macs", "cycles", "latency_s", "energy_pj", "edp_js",
                                "utilization")),
                    "+".join(r["front"]), "; ".join(r["operands"])])
    return buf.getvalue()


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _design_yaml(result: SweepResult, design_id: str) -> str:
    d = next(x for x in result.designs if x.id == design_id)
    head = (f"# {design_id} of the sweep {result.spec.name!r} (tasder hw sweep): base {result.spec.base_name} with "
            f"{_params_text(d.params)}.\n# Area {d.area.mm2:.3f} mm² at 45 nm (tasder.hw.area).\n"
            if d.area is not None else "")
    return head + yaml.safe_dump(_plain(d.doc), sort_keys=False, default_flow_style=None, width=110)


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def write_sweep_report(result: SweepResult, out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Write the report folder (see the module doc); returns ``{"dir", "html", "markdown", "summary",
    "results", "figures": [...], "designs": [...]}`` with the final paths."""
    out = Path(out_dir)
    check_output_dir(out)
    spec = result.spec
    figures: list[tuple[str, str, bytes]] = []
    for w in spec.workloads:
        for obj in spec.objectives:
            name = f"front-{_slug(w.name)}-{obj}.png"
            figures.append((f"{obj} vs area on {w.name}", name, _front_png(result, w.name, obj)))
            sens = _sensitivity_png(result, w.name, obj)
            if sens is not None:
                figures.append((f"Sensitivity of {obj} on {w.name}", f"sensitivity-{_slug(w.name)}-{obj}.png", sens))
    params = [p.name for p in spec.parameters]
    files: dict[str, bytes] = {
        "report.md": _markdown(result, [(t, n) for t, n, _ in figures]).encode(),
        "report.html": _html(result, figures).encode(),
        MARKER: (json.dumps(summary(result), indent=2, ensure_ascii=False, default=str) + "\n").encode(),
        "results.jsonl": "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in result.rows).encode(),
        "results.csv": _csv(result.rows, params).encode(),
        "designs.jsonl": "".join(json.dumps({
            "design": d.id, "params": d.params, "status": "valid" if d.valid else "filtered", "reason": d.reason,
            "area_mm2": None if d.area is None else d.area.mm2, "sram_kib": d.sram_bytes / 1024 if d.valid else None,
        }, ensure_ascii=False) + "\n" for d in result.designs).encode(),
        "sweep.yaml": Path(spec.source).read_bytes(),
    }
    for _, name, png in figures:
        files[f"figures/{name}"] = png
    front_ids = sorted({i for per in result.fronts.values() for ids in per.values() for i in ids})
    for i in front_ids:
        files[f"designs/{i}.yaml"] = _design_yaml(result, i).encode()
    parent = out.parent if str(out.parent) else Path(".")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent))
    try:
        for rel, data in files.items():
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        old = None
        if out.exists():  # an earlier report (check_output_dir vouched): swap, then drop the old one
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=parent))
            os.replace(out, old / "report")
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        raise
    return {"dir": out, "html": out / "report.html", "markdown": out / "report.md", "summary": out / MARKER,
            "results": out / "results.jsonl", "figures": [out / "figures" / n for _, n, _ in figures],
            "designs": [out / "designs" / f"{i}.yaml" for i in front_ids]}
