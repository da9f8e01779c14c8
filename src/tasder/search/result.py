"""What a search returns: the chosen config, its scores and cost, and every evaluated point."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tasder.nn.config import TASDConfig

__all__ = ["EvalPoint", "HardwareSummary", "LayerRow", "SearchResult", "pareto_front"]


@dataclass(frozen=True)
class EvalPoint:
    """One evaluated configuration.

    Attributes:
        index: position in the history (0 = the original model).
        layers: the non-dense layers, name → series (canonical strings).
        metric: the validation metric, or None when evaluate raised or returned NaN.
        cost: the modelled cost of the config.
        ok: the metric meets the constraint.
        step: what the method was doing (e.g. ``"greedy fc1 4:8"``, ``"batch k=8"``).
        error: why the evaluation failed (an exception or a NaN), else None.
        bound: with per-example scores, the lower confidence bound of metric/original (or of
            metric − original for a ``Drop`` constraint) the acceptance used; else None.
        seconds: how long the evaluation took (None for a point not timed).
    """

    index: int
    layers: dict[str, str]
    metric: float | None
    cost: float
    ok: bool
    step: str
    error: str | None = None
    bound: float | None = None
    seconds: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "layers": dict(self.layers), "metric": self.metric, "cost": self.cost,
                "ok": self.ok, "step": self.step, "error": self.error, "bound": _finite_or_none(self.bound),
                "seconds": self.seconds}


@dataclass(frozen=True)
class LayerRow:
    """One searched layer in the chosen config."""

    name: str
    kind: str
    k: int
    dense_macs: int
    series: str
    mode: str
    fraction: float  # of the layer's dense MACs executed (W: effective density; A: measured kept)
    damage: float | None  # relative output error on calibration data (None when not measured)

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass(frozen=True)
class HardwareSummary:
    """A search's modelled hardware cost next to TC running the original model (what the CLI
    summary and :func:`~tasder.search.render_markdown` show; built by
    :meth:`tasder.search.HardwareCost.summarize`).

    Attributes:
        design: the design the search's cost models (e.g. ``"ttc-vegeta-m8"``).
        metric: ``"edp"``, ``"energy"`` or ``"cycles"``; unit: its unit (``"J·s"``, ``"pJ"``, ``"cycles"``).
        tc_original: the same metric of TC running the original model.
        before_vs_tc, after_vs_tc: the original and the chosen config on ``design``, × ``tc_original``.
    """

    design: str
    metric: str
    unit: str
    tc_original: float
    before_vs_tc: float
    after_vs_tc: float

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def _finite_or_none(x: float | None) -> float | None:
    # JSON and YAML have no −inf: an unsupported bound is written as null
    return None if x is None or not math.isfinite(x) else float(x)


def pareto_front(points: list[EvalPoint]) -> list[EvalPoint]:
    """The non-dominated points (higher metric, lower cost), cheapest first; failed ones excluded."""
    valid = sorted((p for p in points if p.metric is not None and math.isfinite(p.metric)),
                   key=lambda p: (p.cost, -(p.metric or 0.0), p.index))
    front: list[EvalPoint] = []
    best = -math.inf
    for p in valid:
        assert p.metric is not None
        if p.metric > best:
            front.append(p)
            best = p.metric
    return front


@dataclass
class SearchResult:
    """The outcome of :func:`tasder.search.search`.

    ``metric_*`` are on the split ``evaluate`` scores (validation); ``holdout_*`` are the same two
    models re-scored by ``holdout_evaluate`` (the test split) after the search, None without one.
    ``cost_*`` use the search's cost function (effective MACs by default). ``hardware`` is set by
    callers that model the result on a design and TC too (``tasder search --cost edp``); ``extra``
    holds what the method reports about itself (e.g. paper-threshold's α).

    With per-example scores (docs/design.md §3.4): ``confidence`` of the paired bound, ``bound_final``
    the chosen config's lower confidence bound on the validation split — of metric/original
    (``bound_kind == "ratio"``) or of metric − original (``"difference"``, a ``Drop`` constraint) —,
    ``examples`` the validation split's size; all None for a float-only ``evaluate``.
    ``slack_examples``: how many examples the constraint lets a config lose (None when unknown);
    ``skipped``: evaluations the damage/aggressiveness rule saved; ``notes``: warnings the search
    gave (too little slack, prefix cache turned off).
    """

    config: TASDConfig
    model_id: str
    target: str
    mode: str
    method: str
    constraint: str
    threshold: float
    metric_original: float
    metric_final: float
    cost_before: float
    cost_after: float
    evaluations: int
    cache_hits: int
    seconds: float
    layers: list[LayerRow]
    history: list[EvalPoint]
    holdout_original: float | None = None
    holdout_final: float | None = None
    interrupted: bool = False
    failures: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    hardware: HardwareSummary | None = None
    confidence: float | None = None
    bound_final: float | None = None
    bound_kind: str | None = None
    examples: int | None = None
    slack_examples: float | None = None
    skipped: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def cost_cut(self) -> float:
        """1 − cost_after / cost_before (the MAC cut with the default cost)."""
        return 1.0 - self.cost_after / self.cost_before if self.cost_before else 0.0

    @property
    def metric_ratio(self) -> float:
        """final / original metric on the search's (validation) split."""
        return self.metric_final / self.metric_original if self.metric_original else float("nan")

    @property
    def holdout_ratio(self) -> float | None:
        """final / original on the held-out split, None without one."""
        if self.holdout_original is None or self.holdout_final is None or not self.holdout_original:
            return None
        return self.holdout_final / self.holdout_original

    @property
    def pareto(self) -> list[EvalPoint]:
        """The Pareto front of (metric, cost) over every evaluated config."""
        return pareto_front(self.history)

    def provenance(self) -> dict[str, Any]:
        """What the YAML config records about how it was found."""
        return {
            "model": self.model_id, "target": self.target, "mode": self.mode, "method": self.method,
            "constraint": self.constraint,
            "scores": {"metric_original": self.metric_original, "metric_final": self.metric_final,
                       "holdout_original": self.holdout_original, "holdout_final": self.holdout_final,
                       "cost_before": self.cost_before, "cost_after": self.cost_after},
            "evaluations": self.evaluations, "interrupted": self.interrupted,
            **({} if self.confidence is None else {
                "acceptance": {"confidence": self.confidence, "bound_kind": self.bound_kind,
                               "bound_final": _finite_or_none(self.bound_final), "examples": self.examples}}),
        }

    def config_with_provenance(self) -> TASDConfig:
        """The chosen config carrying :meth:`provenance` (what ``tasder search --out`` writes)."""
        return TASDConfig(dict(self.config.layers), self.provenance())

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.provenance(), "threshold": self.threshold, "cost_cut": self.cost_cut,
            "cache_hits": self.cache_hits, "seconds": self.seconds,
            "config": self.config.to_dict(), "layers": [r.as_dict() for r in self.layers],
            "history": [p.as_dict() for p in self.history], "pareto": [p.index for p in self.pareto],
            "failures": list(self.failures), "extra": dict(self.extra),
            "hardware": None if self.hardware is None else self.hardware.as_dict(),
            "confidence": self.confidence, "bound_final": _finite_or_none(self.bound_final),
            "bound_kind": self.bound_kind, "examples": self.examples, "slack_examples": self.slack_examples,
            "skipped": self.skipped, "notes": list(self.notes),
        }
