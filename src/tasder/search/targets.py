"""Hardware targets as data: which structured patterns a target runs natively, and how many terms.

A target is a small YAML file (the built-in ones ship in ``tasder/search/targets/``; a user can
pass the path of their own)::

    name: ttc-vegeta-m8
    description: "VEGETA-like TTC, M=8"
    patterns: ["1:8", "2:8", "4:8"]     # per-term patterns the hardware runs natively
    max_order: 2                        # at most this many terms in a series

Why data and not code: new accelerators are described by their pattern set, and researchers
should be able to add one without touching the search. A pattern may hold ``{a..b}`` integer
ranges, expanded to every concrete pattern (``C1(2:{2..8})->C0(2:{2..4})`` is HighLight's HSS
family); patterns of density 1 (no sparsity) are dropped.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tasder._yaml import load_yaml_text, read_yaml_text
from tasder.sparsity import expand_ranges, parse_pattern
from tasder.sparsity.patterns import Pattern, StructuredPattern

__all__ = ["MAX_CANDIDATE_SERIES", "MAX_TARGET_PATTERNS", "Target", "candidate_count", "expand_pattern",
           "list_targets", "load_target"]

_KEYS = ("name", "description", "patterns", "max_order")
#: The ``{a..b}`` ranges of a pattern (as :func:`tasder.sparsity.expand_ranges` reads them), counted
#: here before anything is expanded.
_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")

#: Most concrete patterns a target may list (after its ranges are expanded). HighLight's whole HSS
#: family is 21; a thousand is far beyond any hardware's native set, and each one is parsed.
MAX_TARGET_PATTERNS = 1024
#: Most series (combinations of at most ``max_order`` patterns) a target may make. Every one is
#: ranked, and the distinct ones built, before the search starts (a few seconds at this limit on one
#: core; the built-in targets make at most 21); the count grows as patterns^max_order
#: (``1:{2..200}`` with ``max_order: 4`` makes 68 million).
MAX_CANDIDATE_SERIES = 100_000


def candidate_count(n_patterns: int, max_order: int) -> int:
    """How many series of 1 to ``max_order`` terms (repetition allowed, order ignored) ``n_patterns``
    patterns make: Σₖ C(n + k − 1, k)."""
    return sum(math.comb(n_patterns + k - 1, k) for k in range(1, max_order + 1))


def check_candidate_count(n_patterns: int, max_order: int, source: str) -> None:
    """Raise ValueError when a target's patterns and ``max_order`` make more than
    :data:`MAX_CANDIDATE_SERIES` series (counted, not enumerated)."""
    count = candidate_count(n_patterns, max_order)
    if count > MAX_CANDIDATE_SERIES:
        raise ValueError(f"{source}: {n_patterns:,} patterns with max_order {max_order} make {count:,} candidate "
                         f"series, above the limit of {MAX_CANDIDATE_SERIES:,} (each is ranked before the search "
                         f"starts, and the search tries them per layer); list fewer patterns or lower max_order")


def _expansion_size(text: str) -> int:
    """How many concrete patterns ``text``'s ``{a..b}`` ranges expand to, without expanding them."""
    return math.prod(max(0, int(b) - int(a) + 1) for a, b in _RANGE.findall(text))


@dataclass(frozen=True)
class Target:
    """A hardware target: its native per-term ``patterns`` (canonical strings) and ``max_order``."""

    name: str
    patterns: tuple[str, ...]
    max_order: int
    description: str = ""
    source: str = "<built-in>"

    def parsed(self) -> list[Pattern]:
        """The native patterns, parsed."""
        return [parse_pattern(p) for p in self.patterns]


def expand_pattern(text: str) -> list[str]:
    """Every concrete pattern of ``text`` with its ``{a..b}`` ranges expanded (in order)."""
    return expand_ranges(text)


def _builtin_dir() -> Path:
    return Path(str(resources.files("tasder.search") / "targets"))


def list_targets() -> dict[str, str]:
    """Built-in target names → one-line descriptions."""
    out: dict[str, str] = {}
    for path in sorted(_builtin_dir().glob("*.yaml")):
        t = _parse(read_yaml_text(path), str(path))
        out[t.name] = t.description
    return out


def _parse(text: str, source: str) -> Target:
    data = load_yaml_text(text, source)  # the one safe loader: no aliases, bounded nesting, file:line
    if not isinstance(data, dict):
        raise ValueError(f"{source}: a target file must be a YAML mapping with keys {', '.join(_KEYS)}")
    unknown = [k for k in data if k not in _KEYS]
    if unknown:
        raise ValueError(f"{source}: unknown key {unknown[0]!r}; allowed keys: {', '.join(_KEYS)}")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{source}: `name` must be a non-empty string; got {name!r}")
    raw = data.get("patterns")
    if not isinstance(raw, list) or not raw or not all(isinstance(p, str) for p in raw):
        raise ValueError(f"{source}: `patterns` must be a non-empty list of pattern strings such as "
                         f"['1:8', '2:8'] (quote them: a bare 2:8 is a base-60 number to YAML); got {raw!r}")
    order = data.get("max_order", 1)
    if isinstance(order, bool) or not isinstance(order, int) or not 1 <= order <= 4:
        raise ValueError(f"{source}: `max_order` must be an integer in [1, 4]; got {order!r}")
    sizes = [_expansion_size(entry) for entry in raw]
    if sum(sizes) > MAX_TARGET_PATTERNS:
        big = max(range(len(raw)), key=sizes.__getitem__)
        raise ValueError(f"{source}: `patterns` expand to {sum(sizes):,} patterns ({raw[big]!r} alone to "
                         f"{sizes[big]:,}), above the limit of {MAX_TARGET_PATTERNS:,}: hardware runs a handful "
                         f"of patterns natively (HighLight's whole family is 21)")
    patterns: dict[str, None] = {}
    for entry in raw:
        for concrete in expand_pattern(entry):
            try:
                p = parse_pattern(concrete)
            except ValueError as exc:
                raise ValueError(f"{source}: bad pattern {concrete!r}: {exc}") from None
            if not isinstance(p, StructuredPattern):
                raise ValueError(f"{source}: pattern {concrete!r} is not structured (G:H or HSS)")
            if p.density < 1.0:
                patterns.setdefault(str(p))
    if not patterns:
        raise ValueError(f"{source}: every pattern has density 1: the target has nothing to skip")
    check_candidate_count(len(patterns), order, source)
    description = data.get("description", "")
    return Target(name=name.strip(), patterns=tuple(patterns), max_order=order,
                  description=str(description), source=source)


def load_target(target: str | os.PathLike[str] | Target) -> Target:
    """A :class:`Target` from a built-in name (``"ttc-vegeta-m8"``), a YAML file path, or a Target.

    Raises:
        ValueError: unknown name (the known ones are listed) or a bad file (the message names it).
        FileNotFoundError: a path that does not exist.
    """
    if isinstance(target, Target):
        return target
    if not isinstance(target, (str, os.PathLike)):
        raise TypeError(f"`target` must be a target name, a YAML path or a Target; got {type(target).__name__}")
    text = os.fspath(target)
    builtin = _builtin_dir() / f"{text}.yaml"
    if "/" not in text and not text.endswith((".yaml", ".yml")) and builtin.is_file():
        return _parse(read_yaml_text(builtin), str(builtin))
    path = Path(text)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"no such target file: {path}")
        return _parse(read_yaml_text(path), str(path))
    raise ValueError(f"unknown target {text!r}; built-in targets: {', '.join(list_targets())} "
                     f"(or pass the path of a target YAML file)")
