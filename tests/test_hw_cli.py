"""``tasder hw eval``: tables, JSON and one-line errors."""

from __future__ import annotations

import json

from tasder.cli.app import run

WORKLOAD = "version: 0.1\nworkload:\n  name: tiny\n  layers:\n    - {name: fc, M: 64, K: 128, N: 16, repeat: 2}\n"


def test_hw_eval_json(tmp_path, capsys):
    path = tmp_path / "w.yaml"
    path.write_text(WORKLOAD)
    assert run(["hw", "eval", "--arch", "tc", "--workload", str(path), "--mapper-budget", "300", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    layer = doc["layers"][0]
    assert doc["total"]["cycles"] == 2 * layer["cycles"]
    assert set(doc["energy_breakdown_pj"]) == {"DRAM", "L2", "L1", "RF", "MAC"}
    assert abs(sum(sum(r.values()) for r in doc["energy_breakdown_pj"].values()) - doc["total"]["energy_pj"]) \
        <= 1e-6 * doc["total"]["energy_pj"]
    assert "MAC: Z[m,n] += A[m,k]·B[k,n]" in layer["loop_nest"]


def test_hw_eval_tables(tmp_path, capsys):
    path = tmp_path / "w.yaml"
    path.write_text(WORKLOAD)
    assert run(["hw", "eval", "--arch", "tc", "--workload", str(path), "--mapper-budget", "300"]) == 0
    out = capsys.readouterr().out
    assert "TOTAL" in out and "energy by level and action" in out and "fc mapping:" in out


def test_hw_eval_bad_inputs(tmp_path, capsys):
    assert run(["hw", "eval", "--arch", "nope", "--workload", "resnet50"]) == 2
    err = capsys.readouterr().err
    assert "no shipped design of that name (designs: " in err and " tc" in err
    bad = tmp_path / "w.yaml"
    bad.write_text(WORKLOAD.replace("repeat: 2", "repeat: two"))
    assert run(["hw", "eval", "--arch", "tc", "--workload", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "w.yaml:5" in err and "repeat must be an integer" in err


CONV = WORKLOAD + "    - {name: conv, C: 16, M: 32, R: 3, S: 3, P: 8, Q: 8, stride: 2}\n"


def test_hw_eval_counts(tmp_path, capsys):
    """``--counts``: Timeloop's counters per level and tensor (algorithmic/actual/gated/skipped,
    metadata; drains on a line of their own), in the table and under ``layers[i].counts`` in JSON."""
    path = tmp_path / "w.yaml"
    path.write_text(CONV)
    assert run(["hw", "eval", "--arch", "stc", "--workload", str(path), "--mapper-budget", "200", "--counts"]) == 0
    out = capsys.readouterr().out
    assert "conv: counts" in out and "algorithmic" in out and "drains" in out and "B Inputs" in out
    assert "conv 3x3/2 C16 M32 8x8" in out
    assert run(["hw", "eval", "--arch", "stc", "--workload", str(path), "--mapper-budget", "200", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    conv = doc["layers"][1]
    assert conv["conv"]["stride"] == [2, 2] and conv["shape"] == "CNN-Layer"
    counts = conv["counts"]
    rf_b = counts["levels"]["RF"]["tensors"]["B"]
    assert rf_b["name"] == "Inputs" and rf_b["reads"]["actual"] == conv["accesses"]["RF"]["B"]["reads"]
    assert counts["compute"]["algorithmic"] == 16 * 32 * 9 * 64
    # The drains of each level are the updates of the level above (nothing reduces between them here).
    z = {lv: counts["levels"][lv]["tensors"]["Z"] for lv in ("DRAM", "L2", "L1", "RF")}
    assert z["L2"]["drains"] == z["DRAM"]["updates"]["actual"]
    assert "drain" in doc["energy_breakdown_pj"]["RF"]
