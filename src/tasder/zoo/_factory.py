"""Your own model where a zoo name goes: ``path/to/file.py:factory`` or ``package.module:factory``.

``tasder profile|search|apply`` (and :func:`tasder.zoo.load`) accept such a *model spec*: the
factory is called with no arguments and returns the record the built-in models are,
a :class:`~tasder.zoo.ZooModel` — most easily made with :func:`tasder.zoo.make_entry` (the model,
calibration batches, a validation evaluator the search decides on, and a test evaluator it reports).
``examples/my_model.py`` is a complete one.

Why a factory and not a pickled model: the evaluators are code (a data split, a metric), and the
model's class must be importable anyway; a factory is the one thing that brings all of it.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

__all__ = ["is_model_spec", "load_factory"]

#: ``file.py:name`` or ``dotted.module:name`` (the name a Python identifier).
_SPEC = re.compile(r"^(?P<source>.+):(?P<factory>[A-Za-z_][A-Za-z0-9_]*)$")


def is_model_spec(text: object) -> bool:
    """True when ``text`` has the ``SOURCE:FACTORY`` form (zoo names never hold a colon)."""
    return isinstance(text, str) and _SPEC.match(text) is not None


def _import_file(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"model spec: no such file: {path}")
    name = f"_tasder_user_model_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"model spec: {path} is not a Python file that can be imported")
    module = importlib.util.module_from_spec(spec)
    # The file's folder goes first on sys.path while it runs, so it can import its neighbours.
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    return module


def load_factory(text: str) -> Any:
    """The :class:`~tasder.zoo.ZooModel` the factory named by ``text`` returns (checked).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a malformed spec, a module that cannot be imported, no such factory, or a
            factory that does not return a usable ZooModel (each message names what was expected).
    """
    from tasder.zoo import ZooModel

    m = _SPEC.match(text)
    if m is None:
        raise ValueError(f"model spec {text!r}: expected FILE.py:FACTORY or MODULE:FACTORY")
    source, factory_name = m.group("source"), m.group("factory")
    if source.endswith(".py") or "/" in source or "\\" in source:
        module = _import_file(Path(source))
    else:
        try:
            module = importlib.import_module(source)
        except ImportError as exc:
            raise ValueError(f"model spec {text!r}: cannot import module {source!r} ({exc})") from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        names = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                       and getattr(v, "__module__", None) == module.__name__)
        raise ValueError(f"model spec {text!r}: {source} has no function {factory_name!r}"
                         + (f" (functions there: {', '.join(names)})" if names else ""))
    entry = factory()
    if not isinstance(entry, ZooModel):
        raise ValueError(f"model spec {text!r}: {factory_name}() returned a {type(entry).__name__}; it must return "
                         f"a tasder.zoo.ZooModel (build one with tasder.zoo.make_entry)")
    if entry.model is None or not entry.calibration:
        raise ValueError(f"model spec {text!r}: the ZooModel {factory_name}() returned needs a model and at least one "
                         f"calibration batch")
    return entry
