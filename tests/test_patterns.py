"""Pattern types and the notation parser: canonical round trip, densities, errors."""

from __future__ import annotations

import math

import pytest
from hypothesis import given

from strategies import hss_patterns, patterns, series
from tasder.sparsity import (
    GH,
    HSS,
    NOTATION_EXAMPLES,
    Dense,
    Rank,
    Series,
    Unstructured,
    parse_pattern,
    parse_series,
)

# ------------------------------------------------------------------------------ round trip


@given(series(unstructured=True, dense=True))
def test_series_canonical_string_round_trips(s: Series) -> None:
    assert str(parse_series(str(s))) == str(s)


@given(series(unstructured=True, dense=True))
def test_parsed_series_equals_the_series_it_was_printed_from(s: Series) -> None:
    assert parse_series(str(s)) == s


@given(patterns())
def test_pattern_canonical_string_round_trips_and_compares_equal(p) -> None:  # type: ignore[no-untyped-def]
    parsed = parse_pattern(str(p))
    assert str(parsed) == str(p)
    assert parsed == p


@given(hss_patterns(named=True))
def test_hss_rank_names_survive_the_round_trip(p: HSS) -> None:
    assert [r.name for r in parse_pattern(str(p)).ranks] == [r.name for r in p.ranks]


def test_one_rank_hss_object_is_rejected_in_favour_of_gh() -> None:
    with pytest.raises(ValueError, match="a single rank is a G:H"):
        HSS((Rank(2, 4, "C0"),))


@pytest.mark.parametrize("text", [text for text, _ in NOTATION_EXAMPLES])
def test_every_documented_example_parses_and_is_canonical(text: str) -> None:
    assert str(parse_series(text)) == text


# ------------------------------------------------------------------------------ whitespace, case


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        (" 2:4 ", "2:4"),
        ("2 : 4", "2:4"),
        ("\t2:8 +\n1:8 ", "2:8+1:8"),
        ("K1 (3:4) -> K0 ( 2 : 4 )", "K1(3:4)->K0(2:4)"),
        ("3:4 -> 2:4", "3:4->2:4"),
        ("  DENSE ", "dense"),
        ("Unstructured( 0.2 )", "unstructured(0.2)"),
        ("2:4 + 2:8 + 2:16", "2:4+2:8+2:16"),
    ],
)
def test_whitespace_and_keyword_case_are_ignored(text: str, canonical: str) -> None:
    assert str(parse_series(text)) == canonical
    assert parse_series(text) == parse_series(canonical)


def test_parse_passes_pattern_and_series_objects_through() -> None:
    s = parse_series("2:8+1:8")
    assert parse_series(s) is s
    assert parse_series(GH(2, 4)) == Series((GH(2, 4),))
    assert parse_pattern(GH(2, 4)) == GH(2, 4)


# ------------------------------------------------------------------------------ values


def test_2_4_has_density_one_half() -> None:
    p = parse_pattern("2:4")
    assert p == GH(2, 4)
    assert p.density == 0.5
    assert p.sparsity == 0.5


def test_hss_density_is_the_product_of_rank_fractions() -> None:
    p = parse_pattern("K1(3:4)->K0(2:4)")
    assert isinstance(p, HSS)
    assert p.density == 0.375
    assert p.sparsity == 0.625
    assert p.block_size == 16
    assert p.kept_per_block == 6
    assert [(r.g, r.h, r.name) for r in p.ranks] == [(3, 4, "K1"), (2, 4, "K0")]
    assert [(r.g, r.h) for r in p.ranks_lowest_first] == [(2, 4), (3, 4)]


def test_series_2_8_plus_1_8_density_and_approximated_sparsity() -> None:
    s = parse_series("2:8+1:8")
    assert s.order == 2
    assert s.effective_density == 0.375
    assert s.density == 0.375
    assert s.approximated_sparsity == 0.625


def test_unstructured_density_and_sparsity() -> None:
    p = parse_pattern("unstructured(0.2)")
    assert p == Unstructured(0.2)
    assert p.density == 0.2
    assert p.sparsity == pytest.approx(0.8)
    assert not p.is_structured


def test_dense_is_the_identity_configuration() -> None:
    s = parse_series("dense")
    assert s.is_dense
    assert s.terms == (Dense(),)
    assert s.effective_density == 1.0
    assert s.approximated_sparsity == 0.0


@given(series(max_terms=3))
def test_series_effective_density_is_the_sum_of_term_densities(s: Series) -> None:
    total = sum(t.density for t in s.terms)
    assert s.effective_density == pytest.approx(total)
    assert s.approximated_sparsity == pytest.approx(1.0 - total)
    assert s.effective_density <= 1.0


@pytest.mark.parametrize("text", ["2:4+2:4", "1:3+2:3", "3:4+1:8+1:8", "unstructured(0.7)+unstructured(0.3)",
                                  "K1(1:2)->K0(2:4)+3:4"])
def test_a_series_of_density_exactly_one_is_allowed(text: str) -> None:
    assert parse_series(text).effective_density == pytest.approx(1.0)


@pytest.mark.parametrize("text", ["2:4+2:4+2:4", "3:4+3:4", "3:4+1:8+1:8+1:64", "unstructured(0.7)+unstructured(0.4)"])
def test_a_series_whose_terms_cannot_add_anything_is_refused(text: str) -> None:
    """Effective density above 1: the later terms could only hold zeros, yet cost MACs (issue 14)."""
    with pytest.raises(ValueError, match=r"effective density .* > 1.*drop terms or use sparser ones"):
        parse_series(text)
    with pytest.raises(ValueError, match=r"> 1"):
        Series(tuple(parse_pattern(t) for t in text.split("+")))


def test_one_rank_hss_parses_to_the_gh_pattern() -> None:
    p = parse_pattern("C0(2:4)")
    assert p == GH(2, 4)
    assert str(p) == "2:4"
    assert parse_pattern("(2:4)") == GH(2, 4)


def test_rank_index_bits() -> None:
    assert [Rank(1, h).index_bits for h in (1, 2, 3, 4, 8, 9, 16)] == [1, 1, 2, 2, 3, 4, 4]
    assert all(Rank(1, h).index_bits == max(1, math.ceil(math.log2(h))) for h in range(1, 70))


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("5:4", r"G=5, H=4"),  # G > H
        ("0:4", r"G=0, H=4"),  # G <= 0
        ("2:0", r"G=2, H=0"),  # H <= 0
        ("0:0", r"G=0, H=0"),
        ("-1:4", r"'-1:4'"),
        ("K1(5:4)->K0(2:4)", r"G=5, H=4"),
        ("K1(3:4)->K0(0:4)", r"G=0, H=4"),
        ("foo", r"unknown sparsity notation 'foo'"),
        ("2:4:8", r"unknown sparsity notation '2:4:8'"),
        ("2/4", r"unknown sparsity notation '2/4'"),
        ("K1(3:4)->", r"cannot read rank ''"),
        ("K1[3:4]->K0(2:4)", r"cannot read rank 'K1\[3:4\]'"),
        ("", r"empty series ''"),
        ("   ", r"empty series"),
        ("2:4+", r"empty pattern in '2:4\+'"),
        ("+2:4", r"empty pattern in '\+2:4'"),
        ("2:4++1:8", r"empty pattern"),
        ("dense+2:4", r"'dense\+2:4'"),
        ("2:4+dense", r"'2:4\+dense'"),
        ("unstructured(0)", r"got 0\.0"),
        ("unstructured(1.5)", r"got 1\.5"),
        ("unstructured(x)", r"got 'x'"),
        ("unstructured(-0.1)", r"got -0\.1"),
        ("unstructured(nan)", r"got nan"),
        ("unstructured()", r"got ''"),
    ],
)
def test_bad_notation_raises_value_error_naming_the_bad_value(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_series(text)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: GH(5, 4), r"G=5, H=4"),
        (lambda: GH(0, 4), r"G=0, H=4"),
        (lambda: GH(-1, -1), r"G=-1, H=-1"),
        (lambda: GH(2.0, 4), r"G=2\.0"),
        (lambda: GH(True, 4), r"G=True"),
        (lambda: Rank(3, 2, "K1"), r"K1\(3:2\)"),
        (lambda: HSS(()), r"an HSS needs at least two ranks"),
        (lambda: HSS(("2:4", "1:2")), r"HSS needs Rank objects"),
        (lambda: Unstructured(0.0), r"got 0\.0"),
        (lambda: Unstructured(1.5), r"got 1\.5"),
        (lambda: Unstructured("x"), r"got 'x'"),
        (lambda: Series(()), r"empty series"),
        (lambda: Series((Dense(), GH(2, 4))), r"'dense\+2:4'"),
        (lambda: Series(("2:4",)), r"got '2:4'"),
    ],
)
def test_bad_constructor_arguments_raise_value_error_naming_the_bad_value(make, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        make()


def test_parse_pattern_rejects_a_series() -> None:
    with pytest.raises(ValueError, match=r"series of 2 terms: '2:8\+1:8'"):
        parse_pattern("2:8+1:8")


def test_parse_series_rejects_non_strings() -> None:
    with pytest.raises(ValueError, match=r"got int"):
        parse_series(24)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ import cost

_IMPORT_PROBE = """
import sys
import tasder.sparsity
from tasder.sparsity import expand_ranges, implies, parse_series
assert parse_series("2:8+1:8").effective_density == 0.375 and implies("2:4", "4:8") and expand_ranges("2:{4..5}")
print(",".join(m for m in ("torch", "numba", "numpy") if m in sys.modules) or "none")
"""


def test_importing_the_pattern_parser_loads_neither_torch_nor_numba() -> None:
    """tasder.hw and `tasder --help` need patterns and the notation only (issue 13)."""
    import subprocess
    import sys
    from pathlib import Path

    src = str(Path(__file__).resolve().parents[1] / "src")
    run = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "PYTHONPATH": src}, check=True)
    assert run.stdout.strip() == "none", run.stdout


def test_the_lazy_names_are_listed_and_resolve() -> None:
    """compute_mask & co. load torch on first use (PEP 562) and still appear in dir() and __all__."""
    import tasder.sparsity as sp
    from tasder.sparsity import compute_mask, masks

    assert compute_mask is masks.compute_mask

    for name in sp.__all__:
        assert name in dir(sp)
        assert getattr(sp, name) is not None
    with pytest.raises(AttributeError, match=r"has no attribute 'nope'"):
        sp.nope  # noqa: B018
