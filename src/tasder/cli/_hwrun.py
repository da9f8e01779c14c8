"""What ``hw eval``, ``hw compare`` and ``hw sweep`` share about *running* mapper searches: the
executor and cache options, a progress bar with an ETA, and the resolvers that give
:mod:`tasder.hw.sweep` the built-in networks and TASD configs (``tasder.hw`` itself knows neither).

No commands live here (so both command modules can import it without importing each other).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["AddressOption", "CacheDirOption", "EtaProgress", "ExecutorOption", "WorkersOption", "make_cache",
           "resolve_config", "resolve_network", "run_executor"]

ExecutorOption = Annotated[str, typer.Option(
    "--executor", help="Where the mapper searches run: auto (every core once the job is big enough), serial, "
    "process (every local core) or ray (a Ray cluster: pip install ray, or tasder's 'distributed' extra).")]
WorkersOption = Annotated[int | None, typer.Option(
    "--workers", min=1, show_default=False,
    help="Worker processes (default: every core); with --executor ray and no --address, the CPUs of the local "
    "Ray instance.")]
AddressOption = Annotated[str | None, typer.Option(
    "--address", metavar="HOST:PORT", show_default=False,
    help="A running Ray cluster to join (host:port, ray://host:port or auto); needs --executor ray.")]
CacheDirOption = Annotated[Path | None, typer.Option(
    "--cache-dir", metavar="DIR", show_default=False,
    help="Keep each search's result in DIR, keyed by design, layer, densities, mapper settings and model "
    "version: a rerun answers from it.")]


def run_executor(name: str, workers: int | None, address: str | None) -> Any:
    """The executor the options ask for (None = auto, resolved by the amount of work)."""
    from tasder.hw.executor import make_executor

    return make_executor(name, workers=workers, address=address)


def make_cache(cache_dir: Path | None, *, default: bool) -> Any:
    """A :class:`~tasder.hw.executor.ResultCache` at ``cache_dir``, else at the default folder when
    ``default``, else None."""
    from tasder.hw.executor import ResultCache, default_cache_dir

    if cache_dir is not None:
        if cache_dir.exists() and not cache_dir.is_dir():
            raise NotADirectoryError(20, "Not a directory", str(cache_dir))
        return ResultCache(cache_dir)
    return ResultCache(default_cache_dir()) if default else None


class EtaProgress:
    """A progress bar with elapsed time and ETA on stderr — only on a terminal, gone when done (the
    CLI's convention) — that :func:`tasder.hw.executor.run_tasks` drives (``start``/``advance``)."""

    def __init__(self, description: str, on_advance: Callable[[int], None] | None = None) -> None:
        console = Console(stderr=True, highlight=False, emoji=False)
        self._description = description
        self._on_advance = on_advance
        self._progress = Progress(SpinnerColumn(), TextColumn("[progress.description]{task.description}"), BarColumn(),
                                  MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                  console=console, transient=True, disable=not console.is_terminal)
        self._task: Any = None

    def __enter__(self) -> EtaProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._progress.__exit__(exc_type, exc, tb)

    def start(self, total: int, cached: int) -> None:
        note = f" ({cached} from the cache)" if cached else ""
        self._task = self._progress.add_task(" ".join(f"{self._description}{note}".split()), total=total)

    def advance(self, n: int) -> None:
        if self._task is not None:
            self._progress.update(self._task, advance=n)
        if self._on_advance is not None:
            self._on_advance(n)


def resolve_network(name: str) -> Any:
    """A built-in network (zoo shape table or traced zoo model) or a workload YAML, by name."""
    from tasder.workloads import load_network

    return load_network(name)


def resolve_config(path: str) -> Callable[[str], tuple[str, str] | None]:
    """A TASD config file (``tasder search -o``) as ``layer name → (series, mode) | None``."""
    from tasder.nn.config import TASDConfig

    config = TASDConfig.load(path)

    def lookup(name: str) -> tuple[str, str] | None:
        spec = config.resolve(name)
        return None if spec is None else (str(spec.series), spec.mode)

    return lookup
