"""The cost a search minimises: effective MACs (default) or modelled cycles/energy/EDP on a design.

A cost function takes the per-layer configuration — every searched layer's name → its
:class:`~tasder.nn.LayerSpec` (``dense`` included) — and returns a float, lower is better. Why a
plain callable: the accelerator model (:mod:`tasder.hw`, latency or EDP) can plug in later
without the search knowing anything about it.

:class:`MACCost` counts, per layer, dense MACs × the fraction executed: for TASD-W the series'
effective density (Σ term densities); for TASD-A the *measured* fraction of input elements the
approximation keeps on the calibration data (an already sparse activation keeps fewer than the
series allows). Layers the search does not touch count dense.

:class:`HardwareCost` runs the configuration through the analytical accelerator model
(:mod:`tasder.hw`): every Linear of the model becomes a GEMM and every Conv2d a convolution, whose
operands carry their measured densities (weights and inputs, as ``unstructured(d)``), the searched operand of a
configured layer carries its TASD series instead, each distinct (shape, densities) pair is mapped
once (the mapper's best mapping is cached), and the network's cycles, energy or EDP come back.
"""


from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tasder.errors import InvalidParameterError
from tasder.nn.config import LayerSpec
from tasder.search.result import HardwareSummary, SearchResult

if TYPE_CHECKING:
    from tasder.hw import Architecture, MapperResult, Network, NetworkResult, Problem

__all__ = ["COST_METRICS", "DEFAULT_MAPPER_BUDGET", "CostFn", "HardwareCost", "MACCost", "edp_vs_tc"]

#: What :class:`HardwareCost` can return, with its unit.
COST_METRICS: dict[str, str] = {"edp": "J·s", "energy": "pJ", "cycles": "cycles"}

#: Mappings the mapper tries per distinct layer, here, in ``tasder search --cost``, ``tasder apply
#: --design`` and ``tasder demo``: the best mapping found depends on the budget, so one budget
#: everywhere is what makes one config's modelled EDP the same number in every table, plot and line.
DEFAULT_MAPPER_BUDGET = 3000

#: ``cost(config) -> float``: config maps every searched layer to its spec; lower is better.
CostFn = Callable[[Mapping[str, LayerSpec]], float]


@dataclass(frozen=True)
class MACCost:
    """Effective MACs of the whole model under a per-layer config (see the module docstring).

    Attributes:
        dense_macs: dense MACs per searched layer (on the calibration batch the search counted).
        other_macs: dense MACs of every layer the search does not touch.
        kept: measured kept fraction per ``(layer, series)`` for TASD-A; missing pairs fall back
            to the series' effective density.
    """

    dense_macs: Mapping[str, int]
    other_macs: int = 0
    kept: Mapping[tuple[str, str], float] = field(default_factory=dict)

    @property
    def total_dense(self) -> int:
        """Dense MACs of the whole model."""
        return sum(self.dense_macs.values()) + self.other_macs

    def fraction(self, name: str, spec: LayerSpec) -> float:
        """Fraction of ``name``'s dense MACs executed under ``spec``."""
        if spec.is_dense:
            return 1.0
        if spec.mode == "A":
            return self.kept.get((name, str(spec.series)), spec.series.effective_density)
        return spec.series.effective_density

    def __call__(self, config: Mapping[str, LayerSpec]) -> float:
        total = float(self.other_macs)
        for name, macs in self.dense_macs.items():
            spec = config.get(name)
            total += macs * (1.0 if spec is None else self.fraction(name, spec))
        return total


class HardwareCost:
    """Modelled cycles, energy or EDP of a whole model on an accelerator design.

    Args:
        design: a shipped design name (``"ttc-vegeta-m8"``) or an :class:`~tasder.hw.Architecture`.
        problems: every GEMM layer of the model by name, with its *baseline* operand densities
            (``a_density`` weights, ``b_density`` inputs); :meth:`for_model` builds them.
        mode: which operand a configured layer's series replaces: ``"W"`` → A (weights),
            ``"A"`` → B (inputs). A spec's own mode wins when it differs.
        metric: ``"edp"`` (J·s, total energy × total delay), ``"energy"`` (pJ) or ``"cycles"``.
        budget: mappings the mapper tries per distinct layer (shared by layers of equal shape).
        seed: mapper seed (results are deterministic per seed).
        cache_dir: also keep every mapper search on disk there (:class:`tasder.hw.executor.ResultCache`,
            content-keyed by design, layer, densities, settings and the model's source), so another
            process — the next ``tasder demo`` — reads it instead of searching; ``True`` = the default
            folder (``$TASDER_HW_CACHE`` or ``~/.cache/tasder/hw``). The results are bit for bit
            those of a fresh search. None (default): in memory only.

    Why map per (shape, densities) and cache: a search evaluates hundreds of configs but each
    layer only has a handful of candidate series, so the mapper runs a few times per layer.
    """

    def __init__(self, design: str | Architecture, problems: Mapping[str, Problem], mode: Literal["W", "A"] = "W",
                 *, metric: str = "edp", budget: int = DEFAULT_MAPPER_BUDGET, seed: int = 0,
                 cache_dir: str | os.PathLike[str] | bool | None = None) -> None:
        from tasder.hw import Architecture, load_architecture
        from tasder.hw.mapper import check_budget

        check_budget(budget)  # now, not at the first evaluation after minutes of work
        if metric not in COST_METRICS:
            raise InvalidParameterError(f"metric={metric!r}: expected one of {', '.join(COST_METRICS)}")
        if mode not in ("W", "A"):
            raise InvalidParameterError(f"mode={mode!r}: expected 'W' (weights) or 'A' (activations)")
        if not problems:
            raise ValueError("HardwareCost needs at least one layer (problems is empty)")
        self.arch = design if isinstance(design, Architecture) else load_architecture(design)
        self.problems = dict(problems)
        self.mode = mode
        self.metric = metric
        self.budget = budget
        self.seed = seed
        self._cache: dict[Hashable, MapperResult] = {}  # tasder.hw.mapping_key → the best mapping
        self.cache_dir: Path | None = None
        if cache_dir is not None and cache_dir is not False:
            from tasder.hw.executor import default_cache_dir

            self.cache_dir = default_cache_dir() if cache_dir is True else Path(cache_dir)

    @property
    def unit(self) -> str:
        """The unit of what :meth:`__call__` returns."""
        return COST_METRICS[self.metric]

    @property
    def design(self) -> str:
        return self.arch.name

    @classmethod
    def for_model(cls, model: Any, example: Any, design: str | Architecture, mode: Literal["W", "A"] = "W", *,
                  metric: str = "edp", budget: int = DEFAULT_MAPPER_BUDGET, seed: int = 0, per_sample: bool = True,
                  word_bits: int = 16, im2col: bool = False,
                  cache_dir: str | os.PathLike[str] | bool | None = None) -> HardwareCost:
        """Trace ``model`` on ``example`` (a calibration batch) and measure each layer's operand densities.

        The layers are :func:`tasder.workloads.workload_from_model`'s (one per Linear/Conv2d module,
        weights and inputs at their measured densities). ``per_sample`` (default) divides each
        GEMM's N by the batch size, so the workload is one inference — the batch-1 setting the
        TASD paper evaluates — while densities are averaged over the whole batch. Convolutions are
        native (their sliding windows modelled) unless ``im2col``.
        """
        from tasder.hw.mapper import check_budget
        from tasder.workloads import workload_from_model

        check_budget(budget)  # before tracing the model
        network = workload_from_model(model, example, per_sample=per_sample, word_bits=word_bits, im2col=im2col)
        return cls(design, {p.name: p for p in network.layers}, mode, metric=metric, budget=budget, seed=seed,
                   cache_dir=cache_dir)

    def workload(self, config: Mapping[str, LayerSpec] | None = None, name: str = "model") -> Network:
        """The network as the design sees it under ``config`` (layers not in it keep their baseline)."""
        from tasder.hw import Network
        from tasder.workloads import with_series

        config = config or {}
        unknown = sorted(set(config) - set(self.problems))
        if unknown:
            raise KeyError(f"HardwareCost: layer(s) {', '.join(unknown)} were not traced "
                           f"(traced: {', '.join(self.problems)})")
        return Network(name, tuple(with_series(p, config.get(lname), self.mode) for lname, p in self.problems.items()))

    def evaluate(self, config: Mapping[str, LayerSpec] | None = None, name: str = "model") -> NetworkResult:
        """Every layer mapped and evaluated under ``config`` (each distinct layer mapped once, ever)."""
        from tasder.hw import map_network
        from tasder.hw.mapper import mapping_key

        objective = "edp" if self.metric == "edp" else self.metric
        network = self.workload(config, name)
        if self.cache_dir is not None:
            missing = {mapping_key(p): p for p in network.layers if mapping_key(p) not in self._cache}
            if missing:
                from tasder.hw.executor import MapperSettings, ResultCache, run_problems

                settings = MapperSettings(budget=self.budget, objective=objective, seed=self.seed)
                found, _ = run_problems([(self.arch, p) for p in missing.values()], settings, executor="serial",
                                        cache=ResultCache(self.cache_dir))
                self._cache.update(zip(missing, found, strict=True))
        return map_network(self.arch, network, cache=self._cache, budget=self.budget, objective=objective,
                           seed=self.seed)

    def totals(self, config: Mapping[str, LayerSpec] | None = None) -> dict[str, float]:
        """``cycles``, ``energy_pj``, ``seconds`` and ``edp_js`` of the whole model under ``config``."""
        r = self.evaluate(config)
        return {"cycles": r.cycles, "energy_pj": r.energy_pj, "seconds": r.cycles / self.arch.clock_hz,
                "edp_js": r.edp}

    def summarize(self, result: SearchResult, tc: HardwareCost) -> HardwareSummary:
        """``result``'s cost before and after next to ``tc`` (this cost's metric on TC, e.g.
        ``HardwareCost("tc", self.problems, self.mode, metric=self.metric)``) running the original model."""
        base = tc({})
        return HardwareSummary(design=self.design, metric=self.metric, unit=self.unit, tc_original=base,
                               before_vs_tc=result.cost_before / base if base else float("nan"),
                               after_vs_tc=result.cost_after / base if base else float("nan"))

    def __call__(self, config: Mapping[str, LayerSpec]) -> float:
        t = self.totals(config)
        return {"edp": t["edp_js"], "energy": t["energy_pj"], "cycles": t["cycles"]}[self.metric]

    def __repr__(self) -> str:
        return (f"HardwareCost(design={self.design!r}, mode={self.mode!r}, metric={self.metric!r}, "
                f"layers={len(self.problems)}, budget={self.budget})")



def edp_vs_tc(cost: HardwareCost, config: Mapping[str, LayerSpec] | None = None) -> dict[str, float]:
    """The one normalisation every EDP tasder prints uses: × TC running the original model.

    ``cost`` models a design (its problems, mode, budget and seed are reused for TC). Returns
    ``tc_original`` (J·s), ``before_js`` / ``after_js`` (the original model and ``config`` on the
    design, J·s) and ``before_vs_tc`` / ``after_vs_tc`` (each ÷ ``tc_original``).
    """
    tc = HardwareCost("tc", cost.problems, cost.mode, metric="edp", budget=cost.budget, seed=cost.seed,
                      cache_dir=cost.cache_dir)
    base = tc.totals({})["edp_js"]
    before = cost.totals({})["edp_js"]
    after = cost.totals(config or {})["edp_js"]
    return {"tc_original": base, "before_js": before, "after_js": after,
            "before_vs_tc": before / base if base else float("nan"),
            "after_vs_tc": after / base if base else float("nan")}
