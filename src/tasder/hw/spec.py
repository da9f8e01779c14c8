"""YAML loading that keeps line numbers, and the checks every spec node shares.

Why our own loader: a spec error is only useful if it says *where* (file, line, key path) and
what is allowed there ("unknown keys give errors that teach", as timeloopfe does). ``yaml.safe_load`` throws
the positions away, so we compose the node tree and build plain values ourselves, remembering
each mapping's and each key's line.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from tasder._yaml import compose_yaml, read_yaml_text
from tasder.errors import TasderError

__all__ = ["MAX_SPEC_INT", "SpecError", "SpecMap", "check_keys", "get_bool", "get_float", "get_int", "get_str",
           "load_section", "load_yaml"]

#: Spec format version written into every shipped file and accepted on load.
SPEC_VERSION = "0.1"


class SpecError(TasderError, ValueError):
    """A spec (architecture, workload, mapping, energy table) that cannot be used; says where and why."""


class SpecMap(dict):
    """A YAML mapping as a plain ``dict`` that also knows its file, its line and each key's line."""

    source: str
    line: int
    key_lines: dict[str, int]
    path: str

    def where(self, key: str | None = None) -> str:
        """``file:line`` of ``key`` (or of the mapping itself), 1-based as editors count."""
        line = self.key_lines.get(key, self.line) if key is not None else self.line
        return f"{self.source}:{line}"


def _build(node: yaml.Node, loader: yaml.SafeLoader, source: str, path: str) -> Any:
    if isinstance(node, yaml.MappingNode):
        out = SpecMap()
        out.source, out.line, out.key_lines, out.path = source, node.start_mark.line + 1, {}, path
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if isinstance(key, bool) or not isinstance(key, (str, int, float)):
                raise SpecError(f"{source}:{key_node.start_mark.line + 1}: key {key!r} in {path or 'the top level'} "
                                f"must be a string")
            if key in out:
                raise SpecError(f"{source}:{key_node.start_mark.line + 1}: duplicate key {key!r} in "
                                f"{path or 'the top level'}")
            if isinstance(key, str) and "-" in key:
                # Timeloop's older hyphenated spellings are rewritten to underscores on load.
                key = key.replace("-", "_")
            out.key_lines[key] = key_node.start_mark.line + 1
            out[key] = _build(value_node, loader, source, f"{path}.{key}" if path else key)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(v, loader, source, f"{path}[{i}]") for i, v in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def load_yaml(path: str | Path) -> SpecMap:
    """Parse a YAML file into :class:`SpecMap`/list/scalar values that remember their lines.

    Raises:
        SpecError: unreadable YAML (with the parser's position), text that is not UTF-8, an alias
            (``*name``), nesting deeper than :data:`tasder._yaml.MAX_DEPTH`, or a top level that is
            not a mapping.
        OSError: the file cannot be read.
    """
    path = Path(path)
    # The one safe loader (tasder._yaml): aliases refused, nesting bounded, errors with file:line.
    node, loader = compose_yaml(read_yaml_text(path, SpecError), str(path), error=SpecError)
    try:
        if node is None:
            raise SpecError(f"{path}: the file is empty; expected a mapping with a 'version' key")
        doc = _build(node, loader, str(path), "")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise SpecError(f"{where}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
    finally:
        loader.dispose()
    if not isinstance(doc, SpecMap):
        raise SpecError(f"{path}: the top level must be a mapping, got {type(doc).__name__}")
    return doc


def _label(d: Mapping[str, Any]) -> str:
    return getattr(d, "path", "") or "the top level"


def _where(d: Mapping[str, Any], key: str | None = None) -> str:
    return d.where(key) if isinstance(d, SpecMap) else "<dict>"


def check_keys(d: Mapping[str, Any], allowed: Iterable[str], required: Iterable[str] = ()) -> None:
    """Reject unknown keys (suggesting close ones) and missing required keys, naming file, line and path."""
    allowed = list(allowed)
    for key in d:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise SpecError(f"{_where(d, key)}: unknown key {key!r} in {_label(d)}{hint} "
                            f"(allowed: {', '.join(allowed)})")
    for key in required:
        if key not in d:
            raise SpecError(f"{_where(d)}: {_label(d)} is missing the required key {key!r}")


def _key_path(d: Mapping[str, Any], key: str) -> str:
    """``architecture.clock_hz``, or ``version`` for a key of the top level."""
    path = getattr(d, "path", "")
    return f"{path}.{key}" if path else key


def _bad(d: Mapping[str, Any], key: str, expected: str) -> SpecError:
    value = d[key]
    return SpecError(f"{_where(d, key)}: {_key_path(d, key)} must be {expected}; got {value!r} "
                     f"({type(value).__name__})")


#: Largest integer a spec may hold anywhere (capacities, bandwidths, sizes...) unless a key sets a
#: tighter bound: 2**40 is above any real design's count of words or units, and keeps the model's
#: 64-bit integer products of two such values from overflowing silently.
MAX_SPEC_INT = 2**40


def _int_text(n: int) -> str:
    """``2**40`` for powers of two above a million, else the number with separators."""
    return f"2**{n.bit_length() - 1}" if n > 2**20 and n & (n - 1) == 0 else f"{n:,}"


def get_int(d: Mapping[str, Any], key: str, default: int | None = None, *, minimum: int = 1,
            maximum: int = MAX_SPEC_INT, why: str = "") -> int | None:
    """``d[key]`` as an int in [``minimum``, ``maximum``] (``default`` when absent); bools and floats are
    type errors. ``why`` says, in the message, why ``maximum`` is what it is."""
    if key not in d or d[key] is None:
        return default
    value = d[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _bad(d, key, f"an integer ≥ {minimum}")
    if value > maximum:
        reason = why or "larger values are beyond any real design and overflow the model's 64-bit integers"
        raise SpecError(f"{_where(d, key)}: {_key_path(d, key)}={value:,} is above the limit of {_int_text(maximum)} "
                        f"({reason})")
    return value


def get_float(d: Mapping[str, Any], key: str, default: float | None = None, *, positive: bool = True,
              allow_zero: bool = False, maximum: float | None = None, why: str = "") -> float | None:
    """``d[key]`` as a finite float (ints accepted); ``positive`` rejects negatives and, unless
    ``allow_zero``, zero; ``maximum`` (with ``why`` for the message) bounds it from above.

    NaN and ±Inf are refused everywhere: a NaN clock or energy computes without complaint and ends
    as a ``null`` EDP far from its cause.
    """
    if key not in d or d[key] is None:
        return default
    value = d[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(d, key, "a number")
    if not math.isfinite(value):
        raise _bad(d, key, "a finite number")
    if positive and (value < 0 or (value == 0 and not allow_zero)):
        raise _bad(d, key, "a number ≥ 0" if allow_zero else "a number > 0")
    if maximum is not None and value > maximum:
        raise SpecError(f"{_where(d, key)}: {_key_path(d, key)}={value:g} is above the limit of {maximum:g}"
                        + (f" ({why})" if why else ""))
    return float(value)


def get_str(d: Mapping[str, Any], key: str, default: str | None = None,
            choices: Iterable[str] | None = None) -> str | None:
    """``d[key]`` as a string, optionally one of ``choices``."""
    if key not in d or d[key] is None:
        return default
    value = d[key]
    if not isinstance(value, str):
        raise _bad(d, key, "a string")
    if choices is not None:
        choices = list(choices)
        if value not in choices:
            raise _bad(d, key, f"one of {', '.join(choices)}")
    return value


def get_bool(d: Mapping[str, Any], key: str, default: bool) -> bool:
    """``d[key]`` as a bool."""
    if key not in d or d[key] is None:
        return default
    if not isinstance(d[key], bool):
        raise _bad(d, key, "true or false")
    return bool(d[key])


def check_version(doc: SpecMap) -> None:
    """Every spec file carries ``version: 0.1`` (a number or a string)."""
    if "version" not in doc:
        raise SpecError(f"{doc.where()}: missing 'version' (this tasder reads version {SPEC_VERSION})")
    if str(doc["version"]) != SPEC_VERSION:
        raise SpecError(f"{doc.where('version')}: unsupported version {doc['version']!r} "
                        f"(this tasder reads version {SPEC_VERSION})")


def load_section(source: str | Path, section: str, optional: Iterable[str] = (),
                 what: str = "") -> tuple[SpecMap, SpecMap]:
    """A spec file of ``version`` and the mapping ``section`` (and the ``optional`` top-level keys):
    ``(the whole document, its section)``. ``what`` finishes the error when the section is not a
    mapping (``"of level name → loops"``)."""
    doc = load_yaml(source)
    check_keys(doc, ("version", section, *optional), required=("version", section))
    check_version(doc)
    body = doc[section]
    if not isinstance(body, dict):
        raise SpecError(f"{doc.where(section)}: {section} must be a mapping{' ' + what if what else ''}")
    return doc, body
