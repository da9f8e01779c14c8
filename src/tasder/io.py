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
import errno
import io
import os
import pickle
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:  # torch and NumPy load with the tensors: writing a report needs neither
    import torch

__all__ = [
    "SUPPORTED_SUFFIXES",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_writable",
    "load_tensors",
    "staged_folder",
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
    if not array.flags.c_contiguous:
        array = array.copy(order="C")  # not np.ascontiguousarray: it turns a 0-d array into shape (1,)
    try:
        tensor = torch.from_numpy(array)
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


#: Paths that name one of this process's open file descriptors (``-o /dev/stdout``): written by
#: duplicating the descriptor, so the report goes where the shell sent stdout (a pipe, a terminal,
#: a file opened with ``>>``) instead of reopening (and truncating) whatever it points at.
_FD_PATH = re.compile(r"/dev/(stdin|stdout|stderr)|/dev/fd/(\d+)|/proc/(self|thread-self|\d+)/fd/(\d+)")
_STD_FDS = {"stdin": 0, "stdout": 1, "stderr": 2}
#: Symbolic links followed before giving up (Linux's own limit, ELOOP).
_MAX_SYMLINKS = 40


class _Output(io.BufferedWriter):
    """A buffered file that remembers the first OSError of a write or flush.

    Why: writers implemented in C++ (``torch.save``) turn the ENOSPC of a full disk into a
    ``RuntimeError('... unexpected pos ...')``; :func:`atomic_open` raises the recorded OSError
    instead, with the user's path, so the CLI can say "no space left on device".
    """

    failure: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return super().write(data)
        except OSError as exc:
            self.failure = self.failure or exc
            raise

    def flush(self) -> None:
        try:
            super().flush()
        except OSError as exc:
            self.failure = self.failure or exc
            raise


def _fd_alias(text: str) -> int | None:
    """The descriptor a path such as ``/dev/stdout``, ``/dev/fd/3`` or ``/proc/self/fd/1`` names."""
    m = _FD_PATH.fullmatch(os.path.normpath(text))
    if m is None:
        return None
    std, dev_fd, proc, proc_fd = m.groups()
    if std is not None:
        return _STD_FDS[std]
    if dev_fd is not None:
        return int(dev_fd)
    if proc not in ("self", "thread-self") and int(proc) != os.getpid():
        return None  # another process's descriptor: an ordinary (unwritable) path
    return int(proc_fd)


def _follow_links(path: Path) -> Path | int:
    """``path`` with its chain of symbolic links followed: the file a write should land in, or the
    descriptor number when the chain ends at one of ours (``/dev/stdout``)."""
    current = path
    for _ in range(_MAX_SYMLINKS):
        fd = _fd_alias(os.path.abspath(current))
        if fd is not None:
            return fd
        if not current.is_symlink():
            return current
        link = Path(os.readlink(current))
        current = link if link.is_absolute() else current.parent / link
    raise OSError(errno.ELOOP, "Too many levels of symbolic links", str(path))


def _retarget(exc: OSError, path: Path) -> OSError:
    """The same error (same errno and OSError subclass) naming the user's path, not a temp file."""
    return OSError(exc.errno, exc.strerror or str(exc), str(path))


def _in_place(st: os.stat_result | None) -> bool:
    """Whether an existing output is written where it is: character devices and FIFOs."""
    return st is not None and (stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode))


def _refusal(st: os.stat_result, path: Path) -> OSError:
    """The error for an output that is neither a regular file nor written in place."""
    if stat.S_ISDIR(st.st_mode):
        return IsADirectoryError(errno.EISDIR, "Is a directory", str(path))
    kind = "a block device" if stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else \
        "something that is not a regular file"
    return OSError(errno.EINVAL, f"refusing to write over {kind} (give a regular file)", str(path))


def _close_quietly(out: _Output) -> None:
    """Close after a failure: the buffered rest may fail to flush again, which is no news."""
    with contextlib.suppress(OSError):
        out.close()
    if not out.closed:  # pragma: no cover - close() closes the raw file even when flushing failed
        with contextlib.suppress(OSError):
            out.raw.close()


@contextlib.contextmanager
def _reporting_failures(out: _Output, path: Path) -> Iterator[Callable[[Callable[[], object]], None]]:
    """Close ``out`` on any failure and raise the write's own OSError, naming ``path``, when a write
    failed, whatever the writing library made of it (``torch.save``: RuntimeError). Yields
    ``finish(step)``, which runs the final flush/fsync/close and names ``path`` in their errors."""

    def finish(step: Callable[[], object]) -> None:
        try:
            step()
        except OSError as exc:
            out.failure = out.failure or exc

    try:
        yield finish
    except BaseException:
        _close_quietly(out)
        if out.failure is not None:
            raise _retarget(out.failure, path) from None
        raise
    if out.failure is not None:
        _close_quietly(out)
        raise _retarget(out.failure, path) from None


def _open_in_place(target: Path | int, path: Path) -> BinaryIO:
    """Open a descriptor, character device or FIFO for writing, where it is (no temp file, no rename)."""
    if isinstance(target, int):
        for stream in (sys.stdout, sys.stderr):  # what Python buffered goes first
            with contextlib.suppress(Exception):
                if stream is not None and stream.fileno() == target:
                    stream.flush()
        try:
            fd = os.dup(target)
        except OSError as exc:
            raise OSError(exc.errno, "not an open file descriptor", str(path)) from None
    else:
        mode = os.stat(target).st_mode
        try:
            # O_NONBLOCK: opening a FIFO nobody reads fails (ENXIO) instead of waiting forever.
            fd = os.open(target, os.O_WRONLY | (os.O_NONBLOCK if stat.S_ISFIFO(mode) else 0))
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                raise OSError(errno.ENXIO, "no process is reading from this FIFO", str(path)) from None
            raise _retarget(exc, path) from None
        os.set_blocking(fd, True)
    return _Output(io.FileIO(fd, "wb"))


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Open ``path`` for writing (binary) so that readers see the old file or the new one, never half.

    Everything goes to a temporary file in the same directory, which replaces ``path`` with
    :func:`os.replace` when the ``with`` block ends normally; on any error the temporary file is
    deleted and the old file is left as it was. An existing file keeps its permission bits (and,
    when the process may set them, its owner).

    What ``path`` may be, and what happens:

    * a regular file, or nothing yet: the atomic replace above;
    * a symbolic link (a chain of them): the file it points to is replaced; the link stays;
    * a character device (``/dev/null``) or a FIFO: written in place, *not* atomically (there is
      no file to swap; renaming over a device node would destroy it); a FIFO with no reader is an
      error at once rather than a wait;
    * ``/dev/stdout``, ``/dev/stderr``, ``/dev/fd/N``: the process's own descriptor, written in place;
    * a directory, block device or socket: refused (OSError), nothing touched.

    Every OSError names ``path`` as the user gave it, never the hidden temporary file; a write that
    fails inside the block (a full disk: ENOSPC) raises that OSError even when the library writing
    (``torch.save``) reported it as something else.

    >>> with atomic_open("model.ckpt") as fh:  # doctest: +SKIP
    ...     torch.save(state, fh)
    """
    p = Path(path)
    target = _follow_links(p)
    st: os.stat_result | None = None
    if not isinstance(target, int):
        try:
            st = os.stat(target)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise _retarget(exc, p) from None
    if isinstance(target, int) or _in_place(st):
        out = _open_in_place(target, p)
        with _reporting_failures(out, p) as finish:
            yield out
            finish(out.close)  # flushes: a full device (/dev/full) fails here
        return
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise _refusal(st, p)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        where = f" (the target of the link {p})" if target != p else ""
        raise FileNotFoundError(errno.ENOENT, f"cannot write: directory {directory}{where} does not exist", str(p))
    if st is not None:
        mode = st.st_mode & 0o7777
    else:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise _retarget(exc, p) from None
    out = _Output(io.FileIO(fd, "wb"))
    try:
        with _reporting_failures(out, p) as finish:
            yield out
            finish(lambda: (out.flush(), os.fsync(out.fileno()), out.close()))
        try:
            os.chmod(tmp, mode)
            if st is not None and (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
                with contextlib.suppress(OSError):  # only root may give a file away; others keep theirs
                    os.chown(tmp, st.st_uid, st.st_gid)
            os.replace(tmp, target)
        except OSError as exc:
            raise _retarget(exc, p) from None
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
    """Raise OSError now if ``path`` cannot be written as :func:`atomic_open` would write it (a missing
    or read-only folder, a folder, a block device...). Nothing is opened, created or changed (a
    FIFO's reader is checked only when the write happens: opening it here would end its input)."""
    p = Path(path)
    target = _follow_links(p)
    if isinstance(target, int):
        try:
            os.fstat(target)
        except OSError:
            raise OSError(errno.EBADF, "not an open file descriptor", str(p)) from None
        return
    st = os.stat(target) if target.exists() else None
    if st is not None and not stat.S_ISREG(st.st_mode):
        if not _in_place(st):
            raise _refusal(st, p)
        if not os.access(target, os.W_OK):
            raise PermissionError(errno.EACCES, "Permission denied", str(p))
        return  # not opened: opening a FIFO and closing it again would end its reader's input
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, "No such directory", str(parent))
    if target.exists() and not os.access(target, os.W_OK):
        raise PermissionError(errno.EACCES, "Permission denied", str(p))
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".tasder-check-", delete=True):
            pass  # the atomic writers create a temp file in the same folder: that is what must work
    except OSError as exc:
        raise _retarget(exc, p) from None


@contextlib.contextmanager
def staged_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Fill a folder out of sight, then put it in place: ``with staged_folder("report") as tmp: ...``.

    The block writes into a fresh hidden folder next to ``path``. When it ends normally, that folder
    becomes ``path`` in one rename if ``path`` does not exist or is empty; otherwise each file it
    holds replaces its namesake in ``path`` (each file atomically), and files of ``path`` the block
    did not write stay. When the block fails (an error, a full disk, Ctrl-C), the hidden folder is
    removed, folders created for ``path``'s parents are removed again, and ``path`` is left exactly
    as it was. An OSError about a file in the hidden folder names the file under ``path`` instead.

    A symbolic link to a folder stays a link; the folder it points to receives the files.
    """
    p = Path(path)
    target = _follow_links(p)
    if isinstance(target, int) or (target.exists() and not target.is_dir()):
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory (the output folder)", str(p))
    if target.exists() and not os.access(target, os.W_OK):  # found now, not when the work is done
        raise PermissionError(errno.EACCES, "Permission denied (the output folder)", str(p))
    created: list[Path] = []
    parent = target.parent if str(target.parent) else Path(".")
    for folder in reversed([parent, *parent.parents]):
        if not folder.exists():
            try:
                folder.mkdir()
            except OSError as exc:
                _remove_empty(created)
                raise _retarget(exc, p) from None
            created.append(folder)
    try:
        stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
    except OSError as exc:
        _remove_empty(created)
        raise _retarget(exc, p) from None
    try:
        # mkdtemp makes it 0700; it may become the folder: give it the folder's mode (or mkdir's)
        if target.exists():
            os.chmod(stage, target.stat().st_mode & 0o7777)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(stage, 0o777 & ~umask)
        yield stage
        _move_into_place(stage, target)
    except BaseException as exc:
        shutil.rmtree(stage, ignore_errors=True)
        _remove_empty(created)
        inside = _inside(exc, stage)
        if inside is not None:
            raise OSError(exc.errno, exc.strerror or str(exc), str(p / inside)) from None  # type: ignore[union-attr]
        raise


def _inside(exc: BaseException, folder: Path) -> Path | None:
    """The path, relative to ``folder``, of the file an OSError names, if it is inside ``folder``."""
    if not isinstance(exc, OSError) or exc.filename is None:
        return None
    try:
        return Path(os.fsdecode(exc.filename)).relative_to(folder)
    except ValueError:
        return None


def _move_into_place(stage: Path, target: Path) -> None:
    try:
        os.rename(stage, target)  # a missing or empty target: one atomic step
        return
    except OSError as exc:
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
    for src in sorted(stage.rglob("*")):  # parents sort before their files
        dst = target / src.relative_to(stage)
        if src.is_dir():
            dst.mkdir(exist_ok=True)
        else:
            os.replace(src, dst)
    shutil.rmtree(stage, ignore_errors=True)


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders we created (innermost first) if nothing else was put in them."""
    for folder in reversed(folders):
        with contextlib.suppress(OSError):
            folder.rmdir()
