"""Mapper searches as independent tasks — one per (design, layer) — cached on disk and run on one
core, on every local core, or on a Ray cluster.

Why tasks: a layer's best mapping depends only on the design, the layer's shape and operand
densities, and the mapper settings, so every (design, layer) search is independent. A network, a
``hw compare`` grid and a 10⁴-point design sweep are all the same thing: a list of
:class:`LayerTask`. :func:`run_tasks` deduplicates them by content, answers what it can from the
:class:`ResultCache`, sends the rest to an executor, and stores each result as it arrives — so an
interrupted or extended run recomputes only what is new, and the results do not depend on which
executor computed them (the mapper is deterministic for a seed, and the record of a result is
plain JSON).

* **Cache key** (:func:`task_key`): SHA-256 of the design's content (every field of the
  :class:`~tasder.hw.Architecture` except its name: levels, energies, sparse features), the layer's
  M, K, N, word width and density models, the mapper settings, and :func:`model_version` — a hash
  of the model's source files and the NumPy/SciPy versions, so a code change never serves a stale
  result.
* **Cache entries**: one JSON file per key under ``<root>/v1/<key[:2]>/``, written to a temporary
  file and renamed into place (readers see a whole entry or none). An entry that does not parse or
  does not match its key is recomputed with a warning. Only the driver writes, so a Ray cluster
  needs no shared file system.
* **Executors**: :class:`SerialExecutor`; :class:`ProcessExecutor` (``concurrent.futures``, one
  worker per core, started from a fork server that has imported the model once — spawn where there
  is none; workers ignore Ctrl-C so the driver can stop them cleanly); :class:`RayExecutor`
  (``ray`` imported only here, lazily; a cluster address that does not answer fails fast with the
  address in the message). Tasks travel in small chunks, so a
  progress bar moves and the last chunk does not leave cores idle for long.

The one call into the mapper is :func:`_map_layer`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import signal
import socket
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tasder.hw.architecture import Architecture
from tasder.hw.mapper import OBJECTIVES, MapperConstraints, MapperResult, NetworkResult, NoValidMappingError
from tasder.hw.mapping import LevelMapping, Mapping
from tasder.hw.model import Evaluation, evaluate_batch
from tasder.hw.workload import Network, Problem

__all__ = [
    "CACHE_FORMAT",
    "EXECUTORS",
    "Executor",
    "LayerTask",
    "MapperSettings",
    "ProcessExecutor",
    "Progress",
    "RayExecutor",
    "ResultCache",
    "RunStats",
    "SerialExecutor",
    "SweepInterrupted",
    "default_cache_dir",
    "default_workers",
    "make_executor",
    "model_version",
    "result_from_record",
    "run_network",
    "run_problems",
    "run_tasks",
    "task_key",
]

#: Version of the cache entry layout (the folder name under the cache root).
CACHE_FORMAT = 2
#: Executor names accepted by :func:`make_executor` (``auto``: serial for small jobs, else process).
EXECUTORS: tuple[str, ...] = ("auto", "serial", "process", "ray")
#: ``auto`` runs in-process below this many candidate mappings to search (≈ a few seconds on one
#: core): spawning workers costs about a second of imports each, which a small job never earns back.
AUTO_PARALLEL_MIN_WORK = 100_000
#: Environment variable naming the default cache folder.
CACHE_ENV = "TASDER_HW_CACHE"
#: hw modules that do not change a search's result (the sweep machinery around it).
_NOT_MODEL = frozenset({"area.py", "executor.py", "sweep.py", "sweep_report.py", "__init__.py"})


# ---------------------------------------------------------------------------------------------
# Tasks and keys
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MapperSettings:
    """What the mapper is asked: the arguments of :func:`tasder.hw.search` besides design and layer."""

    budget: int = 5000
    objective: str = "edp"
    seed: int = 0
    top_k: int = 5
    constraints: MapperConstraints | None = None

    def __post_init__(self) -> None:
        if isinstance(self.budget, bool) or not isinstance(self.budget, int) or self.budget < 1:
            raise ValueError(f"mapper budget must be a positive integer; got {self.budget!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"mapper objective {self.objective!r} must be one of {', '.join(OBJECTIVES)}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"mapper seed must be an integer; got {self.seed!r}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
            raise ValueError(f"mapper top_k must be a positive integer; got {self.top_k!r}")


@dataclass(frozen=True)
class LayerTask:
    """One mapper search: ``problem`` on ``arch`` with ``settings``."""

    arch: Architecture
    problem: Problem
    settings: MapperSettings


@lru_cache(maxsize=1)
def model_version() -> str:
    """A hash of everything besides the inputs that decides a search's result: the source of the
    model (``tasder/hw/*.py`` but the sweep machinery, ``tasder/sparsity`` patterns and notation)
    and the NumPy and SciPy versions."""
    import scipy

    root = Path(__file__).resolve().parent
    files = sorted(p for p in root.glob("*.py") if p.name not in _NOT_MODEL)
    files += [root.parent / "sparsity" / "patterns.py", root.parent / "sparsity" / "notation.py"]
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    h.update(f"numpy {np.__version__} scipy {scipy.__version__}".encode())
    return h.hexdigest()


def _canon(obj: Any) -> Any:
    """A JSON-able, order-independent form of a spec object for hashing (raises on anything that
    has no stable content, so a key never silently depends on an object's identity)."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else repr(obj)
    if isinstance(obj, np.generic):
        return _canon(obj.item())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {"__": type(obj).__name__, **{f.name: _canon(getattr(obj, f.name)) for f in dataclasses.fields(obj)}}
    if isinstance(obj, dict):
        items = [[_canon(k), _canon(v)] for k, v in obj.items()]
        return sorted(items, key=lambda kv: json.dumps(kv[0], sort_keys=True))
    if isinstance(obj, (list, tuple)):
        return [_canon(x) for x in obj]
    nz = getattr(obj, "nz", None)
    if isinstance(nz, np.ndarray):  # ActualModel: measured on a tensor; its content is the nonzero mask
        return {"__": type(obj).__name__, "shape": list(nz.shape),
                "mask": hashlib.sha256(np.packbits(nz).tobytes()).hexdigest()}
    raise TypeError(f"cannot build a cache key from a {type(obj).__name__}")


def _density_key(spec: Any) -> Any:
    from tasder.hw.density import density_model

    return _canon(density_model(spec))


def task_key(task: LayerTask) -> str:
    """The content hash that names ``task``'s result in the cache (see the module doc)."""
    arch = {f.name: getattr(task.arch, f.name) for f in dataclasses.fields(task.arch) if f.name != "name"}
    p = task.problem
    doc = {
        "format": CACHE_FORMAT,
        "model": model_version(),
        "arch": _canon(arch),
        "problem": {"shape": _canon(p.shape), "bounds": list(p.sizes), "word_bits": p.word_bits,
                    "a": _density_key(p.a_density), "b": _density_key(p.b_density)},
        "mapper": _canon(task.settings),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# The worker side: one search → one plain record
# ---------------------------------------------------------------------------------------------


def _map_layer(arch: Architecture, problem: Problem, settings: MapperSettings) -> MapperResult:
    """The one call into the mapper."""
    from tasder.hw.mapper import map_layer

    return map_layer(arch, problem, budget=settings.budget, objective=settings.objective, seed=settings.seed,
                     top_k=settings.top_k, constraints=settings.constraints)


def _mapping_data(m: Mapping) -> list[list[Any]]:
    """A mapping as JSON-able lists: per level [temporal factors, order, spatial factors] in the
    mapping's dims order (the dims are the problem's: the order names them)."""
    return [[list(lv.temporal), lv.order, list(lv.spatial)] for lv in m.levels]


def _mapping_from(data: list[list[Any]], dims: tuple[str, ...]) -> Mapping:
    return Mapping(tuple(LevelMapping(tuple(t), o, tuple(s)) for t, o, s in data), dims)


def _record(arch: Architecture, r: MapperResult) -> dict[str, Any]:
    best, costs = r.best, r.best.costs
    level_energy = {lv.name: float(costs.energy[0, i].sum() + costs.leakage_energy[0, i])
                    for i, lv in enumerate(arch.levels)}
    return {
        "ok": True, "objective": r.objective, "candidates": int(r.candidates), "valid": int(r.valid),
        "exhaustive": bool(r.exhaustive), "mapping": _mapping_data(best.mapping),
        "top": [[_mapping_data(m), float(score)] for m, score in r.top],
        "cycles": best.cycles, "energy_pj": best.energy_pj, "edp": best.edp, "utilization": best.utilization,
        "compute_cycles": float(costs.compute_cycles[0]), "level_energy_pj": level_energy,
        "mac_energy_pj": float(costs.compute_energy[0]),
    }


def _run_one(task: LayerTask) -> dict[str, Any]:
    p = task.problem
    # A neutral name: the result (and a no-valid-mapping message) must not depend on which of the
    # same-shaped layers happened to be computed first, since they share one cache entry.
    probe = replace(p, name=f"gemm {p.M}x{p.K}x{p.N}" if p.is_gemm else p.label, repeat=1)
    try:
        return _record(task.arch, _map_layer(task.arch, probe, task.settings))
    except NoValidMappingError as exc:
        return {"ok": False, "error": str(exc)}


def _run_chunk(tasks: list[LayerTask], expected_version: str) -> list[dict[str, Any]]:
    """Worker entry point (top level, so every start method and Ray can import it by name)."""
    mine = model_version()
    if mine != expected_version:
        raise RuntimeError(f"the worker on {socket.gethostname()} runs another version of the tasder.hw model "
                           f"({mine[:12]}, the driver has {expected_version[:12]}); install the same tasder on "
                           f"every node")
    return [_run_one(t) for t in tasks]


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored in this process for the block (only the main thread may change handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _ignore_sigint() -> None:
    # Ctrl-C reaches the whole process group; the driver alone decides what to keep and stops the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# ---------------------------------------------------------------------------------------------
# Executors
# ---------------------------------------------------------------------------------------------


def default_workers() -> int:
    """The cores this process may use (its CPU affinity, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


ChunkFn = Callable[[list[LayerTask], str], list[dict[str, Any]]]


class Executor:
    """Runs chunks of tasks and yields ``(chunk index, records)`` as chunks complete."""

    name = "executor"
    workers = 1

    def run(self, fn: ChunkFn, chunks: Sequence[list[LayerTask]], version: str) -> Iterator[tuple[int, list[dict]]]:
        raise NotImplementedError

    def close(self) -> None:
        """Release workers (a no-op for executors that hold none)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SerialExecutor(Executor):
    """Every task in this process, one after the other."""

    name = "serial"

    def run(self, fn: ChunkFn, chunks: Sequence[list[LayerTask]], version: str) -> Iterator[tuple[int, list[dict]]]:
        for i, chunk in enumerate(chunks):
            yield i, fn(chunk, version)


def _mp_context() -> Any:
    """Fresh interpreters, never a fork of this one (which may hold threads: progress bars, Ray).

    POSIX: a fork server that imports this module once and forks every worker from it, so N workers
    cost one import of the model (seconds) instead of N; elsewhere: spawn. Either way the workers
    run only the top-level functions below, picklable by name.
    """
    import multiprocessing

    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        return ctx
    return multiprocessing.get_context("spawn")  # pragma: no cover - Windows


class ProcessExecutor(Executor):
    """A local process pool (a fork server or spawn: see :func:`_mp_context`)."""

    name = "process"

    def __init__(self, workers: int | None = None) -> None:
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ValueError(f"workers must be a positive integer; got {workers!r}")
        self.workers = workers or default_workers()
        self._pool: Any = None

    def run(self, fn: ChunkFn, chunks: Sequence[list[LayerTask]], version: str) -> Iterator[tuple[int, list[dict]]]:
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
        from concurrent.futures.process import BrokenProcessPool

        # The pool starts its processes while the tasks are submitted. They inherit an ignored SIGINT,
        # so a Ctrl-C in those seconds stops the driver alone (no traceback from a half-imported worker).
        with _sigint_ignored():
            if self._pool is None:
                self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=_mp_context(),
                                                 initializer=_ignore_sigint)
            futures = {self._pool.submit(fn, chunk, version): i for i, chunk in enumerate(chunks)}
        try:
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    yield futures[f], f.result()
        except BrokenProcessPool:
            raise RuntimeError("a mapper worker process died (out of memory? or a script that starts the pool "
                               "without an `if __name__ == \"__main__\":` guard)") from None
        finally:
            for f in futures:
                f.cancel()  # chunks not started yet; running ones finish (their workers ignore Ctrl-C)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _ray_host_port(address: str) -> tuple[str, int] | None:
    """``host:port`` or ``ray://host:port`` → (host, port); None for ``auto``/``local``."""
    text = address.strip()
    if text in ("auto", "local"):
        return None
    body = text.removeprefix("ray://")
    host, sep, port = body.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"Ray address {address!r}: expected host:port, ray://host:port or auto")
    return host.strip("[]"), int(port)


def check_ray_address(address: str, timeout_s: float = 10.0) -> None:
    """Raise ConnectionError naming ``address`` if nothing accepts a connection there within
    ``timeout_s`` (Ray itself would retry for minutes before giving up)."""
    hp = _ray_host_port(address)
    if hp is None:
        return
    try:
        with socket.create_connection(hp, timeout=timeout_s):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__)
        raise ConnectionError(f"the Ray cluster at {address} does not answer ({reason} within {timeout_s:g} s); "
                              f"start it with `ray start --head` on that machine, or check --address") from None


class RayExecutor(Executor):
    """The same chunks as Ray tasks: a local Ray instance (``address=None``) or a running cluster.

    Connects on first use; shuts Ray down on :meth:`close` only if it started it. Every node needs
    the same tasder installed (a worker with another model version refuses to run).
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, timeout_s: float = 30.0) -> None:
        if address is not None:
            _ray_host_port(address)  # a malformed address is an error now, not after the imports
        self.address = address
        self.num_cpus = num_cpus
        self.timeout_s = timeout_s
        self.workers = num_cpus or 0
        self._owned = False
        self._remote: Any = None

    def _connect(self) -> Any:
        try:
            import ray
        except ImportError:
            raise ImportError("--executor ray needs Ray: pip install 'tasder[distributed]' (or pip install ray)"
                              ) from None
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "configure_logging": False}
            if self.address is None:
                kwargs["num_cpus"] = self.num_cpus or default_workers()
            else:
                check_ray_address(self.address, min(10.0, self.timeout_s))
                kwargs["address"] = self.address
            _init_with_timeout(ray, kwargs, self.timeout_s, self.address)
            self._owned = True
        self.workers = int(ray.cluster_resources().get("CPU", 1))
        return ray

    def run(self, fn: ChunkFn, chunks: Sequence[list[LayerTask]], version: str) -> Iterator[tuple[int, list[dict]]]:
        ray = self._connect()
        remote = ray.remote(num_cpus=1)(fn)
        refs = {remote.remote(chunk, version): i for i, chunk in enumerate(chunks)}
        pending = list(refs)
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                for ref in ready:
                    yield refs[ref], ray.get(ref)
        finally:
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref)

    def close(self) -> None:
        if self._owned:
            import ray

            ray.shutdown()
            self._owned = False


def _init_with_timeout(ray: Any, kwargs: dict[str, Any], timeout_s: float, address: str | None) -> None:
    """``ray.init`` that gives up after ``timeout_s`` with a message naming the address (for a
    cluster), instead of Ray's own minutes of retries. A local start runs in this thread."""
    if address is None:
        ray.init(**kwargs)
        return
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            ray.init(**kwargs)
            outcome.append(None)
        except BaseException as exc:  # handed to the caller's thread
            outcome.append(exc)

    t = threading.Thread(target=target, name="ray-init", daemon=True)
    t.start()
    t.join(timeout_s)
    if not outcome:
        raise ConnectionError(f"the Ray cluster at {address} accepted a connection but did not complete Ray's "
                              f"handshake within {timeout_s:g} s; is it a Ray head node (GCS port, or ray:// "
                              f"client port)?")
    if outcome[0] is not None:
        exc = outcome[0]
        raise ConnectionError(f"could not join the Ray cluster at {address}: {exc}") from None


def make_executor(name: str = "auto", *, workers: int | None = None, address: str | None = None) -> Executor | None:
    """An executor by name (see :data:`EXECUTORS`); ``auto`` returns None, which :func:`run_tasks`
    resolves by the amount of work. ``address`` (Ray only) joins a running cluster."""
    if name not in EXECUTORS:
        raise ValueError(f"executor {name!r} must be one of {', '.join(EXECUTORS)}")
    if address is not None and name != "ray":
        raise ValueError("--address names a Ray cluster; it needs --executor ray")
    if name == "serial":
        return SerialExecutor()
    if name == "process":
        return ProcessExecutor(workers)
    if name == "ray":
        return RayExecutor(address, num_cpus=workers)
    return None


# ---------------------------------------------------------------------------------------------
# The cache
# ---------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$TASDER_HW_CACHE``, else ``$XDG_CACHE_HOME/tasder/hw``, else ``~/.cache/tasder/hw``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "tasder" / "hw"


_RECORD_FIELDS = ("objective", "candidates", "valid", "exhaustive", "mapping", "top", "cycles", "energy_pj", "edp",
                  "utilization", "compute_cycles", "level_energy_pj", "mac_energy_pj")


class ResultCache:
    """Search records on disk, one JSON file per key (see the module doc)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._dir = self.root / f"v{CACHE_FORMAT}"

    def path(self, key: str) -> Path:
        return self._dir / key[:2] / f"{key}.json"

    def get(self, key: str) -> tuple[dict[str, Any] | None, str | None]:
        """``(record, None)``, ``(None, None)`` when absent, or ``(None, why)`` for an unusable entry."""
        path = self.path(key)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None, None
        except (OSError, UnicodeDecodeError) as exc:
            return None, f"unreadable ({type(exc).__name__})"
        try:
            rec = json.loads(text)
        except json.JSONDecodeError as exc:
            return None, f"not JSON ({exc.msg} at line {exc.lineno})"
        if not isinstance(rec, dict) or rec.get("key") != key:
            return None, "not the entry of this key"
        if rec.get("ok") is True:
            missing = [f for f in _RECORD_FIELDS if f not in rec]
            if missing:
                return None, f"missing {', '.join(missing)}"
        elif rec.get("ok") is not False or not isinstance(rec.get("error"), str):
            return None, "neither a result nor an error"
        return rec, None

    def put(self, key: str, record: dict[str, Any]) -> None:
        """Write ``record`` under ``key``: a temporary file renamed into place (no fsync: an entry
        lost or truncated by a power cut is detected on read and recomputed)."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key[:12]}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(record, fh, separators=(",", ":"))
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def __len__(self) -> int:
        return sum(1 for _ in self._dir.glob("*/*.json")) if self._dir.is_dir() else 0


# ---------------------------------------------------------------------------------------------
# Running tasks
# ---------------------------------------------------------------------------------------------


class Progress(Protocol):
    """What :func:`run_tasks` reports: the number of searches to run (and how many the cache
    answered), then each batch that completes."""

    def start(self, total: int, cached: int) -> None: ...

    def advance(self, n: int) -> None: ...


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_tasks`: what finished is in the cache; running again resumes."""

    def __init__(self, done: int, total: int, cache_dir: Path | None) -> None:
        where = (f"kept in the cache at {cache_dir}; run the same command again to resume" if cache_dir is not None
                 else "not kept (no cache); run again with a cache to be able to resume")
        super().__init__(f"interrupted after {done} of {total} searches, {where}")
        self.done, self.total, self.cache_dir = done, total, cache_dir


@dataclass(frozen=True)
class RunStats:
    """What one :func:`run_tasks` call did."""

    tasks: int
    unique: int
    cached: int
    computed: int
    corrupt: int
    seconds: float
    executor: str
    workers: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _chunks(items: list[Any], workers: int) -> list[list[Any]]:
    # ~4 chunks per worker keeps the cores busy to the end; ≤ 8 tasks per chunk keeps the bar moving.
    size = max(1, min(8, math.ceil(len(items) / (4 * max(1, workers)))))
    return [items[i:i + size] for i in range(0, len(items), size)]


def run_tasks(tasks: Sequence[LayerTask], *, executor: Executor | str | None = None, cache: ResultCache | None = None,
              progress: Progress | None = None, warn: Callable[[str], None] | None = None,
              workers: int | None = None) -> tuple[list[dict[str, Any]], RunStats]:
    """The record of every task, in order (see the module doc), and what was done.

    ``executor``: an :class:`Executor`, a name from :data:`EXECUTORS`, or None (= ``auto``). An
    executor passed in is left open for the caller; one made here is closed here. ``warn``
    receives one line per unusable cache entry (default: :func:`warnings.warn`).

    Raises:
        SweepInterrupted: on Ctrl-C, after storing every result that arrived.
    """
    t0 = time.perf_counter()
    warn = warn or (lambda msg: warnings.warn(msg, stacklevel=3))
    version = model_version()
    keys = [task_key(t) for t in tasks]
    first: dict[str, int] = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    records: dict[str, dict[str, Any]] = {}
    corrupt = 0
    if cache is not None:
        for k in first:
            rec, why = cache.get(k)
            if rec is not None:
                records[k] = rec
            elif why is not None:
                corrupt += 1
                warn(f"cache entry {cache.path(k)} is {why}; recomputing it")
    todo = [k for k in first if k not in records]
    cached = len(first) - len(todo)
    if progress is not None:
        progress.start(len(todo), cached)
    owned = not isinstance(executor, Executor)
    ex: Executor | None = executor if isinstance(executor, Executor) else make_executor(executor or "auto",
                                                                                       workers=workers)
    if ex is None:  # auto
        work = sum(tasks[first[k]].settings.budget for k in todo)
        ex = ProcessExecutor(workers) if work >= AUTO_PARALLEL_MIN_WORK and len(todo) > 1 else SerialExecutor()
    name = ex.name
    try:
        if todo:
            chunk_keys = _chunks(todo, ex.workers)
            chunks = [[tasks[first[k]] for k in ck] for ck in chunk_keys]
            try:
                for ci, results in ex.run(_run_chunk, chunks, version):
                    for k, rec in zip(chunk_keys[ci], results, strict=True):
                        rec = {**rec, "key": k, "model_version": version}
                        if cache is not None:
                            cache.put(k, rec)
                        records[k] = rec
                    if progress is not None:
                        progress.advance(len(results))
            except KeyboardInterrupt:
                raise SweepInterrupted(len(records), len(first), cache.root if cache is not None else None) from None
    finally:
        if owned:
            ex.close()
    stats = RunStats(tasks=len(tasks), unique=len(first), cached=cached, computed=len(todo), corrupt=corrupt,
                     seconds=time.perf_counter() - t0, executor=name, workers=ex.workers)
    return [records[k] for k in keys], stats


# ---------------------------------------------------------------------------------------------
# Results back as MapperResult / NetworkResult
# ---------------------------------------------------------------------------------------------


def result_from_record(arch: Architecture, problem: Problem, record: dict[str, Any]) -> MapperResult:
    """The :class:`~tasder.hw.MapperResult` a record stands for: the best mapping re-evaluated on
    ``problem`` (one mapping: milliseconds; bit-identical to the mapper's own final evaluation)."""
    if not record.get("ok"):
        raise NoValidMappingError(f"{problem.name}: {record.get('error')}")
    best = _mapping_from(record["mapping"], problem.dims)
    counts, costs = evaluate_batch(arch, problem, best.to_batch())
    top = tuple((_mapping_from(m, problem.dims), float(s)) for m, s in record["top"])
    return MapperResult(best=Evaluation(arch, problem, best, counts, costs), top=top, objective=record["objective"],
                        candidates=record["candidates"], valid=record["valid"], exhaustive=record["exhaustive"])


def run_problems(pairs: Sequence[tuple[Architecture, Problem]], settings: MapperSettings | None = None, *,
                 executor: Executor | str | None = None, cache: ResultCache | None = None,
                 progress: Progress | None = None, warn: Callable[[str], None] | None = None,
                 workers: int | None = None) -> tuple[list[MapperResult], RunStats]:
    """Search every (design, layer) pair through :func:`run_tasks`; one :class:`MapperResult` each.

    Raises:
        NoValidMappingError: some pair has no valid mapping (the message names the layer).
    """
    settings = settings or MapperSettings()
    records, stats = run_tasks([LayerTask(a, p, settings) for a, p in pairs], executor=executor, cache=cache,
                               progress=progress, warn=warn, workers=workers)
    out: list[MapperResult] = []
    rebuilt: dict[str, MapperResult] = {}
    for (arch, p), rec in zip(pairs, records, strict=True):
        prev = rebuilt.get(rec.get("key", ""))
        if prev is not None and prev.best.arch is arch:
            # Same design, same shape: reuse the evaluation, as search_network does.
            b = prev.best
            out.append(dataclasses.replace(prev, best=Evaluation(arch, p, b.mapping, b.counts, b.costs)))
            continue
        r = result_from_record(arch, p, rec)
        rebuilt[rec["key"]] = r
        out.append(r)
    return out, stats


def run_network(arch: Architecture, network: Network, settings: MapperSettings | None = None, *,
                executor: Executor | str | None = None, cache: ResultCache | None = None,
                progress: Progress | None = None, warn: Callable[[str], None] | None = None,
                workers: int | None = None) -> NetworkResult:
    """:func:`tasder.hw.search_network` through :func:`run_tasks`: the same :class:`NetworkResult`,
    with the searches spread over the executor and answered from the cache where possible."""
    results, _ = run_problems([(arch, p) for p in network.layers], settings, executor=executor, cache=cache,
                              progress=progress, warn=warn, workers=workers)
    return NetworkResult(network, tuple(results))
