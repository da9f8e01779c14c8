"""Issue 20's small things, each with the test that shows it fixed: the progress line's digits, flags in
``--help``, ``hw eval -o``'s status line, ``hw compare``'s labels and baseline, a meaningful provenance,
and the README's training snippet being the same run as ``tasder train``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from tasder.cli.app import run
from tasder.search.methods import progress_text
from tasder.search.result import describe_model, format_cost

MY_STC = """\
version: 0.1
architecture:
  name: my-stc
  technology_nm: 45
  clock_hz: 1.0e+9
  word_bits: 16
  storage:
    - {name: DRAM, class: DRAM, instances: 1, attributes: {read_bandwidth: 32, write_bandwidth: 32, block_size: 4}}
    - {name: L2, class: SRAM, instances: 1,
       attributes: {capacity: 131072, read_bandwidth: 256, write_bandwidth: 256, block_size: 4}}
    - {name: L1, class: SRAM, instances: 4,
       attributes: {capacity: 32768, read_bandwidth: 128, write_bandwidth: 128, block_size: 4}}
    - {name: RF, class: regfile, instances: 64,
       attributes: {capacity: 256, read_bandwidth: 48, write_bandwidth: 16, block_size: 1}}
  compute: {name: MAC, instances: 1024, attributes: {datatype: fp16, accumulator: fp32}}
sparse_optimizations:
  structured_support: {A: ["1:4", "2:4"]}
  targets:
    - {name: MAC, action_optimization: [{type: skipping, target: Z, condition_on: [A]}]}
"""


@pytest.fixture(autouse=True)
def _plain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)


def _cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = run([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_progress_line_shows_a_tiny_edp_in_significant_digits() -> None:
    line = progress_text("search m (cost-aware)", 5, 6.9e-12)
    assert line == "search m (cost-aware): 5 evaluations, best cost 6.9e-12"
    assert progress_text("s", 2, 29_458_432.0).endswith("best cost 29,458,432")  # MACs stay whole numbers
    assert format_cost(0.0) == "0" and format_cost(123.456) == "123.5"


def _leaves(command: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    subs = getattr(command, "commands", None)
    if not subs:
        return [path]
    return [leaf for name, sub in subs.items() for leaf in _leaves(sub, (*path, name))]


def test_no_help_shows_a_value_for_a_flag(capsys: pytest.CaptureFixture[str]) -> None:
    import typer

    from tasder.cli.app import app

    for path in [(), *_leaves(typer.main.get_command(app))]:
        code, out, _ = _cli(capsys, *path, "--help")
        assert code == 0 and "<bool>" not in out, path
    code, out, _ = _cli(capsys, "demo", "--help")
    assert re.search(r"--quick\s+A capped search", out)


def test_quick_is_a_flag_and_says_so_when_given_a_value(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(capsys, "demo", "--quick", "true", "-o", "/nonexistent/x")
    assert code == 2 and out == "" and "unexpected extra argument" in err.lower() and "true" in err


def test_hw_eval_to_a_file_prints_the_one_status_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "eval.txt"
    args = ("hw", "eval", "--arch", "tc", "--workload", "bert-base", "--mapper-budget", "30", "-o", target)
    code, out, err = _cli(capsys, *args)
    assert code == 0 and out == "" and err == ""  # a pipe or a log: nothing but the file
    monkeypatch.setenv("FORCE_COLOR", "1")  # a terminal: the status line, as every command prints it
    code, out, err = _cli(capsys, *args)
    assert code == 0 and out == "" and err.strip().splitlines()[-1].endswith(f"wrote {target}")
    assert "bert-base on tc" in target.read_text()


def test_hw_compare_labels_a_design_file_by_its_name_and_shows_the_tc_baseline(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "my-stc.yaml"
    spec.write_text(MY_STC)
    args = ("hw", "compare", "--designs", f"stc,{spec}", "--mapper-budget", "50", "--workload",
            "gemm:128x128x64:A=1:4,B=dense")
    code, out, err = _cli(capsys, *args, "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["design"] for r in rows] == ["stc", "my-stc"] and rows[1]["source"] == str(spec)
    assert rows[0]["baseline"]["design"] == "tc"
    code, out, err = _cli(capsys, *args)
    assert code == 0, err
    assert "TC, the baseline, which is not among" in out and "tc (baseline)" in out
    assert "my-stc.yaml" not in out.replace(str(spec), "") and re.search(r"^my-stc\s", out, re.M)
    code, out, _ = _cli(capsys, "hw", "compare", "--designs", "tc,stc", "--mapper-budget", "50", "--workload",
                        "gemm:128x128x64:A=1:4,B=dense")
    assert "baseline" not in out and "normalized to TC;" in out


def test_design_labels_keep_two_files_of_one_name_apart() -> None:
    from tasder.cli.hw import design_labels

    assert design_labels(["a.yaml", "b.yaml"], {"a.yaml": "x", "b.yaml": "x"}) == {"a.yaml": "x (a.yaml)",
                                                                                    "b.yaml": "x (b.yaml)"}
    assert design_labels(["stc"], {"stc": "stc"}) == {"stc": "stc"}


def test_provenance_names_the_model_when_no_id_is_given() -> None:
    from tasder.search import search

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    x = torch.randn(32, 16)
    r = search(net, "ttc-vegeta-m8", lambda m: 1.0, [x], "W", max_evals=2, progress=False)
    model = r.config_with_provenance().provenance["model"]
    assert model == describe_model(net) and model.startswith("Sequential, 340 parameters, sha256 ")
    torch.manual_seed(1)
    net2 = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    assert describe_model(net2) != model  # other weights, another digest


@pytest.mark.slow
def test_readme_training_snippet_is_the_tasder_train_run(capsys: pytest.CaptureFixture[str]) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```python\n((?:import torch\n)?from tasder\.train import .*?)```", readme, re.S)
    assert block is not None
    code = block.group(1).replace("print(", "_seen.append(")
    scope: dict[str, object] = {"_seen": []}
    exec(compile(code, "README training snippet", "exec"), scope)  # the README's own code
    snippet_accuracy = scope["_seen"][0]  # type: ignore[index]
    code_, out, err = _cli(capsys, "train", "digits-cnn", "--pattern", "2:8", "--method", "bdwp", "--epochs", "3",
                           "--json")
    assert code_ == 0, err
    assert json.loads(out)["test_accuracy"] == snippet_accuracy
