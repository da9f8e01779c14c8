"""TASDConfig: the YAML format, the precedence of names and globs, and the error messages."""

from __future__ import annotations

import re

import pytest

from tasder.nn import LayerSpec, TASDConfig

VERSIONED = """\
version: 1
layers:
  fc1: {series: 2:8+1:8, mode: W}
  "enc.*": {series: 4:8, mode: A}
  "*": {series: dense}
"""


def test_versioned_yaml_parses_names_series_and_modes() -> None:
    cfg = TASDConfig.from_yaml(VERSIONED)
    assert list(cfg.layers) == ["fc1", "enc.*", "*"]
    assert cfg.layers["fc1"] == LayerSpec("2:8+1:8", "W")
    assert cfg.layers["enc.*"] == LayerSpec("4:8", "A")
    assert cfg.layers["*"].is_dense


def test_bare_mapping_is_accepted_in_python_but_a_file_needs_its_version() -> None:
    from_yaml = TASDConfig.from_yaml("version: 1\nlayers:\n  fc1: {series: 2:8+1:8, mode: A}\n")
    from_dict = TASDConfig.from_mapping({"fc1": {"series": "2:8+1:8", "mode": "A"}})
    assert from_yaml == from_dict
    assert from_dict.layers["fc1"].mode == "A"
    with pytest.raises(ValueError, match=r"^cfg\.yaml: missing `version: 1`"):
        TASDConfig.from_yaml("fc1: {series: 2:8+1:8, mode: A}\n", "cfg.yaml")


def test_plain_g_h_in_yaml_is_a_series_not_a_base60_integer() -> None:
    cfg = TASDConfig.from_yaml("version: 1\nlayers:\n  a: {series: 2:4}\n  b: 4:16\n")
    assert str(cfg.layers["a"].series) == "2:4"
    assert str(cfg.layers["b"].series) == "4:16"


def test_series_string_shorthand_means_mode_w() -> None:
    assert TASDConfig.from_mapping({"fc": "2:4"}).layers["fc"] == LayerSpec("2:4", "W")


def test_save_then_load_round_trips_and_leaves_no_temp_file(tmp_path) -> None:
    cfg = TASDConfig.from_yaml(VERSIONED)
    path = cfg.save(tmp_path / "cfg.yaml")
    assert TASDConfig.load(path) == cfg
    assert path.read_text().startswith("version: 1\n")
    assert [p.name for p in tmp_path.iterdir()] == ["cfg.yaml"]


def test_precedence_exact_name_then_longest_glob_then_first_listed() -> None:
    cfg = TASDConfig.from_mapping({
        "*": "1:8",
        "enc.*": "2:8",
        "enc.l1": "4:8",
        "enc.?2": "1:4",  # 6 characters: beats "enc.*" (5) where both match
        "*.l3": "2:4",  # 4 characters
    })
    assert str(cfg.resolve("enc.l1").series) == "4:8"  # exact wins over every glob
    assert str(cfg.resolve("enc.l2").series) == "1:4"  # longest matching glob
    assert str(cfg.resolve("enc.l3").series) == "2:8"  # "enc.*" (5) beats "*.l3" (4)
    assert str(cfg.resolve("dec.l3").series) == "2:4"
    assert str(cfg.resolve("other").series) == "1:8"
    tie = TASDConfig.from_mapping({"a.*": "1:8", "*.b": "2:8"})
    assert str(tie.resolve("a.b").series) == "1:8"  # equal length: the first listed
    assert TASDConfig.from_mapping({"x": "2:4"}).resolve("y") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fc1: {series: 2:4, mod: W}", "unknown key 'mod'"),
        ("version: 1\nlayers: {}\nextra: 1\n", "unknown top-level key 'extra'"),
        ("fc1: {series: 2:4, mode: X}", "layer 'fc1': `mode` must be 'W'"),
        ("fc1: {series: 5:4}", "layer 'fc1': bad `series` '5:4'"),
        ("fc1: {series: 2.5}", "layer 'fc1': `series` must be a series string"),
        ("fc1: {mode: W}", "layer 'fc1': missing key 'series'"),
        ("version: 2\nlayers: {}\n", "unsupported `version` 2"),
        ("version: 1\n", "missing key 'layers'"),
        ("version: 1\nlayers: [a, b]\n", "`layers` must be a mapping"),
        ("version: 1\nlayers: [\n", "invalid YAML"),
        ("- 1\n- 2\n", "must be a YAML mapping"),
        ("", "empty TASD config"),
        ("fc1: {series: unstructured(0.5), mode: A}", "mode 'A' cannot use"),
        ("fc1: {series: 2:4}\n  fc1: {series: 1:4}", "cfg.yaml:4: duplicate key 'fc1' (first given on line 3)"),
        ("layers: {fc1: 2:4}\n", "missing `version: 1`"),
    ],
)
def test_bad_config_raises_value_error_naming_the_problem(text: str, expected: str) -> None:
    if text.startswith("fc1:"):  # one layer's spec: in the versioned form a file must use
        text = f"version: 1\nlayers:\n  {text}\n"
    with pytest.raises(ValueError) as info:
        TASDConfig.from_yaml(text, "cfg.yaml")
    assert expected in str(info.value)
    assert re.match(r"cfg\.yaml(:\d+)?: ", str(info.value))


def test_missing_config_file_raises_file_not_found(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.yaml"):
        TASDConfig.load(tmp_path / "nope.yaml")


def test_coerce_rejects_other_types() -> None:
    with pytest.raises(TypeError, match="`config` must be"):
        TASDConfig.coerce(42)  # type: ignore[arg-type]
