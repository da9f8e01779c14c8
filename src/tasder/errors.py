"""The exceptions tasder raises on purpose, in one place.

Every error tasder raises about its input is a :class:`TasderError` *and* the built-in type a
Python user expects (``ValueError``, ``TypeError``), so ``except ValueError`` keeps working and
``except tasder.errors.TasderError`` catches what tasder itself rejected:

* :class:`InvalidParameterError` — an argument that is out of range or of the wrong kind
  (both a ``ValueError`` and a ``TypeError``, as scikit-learn's ``InvalidParameterError``);
* ``tasder.hw.SpecError`` — a spec file (architecture, workload, mapping, energy table) that
  cannot be used, with ``file:line``;
* ``tasder.hw.MappingError`` — a mapping that does not fit an architecture and a problem;
* :class:`WorkloadUnavailableError` — a zoo entry's data or package is missing (not the user's
  input: a ``RuntimeError``, exit code 1 on the command line).

The command line maps ``ValueError``, ``TypeError`` and ``OSError`` to exit code 2 (bad input),
so each of these ends a command with one ``error: ...`` line.

>>> from tasder.errors import InvalidParameterError, TasderError
>>> issubclass(InvalidParameterError, (TasderError, ValueError, TypeError))
True
"""

from __future__ import annotations

__all__ = ["InvalidParameterError", "TasderError", "WorkloadUnavailableError"]


class TasderError(Exception):
    """Base class of the errors tasder raises on purpose (catch this to catch only ours)."""


class InvalidParameterError(TasderError, ValueError, TypeError):
    """An argument out of its allowed range or of the wrong type; the message names it."""


class WorkloadUnavailableError(TasderError, RuntimeError):
    """A workload's data cannot be found or read (a package is missing or damaged)."""
