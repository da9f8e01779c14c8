"""Plain-text tables for the ``__str__`` of result objects (no rich, no terminal: ``print(result)``).

The command line draws its own tables with rich; these are for the Python API, where a result
printed in a notebook or a script should read as a table, not as a dataclass repr.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["count_text", "text_table"]


def count_text(n: float) -> str:
    """A MAC count with an SI prefix and three significant digits: ``460412`` → ``"460k"``."""
    value = float(n)
    if abs(value) < 1000:
        return f"{value:.0f}" if value == int(value) else f"{value:.3g}"
    for unit in ("k", "M", "G", "T", "P"):
        value /= 1000
        if abs(value) < 999.5 or unit == "P":
            digits = 2 if abs(value) < 9.995 else 1 if abs(value) < 99.95 else 0
            return f"{value:.{digits}f}{unit}"
    raise AssertionError("unreachable")


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool] | None = None) -> str:
    """``headers`` and ``rows`` as aligned columns under a rule; ``right[i]`` right-aligns column i.

    >>> print(text_table(["layer", "MACs"], [["conv1", "9.2k"], ["fc", "640"]], [False, True]))
    layer  MACs
    ─────  ────
    conv1  9.2k
    fc      640
    """
    right = list(right) if right is not None else [False] * len(headers)
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        out = [str(c).rjust(w) if r else str(c).ljust(w) for c, w, r in zip(cells, widths, right, strict=True)]
        return "  ".join(out).rstrip()

    rule = "  ".join("─" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])
