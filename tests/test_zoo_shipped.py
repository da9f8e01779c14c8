"""The digits weights and split that ship in the package: listed, hashed, loaded, never trained again."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tasder import zoo
from tasder.zoo import _shipped
from tasder.zoo.cache import sha256_hex
from tasder.zoo.digits import SHIPPED_MODELS, DigitsCNN, load_digits_cnn, load_digits_data


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASDER_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("trained although the weights ship")

    monkeypatch.setattr("tasder.zoo.digits.train_digits_cnn", fail)
    monkeypatch.setattr("tasder.zoo.digits.gradual_prune", fail)


@pytest.fixture
def weights_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the shipped folder that the loaders read instead (to damage it safely)."""
    folder = tmp_path / "weights"
    shutil.copytree(_shipped.WEIGHTS_DIR, folder)
    monkeypatch.setattr(_shipped, "WEIGHTS_DIR", folder)
    return folder


def test_every_shipped_file_is_listed_with_its_hash() -> None:
    sums = _shipped.shipped_sums()
    files = {p.name for p in _shipped.WEIGHTS_DIR.iterdir() if p.name != _shipped.SUMS_FILE}
    assert set(sums) == files == {"digits-data.safetensors", *(f"{t}.safetensors" for t in SHIPPED_MODELS)}
    for name, digest in sums.items():
        assert sha256_hex(_shipped.WEIGHTS_DIR / name) == digest, name
    assert sum((_shipped.WEIGHTS_DIR / n).stat().st_size for n in files) < 1_000_000  # small enough to ship


def test_the_package_data_declares_the_weights() -> None:
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert '"zoo/weights/*.safetensors"' in pyproject and '"zoo/weights/SHA256SUMS"' in pyproject


@pytest.mark.parametrize("name", list(SHIPPED_MODELS))
def test_zoo_loads_the_shipped_weights_without_training(name: str, no_training: None) -> None:
    entry = zoo.load(name, progress=False)
    digest = _shipped.shipped_sums()[f"{name}.safetensors"]
    assert entry.metadata["weights"] == f"shipped {name}.safetensors sha256 {digest[:12]}"
    state, _ = _shipped.read_shipped(f"{name}.safetensors")
    assert all(torch.equal(entry.model.state_dict()[k], v) for k, v in state.items())
    assert not any(zoo.cache.cache_dir().glob("*")) if zoo.cache.cache_dir().exists() else True


def test_the_shipped_split_is_scikit_learns_split_exactly() -> None:
    shipped, built = load_digits_data(), load_digits_data(source="sklearn")
    for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        a, b = getattr(shipped, field), getattr(built, field)
        assert a.dtype == b.dtype and a.shape == b.shape and a.stride() == b.stride() and torch.equal(a, b), field
    assert (len(shipped.x_train), len(shipped.x_val), len(shipped.x_test)) == (1078, 359, 360)
    # The layout the models were trained on (the convolution picks its kernel by strides).
    assert shipped.x_train.stride() == (64, 1, 8, 1)


def test_loading_the_split_does_not_import_scikit_learn() -> None:
    code = ("import sys; from tasder.zoo.digits import load_digits_data; load_digits_data(); "
            "print('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_damaged_weight_file_is_never_used(weights_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = weights_copy / "digits-cnn.safetensors"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # one byte of tensor data: the file still parses
    path.write_bytes(bytes(data))
    trained = DigitsCNN().eval()
    monkeypatch.setattr("tasder.zoo.digits.train_digits_cnn", lambda *a, **k: trained)
    with pytest.warns(RuntimeWarning, match=r"shipped weights of digits-cnn cannot be used .*hash mismatch.*"
                                            r"numbers may differ"):
        model = load_digits_cnn(progress=False)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in trained.state_dict().items())


def test_a_missing_weight_file_trains_with_a_note(weights_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (weights_copy / "digits-cnn-sparse-95.safetensors").unlink()
    pruned: list[float] = []
    monkeypatch.setattr("tasder.zoo.digits.gradual_prune", lambda model, s, *a, **k: pruned.append(s))
    with pytest.warns(RuntimeWarning, match="digits-cnn-sparse-95 cannot be used .*missing"):
        entry = zoo.load("digits-cnn-sparse-95", progress=False)
    assert pruned == [0.95]  # pruned from the shipped dense model, nothing else trained
    assert entry.metadata["weights"].startswith("trained on this machine")


def test_weights_made_by_another_recipe_are_refused(weights_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state, meta = _shipped.read_shipped("digits-cnn.safetensors")
    sums = _shipped.shipped_sums()
    other = {**meta, "recipe_key": meta["recipe_key"].replace('"epochs":30', '"epochs":3')}
    sums["digits-cnn.safetensors"] = _shipped.write_shipped("digits-cnn.safetensors", state, other, weights_copy)
    _shipped.write_sums(sums, weights_copy)
    monkeypatch.setattr("tasder.zoo.digits.train_digits_cnn", lambda *a, **k: DigitsCNN().eval())
    with pytest.warns(RuntimeWarning, match="made by another recipe"):
        load_digits_cnn(progress=False)


def test_a_damaged_split_falls_back_to_scikit_learn(weights_copy: Path) -> None:
    (weights_copy / "digits-data.safetensors").write_bytes(b"nonsense")
    with pytest.warns(RuntimeWarning, match="shipped digits split cannot be used"):
        data = load_digits_data()
    assert torch.equal(data.y_test, load_digits_data(source="sklearn").y_test)


def test_raw_pixels_are_integers_and_labels_in_range() -> None:
    tensors, meta = _shipped.read_shipped("digits-data.safetensors")
    images = torch.cat([tensors[f"images_{s}"] for s in ("train", "val", "test")])
    labels = torch.cat([tensors[f"labels_{s}"] for s in ("train", "val", "test")])
    assert images.dtype == torch.uint8 and int(images.max()) == 16 and len(images) == 1797
    assert np.bincount(labels.numpy()).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert "CC BY 4.0" in meta["source"]


@pytest.mark.slow
@pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"),
                    reason="the shipped files were made on torch's AVX2 kernels; this CPU has no AVX2")
def test_rebuild_from_the_recipe_gives_the_shipped_bytes(tmp_path: Path) -> None:
    """``python -m tasder.zoo.digits --check``: the recipe, run here on torch's AVX2 kernels (as the
    shipped files were made), makes exactly the shipped files — on an AVX-512 CPU too, whose own
    kernels give other bytes."""
    proc = subprocess.run([sys.executable, "-m", "tasder.zoo.digits", "--check"], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("identical") == 1 + len(SHIPPED_MODELS)


def test_canonical_header_makes_the_bytes_independent_of_the_metadata_order() -> None:
    """safetensors writes metadata in a Rust hash map's order, which changes between processes: the
    same tensors and metadata must still give the same bytes (and SHA-256) once canonical."""
    import json

    from safetensors.torch import load, save

    from tasder.zoo._shipped import canonical_header

    tensors = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(3, dtype=torch.uint8)}
    meta = {"zeta": "1", "alpha": "CC BY 4.0 → ok", "mid": "x"}
    data = save(tensors, metadata=meta)
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    variants = []
    for keys in (["zeta", "alpha", "mid"], ["mid", "zeta", "alpha"], ["alpha", "mid", "zeta"]):
        h = {"__metadata__": {k: meta[k] for k in keys}, **{k: v for k, v in header.items() if k != "__metadata__"}}
        text = json.dumps(h, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        variants.append(data[:8] + text + b" " * (n - len(text)) + data[8 + n :])
    assert len({bytes(v) for v in variants}) == 3  # the orders really differ as bytes
    canon = {canonical_header(v) for v in variants}
    assert len(canon) == 1
    (only,) = canon
    loaded = load(only)
    assert set(loaded) == set(tensors) and all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    m = json.loads(only[8 : 8 + n])["__metadata__"]
    assert m == meta and list(m) == sorted(meta)
