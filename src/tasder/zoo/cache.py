"""The user cache for built-in workloads: trained weights and built data sets.

Why a cache: the built-in models are trained (or their data sets built) in-process the first time
they are asked for, deterministically; later calls read the result back in milliseconds. Where:

1. ``$TASDER_CACHE_DIR`` when set (tests point it at a temporary directory);
2. else ``$XDG_CACHE_HOME/tasder``;
3. else ``~/.cache/tasder``.

Every entry's file name carries a short hash of its *recipe* (the seed, epochs, learning rate...,
and a format version), so changing a recipe makes a new entry instead of silently reusing weights
trained another way. Files are written atomically (a temporary file in the same directory, then
:func:`os.replace`), so an interrupted run never leaves half a file under the final name.

Every entry has a content hash next to it: ``<entry>.sha256``, in ``sha256sum`` format (so
``sha256sum -c`` checks it too). Why: a file can be damaged without looking damaged (a few flipped
bits inside a ``.pt``'s tensor data load without complaint, and a model with wrong weights runs
and scores 10 %). The file is read once, hashed, and only then deserialized; an entry whose hash
is missing or differs, that cannot be read, or whose weights hold NaN/Inf counts as damaged and
is rebuilt, with a one-line :class:`RuntimeWarning` naming the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeVar

import torch

from tasder.io import atomic_write_bytes, atomic_write_text

__all__ = [
    "CACHE_ENV_VAR",
    "cache_dir",
    "cached",
    "cached_json",
    "cached_state_dict",
    "recipe_key",
    "sha256_hex",
    "verify_sha256",
]

#: The environment variable that overrides the cache directory.
CACHE_ENV_VAR = "TASDER_CACHE_DIR"

T = TypeVar("T")


def cache_dir() -> Path:
    """The cache directory (not created here): ``$TASDER_CACHE_DIR``, ``$XDG_CACHE_HOME/tasder``
    or ``~/.cache/tasder``, in that order."""
    override = os.environ.get(CACHE_ENV_VAR)
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "tasder"


def recipe_key(recipe: object) -> str:
    """A 12-hex-digit digest of ``recipe`` (any JSON-able value; dict keys are sorted)."""
    text = json.dumps(recipe, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def sha256_hex(data: bytes | os.PathLike[str] | str) -> str:
    """The SHA-256 of ``data`` (bytes, or the content of the file at a path) as 64 hex digits."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return hashlib.sha256(data).hexdigest()
    digest = hashlib.sha256()
    with open(data, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(data: bytes, expected: str, name: str | os.PathLike[str]) -> None:
    """Raise ValueError (naming ``name``) unless ``data`` hashes to ``expected`` (64 hex digits)."""
    actual = sha256_hex(data)
    if actual != expected.strip().lower():
        raise ValueError(f"{name}: content hash mismatch: sha256 {actual[:12]}…, expected {expected.strip()[:12]}…")


def _hash_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


class _NoHashError(ValueError):
    """A cache entry without its ``.sha256`` file: written by an older tasder, or interrupted."""


def _read_verified(path: Path) -> bytes:
    """The bytes of cache entry ``path``, read once and checked against its ``.sha256`` file."""
    try:
        line = _hash_path(path).read_text(encoding="ascii")
    except FileNotFoundError:
        raise _NoHashError("it has no content hash (written by an older tasder, or interrupted)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"unreadable content hash ({exc})") from None
    expected = line.split(maxsplit=1)[0] if line.strip() else ""
    if len(expected) != 64:
        raise ValueError(f"malformed content hash file {_hash_path(path).name}")
    data = path.read_bytes()
    actual = sha256_hex(data)
    if actual != expected.lower():  # the warning names the file already
        raise ValueError(f"content hash mismatch: sha256 {actual[:12]}…, expected {expected[:12]}…")
    return data


def cached(
    name: str,
    recipe: object,
    suffix: str,
    build: Callable[[], T],
    save: Callable[[T, BinaryIO], None],
    load: Callable[[BinaryIO], T],
) -> T:
    """``load`` the entry ``name-<recipe_key>.<suffix>`` from the cache, else ``build`` and ``save`` it.

    ``save`` writes the value to a binary stream, ``load`` reads it back from one (the entry's
    bytes, already checked against the stored SHA-256). An entry whose hash is missing or wrong,
    or that ``load`` rejects (any exception), is rebuilt with a one-line :class:`RuntimeWarning`
    naming the file. A cache directory that cannot be written only costs the rebuild next time
    (warning), never the result.
    """
    path = cache_dir() / f"{name}-{recipe_key(recipe)}.{suffix}"
    if path.is_file():
        try:
            return load(io.BytesIO(_read_verified(path)))
        except Exception as exc:
            # Unverifiable is not damaged, but it is not trusted either: rebuilt all the same.
            state = "cannot be verified" if isinstance(exc, _NoHashError) else "is damaged"
            warnings.warn(f"tasder cache file {path} {state} ({' '.join(str(exc).split())[:160]}); rebuilding it",
                          RuntimeWarning, stacklevel=2)
    value = build()
    buffer = io.BytesIO()
    save(value, buffer)
    data = buffer.getvalue()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The data first, its hash last: an interrupted write leaves a hash that does not match
        # (or none), which reads as damaged and is rebuilt, never as valid.
        atomic_write_bytes(path, data)
        atomic_write_text(_hash_path(path), f"{sha256_hex(data)}  {path.name}\n", encoding="ascii")
    except OSError as exc:
        warnings.warn(f"cannot write the tasder cache file {path} ({exc}); it will be rebuilt next time",
                      RuntimeWarning, stacklevel=2)
    return value


def _load_state_dict(stream: BinaryIO) -> dict[str, torch.Tensor]:
    obj = torch.load(stream, map_location="cpu", weights_only=True)
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError("not a state_dict")
    for key, value in obj.items():
        # NaN/Inf weights are damage too: no recipe trains them, and a model holding them fails
        # later with an error that blames the user's input (a config, a tensor) instead.
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ValueError(f"tensor {key!r} holds NaN/Inf values")
    return obj


def cached_state_dict(
    name: str,
    recipe: object,
    build: Callable[[], dict[str, torch.Tensor]],
    validate: Callable[[dict[str, torch.Tensor]], None] | None = None,
) -> dict[str, torch.Tensor]:
    """A cached ``state_dict`` (``torch.save`` format, read back with ``weights_only=True``).

    ``validate`` (e.g. ``model.load_state_dict``) runs on what is read back; if it raises, the
    entry counts as damaged and is rebuilt. Floating tensors holding NaN/Inf count as damage too.
    """

    def load(stream: BinaryIO) -> dict[str, torch.Tensor]:
        state = _load_state_dict(stream)
        if validate is not None:
            validate(state)
        return state

    return cached(name, recipe, "pt", build, lambda sd, fh: torch.save(sd, fh), load)


def cached_json(name: str, recipe: object, build: Callable[[], T]) -> T:
    """A cached JSON document (UTF-8)."""

    def save(value: T, fh: BinaryIO) -> None:
        fh.write(json.dumps(value, ensure_ascii=False, indent=0).encode("utf-8"))

    def load(stream: BinaryIO) -> T:
        return json.loads(stream.read().decode("utf-8"))

    return cached(name, recipe, "json", build, save, load)
