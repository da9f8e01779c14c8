"""TASDER searches on the built-in models: MAC and EDP cut, held-out metric ratio, the confidence bound,
evaluations and time.

Prints one line per (workload, mode, method, options)::

    search <workload> <mode> <method>[+options]: mac_cut=<%> edp_cut=<%> metric_ratio=<test ratio>
        test_bound=<paired bound on test> bound=<validation bound> evals=<n> skipped=<n> seconds=<s>

The search decides on each zoo entry's validation split; ``metric_ratio`` is the *test* split metric
of the chosen config over the original model's, measured once after the search, and ``test_bound``
the paired lower bound of that ratio on the test split at the same confidence (how sure the test
split itself is). ``bound`` is the validation bound the search accepted the config with (the zoo's
evaluators return per-example scores; ``--confidence``, default 0.9). The MAC cut is over the whole
model's dense Linear/Conv2d MACs on the first calibration batch (``count_macs``): TASD-W layers count
their series' effective density, TASD-A layers the measured kept fraction. ``edp_cut`` is the
accelerator model's (:class:`~tasder.search.cost.HardwareCost`): EDP of the chosen config on
``ttc-vegeta-m8`` against the original model on the dense tensor core ``tc`` (the TASD paper's
Fig. 12 normalisation), one inference, measured operand densities.

    python benchmarks/bench_search.py [--only digits|minilm] [--minilm-val-n 1500] [--minilm-n 2000]
        [--options paper,ours] [--minilm-options paper,act,recon] [--confidence 0.9] [--no-stages]
        [--greedy-evals 40] [--equal-budget] [--optimum] [--progress] [--max-seconds S] [--save DIR]
        [--chain FIRST:LAST]

Workloads and option sets:

* ``digits-cnn-sparse-95`` (TASD-W) and ``digits-cnn`` (TASD-A; also TASD-W and ``auto``, the dense
  weights): ``--options``: ``paper`` (the methods
  as the paper has them), ``ours`` (``permute`` + ``bias_correction``, and for TASD-W activation-aware
  scores), ``bc`` (bias correction alone), ``perm`` (permutation alone), ``act``, ``recon`` (as for
  MiniLM); ``+`` joins sets (``perm+bc``: ours with magnitude scores).
* ``minilm``: all 36 linears, ``mode=auto`` (TASD-W or TASD-A per layer) and TASD-A alone;
  ``--minilm-options``: ``paper`` (magnitude scores), ``act`` (TASD-W ranks by |W|·‖X‖), ``recon``
  (``act`` + the kept weights refit from the calibration activations). The MiniLM searches replay
  the unchanged encoder layers (the entry's ``stages``) unless ``--no-stages``. paper-greedy walks
  every (layer, candidate) pair and is capped at ``--greedy-evals`` evaluations there.

``--equal-budget`` adds a ``cost-aware(max_evals=N)`` line, N = the evaluations the paper method of
the same workload used. ``--optimum`` adds two ``optimum`` lines per digits workload and option set: every
per-layer combination scored cheapest first, until one meets the constraint on validation by the
point rule (``optimum(point)``) and by the paired bound at ``--confidence`` (``optimum(bound0.9)``):
they tell a search that missed a target from a target no config reaches.

``--chain FIRST:LAST`` runs no search: it scores the configs at positions FIRST..LAST of
cost-aware's ranked chain (its moves applied in order, what phase 1 bisects) on the validation split
and prints a line each: MAC cut, validation ratio, paired bound, how many examples got worse and
better, pass or miss. It shows whether the metric is monotone along the order, or noise near the
constraint decides.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from tasder import zoo
from tasder.io import atomic_write_text
from tasder.nn import apply_tasd, count_macs
from tasder.nn.config import TASDConfig
from tasder.scores import as_scores
from tasder.search import search
from tasder.search.acceptance import Acceptance, ratio_lower_bound
from tasder.search.cost import HardwareCost
from tasder.search.methods import default_layers, layer_mac_cost, measure_layers, ranked_chain, select_layers
from tasder.targets import candidate_series

#: The option sets ``--options`` (digits) and ``--minilm-options`` choose from; ``a+b`` joins sets
#: (``perm+bc`` is ``ours`` with magnitude scores, what ``ours`` was before activation-aware scores).
OPTIONS: dict[str, dict[str, Any]] = {
    "paper": {}, "bc": {"bias_correction": True}, "perm": {"permute": True},
    "ours": {"permute": True, "bias_correction": True, "score": "activation"},
    "act": {"score": "activation"}, "recon": {"score": "activation", "reconstruct": True},
}
#: Options that choose or refit TASD-W weights: a TASD-A search runs an option set without them.
W_ONLY = ("score", "reconstruct")


def _logged(evaluate: Any, label: str) -> Any:
    """``evaluate`` that prints one stderr line per call: a long search (MiniLM, all layers) shows
    where it is while it runs instead of one line at its end."""
    start = time.perf_counter()
    calls = 0

    def run(model: Any) -> Any:
        nonlocal calls
        t0 = time.perf_counter()
        out = evaluate(model)
        calls += 1
        now = time.perf_counter()
        print(f"  [{label}] evaluation {calls}: metric {float(out):.4f} in {now - t0:.1f} s "
              f"({now - start:.0f} s since the search began)", file=sys.stderr, flush=True)
        return out

    return run


def option_set(variant: str, mode: str) -> dict[str, Any] | None:
    """The search options of ``variant`` (``ours``, ``perm+bc``...) in ``mode``: the TASD-W-only ones
    dropped for mode A. None for an unknown name."""
    options: dict[str, Any] = {}
    for part in variant.split("+"):
        if part not in OPTIONS:
            return None
        options.update(OPTIONS[part])
    return {k: v for k, v in options.items() if k not in W_ONLY} if mode == "A" else options

#: (workload, mode, methods, layers: None = every Linear/Conv2d)
RUNS: list[tuple[str, str, tuple[str, ...]]] = [
    ("digits-cnn-sparse-95", "W", ("paper-greedy", "cost-aware")),
    ("digits-cnn", "A", ("paper-threshold", "paper-greedy", "cost-aware")),
    ("digits-cnn", "W", ("paper-greedy", "cost-aware")),
    ("digits-cnn", "auto", ("cost-aware",)),
    ("minilm", "auto", ("cost-aware",)),
    ("minilm", "A", ("paper-threshold", "cost-aware", "paper-greedy")),
]


def optimum(entry: zoo.ZooModel, mode: str, constraint: float, confidence: float,
            options: dict[str, Any]) -> tuple[dict[str, tuple[TASDConfig, int]], float]:
    """The cheapest configs (by the search's cost) accepted on the validation split by the point rule
    (``"point"``) and by the paired bound at ``confidence`` (``"bound"``), found by scoring every
    per-layer combination cheapest first; returns {rule: (config, evaluations until found)} and the
    seconds. One pass serves both rules (at confidence ≥ 0.5 a config the bound accepts has its point
    estimate ≥ the threshold too, so the point optimum comes first)."""
    assert entry.model is not None
    start = time.perf_counter()
    model = entry.model.eval()
    evaluate = entry.metadata["evaluate_val"]
    layers, total, calibration = measure_layers(model, entry.calibration, select_layers(model, None),
                                                candidate_series("ttc-vegeta-m8"), mode, **options)
    cost = layer_mac_cost(layers, total)
    metric0, s0 = as_scores(evaluate(model))
    assert s0 is not None, "the zoo's evaluators return per-example scores"
    bound_rule = Acceptance(constraint, constraint * metric0, confidence, s0)
    configs = []
    for combo in itertools.product(*[[None, *ly.candidates] for ly in layers]):
        specs = {ly.name: s for ly, s in zip(layers, combo, strict=True) if s is not None}
        configs.append((cost(specs), sorted((n, str(sp.series)) for n, sp in specs.items()), TASDConfig(specs)))
    configs.sort(key=lambda t: (t[0], t[1]))
    found: dict[str, tuple[TASDConfig, int]] = {}
    evals = 1
    for _, _, config in configs:
        if not config.layers:  # the original: meets any constraint ≤ 1 by both rules
            metric, per = metric0, s0
        else:
            evals += 1
            metric, per = as_scores(evaluate(apply_tasd(model, config, calibration=calibration)))
        if "point" not in found and metric >= constraint * metric0:
            found["point"] = (config, evals)
        if "bound" not in found and bound_rule.judge(metric, per)[0]:
            found["bound"] = (config, evals)
        if len(found) == 2:
            break
    return found, time.perf_counter() - start


def chain_curve(entry: zoo.ZooModel, name: str, mode: str, label: str, constraint: float, confidence: float,
                options: dict[str, Any], span: tuple[int, int], layers: tuple[str, ...] | None) -> None:
    """Score every distinct config of cost-aware's ranked chain at positions span[0]..span[1] on the
    validation split (full forwards, no search): how the metric, the paired bound and the examples
    that got worse / better behave along the order cost-aware's bisection assumes monotone."""
    assert entry.model is not None
    model = entry.model.eval()
    evaluate = entry.metadata["evaluate_val"]
    measured, total, calibration = measure_layers(
        model, entry.calibration, select_layers(model, None if layers is None else list(layers)),
        candidate_series("ttc-vegeta-m8"), mode, **options, input_statistics=False, effect=True,
        stages=entry.metadata.get("stages"))
    cost = layer_mac_cost(measured, total)
    chain = ranked_chain(measured, cost)
    metric0, s0 = as_scores(evaluate(model))
    assert s0 is not None, "the zoo's evaluators return per-example scores"
    rule = Acceptance(constraint, constraint * metric0, confidence, s0)
    dense = cost({})
    previous: dict[str, Any] | None = None
    for k in range(max(span[0], 1), min(span[1], len(chain)) + 1):
        config = chain[k - 1]
        if config == previous:  # the move at k changed nothing (its layer already had a harsher spec)
            continue
        previous = config
        metric, per = as_scores(evaluate(apply_tasd(model, TASDConfig(config), calibration=calibration)))
        ok, bound = rule.judge(metric, per)
        changes = rule.changes(per)
        assert changes is not None, "the zoo's evaluators return per-example scores"
        worse, better = changes
        print(f"chain {name} {mode} cost-aware{label} k={k}/{len(chain)}: "
              f"mac_cut={100 * (1 - cost(config) / dense):.1f}% "
              f"val_ratio={metric / metric0:.4f} bound={_fmt(bound)} worse={worse} better={better} "
              f"{'pass' if ok else 'miss'}", flush=True)


def _w_only(variant: str) -> bool:
    """True when a part of ``variant`` consists of TASD-W-only options (``act``, ``recon``): a TASD-A
    run of it would repeat the run without that part."""
    return any(OPTIONS[p] and set(OPTIONS[p]) <= set(W_ONLY) for p in variant.split("+") if p in OPTIONS)


def distinct_sets(variants: str, mode: str) -> list[tuple[str, dict[str, Any]]]:
    """``(name, options)`` of the comma-separated option sets ``variants`` that differ in ``mode``: a set
    whose options equal an earlier one's there (``ours`` after ``perm+bc`` for TASD-A), or that
    only adds TASD-W options to a TASD-A run, would repeat a run. An unknown name: SystemExit."""
    out: list[tuple[str, dict[str, Any]]] = []
    for variant in filter(None, variants.split(",")):
        options = option_set(variant, mode)
        if options is None:
            raise SystemExit(f"unknown option set {variant!r}; choose from {', '.join(OPTIONS)} (join with +)")
        if not (mode == "A" and _w_only(variant)) and all(options != o for _, o in out):
            out.append((variant, options))
    return out


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run only workloads whose name contains this")
    parser.add_argument("--modes", default="", help="comma-separated subset of modes to run (W, A, auto)")
    parser.add_argument("--minilm-val-n", type=int, default=None)
    parser.add_argument("--minilm-n", type=int, default=None)
    parser.add_argument("--constraint", type=float, default=0.99)
    parser.add_argument("--confidence", type=float, default=0.9)
    parser.add_argument("--equal-budget", action="store_true",
                        help="also run cost-aware with max_evals = the paper method's evaluation count")
    parser.add_argument("--methods", default="", help="comma-separated subset of methods to run")
    parser.add_argument("--options", default="paper,ours",
                        help="digits: comma-separated: paper (no options), ours (permute + bias_correction + "
                             "activation-aware TASD-W scores), bc, perm, act, recon; join sets with +")
    parser.add_argument("--minilm-options", default="paper,act,recon",
                        help="minilm: comma-separated: paper (magnitude), act (activation-aware scores), recon "
                             "(activation-aware + reconstruction), bc (bias correction)")
    parser.add_argument("--greedy-evals", type=int, default=40, help="cap of paper-greedy on minilm")
    parser.add_argument("--no-stages", action="store_true", help="evaluate MiniLM configs with full forwards")
    parser.add_argument("--progress", action="store_true",
                        help="print a line per evaluation to stderr (its metric, seconds, time since start)")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="search(max_seconds=...): start no evaluation after this many seconds")
    parser.add_argument("--save", metavar="DIR", default=None,
                        help="write each search's result (config, every evaluation in order) as JSON to DIR")
    parser.add_argument("--chain", metavar="FIRST:LAST", default=None,
                        help="instead of searching, score the configs at positions FIRST..LAST of cost-aware's "
                             "ranked chain on the validation split (a line each)")
    parser.add_argument("--optimum", action="store_true",
                        help="also find the best existing config on the digits workloads (slow: minutes)")
    args = parser.parse_args()
    span = None
    if args.chain is not None:
        try:
            first, last = (int(x) for x in args.chain.split(":"))
        except ValueError:
            parser.error(f"--chain: expected FIRST:LAST (two positions, e.g. 20:80); got {args.chain!r}")
        if not 1 <= first <= last:
            parser.error(f"--chain: expected 1 <= FIRST <= LAST; got {args.chain!r}")
        span = (first, last)
    wanted = set(filter(None, args.methods.split(",")))
    modes = set(filter(None, args.modes.split(",")))
    loaded: dict[str, Any] = {}
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} load average {os.getloadavg()[0]:.2f} "
          f"(2 cores; times under load are inflated)", flush=True)
    for name, mode, methods in RUNS:
        if args.only not in name or (modes and mode not in modes):
            continue
        minilm = name == "minilm"
        if name not in loaded:
            kwargs = {"n": args.minilm_n, "val_n": args.minilm_val_n} if minilm else {"progress": False}
            loaded[name] = zoo.load(name, **kwargs)
        entry = loaded[name]
        assert entry.model is not None and entry.evaluate is not None
        variants = args.minilm_options if minilm else args.options
        layers = None if minilm else default_layers(name, mode)
        if span is not None:  # the chain alone: no search, no test split, no hardware model
            if not wanted or "cost-aware" in wanted:
                for variant, options in distinct_sets(variants, mode):
                    chain_curve(entry, name, mode, "" if variant == "paper" else f"+{variant}", args.constraint,
                                args.confidence, options, span, layers)
            continue
        original_test = entry.evaluate(entry.model)
        # The README's table was made with a mapper budget of 2000 per layer: kept so it reproduces.
        hw_mode = "W" if mode == "auto" else mode
        edp_tc = HardwareCost.for_model(entry.model, entry.calibration[0], "tc", hw_mode, budget=2000)({})  # type: ignore[arg-type]
        edp_ttc = HardwareCost.for_model(entry.model, entry.calibration[0], "ttc-vegeta-m8", hw_mode,  # type: ignore[arg-type]
                                         budget=2000)
        for variant, options in distinct_sets(variants, mode):
            paper_evals = None
            runs: list[tuple[str, int | None]] = [(m, None) for m in methods if not wanted or m in wanted]
            if args.equal_budget:
                runs.append(("cost-aware", -1))
            for method, budget in runs:
                max_evals = paper_evals if budget == -1 else None
                if budget == -1 and max_evals is None:
                    continue
                if minilm and method == "paper-greedy":
                    max_evals = args.greedy_evals
                evaluate_val = entry.metadata["evaluate_val"]
                if args.progress:
                    evaluate_val = _logged(evaluate_val, f"{name} {mode} {method}+{variant}")
                r = search(entry.model, "ttc-vegeta-m8", evaluate_val, entry.calibration, mode,  # type: ignore[arg-type]
                           args.constraint, method, layers=layers, model_id=name, max_evals=max_evals,  # type: ignore[arg-type]
                           progress=False, confidence=args.confidence, max_seconds=args.max_seconds,
                           stages=None if args.no_stages else entry.metadata.get("stages"), **options)
                if method not in ("cost-aware",) and paper_evals is None:
                    paper_evals = r.evaluations
                model = apply_tasd(entry.model, r.config, calibration=entry.calibration) if r.config.layers \
                    else entry.model
                macs = count_macs(model, entry.calibration[0])
                test = entry.evaluate(model)
                _, s_test = as_scores(test)
                _, s_orig = as_scores(original_test)
                test_bound = None if s_test is None or s_orig is None else \
                    ratio_lower_bound(s_test, s_orig, args.confidence)
                label = (method if max_evals is None else f"{method}(max_evals={max_evals})") + \
                    ("" if variant == "paper" else f"+{variant}")
                edp_cut = 100 * (1 - edp_ttc(r.config.layers) / edp_tc)
                modes_used = sorted({s.mode for s in r.config.layers.values()})
                print(f"search {name} {mode} {label}: mac_cut={100 * (1 - macs.density):.1f}% "
                      f"edp_cut={edp_cut:.1f}% metric_ratio={float(test) / float(original_test):.4f} "
                      f"test_bound={_fmt(test_bound)} bound={_fmt(r.bound_final)} "
                      f"val_ratio={r.metric_ratio:.4f} evals={r.evaluations} skipped={r.skipped} "
                      f"seconds={r.seconds:.1f} layers={len(r.config.layers)}{''.join(modes_used)} "
                      f"replayed={r.extra.get('prefix_replayed', 0):.2f} load={os.getloadavg()[0]:.2f}",
                      flush=True)
                # where the search's time went: everything before the first evaluation (the
                # per-(layer, candidate) measurements), the original, then each evaluation
                timed = [p.seconds for p in r.history if p.seconds is not None]
                print(f"  time: setup={r.seconds - sum(timed):.1f}s original={timed[0]:.1f}s "
                      f"evals={','.join(f'{t:.0f}' for t in timed[1:])}s", flush=True)
                if args.save:
                    record = {**r.as_dict(), "test_ratio": float(test) / float(original_test),
                              "test_bound": test_bound, "mac_cut": 1 - macs.density, "edp_cut": edp_cut / 100}
                    path = Path(args.save) / f"{name}-{mode}-{label}.json".replace("/", "_")
                    path.parent.mkdir(parents=True, exist_ok=True)
                    atomic_write_text(path, json.dumps(record, indent=1, default=str))
        if args.optimum and not minilm:
            _, s_orig = as_scores(original_test)
            assert s_orig is not None
            for variant, options in distinct_sets(variants, mode):
                found, seconds = optimum(entry, mode, args.constraint, args.confidence, options)
                for rule, (config, evals) in found.items():
                    model = apply_tasd(entry.model, config, calibration=entry.calibration) if config.layers \
                        else entry.model
                    macs = count_macs(model, entry.calibration[0])
                    val, s_val = as_scores(entry.metadata["evaluate_val"](model))
                    val0, s_val0 = as_scores(entry.metadata["evaluate_val"](entry.model))
                    test, s_test = as_scores(entry.evaluate(model))
                    assert s_val is not None and s_val0 is not None and s_test is not None
                    label = "point" if rule == "point" else f"bound{args.confidence:g}"
                    print(f"search {name} {mode} optimum({label}){'' if variant == 'paper' else '+' + variant}: "
                          f"mac_cut={100 * (1 - macs.density):.1f}% "
                          f"edp_cut={100 * (1 - edp_ttc(config.layers) / edp_tc):.1f}% "
                          f"metric_ratio={test / float(original_test):.4f} "
                          f"test_bound={_fmt(ratio_lower_bound(s_test, s_orig, args.confidence))} "
                          f"bound={_fmt(ratio_lower_bound(s_val, s_val0, args.confidence))} "
                          f"val_ratio={val / val0:.4f} evals={evals} seconds={seconds:.1f} "
                          f"config={','.join(f'{n}={sp.series}' for n, sp in sorted(config.layers.items()))}",
                          flush=True)


if __name__ == "__main__":
    main()
