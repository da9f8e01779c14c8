"""``implies(p, q)``: every tensor obeying pattern p also obeys q (what a structured engine relies on).

Checked two ways: exhaustively against every 0/1 row short enough to enumerate (so both answers,
True and False, are exact), and on random tensors pruned with ``compute_mask`` for larger patterns.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies import gh_patterns, hss_patterns, structured_patterns
from tasder.sparsity import GH, HSS, Rank, compute_mask, implies, parse_pattern, satisfies

pytestmark = pytest.mark.usefixtures("numba_kernels")  # kernel compilation is session set-up


def _rows_obeying(ranks_lowest_first: list[tuple[int, int]], rows: np.ndarray) -> np.ndarray:
    """Which 0/1 rows (n, L) obey the rule (L padded with zeros to a whole block), vectorized."""
    block = math.prod(h for _, h in ranks_lowest_first)
    occ = np.pad(rows, ((0, 0), (0, -rows.shape[1] % block))).astype(bool)
    ok = np.ones(len(rows), dtype=bool)
    for g, h in ranks_lowest_first:
        grouped = occ.reshape(len(rows), -1, h)
        ok &= (grouped.sum(axis=-1) <= g).all(axis=-1)
        occ = grouped.any(axis=-1)
    return ok


def _ranks(p) -> list[tuple[int, int]]:
    return [(r.g, r.h) for r in parse_pattern(p).ranks_lowest_first]


SMALL = ["1:2", "2:2", "1:3", "2:3", "1:4", "2:4", "3:4", "1:6", "2:6", "3:6", "1:8", "2:8", "3:8", "4:8",
         "1:12", "2:12", "4:12", "1:2->1:2", "2:2->1:4", "1:2->2:4", "1:2->1:2->2:2", "2:4->1:2"]


def test_implies_is_exact_against_every_short_row():
    """For every pair whose blocks repeat within 12 elements, compare with all 2^L rows (L = lcm of blocks)."""
    checked = 0
    for a, b in itertools.product(SMALL, repeat=2):
        ra, rb = _ranks(a), _ranks(b)
        length = math.lcm(math.prod(h for _, h in ra), math.prod(h for _, h in rb))
        if length > 12:
            continue
        rows = np.array(list(itertools.product((0, 1), repeat=length)), dtype=np.int8)
        obey_a = _rows_obeying(ra, rows)
        truth = bool(_rows_obeying(rb, rows[obey_a]).all())
        assert implies(a, b) == truth, (a, b)
        checked += 1
    assert checked > 200


@pytest.mark.parametrize(("p", "q", "expected"), [
    ("2:4", "4:8", True), ("4:8", "2:4", False), ("1:8", "2:8", True), ("1:8", "4:8", True), ("2:8", "1:8", False),
    ("1:4", "2:4", True), ("2:8", "2:4", True), ("2:4", "2:8", False), ("1:4", "2:8", True),
    ("K1(2:4)->K0(2:4)", "4:16", True), ("K1(2:4)->K0(2:4)", "2:4", True), ("K1(2:4)->K0(2:4)", "4:8", True),
    ("K1(2:4)->K0(2:4)", "2:8", False), ("C1(2:8)->C0(2:4)", "4:32", True), ("4:16", "K1(2:4)->K0(2:4)", False),
    ("2:4", "K1(2:2)->K0(2:4)", True), ("dense", "2:4", False), ("2:4", "dense", True),
    ("unstructured(0.1)", "2:4", False), ("unstructured(0.1)", "unstructured(0.2)", True),
    ("2:4", "unstructured(0.5)", False), ("2:4", "unstructured(1.0)", True),
])
def test_implies_examples(p, q, expected):
    assert implies(p, q) is expected


def test_implies_rejects_a_series():
    with pytest.raises(ValueError):
        implies("4:8+1:8", "4:8")


@settings(max_examples=150, deadline=None)
@given(p=structured_patterns(max_h=8), q=st.one_of(gh_patterns(max_h=16), hss_patterns(max_h=4)),
       length=st.integers(1, 80), seed=st.integers(0, 2**31 - 1))
def test_implied_patterns_hold_on_pruned_tensors(p, q, length, seed):
    """Soundness on real tensors: prune random data to p with compute_mask; if implies(p, q), it obeys q."""
    x = torch.randn(3, length, generator=torch.Generator().manual_seed(seed))
    x = x * compute_mask(x, p)
    assert satisfies(x, p)
    if implies(p, q):
        assert satisfies(x, q), (str(p), str(q))


@settings(max_examples=60, deadline=None)
@given(g=st.integers(1, 8), h=st.integers(1, 8), k=st.integers(1, 4))
def test_gh_implies_coarser_blocks_with_proportional_budget(g, h, k):
    """g:h implies (k·g):(k·h) (whole blocks nest), and a rank nested on top only adds constraints."""
    g = min(g, h)
    assert implies(GH(g, h), GH(k * g, k * h))
    assert implies(HSS((Rank(1, k), Rank(g, h))), GH(g, h))
