"""``tasder search`` through :func:`tasder.cli.app.run`, on a tiny hand-made zoo entry."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import tasder.zoo
from tasder.cli.app import run
from tasder.nn import TASDConfig


@pytest.fixture(autouse=True)
def _report_width(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)


@pytest.fixture
def tiny(monkeypatch):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8)).eval()
    x = torch.randn(64, 16)
    with torch.no_grad():
        y = net(x).argmax(1)

    def agreement(rows: slice):
        def evaluate(m: nn.Module) -> float:
            with torch.no_grad():
                return float((m(x[rows]).argmax(1) == y[rows]).double().mean())
        return evaluate

    entry = SimpleNamespace(name="tiny", description="a tiny MLP", model=net, evaluate=agreement(slice(32, 64)),
                            metric="agreement", calibration=[torch.randn(8, 16)],
                            metadata={"evaluate_val": agreement(slice(0, 32)), "val_metric": "val agreement"})
    loads: list[str] = []

    def load(name: str):
        loads.append(name)
        if name != "tiny":
            raise ValueError(f"unknown model {name!r}; known: tiny")
        return entry

    monkeypatch.setattr(tasder.zoo, "load", load, raising=False)
    return loads


def test_search_writes_config_and_report(capsys, tiny, tmp_path):
    out, report = tmp_path / "c.yaml", tmp_path / "r.md"
    code = run(["search", "tiny", "--target", "ttc-vegeta-m8", "--mode", "W", "--constraint", "0.9",
                "--out", str(out), "--report", str(report)])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    assert "effective MACs" in stdout and "test agreement" in stdout
    cfg = TASDConfig.load(out)
    assert cfg.provenance["model"] == "tiny" and cfg.provenance["method"] == "cost-aware"
    text = report.read_text()
    assert "## Per layer" in text and "## Every evaluated config" in text
    assert run(["apply", "tiny", "--config", str(out)]) == 0  # `tasder apply` reads it back


def test_unwritable_output_fails_before_the_search(capsys, tiny, tmp_path):
    code = run(["search", "tiny", "--out", str(tmp_path / "missing" / "c.yaml")])
    _, err = capsys.readouterr()
    assert code == 2 and "missing" in err
    assert tiny == []  # the model was never loaded, so no search ran


def test_bad_constraint_and_target(capsys, tiny, tmp_path):
    assert run(["search", "tiny", "--constraint", "1.5"]) == 2
    assert "constraint" in capsys.readouterr().err
    assert run(["search", "tiny", "--target", "nope"]) == 2
    assert "unknown target" in capsys.readouterr().err
    assert tiny == []


def test_per_example_scores_print_the_bound_and_auto_mode_with_tasd_w_options(capsys, tiny, monkeypatch):
    from tasder.scores import Scores

    entry = tasder.zoo.load("tiny")
    tiny.clear()
    plain = entry.metadata["evaluate_val"]
    x = torch.randn(64, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        y = entry.model(x).argmax(1)

    def per_example(m: nn.Module) -> Scores:
        with torch.no_grad():
            return Scores((m(x).argmax(1) == y).double())

    monkeypatch.setitem(entry.metadata, "evaluate_val", per_example)
    code = run(["search", "tiny", "--mode", "auto", "--constraint", "0.8", "--confidence", "0.8", "--score",
                "activation", "--reconstruct"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "ratio ≥" in out and "80 % confidence over 64 examples" in out
    assert re.search(r"64 examples, \d+ worse and \d+ better than the original\)", " ".join(out.split()))
    assert plain is not None
    assert run(["search", "tiny", "--confidence", "1"]) == 2
    assert "confidence" in capsys.readouterr().err
    assert run(["search", "tiny", "--mode", "A", "--score", "activation"]) == 2
    assert "TASD-W" in capsys.readouterr().err
