"""Read tensors from the files people keep them in, and write reports safely.

>>> from tasder.io import load_tensors
>>> tensors = load_tensors("model.safetensors")  # doctest: +SKIP
>>> {name: tuple(t.shape) for name, t in tensors.items()}  # doctest: +SKIP

Supported formats (chosen by the file's extension, case-insensitive):

==================  ===========================================================================
``.pt``, ``.pth``   ``torch.save`` of a tensor or of a flat dict of tensors (a ``state_dict``);
                    read with ``torch.load(weights_only=True)``, so no code in the file runs
``.safetensors``    a safetensors file (``safetensors.torch.load_file``)
``.npy``            one NumPy array (``numpy.load(allow_pickle=False)``)
==================  ===========================================================================

Every failure is one clear exception that names the file: :class:`FileNotFoundError` for a
missing file, :class:`ValueError` for an unknown extension or for content that is not tensors.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:  # torch and NumPy load with the tensors: writing a report needs neither
    import torch

__all__ = [
    "SUPPORTED_SUFFIXES",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_writable",
    "load_tensors",
]

#: File extensions :func:`load_tensors` reads.
SUPPORTED_SUFFIXES: tuple[str, ...] = (".pt", ".pth", ".safetensors", ".npy")


def _first_line(exc: BaseException, limit: int = 160) -> str:
    """The first sentence of an exception's message, shortened: libraries write essays."""
    text = " ".join(str(exc).split())
    line = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0].rstrip(".") or type(exc).__name__
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _describe(obj: object) -> str:
    """A short description of a non-tensor object found in a file."""
    if isinstance(obj, Mapping):
        return f"a dict with {len(obj)} entr{'y' if len(obj) == 1 else 'ies'}"
    if isinstance(obj, (list, tuple)):
        return f"a {type(obj).__name__} of {len(obj)} item(s)"
    name = type(obj).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _from_torch_object(obj: object, path: Path) -> dict[str, torch.Tensor]:
    import torch

    if isinstance(obj, torch.Tensor):
        return {path.stem: obj.detach()}
    if isinstance(obj, Mapping):
        if not obj:
            raise ValueError(f"{path} holds no tensors (an empty dict)")
        bad = [(k, v) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
        if bad:
            shown = ", ".join(f"{k!r}: {_describe(v)}" for k, v in bad[:3])
            more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
            raise ValueError(
                f"{path} holds a dict whose entries are not all tensors ({shown}{more}); "
                f"save a flat dict of tensors, e.g. torch.save(model.state_dict(), path)"
            )
        return {str(k): v.detach() for k, v in obj.items()}
    raise ValueError(
        f"{path} holds no tensors: it holds {_describe(obj)}; save a tensor or a flat dict of tensors"
    )


def _load_torch(path: Path) -> dict[str, torch.Tensor]:
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found:
            raise ValueError(
                f"{path} holds objects other than tensors (a {found.group(1)}), which "
                f"torch.load(weights_only=True) refuses to load; save a tensor or a flat dict of tensors"
            ) from None
        detail = re.search(r"WeightsUnpickler error:\s*(.+)", str(exc))
        reason = detail.group(1).strip() if detail else _first_line(exc)
        raise ValueError(f"{path} is not a readable PyTorch file: {reason}") from None
    except Exception as exc:  # torch raises RuntimeError, EOFError, ... on damaged files
        raise ValueError(f"{path} is not a readable PyTorch file: {_first_line(exc)}") from None
    return _from_torch_object(obj, path)


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises SafetensorError / OSError on damaged files
        raise ValueError(f"{path} is not a readable safetensors file: {_first_line(exc)}") from None
    if not tensors:
        raise ValueError(f"{path} holds no tensors (an empty safetensors file)")
    return dict(tensors)


def _load_npy(path: Path) -> dict[str, torch.Tensor]:
    import numpy as np
    import torch

    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic[:4] == b"PK\x03\x04":
        raise ValueError(f"{path} is a zip archive (.npz?), not a .npy file; save one array with numpy.save")
    if magic != b"\x93NUMPY":
        # np.load would take it for a pickle and complain about allow_pickle, which misleads.
        raise ValueError(f"{path} is not a readable .npy file: it has no NumPy header")
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:  # ValueError (object arrays, bad header), EOFError, OSError ...
        raise ValueError(f"{path} is not a readable .npy file: {_first_line(exc)}") from None
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    try:
        tensor = torch.from_numpy(np.ascontiguousarray(array))
    except TypeError:
        raise ValueError(
            f"{path} holds a NumPy array of dtype {array.dtype}, which is not a tensor dtype"
        ) from None
    return {path.stem: tensor}


def load_tensors(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Load the tensors stored in ``path``, by name, on the CPU.

    Names keep the order of a ``.pt`` dict; a safetensors file lists them sorted by name.

    A file holding one tensor (``.npy``, or ``torch.save(t)``) gives ``{file stem: tensor}``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: unknown extension, a damaged file, or a file that holds something other than
            tensors (the message names the file and what it holds).
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ValueError(
            f"cannot read {p}: unknown file type {p.suffix or '(no extension)'!r}; "
            f"supported: {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if not p.exists():
        raise FileNotFoundError(f"no such file: {p}")
    if p.is_dir():
        raise ValueError(f"{p} is a directory, not a tensor file")
    if suffix in (".pt", ".pth"):
        return _load_torch(p)
    if suffix == ".safetensors":
        return _load_safetensors(p)
    return _load_npy(p)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Open ``path`` for writing (binary) so that readers see the old file or the new one, never half.

    Everything goes to a temporary file in the same directory, which replaces ``path`` with
    :func:`os.replace` when the ``with`` block ends normally; on any error the temporary file is
    deleted and the old file is left as it was. An existing file keeps its permission bits.

    >>> with atomic_open("model.ckpt") as fh:  # doctest: +SKIP
    ...     torch.save(state, fh)
    """
    p = Path(path)
    directory = p.parent if str(p.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(f"cannot write {p}: directory {directory} does not exist")
    try:
        mode = p.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`). Returns the path written."""
    with atomic_open(path) as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_open`). Returns the path written."""
    if not isinstance(text, str):
        raise TypeError(f"`text` must be a str; got {type(text).__name__}")
    return atomic_write_bytes(path, text.encode(encoding))


def check_writable(path: str | os.PathLike[str]) -> None:
    """Raise OSError now if ``path`` cannot be written (its folder missing or read-only, or a folder)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(21, "Is a directory", str(path))
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(2, "No such directory", str(parent))
    if path.exists() and not os.access(path, os.W_OK):
        raise PermissionError(13, "Permission denied", str(path))
    with tempfile.NamedTemporaryFile(dir=parent, prefix=".tasder-check-", delete=True):
        pass  # the atomic writers create a temp file in the same folder: that is what must work
