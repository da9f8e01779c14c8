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
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tasder.sparsity.patterns import Pattern, Series

__all__ = ["DEFAULT_TARGET", "Target", "candidate_series", "list_targets", "load_target", "target_series"]

# YAML and the notation parser are imported by the functions that read a target: the command line
# imports this module for DEFAULT_TARGET (its help texts) and must start fast.

#: The target tasder's defaults refer to (the search, the profile's series, ``tasder sweep``): the
#: TASD paper's TTC-VEGETA-M8 (native 1:8, 2:8, 4:8; two terms).
DEFAULT_TARGET = "ttc-vegeta-m8"

_KEYS = ("name", "description", "patterns", "max_order")


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
    import yaml

    for path in sorted(_builtin_dir().glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and data.get("name") == name:
            return path
    return None


def list_targets() -> dict[str, str]:
    """Built-in target names → one-line descriptions."""
    out: dict[str, str] = {}
    for path in sorted(_builtin_dir().glob("*.yaml")):
        t = _parse(path.read_text(encoding="utf-8"), str(path))
        out[t.name] = t.description
    return out


def _parse(text: str, source: str) -> Target:
    import yaml

    from tasder.sparsity.notation import expand_ranges, parse_pattern
    from tasder.sparsity.patterns import StructuredPattern

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{source}: malformed YAML: {' '.join(str(exc).split())}") from None
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
    builtin = _builtin_by_name(text) if "/" not in text and not text.endswith((".yaml", ".yml")) else None
    if builtin is not None:
        return _parse(builtin.read_text(encoding="utf-8"), str(builtin))
    path = Path(text)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"no such target file: {path}")
        return _parse(path.read_text(encoding="utf-8"), str(path))
    raise ValueError(f"unknown target {text!r}; built-in targets: {', '.join(list_targets())} "
                     f"(or pass the path of a target YAML file)")


def candidate_series(target: Target | str) -> list[Series]:
    """The target's candidate series, sorted by effective density (lowest first), then ``dense``."""
    from tasder.sparsity.notation import parse_series

    t = load_target(target)
    patterns = sorted(t.parsed(), key=lambda p: (-p.density, str(p)))
    best: dict[float, tuple[tuple[int, float], Series]] = {}
    for order in range(1, t.max_order + 1):
        # Terms in non-increasing density: the greedy series takes the densest term first.
        for combo in itertools.combinations_with_replacement(patterns, order):
            series = parse_series("+".join(str(p) for p in combo))
            density = round(series.effective_density, 9)
            if density >= 1.0:
                continue
            rank = (order, -combo[0].density)
            if density not in best or rank < best[density][0]:
                best[density] = (rank, series)
    return [best[d][1] for d in sorted(best)] + [parse_series("dense")]


def target_series(target: Target | str = DEFAULT_TARGET) -> tuple[str, ...]:
    """Every non-dense candidate series of ``target`` as canonical strings: the native (one-term)
    patterns first, then the series of two terms, and so on, each group by effective density —
    the order a person reads a target's capabilities in (``1:8, 2:8, 4:8, 2:8+1:8, ...``)."""
    series = [s for s in candidate_series(target) if not s.is_dense]
    return tuple(str(s) for s in sorted(series, key=lambda s: (len(s.terms), s.effective_density)))
