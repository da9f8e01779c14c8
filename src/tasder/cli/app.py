"""The ``tasder`` command line: a thin layer over the Python API.

::

    tasder decompose weights.safetensors --series 2:8+1:8 [--dim -1] [--json] [--output FILE]
    tasder patterns [--json] [--output FILE]
    tasder sweep [minilm-weights] [--series 2:8 --series 4:8+2:8] [--json] [--output FILE]
    tasder demo [--model digits|minilm] [--quick] [--out DIR]
    tasder --version

The conventions every command follows (the helpers below implement them; command modules use them):

* Tables and JSON go to stdout; every command that prints a table has ``--json``, and
  ``--output/-o FILE`` writes the report (or, for ``train``, the checkpoint) to FILE instead.
* Same meaning, same flag: ``--series/-s``, ``--seed``, ``--mapper-budget``, ``--objective``,
  ``--json``, ``--output/-o``. Every ``--help`` ends with an ``Examples:`` block (:func:`with_examples`).
* Progress bars (:func:`progress_bar`) and status lines (:func:`status`) go to stderr and only when
  stderr is a terminal; warnings (:func:`warn`) and errors always. When stdout is not a terminal the
  report is plain text (no ANSI codes) at :data:`REPORT_WIDTH` columns unless ``COLUMNS`` is set.
* Exit codes: 0 success; 2 bad usage or bad input (a missing file, an unknown notation, a tensor
  that cannot be decomposed...: ValueError, TypeError, OSError), with one line ``error: ...`` on
  stderr and nothing on stdout or on disk; 1 any other failure (a missing optional package, a
  runtime error: ``error: ...`` on stderr, the traceback only with ``TASDER_DEBUG=1``); 130 when
  interrupted (Ctrl-C).
"""

from __future__ import annotations

import errno
import importlib
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
from typing import Annotated, NoReturn

import torch
import typer
from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from tasder import __version__
from tasder.io import atomic_write_text, load_tensors
from tasder.sparsity import NOTATION_EXAMPLES, Series, parse_series
from tasder.tasd import DecompositionSums, TASDResult, decompose, tensor_sums
from tasder.zoo import TTC_VEGETA_M8_SERIES, WorkloadUnavailableError, get_workload

try:  # typer >= 0.20 vendors click as typer._click; older typer uses click itself
    from typer._click import exceptions as _click_exceptions
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import exceptions as _click_exceptions  # type: ignore[no-redef]

# click < 8.2 has no NoArgsIsHelpError (it printed the help itself); () matches nothing.
_NO_ARGS_IS_HELP = getattr(_click_exceptions, "NoArgsIsHelpError", ())

__all__ = ["app", "human_bytes", "main", "progress_bar", "run", "status", "warn", "with_examples"]

#: Width used for tables when stdout is not a terminal and ``COLUMNS`` is not set.
REPORT_WIDTH = 100

#: Environment variable that makes an internal error (exit code 1) show its traceback.
DEBUG_ENV = "TASDER_DEBUG"


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


app = typer.Typer(
    name="tasder",
    help=with_examples(
        "Structured sparsity for DNNs: TASD series, patterns and their analysis.",
        "tasder patterns                                    # the sparsity notations",
        "tasder decompose weights.safetensors -s 2:8+1:8    # what a TASD series drops",
        "tasder models                                      # the built-in models",
        "tasder profile digits-cnn --json -o profile.json",
        "tasder hw eval --arch tc --workload resnet50",
        "tasder COMMAND --help                              # options and examples of a command",
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


# ---------------------------------------------------------------------------------------------
# Report helpers (pure functions; tested directly)
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


# ---------------------------------------------------------------------------------------------
# Consoles, formatting, output
# ---------------------------------------------------------------------------------------------


def _stdout_console(file: StringIO | None = None) -> Console:
    if file is not None:  # a report written to disk: plain text at the report width
        return Console(file=file, width=REPORT_WIDTH, color_system=None, highlight=False,
                       force_terminal=False, emoji=False)
    console = Console(highlight=False, emoji=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(highlight=False, emoji=False, width=REPORT_WIDTH)
    return console


def _stderr_console() -> Console:
    return Console(stderr=True, highlight=False, emoji=False)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _error(message: str) -> None:
    _stderr_console().print(f"error: {_one_line(message)}", markup=False, soft_wrap=True)


def interactive() -> bool:
    """Whether stderr is a terminal: progress bars and status lines are shown only then."""
    return _stderr_console().is_terminal


def status(message: str) -> None:
    """A status line on stderr (``wrote FILE``...), shown only when stderr is a terminal."""
    console = _stderr_console()
    if console.is_terminal:
        console.print(message, markup=False, soft_wrap=True)


def warn(message: str) -> None:
    """A warning on stderr, shown always (also in logs and pipes): ``note: ...``."""
    _stderr_console().print(f"note: {_one_line(message)}", markup=False, soft_wrap=True)


def _new_progress(console: Console) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,  # gone when done: only the report stays on screen
        disable=not console.is_terminal,  # no stray lines in logs and pipes
    )


@contextmanager
def progress_bar(description: str, total: int | None = None) -> Iterator[Callable[..., None]]:
    """A progress bar on stderr (only on a terminal, gone when done); yields ``advance(n=1)``.

    ``total=None`` shows a spinner without a bar, for work whose length is unknown. The one way
    commands show progress: use it for anything that can take more than a second.
    """
    console = _stderr_console()
    progress = _new_progress(console)
    with progress:
        task = progress.add_task(_one_line(description), total=total)

        def advance(n: int = 1) -> None:
            progress.update(task, advance=n)

        yield advance


@contextmanager
def _progress(total: int, description: str) -> Iterator[Progress]:
    """The older form of :func:`progress_bar`: yields the Progress (advance it with :func:`_advance`)."""
    progress = _new_progress(_stderr_console())
    with progress:
        progress.add_task(description, total=total)
        yield progress


def _advance(progress: Progress) -> None:
    progress.update(progress.task_ids[0], advance=1)


#: ``--json``: every command that prints a table has it.
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
#: ``--output/-o``: where the report goes instead of stdout.
OutputOption = Annotated[
    Path | None,
    typer.Option("--output", "-o", metavar="FILE", show_default=False,
                 help="Write the report to FILE instead of stdout."),
]


def table(title: str | None = None, caption: str | None = None) -> Table:
    """The table style of every report: a rule under the header, no outer frame."""
    return Table(title=title, caption=caption, box=box.SIMPLE_HEAD, title_justify="left",
                 caption_justify="left", show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))


def _text_width(text: str) -> int:
    return max(cell_len(line) for line in text.split("\n"))


def _wrap_dotted(name: str, width: int) -> str:
    """Break a dotted tensor name after dots so each line fits ``width`` (rich folds the rest)."""
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


def _shape(t: torch.Tensor) -> str:
    return "×".join(str(s) for s in t.shape)


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _json_safe(value: object) -> object:
    """NaN/Inf are not JSON: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _emit(render: Callable[[Console], None] | None, json_doc: object | None, output: Path | None) -> None:
    """Print the report (tables via ``render(console)``, or ``json_doc``) or write it to ``output``."""
    if output is None and sys.stdout is None:  # started with stdout closed (`>&-`): say so, exit 2
        raise ValueError("standard output is closed; write the report to a file with -o FILE")
    if json_doc is not None:
        text = json.dumps(_json_safe(json_doc), indent=2) + "\n"
        if output is None:
            sys.stdout.write(text)
            sys.stdout.flush()
    else:
        assert render is not None
        console = _stdout_console()
        if output is None and console.is_terminal:
            render(console)
            return
        # A file or a pipe: plain text (no ANSI codes), without rich's padding at line ends.
        buffer = StringIO()
        plain = _stdout_console(buffer)
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


def _metric_cells(effective_density: float, dropped_nnz: float, dropped_mag: float, rel_err: float,
                  packed: int, dense: int) -> list[str]:
    share = f" ({100.0 * packed / dense:.0f}%)" if dense else ""
    return [
        f"{effective_density:.3f}",
        f"{dropped_nnz:.2f}%",
        f"{dropped_mag:.2f}%",
        f"{rel_err:.4f}",
        f"{human_bytes(packed)}{share}",
    ]


def _series_table(title: str, caption: str | None = None) -> Table:
    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, title_justify="left",
                  caption_justify="left", show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    table.add_column("series")
    table.add_column("eff. density", justify="right")
    table.add_column("dropped nnz", justify="right")
    table.add_column("dropped |x|", justify="right")
    table.add_column("rel. error", justify="right")
    table.add_column("packed (of dense)", justify="right")
    return table


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"tasder {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", help="Show the version and exit.", callback=_version_callback,
                     is_eager=True),
    ] = False,
) -> None:
    """Structured sparsity for DNNs: TASD series, patterns and their analysis."""


def _skip_reason(t: torch.Tensor, dim: int) -> str | None:
    """Why ``t`` cannot be decomposed along ``dim`` (None if it can)."""
    if not t.is_floating_point():
        return f"dtype {_dtype(t)} is not floating point"
    if t.dim() == 0:
        return "0-dim tensor (a scalar)"
    if t.layout != torch.strided:
        return f"layout {t.layout} is not dense"
    if not -t.dim() <= dim < t.dim():
        return f"--dim {dim} is out of range for its {t.dim()} dimension(s)"
    return None


def _decompose_file(
    file: Path, series: Series, dim: int, allow_nonfinite: bool
) -> tuple[list[dict[str, object]], list[tuple[str, torch.Tensor, str]]]:
    """Records (see :func:`_record`) of the tensors in ``file`` that can be decomposed, and the
    ``(name, tensor, reason)`` of those skipped. Raises ValueError if none can be."""
    tensors = load_tensors(file)
    todo: list[tuple[str, torch.Tensor]] = []
    skipped: list[tuple[str, torch.Tensor, str]] = []
    for name, t in tensors.items():
        reason = _skip_reason(t, dim)
        if reason is None:
            todo.append((name, t))
        else:
            skipped.append((name, t, reason))
    if not todo:
        if len(skipped) == 1:
            name, _, reason = skipped[0]
            raise ValueError(f"cannot decompose tensor {name!r} in {file}: {reason}")
        listed = "; ".join(f"{name!r}: {reason}" for name, _, reason in skipped)
        raise ValueError(f"no tensor in {file} can be decomposed ({listed})")
    if not allow_nonfinite:  # a data problem, not a misfit: stop rather than skip
        for name, t in todo:
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                raise ValueError(
                    f"tensor {name!r} in {file} holds {bad} NaN/Inf value(s); clean it or pass "
                    f"--allow-nonfinite"
                )
    records: list[dict[str, object]] = []
    with _progress(len(todo), f"TASD {series}") as progress:
        for name, t in todo:
            try:
                result = decompose(t, series, dim=dim, allow_nonfinite=allow_nonfinite)
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"tensor {name!r} in {file}: {exc}") from None
            records.append(_record(name, result))  # keep the numbers, let the terms go
            _advance(progress)
    return records, skipped


def _record(name: str, result: TASDResult) -> dict[str, object]:
    x = result.input
    return {
        "name": name,
        "shape": list(x.shape),
        "dtype": _dtype(x),
        "series": str(result.series),
        "dim": result.dim,
        **result.metrics.as_dict(),
    }


@app.command("decompose", help=with_examples(
    """Decompose every tensor in FILE into a TASD series and report what it drops.

    Tensors that cannot be decomposed (integers, scalars, a --dim out of range) are skipped and
    listed; if none can be, the command fails with exit code 2.""",
    "tasder decompose weights.safetensors --series 2:8+1:8",
    "tasder decompose model.pt -s 2:4 --dim 0 --json -o report.json",
))
def decompose_cmd(
    file: Annotated[Path, typer.Argument(help="A .pt/.pth, .safetensors or .npy file of tensors.",
                                         show_default=False)],
    series: Annotated[str, typer.Option("--series", "-s", help="TASD series, e.g. 2:8+1:8 or 2:4.",
                                        show_default=False)],
    dim: Annotated[int, typer.Option("--dim", "-d", help="Dimension the G:H groups run along.")] = -1,
    as_json: JsonOption = False,
    allow_nonfinite: Annotated[
        bool, typer.Option("--allow-nonfinite", help="Accept NaN/Inf (they rank above every value).")
    ] = False,
    output: OutputOption = None,
) -> None:
    """Decompose every tensor in FILE into a TASD series and report what it drops."""
    parsed = parse_series(series)
    records, skipped = _decompose_file(file, parsed, dim, allow_nonfinite)

    if as_json:
        for name, t, reason in skipped:
            _stderr_console().print(f"skipped {name!r} ({_shape(t) or 'scalar'}): {reason}",
                                    markup=False, soft_wrap=True)
        _emit(None, records, output)
        return

    def render(console: Console) -> None:
        headers = ["shape\ndtype", "input\ndensity", "eff.\ndensity", "dropped\nnnz", "dropped\n|x|",
                   "rel.\nerror", "packed", "dense"]
        rows = []
        for r in records:
            shape = "×".join(str(n) for n in r["shape"])
            rows.append((str(r["name"]), [
                f"{shape}\n{r['dtype']}", f"{r['input_density']:.3f}",
                f"{r['effective_density']:.3f}", f"{r['dropped_nonzeros_pct']:.2f}%",
                f"{r['dropped_magnitude_pct']:.2f}%", f"{r['relative_error']:.4f}",
                human_bytes(r["packed_nbytes"]), human_bytes(r["dense_nbytes"]),
            ]))
        fixed = [max(_text_width(t) for t in [h, *(cells[i] for _, cells in rows)])
                 for i, h in enumerate(headers)]
        # Every column but the last is followed by a 1-cell pad and a 1-cell divider.
        name_width = max(16, console.width - sum(fixed) - 2 * len(fixed))
        console.print(
            f"{file.name}: TASD {parsed} (effective density {parsed.effective_density:.3f}), "
            f"groups along dim {dim}", markup=False,
        )
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
        table.add_column("tensor", overflow="fold", max_width=name_width)
        table.add_column(headers[0], no_wrap=True)
        for header in headers[1:]:
            table.add_column(header, justify="right", no_wrap=True)
        for name, cells in rows:
            table.add_row(_wrap_dotted(name, name_width), *cells)
        console.print(table)
        if skipped:
            console.print(f"skipped {len(skipped)} tensor(s):", markup=False)
            for name, t, reason in skipped:
                console.print(f"  {name} ({_shape(t) or 'scalar'}, {_dtype(t)}): {reason}", markup=False)

    _emit(render, None, output)


@app.command("patterns", help=with_examples(
    "List the sparsity notations tasder understands, with examples and their density.",
    "tasder patterns",
    "tasder patterns --json",
))
def patterns_cmd(as_json: JsonOption = False, output: OutputOption = None) -> None:
    rows = [(example, parse_series(example).effective_density, meaning) for example, meaning in NOTATION_EXAMPLES]
    if as_json:
        _emit(None, [{"notation": n, "density": d, "meaning": m} for n, d, m in rows], output)
        return

    def render(console: Console) -> None:
        t = table("Sparsity notations (use them with --series)")
        t.add_column("notation", no_wrap=True)
        t.add_column("density", justify="right", no_wrap=True)
        t.add_column("meaning", ratio=1)
        for notation, density, meaning in rows:
            t.add_row(notation, f"{density:.4g}", meaning)
        console.print(t)

    _emit(render, None, output)


@app.command("sweep", help=with_examples(
    """TASD of a built-in tensor workload with several series: a table per tensor and a pooled total.

    The default workload is the real all-MiniLM-L6-v2 encoder (36 Linear weight matrices), decomposed
    with every TTC-VEGETA-M8 series.""",
    "tasder sweep",
    "tasder sweep minilm-weights -s 2:8 -s 4:8+2:8 --json",
))
def sweep_cmd(
    workload_name: Annotated[str, typer.Argument(metavar="WORKLOAD", help="A built-in tensor workload.")]
    = "minilm-weights",
    series: Annotated[
        list[str] | None,
        typer.Option("--series", "-s", show_default=False,
                     help="A TASD series to try (repeat the option); default: every TTC-VEGETA-M8 "
                     "series (1:8, 2:8, 4:8, 2:8+1:8, 4:8+1:8, 4:8+2:8)."),
    ] = None,
    as_json: JsonOption = False,
    output: OutputOption = None,
) -> None:
    """TASD of a built-in tensor workload with several series."""
    parsed: dict[str, Series] = {}
    for spec in series or TTC_VEGETA_M8_SERIES:
        s = parse_series(spec)
        parsed.setdefault(str(s), s)
    workload = get_workload(workload_name)
    weights = workload.load()
    n_params = sum(w.numel() for w in weights.values())

    # Only numbers are kept: holding every result's terms would cost ~(order+1)x the weights per series.
    per_matrix: dict[str, list[tuple[str, DecompositionSums]]] = {}
    totals = {key: DecompositionSums() for key in parsed}
    records: list[dict[str, object]] = []
    with _progress(len(weights) * len(parsed), "TASD of MiniLM weights") as progress:
        for name, w in weights.items():
            rows = per_matrix.setdefault(name, [])
            input_sums = tensor_sums(w)
            for key, s in parsed.items():
                result = decompose(w, s, dim=workload.dim)
                sums = DecompositionSums.of(result, input_sums)
                totals[key] = totals[key] + sums
                rows.append((key, sums))
                records.append(_record(name, result))
                _advance(progress)

    dense_bytes = sum(w.numel() * w.element_size() for w in weights.values())
    header = (
        f"{workload.model}: {len(weights)} encoder Linear weight matrices, {n_params:,} parameters\n"
        f"({human_bytes(dense_bytes)} dense); TASD groups along the input dim (dim={workload.dim}), "
        f"{len(parsed)} series"
    )
    if as_json:
        doc = {
            "model": workload.model,
            "workload": workload.name,
            "matrices": len(weights),
            "parameters": n_params,
            "dim": workload.dim,
            "series": list(parsed),
            "results": records,
            "totals": [{"series": key, **totals[key].summary()} for key in parsed],
        }
        _emit(None, doc, output)
        return

    def render(console: Console) -> None:
        console.print(header, markup=False)
        console.print()
        for name, rows in per_matrix.items():
            w = weights[name]
            table = _series_table(f"{name} ({_shape(w)}, {human_bytes(w.numel() * w.element_size())} dense)")
            for key, sums in rows:
                table.add_row(key, *_metric_cells(
                    sums.effective_density, sums.dropped_nonzeros_pct, sums.dropped_magnitude_pct,
                    sums.relative_error, sums.packed_nbytes, sums.dense_nbytes))
            console.print(table)
            console.print()
        total_table = _series_table(
            f"TOTAL over {len(weights)} matrices ({n_params:,} parameters)",
            caption="pooled, not averaged: Σdropped/Σnnz, Σ|r|/Σ|x|, √(Σ‖r‖²/Σ‖x‖²), Σbytes",
        )
        total_table.title_style = "bold"
        for key in parsed:
            t = totals[key]
            total_table.add_row(key, *_metric_cells(
                t.effective_density, t.dropped_nonzeros_pct, t.dropped_magnitude_pct,
                t.relative_error, t.packed_nbytes, t.dense_nbytes))
        console.print(total_table)

    _emit(render, None, output)


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def _message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC and exc.filename:
        return f"no space left on device, {exc.filename}"
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    return str(exc) or type(exc).__name__


# Larger commands live in their own modules (tasder/cli/<name>.py) and register themselves on
# `app` with @app.command when imported; list them here. They import helpers from this module.
_COMMAND_MODULES: tuple[str, ...] = ("demo", "models", "profile", "train", "hw", "search")
for _module in _COMMAND_MODULES:
    importlib.import_module(f"tasder.cli.{_module}")


def _reserve_std_fds() -> None:
    """Open /dev/null on fds 0-2 that were closed at start (``>&-``): otherwise the next file we open
    (a temp file of an atomic write) gets fd 1, and anything a library prints lands in it."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            if (new := os.open(os.devnull, os.O_RDWR)) != fd:  # pragma: no cover - cannot happen
                os.close(new)


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``) and return the exit code:
    0 success, 2 bad usage or input, 1 any other failure, 130 interrupted."""
    _reserve_std_fds()
    command = typer.main.get_command(app)
    try:
        rv = command.main(args=None if argv is None else list(argv), prog_name="tasder",
                          standalone_mode=False)
    except _NO_ARGS_IS_HELP as exc:  # bare `tasder`: show the help
        text = exc.ctx.get_help() if exc.ctx else exc.format_message()
        if text:  # typer's rich help prints itself and returns ""
            typer.echo(text)
        return exc.exit_code
    except _click_exceptions.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
        _error(exc.format_message() + hint)
        return exc.exit_code
    except _click_exceptions.ClickException as exc:
        _error(exc.format_message())
        return exc.exit_code
    except typer.Abort:
        _error("aborted")
        return 1
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except BrokenPipeError:  # `tasder demo | head`: the reader left; stay quiet
        # Python's advice: point stdout at devnull so the flush at exit does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except WorkloadUnavailableError as exc:  # a missing package or file of ours, not the user's input
        _error(str(exc))
        return 1
    except (ValueError, TypeError, OSError) as exc:
        _error(_message(exc))
        return 2
    except Exception as exc:  # a failure that is not the user's input: one line, code 1
        if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            raise
        _error(f"{type(exc).__name__}: {_message(exc)} (set {DEBUG_ENV}=1 for the traceback)")
        return 1
    if rv == 130:  # typer turned a KeyboardInterrupt into exit code 130 without a word
        _error("interrupted")
    return rv if isinstance(rv, int) else 0


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Console entry point (``tasder``): exit with :func:`run`'s code."""
    sys.exit(run(argv))


if __name__ == "__main__":  # pragma: no cover
    main()
