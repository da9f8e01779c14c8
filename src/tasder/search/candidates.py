"""Candidate series per layer: every series of at most ``max_order`` terms from a target's patterns.

Series with the same effective density are duplicates as far as the hardware is concerned (same
MACs), so only one is kept: the one with the fewest terms (one pass less, e.g. ``4:8`` rather
than ``2:8+2:8``) and, among those, the one whose first term is densest (the greedy series keeps
the largest magnitudes first, e.g. ``2:8+1:8`` for 3:8). Series of density ≥ 1 are dropped
(``dense`` is the identity and is always a candidate).
"""

from __future__ import annotations

import itertools

from tasder.search.targets import Target, check_candidate_count, load_target
from tasder.sparsity import Series, parse_series

__all__ = ["DENSE", "candidate_series"]

DENSE = parse_series("dense")


def candidate_series(target: Target | str) -> list[Series]:
    """The target's candidate series, sorted by effective density (lowest first), then ``dense``.

    Raises ValueError when the target makes more than
    :data:`~tasder.search.targets.MAX_CANDIDATE_SERIES` series (counted before any is built).
    """
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
    return [Series(tuple(patterns[i] for i in best[d][1])) for d in sorted(best)] + [DENSE]
