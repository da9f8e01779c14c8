"""Hardware targets as YAML data, and the candidate series derived from them."""

from __future__ import annotations

from fractions import Fraction

import pytest

from tasder.search import candidate_series, list_targets, load_target
from tasder.sparsity import expand_ranges, parse_series
from tasder.targets import target_series


def names(target) -> list[str]:
    return [str(s) for s in candidate_series(target)]


def test_builtin_targets_and_their_candidates():
    assert {"ttc-vegeta-m8", "ttc-vegeta-m4", "ttc-stc-m4", "ttc-stc-m8", "highlight"} <= set(list_targets())
    assert names("ttc-vegeta-m8") == ["1:8", "2:8", "2:8+1:8", "4:8", "4:8+1:8", "4:8+2:8", "dense"]
    assert names("ttc-vegeta-m4") == ["1:4", "2:4", "2:4+1:4", "dense"]
    assert names("ttc-stc-m4") == ["2:4", "dense"]
    assert names("ttc-stc-m8") == ["4:8", "dense"]
    hl = candidate_series("highlight")
    densities = [s.effective_density for s in hl]
    assert densities == sorted(densities) and len(set(densities)) == len(densities)  # one per density
    assert str(hl[0]) == "C1(2:8)->C0(2:4)" and str(hl[-1]) == "dense"


def test_expand_ranges():
    assert expand_ranges("2:{4..5}") == ["2:4", "2:5"]
    assert len(expand_ranges("C1(2:{2..8})->C0(2:{2..4})")) == 21


def test_target_series_are_the_candidates_in_reading_order():
    """One list per target, derived from its YAML: native patterns first, then longer series."""
    series = target_series("ttc-vegeta-m8")
    assert series == ("1:8", "2:8", "4:8", "2:8+1:8", "4:8+1:8", "4:8+2:8")
    densities = [Fraction(parse_series(s).effective_density).limit_denominator(8) for s in series]
    assert sorted(densities) == [Fraction(k, 8) for k in (1, 2, 3, 4, 5, 6)]  # the six eighths
    assert target_series("ttc-vegeta-m4") == ("1:4", "2:4", "2:4+1:4")
    assert set(target_series("highlight")) == set(names("highlight")) - {"dense"}


def test_user_target_file(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text('name: mine\npatterns: ["2:8", "1:8"]\nmax_order: 3\n')
    t = load_target(p)
    assert t.name == "mine" and t.max_order == 3
    # 3-term series fill 4:8 and 5:8 (2:8 + 2:8 would tie with... nothing native: kept as 2:8+2:8)
    assert "2:8+2:8" in names(t) and "2:8+2:8+1:8" in names(t)
    assert load_target(str(p)).patterns == t.patterns


@pytest.mark.parametrize("text, match", [
    ("patterns: [2:8", r"bad\.yaml:1: invalid YAML"),
    ("- 1:8\n", "YAML mapping"),
    ('name: x\npatterns: ["1:8"]\ncolour: red\n', "unknown key 'colour'"),
    ('patterns: ["1:8"]\n', "`name`"),
    ("name: x\npatterns: [2:8]\n", "quote them"),
    ('name: x\npatterns: ["9:8"]\n', "bad pattern"),
    ('name: x\npatterns: ["1:8"]\nmax_order: 0\n', "max_order"),
    ('name: x\npatterns: ["dense"]\n', "not structured"),
    ('name: x\npatterns: ["8:8"]\n', "nothing to skip"),
])
def test_bad_target_files_name_the_file_and_the_problem(tmp_path, text, match):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        load_target(p)
    assert str(p) in str(info.value)


def test_unknown_target_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="ttc-vegeta-m8"):
        load_target("vegeta")
    with pytest.raises(FileNotFoundError):
        load_target(tmp_path / "missing.yaml")
