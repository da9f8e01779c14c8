"""``tasder profile`` and ``tasder apply`` through :func:`tasder.cli.app.run`.

Most tests use a small hand-made zoo entry (monkeypatched into ``tasder.zoo.load``) so they run
in well under a second; the ``digits-cnn`` tests use the real zoo and train it once per session
into a temporary cache.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import tasder.zoo
from tasder.cli.app import run
from tasder.cli.common import format_count
from tasder.cli.profile import parse_candidates
from tasder.nn.profile import profile_model


@pytest.fixture(autouse=True)
def _report_width(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)  # reports use the 100-column default


def invoke(capsys, *args: object) -> tuple[int, str, str]:
    code = run([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, out: str, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(x.flatten(1))


def _entry(*, shape_only: bool = False, calibration=None):
    torch.manual_seed(0)
    net = _Net().eval()
    x = torch.randn(32, 3, 4, 4)
    with torch.no_grad():
        y = net(x).argmax(1)

    def evaluate(m: nn.Module) -> float:  # agreement with the original's predictions
        with torch.no_grad():
            return float((m(x).argmax(1) == y).double().mean())

    return SimpleNamespace(
        name="tiny", description="a tiny conv net", model=None if shape_only else net, evaluate=evaluate,
        metric="agreement",
        calibration=[x[:8], x[8:16], x[16:24]] if calibration is None else calibration,
        layers=["conv1", "conv2", "fc"], metadata={},
    )


@pytest.fixture
def tiny(monkeypatch):
    entry = _entry()

    def load(name: str):
        if name != "tiny":
            raise ValueError(f"unknown model {name!r}; known: tiny")
        return entry

    monkeypatch.setattr(tasder.zoo, "load", load, raising=False)
    return entry


def test_helpers():
    assert [format_count(n) for n in (0, 999, 1000, 1234567, 98_760_000_000)] == ["0", "999", "1.00k", "1.23M",
                                                                                   "98.8G"]
    assert [str(s) for s in parse_candidates(["2:8,4:8+1:8", "K(2:8)", " 1:8 "])] == ["2:8", "4:8+1:8", "1:8"]
    assert parse_candidates(None) is None
    with pytest.raises(ValueError, match="empty series"):
        parse_candidates(["2:8,"])


def test_profile_table(capsys, tiny):
    code, out, err = invoke(capsys, "profile", "tiny", "--candidates", "2:8,4:8+1:8", "-c", "2:16")
    assert code == 0, err
    assert err == ""  # no progress bar off a terminal
    p = profile_model(tiny.model, tiny.calibration, candidates=["2:8"])
    # MACs per inference (one sample), the calibration's size named; K one way: C·R·S
    assert (f"3 layers profiled on 3 calibration batch(es) (24 samples); {format_count(p.total_macs / 24)} dense "
            f"MACs per inference") in out
    assert format_count(p["conv2"].macs / 24) == "36.9k" and "36.9k" in out
    for text in ("conv1", "conv2", "fc", "27 = 3·3·3", "144 = 16·3·3", "256", "2:8", "4:8+1:8", "2:16", "pooled",
                 "n/a conv1 (2:8, 4:8+1:8): C=3 per kernel position is smaller than the block size 8",
                 "n/a conv1 (2:16): C=3 per kernel position is smaller than the block size 16"):
        assert text in out
    assert max(len(line) for line in out.splitlines()) <= 100
    # the numbers are the API's
    c = p["conv2"].candidate("2:8")
    assert f"{c.weight_dropped_nonzeros_pct:.1f}/{c.activation_dropped_nonzeros_pct:.1f}" in out


def test_profile_json_and_batches_option(capsys, tiny, tmp_path):
    code, out, err = invoke(capsys, "profile", "tiny", "--json", "--batches", "2", "-c", "2:8")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["model"] == "tiny" and doc["batches"] == 2 and doc["candidates"] == ["2:8"]
    assert [layer["name"] for layer in doc["layers"]] == ["conv1", "conv2", "fc"]
    assert doc["layers"][0]["candidates"][0]["weight_dropped_nonzeros_pct"] is None
    expected = profile_model(tiny.model, tiny.calibration[:2], candidates=["2:8"]).as_dict()
    assert doc["layers"] == json.loads(json.dumps(expected["layers"]))

    target = tmp_path / "report.txt"
    code, out, err = invoke(capsys, "profile", "tiny", "-o", target)
    assert code == 0 and out == "" and err == ""  # "wrote FILE" is a status line: terminals only
    assert "4:8+2:8" in target.read_text()  # the default candidates


def test_profile_errors(capsys, tiny, monkeypatch):
    assert_one_line_error(*invoke(capsys, "profile", "nope"), "unknown model 'nope'")
    assert_one_line_error(*invoke(capsys, "profile", "tiny", "-c", "3:2"), "3:2")
    assert_one_line_error(*invoke(capsys, "profile", "tiny", "--batches", "0"), "--batches")
    tiny.calibration[1] = torch.ones(2, 5)
    assert_one_line_error(*invoke(capsys, "profile", "tiny"), "calibration batch 1")
    monkeypatch.setattr(tasder.zoo, "load", lambda name: _entry(shape_only=True), raising=False)
    assert_one_line_error(*invoke(capsys, "profile", "tiny"), "shape-only")
    monkeypatch.setattr(tasder.zoo, "load", lambda name: _entry(calibration=[]), raising=False)
    assert_one_line_error(*invoke(capsys, "profile", "tiny"), "no calibration batches")


CONFIG = """\
version: 1
layers:
  conv1: {series: "2:8", mode: W}
  conv2: {series: "2:8+1:8", mode: W}
  fc: {series: "4:8", mode: A}
"""


def test_apply_table_and_json(capsys, tiny, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    code, out, err = invoke(capsys, "apply", "tiny", "--config", config)
    assert code == 0, err
    assert "agreement: 1.0000 before →" in out
    assert "2 layer(s) converted, 1 skipped" in out
    assert "conv1: reduction dim in_channels (C per kernel position)=3 is smaller than the block size 8" in out
    assert "2:8+1:8 (W)" in out and "4:8 (A)" in out

    code, out, err = invoke(capsys, "apply", "tiny", "--config", config, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["before"] == 1.0 and doc["metric"] == "agreement"
    assert doc["relative_change"] == pytest.approx(doc["after"] - 1.0)
    dense = 16 * 16 * 27 + 16 * 16 * 144 + 256 * 10  # per inference; counted on the first batch (8 samples)
    assert doc["macs"]["dense"] == dense and doc["macs"]["unit"] == "MACs per inference"
    assert doc["macs"]["counted_on_samples"] == 8 and doc["hardware"] is None
    conv2 = 16 * 16 * 144 * (1 - 0.375)  # 2:8+1:8 keeps 3/8 of conv2's MACs
    assert doc["macs"]["effective"] <= dense - conv2 + 1e-6
    assert doc["macs"]["reduction"] == pytest.approx(1 - doc["macs"]["effective"] / dense)
    assert set(doc["layers"]) == {"conv2", "fc"} and "conv1" in doc["skipped"]
    assert not any(isinstance(m, tasder.nn.TASDLayer) for m in tiny.model.modules())  # original untouched


def test_apply_errors(capsys, tiny, tmp_path):
    assert_one_line_error(*invoke(capsys, "apply", "tiny", "--config", tmp_path / "missing.yaml"),
                          "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nlayers:\n  nolayer: {series: '2:8', mode: W}\n")
    assert_one_line_error(*invoke(capsys, "apply", "tiny", "--config", bad), "nolayer")
    assert_one_line_error(*invoke(capsys, "apply", "tiny"), "--config")


# ---------------------------------------------------------------------------------------------
# The real zoo (only when tasder.zoo.load exists)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_cache(tmp_path_factory):
    if not hasattr(tasder.zoo, "load"):
        pytest.skip("tasder.zoo.load is not available")
    return tmp_path_factory.mktemp("cache")


@pytest.mark.slow
def test_digits_cnn_profile_and_apply(capsys, monkeypatch, digits_cache, tmp_path):
    monkeypatch.setenv("TASDER_CACHE_DIR", str(digits_cache))
    code, out, err = invoke(capsys, "profile", "digits-cnn", "--json", "-c", "2:8,4:8+1:8")
    assert code == 0, err
    doc = json.loads(out)
    names = [layer["name"] for layer in doc["layers"]]
    assert names == ["conv1", "conv2", "conv3", "fc1", "fc2"]
    conv1 = doc["layers"][0]
    assert conv1["k"] == 1 and not any(c["applicable"] for c in conv1["candidates"])
    assert doc["layers"][1]["activation_sparsity_mean"] > 0.1  # ReLU output
    config = tmp_path / "config.yaml"
    config.write_text("version: 1\nlayers:\n  conv*: {series: '4:8+2:8', mode: W}\n"
                      "  fc1: {series: '4:8+1:8', mode: A}\n")
    code, out, err = invoke(capsys, "apply", "digits-cnn", "--config", config, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert 0.5 < doc["before"] <= 1.0 and 0.0 <= doc["after"] <= 1.0
    assert 0.0 < doc["macs"]["reduction"] < 1.0
    assert "conv1" in doc["skipped"]
