"""``tasder demo``: the end-to-end job (search → test split → designs → report) and its CLI contract."""

from __future__ import annotations

import base64
import json
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tasder.cli.app import run
from tasder.cli.demo import summary_rows


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.srcs.append(a.get("src") or "")
        for key in ("src", "href"):
            v = a.get(key) or ""
            if v.startswith(("http:", "https:", "//")):
                self.external.append(v)


@pytest.mark.slow
def test_quick_demo_writes_a_complete_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tasder.nn import TASDConfig, apply_tasd
    from tasder.zoo import load

    out = tmp_path / "report"
    t0 = time.perf_counter()
    code = run(["demo", "--quick", "-o", str(out), "--json"])
    seconds = time.perf_counter() - t0
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    assert stderr == ""  # not a terminal: no status lines, no progress bars
    summary = json.loads(stdout)
    assert [r["model"] for r in summary["summary"]] == ["digits-cnn-sparse-95", "digits-cnn"]
    assert seconds < 120  # the issue asks ≤ 60 s on 2 cores; this leaves room for a loaded CI machine

    for name in ("report.html", "report.md", "results.json", "digits-cnn-sparse-95.tasd.yaml",
                 "digits-cnn.tasd.yaml"):
        assert (out / name).is_file(), name
    doc = json.loads((out / "results.json").read_text())
    assert doc["quick"] is True and doc["command"] == "tasder demo --quick"
    for m in doc["models"]:
        tc = next(d for d in m["designs"] if d["design"] == "tc")
        assert tc["edp_norm"] == 1.0 and tc["cycles_norm"] == 1.0
        assert {d["design"] for d in m["designs"]} == {"tc", "stc", "dstc", "highlight", "ttc-vegeta-m8"}
        ttc = [d for d in m["designs"] if d["design"] == "ttc-vegeta-m8"]
        assert [d["workload"] for d in ttc] == ["original", "TASD config"]
        # the chosen point is in the history and is what the search reported
        chosen = next(p for p in m["search"]["history"] if p["index"] == m["search"]["chosen"])
        assert chosen["ok"] and chosen["metric"] == pytest.approx(m["scores"]["validation"]["transformed"])
        # the YAML written is the config that was scored on the test split
        entry = load(m["model"])
        cfg = TASDConfig.load(out / m["config_file"])
        transformed = apply_tasd(entry.model, cfg, calibration=entry.calibration)
        assert entry.evaluate(transformed) == pytest.approx(m["scores"]["test"]["transformed"])
        assert m["macs"]["transformed"] <= m["macs"]["dense"]

    parser = _Images()
    parser.feed((out / "report.html").read_text())
    assert parser.external == []
    assert len(parser.srcs) >= 8
    for src in parser.srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    for fig in summary["report"]["figures"]:
        assert Path(fig).is_file() and f"figures/{Path(fig).name}" in md


def test_unknown_model_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["demo", "--model", "resnet", "-o", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "digits" in err and "minilm" in err
    assert not (tmp_path / "r").exists()


def test_output_that_is_a_file_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "taken"
    f.write_text("keep me")
    assert run(["demo", "--quick", "-o", str(f)]) == 2
    assert "taken" in capsys.readouterr().err
    assert f.read_text() == "keep me"


def test_out_and_output_must_agree(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["demo", "--out", str(tmp_path / "a"), "-o", str(tmp_path / "b")]) == 2
    assert "--out" in capsys.readouterr().err


def test_summary_rows_pick_the_ttc_row_and_the_lowest_edp() -> None:
    def design(name: str, workload: str, edp: float) -> dict[str, object]:
        return {"design": name, "label": name.upper(), "workload": workload, "edp_norm": edp}

    doc = {"models": [{
        "model": "m", "mode": "W", "metric_name": "accuracy", "design": "ttc", "config_file": "m.yaml",
        "scores": {"validation": {"original": 0.9, "transformed": 0.89}, "test": {"original": 0.8, "transformed": 0.8}},
        "macs": {"dense": 100.0, "transformed": 25.0}, "search": {"evaluations": 7},
        "designs": [design("tc", "original", 1.0), design("dstc", "original", 0.5), design("ttc", "original", 1.0),
                    design("ttc", "TASD config", 0.3)],
    }]}
    (row,) = summary_rows(doc)
    assert row["mac_cut"] == 0.75
    assert row["ttc_edp_vs_tc"] == 0.3
    assert row["best_design"] == "TTC+TASD" and row["best_edp_vs_tc"] == 0.3


def test_digits_demo_gives_activation_scores_and_reconstruction_to_tasd_w_only() -> None:
    """The sparse model's TASD-W search ranks weights by |W|·‖X‖ and refits the kept ones; the dense
    model's TASD-A search has no weights to choose (the search refuses `score` and `reconstruct`
    there), and every case's options make a valid layer spec."""
    from tasder.demo import DEMO_FLOWS
    from tasder.nn import LayerSpec

    sparse, dense = DEMO_FLOWS["digits"]
    assert (sparse.mode, sparse.score, sparse.reconstruct) == ("W", "activation", True)
    assert sparse.options == ["permute", "bias_correction", "activation_score", "reconstruct"]
    assert (dense.mode, dense.score, dense.reconstruct) == ("A", "magnitude", False)
    assert dense.options == ["permute", "bias_correction"]
    for case in (*DEMO_FLOWS["digits"], *DEMO_FLOWS["minilm"]):
        LayerSpec("1:8", case.mode, permute=case.permute, bias_correction=case.bias_correction, score=case.score,
                  reconstruct=case.reconstruct)


@pytest.mark.slow  # 5 s on 2 busy cores: two calibration passes with a permutation each
def test_activation_scores_lower_the_sparse_cnns_layer_error() -> None:
    """Why the demo's TASD-W case uses activation-aware scores: on the shipped 95 %-sparse CNN they
    drop weights whose inputs are small on real data, so the layer the demo's search decides on
    (conv2, 64 % of the MACs) loses less of its output at `1:8` than by magnitude — measured on the
    calibration data, as the search measures it."""
    from tasder import zoo
    from tasder.search.methods import measure_layers, select_layers
    from tasder.sparsity import parse_series

    entry = zoo.load("digits-cnn-sparse-95", progress=False)
    assert entry.model is not None
    model = entry.model.eval()
    conv2 = select_layers(model, ["conv2"])
    damage = {}
    for score in ("magnitude", "activation"):
        layers, _, _ = measure_layers(model, entry.calibration, conv2, [parse_series("1:8")], "W", permute=True,
                                      bias_correction=True, score=score)
        damage[score] = layers[0].damage[("W", "1:8")]
    assert 0 < damage["activation"] < 0.9 * damage["magnitude"], damage


@pytest.mark.slow  # 6 s: three calibrations with a permutation search each
def test_error_curve_permuted_points_drop_what_the_applied_layer_drops() -> None:
    """The curve's red line for a scored TASD-W case is what the config the search saves drops: the
    share of conv2's nonzeros that apply_tasd's layer (same spec, same calibration) sets to zero —
    not magnitude's selection, which drops a different share."""
    from tasder import zoo
    from tasder.demo import _permuted_points
    from tasder.nn import LayerSpec, apply_tasd

    entry = zoo.load("digits-cnn-sparse-95", progress=False)
    assert entry.model is not None
    model = entry.model.eval()
    calibration = list(entry.calibration)
    scored = _permuted_points(model, "conv2", "W", calibration, ["1:8"], "activation")
    plain = _permuted_points(model, "conv2", "W", calibration, ["1:8"])
    spec = LayerSpec("1:8", "W", permute=True, score="activation")
    applied = apply_tasd(model, {"conv2": spec}, calibration=calibration).get_submodule("conv2")
    w = model.get_submodule("conv2").weight.detach()
    lost = int(((w != 0) & (applied.weight.detach() == 0)).sum()) / int((w != 0).sum())
    assert scored[0]["dropped_nonzeros"] == pytest.approx(lost, abs=1e-12)
    assert scored[0]["dropped_nonzeros"] != plain[0]["dropped_nonzeros"]
