"""Per-layer sparsity profile of a model on calibration data: the numbers TASDER decides with.

For every eligible layer (``nn.Linear``, and ``nn.Conv2d`` with ``groups=1`` — TASD layers that
subclass them included) :func:`profile_model` reports the layer's shape and reduction dim K, its dense
MACs on the calibration inputs, the sparsity of its weight, the sparsity of its input activation
per calibration sample (mean and 99th percentile) and its pseudo-density (docs/design.md §3.4), and,
for every candidate series, the share of nonzeros the series would drop from the weight (TASD-W)
and from the input activation (TASD-A).

Why streaming: calibration sets can be large and a model has many layers, so no activation is
kept after its forward hook returns. Each layer accumulates running sums (MACs, Σ sparsity,
Σ pseudo-density, one :class:`~tasder.tasd.DecompositionSums` per candidate) and one float per
sample (its sparsity, for the percentile).

>>> import torch
>>> from torch import nn
>>> from tasder.nn.profile import profile_model
>>> model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))
>>> p = profile_model(model, [torch.randn(5, 16)], candidates=["2:8"])
>>> [layer.name for layer in p], p.layers[0].macs, p.samples, p.macs_per_inference
(['0', '2'], 640, 5, 160.0)

``print(p)`` gives the per-layer table; MAC counts there are per inference (one sample).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from tasder._batch import Batch, batch_size, call_with_batch
from tasder._text import count_text, text_table
from tasder.sparsity import Series, StructuredPattern, parse_series
from tasder.targets import DEFAULT_TARGET, target_series
from tasder.tasd import DecompositionSums, decompose, tensor_sums

__all__ = [
    "PSEUDO_DENSITY_KEEP",
    "CandidateProfile",
    "LayerProfile",
    "ModelProfile",
    "profile_model",
    "reduction_text",
]

#: Pseudo-density keeps this share of Σ|x| (docs/design.md §3.4: "99 % of the Σ|x| of the activation").
PSEUDO_DENSITY_KEEP = 0.99

#: The percentile of per-sample activation sparsity reported next to the mean.
SPARSITY_PERCENTILE = 99.0

LayerKind = Literal["linear", "conv2d"]


def reduction_text(k: int, kernel: Sequence[int] = ()) -> str:
    """The GEMM reduction length K as every tasder table writes it: ``"144 = 16·3·3"`` for a
    convolution (C·R·S: the groups run along C at each of the R·S kernel positions), ``"128"``
    for a Linear (``kernel`` empty or all ones).

    >>> reduction_text(16, (3, 3)), reduction_text(128)
    ('144 = 16·3·3', '128')
    """
    sizes = [int(x) for x in kernel]
    if math.prod(sizes) <= 1:
        return str(k)
    return f"{k * math.prod(sizes)} = {k}·{'·'.join(map(str, sizes))}"



# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CandidateProfile:
    """What one candidate series drops from one layer.

    Attributes:
        series: the canonical series string (e.g. ``"2:8+1:8"``).
        weight: pooled sums of decomposing the weight along K (None when not applicable).
        activation: sums of decomposing the layer's input along K, pooled over every calibration
            batch — ``Σdropped / Σnonzeros``, not a mean of per-batch percentages (None when not
            applicable or the layer never ran).
        reason: why the series does not apply (e.g. K smaller than its block size), else None.
    """

    series: str
    weight: DecompositionSums | None
    activation: DecompositionSums | None
    reason: str | None = None

    @property
    def applicable(self) -> bool:
        return self.reason is None

    @property
    def weight_dropped_nonzeros_pct(self) -> float | None:
        """% of the weight's nonzeros the series drops (TASD-W's signal), None if n/a."""
        return None if self.weight is None else self.weight.dropped_nonzeros_pct

    @property
    def activation_dropped_nonzeros_pct(self) -> float | None:
        """% of the input activation's nonzeros the series drops, pooled (TASD-A), None if n/a."""
        return None if self.activation is None else self.activation.dropped_nonzeros_pct

    def as_dict(self) -> dict[str, object]:
        return {
            "series": self.series,
            "applicable": self.applicable,
            "reason": self.reason,
            "weight_dropped_nonzeros_pct": self.weight_dropped_nonzeros_pct,
            "activation_dropped_nonzeros_pct": self.activation_dropped_nonzeros_pct,
            "weight": None if self.weight is None else self.weight.summary(),
            "activation": None if self.activation is None else self.activation.summary(),
        }


@dataclass(frozen=True)
class LayerProfile:
    """The profile of one layer (see :func:`profile_model`).

    Attributes:
        name: the module's qualified name in the model (``model.get_submodule(name)``).
        kind: ``"linear"`` or ``"conv2d"``.
        module_type: the module's class name (``"Linear"``, or a TASD subclass's name).
        weight_shape: ``(out, in)`` or ``(O, C, R, S)``.
        k: the length of the dimension TASD groups run along: ``in_features``, or ``C`` (the
            groups lie along C at each of the R·S kernel positions, docs/design.md §3.3).
        kernel_positions: ``R·S`` (1 for Linear).
        k_total: the GEMM reduction length ``k · kernel_positions`` (``C·R·S`` for a conv).
        macs: dense multiply-accumulates the layer did on all calibration inputs.
        calls: how many times the layer ran (more than the batches if it is reused).
        samples: calibration samples seen at the layer's input (the input's dim 0 per call).
        weight_sparsity: fraction of the weight's elements that are zero.
        activation_sparsity_mean: mean over samples of each sample's fraction of zero inputs.
        activation_sparsity_p99: the 99th percentile of the same per-sample values.
        pseudo_density: mean over samples of the smallest fraction of a sample's elements that
            holds 99 % of its Σ|x| (docs/design.md §3.4; 0 for an all-zero sample).
        candidates: one :class:`CandidateProfile` per candidate series, in the order asked.

    The activation fields are None when the layer never ran on the calibration data.
    """

    name: str
    kind: LayerKind
    module_type: str
    weight_shape: tuple[int, ...]
    k: int
    kernel_positions: int
    k_total: int
    macs: int
    calls: int
    samples: int
    weight_sparsity: float
    activation_sparsity_mean: float | None
    activation_sparsity_p99: float | None
    pseudo_density: float | None
    candidates: tuple[CandidateProfile, ...]

    @property
    def k_text(self) -> str:
        """K as tables show it (:func:`reduction_text`): ``"144 = 16·3·3"``, ``"128"``."""
        return reduction_text(self.k, self.weight_shape[2:])

    def candidate(self, series: str | Series) -> CandidateProfile:
        """The :class:`CandidateProfile` of ``series`` (any spelling that parses to it)."""
        key = str(parse_series(series))
        for c in self.candidates:
            if c.series == key:
                return c
        raise KeyError(f"series {key!r} was not profiled for layer {self.name!r}; "
                       f"profiled: {', '.join(c.series for c in self.candidates) or 'none'}")

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "module_type": self.module_type,
            "weight_shape": list(self.weight_shape),
            "k": self.k,
            "kernel_positions": self.kernel_positions,
            "k_total": self.k_total,
            "macs": self.macs,
            "calls": self.calls,
            "samples": self.samples,
            "weight_sparsity": self.weight_sparsity,
            "activation_sparsity_mean": self.activation_sparsity_mean,
            "activation_sparsity_p99": self.activation_sparsity_p99,
            "pseudo_density": self.pseudo_density,
            "candidates": [c.as_dict() for c in self.candidates],
        }


@dataclass(frozen=True)
class ModelProfile:
    """All layer profiles of a model plus totals; iterating yields the :class:`LayerProfile` rows.

    Attributes:
        layers: one row per eligible layer, in ``model.named_modules()`` order.
        candidates: the canonical candidate series strings, in the order asked.
        batches: calibration batches run.
        skipped: ``(name, reason)`` of Linear/Conv2d-like layers that are not profiled
            (grouped or depthwise convolutions).
        samples: samples in those batches (Σ of each batch's size): MAC totals divided by it are
            per inference.
    """

    layers: tuple[LayerProfile, ...]
    candidates: tuple[str, ...]
    batches: int
    skipped: tuple[tuple[str, str], ...] = field(default=())
    samples: int = 0

    def __iter__(self) -> Iterator[LayerProfile]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, key: int | str) -> LayerProfile:
        """A row by position or by layer name."""
        if isinstance(key, str):
            for layer in self.layers:
                if layer.name == key:
                    return layer
            raise KeyError(f"no profiled layer named {key!r}; layers: {', '.join(x.name for x in self.layers)}")
        return self.layers[key]

    @property
    def total_macs(self) -> int:
        """Dense MACs of all profiled layers on the calibration data (all :attr:`samples`)."""
        return sum(layer.macs for layer in self.layers)

    @property
    def macs_per_inference(self) -> float:
        """Dense MACs of one inference (one sample): :attr:`total_macs` / :attr:`samples`."""
        return self.total_macs / self.samples if self.samples else float("nan")

    def layer_macs_per_inference(self, layer: LayerProfile) -> float:
        """``layer``'s dense MACs per inference (its calls per sample included)."""
        return layer.macs / self.samples if self.samples else float("nan")

    def __str__(self) -> str:
        """The per-layer table (MACs per inference) and, per candidate, the pooled dropped nonzeros."""

        def pct(x: float | None) -> str:
            return "-" if x is None or not math.isfinite(x) else f"{100 * x:.1f}%"

        rows = [[layer.name, layer.module_type, "×".join(map(str, layer.weight_shape)), layer.k_text,
                 count_text(self.layer_macs_per_inference(layer)), pct(layer.weight_sparsity),
                 pct(layer.activation_sparsity_mean), pct(layer.pseudo_density)] for layer in self]
        head = (f"{len(self)} layers profiled on {self.batches} calibration batch(es) ({self.samples} samples); "
                f"{count_text(self.macs_per_inference)} dense MACs per inference")
        table = text_table(["layer", "type", "weight", "K", "MACs/inference", "weight sp.", "act. sp.",
                            "pseudo-density"], rows, [False, False, False, True, True, True, True, True])
        lines = [head, table, "K: GEMM reduction length (Linear: in_features; Conv2d: C·R·S); sp.: share of zeros"]
        if self.candidates:
            drops = []
            for series in self.candidates:
                w, a = self.totals(series)
                drops.append([series, "n/a" if not w.numel else f"{w.dropped_nonzeros_pct:.1f}%",
                              "n/a" if not a.numel else f"{a.dropped_nonzeros_pct:.1f}%"])
            lines += ["", text_table(["series", "weights dropped", "activations dropped"], drops, [False, True, True]),
                      "dropped nonzeros pooled over the layers where the series applies"]
        return "\n".join(lines)

    def totals(self, series: str | Series) -> tuple[DecompositionSums, DecompositionSums]:
        """``(weights, activations)`` sums of ``series`` pooled over the layers where it applies."""
        weight, activation = DecompositionSums(), DecompositionSums()
        for layer in self.layers:
            c = layer.candidate(series)
            if c.weight is not None:
                weight = weight + c.weight
            if c.activation is not None:
                activation = activation + c.activation
        return weight, activation

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form (NaN never appears; missing values are None)."""
        totals = []
        for s in self.candidates:
            w, a = self.totals(s)
            totals.append({"series": s, "weight": w.summary(), "activation": a.summary()})
        return {
            "batches": self.batches,
            "samples": self.samples,
            "candidates": list(self.candidates),
            "total_macs": self.total_macs,
            "macs_per_inference": self.macs_per_inference if self.samples else None,
            "layers": [layer.as_dict() for layer in self.layers],
            "totals": totals,
            "skipped": [{"name": n, "reason": r} for n, r in self.skipped],
        }


# ---------------------------------------------------------------------------------------------
# Streaming statistics
# ---------------------------------------------------------------------------------------------


def per_sample_pseudo_density(rows: torch.Tensor, keep: float = PSEUDO_DENSITY_KEEP) -> torch.Tensor:
    """For each row of ``rows`` (n, m): the smallest fraction of its elements whose |x| sum to at
    least ``keep`` of the row's Σ|x| (float64, shape (n,); 0 for an all-zero row).

    A relative slack of 1e-12 absorbs rounding in the cumulative sum, so a row of 100 equal values
    needs exactly 99 of them for ``keep=0.99``.
    """
    if rows.shape[1] == 0:
        return torch.zeros(rows.shape[0], dtype=torch.float64)
    mags = rows.abs().to(torch.float64).sort(dim=1, descending=True).values
    cumulative = mags.cumsum(dim=1)
    total = cumulative[:, -1:]
    target = keep * total * (1.0 - 1e-12)
    needed = (cumulative < target).sum(dim=1) + 1
    needed = torch.where(total[:, 0] > 0, needed, torch.zeros_like(needed))
    return needed.to(torch.float64) / rows.shape[1]


class _LayerStats:
    """Running statistics of one layer's inputs; keeps one float per sample, nothing else."""

    def __init__(self, name: str, module: nn.Module, kind: LayerKind, candidates: dict[str, Series]) -> None:
        self.name = name
        self.module = module
        self.kind = kind
        weight = module.weight
        self.k = int(weight.shape[1])
        self.kernel_positions = math.prod(int(s) for s in weight.shape[2:]) if kind == "conv2d" else 1
        self.reasons = {key: _not_applicable(s, self.k, kind) for key, s in candidates.items()}
        self.series = {key: s for key, s in candidates.items() if self.reasons[key] is None}
        self.macs = 0
        self.calls = 0
        self.sparsity_chunks: list[torch.Tensor] = []
        self.pseudo_density_sum = 0.0
        self.activation = {key: DecompositionSums() for key in self.series}

    def observe(self, x: torch.Tensor, output: torch.Tensor) -> None:
        """Fold one call's input ``x`` (and its output, for the MACs) into the sums."""
        if self.kind == "linear":
            batched = x.reshape(1, -1) if x.dim() == 1 else x
            self.macs += (x.numel() // self.k) * int(self.module.weight.shape[0]) * self.k
            dim = -1
        else:
            batched = x.unsqueeze(0) if x.dim() == 3 else x  # unbatched (C, H, W) input
            self.macs += output.numel() * self.k * self.kernel_positions
            dim = 1
        self.calls += 1
        rows = batched.detach().reshape(batched.shape[0], -1)
        if rows.shape[1]:
            self.sparsity_chunks.append((rows == 0).sum(dim=1).to(torch.float64) / rows.shape[1])
        else:
            self.sparsity_chunks.append(torch.zeros(rows.shape[0], dtype=torch.float64))
        self.pseudo_density_sum += float(per_sample_pseudo_density(rows).sum())
        if not self.series or batched.numel() == 0:
            return
        sums = tensor_sums(batched)
        for key, s in self.series.items():
            result = decompose(batched.detach(), s, dim=dim)
            self.activation[key] = self.activation[key] + DecompositionSums.of(result, sums)

    def result(self) -> LayerProfile:
        weight = self.module.weight.detach()
        weight_sums = tensor_sums(weight) if self.series else None
        per_sample = torch.cat(self.sparsity_chunks).numpy() if self.sparsity_chunks else np.zeros(0)
        samples = int(per_sample.size)
        rows: list[CandidateProfile] = []
        for key, reason in self.reasons.items():
            if reason is not None:
                rows.append(CandidateProfile(key, None, None, reason))
                continue
            try:
                w = DecompositionSums.of(decompose(weight, self.series[key], dim=1), weight_sums)
            except ValueError as exc:
                raise ValueError(f"layer {self.name!r}: cannot decompose its weight with {key}: {exc}") from None
            rows.append(CandidateProfile(key, w, self.activation[key] if samples else None))
        return LayerProfile(
            name=self.name,
            kind=self.kind,
            module_type=type(self.module).__name__,
            weight_shape=tuple(int(s) for s in weight.shape),
            k=self.k,
            kernel_positions=self.kernel_positions,
            k_total=self.k * self.kernel_positions,
            macs=self.macs,
            calls=self.calls,
            samples=samples,
            weight_sparsity=1.0 - int(torch.count_nonzero(weight)) / weight.numel() if weight.numel() else 0.0,
            activation_sparsity_mean=float(per_sample.mean()) if samples else None,
            activation_sparsity_p99=float(np.percentile(per_sample, SPARSITY_PERCENTILE)) if samples else None,
            pseudo_density=self.pseudo_density_sum / samples if samples else None,
            candidates=tuple(rows),
        )


def _not_applicable(series: Series, k: int, kind: LayerKind) -> str | None:
    """Why ``series`` cannot be applied along a reduction dim of length ``k`` (None if it can)."""
    blocks = [t.block_size for t in series.terms if isinstance(t, StructuredPattern)]
    if blocks and k < max(blocks):
        what = f"C={k} per kernel position" if kind == "conv2d" else f"K={k}"
        return f"{what} is smaller than the block size {max(blocks)}"
    return None


def _layer_kind(module: nn.Module) -> tuple[LayerKind | None, str | None]:
    """``(kind, None)`` for a profiled layer, ``(None, reason)`` for a skipped one, else (None, None)."""
    if isinstance(module, nn.Linear):
        return "linear", None
    if isinstance(module, nn.Conv2d):
        if module.groups != 1:
            return None, f"grouped convolution (groups={module.groups}): no single reduction dim"
        return "conv2d", None
    return None, None


class _LayerError(ValueError):
    """Raised from a forward hook: the profile itself, not the model, could not use a batch."""


def _check_batch(batch: object, index: int) -> None:
    if not isinstance(batch, (torch.Tensor, Mapping, tuple, list)):
        raise TypeError(f"calibration batch {index} must be a tensor, a dict of keyword arguments or a "
                        f"tuple of positional arguments; got {type(batch).__name__}")


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def profile_model(
    model: nn.Module,
    calibration: Iterable[Batch],
    *,
    candidates: Iterable[str | Series] | None = None,
    on_batch: Callable[[int], None] | None = None,
    layers: Iterable[str] | None = None,
) -> ModelProfile:
    """Profile every eligible layer of ``model`` (or those ``layers`` names) on the ``calibration`` batches.

    Args:
        model: any ``nn.Module``. Its ``nn.Linear`` and ``nn.Conv2d`` (``groups=1``) submodules —
            and subclasses of them, such as TASD layers — are profiled. Not modified: forward
            hooks are removed and every submodule's train/eval mode is restored afterwards, even
            when a forward raises.
        calibration: an iterable (a generator is fine: it is consumed once) of tensors (``model(b)``),
            dicts (``model(**b)``) or tuples (``model(*b)``).
        candidates: series to evaluate (strings or parsed); default: every series of the default
            target (:data:`tasder.targets.DEFAULT_TARGET`, TTC-VEGETA-M8), from its YAML.
        on_batch: called with the batch index after each batch (progress reporting).
        layers: names or fnmatch globs of the layers to profile (default: all eligible ones);
            decomposing every candidate on every layer's activations is the expensive part, so a
            caller that needs a few layers says which.

    Returns:
        A :class:`ModelProfile`; see :class:`LayerProfile` for what each row holds.

    Raises:
        ValueError: a model with no eligible layer, no batches, a bad series, or a batch the model
            cannot take (the message names the batch index).
        TypeError: ``model`` is not a module, or ``calibration`` is a single tensor/dict.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module; got {type(model).__name__}")
    if isinstance(calibration, (torch.Tensor, Mapping)):
        # Iterating a tensor would silently treat every sample as its own batch.
        raise TypeError("`calibration` must be an iterable of batches; wrap a single batch in a list: [batch]")
    parsed: dict[str, Series] = {}
    for spec in target_series(DEFAULT_TARGET) if candidates is None else candidates:
        s = parse_series(spec)
        parsed.setdefault(str(s), s)

    wanted = None if layers is None else [str(g) for g in ([layers] if isinstance(layers, str) else layers)]
    stats: list[_LayerStats] = []
    skipped: list[tuple[str, str]] = []
    for name, module in model.named_modules():
        if wanted is not None and not any(fnmatch.fnmatchcase(name, g) for g in wanted):
            continue
        kind, reason = _layer_kind(module)
        if kind is not None:
            stats.append(_LayerStats(name or "<model>", module, kind, parsed))
        elif reason is not None:
            skipped.append((name or "<model>", reason))
    if not stats and wanted is not None:
        raise ValueError(f"`layers` {wanted} matches no nn.Linear or nn.Conv2d (groups=1) layer of "
                         f"{type(model).__name__}")
    if not stats:
        extra = f" (skipped: {'; '.join(f'{n}: {r}' for n, r in skipped)})" if skipped else ""
        raise ValueError(f"model {type(model).__name__} has no nn.Linear or nn.Conv2d (groups=1) layer to "
                         f"profile{extra}")

    def make_hook(layer: _LayerStats) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
            x = args[0] if args else kwargs.get("input")
            if not isinstance(x, torch.Tensor) or not isinstance(output, torch.Tensor):
                raise _LayerError(f"layer {layer.name!r} got a {type(x).__name__} input, not a tensor")
            try:
                layer.observe(x, output)
            except (ValueError, TypeError) as exc:
                raise _LayerError(f"layer {layer.name!r}: {exc}") from None

        return hook

    modes = [(m, m.training) for m in model.modules()]
    handles = [layer.module.register_forward_hook(make_hook(layer), with_kwargs=True) for layer in stats]
    count = samples = 0
    try:
        model.eval()
        with torch.no_grad():
            for index, batch in enumerate(calibration):
                _check_batch(batch, index)
                samples += batch_size(batch)
                try:
                    call_with_batch(model, batch)
                except _LayerError as exc:
                    raise ValueError(f"calibration batch {index}: {exc}") from None
                except Exception as exc:  # torch raises RuntimeError/IndexError/...: name the batch
                    raise ValueError(f"calibration batch {index}: the model cannot take it "
                                     f"({type(exc).__name__}: {exc})") from exc
                count += 1
                if on_batch is not None:
                    on_batch(index)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes:
            module.training = training
    if count == 0:
        raise ValueError("`calibration` is empty: profiling needs at least one calibration batch")
    return ModelProfile(
        layers=tuple(layer.result() for layer in stats),
        candidates=tuple(parsed),
        batches=count,
        skipped=tuple(skipped),
        samples=samples,
    )

