"""Design-space sweeps: the executor and its cache (tasder.hw.executor), sweep specs and fronts
(tasder.hw.sweep), the report folder (tasder.hw.sweep_report) and ``tasder hw sweep``.

Tiny designs and workloads throughout; the process pool and Ray tests start worker processes
(seconds of imports each) and are marked slow.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasder.hw import Network, Problem, load_architecture, map_network
from tasder.hw.executor import (
    LayerTask,
    MapperSettings,
    ProcessExecutor,
    ResultCache,
    SerialExecutor,
    SweepInterrupted,
    check_ray_address,
    make_executor,
    run_network,
    run_tasks,
    task_key,
)
from tasder.hw.spec import SpecError
from tasder.hw.sweep import _dropped_fraction, expand_designs, load_sweep, pareto_front, run_sweep, tasd_series
from tasder.hw.sweep_report import check_output_dir, write_sweep_report

WORKLOAD = """version: 0.1
workload:
  name: tiny
  layers:
    - {name: fc1, M: 32, K: 64, N: 16}
    - {name: fc2, M: 64, K: 32, N: 32, repeat: 2}
    - {name: fc3, M: 32, K: 64, N: 16}
"""

SPEC = """version: 0.1
sweep:
  name: tiny
  base: tc
  parameters:
    macs: [256, 1024]
    L1.capacity: [8192, 16384]
    sparse: [null, ttc-vegeta-m8]
  constraints:
    sram_budget: 544KiB
  workloads:
    - {file: tiny.yaml, name: dense, b: "unstructured(0.5)"}
    - {file: tiny.yaml, name: sparse, a: "unstructured(0.1)", tasd: {operand: A}}
  mapper: {budget: 120}
"""


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    (tmp_path / "tiny.yaml").write_text(WORKLOAD, encoding="utf-8")
    path = tmp_path / "sweep.yaml"
    path.write_text(SPEC, encoding="utf-8")
    return path


def _spec(tmp_path: Path, body: str) -> Path:
    (tmp_path / "tiny.yaml").write_text(WORKLOAD, encoding="utf-8")
    path = tmp_path / "s.yaml"
    path.write_text(body, encoding="utf-8")
    return path


def _label(density: object) -> str:
    """A density as notation, whether Problem keeps the string or a model."""
    from tasder.hw.density import density_model

    return density_model(density).label


def _tasks(budget: int = 100) -> list[LayerTask]:
    arch = load_architecture("ttc-vegeta-m8")
    layers = [Problem("a", 32, 64, 16, a_density="4:8+1:8"), Problem("b", 64, 32, 32, b_density="unstructured(0.5)"),
              Problem("c", 32, 64, 16, a_density="4:8+1:8"), Problem("d", 16, 16, 16)]
    return [LayerTask(arch, p, MapperSettings(budget=budget)) for p in layers]


# --- the executor ------------------------------------------------------------------------------


def test_run_network_is_search_network_bit_for_bit():
    arch = load_architecture("highlight")
    net = Network("n", (Problem("a", 32, 64, 16, a_density="C1(2:4)->C0(2:4)", b_density="unstructured(0.5)"),
                        Problem("b", 64, 32, 32, repeat=3), Problem("c", 32, 64, 16, a_density="C1(2:4)->C0(2:4)",
                                                                    b_density="unstructured(0.5)")))
    ref = map_network(arch, net, budget=150, seed=3)
    got = run_network(arch, net, MapperSettings(budget=150, seed=3), executor="serial")
    for r, g in zip(ref.layers, got.layers, strict=True):
        assert g.best.problem is not None and g.best.problem.name == r.best.problem.name
        assert (g.best.mapping, g.top, g.candidates, g.valid, g.exhaustive) == \
            (r.best.mapping, r.top, r.candidates, r.valid, r.exhaustive)
        assert (g.best.costs.energy == r.best.costs.energy).all()
        assert (g.best.cycles, g.best.energy_pj, g.best.edp) == (r.best.cycles, r.best.energy_pj, r.best.edp)
    assert (got.cycles, got.energy_pj) == (ref.cycles, ref.energy_pj)


def test_the_key_is_the_content():
    t = _tasks()[0]
    key = task_key(t)
    renamed = Problem("other", t.problem.M, t.problem.K, t.problem.N, repeat=7, a_density="4:8+1:8")
    assert task_key(LayerTask(t.arch, renamed, t.settings)) == key  # name and repeat do not change a search
    other_density = Problem("a", t.problem.M, t.problem.K, t.problem.N, a_density="4:8")
    assert task_key(LayerTask(t.arch, other_density, t.settings)) != key
    assert task_key(LayerTask(t.arch, t.problem, MapperSettings(budget=101))) != key
    assert task_key(LayerTask(t.arch, t.problem, MapperSettings(budget=100, seed=1))) != key
    assert task_key(LayerTask(load_architecture("ttc-vegeta-m4"), t.problem, t.settings)) != key


def test_cache_hits_return_the_same_records(tmp_path):
    cache = ResultCache(tmp_path / "c")
    first, s1 = run_tasks(_tasks(), executor="serial", cache=cache)
    second, s2 = run_tasks(_tasks(), executor="serial", cache=cache)
    assert (s1.tasks, s1.unique, s1.computed, s1.cached) == (4, 3, 3, 0)  # a and c share one search
    assert (s2.computed, s2.cached) == (0, 3)
    assert first == second
    assert len(cache) == 3


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other key", "missing field", "empty"])
def test_a_corrupted_entry_is_recomputed_with_a_warning(tmp_path, damage):
    cache = ResultCache(tmp_path / "c")
    good, _ = run_tasks(_tasks(), executor="serial", cache=cache)
    victim = cache.path(good[1]["key"])
    text = victim.read_text()
    victim.write_text({"garbage": "\x00not json at all", "truncated": text[: len(text) // 2],
                       "other key": text.replace(good[1]["key"], "0" * 64),
                       "missing field": json.dumps({k: v for k, v in good[1].items() if k != "mapping"}),
                       "empty": ""}[damage])
    notes: list[str] = []
    again, stats = run_tasks(_tasks(), executor="serial", cache=cache, warn=notes.append)
    assert again == good
    assert (stats.corrupt, stats.computed, stats.cached) == (1, 1, 2)
    assert len(notes) == 1 and str(victim) in notes[0] and "recomputing" in notes[0]
    assert json.loads(victim.read_text()) == good[1]  # repaired


class _StopAfter:
    """A progress that presses Ctrl-C once ``n`` searches are done."""

    def __init__(self, n: int) -> None:
        self.n, self.done = n, 0

    def start(self, total: int, cached: int) -> None:
        pass

    def advance(self, n: int) -> None:
        self.done += n
        if self.done >= self.n:
            raise KeyboardInterrupt


def test_an_interrupted_run_keeps_what_is_done_and_resumes(tmp_path):
    tasks = [LayerTask(t.arch, Problem(f"p{i}", 16 * (1 + i), 32, 16), t.settings)
             for i, t in enumerate(_tasks() * 3)]  # 12 distinct searches, one per chunk (serial)
    full, _ = run_tasks(tasks, executor="serial")
    cache = ResultCache(tmp_path / "c")
    with pytest.raises(SweepInterrupted) as info:
        run_tasks(tasks, executor="serial", cache=cache, progress=_StopAfter(5))
    assert isinstance(info.value, KeyboardInterrupt)
    assert "run the same command again to resume" in str(info.value) and str(tmp_path / "c") in str(info.value)
    done = info.value.done
    assert 5 <= done < 12 and len(cache) == done
    resumed, stats = run_tasks(tasks, executor="serial", cache=cache)
    assert (stats.cached, stats.computed) == (done, 12 - done)
    assert resumed == full


@pytest.mark.slow
def test_the_process_pool_gives_the_serial_records(tmp_path):
    serial, _ = run_tasks(_tasks(), executor=SerialExecutor())
    with ProcessExecutor(workers=2) as ex:
        pooled, stats = run_tasks(_tasks(), executor=ex)
    assert stats.executor == "process" and stats.workers == 2
    assert pooled == serial


@pytest.mark.slow
def test_ray_local_mode_gives_the_serial_results_bit_for_bit(spec_file, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'tasder[distributed]')")
    from tasder.hw.executor import RayExecutor

    spec = load_sweep(spec_file)
    serial = run_sweep(spec, executor="serial")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with RayExecutor() as ex:
            got = run_sweep(spec, executor=ex)
        assert got.stats is not None and got.stats.executor == "ray" and got.stats.workers == 2
    finally:
        ray.shutdown()
    assert got.rows == serial.rows and got.fronts == serial.fronts


def _refusing_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


def test_a_ray_address_that_does_not_answer_fails_fast_naming_it():
    address = f"127.0.0.1:{_refusing_port()}"
    t0 = time.perf_counter()
    with pytest.raises(ConnectionError, match=f"Ray cluster at {address} does not answer"):
        check_ray_address(address, timeout_s=5)
    assert time.perf_counter() - t0 < 5
    with pytest.raises(ValueError, match="expected host:port"):
        make_executor("ray", address="nowhere")
    with pytest.raises(ValueError, match="needs --executor ray"):
        make_executor("process", address=address)


def test_the_ray_executor_checks_the_address_before_starting_anything():
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'tasder[distributed]')")
    from tasder.hw.executor import RayExecutor

    address = f"127.0.0.1:{_refusing_port()}"
    with pytest.raises(ConnectionError, match=address):
        run_tasks(_tasks(), executor=RayExecutor(address, timeout_s=5))


# --- specs -------------------------------------------------------------------------------------


def test_the_spec_expands_to_the_cross_product(spec_file):
    spec = load_sweep(spec_file)
    assert spec.size == 8 and [p.name for p in spec.parameters] == ["macs", "L1.capacity", "sparse"]
    designs = expand_designs(spec)
    assert [d.id for d in designs] == [f"d{i:04d}" for i in range(1, 9)]
    assert designs[-1].params == {"macs": "1024", "L1.capacity": "16384", "sparse": "ttc-vegeta-m8"}
    assert all(d.valid for d in designs)
    assert designs[-1].arch is not None and designs[-1].arch.compute.instances == 1024
    assert designs[-1].arch.levels[2].capacity == 16384 and designs[-1].arch.sparse is not None
    assert designs[0].arch is not None and designs[0].arch.sparse is None


def test_a_sweep_finds_fronts_and_the_ttc_runs_tasd(spec_file):
    result = run_sweep(load_sweep(spec_file), executor="serial")
    assert len(result.rows) == 16 and not result.failures
    for w in ("dense", "sparse"):
        rows = [r for r in result.rows if r["workload"] == w]
        front = {r["design"] for r in rows if "edp" in r["front"]}
        assert front == set(result.fronts[w]["edp"])
        for r in rows:  # nothing off the front beats a front point on both area and EDP
            if r["design"] not in front:
                assert any(f["area_mm2"] <= r["area_mm2"] and f["edp_js"] <= r["edp_js"]
                           for f in rows if f["design"] in front)
    ttc = next(r for r in result.rows if r["workload"] == "sparse" and r["params"]["sparse"] == "ttc-vegeta-m8")
    assert ttc["operands"] == ["2:8+1:8@0.1 / dense"]  # 10 % dense A → the sparsest series dropping ≤ 5 %
    tc = next(r for r in result.rows if r["workload"] == "sparse" and r["params"]["sparse"] == "none")
    assert tc["operands"] == ["unstructured(0.1) / dense"]


def test_parameters_write_what_they_name(tmp_path):
    body = """version: 0.1
sweep:
  base: ttc-vegeta-m8
  parameters:
    L1.bandwidth: 64
    RF.instances: 128
    structured_support.A: {choices: {m8: ["1:8", "2:8", "4:8"], m4: ["2:4"]}}
    L1.format.A: [["CP:2"], null]
    MAC.safs: [[{type: gating, target: Z, condition_on: [B]}]]
    tasd.max_terms: [1, 2]
  workloads:
    - {file: tiny.yaml, a: "unstructured(0.1)", tasd: {operand: A}}
  mapper: {budget: 60}
"""
    spec = load_sweep(_spec(tmp_path, body))
    designs = expand_designs(spec)
    assert len(designs) == 8 and all(d.valid for d in designs)
    d = designs[0]
    assert d.params == {"L1.bandwidth": "64", "RF.instances": "128", "structured_support.A": "m8",
                        "L1.format.A": "CP:2", "MAC.safs": "gating Z←B", "tasd.max_terms": "1"}
    arch = d.arch
    assert arch is not None and arch.sparse is not None
    assert (arch.levels[2].read_bandwidth, arch.levels[2].write_bandwidth, arch.levels[3].instances) == (64, 64, 128)
    assert arch.sparse.structured_support["A"] == (((1, 8),), ((2, 8),), ((4, 8),))
    assert ("L1", "A") in arch.sparse.formats
    assert [(s.level, s.kind, s.target) for s in arch.sparse.safs if s.level == "MAC"] == [("MAC", "gating", "Z")]
    no_format = next(x for x in designs if x.params["L1.format.A"] == "none")
    assert no_format.arch is not None and ("L1", "A") not in no_format.arch.sparse.formats
    from tasder.hw.sweep import workload_layers

    by_terms = {x.params["tasd.max_terms"]: _label(workload_layers(spec.workloads[0], x)[0].a_density)
                for x in designs if x.params["structured_support.A"] == "m8"}
    assert by_terms == {"1": "4:8@0.1", "2": "2:8+1:8@0.1"}  # the series order: one term must keep more
    m4 = next(x for x in designs if x.params["structured_support.A"] == "m4")
    assert _label(workload_layers(spec.workloads[0], m4)[0].a_density) == "2:4@0.1"


def test_filtered_combinations_are_counted_with_their_reason(tmp_path):
    path = _spec(tmp_path, SPEC.replace("[8192, 16384]", "[8192, 65536]").replace("544KiB", "640KiB"))
    result = run_sweep(load_sweep(path), executor="serial")
    filtered = result.filtered()
    assert filtered == {"on-chip SRAM over the budget": {"count": 4, "example": filtered[
        "on-chip SRAM over the budget"]["example"]}}
    assert "over the budget 640 KiB" in filtered["on-chip SRAM over the budget"]["example"]
    assert sum(d.valid for d in result.designs) == 4


def test_rest_gives_a_level_what_the_budget_leaves(tmp_path):
    body = SPEC.replace("    L1.capacity: [8192, 16384]\n", "    L1.capacity: [8192, 16384]\n    L2.capacity: rest\n")
    designs = expand_designs(load_sweep(_spec(tmp_path, body)))
    for d in designs:
        assert d.valid and d.arch is not None
        l1 = int(d.params["L1.capacity"])
        # 544 KiB − L1 (4 × l1 × 2 B) − RF (64 × 256 × 2 B) = L2, in 2-byte words
        assert d.arch.levels[1].capacity == (544 * 1024 - 4 * l1 * 2 - 64 * 256 * 2) // 2
        assert d.params["L2.capacity"] == str(d.arch.levels[1].capacity)
        assert d.sram_bytes == 544 * 1024


@pytest.mark.parametrize(("edit", "message"), [
    (("parameters:", "paramters:"), "unknown key 'paramters' in sweep; did you mean 'parameters'"),
    (("macs:", "mac_count:"), "unknown parameter 'mac_count'"),
    (("L1.capacity:", "L3.capacity:"), "the base design tc has no storage level 'L3' \\(it has DRAM, L2, L1, RF\\)"),
    (("[8192, 16384]", "{from: 16384, to: 8192, step: 1024}"), "holds no value"),
    (("[8192, 16384]", "{from: 8192, to: 16384}"), "exactly one of 'step'"),
    (("[8192, 16384]", "[8192, 0]"), "each value must be an integer ≥ 1"),
    (("[8192, 16384]", "rest"), "'rest' .* needs constraints.sram_budget"),
    (("ttc-vegeta-m8]", "ttc-nonexistent]"), "no shipped design of that name"),
    (("file: tiny.yaml, name: dense", "file: nope.yaml, name: dense"), "no workload file"),
    (("b: \"unstructured(0.5)\"", "b: \"3:2\""), "workloads\\[0\\].b"),
    (("version: 0.1\n", "version: 9\n"), "unsupported version"),
    (("tasd: {operand: A}", "tasd: {operand: C}"), "operand must be one of A, B"),
    (("objective", "objective"), ""),
])
def test_bad_specs_are_one_clear_error_with_the_line(tmp_path, edit, message):
    body = SPEC.replace(*edit, 1)
    if "sram_budget" in message:
        body = body.replace("  constraints:\n    sram_budget: 544KiB\n", "")
    if not message:  # a valid edit: the control case
        load_sweep(_spec(tmp_path, body))
        return
    path = _spec(tmp_path, body)
    with pytest.raises(SpecError, match=message) as info:
        load_sweep(path)
    assert str(path) in str(info.value) or "tiny" in str(info.value)


def test_an_sram_split_over_the_budget_is_rejected(tmp_path):
    body = SPEC.replace("[8192, 16384]", "65536").replace("544KiB", "512KiB")
    with pytest.raises(SpecError, match=r"no valid design among the 4 .* on-chip SRAM .* over the budget 512 KiB"):
        run_sweep(load_sweep(_spec(tmp_path, body)), executor="serial")


def test_a_range_with_no_valid_point_is_rejected(tmp_path):
    body = SPEC.replace("    L1.capacity: [8192, 16384]\n", "    RF.capacity: [1, 2]\n")
    with pytest.raises(SpecError, match=r"no valid design .* no valid mapping"):
        run_sweep(load_sweep(_spec(tmp_path, body)), executor="serial")


def test_a_fan_out_that_is_not_whole_is_filtered_with_the_loader_s_message(tmp_path):
    body = SPEC.replace("macs: [256, 1024]", "macs: [256, 1000]")
    designs = expand_designs(load_sweep(_spec(tmp_path, body)))
    bad = [d for d in designs if not d.valid]
    assert len(bad) == 4 and all("not a multiple of RF's 64" in (d.reason or "") for d in bad)


def test_a_tasd_config_gives_its_layers_their_series(tmp_path):
    body = SPEC.replace("tasd: {operand: A}", "config: c.yaml")
    seen: list[str] = []

    def resolve_config(path: str):
        seen.append(path)
        return lambda name: ("4:8+1:8", "W") if name == "fc2" else None

    spec = load_sweep(_spec(tmp_path, body), resolve_config=resolve_config)
    assert seen == [str(tmp_path / "c.yaml")]
    layers = {p.name: p for p in spec.workloads[1].network.layers}
    assert _label(layers["fc2"].a_density) == "4:8+1:8" and _label(layers["fc1"].a_density) == "unstructured(0.1)"
    with pytest.raises(SpecError, match="gives no layer of tiny a TASD series"):
        load_sweep(_spec(tmp_path, body), resolve_config=lambda path: (lambda name: None))
    with pytest.raises(SpecError, match="need a config resolver"):
        load_sweep(_spec(tmp_path, body))


def test_built_in_networks_come_from_the_resolver(tmp_path):
    body = SPEC.replace("file: tiny.yaml, name: dense", "network: toy, name: dense")
    net = Network("toy", (Problem("x", 16, 16, 16),))
    spec = load_sweep(_spec(tmp_path, body), resolve_network=lambda name: net if name == "toy" else None)
    assert _label(spec.workloads[0].network.layers[0].b_density) == "unstructured(0.5)"
    with pytest.raises(SpecError, match="needs a network resolver"):
        load_sweep(_spec(tmp_path, body))


# --- TASD series and fronts --------------------------------------------------------------------


VEGETA = [(1, 8), (2, 8), (4, 8)]


@given(st.floats(0.01, 1.0), st.integers(1, 3), st.sampled_from([0.0, 0.02, 0.05, 0.2]))
def test_the_series_is_the_sparsest_that_keeps_within_the_drop_budget(density, max_terms, budget):
    import itertools

    chosen = tasd_series(VEGETA, density, max_terms, budget)
    options = {sum(c) for n in range(1, max_terms + 1) for c in itertools.combinations_with_replacement((1, 2, 4), n)
               if sum(c) < 8 and _dropped_fraction(sum(c), 8, density) <= budget}
    if chosen is None:
        assert not options
    else:
        g = sum(int(t.split(":")[0]) for t in chosen.split("+"))
        assert g == min(options) and len(chosen.split("+")) <= max_terms


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), min_size=1, max_size=40))
def test_the_front_is_exactly_the_non_dominated_points(points):
    pts = [(float(a), float(b)) for a, b in points]
    front = pareto_front(pts)

    def dominated(i: int) -> bool:
        return any(pts[j][0] <= pts[i][0] and pts[j][1] <= pts[i][1] and pts[j] != pts[i] for j in range(len(pts)))

    for i in range(len(pts)):
        if i in front:
            assert not dominated(i)
        else:  # dominated, or a duplicate of an earlier front point
            assert dominated(i) or any(pts[j] == pts[i] for j in front)
    assert sorted(pts[i] for i in front) == [pts[i] for i in front]


# --- the report and the command ----------------------------------------------------------------


@pytest.mark.slow  # draws the plots (seconds on a busy machine)
def test_the_report_folder(spec_file, tmp_path):
    result = run_sweep(load_sweep(spec_file), executor="serial")
    out = tmp_path / "out"
    paths = write_sweep_report(result, out)
    names = {p.name for p in out.iterdir()}
    assert {"report.html", "report.md", "summary.json", "results.jsonl", "results.csv", "designs.jsonl",
            "sweep.yaml", "figures", "designs"} <= names
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # the temporary folder is gone
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert rows == json.loads(json.dumps(result.rows))
    assert len((out / "results.csv").read_text().splitlines()) == len(rows) + 1
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "http" not in html.replace("http-equiv", "")
    for d in paths["designs"]:  # a front design is an ordinary design file with the same area
        arch = load_architecture(d)
        point = next(x for x in result.designs if x.id == d.stem)
        from tasder.hw.area import area_mm2

        assert point.area is not None and area_mm2(arch) == pytest.approx(point.area.mm2)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["valid"] == 8 and summary["best"]["sparse"]["edp"]["design"] in result.fronts["sparse"]["edp"]
    write_sweep_report(result, out)  # a report replaces an earlier report
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a sweep report"):
        check_output_dir(other)


def _cli(capsys, *args):
    from tasder.cli.app import run

    code = run([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow  # three runs, two reports with plots
def test_the_command_runs_caches_and_resumes(spec_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TASDER_HW_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "report"
    code, stdout, err = _cli(capsys, "hw", "sweep", spec_file, "-o", out, "--executor", "serial", "--json")
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc["run"]["computed"] == doc["run"]["unique"] > 0 and doc["run"]["cached"] == 0
    assert Path(doc["report"]["html"]).is_file()
    code, stdout, err = _cli(capsys, "hw", "sweep", spec_file, "-o", out, "--executor", "serial", "--json")
    again = json.loads(stdout)
    assert code == 0 and again["run"]["computed"] == 0 and again["run"]["cached"] == doc["run"]["unique"]
    assert again["best"] == doc["best"] and again["fronts"] == doc["fronts"]
    code, stdout, err = _cli(capsys, "hw", "sweep", spec_file, "--dry-run", "--json")
    dry = json.loads(stdout)
    assert code == 0 and dry["cached"] == dry["distinct_searches"] == doc["run"]["unique"]
    code, stdout, _ = _cli(capsys, "hw", "sweep", spec_file, "-o", out, "--executor", "serial")
    assert code == 0 and "best design per workload" in stdout and "report:" in stdout


@pytest.mark.parametrize("case", ["bad spec", "not a report folder", "no-cache and cache-dir", "address"])
def test_the_command_refuses_bad_input_before_mapping(spec_file, tmp_path, capsys, case):
    args = {"bad spec": ["hw", "sweep", _spec(tmp_path, SPEC.replace("macs:", "mac:"))],
            "not a report folder": ["hw", "sweep", spec_file, "-o", tmp_path],
            "no-cache and cache-dir": ["hw", "sweep", spec_file, "--no-cache", "--cache-dir", tmp_path / "c"],
            "address": ["hw", "sweep", spec_file, "--address", "localhost:6379"]}[case]
    t0 = time.perf_counter()
    code, out, err = _cli(capsys, *args)
    assert code == 2 and out == "" and len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert time.perf_counter() - t0 < 20
    assert {"bad spec": "s.yaml:", "not a report folder": "not a sweep report",
            "no-cache and cache-dir": "contradict", "address": "needs --executor ray"}[case] in err


def test_the_dry_run_counts_designs_and_searches(spec_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TASDER_HW_CACHE", str(tmp_path / "cache"))
    code, stdout, err = _cli(capsys, "hw", "sweep", spec_file, "--dry-run", "--json")
    assert code == 0, err
    doc = json.loads(stdout)
    # 8 designs × 2 workloads × 3 layers; fc1 and fc3 share a shape, and without TASD units a design's two
    # workloads differ only in densities: every (design, workload) has its own 2 distinct searches.
    assert (doc["designs"], doc["valid"], doc["searches"], doc["distinct_searches"], doc["cached"]) == \
        (8, 8, 48, 32, 0)
    assert not (tmp_path / "cache").exists() and not Path("sweep-tiny").exists()


def test_hw_eval_answers_from_the_cache(tmp_path, capsys):
    wl = tmp_path / "tiny.yaml"
    wl.write_text(WORKLOAD, encoding="utf-8")
    args = ["hw", "eval", "--arch", "stc", "--workload", wl, "--mapper-budget", "100", "--json",
            "--cache-dir", tmp_path / "c", "--executor", "serial"]
    code, first, err = _cli(capsys, *args)
    assert code == 0, err
    assert len(ResultCache(tmp_path / "c")) == 2  # fc1 and fc3 share a shape
    code, second, err = _cli(capsys, *args)
    assert code == 0 and first == second
    doc = json.loads(first)
    assert doc["area_mm2"] > 0 and set(doc["area_breakdown_mm2"]) == {"L2", "L1", "RF", "MAC"}
