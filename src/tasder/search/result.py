"""What a search returns: the chosen config, its scores and cost, and every evaluated point."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tasder._text import count_text, text_table
from tasder.nn.config import TASDConfig

__all__ = ["EvalPoint", "HardwareSummary", "LayerRow", "SearchResult", "describe_model", "format_cost",
           "pareto_front"]


def format_cost(x: float) -> str:
    """A cost for a progress line or a table: MAC counts as integers with separators, anything
    smaller (a modelled EDP of ~1e-11 J·s) with 4 significant digits — never "0".

    >>> format_cost(29_458_432.0), format_cost(6.9e-12), format_cost(0.0)
    ('29,458,432', '6.9e-12', '0')
    """
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.4g}"


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
        worse, better: with per-example scores, how many examples score below / above the original's
            score for them (the two flips that set the bound; their difference is the net change);
            else None.
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
    worse: int | None = None
    better: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "layers": dict(self.layers), "metric": self.metric, "cost": self.cost,
                "ok": self.ok, "step": self.step, "error": self.error, "bound": _finite_or_none(self.bound),
                "seconds": self.seconds, "worse": self.worse, "better": self.better}


@dataclass(frozen=True)
class LayerRow:
    """One searched layer in the chosen config.

    ``k`` is the length of the dim the groups run along (Linear ``in_features``, Conv2d ``C``) and
    ``kernel_size`` the convolution's (R, S) (empty for a Linear): the GEMM's K is their product,
    written by :attr:`k_text`. ``dense_macs`` counts the calibration batch the search counted on
    (:attr:`SearchResult.samples` samples).
    """

    name: str
    kind: str
    k: int
    dense_macs: int
    series: str
    mode: str
    fraction: float  # of the layer's dense MACs executed (W: effective density; A: measured kept)
    damage: float | None  # relative output error on calibration data (None when not measured)
    kernel_size: tuple[int, ...] = ()

    @property
    def k_text(self) -> str:
        """The GEMM reduction length as every table writes it: ``"144 = 16·3·3"`` (C·R·S), ``"128"``."""
        from tasder.nn.profile import reduction_text

        return reduction_text(self.k, self.kernel_size)

    def as_dict(self) -> dict[str, Any]:
        return {**vars(self), "kernel_size": list(self.kernel_size), "k_text": self.k_text}


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


def describe_model(model: Any) -> str:
    """What a result records as the model when the caller named none: its class, parameter count and
    a digest of its parameters and buffers (``"DigitsCNN, 22,954 parameters, sha256 3f2a…"``), so a
    config's provenance says which weights it was searched on."""
    import hashlib

    import torch

    digest = hashlib.sha256()
    n = 0
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        data = t.detach().cpu().contiguous()
        digest.update(name.encode() + str(data.dtype).encode() + str(tuple(data.shape)).encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")
        n += t.numel() if isinstance(t, torch.nn.Parameter) else 0
    return f"{type(model).__name__}, {n:,} parameters, sha256 {digest.hexdigest()[:12]}"


def cheapest_accepted(points: list[EvalPoint]) -> EvalPoint:
    """The config a search returns: the cheapest point that met the constraint (on a tie the higher
    metric, then the earlier one). The original always meets it, so there is one."""
    return min((p for p in points if p.ok), key=lambda p: (p.cost, -(p.metric or 0.0), p.index))


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
    models re-scored by ``holdout_evaluate`` (the test split) after the search, None without one;
    ``holdout_threshold`` is the constraint applied to ``holdout_original`` and
    :attr:`holdout_meets_constraint` says whether the chosen config keeps it there too (the search
    only guarantees it on the validation split). ``cost_*`` use the search's cost function
    (effective MACs by default: totals over the first calibration batch, ``samples`` samples — see
    :attr:`cost_per_inference`). ``hardware`` is set by callers that model the result on a design and
    TC too (``tasder search --cost edp``); ``extra`` holds what the method reports about itself
    (e.g. paper-threshold's α). ``print(result)`` gives a summary and the per-layer table.

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
    samples: int = 1
    holdout_threshold: float | None = None

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
    def holdout_meets_constraint(self) -> bool | None:
        """Whether the chosen config meets the constraint on the held-out split too (None: no held-out
        score). False means the validation split let through a config the test split rejects."""
        if self.holdout_final is None or self.holdout_threshold is None:
            return None
        return self.holdout_final >= self.holdout_threshold

    def holdout_warning(self, holdout_name: str = "held-out metric") -> str | None:
        """One sentence when :attr:`holdout_meets_constraint` is False, else None."""
        if self.holdout_meets_constraint is not False:
            return None
        assert self.holdout_final is not None and self.holdout_original is not None
        return (f"the chosen config breaks the constraint ({self.constraint}) on the held-out split: {holdout_name} "
                f"{self.holdout_original:.4f} → {self.holdout_final:.4f}, below {self.holdout_threshold:.4f}; "
                f"the search decided on the validation split (a larger validation set, or a tighter constraint, "
                f"would help)")

    def cost_per_inference(self, cost: float) -> float:
        """A MAC-count cost (the default) of the whole calibration batch → per inference (one sample)."""
        return cost / max(self.samples, 1)

    @property
    def chosen(self) -> EvalPoint:
        """The evaluated point of the returned config (:func:`cheapest_accepted` of the history)."""
        return cheapest_accepted(self.history)

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
            "samples": self.samples, "holdout_threshold": self.holdout_threshold,
            "holdout_meets_constraint": self.holdout_meets_constraint,
        }

    def __str__(self) -> str:
        r = self
        lines = [f"TASDER search of {r.model_id or 'the model'} for {r.target}: TASD-{r.mode}, {r.method}, "
                 f"constraint {r.constraint}",
                 f"validation metric: {r.metric_original:.4f} → {r.metric_final:.4f} ({100 * r.metric_ratio:.2f} %"
                 + ("" if r.confidence is None or r.bound_final is None else
                    f"; {r.bound_kind} ≥ {r.bound_final:.4f} at {100 * r.confidence:g} % confidence over "
                    f"{r.examples} examples") + ")"]
        if r.holdout_original is not None and r.holdout_final is not None:
            ratio = r.holdout_ratio
            lines.append(f"held-out metric: {r.holdout_original:.4f} → {r.holdout_final:.4f}"
                         + ("" if ratio is None else f" ({100 * ratio:.2f} %)")
                         + (" — BREAKS the constraint here" if r.holdout_meets_constraint is False else ""))
        if r.hardware is not None:
            hw = r.hardware
            lines.append(f"modelled {hw.metric} on {hw.design}: {hw.before_vs_tc:.3f} → {hw.after_vs_tc:.3f} × TC "
                         f"running the original model ({100 * r.cost_cut:.1f} % cut)")
        else:
            lines.append(f"cost: {r.cost_before:.4g} → {r.cost_after:.4g} ({100 * r.cost_cut:.1f} % cut; effective "
                         f"MACs by default: per inference {count_text(r.cost_per_inference(r.cost_before))} → "
                         f"{count_text(r.cost_per_inference(r.cost_after))})")
        lines.append(f"{r.evaluations} evaluations ({r.cache_hits} cache hits), {r.seconds:.1f} s"
                     + (", interrupted: the best valid config so far" if r.interrupted else ""))
        rows = [[row.name, row.kind, row.k_text, count_text(row.dense_macs / max(r.samples, 1)), row.series,
                 f"{row.fraction:.3f}", "-" if row.damage is None else f"{row.damage:.3f}"] for row in r.layers]
        lines.append(text_table(["layer", "kind", "K", "dense MACs/inf.", "series", "executed", "output rel. err."],
                                rows, [False, False, True, True, False, True, True]))
        return "\n".join(lines)
