"""The cost a search minimises: by default the model's effective MACs on a calibration batch.

A cost function takes the per-layer configuration — every searched layer's name → its
:class:`~tasder.nn.LayerSpec` (``dense`` included) — and returns a float, lower is better. Why a
plain callable: the accelerator model (:mod:`tasder.hw`, latency or EDP) can plug in later
without the search knowing anything about it.

:class:`MACCost` counts, per layer, dense MACs × the fraction executed: for TASD-W the series'
effective density (Σ term densities); for TASD-A the *measured* fraction of input elements the
approximation keeps on the calibration data (an already sparse activation keeps fewer than the
series allows). Layers the search does not touch count dense.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from tasder.nn.config import LayerSpec

__all__ = ["CostFn", "MACCost"]

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
