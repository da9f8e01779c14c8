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
