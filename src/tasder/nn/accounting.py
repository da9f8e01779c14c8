"""Count the multiply-accumulates (MACs) a model runs, dense and with TASD, from one forward pass.

Why measure rather than compute from shapes: the dense count of a Linear depends on how many
tokens reach it and that of a Conv2d on its output size, both known only for a concrete input;
and what TASD-A saves depends on the *data* (an activation that is already sparse keeps fewer
than the series allows), so it is measured on the same pass.

Per layer (every ``nn.Linear`` and ``nn.Conv2d``, plain or TASD):

* dense MACs — Linear: ``in · out · tokens`` (tokens = input elements / in); Conv2d:
  ``O · C/groups · R · S · P · Q · N`` (output elements × C/groups·R·S);
* effective MACs — plain layer: the dense count; TASD-W: dense × the series' effective density
  (Σ term densities); TASD-A: dense × the fraction of input elements the approximation kept
  (nonzero), measured on this pass from the layer's counters.

>>> import torch
>>> from torch import nn
>>> report = count_macs(nn.Linear(8, 4), torch.randn(3, 8))
>>> report.total_dense, report.total_effective, report.samples, report.dense_per_inference
(96, 96.0, 3, 32.0)

Counts are totals over the example's samples (its batch); ``samples`` and the ``*_per_inference``
properties give MACs per inference (one sample), the unit tasder prints everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tasder._batch import batch_size
from tasder.nn.layers import TASDLayer
from tasder.nn.trace import GemmCall, trace_gemms

__all__ = ["LayerMACs", "MACReport", "count_macs"]


@dataclass
class LayerMACs:
    """The MACs of one layer over the counted forward pass (all its calls summed).

    Attributes:
        name: the layer's name in ``named_modules``.
        kind: ``"Linear"`` or ``"Conv2d"``.
        mode: ``"dense"`` (plain layer), ``"W"`` or ``"A"``.
        series: the series string (``"dense"`` for a plain layer).
        calls: how many times the layer ran.
        dense_macs: MACs of the dense layer.
        effective_macs: MACs TASD executes (see the module docstring).
    """

    name: str
    kind: str
    mode: str
    series: str
    calls: int = 0
    dense_macs: int = 0
    effective_macs: float = 0.0

    @property
    def density(self) -> float:
        """effective / dense (1.0 for a plain layer; NaN for a layer that did no work)."""
        return self.effective_macs / self.dense_macs if self.dense_macs else float("nan")


@dataclass
class MACReport:
    """Per-layer and total MACs of one forward pass (:func:`count_macs`).

    Attributes:
        layers: per layer, MACs summed over the pass (all ``samples`` of the example).
        samples: samples in the counted example (its batch size): divide by it for one inference.
    """

    layers: list[LayerMACs] = field(default_factory=list)
    samples: int = 1

    @property
    def dense_per_inference(self) -> float:
        """Dense MACs of one inference (one sample): :attr:`total_dense` / :attr:`samples`."""
        return self.total_dense / max(self.samples, 1)

    @property
    def effective_per_inference(self) -> float:
        """Effective MACs of one inference (one sample)."""
        return self.total_effective / max(self.samples, 1)

    @property
    def total_dense(self) -> int:
        """Dense MACs of every counted layer."""
        return sum(layer.dense_macs for layer in self.layers)

    @property
    def total_effective(self) -> float:
        """Effective MACs of every counted layer."""
        return sum(layer.effective_macs for layer in self.layers)

    @property
    def density(self) -> float:
        """total effective / total dense (NaN when nothing was counted)."""
        dense = self.total_dense
        return self.total_effective / dense if dense else float("nan")

    def to_rows(self) -> list[dict[str, Any]]:
        """One dict per layer, then a ``TOTAL`` row: ready for a table, CSV or JSON."""
        rows: list[dict[str, Any]] = [
            {
                "layer": layer.name,
                "kind": layer.kind,
                "mode": layer.mode,
                "series": layer.series,
                "calls": layer.calls,
                "dense_macs": layer.dense_macs,
                "effective_macs": layer.effective_macs,
                "density": layer.density,
            }
            for layer in self.layers
        ]
        rows.append({
            "layer": "TOTAL",
            "kind": "",
            "mode": "",
            "series": "",
            "calls": sum(layer.calls for layer in self.layers),
            "dense_macs": self.total_dense,
            "effective_macs": self.total_effective,
            "density": self.density,
        })
        return rows

    def to_table(self) -> str:
        """A plain-text table of :meth:`to_rows`, in MACs per inference (the batch is named above it)."""
        rows = self.to_rows()
        n = max(self.samples, 1)
        width = max([len("layer")] + [len(r["layer"]) for r in rows])
        lines = [f"MACs per inference (one sample; counted on a batch of {n}): {self.dense_per_inference:,.0f} dense, "
                 f"{self.effective_per_inference:,.0f} effective ({self.density:.4f} of dense)",
                 f"{'layer':<{width}}  {'kind':<6} {'mode':<5} {'series':<12} {'dense MACs':>14} "
                 f"{'effective MACs':>16} {'density':>8}"]
        for r in rows:
            lines.append(f"{r['layer']:<{width}}  {r['kind']:<6} {r['mode']:<5} {r['series']:<12} "
                         f"{r['dense_macs'] / n:>14,.0f} {r['effective_macs'] / n:>16,.0f} {r['density']:>8.4f}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_table()


def count_macs(
    model: nn.Module,
    example: torch.Tensor | tuple[Any, ...] | list[Any] | Mapping[str, Any],
) -> MACReport:
    """Run ``model`` once on ``example`` and count its MACs (:func:`~tasder.nn.trace_gemms`'s pass:
    eval mode, no gradient, the model's modes restored afterwards).

    Args:
        model: any module.
        example: one tensor (``model(x)``), a tuple/list of positional arguments, or a mapping of
            keyword arguments (``model(**inputs)``, e.g. a tokenizer's output).

    Returns:
        A :class:`MACReport`, layers in ``named_modules`` order (only those that ran; a layer
        called more than once sums its calls).

    TASD-A layers count their inputs during the pass even if their ``track_stats`` was off
    (restored after).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"count_macs: `model` must be a torch.nn.Module; got {type(model).__name__}")
    if not isinstance(example, (torch.Tensor, tuple, list, Mapping)):
        raise TypeError(
            "count_macs: `example` must be a tensor, a tuple/list of arguments or a mapping of "
            f"keyword arguments; got {type(example).__name__}"
        )
    entries: dict[str, LayerMACs] = {}
    counted: dict[int, tuple[int, int]] = {}  # TASD-A layer → (kept, seen) up to its last call
    tracked: list[tuple[TASDLayer, bool]] = []
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            continue
        kind = "Conv2d" if isinstance(module, nn.Conv2d) else "Linear"
        if isinstance(module, TASDLayer):
            entries[name] = LayerMACs(name, kind, module.mode, str(module.series))
            tracked.append((module, module.track_stats))
            counted[id(module)] = (module.kept_elements, module.seen_elements)
        else:
            entries[name] = LayerMACs(name, kind, "dense", "dense")

    def observe(call: GemmCall, module: nn.Module, x: torch.Tensor, output: torch.Tensor) -> None:
        entry = entries[call.name]
        entry.calls += 1
        entry.dense_macs += call.macs
        if isinstance(module, TASDLayer) and module.mode == "A":
            # The counters grow only while this layer runs: the change since its last call is this call's.
            kept0, seen0 = counted[id(module)]
            counted[id(module)] = (module.kept_elements, module.seen_elements)
            seen = module.seen_elements - seen0
            entry.effective_macs += call.macs * ((module.kept_elements - kept0) / seen if seen else 0.0)
        elif isinstance(module, TASDLayer):
            entry.effective_macs += call.macs * module.series.effective_density
        else:
            entry.effective_macs += call.macs

    try:
        for module, _ in tracked:
            module.track_stats = True
        trace_gemms(model, example, observe=observe)
    finally:
        for module, flag in tracked:
            module.track_stats = flag
    return MACReport(layers=[entry for entry in entries.values() if entry.calls], samples=batch_size(example))
