"""The user cache for built-in workloads: trained weights and built data sets.

Why a cache: the built-in models are trained (or their data sets built) in-process the first time
they are asked for, deterministically; later calls read the result back in milliseconds. Where:

1. ``$TASDER_CACHE_DIR`` when set (tests point it at a temporary directory);
2. else ``$XDG_CACHE_HOME/tasder``;
3. else ``~/.cache/tasder``.

Every entry's file name carries a short hash of its *recipe* (the seed, epochs, learning rate...,
and a format version), so changing a recipe makes a new entry instead of silently reusing weights
trained another way. Files are written atomically (a temporary file in the same directory, then
:func:`os.replace`), so an interrupted run never leaves half a file under the final name; a file
that is damaged anyway (truncated, edited, another version's format) is rebuilt with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeVar

import torch

from tasder.io import atomic_open

__all__ = [
    "CACHE_ENV_VAR",
    "cache_dir",
    "cached",
    "cached_json",
    "cached_state_dict",
    "recipe_key",
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


def cached(
    name: str,
    recipe: object,
    suffix: str,
    build: Callable[[], T],
    save: Callable[[T, BinaryIO], None],
    load: Callable[[Path], T],
) -> T:
    """``load`` the entry ``name-<recipe_key>.<suffix>`` from the cache, else ``build`` and ``save`` it.

    A file that exists but cannot be loaded (any exception from ``load``) is rebuilt, with a
    :class:`RuntimeWarning` naming it. A cache directory that cannot be written only costs the
    rebuild next time (warning), never the result.
    """
    path = cache_dir() / f"{name}-{recipe_key(recipe)}.{suffix}"
    if path.is_file():
        try:
            return load(path)
        except Exception as exc:
            warnings.warn(
                f"tasder cache file {path} is damaged ({type(exc).__name__}: {' '.join(str(exc).split())[:160]}); "
                f"rebuilding it",
                RuntimeWarning,
                stacklevel=2,
            )
    value = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path) as fh:
            save(value, fh)
    except OSError as exc:
        warnings.warn(f"cannot write the tasder cache file {path} ({exc}); it will be rebuilt next time",
                      RuntimeWarning, stacklevel=2)
    return value


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError("not a state_dict")
    return obj


def cached_state_dict(
    name: str,
    recipe: object,
    build: Callable[[], dict[str, torch.Tensor]],
    validate: Callable[[dict[str, torch.Tensor]], None] | None = None,
) -> dict[str, torch.Tensor]:
    """A cached ``state_dict`` (``torch.save`` format, read back with ``weights_only=True``).

    ``validate`` (e.g. ``model.load_state_dict``) runs on what is read back; if it raises, the
    entry counts as damaged and is rebuilt.
    """

    def load(path: Path) -> dict[str, torch.Tensor]:
        state = _load_state_dict(path)
        if validate is not None:
            validate(state)
        return state

    return cached(name, recipe, "pt", build, lambda sd, fh: torch.save(sd, fh), load)


def cached_json(name: str, recipe: object, build: Callable[[], T]) -> T:
    """A cached JSON document (UTF-8)."""

    def save(value: T, fh: BinaryIO) -> None:
        fh.write(json.dumps(value, ensure_ascii=False, indent=0).encode("utf-8"))

    def load(path: Path) -> T:
        return json.loads(path.read_text(encoding="utf-8"))

    return cached(name, recipe, "json", build, save, load)
