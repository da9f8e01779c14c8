"""What every ``tasder`` command shares: output, tables, progress, options, zoo loading, errors.

The command modules (``tasder/cli/<group>.py``) import from here and nowhere else in the CLI;
:mod:`tasder.cli.app` imports the command modules. Nothing here imports torch, the zoo or the
search: a command imports what it runs inside its own function, so ``tasder --help`` and the
commands that need little (``patterns``, ``hw``) start fast.

The conventions (tested in ``tests/test_cli_consistency.py``):

* Tables and JSON go to stdout (:func:`emit`); every command that prints a table has ``--json``
  (:data:`JsonOption`), and ``--output/-o FILE`` (:data:`OutputOption`) writes the report to FILE
  instead. Same meaning, same flag: ``--series/-s``, ``--seed``, ``--mapper-budget``,
  ``--objective``, ``--json``, ``--output/-o``. Every ``--help`` ends with an ``Examples:`` block
  (:func:`with_examples`).
* Progress bars (:func:`progress_bar`) and status lines (:func:`status`) go to stderr and only
  when stderr is a terminal; warnings (:func:`warn`) and errors (:func:`error`) always. When
  stdout is not a terminal the report is plain text (no ANSI codes) at :data:`REPORT_WIDTH`
  columns unless ``COLUMNS`` is set.
* Exit codes (:func:`exit_code`): 0 success; 2 bad usage or bad input (ValueError, TypeError,
  OSError: a missing file, an unknown notation...), with one line ``error: ...`` on stderr and
  nothing on stdout or on disk; 1 any other failure (the traceback only with ``TASDER_DEBUG=1``);
  130 when interrupted (Ctrl-C).
"""

from __future__ import annotations

import errno
import inspect
import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from io import StringIO
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = [
    "DEBUG_ENV",
    "DEFAULT_MAPPER_BUDGET",
    "REPORT_WIDTH",
    "JsonOption",
    "ModelArgument",
    "ObjectiveOption",
    "OutputOption",
    "SeedOption",
    "emit",
    "error",
    "error_message",
    "format_count",
    "human_bytes",
    "interactive",
    "load_zoo_model",
    "one_line",
    "progress_bar",
    "scaled_number",
    "status",
    "stderr_console",
    "stdout_console",
    "table",
    "text_width",
    "user_caches",
    "warn",
    "with_examples",
    "wrap_dotted",
]

#: Width used for tables when stdout is not a terminal and ``COLUMNS`` is not set.
REPORT_WIDTH = 100

#: Environment variable that makes an internal error (exit code 1) show its traceback.
DEBUG_ENV = "TASDER_DEBUG"

#: The mapper budget of every modelled EDP the CLI prints for a model (``tasder search --cost``, ``tasder
#: apply --design``), as in ``tasder demo``: :data:`tasder.search.cost.DEFAULT_MAPPER_BUDGET` (one budget,
#: so one config gets one number everywhere; a literal so that ``tasder --help`` loads no torch).
DEFAULT_MAPPER_BUDGET = 3000


def with_examples(help_text: str, *examples: str) -> str:
    """``help_text`` followed by an ``Examples:`` block of command lines, for a command's ``help=``.

    The example lines keep their indentation and line breaks in both help renderers: typer's rich
    help dedents every paragraph after the first (so each line starts with a markup tag, which
    also lifts the examples out of the dimmed help text), click's plain help (``TYPER_USE_RICH=0``)
    rewraps paragraphs unless they start with a ``\\b`` line.
    """
    if typer.core.HAS_RICH:
        block = "Examples:\n" + "\n".join(f"[not dim]  {escape(line)}[/]" for line in examples)
    else:  # pragma: no cover - depends on the environment
        block = "\b\nExamples:\n" + "\n".join(f"  {line}" for line in examples)
    # Source lines are wrapped for the code, not for the terminal: join each paragraph's lines so
    # the help renderer wraps them to the terminal's width (otherwise a break stays mid-sentence).
    paragraphs = [" ".join(line.strip() for line in par.splitlines())
                  for par in inspect.cleandoc(help_text).split("\n\n")]
    return "\n\n".join(paragraphs) + f"\n\n{block}\n"


# ---------------------------------------------------------------------------------------------
# Numbers (pure functions; tested directly)
# ---------------------------------------------------------------------------------------------


def scaled_number(n: int | float, base: int, units: Sequence[str], separator: str) -> str:
    """``n`` with the largest unit of ``base`` that keeps it below 1000, three significant digits."""
    if abs(n) < base:
        return f"{int(n)}"
    value = float(n)
    for i, unit in enumerate(units):
        value /= base
        if abs(value) < 999.5 or i == len(units) - 1:
            digits = 2 if abs(value) < 9.995 else 1 if abs(value) < 99.95 else 0
            return f"{value:.{digits}f}{separator}{unit}"
    raise AssertionError("unreachable")


def human_bytes(n: int | float) -> str:
    """``1536`` → ``"1.50 KiB"``: binary units, three significant digits."""
    if abs(n) < 1024:
        return f"{int(n)} B"
    return scaled_number(n, 1024, ("KiB", "MiB", "GiB", "TiB", "PiB"), " ")


def format_count(n: float) -> str:
    """``1234567`` → ``"1.23M"``: SI prefixes, three significant digits (MAC counts)."""
    return scaled_number(n, 1000, ("k", "M", "G", "T", "P"), "")


# ---------------------------------------------------------------------------------------------
# Consoles and messages
# ---------------------------------------------------------------------------------------------


def stdout_console(file: StringIO | None = None) -> Console:
    """The console reports go to: the terminal, or (``file``) plain text at :data:`REPORT_WIDTH`."""
    if file is not None:  # a report written to disk: plain text at the report width
        return Console(file=file, width=REPORT_WIDTH, color_system=None, highlight=False,
                       force_terminal=False, emoji=False)
    console = Console(highlight=False, emoji=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(highlight=False, emoji=False, width=REPORT_WIDTH)
    return console


def stderr_console() -> Console:
    """The console status lines, progress, warnings and errors go to."""
    return Console(stderr=True, highlight=False, emoji=False)


def one_line(text: str) -> str:
    """``text`` with every run of white space (newlines included) folded to one space."""
    return " ".join(str(text).split())


def error(message: str) -> None:
    """``error: message`` on stderr, on one line (what every failing command ends with)."""
    stderr_console().print(f"error: {one_line(message)}", markup=False, soft_wrap=True)


def interactive() -> bool:
    """Whether stderr is a terminal: progress bars and status lines are shown only then."""
    return stderr_console().is_terminal


def status(message: str) -> None:
    """A status line on stderr (``wrote FILE``...), shown only when stderr is a terminal."""
    console = stderr_console()
    if console.is_terminal:
        console.print(message, markup=False, soft_wrap=True)


def warn(message: str) -> None:
    """A warning on stderr, shown always (also in logs and pipes): ``note: ...``."""
    stderr_console().print(f"note: {one_line(message)}", markup=False, soft_wrap=True)


@contextmanager
def progress_bar(description: str, total: int | None = None) -> Iterator[Callable[..., None]]:
    """A progress bar on stderr (only on a terminal, gone when done); yields ``advance(n=1)``.

    ``total=None`` shows a spinner without a bar, for work whose length is unknown. The one way
    commands show progress: use it for anything that can take more than a second.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = stderr_console()
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,  # gone when done: only the report stays on screen
        disable=not console.is_terminal,  # no stray lines in logs and pipes
    )
    with progress:
        task = progress.add_task(one_line(description), total=total)

        def advance(n: int = 1) -> None:
            progress.update(task, advance=n)

        yield advance


# ---------------------------------------------------------------------------------------------
# Options every command spells the same way
# ---------------------------------------------------------------------------------------------

#: ``--json``: every command that prints a table has it.
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
#: ``--output/-o``: where the report goes instead of stdout.
OutputOption = Annotated[
    Path | None,
    typer.Option("--output", "-o", metavar="FILE", show_default=False,
                 help="Write the report to FILE instead of stdout."),
]
#: ``MODEL``: a zoo model to run (``profile``, ``apply``, ``search``), or your own (``FILE.py:FACTORY``).
ModelArgument = Annotated[str, typer.Argument(
    help="A zoo model name (see `tasder models`), or your own: FILE.py:FACTORY or MODULE:FACTORY, a function "
         "returning a tasder.zoo.ZooModel (see examples/my_model.py).", show_default=False, metavar="MODEL")]
#: ``--objective``: what the mapper minimises (``hw eval``, ``hw compare``).
ObjectiveOption = Annotated[str, typer.Option("--objective", help="What the mapper minimises: edp, energy or cycles.")]
#: ``--seed`` of the mapper (``hw eval``, ``hw compare``).
SeedOption = Annotated[int, typer.Option("--seed", help="Mapper seed (results are deterministic per seed).")]


# ---------------------------------------------------------------------------------------------
# Tables and reports
# ---------------------------------------------------------------------------------------------


def table(title: str | None = None, caption: str | None = None) -> Table:
    """The table style of every report: a rule under the header, no outer frame."""
    return Table(title=title, caption=caption, box=box.SIMPLE_HEAD, title_justify="left",
                 caption_justify="left", show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))


def text_width(text: str) -> int:
    """Terminal cells of the widest line of ``text``."""
    return max(cell_len(line) for line in text.split("\n"))


def wrap_dotted(name: str, width: int) -> str:
    """Break a dotted tensor or layer name after dots so each line fits ``width`` (rich folds the rest)."""
    if len(name) <= width:
        return name
    lines: list[str] = []
    line = ""
    for part in re.findall(r"[^.]+\.?|\.", name):
        if line and len(line) + len(part) > width:
            lines.append(line)
            line = ""
        line += part
    lines.append(line)
    return "\n".join(lines)


def _json_safe(value: object) -> object:
    """NaN/Inf are not JSON: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def emit(render: Callable[[Console], None] | None, json_doc: object | None, output: Path | None) -> None:
    """Print the report — tables drawn by ``render(console)``, or ``json_doc`` as JSON — or write it to
    ``output`` (atomically; then a status line names the file)."""
    from tasder.io import atomic_write_text

    if output is None and sys.stdout is None:  # started with stdout closed (`>&-`): say so, exit 2
        raise ValueError("standard output is closed; write the report to a file with -o FILE")
    if json_doc is not None:
        text = json.dumps(_json_safe(json_doc), indent=2) + "\n"
        if output is None:
            sys.stdout.write(text)
            sys.stdout.flush()
    else:
        assert render is not None
        console = stdout_console()
        if output is None and console.is_terminal:
            render(console)
            return
        # A file or a pipe: plain text (no ANSI codes), without rich's padding at line ends.
        buffer = StringIO()
        plain = stdout_console(buffer)
        if output is None:
            plain.width = console.width
        render(plain)
        text = "".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines())
        if output is None:
            sys.stdout.write(text)
            sys.stdout.flush()
    if output is not None:
        atomic_write_text(output, text)
        status(f"wrote {output}")


# ---------------------------------------------------------------------------------------------
# Models and errors
# ---------------------------------------------------------------------------------------------


def load_zoo_model(name: str) -> Any:
    """The zoo entry ``name`` — or the :class:`~tasder.zoo.ZooModel` a ``FILE.py:FACTORY`` /
    ``MODULE:FACTORY`` spec returns — with a model to run (a shape-only entry is a ValueError)."""
    from tasder import zoo

    try:
        entry = zoo.load(name)
    except KeyError as exc:  # a registry lookup that did not say which names exist
        raise ValueError(f"unknown zoo model {name!r}: {exc}") from None
    if entry.model is None:
        raise ValueError(f"zoo entry {name!r} is shape-only (no model to run); pick one with weights")
    return entry


@contextmanager
def user_caches() -> Iterator[None]:
    """TASD permutations kept on disk in the user cache (``$TASDER_CACHE_DIR`` or ``~/.cache/tasder``,
    ``permutations/``) while a command runs, so ``tasder apply`` after ``tasder search`` (or a second
    ``tasder demo``) reads them instead of searching again. Content-keyed: never stale."""
    from tasder.tasd.permutation import permutation_store
    from tasder.zoo.cache import cache_dir

    with permutation_store(cache_dir() / "permutations"):
        yield


def error_message(exc: BaseException) -> str:
    """The one line an exception becomes on stderr (``strerror: filename`` for an OSError)."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC and exc.filename:
        return f"no space left on device, {exc.filename}"
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    return str(exc) or type(exc).__name__
