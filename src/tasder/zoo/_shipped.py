"""Files that ship inside the package (``tasder/zoo/weights/``): read, verified, and (re)written.

Why ship them: a model trained on the user's machine depends on that machine's floating-point
arithmetic (another CPU's vector width gives other weights after 30 epochs), so every number
downstream — test accuracy, the search's choices, the modelled EDP — moved from machine to
machine. The digits CNN, its pruned variants and the digits split are small (≈ 0.6 MB in all), so
they ship: every install loads the same bytes.

Every file is listed in ``SHA256SUMS`` (``sha256sum`` format, so ``sha256sum -c SHA256SUMS`` in the
folder checks them too). :func:`read_shipped` reads a file once, checks its SHA-256 against that
list, and only then parses it (safetensors: tensors and a string → string metadata header).
:func:`write_shipped` is what ``python -m tasder.zoo.digits --rebuild`` writes with.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path

import torch

from tasder.io import atomic_write_bytes, atomic_write_text
from tasder.zoo.cache import sha256_hex, verify_sha256

__all__ = ["SUMS_FILE", "WEIGHTS_DIR", "ShippedFileError", "canonical_header", "read_shipped", "shipped_sums",
           "write_shipped", "write_sums"]

#: Where the shipped files live (package data; see pyproject.toml).
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: The list of content hashes, ``<sha256>  <file name>`` per line.
SUMS_FILE = "SHA256SUMS"


class ShippedFileError(ValueError):
    """A shipped file is missing, not listed, damaged or not what its name says."""


def shipped_sums(folder: Path | None = None) -> dict[str, str]:
    """File name → SHA-256 (64 hex digits) from ``folder``'s ``SHA256SUMS`` (empty when it is missing)."""
    folder = WEIGHTS_DIR if folder is None else folder
    try:
        text = (folder / SUMS_FILE).read_text(encoding="ascii")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ShippedFileError(f"{folder / SUMS_FILE}: unreadable ({exc})") from None
    sums: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and len(parts[0]) == 64:
            sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def _metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file's header (its first 8 bytes give the header's length)."""
    if len(data) < 8:
        raise ShippedFileError("too short to be a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ShippedFileError(f"not a safetensors file ({exc})") from None
    meta = header.get("__metadata__", {}) if isinstance(header, dict) else {}
    return dict(meta) if isinstance(meta, dict) else {}


def read_shipped(name: str, folder: Path | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors, metadata)`` of the shipped file ``name``, its bytes checked against ``SHA256SUMS``.

    Raises:
        ShippedFileError: the file or its hash is missing, the hash differs, or it does not parse.
    """
    from safetensors.torch import load

    folder = WEIGHTS_DIR if folder is None else folder
    path = folder / name
    expected = shipped_sums(folder).get(name)
    if expected is None:
        raise ShippedFileError(f"{path}: not listed in {folder / SUMS_FILE}")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ShippedFileError(f"{path}: missing") from None
    except OSError as exc:
        raise ShippedFileError(f"{path}: unreadable ({exc})") from None
    try:
        verify_sha256(data, expected, path)
    except ValueError as exc:
        raise ShippedFileError(str(exc)) from None
    meta = _metadata(data)
    try:
        tensors = load(data)
    except Exception as exc:  # safetensors raises its own error type on a malformed file
        raise ShippedFileError(f"{path}: not a safetensors file ({exc})") from None
    return tensors, meta


def canonical_header(data: bytes) -> bytes:
    """``data`` (a safetensors file) with its ``__metadata__`` keys in sorted order.

    safetensors writes the metadata from a Rust hash map, whose order changes from one process to the
    next: the same tensors and metadata gave other bytes (and another SHA-256) on every other run.
    The header is re-written in the same compact JSON, padded with spaces to its old length (the
    format's own padding), so the tensors' offsets and bytes stay as they are.
    """
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    meta = header.get("__metadata__")
    if not isinstance(meta, dict):
        return data
    ordered = {"__metadata__": dict(sorted(meta.items())), **{k: v for k, v in header.items() if k != "__metadata__"}}
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(text) > n:  # cannot happen for the same keys and values; never write a longer header
        raise ValueError(f"canonical safetensors header is longer than the original ({len(text)} > {n} bytes)")
    return data[:8] + text + b" " * (n - len(text)) + data[8 + n :]


def write_shipped(name: str, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str],
                  folder: Path | None = None) -> str:
    """Write ``tensors`` (+ ``metadata``) as ``folder/name`` atomically; return its SHA-256.

    The bytes depend only on the tensors and the metadata (safetensors orders its header), so two
    machines that train the same weights write the same file.
    """
    from safetensors.torch import save

    data = canonical_header(save({k: v.detach().contiguous() for k, v in tensors.items()}, metadata=dict(metadata)))
    folder = WEIGHTS_DIR if folder is None else folder
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / name, data)
    return sha256_hex(data)


def write_sums(sums: Mapping[str, str], folder: Path | None = None) -> Path:
    """Write ``SHA256SUMS`` (sorted by file name) into ``folder`` atomically."""
    path = (WEIGHTS_DIR if folder is None else folder) / SUMS_FILE
    atomic_write_text(path, "".join(f"{sums[n]}  {n}\n" for n in sorted(sums)), encoding="ascii")
    return path
