"""Number formatting shared by the tables and the plots, so both show the same digits and units.

Every helper returns "—" for a missing or non-finite value rather than "nan", which readers
mistake for a bug in the tool rather than an absent measurement.
"""

from __future__ import annotations

import re

from tasder.report._schema import finite

__all__ = ["DASH", "count", "num", "pct", "sci", "short_name", "slug", "times"]

DASH = "—"


def num(value: object, digits: int = 4) -> str:
    """A plain number with ``digits`` decimals (metrics such as accuracy, in [0, 1])."""
    x = finite(value)
    return DASH if x is None else f"{x:.{digits}f}"


def pct(value: object, digits: int = 1) -> str:
    """A fraction shown as a percentage: 0.865 → "86.5 %"."""
    x = finite(value)
    return DASH if x is None else f"{100 * x:.{digits}f} %"


def times(value: object, unit: str = "× TC", digits: int = 3) -> str:
    """A normalised value with what it is normalised to: 0.41 → "0.410 × TC"."""
    x = finite(value)
    return DASH if x is None else f"{x:.{digits}f} {unit}".rstrip()


def sci(value: object, digits: int = 3) -> str:
    """Scientific notation for tiny or huge physical values: 1.2e-9 → "1.20e-9"."""
    x = finite(value)
    if x is None:
        return DASH
    mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
    return f"{mantissa}e{int(exponent)}"


_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def count(value: object, unit: str = "") -> str:
    """A large count with an SI prefix: 118_000_000 → "118.0 M"; small counts stay exact."""
    x = finite(value)
    if x is None:
        return DASH
    for scale, prefix in _PREFIXES:
        if abs(x) >= scale:
            return f"{x / scale:.1f} {prefix}{unit}".rstrip()
    text = f"{x:.0f}" if float(x).is_integer() else f"{x:.1f}"
    return f"{text} {unit}".rstrip()


def short_name(name: str, limit: int = 22) -> str:
    """Shorten a layer name for an axis, keeping its end (``…layer.5.attention.output.dense``).

    The tail is kept because module paths share long prefixes and differ at the end.
    """
    if len(name) <= limit:
        return name
    tail = name[-(limit - 1) :]
    dot = tail.find(".")
    if 0 <= dot < len(tail) - 4:  # start at a component boundary, not mid-word
        tail = tail[dot + 1 :]
    return "…" + tail


def slug(text: str) -> str:
    """A file-name-safe version of ``text``: model names become figure file names."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "model"
