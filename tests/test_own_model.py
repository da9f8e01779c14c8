"""Your own model: FILE.py:FACTORY / MODULE:FACTORY in every command, make_entry, readable results,
workload_from_model on the right operand, and NetworkResult's properties."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from tasder import hw, zoo
from tasder.cli.app import run
from tasder.workloads import workload_from_model

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "my_model.py"

TINY = textwrap.dedent('''
    import torch
    from torch import nn
    from tasder.zoo import make_entry

    def make():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
        x = torch.randn(48, 16)
        y = net(x).argmax(1)
        def agree(rows):
            def evaluate(m):
                with torch.no_grad():
                    return float((m(x[rows]).argmax(1) == y[rows]).float().mean())
            return evaluate
        return make_entry("tiny-mlp", net, [x[:16]], agree(slice(16, 32)), agree(slice(32, 48)),
                          metric="agreement", description="a tiny MLP")

    def not_a_model():
        return 42
''')


@pytest.fixture
def tiny_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny_model.py"
    path.write_text(TINY)
    return path


def _run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = run([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_factory_file_goes_through_profile_search_and_apply(tiny_file: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    spec = f"{tiny_file}:make"
    code, out, err = _run(capsys, "profile", spec, "-s", "2:8")
    assert code == 0, err
    assert out.startswith("tiny-mlp: a tiny MLP") and "MACs per inference" in out
    cfg = tmp_path / "cfg.yaml"
    code, out, err = _run(capsys, "search", spec, "--mode", "W", "-o", cfg, "--max-evals", "3")
    assert code == 0, err
    assert out.startswith("tiny-mlp on ttc-vegeta-m8") and "test agreement" in out
    assert "model: tiny-mlp" in cfg.read_text()  # the provenance names the model
    code, out, err = _run(capsys, "apply", spec, "--config", cfg, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["model"] == "tiny-mlp" and doc["metric"] == "test agreement" and doc["before"] == 1.0


def test_search_takes_a_time_budget(tiny_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = f"{tiny_file}:make"
    code, _, err = _run(capsys, "search", spec, "--mode", "W", "-o", tmp_path / "c.yaml", "--max-seconds", "600")
    assert code == 0, err
    code, _, err = _run(capsys, "search", spec, "--mode", "W", "--max-seconds", "0")
    assert code != 0 and "--max-seconds" in err


def test_a_module_path_works_too(tiny_file: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tiny_file.parent))
    code, out, err = _run(capsys, "profile", "tiny_model:make", "--json")
    assert code == 0, err
    assert json.loads(out)["model"] == "tiny-mlp"
    sys.modules.pop("tiny_model", None)


@pytest.mark.parametrize(("spec", "fragment"), [
    ("{dir}/nowhere.py:make", "no such file"),
    ("{file}:missing", "has no function 'missing' (functions there: make, not_a_model)"),
    ("{file}:not_a_model", "not_a_model() returned a int; it must return a tasder.zoo.ZooModel"),
    ("no_such_module_xyz:make", "cannot import module 'no_such_module_xyz'"),
])
def test_a_bad_spec_is_one_line(spec: str, fragment: str, tiny_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "profile", spec.format(dir=tiny_file.parent, file=tiny_file))
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and fragment in err


def test_zoo_load_takes_a_spec_and_an_unknown_name_says_so(tiny_file: Path) -> None:
    entry = zoo.load(f"{tiny_file}:make")
    assert entry.name == "tiny-mlp" and entry.metadata["val_metric"] == "validation agreement"
    with pytest.raises(ValueError, match=r"FILE\.py:FACTORY"):
        zoo.load("no-such-model")


def test_make_entry_checks_its_inputs() -> None:
    net = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="at least one batch"):
        zoo.make_entry("m", net, [], lambda m: 1.0)
    with pytest.raises(TypeError, match="callables"):
        zoo.make_entry("m", net, [torch.zeros(1, 2)], "not callable")  # type: ignore[arg-type]


@pytest.mark.slow
def test_the_shipped_example_runs_through_all_three_commands(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    spec = f"{EXAMPLE}:make"
    code, out, err = _run(capsys, "profile", spec)
    assert code == 0, err
    assert "tumour-mlp-80" in out and "fc2" in out
    cfg = tmp_path / "my-config.yaml"
    code, out, err = _run(capsys, "search", spec, "--mode", "W", "--cost", "edp", "--design", "ttc-vegeta-m8",
                          "-o", cfg)
    assert code == 0, err
    assert "× TC running the original model" in " ".join(out.split())  # the CLI wraps its lines
    code, out, err = _run(capsys, "apply", spec, "--config", cfg, "--design", "ttc-vegeta-m8", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["hardware"]["design"] == "ttc-vegeta-m8" and doc["hardware"]["after_vs_tc"] < 1.0


# ---------------------------------------------------------------------------------------------
# workload_from_model and NetworkResult
# ---------------------------------------------------------------------------------------------


def _net_and_batch() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))
    with torch.no_grad():
        net[0].weight.mul_((torch.rand(32, 16) < 0.5).float())
    return net, torch.randn(4, 16)


def test_workload_from_model_puts_each_mode_on_its_operand() -> None:
    net, x = _net_and_batch()
    plain = workload_from_model(net, x)
    assert [p.name for p in plain.layers] == ["0", "2"] and [p.N for p in plain.layers] == [1, 1]
    assert str(plain.layers[0].a_density).startswith("unstructured(0.5")  # measured weight density
    w = workload_from_model(net, x, {"0": {"series": "2:8", "mode": "W"}, "2": {"series": "4:8", "mode": "A"}})
    # the series carries the weight's measured density: the slots its zeros leave empty are padding
    assert str(w.layers[0].a_density) == f"2:8@{plain.layers[0].a_density.density:.6g}"
    assert str(w.layers[0].b_density) == "dense"
    relu_out = f"4:8@{plain.layers[1].b_density.density:.6g}"  # the ReLU output's measured density
    assert str(w.layers[1].b_density) == relu_out and str(w.layers[1].a_density) == "dense"
    a = workload_from_model(net, x, {"2": "4:8"}, mode="A")  # a bare series takes `mode`
    assert str(a.layers[1].b_density) == relu_out and str(a.layers[1].a_density) == "dense"
    with pytest.raises(ValueError, match="no layer named 'fc'"):
        workload_from_model(net, x, {"fc": "4:8"})


def test_workload_matches_what_the_search_cost_maps() -> None:
    from tasder.nn import LayerSpec
    from tasder.search import HardwareCost

    net, x = _net_and_batch()
    cost = HardwareCost.for_model(net, x, "ttc-vegeta-m8", "W", budget=200)
    config = {"0": LayerSpec("2:8", "W")}
    mine = hw.map_network(hw.load_architecture("ttc-vegeta-m8"), workload_from_model(net, x, config), budget=200)
    assert mine.edp == pytest.approx(cost(config), rel=1e-12)


def test_network_result_edp_is_a_property_and_prints_a_table() -> None:
    net, x = _net_and_batch()
    arch = hw.load_architecture("tc")
    r = hw.map_network(arch, workload_from_model(net, x, name="mlp"), budget=200)
    assert isinstance(r.edp, float) and r.edp == pytest.approx(r.energy_pj * 1e-12 * r.cycles / arch.clock_hz)
    text = str(r)
    assert text.startswith("mlp on tc:") and "EDP" in text and "J·s" in text
    assert "16-32-1" not in text and "32-16-1" in text  # M-K-N of the first layer (M = out, K = in)


# ---------------------------------------------------------------------------------------------
# Readable results and the held-out flag
# ---------------------------------------------------------------------------------------------


def _search_result(holdout_final: float) -> object:
    from tasder.nn import TASDConfig
    from tasder.search import LayerRow, SearchResult

    return SearchResult(
        config=TASDConfig({"conv2": "1:8"}), model_id="m", target="ttc-vegeta-m8", mode="W", method="cost-aware",
        constraint="≥ 0.99 × original", threshold=0.99 * 0.9833, metric_original=0.9833, metric_final=0.9749,
        cost_before=64 * 460_000.0, cost_after=64 * 66_000.0, evaluations=5, cache_hits=1, seconds=1.5,
        layers=[LayerRow("conv2", "Conv2d", 16, 64 * 295_000, "1:8", "W", 0.125, 0.2, kernel_size=(3, 3)),
                LayerRow("fc1", "Linear", 128, 64 * 8192, "dense", "W", 1.0, None)],
        history=[], holdout_original=0.9917, holdout_final=holdout_final, samples=64,
        holdout_threshold=0.99 * 0.9917)


def test_search_result_flags_a_held_out_break() -> None:
    broken, fine = _search_result(0.9639), _search_result(0.9917)
    assert broken.holdout_meets_constraint is False and fine.holdout_meets_constraint is True
    assert fine.holdout_warning() is None
    warning = broken.holdout_warning("test accuracy")
    assert warning is not None and "0.9917 → 0.9639, below 0.9818" in warning
    assert broken.as_dict()["holdout_meets_constraint"] is False


def test_search_result_prints_a_table_in_macs_per_inference() -> None:
    text = str(_search_result(0.9639))
    assert "BREAKS the constraint" in text
    assert "460k → 66.0k" in text  # the MAC cost of the batch of 64, per inference
    assert "144 = 16·3·3" in text and "295k" in text  # K as C·R·S; the layer's MACs per inference
    assert "SearchResult(" not in text


def test_model_profile_prints_a_table() -> None:
    from tasder.nn.profile import profile_model

    net, x = _net_and_batch()
    text = str(profile_model(net, [x, x], candidates=["2:8"]))
    assert text.startswith("2 layers profiled on 2 calibration batch(es) (8 samples); 768 dense MACs per inference")
    assert "ModelProfile(" not in text and "2:8" in text


def test_hardware_cost_cache_dir_gives_the_same_numbers_from_disk(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from tasder.nn import LayerSpec
    from tasder.search import HardwareCost

    net, x = _net_and_batch()
    config = {"0": LayerSpec("2:8", "W")}
    fresh = HardwareCost.for_model(net, x, "ttc-vegeta-m8", "W", budget=150)(config)
    first = HardwareCost.for_model(net, x, "ttc-vegeta-m8", "W", budget=150, cache_dir=tmp_path)(config)
    assert list(tmp_path.rglob("*.json"))
    monkeypatch.setattr("tasder.hw.mapper.map_layer", lambda *a, **k: pytest.fail("mapped although cached"))
    second = HardwareCost.for_model(net, x, "ttc-vegeta-m8", "W", budget=150, cache_dir=tmp_path)(config)
    assert fresh == first == second


def test_background_figures_report_a_worker_failure_by_name() -> None:
    from tasder.report.figures import BackgroundFigures

    drawer = BackgroundFigures(workers=1)
    drawer.submit({"model": "broken-model"}, 0, "broken")  # no keys to draw from
    with pytest.raises(RuntimeError, match="'broken-model'"):
        drawer.result()


@pytest.mark.slow
def test_background_figures_are_the_figures_drawn_in_process() -> None:
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from tasder.report.figures import BackgroundFigures, figure_stems, make_figures
    from test_report import make_doc

    doc = make_doc()
    doc["models"] = doc["models"][:1]
    drawer = BackgroundFigures(workers=2)
    drawer.submit(doc["models"][0], 0, figure_stems([doc["models"][0]["model"]])[0])
    assert drawer.result() == make_figures(doc)
