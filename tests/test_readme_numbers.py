"""The README's numbers are what the code produces from the shipped models (issue 20).

The digits models ship as weights (tasder/zoo/weights), so the demo's summary, the built-in models'
accuracies and the own-model example's search are the same numbers on every run: these tests
re-derive them and check the README's text digit for digit. Times are not checked (they depend on
the machine and its load; the README states both next to each).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    env.pop("COLUMNS", None)
    return env


def _tasder(tmp_path: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "tasder", *args], cwd=tmp_path, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"tasder {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout


def _cells(line: str) -> list[str]:
    """A printed table row's cells (columns are separated by two or more spaces)."""
    return re.split(r"\s{2,}", line.strip())


def readme_summary_rows() -> list[list[str]]:
    """The rows of the demo summary block in the README (the ``text`` block after "Its summary")."""
    start = README.index("Its summary, as `tasder demo` prints it")
    block = re.search(r"```text\n(.*?)```", README[start:], re.S)
    assert block is not None, "the README's demo summary block is missing"
    lines = [x for x in block.group(1).splitlines() if x.strip() and not set(x.strip()) <= {"─"}]
    assert _cells(lines[0])[0] == "model", lines[0]
    return [_cells(x) for x in lines]


def test_readme_summary_block_has_the_cli_columns() -> None:
    rows = readme_summary_rows()
    assert rows[0] == ["model", "TASD", "test", "MACs cut", "EDP/TC (TTC)", "best EDP/TC", "by"]
    assert [r[0] for r in rows[1:]] == ["digits-cnn-sparse-95", "digits-cnn"]


def test_builtin_model_accuracies_are_the_shipped_models() -> None:
    from tasder import zoo

    acc = {}
    for n in ("digits-cnn", "digits-cnn-sparse-50", "digits-cnn-sparse-80", "digits-cnn-sparse-90",
              "digits-cnn-sparse-95"):
        entry = zoo.load(n, progress=False)
        acc[n] = 100 * entry.evaluate(entry.model)
    flat = _flat()
    assert f"test accuracy {acc['digits-cnn']:.2f} %" in flat
    sparse = " / ".join(f"{acc[f'digits-cnn-sparse-{p}']:.2f}" for p in (50, 80, 90, 95))
    assert f"{sparse} %" in flat


def _flat() -> str:
    return re.sub(r"\s+", " ", README)


def _expected_demo_prose(doc: dict[str, Any]) -> list[str]:
    """The phrases of the paragraph after the summary, formatted from the demo's results.json."""
    by_name = {m["model"]: m for m in doc["models"]}
    sparse, dense = by_name["digits-cnn-sparse-95"], by_name["digits-cnn"]

    def edp(model: dict[str, Any], design: str, workload: str = "original") -> float:
        rows = [d for d in model["designs"] if d["design"] == design
                and (d["workload"] == "original") == (workload == "original")]
        return float(rows[0]["edp_norm"])

    def cut(model: dict[str, Any]) -> float:
        return 100 * (1 - model["macs"]["transformed"] / model["macs"]["dense"])

    st, dt = sparse["scores"]["test"], dense["scores"]["test"]
    return [
        f"keeps {100 * st['transformed'] / st['original']:.2f} % of the test accuracy ({st['original']:.4f} → "
        f"{st['transformed']:.4f})",
        f"{cut(sparse):.1f} % fewer MACs per inference, found in {sparse['search']['evaluations']} evaluations",
        f"from {edp(sparse, 'ttc-vegeta-m8'):.2f}× to {edp(sparse, 'ttc-vegeta-m8', 'tasd'):.2f}× TC",
        f"models lower still ({edp(sparse, 'dstc'):.2f}×)",
        f"cuts {cut(dense):.1f} % of the MACs at {100 * dt['transformed'] / dt['original']:.2f} % of the test "
        f"accuracy ({dt['original']:.4f} → {dt['transformed']:.4f}; {dense['search']['evaluations']} evaluations)",
        f"the best design ({edp(dense, 'ttc-vegeta-m8', 'tasd'):.2f}× TC)",
        f"more than TC ({edp(dense, 'dstc'):.2f}×)",
    ]


@pytest.mark.slow
def test_the_demo_reproduces_the_readme_summary(tmp_path: Path) -> None:
    """``tasder demo`` on the shipped models prints the README's table, and its results.json gives
    the README's paragraph, exactly (the README says so)."""
    out = _tasder(tmp_path, "demo", "-o", str(tmp_path / "report"))
    printed = {_cells(x)[0]: _cells(x) for x in out.splitlines() if x.strip() and _cells(x)[0].startswith("digits")}
    for row in readme_summary_rows()[1:]:
        assert printed.get(row[0]) == row, f"README row {row} != printed {printed.get(row[0])}"
    doc = json.loads((tmp_path / "report" / "results.json").read_text())
    flat = _flat()
    missing = [p for p in _expected_demo_prose(doc) if p not in flat]
    assert not missing, f"the README's demo paragraph does not say (from this run): {missing}"


@pytest.mark.slow
def test_the_own_model_example_reproduces_the_readme(tmp_path: Path) -> None:
    """The section "Model your own network on a design": the search and apply on examples/my_model.py."""
    spec = f"{ROOT / 'examples' / 'my_model.py'}:make"
    doc = json.loads(_tasder(tmp_path, "search", spec, "--mode", "W", "--cost", "edp", "--design", "ttc-vegeta-m8",
                             "-o", "my-config.yaml", "--json"))
    s, hw = doc["scores"], doc["hardware"]
    flat = _flat()
    phrase = (f"keeps the test accuracy ({s['holdout_original']:.4f} → {s['holdout_final']:.4f}) and cuts the "
              f"modelled EDP on TTC-VEGETA-M8 to {hw['after_vs_tc']:.3f}× TC running the original model "
              f"({doc['evaluations']} evaluations)")
    assert phrase in flat, phrase
    applied = _tasder(tmp_path, "apply", spec, "--config", "my-config.yaml", "--design", "ttc-vegeta-m8")
    fewer = re.search(r"(\d+\.\d) ?% fewer", re.sub(r"\s+", " ", applied))
    assert fewer is not None, applied
    assert f"re-derives the same {hw['after_vs_tc']:.3f}× and {fewer.group(1)} % fewer MACs per inference" in flat
    assert f"original {hw['before_vs_tc']:.3f} → config {hw['after_vs_tc']:.3f} × TC" in re.sub(r"\s+", " ", applied)
