"""tasder.io: loading tensors from .pt/.pth/.safetensors/.npy, and atomic writes."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tasder.io import SUPPORTED_SUFFIXES, atomic_open, atomic_write_bytes, atomic_write_text, load_tensors


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert torch.equal(a[name], b[name]), name


def _state_dict() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "layer.weight": torch.randn(8, 16, generator=g),
        "layer.bias": torch.randn(8, generator=g, dtype=torch.float64),
        "half": torch.randn(4, 8, generator=g).half(),
        "position_ids": torch.arange(5),
    }


# --- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".pt", ".pth"])
def test_torch_single_tensor_round_trips_under_the_file_stem(tmp_path, suffix):
    t = torch.randn(3, 5)
    path = tmp_path / f"weights{suffix}"
    torch.save(t, path)
    _assert_same(load_tensors(path), {"weights": t})


@pytest.mark.parametrize("suffix", [".pt", ".pth"])
def test_torch_state_dict_round_trips_in_order(tmp_path, suffix):
    sd = _state_dict()
    path = tmp_path / f"model{suffix}"
    torch.save(sd, path)
    _assert_same(load_tensors(str(path)), sd)


def test_torch_parameters_load_as_plain_tensors(tmp_path):
    layer = torch.nn.Linear(4, 3)
    path = tmp_path / "linear.pt"
    torch.save(layer.state_dict(keep_vars=True), path)
    loaded = load_tensors(path)
    assert set(loaded) == {"weight", "bias"}
    assert not any(t.requires_grad for t in loaded.values())
    assert torch.equal(loaded["weight"], layer.weight.detach())


def test_safetensors_round_trips(tmp_path):
    sd = _state_dict()
    path = tmp_path / "model.safetensors"
    save_file(sd, str(path))
    loaded = load_tensors(path)
    assert set(loaded) == set(sd)
    for name, t in sd.items():
        assert loaded[name].dtype == t.dtype
        assert torch.equal(loaded[name], t)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64, np.int64])
def test_npy_round_trips_under_the_file_stem(tmp_path, dtype):
    a = (np.arange(24).reshape(4, 6) - 7).astype(dtype)
    path = tmp_path / "acts.npy"
    np.save(path, a)
    loaded = load_tensors(path)
    assert list(loaded) == ["acts"]
    np.testing.assert_array_equal(loaded["acts"].numpy(), a)
    assert loaded["acts"].numpy().dtype == a.dtype


def test_npy_big_endian_array_is_read_in_native_order(tmp_path):
    a = np.arange(6, dtype=">f4").reshape(2, 3)
    path = tmp_path / "be.npy"
    np.save(path, a)
    np.testing.assert_array_equal(load_tensors(path)["be"].numpy(), a.astype("<f4"))


def test_extension_is_case_insensitive(tmp_path):
    t = torch.ones(2)
    path = tmp_path / "W.PT"
    torch.save(t, path)
    _assert_same(load_tensors(path), {"W": t})


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", SUPPORTED_SUFFIXES)
def test_missing_file_raises_file_not_found_naming_the_path(tmp_path, suffix):
    path = tmp_path / f"nothere{suffix}"
    with pytest.raises(FileNotFoundError, match="nothere"):
        load_tensors(path)


@pytest.mark.parametrize("name", ["weights.txt", "weights.bin", "weights"])
def test_unknown_extension_raises_value_error_listing_supported(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\x00" * 16)
    with pytest.raises(ValueError) as info:
        load_tensors(path)
    message = str(info.value)
    assert name in message
    for suffix in SUPPORTED_SUFFIXES:
        assert suffix in message


@pytest.mark.parametrize("suffix", SUPPORTED_SUFFIXES)
@pytest.mark.parametrize("content", [b"this is not a tensor file" * 4, b"", b"\x93NUMPY\x01\x00garbage"])
def test_garbage_bytes_raise_one_line_value_error_naming_the_file(tmp_path, suffix, content):
    path = tmp_path / f"garbage{suffix}"
    path.write_bytes(content)
    with pytest.raises(ValueError) as info:
        load_tensors(path)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    assert info.value.__cause__ is None or info.value.__suppress_context__


def test_truncated_torch_file_raises_value_error(tmp_path):
    full = tmp_path / "full.pt"
    torch.save({"w": torch.randn(64, 64)}, full)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(full.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"cut\.pt"):
        load_tensors(cut)


def test_directory_with_tensor_suffix_raises_value_error(tmp_path):
    path = tmp_path / "dir.pt"
    path.mkdir()
    with pytest.raises(ValueError, match="directory"):
        load_tensors(path)


class _NotATensor:  # a class torch.load(weights_only=True) must refuse
    pass


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (3, "holds no tensors: it holds an int"),
        ("text", "holds no tensors: it holds a str"),
        ([torch.ones(2)], "holds no tensors: it holds a list"),
        ({}, "holds no tensors"),
        ({"epoch": 3, "w": torch.ones(2)}, "'epoch': an int"),
        ({"model": {"w": torch.ones(2)}}, "'model': a dict"),
        (_NotATensor(), "objects other than tensors"),
    ],
)
def test_torch_file_holding_non_tensors_raises_value_error_saying_what_it_holds(tmp_path, obj, expected):
    path = tmp_path / "thing.pt"
    torch.save(obj, path)
    with pytest.raises(ValueError) as info:
        load_tensors(path)
    assert expected in str(info.value)
    assert "thing.pt" in str(info.value)
    assert "\n" not in str(info.value)


def test_empty_safetensors_file_raises_holds_no_tensors(tmp_path):
    path = tmp_path / "empty.safetensors"
    save_file({}, str(path))
    with pytest.raises(ValueError, match="holds no tensors"):
        load_tensors(path)


def test_npy_object_array_is_refused_without_running_pickle(tmp_path):
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}, 2], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"objects\.npy"):
        load_tensors(path)


def test_npy_string_array_raises_value_error_naming_the_dtype(tmp_path):
    path = tmp_path / "words.npy"
    np.save(path, np.array(["a", "b"]))
    with pytest.raises(ValueError, match="<U1"):
        load_tensors(path)


def test_npz_archive_named_npy_raises_value_error(tmp_path):
    path = tmp_path / "arch.npy"
    with open(path, "wb") as fh:
        np.savez(fh, a=np.ones(3))
    with pytest.raises(ValueError, match="zip archive"):
        load_tensors(path)


# --- atomic_write_text -------------------------------------------------------------------------


def _leftovers(directory) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_atomic_write_text_writes_the_text_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "report.json"
    assert atomic_write_text(path, "{\"a\": 1}\nü\n") == path
    assert path.read_text(encoding="utf-8") == "{\"a\": 1}\nü\n"
    assert _leftovers(tmp_path) == []


def test_atomic_write_text_replaces_an_existing_file_keeping_its_mode(tmp_path):
    path = tmp_path / "report.txt"
    path.write_text("old")
    os.chmod(path, 0o640)
    atomic_write_text(str(path), "new")
    assert path.read_text() == "new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_atomic_write_text_new_file_gets_umask_mode(tmp_path):
    umask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "new.txt", "x")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_atomic_write_text_failure_keeps_the_old_file_and_cleans_up(tmp_path):
    path = tmp_path / "report.txt"
    path.write_text("old")
    with pytest.raises(TypeError):
        atomic_write_text(path, 123)  # type: ignore[arg-type]
    assert path.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_atomic_open_error_inside_the_block_keeps_the_old_file_and_cleans_up(tmp_path):
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"), atomic_open(path) as fh:
        fh.write(b"half of the new cont")
        raise RuntimeError("boom")
    assert path.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_atomic_write_bytes_replaces_the_file(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(b"old")
    assert atomic_write_bytes(path, b"\x00new") == path
    assert path.read_bytes() == b"\x00new"
    assert _leftovers(tmp_path) == []


def test_atomic_write_text_into_missing_directory_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        atomic_write_text(tmp_path / "nope" / "report.txt", "x")
