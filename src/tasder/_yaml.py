"""The one way tasder reads YAML: safe, bounded, and every error names the file and line.

Every YAML file tasder reads (architecture, workload, mapping and energy specs in ``tasder.hw``,
TASD configs in ``tasder.nn``, hardware targets in ``tasder.search``) goes through
:func:`compose_yaml` or :func:`load_yaml_text`. On top of PyYAML's safe loader they:

* **refuse aliases** (``*name``), with the alias's file and line. Why refuse rather than expand
  under a node budget: no tasder file needs them (they are short, hand-written, one value per
  line so they diff well), a budget would be one more number to get wrong, and an alias is how a
  few hundred bytes become billions of nodes ("billion laughs": nine levels of nine-fold aliases
  hung ``tasder hw eval`` for minutes) or a self-referencing value (``&a [*a]``, a RecursionError
  later). Refused at composition, they never cost anything. An anchor alone (``&name``) is harmless
  and accepted.
* **bound nesting** at :data:`MAX_DEPTH` levels of mappings/sequences, because PyYAML composes
  and constructs recursively: ``[[[[...]]]]`` a few thousand deep would end in RecursionError.
* **refuse duplicate keys** in a mapping (PyYAML keeps the last one silently: a config listing a
  layer twice would quietly lose the first entry).
* read files as UTF-8 with an error naming the file and line of an invalid byte.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

__all__ = ["MAX_DEPTH", "compose_yaml", "load_yaml_text", "read_yaml_text"]

#: Deepest nesting of mappings and sequences accepted. tasder's own files nest at most 6 levels;
#: PyYAML composes and constructs recursively (a few Python frames per level), so this stays
#: far below Python's recursion limit whatever the caller's stack depth.
MAX_DEPTH = 64


def read_yaml_text(path: str | os.PathLike[str], error: type[ValueError] = ValueError) -> str:
    """The text of a YAML file; a byte that is not UTF-8 is ``error`` naming the file and line."""
    p = Path(path)
    data = p.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise error(f"{p}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8") from None


def _bounded(base: type[yaml.SafeLoader], error: type[ValueError], source: str) -> type[yaml.SafeLoader]:
    """``base`` (a SafeLoader subclass) with aliases refused, nesting bounded and duplicate keys refused."""

    class Bounded(base):  # type: ignore[valid-type, misc]
        _depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise error(f"{source}:{event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not "
                            f"accepted in tasder files; write the value out where it is used")
            self._depth += 1
            try:
                if self._depth > MAX_DEPTH:
                    mark = self.peek_event().start_mark
                    raise error(f"{source}:{mark.line + 1}: nested deeper than {MAX_DEPTH} levels; tasder "
                                f"files nest a few levels (a limit so that no file can exhaust the stack)")
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Any:
            if isinstance(node, yaml.MappingNode):
                self.flatten_mapping(node)  # merge keys (<<) first, as the base class does
                seen: dict[Any, int] = {}
                for key_node, _ in node.value:
                    key = self.construct_object(key_node, deep=True)
                    line = key_node.start_mark.line + 1
                    try:
                        hash(key)
                    except TypeError:
                        continue  # an unhashable key: the base class raises its own error for it
                    if key in seen:
                        raise error(f"{source}:{line}: duplicate key {key!r} (first given on line {seen[key]})")
                    seen[key] = line
            return super().construct_mapping(node, deep=deep)

    return Bounded


def _where(exc: yaml.YAMLError, source: str) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return f"{source}:{mark.line + 1}" if mark is not None else source


def _problem(exc: yaml.YAMLError) -> str:
    text = getattr(exc, "problem", None) or str(exc)
    return " ".join(str(text).split())


def compose_yaml(text: str, source: str, *, loader: type[yaml.SafeLoader] = yaml.SafeLoader,
                 error: type[ValueError] = ValueError) -> tuple[yaml.Node | None, yaml.SafeLoader]:
    """The node tree of ``text`` (None for an empty document) and the loader that composed it, for
    callers that build values themselves (to keep line numbers). Dispose of the loader when done.

    Raises ``error`` (a ValueError subclass) with ``source:line`` for malformed YAML, an alias,
    nesting deeper than :data:`MAX_DEPTH` or a second document.
    """
    instance = _bounded(loader, error, source)(text)
    try:
        return instance.get_single_node(), instance
    except yaml.YAMLError as exc:
        instance.dispose()
        raise error(f"{_where(exc, source)}: invalid YAML: {_problem(exc)}") from None
    except BaseException:
        instance.dispose()
        raise


def load_yaml_text(text: str, source: str, *, loader: type[yaml.SafeLoader] = yaml.SafeLoader,
                   error: type[ValueError] = ValueError) -> Any:
    """Plain Python values of ``text`` (None when empty), with the checks of :func:`compose_yaml`
    plus duplicate keys refused; every error is ``error`` naming ``source:line``."""
    node, instance = compose_yaml(text, source, loader=loader, error=error)
    try:
        return None if node is None else instance.construct_document(node)
    except yaml.YAMLError as exc:
        raise error(f"{_where(exc, source)}: invalid YAML: {_problem(exc)}") from None
    finally:
        instance.dispose()
