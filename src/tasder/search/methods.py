"""TASDER: choose a TASD series per layer that minimises a cost under an accuracy constraint.

Three methods (docs/design.md §3.4), one entry point :func:`search`:

* ``paper-greedy`` (the paper's TASD-W rule): every (layer, candidate) pair ranked by the share of
  nonzeros it drops (weights along K for mode W; calibration activations for mode A), smallest
  first — ties go to the more aggressive candidate, so the less aggressive one is then skipped —
  applied one at a time; each step is evaluated and rolled back if it breaks the constraint.
* ``paper-threshold`` (the paper's TASD-A rule, mode A only): per layer the most aggressive
  candidate whose sparsity 1 − density is below S(L) + α, where S(L) is the layer's input
  sparsity (mean or p99 over calibration samples; 1 − pseudo-density for a non-ReLU input,
  detected as < 5 % exact zeros). The config only changes at the finitely many α where some
  candidate becomes eligible, so the largest α meeting the constraint is found by bisection over
  those breakpoints (exact under monotonicity, log2 of their count evaluations).
* ``cost-aware`` (ours, default): moves ordered by measured effect per unit of modelled saving —
  the effect is the relative change of the *model's* output on calibration data with only that
  layer replaced (:mod:`tasder.search.effect`), measured per (layer, candidate) without any
  evaluation; saving comes from the pluggable ``cost``. First the longest passing prefix of the
  ranked moves is found by bisection (log2 of their count evaluations); then the rest are applied
  in batches (the next k at once; k starts at 1, doubles after a success and halves after a
  failure, so few evaluations go to large batches bound to fail). A single move that
  fails is rejected together with the candidates of its layer that are at least as bad (same mode
  and no denser, or more effect: it grows with aggressiveness) — after a near miss (within the
  constraint's own margin) too: trying those one by one was most of a 36-layer search's
  evaluations, and one that passes after its milder sibling missed has mostly passed by chance. A
  batch at least as bad on every layer as a config that already missed clearly is counted as a
  miss without evaluating it (the same monotonicity). The cheapest evaluated config meeting the
  constraint is returned (the Pareto front of everything evaluated is in the result).

``mode="auto"`` gives every layer both kinds of candidates, TASD-W and TASD-A (a TTC design
makes one operand of a layer sparse), ranked by the same damage/saving rule.

Acceptance (:mod:`tasder.search.acceptance`): an ``evaluate`` returning per-example scores (a 1-D
array or :class:`tasder.scores.Scores`) gets a one-sided paired confidence bound on the ratio to
the original; a float keeps the plain rule ``metric ≥ threshold``.

All methods cache evaluations on the canonical config, record every evaluated point, treat an
evaluate that raises or returns NaN as a rejected step (reported, search goes on), and turn a
Ctrl-C (KeyboardInterrupt) into an early return with the best valid config found so far. With
``stages`` an evaluation replays the unchanged prefix of the model (:mod:`tasder.search.prefix`).
"""

from __future__ import annotations

import copy
import fnmatch
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from tasder._batch import batch_size
from tasder.errors import InvalidParameterError
from tasder.nn.accounting import count_macs
from tasder.nn.calibration import TASDCalibration, calibrate_probes, calibration_of
from tasder.nn.config import SCORES, LayerSpec, TASDConfig
from tasder.nn.layers import TASDLayer, incompatibility, make_tasd_layer
from tasder.nn.transform import apply_tasd
from tasder.scores import as_scores
from tasder.search.acceptance import (
    DEFAULT_CONFIDENCE,
    SLACK_WARNING,
    Acceptance,
    check_confidence,
    metric_resolution,
)
from tasder.search.cost import CostFn, MACCost
from tasder.search.effect import measure_model_effect
from tasder.search.prefix import PrefixCache, PrefixMismatchError
from tasder.search.result import EvalPoint, LayerRow, SearchResult, cheapest_accepted, describe_model, format_cost
from tasder.sparsity import Series, parse_series
from tasder.targets import Target, candidate_series, load_target
from tasder.tasd.permutation import permutable_block

__all__ = ["DEFAULT_LAYERS", "METHODS", "MODES", "Drop", "MeasuredLayer", "check_constraint", "constraint_text",
           "default_layers", "measure_layers", "move_key", "search", "select_layers"]

METHODS = ("cost-aware", "paper-greedy", "paper-threshold")
#: ``auto``: each layer may take TASD-W or TASD-A candidates.
MODES = ("W", "A", "auto")
#: The identity series: what a layer the search leaves alone runs.
DENSE = parse_series("dense")
DENSE_SPEC = LayerSpec(DENSE)
Method = Literal["cost-aware", "paper-greedy", "paper-threshold"]
SearchMode = Literal["W", "A", "auto"]

#: Layers searched by default per (zoo model, mode); absent = every Linear/Conv2d. The paper applies
#: TASD-A in transformers only to the MLP's second linear (its input is the GELU output): in BERT
#: naming ``encoder.layer.N.output.dense`` (``?`` and not ``*``: fnmatch's ``*`` crosses dots and
#: would also select ``attention.output.dense``). TASD-W and ``auto`` search every layer.
DEFAULT_LAYERS: dict[tuple[str, str], tuple[str, ...]] = {("minilm", "A"): ("encoder.layer.?.output.dense",)}


def default_layers(model_id: str, mode: str) -> tuple[str, ...] | None:
    """The layer globs searched by default for a zoo model and mode (None: all layers)."""
    return DEFAULT_LAYERS.get((model_id, mode))


#: Below this share of exact zeros an input counts as non-ReLU (GELU...): use pseudo-density.
NON_RELU_SPARSITY = 0.05


@dataclass(frozen=True)
class Drop:
    """An absolute constraint: the metric may fall by at most ``amount`` (``Drop(0.005)``)."""

    amount: float

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, (int, float)) \
                or not math.isfinite(self.amount) or self.amount < 0:
            raise InvalidParameterError(f"Drop amount must be a finite number ≥ 0; got {self.amount!r}")

    def __str__(self) -> str:
        return f"drop ≤ {self.amount:g}"


def check_constraint(constraint: float | Drop) -> float | Drop:
    """``constraint`` checked: a :class:`Drop`, or a fraction of the original metric in (0, 1] (a float)."""
    if isinstance(constraint, Drop):
        return constraint
    if isinstance(constraint, bool) or not isinstance(constraint, (int, float)) \
            or not math.isfinite(constraint) or not 0 < constraint <= 1:
        raise InvalidParameterError(f"`constraint` must be a fraction of the original metric in (0, 1] (e.g. 0.99) or "
                         f"Drop(amount); got {constraint!r}")
    return float(constraint)


def _threshold(constraint: float | Drop, original: float) -> float:
    if isinstance(constraint, Drop):
        return original - constraint.amount
    return constraint * original


def constraint_text(constraint: float | Drop) -> str:
    """How results and reports state the constraint: ``"≥ 0.99 × original"`` or ``"drop ≤ 0.005"``."""
    return str(constraint) if isinstance(constraint, Drop) else f"≥ {constraint:g} × original"


# ---------------------------------------------------------------------------------------------
# Layers and their measurements
# ---------------------------------------------------------------------------------------------


def move_key(spec: LayerSpec) -> tuple[str, str]:
    """``(mode, series)``: how a layer's candidate is named in :class:`MeasuredLayer`'s tables (the
    search's options are the same for every candidate of one mode)."""
    return spec.mode, str(spec.series)


@dataclass
class MeasuredLayer:
    """What the methods decide a searched layer's series by (:func:`measure_layers`): its applicable
    non-dense ``candidates`` (specs; lowest density first, W before A), dense MACs on the first
    calibration batch, and per candidate (:func:`move_key`) the dropped nonzeros % (the weight for
    mode W, the input activations for A), the relative output error on the calibration data
    (``damage``); per TASD-A series the measured kept fraction; the input's sparsity statistics
    for paper-threshold."""

    name: str
    module: nn.Module
    kind: str
    k: int
    dense_macs: int
    candidates: list[LayerSpec]  # applicable, non-dense
    dropped: dict[tuple[str, str], float]  # move_key -> dropped nonzeros % (weights for W, activations for A)
    damage: dict[tuple[str, str], float]  # move_key -> relative output error on calibration data
    kept: dict[str, float]  # TASD-A series -> measured kept fraction
    effect: dict[tuple[str, str], float] = field(default_factory=dict)  # move_key -> model output's change
    sparsity_mean: float = 0.0
    sparsity_p99: float = 0.0
    pseudo_density: float = 1.0

    def damage_of(self, spec: LayerSpec) -> float:
        """The measured damage of ``spec`` (0 for dense)."""
        return 0.0 if spec.is_dense else self.damage.get(move_key(spec), 0.0)

    def rank_damage(self, spec: LayerSpec) -> float:
        """What cost-aware orders ``spec`` by: its end-to-end effect where measured, else its damage."""
        return self.effect.get(move_key(spec), self.damage_of(spec))  # no effect is measured for dense


def _permutable(series: Series) -> bool:
    try:
        permutable_block(series)
    except ValueError:
        return False
    return True


def select_layers(model: nn.Module, layers: Sequence[str] | None) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of the plain ``nn.Linear``/``nn.Conv2d`` (groups 1) layers the globs ``layers``
    select (every one for None); a glob that selects none is a ValueError."""
    found = [(n, m) for n, m in model.named_modules()
             if n and (type(m) is nn.Linear or (type(m) is nn.Conv2d and m.groups == 1))]
    if layers is None:
        return found
    chosen = [(n, m) for n, m in found if any(fnmatch.fnmatchcase(n, g) for g in layers)]
    for g in layers:
        if not any(fnmatch.fnmatchcase(n, g) for n, _ in found):
            raise ValueError(f"`layers`: {g!r} matches no nn.Linear/nn.Conv2d layer of the model")
    return chosen


def _modes(mode: str) -> tuple[str, ...]:
    return ("W", "A") if mode == "auto" else (mode,)


def candidate_specs(series: Sequence[Series], mode: str, *, permute: bool = False, bias_correction: bool = False,
                    score: str = "magnitude", reconstruct: bool = False) -> list[LayerSpec]:
    """Every non-dense candidate spec of a layer: each series in each of the search's modes, with the
    options (``score``/``reconstruct`` go to TASD-W candidates only)."""
    out = []
    for m in _modes(mode):
        w_opts = {"score": score, "reconstruct": reconstruct} if m == "W" else {}
        for s in series:
            if not s.is_dense:
                out.append(LayerSpec(s, m, permute=permute, bias_correction=bias_correction, **w_opts))  # type: ignore[arg-type]
    return out


def measure_layers(model: nn.Module, calibration: Sequence[Any], selected: list[tuple[str, nn.Module]],
                   cands: list[Series], mode: str, permute: bool = False,
                   bias_correction: bool = False, score: str = "magnitude",
                   reconstruct: bool = False, input_statistics: bool = True,
                   effect: bool = False, stages: Sequence[str] | None = None,
                   ) -> tuple[list[MeasuredLayer], int, TASDCalibration]:
    """Per layer and candidate: the relative output error on the calibration data, the kept
    fraction (A) and the dropped nonzeros; dense MACs of the first batch; and the calibration of
    every (layer, candidate) whose options learn from data (one pass of each kind for all).
    ``input_statistics``: also profile the TASD-A inputs' sparsity (what paper-threshold needs).
    ``effect``: also the model output's relative change per candidate
    (:func:`~tasder.search.effect.measure_model_effect`; ``model`` is modified while it runs and
    restored), replaying the unchanged ``stages``."""
    macs = {r.name: r.dense_macs for r in count_macs(model, calibration[0]).layers}
    total = sum(macs.values())
    specs = candidate_specs(cands, mode, permute=permute, bias_correction=bias_correction, score=score,
                            reconstruct=reconstruct)
    layers: list[MeasuredLayer] = []
    probes: dict[str, dict[LayerSpec, TASDLayer]] = {}
    for name, module in selected:
        ok = [sp for sp in specs if incompatibility(module, sp) is None]
        kind = "Conv2d" if isinstance(module, nn.Conv2d) else "Linear"
        layer = MeasuredLayer(name, module, kind, int(module.weight.shape[1]), macs.get(name, 0), ok, {}, {}, {})
        layers.append(layer)
        probes[name] = {sp: make_tasd_layer(module, sp).eval() for sp in ok}

    from tasder.nn.profile import profile_model

    prof = {p.name: p for p in profile_model(model, calibration, candidates=[])} \
        if input_statistics and "A" in _modes(mode) else {}
    errors, inputs = calibrate_probes(model, {n: list(ps.values()) for n, ps in probes.items()}, calibration,
                                      measure=True)
    entries = {}
    for ly in layers:
        nnz = int(torch.count_nonzero(ly.module.weight))  # type: ignore[arg-type]
        for sp in ly.candidates:
            key = move_key(sp)
            probe = probes[ly.name][sp]
            stats = errors.get(id(probe))
            ly.damage[key] = stats.relative_error(bias_correction) if stats is not None else 0.0
            if sp.mode == "W":  # Ŵ keeps a subset of W's positions
                kept_w = int(torch.count_nonzero(probe.weight))
                ly.dropped[key] = 100.0 * max(nnz - kept_w, 0) / nnz if nnz else 0.0
            else:
                nz = inputs.get(ly.name, (0, 0))[0]
                seen = probe.seen_elements
                ly.kept[str(sp.series)] = probe.kept_elements / seen if seen else sp.series.effective_density
                ly.dropped[key] = 100.0 * (1.0 - probe.kept_elements / nz) if nz else 0.0
            if sp.needs_calibration:
                entries[(ly.name, sp)] = calibration_of(probe)
        if ly.name in prof:
            p = prof[ly.name]
            ly.sparsity_mean = p.activation_sparsity_mean or 0.0
            ly.sparsity_p99 = p.activation_sparsity_p99 or 0.0
            ly.pseudo_density = p.pseudo_density if p.pseudo_density is not None else 1.0
        order = {"W": 0, "A": 1}
        ly.candidates.sort(key=lambda sp: (sp.series.effective_density, order[sp.mode]))
    if effect:
        measured = measure_model_effect(
            model, {ly.name: {move_key(sp): probes[ly.name][sp] for sp in ly.candidates} for ly in layers},
            calibration, stages)
        for ly in layers:
            ly.effect = {key: measured[(ly.name, key)] for key in map(move_key, ly.candidates)}
    return layers, total, TASDCalibration(entries)


# ---------------------------------------------------------------------------------------------
# Evaluation with a cache
# ---------------------------------------------------------------------------------------------


class _Stop(Exception):  # noqa: N818 - a control-flow signal, not an error
    """The evaluation budget (max_evals or max_seconds) is spent; the message says which."""


Assign = dict[str, LayerSpec]


class _Evaluator:
    """Evaluates assignments (layer → spec), caching on the canonical config, judging by ``acceptance``."""

    def __init__(self, model: nn.Module, evaluate: Callable[[nn.Module], Any], layers: list[MeasuredLayer],
                 mode: str, cost: CostFn, max_evals: int | None, progress: Any, *,
                 calibration: TASDCalibration | None = None, prefix: PrefixCache | None = None,
                 max_seconds: float | None = None, started: float = 0.0) -> None:
        self.model, self.evaluate, self.mode, self.cost = model, evaluate, mode, cost
        self.calibration = calibration
        self.layers = {ly.name: ly for ly in layers}
        self.names = [ly.name for ly in layers]
        self.max_evals = max_evals
        self.max_seconds = max_seconds  # no evaluation starts max_seconds after `started` (perf_counter)
        self.started = started
        self.cache: dict[tuple[tuple[str, str], ...], EvalPoint] = {}
        self.assigns: dict[int, Assign] = {}  # history index -> the assignment it scored
        self.history: list[EvalPoint] = []
        self.failures: list[str] = []
        self.calls = 0
        self.hits = 0
        self.acceptance: Acceptance | None = None
        self.base_metric = math.nan
        self.progress = progress
        self.prefix = prefix
        self.notes: list[str] = []

    @property
    def threshold(self) -> float:
        return -math.inf if self.acceptance is None else self.acceptance.threshold

    def specs(self, assign: Mapping[str, LayerSpec]) -> dict[str, LayerSpec]:
        """Every searched layer's spec (dense where ``assign`` has none): what a cost function takes."""
        return {n: assign.get(n, DENSE_SPEC) for n in self.names}

    def label(self, spec: LayerSpec) -> str:
        """How the history names a layer's spec: its series, plus its mode in an ``auto`` search."""
        return str(spec.series) if self.mode != "auto" else f"{spec.series} ({spec.mode})"

    def key(self, assign: Mapping[str, LayerSpec]) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((n, self.label(s)) for n, s in assign.items() if not s.is_dense))

    def config(self, assign: Mapping[str, LayerSpec]) -> TASDConfig:
        return TASDConfig({n: s for n, s in assign.items() if not s.is_dense})

    def apply(self, assign: Mapping[str, LayerSpec]) -> nn.Module:
        """The model under ``assign`` (the original one when nothing is assigned)."""
        config = self.config(assign)
        return apply_tasd(self.model, config, calibration=self.calibration) if config.layers else self.model

    def run(self, assign: Mapping[str, LayerSpec]) -> Any:
        """``evaluate`` on the model under ``assign``, through the prefix cache when there is one."""
        net = self.apply(assign)
        if self.prefix is None or not self.prefix.enabled:
            return self.evaluate(net)
        specs = {n: s for n, s in assign.items() if not s.is_dense}
        try:
            return self.prefix.evaluate(net, self.evaluate, specs)
        except PrefixMismatchError as exc:
            self.prefix.disable()
            note = f"prefix cache off ({exc}); every config is now evaluated in full"
            self.notes.append(note)
            warnings.warn(note, RuntimeWarning, stacklevel=3)
            return self.evaluate(self.apply(assign))

    def __call__(self, assign: Mapping[str, LayerSpec], step: str) -> EvalPoint:
        key = self.key(assign)
        if key in self.cache:
            self.hits += 1
            return self.cache[key]
        if self.max_evals is not None and self.calls >= self.max_evals:
            raise _Stop(f"max_evals={self.max_evals} reached")
        if self.max_seconds is not None and time.perf_counter() - self.started >= self.max_seconds:
            raise _Stop(f"max_seconds={self.max_seconds:g} reached")
        assert self.acceptance is not None, "score the original model first"
        self.calls += 1
        cost = float(self.cost(self.specs(assign)))
        metric: float | None = None
        per_example = None
        error: str | None = None
        start = time.perf_counter()
        try:
            value = self.run(assign)
            metric, per_example = as_scores(value)
            if math.isnan(metric):
                metric, error = None, "evaluate returned NaN"
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # a failing step is reported and rejected; the search goes on
            metric, error = None, f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - start
        changes = None
        if error is not None:
            self.failures.append(f"{step}: {error}")
            ok, bound = False, None
        else:
            assert metric is not None
            self.acceptance.check(per_example)  # another length than the original's: a broken evaluate
            ok, bound = self.acceptance.judge(metric, per_example)
            changes = self.acceptance.changes(per_example)
        if self.prefix is not None:
            (self.prefix.accept if ok else self.prefix.reject)()
        worse, better = changes if changes is not None else (None, None)
        point = EvalPoint(len(self.history), dict(key), metric, cost, ok, step, error, bound=bound, seconds=seconds,
                          worse=worse, better=better)
        self.record(point, dict(assign))
        if self.progress is not None:
            best = min((p.cost for p in self.history if p.ok), default=cost)
            self.progress(self.calls, best)
        return point

    def record(self, point: EvalPoint, assign: Assign) -> None:
        self.assigns[point.index] = assign
        self.history.append(point)
        self.cache[tuple(sorted(point.layers.items()))] = point


# ---------------------------------------------------------------------------------------------
# The methods
# ---------------------------------------------------------------------------------------------


class _Moves:
    """Per layer and spec: the modelled saving σ (cost(dense) − cost(that layer alone)), the
    measured damage (its effect on the model's output where measured), and the order relations the
    methods use."""

    def __init__(self, layers: list[MeasuredLayer], cost: CostFn) -> None:
        self.layers = {ly.name: ly for ly in layers}
        dense = {ly.name: DENSE_SPEC for ly in layers}
        base = cost(dense)
        self.saving: dict[tuple[str, LayerSpec], float] = {}
        for ly in layers:
            for sp in ly.candidates:
                self.saving[(ly.name, sp)] = base - cost({**dense, ly.name: sp})

    def sigma(self, name: str, spec: LayerSpec) -> float:
        """The saving of ``spec`` on layer ``name`` alone (0 for dense)."""
        return 0.0 if spec.is_dense else self.saving[(name, spec)]

    def damage(self, name: str, spec: LayerSpec) -> float:
        return self.layers[name].rank_damage(spec)

    def at_least_as_bad(self, name: str, a: LayerSpec, b: LayerSpec) -> bool:
        """``a`` should hurt the metric at least as much as ``b`` on layer ``name``: the same mode and no
        denser, or at least as much measured effect (it grows with aggressiveness)."""
        if b.is_dense:
            return True
        if a.is_dense:
            return False
        same = a.mode == b.mode and a.series.effective_density <= b.series.effective_density
        return same or self.damage(name, a) >= self.damage(name, b)

    def dominates(self, trial: Assign, failed: Assign) -> bool:
        """``trial`` is at least as bad as ``failed`` on every layer ``failed`` changes."""
        return all(self.at_least_as_bad(n, trial.get(n, DENSE_SPEC), s) for n, s in failed.items())

    def ranked(self) -> list[tuple[str, LayerSpec]]:
        """cost-aware's order of the moves that save something: effect per unit of saving, then the
        larger saving, then layer order, then candidate order."""
        keyed = []
        for i, ly in enumerate(self.layers.values()):
            for j, sp in enumerate(ly.candidates):
                saving = self.sigma(ly.name, sp)
                if saving > 0:
                    keyed.append((ly.rank_damage(sp) / saving, -saving, i, j, ly.name, sp))
        keyed.sort(key=lambda t: t[:4])
        return [(name, sp) for *_, name, sp in keyed]

    def chain(self, prefix: Sequence[tuple[str, LayerSpec]], base: Assign) -> Assign:
        """``base`` with the moves ``prefix`` applied in order, each only where it is more aggressive."""
        out = dict(base)
        for name, sp in prefix:
            if self.sigma(name, sp) > self.sigma(name, out.get(name, DENSE_SPEC)):
                out[name] = sp
        return out


def layer_mac_cost(layers: list[MeasuredLayer], total_macs: int) -> MACCost:
    """The default cost of a search over ``layers`` (:func:`measure_layers`' output): effective MACs,
    with the layers outside the search dense and TASD-A's measured kept fractions."""
    return MACCost({ly.name: ly.dense_macs for ly in layers},
                   other_macs=total_macs - sum(ly.dense_macs for ly in layers),
                   kept={(ly.name, k): v for ly in layers for k, v in ly.kept.items()})


def ranked_chain(layers: list[MeasuredLayer], cost: CostFn) -> list[dict[str, LayerSpec]]:
    """The configs C₁ … C_N whose longest passing prefix cost-aware's phase 1 bisects: its ranked
    moves applied in order (:func:`measure_layers` with ``effect=True`` gives ``layers``). For
    looking at how the metric behaves along the order (``benchmarks/bench_search.py --chain``)."""
    moves = _Moves(layers, cost)
    out: list[dict[str, LayerSpec]] = []
    for move in moves.ranked():
        out.append(moves.chain([move], out[-1] if out else {}))
    return out


def _paper_greedy(ev: _Evaluator, layers: list[MeasuredLayer], cost: CostFn) -> dict[str, Any]:
    moves = _Moves(layers, cost)
    order = sorted(((ly.dropped[move_key(sp)], -moves.sigma(ly.name, sp), i, sp) for i, ly in enumerate(layers)
                    for sp in ly.candidates), key=lambda t: (t[0], t[1], t[2]))
    current: Assign = {}
    for _, _, i, sp in order:
        name = layers[i].name
        if moves.sigma(name, sp) <= moves.sigma(name, current.get(name, DENSE_SPEC)):
            continue  # only a more aggressive candidate applies
        trial = {**current, name: sp}
        if ev(trial, f"greedy {name} {ev.label(sp)}").ok:
            current = trial  # else: rolled back (current unchanged)
    return {}


def _paper_threshold(ev: _Evaluator, layers: list[MeasuredLayer], stat: str) -> dict[str, Any]:
    sparsity: dict[str, float] = {}
    for ly in layers:
        measured = ly.sparsity_p99 if stat == "p99" else ly.sparsity_mean
        sparsity[ly.name] = 1.0 - ly.pseudo_density if ly.sparsity_mean < NON_RELU_SPARSITY else measured
    breaks = sorted({round(1.0 - sp.series.effective_density - sparsity[ly.name], 12)
                     for ly in layers for sp in ly.candidates})

    def assign_at(alpha: float) -> Assign:
        out: Assign = {}
        for ly in layers:
            ok = [sp for sp in ly.candidates
                  if round(1.0 - sp.series.effective_density - sparsity[ly.name], 12) <= alpha]
            if ok:
                out[ly.name] = min(ok, key=lambda sp: sp.series.effective_density)
        return out

    lo, hi = -1, len(breaks)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ev(assign_at(breaks[mid]), f"threshold alpha={breaks[mid]:+.4f}").ok:
            lo = mid
        else:
            hi = mid
    return {"alpha": breaks[lo] if lo >= 0 else None, "statistic": stat,
            "layer_sparsity": sparsity, "breakpoints": len(breaks)}


def _cost_aware(ev: _Evaluator, layers: list[MeasuredLayer], cost: CostFn) -> dict[str, Any]:
    moves = _Moves(layers, cost)
    remaining = moves.ranked()
    current: Assign = {}
    margin = max(ev.base_metric - ev.threshold, 0.0)
    clear_misses: list[Assign] = []  # configs that missed by more than the margin
    chain = moves.chain

    def judge(trial: Assign, step: str) -> bool:
        """Evaluate ``trial``; remember it if it missed clearly (by more than the margin)."""
        point = ev(trial, step)
        if not point.ok and (point.metric is None or point.metric < ev.threshold - margin):
            clear_misses.append(trial)
        return point.ok

    def after_miss(rest: list[tuple[str, LayerSpec]], name: str, sp: LayerSpec) -> list[tuple[str, LayerSpec]]:
        """``rest`` without the moves of layer ``name`` at least as bad as ``sp``, which just missed as a
        single move on top of the current config: under monotonicity they would miss too."""
        return [(n, t) for n, t in rest if not (n == name and moves.at_least_as_bad(n, t, sp))]

    def still_open(rest: list[tuple[str, LayerSpec]]) -> list[tuple[str, LayerSpec]]:
        """The moves of ``rest`` more aggressive than their layer's spec in the current config."""
        return [(n, s) for n, s in rest if moves.sigma(n, s) > moves.sigma(n, current.get(n, DENSE_SPEC))]

    # Phase 1, bisection: the ranked moves applied in order make a chain of ever more aggressive
    # configs; under monotonicity the longest passing prefix takes log2(moves) evaluations (the
    # galloping below needs about twice that from k = 1, and on a noisy metric its halvings after
    # chance misses keep k small: a 36-layer MiniLM search spent 70 evaluations climbing to 30 %).
    lo, hi = 0, len(remaining) + 1  # the chain's prefix lo passes (nothing applied); hi: assumed to miss
    while hi - lo > 1:
        mid = (lo + hi) // 2
        trial = chain(remaining[:mid], {})
        if judge(trial, f"bisect {mid}/{len(remaining)}"):
            lo, current = mid, trial
        else:
            hi = mid
    # the move after the passing prefix broke the chain (a single move on top of it)
    remaining = still_open(after_miss(remaining[lo + 1:], *remaining[lo])) if lo < len(remaining) else []
    skipped = 0
    k = 1  # galloping: double after a success, halve after a failure
    while remaining:
        k = min(k, len(remaining))
        trial = chain(remaining[:k], current)
        if any(moves.dominates(trial, f) for f in clear_misses):
            # At least as bad on every layer as a config that clearly missed: under the same
            # monotonicity the miss rule below assumes, it misses too — not worth an evaluation.
            skipped += 1
            ok = False
        else:
            ok = judge(trial, f"batch of {k}")
        if ok:
            current = trial
            remaining = still_open(remaining[k:])
            k *= 2
        elif k == 1:
            remaining = after_miss(remaining[1:], *remaining[0])
        else:
            k //= 2
    return {"skipped_dominated": skipped}


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def progress_text(description: str, evals: int, best: float) -> str:
    """The search's progress line: ``"search m (cost-aware): 5 evaluations, best cost 6.9e-12"``."""
    return f"{description}: {evals} evaluations, best cost {format_cost(best)}"


def _progress_callback(enabled: bool, description: str) -> tuple[Any, Callable[[int, float], None] | None]:
    if not enabled or not sys.stderr.isatty() or os.environ.get("TERM") == "dumb":
        return None, None
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                        console=Console(stderr=True), transient=True)
    task = progress.add_task(description, total=None)

    def update(evals: int, best: float) -> None:
        progress.update(task, description=progress_text(description, evals, best))

    return progress, update


def _score_original(model: nn.Module, evaluate: Callable[[nn.Module], Any], prefix: PrefixCache | None
                    ) -> tuple[float, Any, float]:
    """The original model's metric, per-example scores (or None) and seconds; a clear error when it
    cannot be scored (the search would have nothing to compare with)."""
    start = time.perf_counter()
    try:
        value = prefix.evaluate(model, evaluate, {}) if prefix is not None else evaluate(model)
        metric, per_example = as_scores(value)
    except KeyboardInterrupt:
        raise
    except InvalidParameterError as exc:
        raise InvalidParameterError(f"the original model cannot be scored: {exc}") from None
    except Exception as exc:
        raise ValueError(f"the original model cannot be scored: evaluate raised {type(exc).__name__}: {exc}") from exc
    if math.isnan(metric):
        raise ValueError("the original model cannot be scored: evaluate returned NaN")
    if per_example is not None and per_example.size < 2:
        raise ValueError(f"the validation split has {per_example.size} example(s); a paired confidence bound needs "
                         f"at least 2 (return a float to use the plain rule)")
    if prefix is not None:
        prefix.accept()
    return metric, per_example, time.perf_counter() - start


def search(
    model: nn.Module,
    target: str | os.PathLike[str] | Target,
    evaluate: Callable[[nn.Module], Any],
    calibration: Sequence[Any],
    mode: SearchMode = "W",
    constraint: float | Drop = 0.99,
    method: Method = "cost-aware",
    *,
    holdout_evaluate: Callable[[nn.Module], Any] | None = None,
    cost: CostFn | None = None,
    seed: int = 0,
    max_evals: int | None = None,
    max_seconds: float | None = None,
    layers: Iterable[str] | None = None,
    statistic: Literal["mean", "p99"] = "mean",
    permute: bool = False,
    bias_correction: bool = False,
    score: Literal["magnitude", "activation"] = "magnitude",
    reconstruct: bool = False,
    confidence: float = DEFAULT_CONFIDENCE,
    stages: Sequence[str] | None = None,
    model_id: str = "",
    progress: bool = True,
) -> SearchResult:
    """Search a per-layer TASD configuration of ``model`` for ``target`` under ``constraint``.

    Args:
        model: the original model (never modified; each candidate is a transformed copy).
        target: a built-in target name (``"ttc-vegeta-m8"``), a target YAML path, or a Target.
        evaluate: ``evaluate(model)``, higher is better, on the *validation* split; the search
            decides on it alone. It returns the metric (a float), or the score of every example (a
            1-D array/tensor, or :class:`tasder.scores.Scores`): then a config is accepted only when
            a one-sided paired confidence bound on its ratio to the original (at ``confidence``)
            meets the constraint (docs/design.md §3.4). It must score the same examples every time.
        calibration: calibration batches (tensors, dicts of keyword arguments, or argument tuples):
            dense MACs are counted on the first, damage and activation statistics on all, cost-aware's
            end-to-end effects on the first (:mod:`tasder.search.effect`).
        mode: ``"W"`` (TASD-W) or ``"A"`` (TASD-A) for every searched layer, or ``"auto"``: each
            layer may take either, by the same effect/saving rule.
        constraint: a fraction of the original metric in (0, 1] (default 0.99, MLPerf's rule),
            or :class:`Drop` for an absolute drop.
        method: ``"cost-aware"`` (default), ``"paper-greedy"`` or ``"paper-threshold"`` (mode A).
        holdout_evaluate: re-scores the original and the chosen model after the search (the test
            split); reported next to the validation numbers.
        cost: ``cost(config) -> float`` over every searched layer's spec; default
            :class:`~tasder.search.cost.MACCost` (effective MACs).
        seed: seeds torch before the search, so evaluate functions that sample are repeatable.
        max_evals: stop after this many (uncached) evaluations.
        max_seconds: start no evaluation once this many seconds have passed since the call (the
            measurements before the first evaluation count; the one running then finishes); the
            cheapest accepted config so far is returned, as after ``max_evals``.
        layers: globs of the layers to search (default all ``nn.Linear``/``nn.Conv2d``); the
            rest stay dense.
        statistic: ``paper-threshold``'s S(L): ``"mean"`` or ``"p99"`` of the input sparsity.
        permute: every candidate decomposes in a permuted order of the reduction dim (ours; see
            :class:`~tasder.nn.LayerSpec`); candidates whose series mixes block sizes are left out.
        bias_correction: every candidate corrects its output's mean error on ``calibration`` (ours). The
            damage and effect cost-aware orders its moves by are then those of the corrected layer.
        score: TASD-W candidates rank weights by ``"magnitude"`` (|W|, the paper's) or
            ``"activation"`` (|W_ij|·‖X_j‖₂ on ``calibration``, Wanda's; ours).
        reconstruct: TASD-W candidates refit their kept weights from ``calibration`` (ours).
        confidence: of the paired bound, in (0, 1) (default 0.9; only with per-example scores).
        stages: module names (globs allowed) of the model's stages in execution order — e.g.
            ``["embeddings", "encoder.layer.*"]`` for BERT — to replay the outputs of the stages a
            config leaves unchanged instead of recomputing them (bit for bit the same scores; see
            :mod:`tasder.search.prefix` for what a stage list must satisfy). None: full forwards.
        model_id: recorded in the result and the YAML provenance (default: the model's class,
            parameter count and a digest of its weights).
        progress: show a progress line on stderr (only on a terminal).

    Raises:
        ValueError: a bad constraint, confidence, method, mode, option, target, ``layers`` glob or
            stage, or an original model whose metric cannot be computed (NaN, an empty split) — all
            before any search work where possible; and an ``evaluate`` that returns per-example
            scores of another length than for the original model (a broken evaluator).
    """
    constraint = check_constraint(constraint)
    confidence = check_confidence(confidence)
    if method not in METHODS:
        raise InvalidParameterError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if mode not in MODES:
        raise InvalidParameterError(f"`mode` must be 'W', 'A' or 'auto'; got {mode!r}")
    if method == "paper-threshold" and mode != "A":
        raise ValueError("paper-threshold is the paper's TASD-A rule: use mode='A' (or paper-greedy / "
                         "cost-aware for TASD-W and auto)")
    if statistic not in ("mean", "p99"):
        raise InvalidParameterError(f"`statistic` must be 'mean' or 'p99'; got {statistic!r}")
    for option, value in (("permute", permute), ("bias_correction", bias_correction), ("reconstruct", reconstruct)):
        if not isinstance(value, bool):
            raise InvalidParameterError(f"`{option}` must be True or False; got {value!r}")
    if score not in SCORES:
        raise InvalidParameterError(f"`score` must be one of {', '.join(SCORES)}; got {score!r}")
    if mode == "A" and (reconstruct or score != "magnitude"):
        raise InvalidParameterError("`score` and `reconstruct` choose TASD-W weights: use mode 'W' or 'auto'")
    if max_evals is not None and (isinstance(max_evals, bool) or not isinstance(max_evals, int) or max_evals < 1):
        raise InvalidParameterError(f"`max_evals` must be a positive integer or None; got {max_evals!r}")
    if max_seconds is not None and (isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float))
                                    or not max_seconds > 0 or not math.isfinite(max_seconds)):
        raise InvalidParameterError(f"`max_seconds` must be a positive number of seconds or None; got {max_seconds!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module; got {type(model).__name__}")
    model_id = model_id or describe_model(model)  # the provenance names the weights searched on
    if not callable(evaluate):
        raise TypeError("`evaluate` must be a callable model -> metric (a float or per-example scores)")
    if stages is not None and (isinstance(stages, str) or not isinstance(stages, Sequence) or not stages):
        raise InvalidParameterError(f"`stages` must be a non-empty list of module names; got {stages!r}")
    batches = list(calibration)
    if not batches:
        raise ValueError("`calibration` is empty: the search needs at least one calibration batch")
    tgt = load_target(target)
    cands = candidate_series(tgt)
    if permute:
        cands = [c for c in cands if c.is_dense or _permutable(c)]
        if len(cands) == 1:
            raise ValueError(f"target {tgt.name!r}: none of its series can be permuted (that needs G:H terms with "
                             f"one block size); search it without `permute`")
    start = time.perf_counter()
    model = copy.deepcopy(model).eval()  # the caller's model (and its train/eval mode) stay as they are
    selected = select_layers(model, None if layers is None else list(layers))
    if not selected:
        raise ValueError("the model has no nn.Linear/nn.Conv2d layer to search")
    prefix = None if stages is None else PrefixCache.for_model(model, list(stages), [n for n, _ in selected])
    torch.manual_seed(seed)

    # The original first: a broken evaluate or an empty split fails before the measurement work.
    metric0, per0, seconds0 = _score_original(model, evaluate, prefix)
    acceptance = Acceptance(constraint, _threshold(constraint, metric0), confidence, per0)
    notes: list[str] = []
    slack = acceptance.slack_examples(metric0)
    if slack is not None and slack < SLACK_WARNING:
        notes.append(f"the constraint leaves {slack:.1f} examples of slack on {per0.size} validation examples: "
                     f"acceptance is decided by a handful of examples")

    options = {"permute": permute, "bias_correction": bias_correction, "score": score, "reconstruct": reconstruct}
    measured, total_macs, calibration = measure_layers(model, batches, selected, cands, mode, **options,
                                                       input_statistics=method == "paper-threshold",
                                                       effect=method == "cost-aware", stages=stages)
    mac_cost = layer_mac_cost(measured, total_macs)
    cost_fn: CostFn = cost if cost is not None else mac_cost
    prog, update = _progress_callback(progress, f"search {model_id or type(model).__name__} ({method})")
    ev = _Evaluator(model, evaluate, measured, mode, cost_fn, max_evals, update, calibration=calibration,
                    prefix=prefix, max_seconds=max_seconds, started=start)
    ev.acceptance = acceptance
    ev.base_metric = metric0
    _, bound0 = acceptance.judge(metric0, per0)
    unchanged = 0 if acceptance.paired else None
    # the original is the fallback config, whatever its own bound
    base = EvalPoint(0, {}, metric0, float(cost_fn(ev.specs({}))), True, "original", bound=bound0,
                     seconds=seconds0, worse=unchanged, better=unchanged)
    ev.record(base, {})
    ev.calls = 1  # the original counts as an evaluation (and against max_evals)
    interrupted = False
    extra: dict[str, Any] = {}
    if prog is not None:
        prog.start()
    try:
        try:
            if method == "paper-greedy":
                extra = _paper_greedy(ev, measured, cost_fn)
            elif method == "paper-threshold":
                extra = _paper_threshold(ev, measured, statistic)
            else:
                extra = _cost_aware(ev, measured, cost_fn)
        except _Stop as stop:
            extra = {"stopped": str(stop)}
        except KeyboardInterrupt:
            interrupted = True
    finally:
        if prog is not None:
            prog.stop()
    best = cheapest_accepted(ev.history)
    chosen = ev.assigns[best.index]
    config = ev.config(chosen)
    seconds = time.perf_counter() - start
    if prefix is not None:
        extra["prefix_replayed"] = prefix.skipped_fraction
    if per0 is None:
        seen = {p.metric for p in ev.history if p.metric is not None}
        n = metric_resolution(sorted(seen)) if len(seen) >= 3 else None  # too few values to tell a step
        slack = None if n is None else (metric0 - acceptance.threshold) * n
        if slack is not None and slack < SLACK_WARNING:
            notes.append(f"every validation metric seen is a multiple of 1/{n} (as over {n} examples): the constraint "
                         f"leaves {slack:.1f} examples of slack, so a handful of examples decide acceptance; return "
                         f"per-example scores from evaluate for a confidence bound")
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    notes += ev.notes

    hold_orig = hold_final = None
    if holdout_evaluate is not None:
        try:
            hold_orig = float(holdout_evaluate(model))
            hold_final = float(holdout_evaluate(ev.apply(chosen)))
        except KeyboardInterrupt:
            interrupted = True

    rows = []
    for ly in measured:
        spec = chosen.get(ly.name, DENSE_SPEC)
        row_mode = spec.mode if not spec.is_dense or mode != "auto" else "-"
        rows.append(LayerRow(ly.name, ly.kind, ly.k, ly.dense_macs, str(spec.series), row_mode if mode == "auto"
                             else mode, mac_cost.fraction(ly.name, spec),
                             None if spec.is_dense else ly.damage_of(spec),
                             kernel_size=tuple(int(x) for x in ly.module.weight.shape[2:])))
    assert best.metric is not None
    return SearchResult(
        config=config, model_id=model_id, target=tgt.name, mode=mode, method=method,
        constraint=constraint_text(constraint), threshold=acceptance.threshold,
        metric_original=metric0, metric_final=best.metric,
        cost_before=base.cost, cost_after=best.cost, evaluations=ev.calls, cache_hits=ev.hits,
        seconds=seconds, layers=rows, history=ev.history, holdout_original=hold_orig,
        holdout_final=hold_final, interrupted=interrupted, failures=ev.failures, extra=extra,
        confidence=confidence if acceptance.paired else None, bound_final=best.bound,
        bound_kind=acceptance.bound_kind if acceptance.paired else None,
        examples=None if per0 is None else int(per0.size), slack_examples=slack,
        skipped=int(extra.get("skipped_dominated", 0)), notes=notes,
        samples=batch_size(batches[0]),
        holdout_threshold=None if hold_orig is None else _threshold(constraint, hold_orig),
    )
