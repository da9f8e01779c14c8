"""Hostile inputs (issue 14): no clobbered files, no silent damage, no hangs.

Each test reproduces one finding of the hostile-input sweep and fails on the code before the fix.
Tests that need root (device nodes made with mknod, a tmpfs mount) skip with the reason elsewhere.
Only two real device nodes are ever written: /dev/null and /dev/full, and only through the writer
that opens them in place (proven first on nodes made in a temporary folder).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from tasder.io import atomic_open, atomic_write_bytes, atomic_write_text, check_writable, load_tensors

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _node(path: Path, major: int, minor: int, kind: int = stat.S_IFCHR) -> Path:
    """A device node made in a temporary folder (root only), usable there (not a nodev mount)."""
    if not IS_ROOT:
        pytest.skip("making device nodes (mknod) needs root")
    os.mknod(path, 0o666 | kind, os.makedev(major, minor))
    if kind == stat.S_IFCHR:
        try:
            os.close(os.open(path, os.O_WRONLY))
        except PermissionError:
            pytest.skip(f"{path.parent} is mounted nodev: device nodes there cannot be opened")
    return path


def _same_node(path: Path, before: os.stat_result) -> bool:
    after = os.lstat(path)
    return (after.st_ino, after.st_mode, after.st_rdev) == (before.st_ino, before.st_mode, before.st_rdev)


@contextlib.contextmanager
def _tiny_tmpfs(path: Path, size: str = "64k"):
    """A tmpfs of ``size`` mounted at ``path`` (root, and a kernel that lets us mount), then unmounted."""
    if not IS_ROOT:
        pytest.skip("mounting a small tmpfs to fill it needs root")
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


def _fill(folder: Path) -> None:
    """Fill the file system of ``folder`` until a write fails with ENOSPC."""
    with open(folder / "filler", "wb", buffering=0) as fh, contextlib.suppress(OSError):
        while True:
            fh.write(b"\0" * 4096)


# ---------------------------------------------------------------------------------------------
# 1. output files: symlinks, device nodes, FIFOs, full disks
# ---------------------------------------------------------------------------------------------


def test_symlink_output_updates_its_target_and_keeps_the_link(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    (tmp_path / "link.json").symlink_to("real.json")
    (tmp_path / "chain.json").symlink_to(tmp_path / "link.json")
    atomic_write_text(tmp_path / "chain.json", "new")
    assert (tmp_path / "chain.json").is_symlink() and (tmp_path / "link.json").is_symlink()
    assert real.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chain.json", "link.json", "real.json"]


def test_dangling_symlink_output_creates_its_target(tmp_path):
    (tmp_path / "link.txt").symlink_to("sub/new.txt")
    with pytest.raises(FileNotFoundError, match=r"sub.*link\.txt"):
        atomic_write_text(tmp_path / "link.txt", "x")  # the target's folder is missing: named
    (tmp_path / "sub").mkdir()
    atomic_write_text(tmp_path / "link.txt", "x")
    assert (tmp_path / "link.txt").is_symlink() and (tmp_path / "sub" / "new.txt").read_text() == "x"


def test_symlink_loop_is_an_error_naming_the_path(tmp_path):
    (tmp_path / "loop").symlink_to("loop")
    with pytest.raises(OSError, match="symbolic links") as info:
        atomic_write_text(tmp_path / "loop", "x")
    assert info.value.errno == errno.ELOOP and info.value.filename == str(tmp_path / "loop")


def test_char_devices_made_here_keep_their_node_type(tmp_path):
    """Proof on nodes of our own before /dev is touched: /dev/null-like takes the write in place,
    /dev/full-like gives ENOSPC naming the path; both stay character devices."""
    null = _node(tmp_path / "null", 1, 3)
    full = _node(tmp_path / "full", 1, 7)
    before_null, before_full = os.lstat(null), os.lstat(full)
    assert atomic_write_text(null, "report\n") == null
    with pytest.raises(OSError) as info, atomic_open(full) as fh:
        torch.save({"w": torch.zeros(50_000)}, fh)  # torch says RuntimeError; we say ENOSPC
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(full)
    assert _same_node(null, before_null) and _same_node(full, before_full)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "null"]  # no temp file left


def test_real_dev_null_and_dev_full():
    """Writing to /dev/null needs no root; replacing it would. The node is the same afterwards."""
    before = os.lstat("/dev/null")
    atomic_write_text("/dev/null", "x" * 100_000)
    assert _same_node(Path("/dev/null"), before) and stat.S_ISCHR(before.st_mode)
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    before = os.lstat("/dev/full")
    with pytest.raises(OSError, match="No space left on device") as info:
        atomic_write_text("/dev/full", "x" * 100_000)
    assert info.value.filename == "/dev/full" and _same_node(Path("/dev/full"), before)


def test_block_device_socket_and_directory_are_refused(tmp_path):
    with pytest.raises(IsADirectoryError):
        atomic_write_text(tmp_path, "x")
    with pytest.raises(IsADirectoryError):
        check_writable(tmp_path)
    if IS_ROOT:
        block = tmp_path / "block"
        os.mknod(block, 0o600 | stat.S_IFBLK, os.makedev(7, 200))  # never opened: refused on its type
        with pytest.raises(OSError, match="block device"):
            atomic_write_text(block, "x")
        with pytest.raises(OSError, match="block device"):
            check_writable(block)
        assert stat.S_ISBLK(os.lstat(block).st_mode)


def test_fifo_output_is_written_in_place_and_a_fifo_without_reader_fails_at_once(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="no process is reading") as info:
        atomic_write_text(fifo, "x")  # opening blocks forever without O_NONBLOCK
    assert info.value.errno == errno.ENXIO
    check_writable(fifo)  # does not open it (that would end a reader's input)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    for _ in range(200):  # wait until the reader has the FIFO open
        try:
            atomic_write_text(fifo, "through the fifo")
            break
        except OSError:
            threading.Event().wait(0.01)
    reader.join(5)
    assert got == ["through the fifo"] and stat.S_ISFIFO(os.lstat(fifo).st_mode)


@pytest.mark.parametrize("form", ["/dev/fd/{}", "/proc/self/fd/{}"])
def test_descriptor_paths_write_to_the_descriptor_and_keep_an_appended_file(tmp_path, form):
    """``-o /dev/stdout`` (a link to /proc/self/fd/1) writes to the open descriptor: a file the shell
    opened with ``>>`` is appended to, in order, never truncated or replaced."""
    if not os.path.exists(form.format(0)):
        pytest.skip(f"no {form.format('N')} on this system")
    log = tmp_path / "log.txt"
    log.write_text("earlier\n")
    with open(log, "a") as fh:
        fh.write("buffered\n")
        fh.flush()
        atomic_write_text(form.format(fh.fileno()), "report\n")
        inode = os.fstat(fh.fileno()).st_ino
    assert log.read_text() == "earlier\nbuffered\nreport\n" and os.stat(log).st_ino == inode
    assert [p.name for p in tmp_path.iterdir()] == ["log.txt"]
    with pytest.raises(OSError, match="not an open file descriptor"):
        atomic_write_text("/dev/fd/987654", "x")


def test_error_names_the_users_path_never_the_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "report.json"
    target.write_text("old")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as info:
        atomic_write_text(target, "new")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert ".tmp" not in str(info.value)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_full_tmpfs_gives_enospc_naming_the_path_and_keeps_the_old_file(tmp_path):
    with _tiny_tmpfs(tmp_path / "mnt") as mnt:
        out = mnt / "out.json"
        out.write_text("old")
        _fill(mnt)
        with pytest.raises(OSError) as info:
            atomic_write_bytes(out, b"x" * 100_000)
        assert info.value.errno == errno.ENOSPC and info.value.filename == str(out)
        with pytest.raises(OSError) as info, atomic_open(out) as fh:
            torch.save({"w": torch.zeros(100_000)}, fh)
        assert info.value.errno == errno.ENOSPC and info.value.filename == str(out)
        assert out.read_text() == "old" and sorted(p.name for p in mnt.iterdir()) == ["filler", "out.json"]


def test_zero_dim_npy_stays_zero_dim(tmp_path):
    np.save(tmp_path / "s.npy", np.float32(3.0))
    np.save(tmp_path / "f.npy", np.asfortranarray(np.arange(6.0).reshape(2, 3)))
    assert load_tensors(tmp_path / "s.npy")["s"].shape == ()
    assert torch.equal(load_tensors(tmp_path / "f.npy")["f"], torch.arange(6.0, dtype=torch.float64).reshape(2, 3))


# ---------------------------------------------------------------------------------------------
# 2. cache integrity
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def digits_cache(tmp_path, monkeypatch):
    """A cache holding the tiny-recipe digits CNN; yields (entry path, its state_dict)."""
    from tasder.zoo import cache
    from tasder.zoo.digits import DigitsRecipe, load_digits_cnn

    monkeypatch.setenv(cache.CACHE_ENV_VAR, str(tmp_path / "cache"))
    recipe = DigitsRecipe(seed=0, epochs=1, lr=3e-3, batch_size=64)
    state = load_digits_cnn(recipe=recipe, progress=False).state_dict()
    (path,) = (p for p in cache.cache_dir().iterdir() if p.suffix == ".pt")
    return path, state, lambda: load_digits_cnn(recipe=recipe, progress=False).state_dict()


def _same_state(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cache_entries_carry_a_sha256sum_file(digits_cache):
    path, _, _ = digits_cache
    from tasder.zoo.cache import sha256_hex

    line = path.with_name(path.name + ".sha256").read_text()
    assert line == f"{sha256_hex(path.read_bytes())}  {path.name}\n" == f"{sha256_hex(path)}  {path.name}\n"


def test_verify_sha256_names_the_file():
    from tasder.zoo.cache import sha256_hex, verify_sha256

    digest = sha256_hex(b"weights")
    verify_sha256(b"weights", digest.upper() + "\n", "w.pt")
    with pytest.raises(ValueError, match=r"^w\.pt: content hash mismatch: sha256 [0-9a-f]{12}…, expected"):
        verify_sha256(b"weightz", digest, "w.pt")


def test_bit_flipped_tensor_data_is_detected_and_rebuilt(digits_cache):
    """400 flipped bytes inside the tensor data (zip structure intact) loaded silently before."""
    import zipfile

    path, state, reload = digits_cache
    data = bytearray(path.read_bytes())
    weight = state["fc1.weight"].numpy().tobytes()
    start = bytes(data).find(weight[:4096])
    assert start > 0
    for i in range(start + 1000, start + 1400):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist()  # still a readable zip: only the tensor bytes changed
    with pytest.warns(RuntimeWarning, match=rf"{path.name} is damaged \(.*content hash mismatch") as record:
        again = reload()
    assert len(record) == 1 and _same_state(again, state)
    with warnings_as_errors():
        assert _same_state(reload(), state)  # rebuilt and re-hashed: read silently again


def test_nan_weights_with_a_matching_hash_are_damage(digits_cache):
    from tasder.zoo.cache import sha256_hex

    path, state, reload = digits_cache
    bad = {k: v.clone() for k, v in state.items()}
    bad["conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(bad, path)
    path.with_name(path.name + ".sha256").write_text(f"{sha256_hex(path)}  {path.name}\n")
    with pytest.warns(RuntimeWarning, match="'conv1.weight' holds NaN/Inf"):
        assert _same_state(reload(), state)


def test_missing_hash_file_rebuilds_with_one_note(digits_cache):
    path, state, reload = digits_cache
    path.with_name(path.name + ".sha256").unlink()
    with pytest.warns(RuntimeWarning, match="no content hash") as record:
        assert _same_state(reload(), state)
    assert len(record) == 1 and path.with_name(path.name + ".sha256").is_file()


@contextlib.contextmanager
def warnings_as_errors():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# ---------------------------------------------------------------------------------------------
# 3. YAML: one safe loader for every file (aliases refused, nesting bounded, file:line errors)
# ---------------------------------------------------------------------------------------------


def _laughs(key: str) -> str:
    """Nine levels of nine-fold aliases under ``key``: 9⁹ (387 million) leaves from ~700 bytes."""
    lines = [f"{key}:", '  l0: &l0 ["lol"]']
    for i in range(1, 10):
        lines.append(f"  l{i}: &l{i} [{', '.join(f'*l{i - 1}' for _ in range(9))}]")
    return "\n".join(lines) + "\n"


def _loaders():
    """(name, function reading a path) for every YAML loader in the package."""
    from tasder.hw import load_architecture
    from tasder.hw.energy import load_energy_table
    from tasder.hw.mapping import load_mapping
    from tasder.hw.workload import load_network
    from tasder.nn import TASDConfig
    from tasder.targets import load_target

    return {
        "architecture": load_architecture,
        "workload": load_network,
        "mapping": lambda p: load_mapping(p, load_architecture("tc")),
        "energy": lambda p: load_energy_table(str(p)),
        "tasd-config": TASDConfig.load,
        "target": load_target,
    }


LOADERS = ["architecture", "workload", "mapping", "energy", "tasd-config", "target"]
#: A valid-looking first line for each format, so the hostile part is what fails.
HEAD = {"architecture": "version: 0.1\n", "workload": "version: 0.1\n", "mapping": "version: 0.1\n",
        "energy": "version: 0.1\n", "tasd-config": "version: 1\n", "target": "name: x\n"}


@pytest.mark.parametrize("loader", LOADERS)
def test_billion_laughs_is_refused_at_the_first_alias_even_under_an_unknown_key(tmp_path, loader):
    path = tmp_path / "bomb.yaml"
    path.write_text(HEAD[loader] + _laughs("unknown_key"))
    with pytest.raises(ValueError, match=r"bomb\.yaml:4: YAML aliases \(\*l0\) are not accepted"):
        _loaders()[loader](path)


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize(("body", "match"), [
    ("x: &a [*a]\n", r":2: YAML aliases \(\*a\)"),                      # self-reference: was RecursionError
    ("x: " + "[" * 5000 + "]" * 5000 + "\n", r":2: nested deeper than 64 levels"),
    ("x: 1\nx: 2\n", r":3: duplicate key 'x'"),
    ("x: [1\n", r":\d+: invalid YAML"),
], ids=["self-alias", "deep", "duplicate", "malformed"])
def test_hostile_yaml_is_one_error_with_file_and_line(tmp_path, loader, body, match):
    path = tmp_path / "spec.yaml"
    path.write_text(HEAD[loader] + body)
    with pytest.raises(ValueError, match=r"spec\.yaml" + match):
        _loaders()[loader](path)


@pytest.mark.parametrize("loader", LOADERS)
def test_invalid_utf8_names_the_file_and_line(tmp_path, loader):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(HEAD[loader].encode() + b"name: caf\xe9\n")
    with pytest.raises(ValueError, match=r"latin1\.yaml:2: not UTF-8 text \(byte 0xe9\)"):
        _loaders()[loader](path)


def test_config_written_with_repeated_provenance_objects_reads_back(tmp_path):
    """safe_dump writes an object listed twice as an anchor and an alias; ours writes it out."""
    from tasder.nn import TASDConfig

    shared = {"a": 1}
    cfg = TASDConfig.from_mapping({"version": 1, "layers": {"fc": "2:4"}, "provenance": {"x": shared, "y": shared}})
    assert "*" not in cfg.to_yaml()
    assert TASDConfig.load(cfg.save(tmp_path / "c.yaml")).provenance == {"x": shared, "y": shared}


# ---------------------------------------------------------------------------------------------
# 5. bad values: refused at parse time with file:line
# ---------------------------------------------------------------------------------------------


def _design(tmp_path: Path, old: str, new: str, name: str = "design.yaml") -> Path:
    from tasder.hw.architecture import _designs_dir

    text = (_designs_dir() / "tc.yaml").read_text()
    assert old in text
    path = tmp_path / name
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(("old", "new", "match"), [
    ("clock_hz: 1.0e+9", "clock_hz: .nan", r":8: architecture\.clock_hz must be a finite number; got nan"),
    ("clock_hz: 1.0e+9", "clock_hz: .inf", r":8: architecture\.clock_hz must be a finite number; got inf"),
    ("clock_hz: 1.0e+9", "clock_hz: 1.0e+20", r":8: architecture\.clock_hz=1e\+20 is above the limit of 1e\+13"),
    ("instances: 1024", "instances: 1000000000000000000000000000000",
     r":32: architecture\.compute\.instances=1,000,(000,)+000 is above the limit of 2\*\*32 \(thousands of times"),
    ("instances: 1024", "instances: 1.0e+30", r":32: architecture\.compute\.instances must be an integer"),
    ("    - name: L1\n", "    - name: L2\n",
     r"design\.yaml:22: a second level named 'L2' \(the first is at .*design\.yaml:18\)"),
    ("read_bandwidth: 256,", "read_bandwidth: .nan,",
     r":21: architecture\.storage\[1\]\.attributes\.read_bandwidth must"),
    ("{capacity: 256,", "{capacity: 1099511627777,",
     r":29: .*capacity=1,099,511,627,777 is above the limit of 2\*\*40"),
], ids=["clock-nan", "clock-inf", "clock-huge", "instances-1e30-int", "instances-1e30-float", "same-name",
        "bandwidth-nan", "capacity-huge"])
def test_bad_design_values_are_refused_with_file_and_line(tmp_path, old, new, match):
    from tasder.hw import SpecError, load_architecture

    with pytest.raises(SpecError, match=match):
        load_architecture(_design(tmp_path, old, new))


def test_nan_in_the_energy_table_is_refused(tmp_path):
    from tasder.hw import SpecError
    from tasder.hw.energy import load_energy_table

    ref = Path(__import__("tasder.hw.energy", fromlist=["x"]).__file__).parent / "data" / "energy_45nm.yaml"
    for old, new, match in [("  32768: 20.0", "  32768: .nan", r":22: sram_64bit_read .* finite"),
                            ("fp16_add: 0.4", "fp16_add: .nan", r":16: arithmetic\.fp16_add must be a finite"),
                            ("dram_64bit_access: 1950.0", "dram_64bit_access: .inf", r":24: dram_64bit_access must")]:
        path = tmp_path / "energy.yaml"
        path.write_text(ref.read_text().replace(old, new))
        with pytest.raises(SpecError, match=match):
            load_energy_table(str(path))


def test_huge_workload_dims_are_refused(tmp_path):
    from tasder.hw import Problem, SpecError
    from tasder.hw.workload import load_network

    path = tmp_path / "w.yaml"
    path.write_text("version: 0.1\nworkload:\n  layers:\n    - {name: a, M: 4294967296, K: 8, N: 8}\n")
    with pytest.raises(SpecError, match=r"w\.yaml:4: .*M=4,294,967,296 is above the limit of 2\*\*31"):
        load_network(path)
    with pytest.raises(ValueError, match=r"K=2,305,843,009,213,693,952 is above the limit of 2\*\*31"):
        Problem("g", M=2, K=2**61, N=2)


# ---------------------------------------------------------------------------------------------
# 4. unbounded work: mapper budgets, target candidate counts
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("budget", [10**9, 10**30])
def test_mapper_budget_above_the_limit_is_refused_at_once(budget):
    """10**9 ran for minutes; 10**30 asked for 7.44 TiB (it "fit" a 10**12-point space and enumerated it)."""
    from tasder.hw import Problem, load_architecture
    from tasder.hw import map_layer as search
    from tasder.hw.mapper import MAX_MAPPER_BUDGET
    from tasder.search.cost import HardwareCost

    arch = load_architecture("tc")
    problem = Problem("g", M=64, K=64, N=64)
    with pytest.raises(ValueError, match=rf"mapper budget {budget:,} is above the limit of 1,000,000 .*grows linearly"):
        search(arch, problem, budget=budget)
    with pytest.raises(ValueError, match="above the limit"):
        HardwareCost("tc", {"g": problem}, budget=budget)  # before any mapping, not at the first evaluation
    assert search(arch, problem, budget=50).candidates == 50 <= MAX_MAPPER_BUDGET


def test_enumeration_runs_in_chunks_and_finds_what_one_chunk_finds():
    """An exhaustive search streams its grid: any chunk size gives the same top mappings."""
    from tasder.hw import Problem, load_architecture
    from tasder.hw import map_layer as search
    from tasder.hw.mapper import MapperConstraints

    arch = load_architecture("tc")
    fixed = MapperConstraints(orders={lv.name: "MKN" for lv in arch.levels},
                              spatial_dims={"L2": "M", "L1": "K", "RF": "N"})
    problem = Problem("s", M=8, K=4, N=2)
    whole = search(arch, problem, budget=100_000, constraints=fixed, chunk=1 << 20)
    assert whole.exhaustive and whole.candidates == 2625  # the space, not the budget
    pieces = search(arch, problem, budget=100_000, constraints=fixed, chunk=97)
    assert pieces.candidates == whole.candidates and pieces.valid == whole.valid
    assert pieces.top == whole.top


@pytest.mark.parametrize(("patterns", "order", "match"), [
    ('["2:{1..100000000}"]', 1, r"expand to 100,000,000 patterns .* above the limit of 1,024"),
    ('["1:{2..200}"]', 4, r"199 patterns with max_order 4 make 68,685,049 candidate series, above the limit "
                          r"of 100,000"),
])
def test_target_candidate_count_is_bounded_before_enumerating(tmp_path, patterns, order, match):
    """The first ran out of memory, the second hung (despite --max-evals 3): now both fail at once."""
    from tasder.targets import Target, candidate_series

    path = tmp_path / "target.yaml"
    path.write_text(f"name: t\npatterns: {patterns}\nmax_order: {order}\n")
    with pytest.raises(ValueError, match=match):
        candidate_series(path)
    many = Target("t", tuple(f"1:{h}" for h in range(2, 201)), max_order=4)  # built in Python: checked too
    with pytest.raises(ValueError, match="68,685,049 candidate series"):
        candidate_series(many)


# ---------------------------------------------------------------------------------------------
# 6. smaller: staged output folders (demo), checkpoints on a full disk
# ---------------------------------------------------------------------------------------------


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_staged_folder_moves_a_new_folder_into_place_in_one_step(tmp_path):
    from tasder.io import staged_folder

    target = tmp_path / "a" / "b" / "report"
    with staged_folder(target) as stage:
        assert stage.parent == target.parent and stage.name.startswith(".report.")
        atomic_write_text(stage / "x.txt", "x")
        (stage / "figures").mkdir()
        atomic_write_text(stage / "figures" / "f.png", "f")
    assert _tree(target) == {"x.txt": "x", "figures/f.png": "f"}
    assert [p.name for p in target.parent.iterdir()] == ["report"]  # no hidden folder left


def test_staged_folder_merges_into_an_existing_report_keeping_other_files(tmp_path):
    from tasder.io import staged_folder

    target = tmp_path / "report"
    target.mkdir()
    (target / "x.txt").write_text("old")
    (target / "notes.md").write_text("mine")
    with staged_folder(target) as stage:
        atomic_write_text(stage / "x.txt", "new")
    assert _tree(target) == {"notes.md": "mine", "x.txt": "new"}
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


@pytest.mark.parametrize("failure", [KeyboardInterrupt, RuntimeError])
def test_staged_folder_failure_leaves_the_previous_output_untouched(tmp_path, failure):
    from tasder.io import staged_folder

    old = tmp_path / "report"
    old.mkdir()
    (old / "x.txt").write_text("old")
    with pytest.raises(failure), staged_folder(old) as stage:
        atomic_write_text(stage / "x.txt", "half")
        raise failure()
    assert _tree(old) == {"x.txt": "old"} and [p.name for p in tmp_path.iterdir()] == ["report"]
    with pytest.raises(failure), staged_folder(tmp_path / "new" / "deeper" / "report") as stage:
        atomic_write_text(stage / "x.txt", "half")
        raise failure()
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # the parents it made are gone again


def test_staged_folder_on_a_full_disk_names_the_users_path(tmp_path):
    from tasder.io import staged_folder

    with _tiny_tmpfs(tmp_path / "mnt") as mnt:
        (mnt / "report").mkdir()
        (mnt / "report" / "x.txt").write_text("old")
        _fill(mnt)
        with pytest.raises(OSError) as info, staged_folder(mnt / "report") as stage:
            atomic_write_bytes(stage / "x.txt", b"x" * 100_000)
        assert info.value.errno == errno.ENOSPC and info.value.filename == str(mnt / "report" / "x.txt")
        assert _tree(mnt / "report") == {"x.txt": "old"}
        assert sorted(p.name for p in mnt.iterdir()) == ["filler", "report"]


def test_demo_writes_through_a_staged_folder(tmp_path, monkeypatch):
    """run_demo's report appears whole or not at all (a Ctrl-C mid-run used to leave half a folder)."""
    import tasder.demo as demo

    out = tmp_path / "report"
    out.mkdir()
    (out / "report.html").write_text("previous run")

    def interrupted(model, folder, *args):
        atomic_write_text(folder / "digits-cnn.tasd.yaml", "version: 1\nlayers: {}\n")
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "_run_flow", interrupted)
    with pytest.raises(KeyboardInterrupt):
        demo.run_demo(out_dir=out)
    assert _tree(out) == {"report.html": "previous run"} and [p.name for p in tmp_path.iterdir()] == ["report"]

    def finished(model, folder, *args):
        return {"models": []}, {"html": atomic_write_text(folder / "report.html", "new"), "figures": []}

    monkeypatch.setattr(demo, "_run_flow", finished)
    doc = demo.run_demo(out_dir=out)
    assert doc["paths"] == {"html": str(out / "report.html"), "figures": []}
    assert _tree(out) == {"report.html": "new"}


def test_output_folder_that_is_a_file_is_refused(tmp_path):
    from tasder.io import staged_folder

    (tmp_path / "taken").write_text("x")
    with pytest.raises(NotADirectoryError), staged_folder(tmp_path / "taken"):
        pass
    assert (tmp_path / "taken").read_text() == "x"


def test_checkpoint_on_a_full_disk_is_enospc_naming_the_file(tmp_path):
    """train -o on a full disk said `RuntimeError: [enforce fail at inline_container.cc...]` (exit 1)."""
    from tasder.train.loop import save_checkpoint

    with _tiny_tmpfs(tmp_path / "mnt") as mnt:
        _fill(mnt)
        with pytest.raises(OSError) as info:
            save_checkpoint(mnt / "ckpt.pt", {"w": torch.zeros(100_000)})
        assert info.value.errno == errno.ENOSPC and info.value.filename == str(mnt / "ckpt.pt")
        assert sorted(p.name for p in mnt.iterdir()) == ["filler"]


# ---------------------------------------------------------------------------------------------
# the command line: one line, exit 2 for bad input, nothing clobbered
# ---------------------------------------------------------------------------------------------


def _cli(capsys, *args: object) -> tuple[int, str, str]:
    from tasder.cli.app import run

    code = run([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, out: str, err: str, *fragments: str, expected: int = 2) -> None:
    assert code == expected, err
    assert out == "" and len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert "Traceback" not in err and ".tmp" not in err  # never the hidden temp file
    for fragment in fragments:
        assert fragment in err, err


@pytest.fixture
def weights(tmp_path) -> Path:
    path = tmp_path / "w.npy"
    np.save(path, np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32))
    return path


def test_cli_output_to_dev_full_says_no_space_and_keeps_the_node(capsys, weights):
    before = os.lstat("/dev/full")
    assert_one_line_error(*_cli(capsys, "decompose", weights, "-s", "2:4", "-o", "/dev/full"),
                    "no space left on device, /dev/full")
    assert _same_node(Path("/dev/full"), before)
    before = os.lstat("/dev/null")
    assert _cli(capsys, "decompose", weights, "-s", "2:4", "--json", "-o", "/dev/null")[0] == 0
    assert _same_node(Path("/dev/null"), before)


def test_cli_output_through_a_symlink_keeps_the_link(capsys, weights, tmp_path):
    (tmp_path / "link.json").symlink_to("real.json")
    assert _cli(capsys, "decompose", weights, "-s", "2:4", "--json", "-o", tmp_path / "link.json")[0] == 0
    assert (tmp_path / "link.json").is_symlink()
    assert json.loads((tmp_path / "real.json").read_text())[0]["series"] == "2:4"


def test_cli_full_disk_is_exit_2_naming_the_file(capsys, weights, tmp_path):
    with _tiny_tmpfs(tmp_path / "mnt") as mnt:
        _fill(mnt)
        assert_one_line_error(*_cli(capsys, "decompose", weights, "-s", "2:4", "-o", mnt / "report.txt"),
                        f"no space left on device, {mnt / 'report.txt'}")
        assert sorted(p.name for p in mnt.iterdir()) == ["filler"]


@pytest.mark.slow  # trains an epoch (~15 s on 2 cores); save_checkpoint's ENOSPC is tested fast above
def test_cli_train_on_a_full_disk_is_exit_2_naming_the_checkpoint(capsys, tmp_path):
    """torch's own writer reported the ENOSPC as `RuntimeError: [enforce fail ...]` (exit 1) before."""
    with _tiny_tmpfs(tmp_path / "mnt") as mnt:
        _fill(mnt)
        assert_one_line_error(*_cli(capsys, "train", "digits-cnn", "--epochs", "1", "-o", mnt / "ckpt.pt"),
                        f"no space left on device, {mnt / 'ckpt.pt'}")
        assert sorted(p.name for p in mnt.iterdir()) == ["filler"]


def test_cli_closed_stdout_is_one_line_exit_2(capsys, weights, monkeypatch):
    monkeypatch.setattr(sys, "stdout", None)  # what Python sets when started with `>&-`
    code, _, err = _cli(capsys, "decompose", weights, "-s", "2:4", "--json")
    assert code == 2 and err == "error: standard output is closed; write the report to a file with -o FILE\n"


def test_cli_ctrl_c_exits_130_with_one_line(capsys, monkeypatch, tmp_path):
    import tasder.demo

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tasder.demo, "run_demo", interrupted)
    assert_one_line_error(*_cli(capsys, "demo", "--quick", "-o", tmp_path / "r"), "interrupted", expected=130)


def test_cli_yaml_bomb_and_huge_budget_fail_at_once(capsys, tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("version: 0.1\n" + _laughs("architecture"))
    workload = tmp_path / "w.yaml"
    workload.write_text("version: 0.1\nworkload:\n  layers:\n    - {name: fc, M: 64, K: 64, N: 64}\n")
    assert_one_line_error(*_cli(capsys, "hw", "eval", "--arch", bomb, "--workload", workload),
                    f"{bomb}:4: YAML aliases (*l0) are not accepted")
    assert_one_line_error(*_cli(capsys, "hw", "compare", "--designs", "tc", "--workload", "gemm:64x64x64",
                          "--mapper-budget", 10**9), "above the limit of 1,000,000")
