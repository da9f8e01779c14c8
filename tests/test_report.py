"""The demo report renderer: files, self-containment, units and boundary validation.

The document is a synthetic but realistic two-model fixture (a small CNN searched on weights,
a transformer with long layer names searched on activations) so the tests exercise both the
vertical and the horizontal per-layer chart, NaN/Inf handling and unit labels without running
the demo pipeline. Rendering happens once per module: it is the slow part.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import math
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import matplotlib
import pytest

from tasder.report import figures as figures_module
from tasder.report import make_figures, render_html, render_markdown_report, write_report
from tasder.report.figures import constraint_ratio

BACKEND_BEFORE = matplotlib.get_backend()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


def _breakdown(scale: float) -> dict[str, dict[str, float]]:
    return {
        "DRAM": {"read": 9.0e7 * scale, "write": 1.1e7 * scale, "update": 0.0, "leakage": 1.5e6 * scale},
        "L2": {"read": 3.0e7 * scale, "write": 6.0e6 * scale, "update": 2.0e6 * scale, "leakage": 8.0e5 * scale},
        "RF": {"read": 1.2e7 * scale, "write": 4.0e6 * scale, "update": 3.0e6 * scale, "leakage": 2.0e5 * scale},
        "MAC": {"mac": 4.0e7 * scale},
    }


def _designs(tasd_scale: float) -> list[dict[str, Any]]:
    rows = [
        ("tc", "TC", "original", 1.0, 1.0),
        ("stc", "STC", "original", 0.92, 0.95),
        ("ttc-vegeta-m8", "TTC-VEGETA-m8", "original", 1.02, 1.05),
        ("ttc-vegeta-m8", "TTC-VEGETA-m8", "TASD config", tasd_scale, tasd_scale * 1.1),
        ("highlight", "HighLight", "TASD config", tasd_scale * 1.2, tasd_scale * 1.25),
    ]
    out = []
    for design, label, workload, c, e in rows:
        cycles, energy = 1.0e6 * c, 2.0e8 * e
        out.append(
            {
                "design": design,
                "label": label,
                "workload": workload,
                "cycles": cycles,
                "energy_pj": energy,
                "edp_js": cycles / 1e9 * energy * 1e-12,
                "cycles_norm": c,
                "energy_norm": e,
                "edp_norm": c * e,
                "energy_breakdown_pj": _breakdown(e),
                "extra_key_to_ignore": [1, 2, 3],
            }
        )
    return out


def _history(n: int, baseline: float) -> list[dict[str, Any]]:
    out = [{"index": 0, "metric": 0.93, "cost": baseline, "ok": True, "step": "original", "layers": {}}]
    for i in range(1, n):
        density = 1.0 - i / n
        metric = 0.93 - 0.05 * (1 - density) ** 3 - 0.002 * (i % 3)
        out.append(
            {
                "index": i,
                "metric": metric,
                "cost": baseline * (0.15 + 0.85 * density) * (1 + 0.05 * (i % 4)),
                "ok": metric >= 0.99 * 0.93,
                "step": "greedy",
                "layers": {"conv2": f"{max(1, 8 - i // 2)}:8"},
            }
        )
    out.append({"index": n, "metric": None, "cost": float("nan"), "ok": False, "step": "skipped", "layers": None})
    return out


def _error_curve(layer: str, tensor: str) -> dict[str, Any]:
    series = [("1:8", 0.125), ("2:16", 0.125), ("2:8", 0.25), ("1:4", 0.25), ("2:8+1:8", 0.375), ("4:8", 0.5)]
    series += [("2:4", 0.5), ("4:8+2:8", 0.75), ("6:8", 0.75), ("dense", 1.0)]
    points = []
    for name, density in series:
        tweak = 0.02 if "16" in name or "+" in name else 0.0
        dropped = max(0.0, 0.86 * (1 - density) - tweak)
        points.append(
            {
                "series": name,
                "effective_density": density,
                "dropped_nonzeros": dropped,
                "dropped_magnitude": dropped**2.2,
                "rel_error": math.sqrt(dropped**2.2),
            }
        )
    return {"layer": layer, "tensor": tensor, "points": points}


def make_doc() -> dict[str, Any]:
    """A two-model document shaped like the demo pipeline's output."""
    cnn_layers = [
        ("conv1", "Conv2d", 2.1e6, "dense", 1.0, 1.0, 0.10, 0.0),
        ("conv2", "Conv2d", 75.5e6, "2:8", 0.25, 0.25, 0.865, 0.22),
        ("conv3", "Conv2d", 30.2e6, "1:8", 0.125, 0.125, 0.95, 0.41),
        ("fc1", "Linear", 9.4e6, "2:8+1:8", 0.375, 0.375, 0.90, 0.55),
        ("fc2", "Linear", 0.8e6, "dense", 1.0, 1.0, 0.50, 0.60),
    ]
    minilm_layers = []
    for block in range(3):
        for part, macs in (
            ("attention.self.query", 18.9e6),
            ("attention.self.key", 18.9e6),
            ("attention.self.value", 18.9e6),
            ("attention.output.dense", 18.9e6),
            ("intermediate.dense", 75.5e6),
            ("output.dense", 75.5e6),
        ):
            series = ["dense", "4:8", "2:8+2:8", "6:8"][(block + len(part)) % 4]
            density = {"dense": 1.0, "4:8": 0.5, "2:8+2:8": 0.5, "6:8": 0.75}[series]
            minilm_layers.append(
                (f"encoder.layer.{block}.{part}", "Linear", macs, series, density, density, 0.0, 0.35 + 0.1 * block)
            )

    def model(name: str, mode: str, metric: str, layers: list[tuple], curve: dict[str, Any]) -> dict[str, Any]:
        baseline = 2.142e-7  # EDP of the original model on ttc-vegeta-m8 in _designs()
        return {
            "model": name,
            "description": f"{name}: a synthetic fixture model for the report tests",
            "mode": mode,
            "target": "ttc-vegeta-m8",
            "method": "cost-aware",
            "cost": "edp",
            "design": "ttc-vegeta-m8",
            "constraint": "≥ 0.99 × original",
            "metric_name": metric,
            "scores": {
                "validation": {"original": 0.93, "transformed": 0.925},
                "test": {"original": 0.925, "transformed": 0.92},
            },
            "macs": {"dense": 118_000_000, "transformed": 23_000_000.0},
            "search": {
                "evaluations": 17,
                "seconds": 12.3,
                "history": _history(16, baseline),
                "pareto": [0, 3, 7, 12],
                "chosen": 7,
                "cost_unit": "J·s",
                "cost_baseline": baseline,
            },
            "layers": [
                {
                    "name": n,
                    "kind": k,
                    "dense_macs": macs,
                    "series": s,
                    "density": d,
                    "executed": ex,
                    "weight_sparsity": ws,
                    "activation_sparsity": acts,
                    "damage": None if s == "dense" else 0.031,
                }
                for n, k, macs, s, d, ex, ws, acts in layers
            ],
            "designs": _designs(0.41),
            "error_curve": curve,
            "config_file": f"{name}.tasd.yaml",
        }

    doc = {
        "title": "tasder demo report",
        "tasder_version": "0.1.0",
        "created": "2026-11-23T18:30:00Z",
        "machine": "Linux x86_64, 2 CPUs, torch 2.13.0 (CPU)",
        "command": "tasder demo --quick",
        "seconds": 123.4,
        "quick": False,
        "modelled_vs_measured": {
            "measured": ["accuracy and recall@1 on held-out data", "weight and activation sparsity", "wall time"],
            "modelled": ["cycles, energy, EDP: tasder.hw analytical model of each design, not measured"],
        },
        "models": [
            model("digits-cnn-sparse-95", "W", "accuracy", cnn_layers, _error_curve("conv3", "weight")),
            model("all-MiniLM-L6-v2 <sts|b>", "A", "recall@1", minilm_layers, _error_curve("encoder.layer.0", "x")),
        ],
    }
    doc["models"][0]["layers"][1]["damage"] = float("inf")  # non-finite values render as "—"
    return doc


def _layout_only(fig: Any) -> bytes:
    """Every figure laid out (titles, labels, legends placed) but not rasterised: rasterising ten
    plots is most of a report's time, and test_figures_rasterise_to_real_pngs checks it once."""
    fig.draw_without_rendering()
    return _TINY_PNG


#: A valid 1×1 PNG (what the report tests embed instead of rasterising every plot).
_TINY_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    doc = make_doc()
    out = tmp_path_factory.mktemp("report") / "nested" / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(figures_module, "_png", _layout_only)
        return doc, write_report(doc, out)


@pytest.fixture(scope="module")
def written_with_pictures(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    doc = make_doc()
    return doc, write_report(doc, tmp_path_factory.mktemp("report-pictures"))


def test_figures_rasterise_to_real_pngs(monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.image

    real, seen = figures_module._png, []

    def first_for_real(fig: Any) -> bytes:  # one plot rasterised for real, the others only laid out
        seen.append(fig)
        return real(fig) if len(seen) == 1 else _layout_only(fig)

    monkeypatch.setattr(figures_module, "_png", first_for_real)
    doc = make_doc()
    doc["models"] = doc["models"][:1]
    png = make_figures(doc)[0].png
    assert png.startswith(PNG_MAGIC)
    pixels = matplotlib.image.imread(io.BytesIO(png), format="png")
    assert pixels.ndim == 3 and min(pixels.shape[:2]) > 100 and pixels.std() > 0  # a picture, not a blank


class _TagChecker(HTMLParser):
    """Collects tags, checks every non-void element closes in order, and records img/href URLs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.imgs: list[dict[str, str | None]] = []
        self.urls: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "img":
            self.imgs.append(attr)
        for key in ("src", "href"):
            if attr.get(key):
                self.urls.append(str(attr[key]))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            self.errors.append(f"closing void element </{tag}>")
        elif not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> does not close <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> _TagChecker:
    checker = _TagChecker()
    checker.feed(page)
    checker.close()
    return checker


def test_writes_every_file(written: tuple[dict[str, Any], dict[str, Any]]) -> None:
    _, paths = written
    assert set(paths) == {"html", "markdown", "json", "figures"}
    for key in ("html", "markdown", "json"):
        assert Path(paths[key]).is_file()
    assert len(paths["figures"]) == 10  # five plots for each of the two models
    for fig in paths["figures"]:
        data = Path(fig).read_bytes()
        assert data.startswith(PNG_MAGIC)
        assert Path(fig).parent.name == "figures"
    leftovers = [p.name for p in Path(paths["html"]).parent.rglob("*.tmp")]
    assert leftovers == []


def test_html_is_balanced_and_self_contained(written: tuple[dict[str, Any], dict[str, Any]]) -> None:
    _, paths = written
    page = Path(paths["html"]).read_text(encoding="utf-8")
    checker = _parse(page)
    assert checker.errors == []
    assert checker.stack == []
    assert not re.search(r"https?://", page)
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
    assert checker.imgs, "the page has no images"
    for img in checker.imgs:
        src = str(img["src"])
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1], validate=True).startswith(PNG_MAGIC)
        assert img.get("alt"), "every image needs alt text"
    assert all(url.startswith("data:") for url in checker.urls)
    assert page.count("<figcaption>") == len(checker.imgs) == 10


def test_html_escapes_document_text(written: tuple[dict[str, Any], dict[str, Any]]) -> None:
    _, paths = written
    page = Path(paths["html"]).read_text(encoding="utf-8")
    assert "<sts|b>" not in page
    assert "all-MiniLM-L6-v2 &lt;sts|b&gt;" in page


def test_numbers_carry_units(written: tuple[dict[str, Any], dict[str, Any]]) -> None:
    _, paths = written
    for key in ("html", "markdown"):
        text = Path(paths[key]).read_text(encoding="utf-8")
        if key == "html":
            text = " ".join(_parse(text).text)  # the words, not the base64 of the plots
        for unit in ("× TC", "J·s", "µJ", "% of original", "% cut", "M MACs", "123.4 s (2 min 3 s)"):
            assert unit in text, f"{unit!r} missing from {key}"
        assert not re.search(r"\b(nan|inf|None)\b", text, flags=re.IGNORECASE)


def test_summary_numbers(written: tuple[dict[str, Any], dict[str, Any]]) -> None:
    _, paths = written
    page = Path(paths["html"]).read_text(encoding="utf-8")
    assert "99.46 % of original" in page  # 0.925 / 0.93
    assert "19.5 % of dense (80.5 % cut)" in page  # 23 M of 118 M MACs
    assert "0.410 × TC" in page  # the TASD config's cycles on the search design
    assert "Threshold: 0.99 × 0.9300 = 0.9207." in page


def test_markdown_links_existing_figures(written: tuple[dict[str, Any], dict[str, Any]]) -> None:
    _, paths = written
    md_path = Path(paths["markdown"])
    text = md_path.read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) == 10
    for link in links:
        assert not link.startswith(("/", "http"))
        assert (md_path.parent / link).is_file()
    assert {(md_path.parent / link).resolve() for link in links} == {Path(p).resolve() for p in paths["figures"]}
    assert r"all-MiniLM-L6-v2 \<sts\|b\>" in text  # escaped: a `|` must not split a table cell
    for section in ("## digits-cnn-sparse-95: TASD-W (weights)", "### Design comparison", "### Per-layer choices"):
        assert section in text
    assert "| ---: |" in text or "---: |" in text  # numbers right-aligned


def test_results_json_round_trips_with_nulls(written: tuple[dict[str, Any], dict[str, Any]]) -> None:
    doc, paths = written
    loaded = json.loads(Path(paths["json"]).read_text(encoding="utf-8"))
    assert loaded["models"][0]["layers"][1]["damage"] is None  # was inf
    assert loaded["models"][0]["search"]["history"][-1]["cost"] is None  # was nan
    assert loaded["models"][1]["model"] == doc["models"][1]["model"]
    assert loaded["models"][0]["designs"][0]["extra_key_to_ignore"] == [1, 2, 3]
    assert math.isinf(doc["models"][0]["layers"][1]["damage"]), "the caller's document must not be modified"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["models"][0].pop("designs"), r"doc['models'][0]['designs']: missing"),
        (lambda d: d.pop("title"), r"doc['title']: missing"),
        (lambda d: d["models"][1]["scores"]["test"].pop("original"), r"doc['models'][1]['scores']['test']['original']"),
        (lambda d: d["models"][0]["layers"][2].pop("series"), r"doc['models'][0]['layers'][2]['series']: missing"),
        (lambda d: d["models"][0]["designs"][0].update(cycles="many"), "expected a number; got 'many'"),
        (lambda d: d["models"][0]["search"].update(chosen=99), "['chosen']: 99 is not an index"),
        (lambda d: d.update(models=[]), "doc['models']: expected at least one entry"),
    ],
)
def test_bad_document_raises_and_writes_nothing(tmp_path: Path, mutate: Any, message: str) -> None:
    doc = make_doc()
    mutate(doc)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(ValueError) as info:
        write_report(doc, out)
    assert message in str(info.value)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    with pytest.raises(ValueError):
        render_html(doc, figures=[])
    with pytest.raises(ValueError):
        render_markdown_report(doc, figures=[])


def test_missing_out_dir_not_created_on_error(tmp_path: Path) -> None:
    doc = make_doc()
    del doc["models"][0]["designs"]
    with pytest.raises(ValueError, match=re.escape("doc['models'][0]['designs']: missing")):
        write_report(doc, tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_optional_parts_may_be_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    # Lay the figures out but skip rasterising them: this test is about missing data, not pixels.
    monkeypatch.setattr(figures_module, "_png", lambda fig: (fig.draw_without_rendering(), PNG_MAGIC)[1])
    doc = make_doc()
    del doc["models"][1]
    model = doc["models"][0]
    model["error_curve"] = None
    del model["config_file"], model["description"], doc["quick"]
    model["search"]["chosen"] = None
    model["constraint"] = "latency ≤ 3 ms"  # no threshold line, no crash
    figs = make_figures(doc)
    assert [f.key for f in figs] == ["search", "layers", "energy", "designs"]
    page = render_html(doc, figs)
    assert "no configuration was chosen" in page
    assert not _parse(page).errors


def test_render_does_not_touch_pyplot(written: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """The report is drawn on Agg canvases: the user's backend and pyplot's figure list stay as they were."""
    import matplotlib

    assert written[1]["figures"]
    assert matplotlib.get_backend().lower() == BACKEND_BEFORE.lower()
    if "matplotlib.pyplot" in sys.modules:
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []


def _degenerate(doc: dict[str, Any]) -> None:
    model = doc["models"][0]
    model["layers"] = []
    model["search"].update(history=[], pareto=[], chosen=None, cost_baseline=None)
    model["error_curve"]["points"] = model["error_curve"]["points"][:1]
    for row in model["designs"]:
        row["energy_breakdown_pj"] = {}
        row["edp_norm"] = float("nan")


def test_degenerate_data_still_renders(monkeypatch: pytest.MonkeyPatch) -> None:
    """Empty layer lists, an empty search, one curve point and NaNs give explained plots, not crashes."""
    monkeypatch.setattr(figures_module, "_png", lambda fig: (fig.draw_without_rendering(), PNG_MAGIC)[1])
    doc = make_doc()
    del doc["models"][1]
    _degenerate(doc)
    figs = make_figures(doc)
    assert len(figs) == 5
    text = render_markdown_report(doc, figs)
    assert "no configuration was chosen" in text


@pytest.mark.parametrize(
    ("text", "ratio"),
    [("≥ 0.99 × original", 0.99), (">= 0.995 x original", 0.995), ("≥ 98% of original", 0.98), ("top-1 ≥ 0.9", None)],
)
def test_constraint_ratio(text: str, ratio: float | None) -> None:
    assert constraint_ratio(text) == ratio


def test_doc_is_not_mutated() -> None:
    doc = make_doc()
    before = copy.deepcopy(doc)
    render_markdown_report({**doc, "models": doc["models"][:1]}, figures=[])
    assert json.dumps(doc, default=str) == json.dumps(before, default=str)


@pytest.mark.slow
def test_chromium_renders_the_page(written_with_pictures: tuple[dict[str, Any], dict[str, Any]],
                                   tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt install chromium) ")
    _, paths = written_with_pictures
    url = Path(paths["html"]).resolve().as_uri()
    shot = tmp_path / "page.png"
    # No network here: without the background-networking flags Chromium keeps retrying blocked hosts.
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    run = subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1200,3000", url], capture_output=True, timeout=120
    )
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-2000:]
    assert shot.stat().st_size > 0 and shot.read_bytes().startswith(PNG_MAGIC)
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, timeout=120, text=True)
    assert dom.returncode == 0
    for title in ("What is measured and what is modelled", "Summary", "Design comparison", "Per-layer choices"):
        assert title in dom.stdout
    assert dom.stdout.count("<img") == 10


def test_the_paired_bound_is_reported_next_to_the_ratio() -> None:
    from tasder.report import html as report_html
    from tasder.report.markdown import render_markdown_report

    doc = copy.deepcopy(make_doc())
    doc["models"][0]["search"]["acceptance"] = {"confidence": 0.9, "bound_kind": "ratio", "bound": 0.99312,
                                                "examples": 1500}
    page = report_html.render_html(doc, [])
    text = render_markdown_report(doc, [])
    for out in (page, text):
        assert "(≥ 99.31 % at 90 % confidence)" in out
        assert "90 % confidence over the 1500 validation examples" in out
        assert "score worse" not in out  # the history has no per-example counts: no sentence about them
    chosen = doc["models"][0]["search"]["chosen"]
    doc["models"][0]["search"]["history"][chosen].update(worse=41, better=37)
    for out in (report_html.render_html(doc, []), render_markdown_report(doc, [])):
        assert "41 validation examples score worse than under the original model and 37 better" in out


def test_headline_table_opens_both_reports(written: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """The CLI's summary rows are the first table of report.html and report.md, before any section."""
    doc, paths = written
    from tasder.report._content import summary_rows

    rows = summary_rows(doc)
    assert [r["model"] for r in rows] == [m["model"] for m in doc["models"]]
    md = Path(paths["markdown"]).read_text(encoding="utf-8")
    first_table = md[md.index("| model | TASD |"):md.index("## ")]
    assert first_table.index("| model | TASD |") < md.index("**command:**")
    assert "| digits-cnn-sparse-95 | TASD-W | 99.46 % | 80.5 % | 0.185 | 0.185 | TTC-VEGETA-m8+TASD |" in first_table
    page = Path(paths["html"]).read_text(encoding="utf-8")
    assert page.index("<table>") < page.index('<dl class="facts">') < page.index("<h2")


def test_search_figure_is_normalised_to_tc_like_the_tables() -> None:
    """Figure 1's x axis: × TC running the original model (the tables' normalisation), when given."""
    doc = make_doc()
    model = doc["models"][0]
    tc = next(d["edp_js"] for d in model["designs"] if d["design"] == "tc")
    model["search"]["cost_reference"] = tc
    fig, _, _, caption = figures_module._search_figure(model)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "modelled EDP on TTC-VEGETA-m8 (× TC running the original model)"
    assert "× TC running the original model" in caption
    chosen = model["search"]["history"][model["search"]["chosen"]]["cost"]
    star = next(t for t in ax.get_legend().get_texts() if t.get_text().startswith("chosen")).get_text()
    assert star.startswith(f"chosen (#7): {chosen / tc:.3g},")


def test_layer_table_shows_k_and_macs_per_inference(written: tuple[dict[str, Any], dict[str, Any]]) -> None:
    _, paths = written
    md = Path(paths["markdown"]).read_text(encoding="utf-8")
    assert "| layer | kind | K | dense MACs per inference |" in md
    assert "Conv2d: C·R·S" in md and "one inference (batch 1)" in md


def test_no_caption_holds_a_literal_backtick() -> None:
    doc = make_doc()
    doc["models"][0]["error_curve"]["permuted_points"] = doc["models"][0]["error_curve"]["points"][:3]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(figures_module, "_png", _layout_only)
        figures = make_figures(doc)
    assert figures and not [f.filename for f in figures if "`" in f.caption + f.title + f.alt]


def test_a_held_out_break_is_said_at_the_top() -> None:
    doc = make_doc()
    doc["models"][1]["holdout"] = {"threshold": 0.9300, "meets_constraint": False}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(figures_module, "_png", _layout_only)
        md = render_markdown_report(doc)
    note = md[: md.index("## ")]
    assert "breaks the constraint (≥ 0.99 × original) on the test split: 0.9250 → 0.9200, below 0.9300" in note


def test_the_search_text_lists_every_option_once() -> None:
    """Three options read "a, b and c", each in words (the activation-aware score too), in both reports."""
    from tasder.report._content import OPTION_TEXT
    from tasder.report.html import render_html
    from tasder.report.markdown import render_markdown_report

    doc = copy.deepcopy(make_doc())
    doc["models"][0]["options"] = ["permute", "bias_correction", "activation_score"]
    expected = (f"method with {OPTION_TEXT['permute']}, {OPTION_TEXT['bias_correction']} and "
                f"{OPTION_TEXT['activation_score']}, target")
    for out in (render_html(doc, []), render_markdown_report(doc, [])):
        flat = re.sub(r"\s+", " ", out.replace("\\", "")).replace("&#x27;", "'")
        assert expected.replace("|", "") in flat.replace("|", "")
    doc["models"][0]["options"] = ["permute"]
    assert f"method with {OPTION_TEXT['permute']}, target" in render_markdown_report(doc, [])
