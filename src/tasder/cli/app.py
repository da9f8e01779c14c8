"""The ``tasder`` command line: a thin layer over the Python API.

::

    tasder decompose weights.safetensors --series 2:8+1:8 [--dim -1] [--json] [--output FILE]
    tasder patterns | sweep | models | profile | apply | search | train | demo | hw eval | hw compare
    tasder --version

This module builds the :data:`app` from the command modules (``tasder/cli/<group>.py``, each with
a ``register(app)``) and runs it (:func:`run`, :func:`main`); what the commands share — output,
tables, progress, options, the exit codes — is in :mod:`tasder.cli.common`, which states the
conventions every command follows. Command modules import torch, the zoo and the search inside
their command functions, so ``tasder --help`` loads neither torch nor numba.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from typing import Annotated, NoReturn

import typer

from tasder import __version__
from tasder.cli import demo, hw, models, profile, search, tensors, train
from tasder.cli.common import DEBUG_ENV, error, error_message, with_examples
from tasder.errors import WorkloadUnavailableError

try:  # typer >= 0.20 vendors click as typer._click; older typer uses click itself
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

# click < 8.2 has no NoArgsIsHelpError (it printed the help itself); () matches nothing.
_NO_ARGS_IS_HELP = getattr(click_exceptions, "NoArgsIsHelpError", ())

__all__ = ["COMMAND_MODULES", "app", "main", "run"]

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


#: The command modules, in the order ``tasder --help`` lists their commands.
COMMAND_MODULES = (tensors, demo, models, profile, train, hw, search)
for _module in COMMAND_MODULES:
    _module.register(app)


def _reserve_std_fds() -> None:
    """Open /dev/null on fds 0-2 that were closed at start (``>&-``): otherwise the next file we open
    (a temp file of an atomic write) gets fd 1, and anything a library prints lands in it."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            if (new := os.open(os.devnull, os.O_RDWR)) != fd:  # pragma: no cover - cannot happen
                os.close(new)


def _flags_take_no_value(command: object) -> None:
    """Show on/off options as bare flags in ``--help`` (``--quick``, not ``--quick <bool>``).

    Why: typer's rich help prints every option's type, a flag's too, which reads as if it took a
    value (``--quick true``) that click then rejects. An empty metavar leaves the type column blank.
    """
    help_option = None
    # --help itself: click makes it on first use and caches it on the command (another click: left as is)
    with contextlib.suppress(Exception):
        help_option = command.get_help_option(command.context_class(command))  # type: ignore[attr-defined]
    for param in [*getattr(command, "params", ()), *([help_option] if help_option is not None else [])]:
        if getattr(param, "is_flag", False) and not getattr(param, "count", False):
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _flags_take_no_value(sub)


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``) and return the exit code:
    0 success, 2 bad usage or input, 1 any other failure, 130 interrupted."""
    _reserve_std_fds()
    command = typer.main.get_command(app)
    _flags_take_no_value(command)
    try:
        rv = command.main(args=None if argv is None else list(argv), prog_name="tasder",
                          standalone_mode=False)
    except _NO_ARGS_IS_HELP as exc:  # bare `tasder`: show the help
        text = exc.ctx.get_help() if exc.ctx else exc.format_message()
        if text:  # typer's rich help prints itself and returns ""
            typer.echo(text)
        return exc.exit_code
    except click_exceptions.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
        error(exc.format_message() + hint)
        return exc.exit_code
    except click_exceptions.ClickException as exc:
        error(exc.format_message())
        return exc.exit_code
    except typer.Abort:
        error("aborted")
        return 1
    except KeyboardInterrupt:
        error("interrupted")
        return 130
    except BrokenPipeError:  # `tasder demo | head`: the reader left; stay quiet
        # Python's advice: point stdout at devnull so the flush at exit does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except WorkloadUnavailableError as exc:  # a missing package or file of ours, not the user's input
        error(str(exc))
        return 1
    except (ValueError, TypeError, OSError) as exc:
        error(error_message(exc))
        return 2
    except Exception as exc:  # a failure that is not the user's input: one line, code 1
        if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            raise
        error(f"{type(exc).__name__}: {error_message(exc)} (set {DEBUG_ENV}=1 for the traceback)")
        return 1
    if rv == 130:  # typer turned a KeyboardInterrupt into exit code 130 without a word
        error("interrupted")
    return rv if isinstance(rv, int) else 0


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Console entry point (``tasder``): exit with :func:`run`'s code."""
    _exit_now(run(argv))


def _exit_now(code: int) -> NoReturn:
    """Exit with ``code`` without the interpreter's teardown once torch has been loaded.

    Why: after a command that used torch and numba, finalising the interpreter (freeing every
    module, joining their thread pools) took 1.1-1.3 s on the 2-core development machine — after
    the command had printed its result, a tenth of a warm ``tasder demo``. What the teardown would
    do that matters is done here first: the ``atexit`` handlers (logging, temporary folders'
    finalizers, coverage) run and both standard streams are flushed. A command that never loaded
    torch exits the ordinary way (its teardown is quick).
    """
    import atexit
    import threading

    if "torch" not in sys.modules:
        sys.exit(code)
    # In the order the interpreter's own exit uses: wait for non-daemon threads and run the
    # threading-level exit hooks (concurrent.futures shuts its process pools down there), then atexit.
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: what Python's own exit reports (120)
            code = code or 120
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
