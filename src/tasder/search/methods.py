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
* ``cost-aware`` (ours, default): moves ordered by measured damage per unit of modelled saving —
  damage is the layer output's relative error on the calibration data, measured per (layer,
  candidate) without any model evaluation; saving comes from the pluggable ``cost``. Moves are
  applied in batches (the next k at once; k starts at 1, doubles after a success and halves
  after a failure, so few evaluations go to large batches bound to fail). A single move that
  clearly fails is rejected together with the more aggressive candidates of its layer (damage
  grows with aggressiveness); after a near miss (within the constraint's own margin, possibly
  evaluation noise) those stay in play. A batch at least as aggressive on every layer as a
  config that already missed clearly is counted as a miss without evaluating it (the same
  monotonicity). The cheapest evaluated config meeting the
  constraint is returned (the Pareto front of everything evaluated is in the result).

All methods cache evaluations on the canonical config, record every evaluated point, treat an
evaluate that raises or returns NaN as a rejected step (reported, search goes on), and turn a
Ctrl-C (KeyboardInterrupt) into an early return with the best valid config found so far.
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from tasder._batch import batch_size
from tasder.errors import InvalidParameterError
from tasder.nn.accounting import count_macs
from tasder.nn.calibration import TASDCalibration, calibrate_probes, calibration_of
from tasder.nn.config import LayerSpec, TASDConfig
from tasder.nn.layers import TASDLayer, incompatibility, make_tasd_layer
from tasder.nn.transform import apply_tasd
from tasder.search.cost import CostFn, MACCost
from tasder.search.result import EvalPoint, LayerRow, SearchResult, describe_model, format_cost
from tasder.sparsity import Series, parse_series
from tasder.targets import Target, candidate_series, load_target
from tasder.tasd.permutation import permutable_block

__all__ = ["DEFAULT_LAYERS", "METHODS", "Drop", "MeasuredLayer", "check_constraint", "constraint_text",
           "default_layers", "measure_layers", "search", "select_layers"]

METHODS = ("cost-aware", "paper-greedy", "paper-threshold")
#: The identity series: what a layer the search leaves alone runs.
DENSE = parse_series("dense")
Method = Literal["cost-aware", "paper-greedy", "paper-threshold"]

#: Layers searched by default per (zoo model, mode); absent = every Linear/Conv2d. The paper applies
#: TASD-A in transformers only to the MLP's second linear (its input is the GELU output): in BERT
#: naming ``encoder.layer.N.output.dense`` (``?`` and not ``*``: fnmatch's ``*`` crosses dots and
#: would also select ``attention.output.dense``).
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


@dataclass
class MeasuredLayer:
    """What the methods decide a searched layer's series by (:func:`measure_layers`): its applicable
    non-dense ``candidates`` (lowest density first), dense MACs on the first calibration batch,
    and per candidate (canonical string) the dropped nonzeros % (the weight for mode W, the input
    activations for A), the relative output error on the calibration data (``damage``) and, for
    TASD-A, the measured kept fraction; the input's sparsity statistics for paper-threshold."""

    name: str
    module: nn.Module
    kind: str
    k: int
    dense_macs: int
    candidates: list[Series]  # applicable, non-dense, lowest density first
    dropped: dict[str, float]  # series -> dropped nonzeros % (weights for W, activations for A)
    damage: dict[str, float]  # series -> relative output error on calibration data
    kept: dict[str, float]  # series -> measured kept fraction (A)
    sparsity_mean: float = 0.0
    sparsity_p99: float = 0.0
    pseudo_density: float = 1.0


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


def measure_layers(model: nn.Module, calibration: Sequence[Any], selected: list[tuple[str, nn.Module]],
                   cands: list[Series], mode: str, permute: bool = False,
                   bias_correction: bool = False) -> tuple[list[MeasuredLayer], int, TASDCalibration]:
    """Per layer and candidate: the relative output error on the calibration data, the kept
    fraction (A) and the dropped nonzeros; dense MACs of the first batch; and the calibration of
    every (layer, candidate) whose options learn from data (one pass of each kind for all)."""
    macs = {r.name: r.dense_macs for r in count_macs(model, calibration[0]).layers}
    total = sum(macs.values())
    layers: list[MeasuredLayer] = []
    probes: dict[str, dict[str, TASDLayer]] = {}
    for name, module in selected:
        specs = {str(s): LayerSpec(s, mode, permute=permute, bias_correction=bias_correction)  # type: ignore[arg-type]
                 for s in cands if not s.is_dense}
        ok = [s for s in cands if not s.is_dense and incompatibility(module, specs[str(s)]) is None]
        kind = "Conv2d" if isinstance(module, nn.Conv2d) else "Linear"
        layer = MeasuredLayer(name, module, kind, int(module.weight.shape[1]), macs.get(name, 0), ok, {}, {}, {})
        layers.append(layer)
        probes[name] = {str(s): make_tasd_layer(module, specs[str(s)]).eval() for s in ok}
        if mode == "W":
            nnz = int(torch.count_nonzero(module.weight))
            for key, probe in probes[name].items():  # Ŵ keeps a subset of W's elements, unchanged
                kept = int(torch.count_nonzero(probe.weight))
                layer.dropped[key] = 100.0 * (nnz - kept) / nnz if nnz else 0.0

    from tasder.nn.profile import profile_model

    prof = {p.name: p for p in profile_model(model, calibration, candidates=[])} if mode == "A" else {}
    errors, inputs = calibrate_probes(model, {n: list(ps.values()) for n, ps in probes.items()}, calibration,
                                      measure=True)
    entries = {}
    for ly in layers:
        for s in ly.candidates:
            key = str(s)
            probe = probes[ly.name][key]
            stats = errors.get(id(probe))
            ly.damage[key] = stats.relative_error(bias_correction) if stats is not None else 0.0
            if mode == "A":
                nz = inputs.get(ly.name, (0, 0))[0]
                seen = probe.seen_elements
                ly.kept[key] = probe.kept_elements / seen if seen else s.effective_density
                ly.dropped[key] = 100.0 * (1.0 - probe.kept_elements / nz) if nz else 0.0
            if probe.spec.needs_calibration:
                entries[(ly.name, probe.spec)] = calibration_of(probe)
        if ly.name in prof:
            p = prof[ly.name]
            ly.sparsity_mean = p.activation_sparsity_mean or 0.0
            ly.sparsity_p99 = p.activation_sparsity_p99 or 0.0
            ly.pseudo_density = p.pseudo_density if p.pseudo_density is not None else 1.0
    return layers, total, TASDCalibration(entries)


# ---------------------------------------------------------------------------------------------
# Evaluation with a cache
# ---------------------------------------------------------------------------------------------


class _Stop(Exception):  # noqa: N818 - a control-flow signal, not an error
    """The evaluation budget (max_evals) is spent."""


class _Evaluator:
    """Evaluates assignments (layer → series), caching on the canonical config."""

    def __init__(self, model: nn.Module, evaluate: Callable[[nn.Module], float], layers: list[MeasuredLayer],
                 mode: str, cost: CostFn, max_evals: int | None, progress: Any, *,
                 options: dict[str, bool] | None = None, calibration: TASDCalibration | None = None) -> None:
        self.model, self.evaluate, self.mode, self.cost = model, evaluate, mode, cost
        self.options = options or {}
        self.calibration = calibration
        self.names = [ly.name for ly in layers]
        self.max_evals = max_evals
        self.cache: dict[tuple[tuple[str, str], ...], EvalPoint] = {}
        self.history: list[EvalPoint] = []
        self.failures: list[str] = []
        self.calls = 0
        self.hits = 0
        self.threshold = -math.inf
        self.base_metric = math.nan
        self.progress = progress

    def spec(self, series: Series) -> LayerSpec:
        """The spec of a layer given ``series`` (the search's options apply to every sparse one)."""
        return LayerSpec(series, self.mode, **({} if series.is_dense else self.options))  # type: ignore[arg-type]

    def specs(self, assign: dict[str, Series]) -> dict[str, LayerSpec]:
        return {n: self.spec(assign.get(n, DENSE)) for n in self.names}

    @staticmethod
    def key(assign: dict[str, Series]) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((n, str(s)) for n, s in assign.items() if not s.is_dense))

    def config(self, assign: dict[str, Series]) -> TASDConfig:
        return TASDConfig({n: self.spec(s) for n, s in assign.items() if not s.is_dense})

    def apply(self, assign: dict[str, Series]) -> nn.Module:
        """The model under ``assign`` (the original one when nothing is assigned)."""
        config = self.config(assign)
        return apply_tasd(self.model, config, calibration=self.calibration) if config.layers else self.model

    def __call__(self, assign: dict[str, Series], step: str) -> EvalPoint:
        key = self.key(assign)
        if key in self.cache:
            self.hits += 1
            return self.cache[key]
        if self.max_evals is not None and self.calls >= self.max_evals:
            raise _Stop
        self.calls += 1
        cost = float(self.cost(self.specs(assign)))
        metric: float | None = None
        error: str | None = None
        try:
            net = self.apply(assign)
            value = float(self.evaluate(net))
            if math.isnan(value):
                error = "evaluate returned NaN"
            else:
                metric = value
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # a failing step is reported and rejected; the search goes on
            error = f"{type(exc).__name__}: {exc}"
        if error is not None:
            self.failures.append(f"{step}: {error}")
        ok = metric is not None and metric >= self.threshold
        point = EvalPoint(len(self.history), dict(key), metric, cost, ok, step, error)
        self.history.append(point)
        self.cache[key] = point
        if self.progress is not None:
            best = min((p.cost for p in self.history if p.ok), default=cost)
            self.progress(self.calls, best)
        return point


# ---------------------------------------------------------------------------------------------
# The methods
# ---------------------------------------------------------------------------------------------


def _paper_greedy(ev: _Evaluator, layers: list[MeasuredLayer]) -> dict[str, Any]:
    order = sorted(((ly.dropped[str(s)], s.effective_density, i, s) for i, ly in enumerate(layers)
                    for s in ly.candidates), key=lambda t: (t[0], t[1], t[2]))
    current: dict[str, Series] = {}
    for _, _, i, s in order:
        name = layers[i].name
        if s.effective_density >= current.get(name, DENSE).effective_density:
            continue  # only a more aggressive candidate applies
        trial = {**current, name: s}
        if ev(trial, f"greedy {name} {s}").ok:
            current = trial  # else: rolled back (current unchanged)
    return {}


def _paper_threshold(ev: _Evaluator, layers: list[MeasuredLayer], stat: str) -> dict[str, Any]:
    sparsity: dict[str, float] = {}
    for ly in layers:
        measured = ly.sparsity_p99 if stat == "p99" else ly.sparsity_mean
        sparsity[ly.name] = 1.0 - ly.pseudo_density if ly.sparsity_mean < NON_RELU_SPARSITY else measured
    breaks = sorted({round(1.0 - s.effective_density - sparsity[ly.name], 12)
                     for ly in layers for s in ly.candidates})

    def assign_at(alpha: float) -> dict[str, Series]:
        out: dict[str, Series] = {}
        for ly in layers:
            ok = [s for s in ly.candidates if round(1.0 - s.effective_density - sparsity[ly.name], 12) <= alpha]
            if ok:
                out[ly.name] = min(ok, key=lambda s: s.effective_density)
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


def _dominates(trial: dict[str, Series], failed: dict[str, Series]) -> bool:
    """``trial`` is at least as aggressive as ``failed`` on every layer (effective density ≤)."""
    return all(trial.get(n, DENSE).effective_density <= s.effective_density for n, s in failed.items())


def _cost_aware(ev: _Evaluator, layers: list[MeasuredLayer], cost: CostFn) -> dict[str, Any]:
    base = cost(ev.specs({}))
    moves: list[tuple[float, float, int, Series]] = []
    for i, ly in enumerate(layers):
        for s in ly.candidates:
            saving = base - cost(ev.specs({ly.name: s}))
            if saving > 0:
                moves.append((ly.damage[str(s)] / saving, -saving, i, s))
    moves.sort(key=lambda t: (t[0], t[1], t[2]))
    remaining = [(layers[i].name, s) for _, _, i, s in moves]
    current: dict[str, Series] = {}
    margin = max(ev.base_metric - ev.threshold, 0.0)
    clear_misses: list[dict[str, Series]] = []  # configs that missed by more than the margin
    skipped = 0
    k = 1  # galloping: double after a success, halve after a failure
    while remaining:
        k = min(k, len(remaining))
        trial = dict(current)
        for name, s in remaining[:k]:
            if s.effective_density < trial.get(name, DENSE).effective_density:
                trial[name] = s
        if any(_dominates(trial, f) for f in clear_misses):
            # At least as aggressive on every layer as a config that clearly missed: under the same
            # monotonicity the clear-miss rule below assumes, it misses too — not worth an evaluation.
            skipped += 1
            ok, clear = False, True
        else:
            point = ev(trial, f"batch of {k}")
            ok = point.ok
            clear = point.metric is None or point.metric < ev.threshold - margin
            if not ok and clear:
                clear_misses.append(trial)
        if ok:
            current = trial
            remaining = [(n, s) for n, s in remaining[k:]
                         if s.effective_density < current.get(n, DENSE).effective_density]
            k *= 2
        elif k == 1:
            name, s = remaining[0]
            remaining = remaining[1:]
            if clear:
                # a clear miss: the layer's more aggressive candidates (more damage) would miss too
                remaining = [(n, t) for n, t in remaining
                             if not (n == name and t.effective_density <= s.effective_density)]
            # a near miss (within the constraint's own margin) may be evaluation noise: keep trying
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


def search(
    model: nn.Module,
    target: str | os.PathLike[str] | Target,
    evaluate: Callable[[nn.Module], float],
    calibration: Sequence[Any],
    mode: Literal["W", "A"] = "W",
    constraint: float | Drop = 0.99,
    method: Method = "cost-aware",
    *,
    holdout_evaluate: Callable[[nn.Module], float] | None = None,
    cost: CostFn | None = None,
    seed: int = 0,
    max_evals: int | None = None,
    layers: Iterable[str] | None = None,
    statistic: Literal["mean", "p99"] = "mean",
    permute: bool = False,
    bias_correction: bool = False,
    model_id: str = "",
    progress: bool = True,
) -> SearchResult:
    """Search a per-layer TASD configuration of ``model`` for ``target`` under ``constraint``.

    Args:
        model: the original model (never modified; each candidate is a transformed copy).
        target: a built-in target name (``"ttc-vegeta-m8"``), a target YAML path, or a Target.
        evaluate: ``evaluate(model) -> float``, higher is better — the *validation* split; the
            search decides on it alone.
        calibration: calibration batches (tensors, dicts of keyword arguments, or argument tuples):
            dense MACs are counted on the first, damage and activation statistics on all.
        mode: ``"W"`` (TASD-W) or ``"A"`` (TASD-A) for every searched layer.
        constraint: a fraction of the original metric in (0, 1] (default 0.99, MLPerf's rule),
            or :class:`Drop` for an absolute drop.
        method: ``"cost-aware"`` (default), ``"paper-greedy"`` or ``"paper-threshold"`` (mode A).
        holdout_evaluate: re-scores the original and the chosen model after the search (the test
            split); reported next to the validation numbers.
        cost: ``cost(config) -> float`` over every searched layer's spec; default
            :class:`~tasder.search.cost.MACCost` (effective MACs).
        seed: seeds torch before the search, so evaluate functions that sample are repeatable.
        max_evals: stop after this many (uncached) evaluations.
        layers: globs of the layers to search (default all ``nn.Linear``/``nn.Conv2d``); the
            rest stay dense.
        statistic: ``paper-threshold``'s S(L): ``"mean"`` or ``"p99"`` of the input sparsity.
        permute: every candidate decomposes in a permuted order of the reduction dim (ours; see
            :class:`~tasder.nn.LayerSpec`); candidates whose series mixes block sizes are left out.
        bias_correction: every candidate corrects its output's mean error on ``calibration`` (ours). The
            measured damage that orders cost-aware's moves is then the corrected error.
        model_id: recorded in the result and the YAML provenance (default: the model's class,
            parameter count and a digest of its weights).
        progress: show a progress line on stderr (only on a terminal).

    Raises:
        ValueError: a bad constraint, method, mode, target, ``layers`` glob, or an original model
            whose metric cannot be computed — all before any search work where possible.
    """
    constraint = check_constraint(constraint)
    if method not in METHODS:
        raise InvalidParameterError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if mode not in ("W", "A"):
        raise InvalidParameterError(f"`mode` must be 'W' or 'A'; got {mode!r}")
    if method == "paper-threshold" and mode != "A":
        raise ValueError("paper-threshold is the paper's TASD-A rule: use mode='A' (or paper-greedy / "
                         "cost-aware for TASD-W)")
    if statistic not in ("mean", "p99"):
        raise InvalidParameterError(f"`statistic` must be 'mean' or 'p99'; got {statistic!r}")
    for option, value in (("permute", permute), ("bias_correction", bias_correction)):
        if not isinstance(value, bool):
            raise InvalidParameterError(f"`{option}` must be True or False; got {value!r}")
    if max_evals is not None and (isinstance(max_evals, bool) or not isinstance(max_evals, int) or max_evals < 1):
        raise InvalidParameterError(f"`max_evals` must be a positive integer or None; got {max_evals!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module; got {type(model).__name__}")
    model_id = model_id or describe_model(model)  # the provenance names the weights searched on
    if not callable(evaluate):
        raise TypeError("`evaluate` must be a callable model -> float")
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
    torch.manual_seed(seed)
    options = {"permute": permute, "bias_correction": bias_correction}
    measured, total_macs, calibration = measure_layers(model, batches, selected, cands, mode, **options)
    mac_cost = MACCost({ly.name: ly.dense_macs for ly in measured},
                       other_macs=total_macs - sum(ly.dense_macs for ly in measured),
                       kept={(ly.name, k): v for ly in measured for k, v in ly.kept.items()})
    cost_fn: CostFn = cost if cost is not None else mac_cost
    prog, update = _progress_callback(progress, f"search {model_id or type(model).__name__} ({method})")
    ev = _Evaluator(model, evaluate, measured, mode, cost_fn, max_evals, update, options=options,
                    calibration=calibration)
    interrupted = False
    extra: dict[str, Any] = {}
    if prog is not None:
        prog.start()
    try:
        base = ev({}, "original")
        if base.metric is None:
            raise ValueError(f"the original model cannot be scored: {base.error}")
        ev.threshold = _threshold(constraint, base.metric)
        ev.base_metric = base.metric
        base = dataclasses.replace(base, ok=True)  # the original is the fallback config
        ev.history[0] = ev.cache[()] = base
        try:
            if method == "paper-greedy":
                extra = _paper_greedy(ev, measured)
            elif method == "paper-threshold":
                extra = _paper_threshold(ev, measured, statistic)
            else:
                extra = _cost_aware(ev, measured, cost_fn)
        except _Stop:
            extra = {"stopped": f"max_evals={max_evals} reached"}
        except KeyboardInterrupt:
            interrupted = True
    finally:
        if prog is not None:
            prog.stop()
    best = min((p for p in ev.history if p.ok), key=lambda p: (p.cost, -(p.metric or 0.0), p.index))
    chosen = {n: next(s for s in ly.candidates if str(s) == best.layers[n])
              for ly in measured for n in [ly.name] if n in best.layers}
    config = ev.config(chosen)
    seconds = time.perf_counter() - start

    hold_orig = hold_final = None
    if holdout_evaluate is not None:
        try:
            hold_orig = float(holdout_evaluate(model))
            hold_final = float(holdout_evaluate(ev.apply(chosen)))
        except KeyboardInterrupt:
            interrupted = True

    rows = []
    for ly in measured:
        s = chosen.get(ly.name, DENSE)
        spec = ev.spec(s)
        rows.append(LayerRow(ly.name, ly.kind, ly.k, ly.dense_macs, str(s), mode, mac_cost.fraction(ly.name, spec),
                             None if s.is_dense else ly.damage.get(str(s)),
                             kernel_size=tuple(int(x) for x in ly.module.weight.shape[2:])))
    assert base.metric is not None and best.metric is not None
    return SearchResult(
        config=config, model_id=model_id, target=tgt.name, mode=mode, method=method,
        constraint=constraint_text(constraint), threshold=ev.threshold,
        metric_original=base.metric, metric_final=best.metric,
        cost_before=base.cost, cost_after=best.cost, evaluations=ev.calls, cache_hits=ev.hits,
        seconds=seconds, layers=rows, history=ev.history, holdout_original=hold_orig,
        holdout_final=hold_final, interrupted=interrupted, failures=ev.failures, extra=extra,
        samples=batch_size(batches[0]),
        holdout_threshold=None if hold_orig is None else _threshold(constraint, hold_orig),
    )
