"""Acceptance with per-example scores: the paired one-sided bound, its use by the search, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

from search_helpers import tiny_calibration as _calib
from search_helpers import tiny_mlp as _model
from tasder.nn import tasd_layers
from tasder.scores import Scores, as_scores
from tasder.search import Drop, search
from tasder.search.acceptance import (
    Acceptance,
    difference_lower_bound,
    mean_lower_bound,
    metric_resolution,
    ratio_lower_bound,
)

# -- the bound ------------------------------------------------------------------------------------


@given(n=st.integers(2, 60), seed=st.integers(0, 10_000), c=st.floats(0.5, 1.0),
       conf=st.sampled_from([0.8, 0.9, 0.95, 0.99]), binary=st.booleans())
@settings(max_examples=200, deadline=None)
def test_accepting_at_c_is_the_ratio_bound_reaching_c(n, seed, c, conf, binary):
    rng = np.random.default_rng(seed)
    s0 = (rng.random(n) < 0.8).astype(float) if binary else rng.random(n)
    s = np.where(rng.random(n) < 0.9, s0, 1 - s0) if binary else np.clip(s0 + 0.1 * rng.standard_normal(n), 0, 1)
    lhs = mean_lower_bound(s - c * s0, conf)
    assume(abs(lhs) > 1e-9)
    bound = ratio_lower_bound(s, s0, conf)
    assume(math.isfinite(bound) and abs(bound - c) > 1e-9)
    assert (lhs >= 0) == (bound >= c)
    if s0.mean() > 0:
        assert bound <= s.mean() / s0.mean() + 1e-12  # a lower bound is below the point estimate


def test_the_bound_tightens_as_confidence_falls_and_is_one_for_the_same_scores():
    rng = np.random.default_rng(0)
    s0 = (rng.random(500) < 0.7).astype(float)
    s = s0.copy()
    s[:20] = 1 - s[:20]
    bounds = [ratio_lower_bound(s, s0, c) for c in (0.99, 0.95, 0.9, 0.5)]
    assert bounds == sorted(bounds) and bounds[-1] == pytest.approx(s.mean() / s0.mean(), abs=1e-3)
    assert ratio_lower_bound(s0, s0, 0.95) == pytest.approx(1.0, abs=1e-12)
    assert difference_lower_bound(s0, s0, 0.95) == 0.0


def test_coverage_when_the_true_ratio_is_exactly_the_constraint():
    """Configs whose *true* ratio is exactly 0.99 must be accepted about (1 − confidence) of the time."""
    rng = np.random.default_rng(1)
    n, reps, p0, conf = 400, 3000, 0.8, 0.9
    # Per example: original right with p0; the config loses 3 % of those and wins back p_gain of the rest,
    # so that mean(s)/mean(s0) = 0.99 in the population.
    lose = 0.03
    gain = (p0 * (1 - lose) - 0.99 * p0) / (1 - p0) * -1
    assert gain >= 0
    accepted = 0
    for _ in range(reps):
        s0 = (rng.random(n) < p0).astype(float)
        u = rng.random(n)
        s = np.where(s0 == 1, (u >= lose).astype(float), (u < gain).astype(float))
        accepted += mean_lower_bound(s - 0.99 * s0, conf) >= 0
    assert 0.06 < accepted / reps < 0.14  # 1 − 0.9, up to Monte Carlo and the normal approximation


def test_acceptance_judges_and_checks_lengths():
    s0 = np.ones(100)
    a = Acceptance(0.99, 0.99, 0.9, s0)
    ok, bound = a.judge(1.0, np.ones(100))
    assert ok and bound == pytest.approx(1.0)
    s = np.ones(100)
    s[:2] = 0  # 0.98 < 0.99
    assert not a.judge(0.98, s)[0]
    with pytest.raises(ValueError, match="100 for the original"):
        a.judge(1.0, np.ones(99))
    with pytest.raises(ValueError, match="same kind"):
        a.judge(1.0, None)
    d = Acceptance(Drop(0.05), 0.95, 0.9, s0)
    assert d.bound_kind == "difference" and d.judge(0.98, s)[0]
    assert Acceptance(0.99, 0.5, 0.9, None).judge(0.6, None) == (True, None)


def test_acceptance_counts_the_examples_that_got_worse_and_better():
    s0 = np.array([1.0, 1.0, 0.0, 0.0, 0.5])
    a = Acceptance(0.99, 0.99, 0.9, s0)
    assert a.changes(np.array([0.0, 1.0, 1.0, 0.0, 0.5])) == (1, 1)
    assert a.changes(np.array([0.0, 0.0, 0.0, 0.0, 0.25])) == (3, 0)
    assert a.changes(s0.copy()) == (0, 0)
    with pytest.raises(ValueError, match="5 for the original"):
        a.changes(np.ones(4))
    assert Acceptance(0.99, 0.5, 0.9, None).changes(None) is None


def test_metric_resolution():
    assert metric_resolution([236 / 511, 230 / 511, 1.0]) == 511
    assert metric_resolution([0.5, 0.25]) == 4
    assert metric_resolution([math.pi / 4, 0.3333]) is None


def test_scores_record():
    s = Scores(torch.tensor([1.0, 0.0, 1.0]))
    assert float(s) == pytest.approx(2 / 3) and len(s) == 3 and s / 2 == pytest.approx(1 / 3)
    assert as_scores(s)[1].tolist() == [1.0, 0.0, 1.0]
    assert as_scores(0.5) == (0.5, None) and as_scores(torch.tensor(0.5))[1] is None
    assert as_scores(np.array([1, 0]))[0] == 0.5
    import pickle

    assert pickle.loads(pickle.dumps(s)).per_example.tolist() == [1.0, 0.0, 1.0]
    for bad, match in ((np.zeros((2, 2)), "1-D"), (np.array([]), "empty"), (np.array([1.0, math.nan]), "NaN"),
                       ("0.5", "expected a number"), (True, "bool")):
        with pytest.raises(ValueError, match=match):
            as_scores(bad) if not isinstance(bad, np.ndarray) or bad.ndim != 1 or bad.size else Scores(bad)


# -- the search with per-example scores -----------------------------------------------------------


def per_example(flips: dict[str, dict[str, int]], n: int = 400, base_hits: int = 300):
    """Per-example 0/1 scores: the original gets ``base_hits`` right; a TASD layer at series s flips
    ``flips[layer][s]`` of them to wrong (the same examples for a layer, so effects add up)."""
    base = np.zeros(n)
    base[:base_hits] = 1.0

    def evaluate(model: nn.Module) -> Scores:
        evaluate.calls += 1  # type: ignore[attr-defined]
        s = base.copy()
        offset = 0
        for name, layer in tasd_layers(model):
            table = flips.get(name, {})
            k = table.get(str(layer.series), table.get("*", 0))
            s[offset : offset + k] = 0.0
            offset += 40
        return Scores(s)

    evaluate.calls = 0  # type: ignore[attr-defined]
    return evaluate


def test_a_config_within_the_point_rule_but_not_the_bound_is_rejected():
    # 300 hits, 1 % = 3 hits of slack. Layer "0" at 1:8 loses 2 hits: the point rule (≥ 297) accepts it,
    # the 90 % bound does not (2 discordant examples out of 400 leave too much doubt); "2" loses none.
    flips = {"0": {"*": 2}, "2": {}, "4": {}}
    strict = search(_model(), "ttc-vegeta-m8", per_example(flips), _calib(), "W", 0.99, "paper-greedy",
                    progress=False)
    assert strict.config.resolve("0") is None  # never accepted
    assert strict.confidence == 0.9 and strict.examples == 400 and strict.bound_kind == "ratio"
    assert strict.bound_final is not None and strict.bound_final >= 0.99
    assert all(p.bound is not None for p in strict.history if p.metric is not None)
    rejected = [p for p in strict.history if "0" in p.layers]
    assert rejected and all(not p.ok and p.metric >= strict.threshold for p in rejected)

    def floats(model: nn.Module) -> float:
        return float(per_example(flips)(model))

    loose = search(_model(), "ttc-vegeta-m8", floats, _calib(), "W", 0.99, "paper-greedy", progress=False)
    assert loose.config.resolve("0") is not None  # the plain rule takes it
    assert loose.confidence is None and loose.bound_final is None


def test_low_slack_is_warned_about():
    with pytest.warns(UserWarning, match="examples of slack"):
        r = search(_model(), "ttc-vegeta-m8", per_example({}, n=100, base_hits=80), _calib(), "W", 0.99,
                   max_evals=2, progress=False)
    assert r.slack_examples == pytest.approx(0.8) and r.notes


@pytest.mark.parametrize("bad", [0, 1, 1.0, -0.1, 1.5, math.nan, True, "0.9", None])
def test_confidence_outside_0_1_fails_before_any_evaluation(bad):
    ev = per_example({})
    with pytest.raises(ValueError, match="confidence"):
        search(_model(), "ttc-vegeta-m8", ev, _calib(), "W", confidence=bad, progress=False)
    assert ev.calls == 0


def test_scores_of_another_length_stop_the_search_with_a_clear_error():
    calls = {"n": 0}

    def evaluate(model: nn.Module) -> np.ndarray:
        calls["n"] += 1
        return np.ones(50 if calls["n"] == 1 else 49)

    with pytest.raises(ValueError, match="49 per-example scores for this config and 50 for the original"):
        search(_model(), "ttc-vegeta-m8", evaluate, _calib(), "W", progress=False)


@pytest.mark.parametrize(("value", "match"), [
    (np.array([]), "empty"), (np.array([1.0, math.nan, 0.0]), "NaN"), (np.array([1.0]), "at least 2"),
    (math.nan, "NaN"), (np.zeros((3, 2)), "1-D"),
])
def test_an_original_that_cannot_be_scored_fails_before_the_measurements(value, match, monkeypatch):
    import tasder.search.methods as methods

    def no_measure(*args, **kwargs):
        raise AssertionError("measured layers for a model that cannot be scored")

    monkeypatch.setattr(methods, "measure_layers", no_measure)
    with pytest.raises(ValueError, match=match):
        search(_model(), "ttc-vegeta-m8", lambda m: value, _calib(), "W", progress=False)


def test_nan_scores_of_a_config_are_a_rejected_step():
    base = per_example({})

    def evaluate(model: nn.Module):
        s = base(model)
        if any(n == "2" for n, _ in tasd_layers(model)):
            return np.full(len(s), math.nan)
        return s

    r = search(_model(), "ttc-vegeta-m8", evaluate, _calib(), "W", 0.99, "paper-greedy", progress=False)
    assert r.config.resolve("2") is None and any("NaN" in f for f in r.failures)
    assert r.config.resolve("0") is not None


def test_ctrl_c_returns_the_best_accepted_config():
    inner = per_example({})

    def evaluate(model: nn.Module):
        if inner.calls >= 3:
            raise KeyboardInterrupt
        return inner(model)

    r = search(_model(), "ttc-vegeta-m8", evaluate, _calib(), "W", 0.99, "paper-greedy", progress=False)
    assert r.interrupted and r.cost_after == min(p.cost for p in r.history if p.ok)
    assert r.bound_final is not None and r.bound_final >= 0.99


def test_result_reports_the_bound_in_every_output(tmp_path):
    from tasder.nn import TASDConfig
    from tasder.search import render_markdown

    r = search(_model(), "ttc-vegeta-m8", per_example({"0": {"*": 1}}), _calib(), "W", 0.99, progress=False)
    text = render_markdown(r, "validation accuracy", "test accuracy")
    assert "90 % confidence" in text and f"{r.bound_final:.4f}" in text
    doc = r.as_dict()
    assert doc["confidence"] == 0.9 and doc["bound_final"] == pytest.approx(r.bound_final)
    back = TASDConfig.load(r.config_with_provenance().save(tmp_path / "c.yaml"))
    assert back.provenance["acceptance"]["confidence"] == 0.9


def test_every_evaluation_records_how_many_examples_got_worse_and_better():
    """Layer "0" in TASD turns 3 hits into misses and 5 misses into hits; nothing else changes any
    example: every history point says so, and the markdown history shows it beside the bound."""
    from tasder.search import render_markdown

    base = np.zeros(400)
    base[:300] = 1.0

    def evaluate(model: nn.Module) -> Scores:
        s = base.copy()
        if any(name == "0" for name, _ in tasd_layers(model)):
            s[:3], s[350:355] = 0.0, 1.0
        return Scores(s)

    r = search(_model(), "ttc-vegeta-m8", evaluate, _calib(), "W", 0.99, "paper-greedy", progress=False)
    assert any("0" in p.layers for p in r.history)
    for p in r.history:
        assert (p.worse, p.better) == ((3, 5) if "0" in p.layers else (0, 0)), p
    assert r.as_dict()["history"][0]["worse"] == 0
    text = render_markdown(r, "validation accuracy", "test accuracy")
    assert "worse / better |" in text and "| 3 / 5 |" in text

    plain = search(_model(), "ttc-vegeta-m8", lambda m: float(evaluate(m)), _calib(), "W", 0.99, "paper-greedy",
                   progress=False)
    assert all(p.worse is None and p.better is None for p in plain.history)
    assert "worse / better" not in render_markdown(plain, "validation accuracy", "test accuracy")
