"""The ``tasder`` command line (a thin layer over the Python API): :func:`run` and :func:`main`.

:mod:`tasder.cli.app` builds the Typer application (``tasder.cli.app.app``) from one module per
command group; :mod:`tasder.cli.common` holds what the commands share.
"""

from tasder.cli.app import main, run

__all__ = ["main", "run"]
