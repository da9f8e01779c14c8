"""The ``tasder`` command line (a thin layer over the Python API); see :mod:`tasder.cli.app`."""

from tasder.cli.app import app, main, run

__all__ = ["app", "main", "run"]
