"""Candidate series per layer: every series of at most ``max_order`` terms from a target's patterns.

Series with the same effective density are duplicates as far as the hardware is concerned (same
MACs), so only one is kept: the one with the fewest terms (one pass less, e.g. ``4:8`` rather
than ``2:8+2:8``) and, among those, the one whose first term is densest (the greedy series keeps
the largest magnitudes first, e.g. ``2:8+1:8`` for 3:8). Series of density ≥ 1 are dropped
(``dense`` is the identity and is always a candidate).
"""

from __future__ import annotations

import itertools

from tasder.search.targets import Target, load_target
from tasder.sparsity import Series, parse_series

__all__ = ["DENSE", "candidate_series"]

DENSE = parse_series("dense")


def candidate_series(target: Target | str) -> list[Series]:
    """The target's candidate series, sorted by effective density (lowest first), then ``dense``."""
    t = load_target(target)
    patterns = sorted(t.parsed(), key=lambda p: (-p.density, str(p)))
    best: dict[float, tuple[tuple[int, float], Series]] = {}
    for order in range(1, t.max_order + 1):
        # Terms in non-increasing density: the greedy series takes the densest term first.
        for combo in itertools.combinations_with_replacement(patterns, order):
            density = round(sum(p.density for p in combo), 9)
            if density >= 1.0:  # checked first: a Series above density 1 is refused
                continue
            series = parse_series("+".join(str(p) for p in combo))
            rank = (order, -combo[0].density)
            if density not in best or rank < best[density][0]:
                best[density] = (rank, series)
    return [best[d][1] for d in sorted(best)] + [DENSE]
