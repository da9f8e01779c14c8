"""Hardware targets as data: which structured patterns a target runs natively, how many terms, and
the candidate series that follow from them.

A target is a small YAML file (the built-in ones ship in this folder, ``tasder/targets/``; a user
can pass the path of their own)::

    name: ttc-vegeta-m8
    description: "VEGETA-like TTC, M=8"
    patterns: ["1:8", "2:8", "4:8"]     # per-term patterns the hardware runs natively
    max_order: 2                        # at most this many terms in a series

Why data and not code: new accelerators are described by their pattern set, and researchers
should be able to add one without touching the search. A pattern may hold ``{a..b}`` integer
ranges, expanded to every concrete pattern (``C1(2:{2..8})->C0(2:{2..4})`` is HighLight's HSS
family); patterns of density 1 (no sparsity) are dropped.

Why a package of its own, below :mod:`tasder.nn` and :mod:`tasder.search`: a target's series are
one fact every layer needs (the search's candidates, the profile's default series, the command
line's defaults and help), and it depends on nothing but :mod:`tasder.sparsity`'s notation, so
every layer reads it from here instead of writing the list again.

Candidate series: every series of at most ``max_order`` terms from a target's patterns. Series
with the same effective density are duplicates as far as the hardware is concerned (same MACs),
so only one is kept: the one with the fewest terms (one pass less, e.g. ``4:8`` rather than
``2:8+2:8``) and, among those, the one whose first term is densest (the greedy series keeps the
largest magnitudes first, e.g. ``2:8+1:8`` for 3:8). Series of density ≥ 1 are dropped
(``dense`` is the identity and is always a candidate).

>>> from tasder.targets import candidate_series, target_series
>>> [str(s) for s in candidate_series("ttc-vegeta-m8")]
['1:8', '2:8', '2:8+1:8', '4:8', '4:8+1:8', '4:8+2:8', 'dense']
>>> target_series("ttc-vegeta-m8")
('1:8', '2:8', '4:8', '2:8+1:8', '4:8+1:8', '4:8+2:8')
"""

from __future__ import annotations

import itertools
import math
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tasder.sparsity.patterns import Pattern, Series

__all__ = ["DEFAULT_TARGET", "MAX_CANDIDATE_SERIES", "MAX_TARGET_PATTERNS", "Target", "candidate_count",
           "candidate_series", "check_candidate_count", "list_targets", "load_target", "target_series"]

# YAML and the notation parser are imported by the functions that read a target: the command line
# imports this module for DEFAULT_TARGET (its help texts) and must start fast.

#: The target tasder's defaults refer to (the search, the profile's series, ``tasder sweep``): the
#: TASD paper's TTC-VEGETA-M8 (native 1:8, 2:8, 4:8; two terms).
DEFAULT_TARGET = "ttc-vegeta-m8"

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
        from tasder.sparsity.notation import parse_pattern

        return [parse_pattern(p) for p in self.patterns]


def _builtin_dir() -> Path:
    return Path(str(resources.files("tasder.targets")))


def _builtin_by_name(name: str) -> Path | None:
    """The built-in file of target ``name``: ``<name>.yaml``, else the file whose ``name`` key is
    ``name`` (names a file name cannot carry everywhere, such as the ':' of ``nvidia-2:4``)."""
    direct = _builtin_dir() / f"{name}.yaml"
    if direct.is_file():
        return direct
    from tasder._yaml import load_yaml_text, read_yaml_text

    for path in sorted(_builtin_dir().glob("*.yaml")):
        data = load_yaml_text(read_yaml_text(path), str(path))
        if isinstance(data, dict) and data.get("name") == name:
            return path
    return None


def list_targets() -> dict[str, str]:
    """Built-in target names → one-line descriptions."""
    from tasder._yaml import read_yaml_text

    out: dict[str, str] = {}
    for path in sorted(_builtin_dir().glob("*.yaml")):
        t = _parse(read_yaml_text(path), str(path))
        out[t.name] = t.description
    return out


def _parse(text: str, source: str) -> Target:
    from tasder._yaml import load_yaml_text
    from tasder.sparsity.notation import expand_ranges, parse_pattern
    from tasder.sparsity.patterns import StructuredPattern

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
        for concrete in expand_ranges(entry):
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
    from tasder._yaml import read_yaml_text

    builtin = _builtin_by_name(text) if "/" not in text and not text.endswith((".yaml", ".yml")) else None
    if builtin is not None:
        return _parse(read_yaml_text(builtin), str(builtin))
    path = Path(text)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"no such target file: {path}")
        return _parse(read_yaml_text(path), str(path))
    raise ValueError(f"unknown target {text!r}; built-in targets: {', '.join(list_targets())} "
                     f"(or pass the path of a target YAML file)")


def candidate_series(target: Target | str) -> list[Series]:
    """The target's candidate series, sorted by effective density (lowest first), then ``dense``.

    Raises ValueError when the target makes more than :data:`MAX_CANDIDATE_SERIES` series (counted
    before any is built).
    """
    from tasder.sparsity.patterns import Series

    t = load_target(target)
    patterns = sorted(t.parsed(), key=lambda p: (-p.density, str(p)))
    check_candidate_count(len(patterns), t.max_order, t.source)
    # A series' effective density is the sum of its terms' densities: rank the combinations on
    # that, and build a Series only for the winners (one per density). The terms are parsed
    # patterns already, so no text is parsed again.
    density_of = [p.density for p in patterns]  # computed once: a pattern's density is exact arithmetic
    best: dict[float, tuple[tuple[int, float], tuple[int, ...]]] = {}
    for order in range(1, t.max_order + 1):
        # Terms in non-increasing density: the greedy series takes the densest term first.
        for combo in itertools.combinations_with_replacement(range(len(patterns)), order):
            density = round(sum(density_of[i] for i in combo), 9)
            if density >= 1.0:
                continue
            rank = (order, -density_of[combo[0]])
            if density not in best or rank < best[density][0]:
                best[density] = (rank, combo)
    from tasder.sparsity.notation import parse_series

    return [Series(tuple(patterns[i] for i in best[d][1])) for d in sorted(best)] + [parse_series("dense")]


def target_series(target: Target | str = DEFAULT_TARGET) -> tuple[str, ...]:
    """Every non-dense candidate series of ``target`` as canonical strings: the native (one-term)
    patterns first, then the series of two terms, and so on, each group by effective density —
    the order a person reads a target's capabilities in (``1:8, 2:8, 4:8, 2:8+1:8, ...``)."""
    series = [s for s in candidate_series(target) if not s.is_dense]
    return tuple(str(s) for s in sorted(series, key=lambda s: (len(s.terms), s.effective_density)))
