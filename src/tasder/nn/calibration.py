"""Calibration: what the ``permute`` (TASD-A) and ``bias_correction`` options learn from data.

Both options are ours (beyond the TASD paper) and need no training, only a pass or two of
calibration batches through the *original* model, each TASD layer seeing the input its plain
counterpart sees there (so every layer is calibrated independently of the others' configs —
the same measurement the search ranks its moves by):

* **TASD-A permutation** — the input channels are reordered so that the series drops less of
  the activations: :func:`tasder.tasd.find_permutation` on a sample of at most ``max_rows``
  activation vectors (evenly spaced over every batch). On hardware the producing layer writes
  its output channels in that order, so the permutation costs nothing at run time.
* **Bias correction** — per output channel c, the approximation's mean output error on the
  calibration data, ē_c = mean(y_approx − y)_c, is subtracted: ``output_correction = −ē``. It
  removes the systematic part of the error (dropping the smallest ReLU activations, for
  instance, always lowers the input's mean), leaving the squared error Σe² − n·ē² per channel.
  The correction is an extra bias: no work for the hardware.
* **TASD-W from activations** (``score: activation``, ``reconstruct``) — per input feature j the
  sum of squares Σx_j² over the calibration rows (tokens; im2col columns of a convolution) and,
  for ``reconstruct``, the Gram matrix XᵀX; each probe then chooses its kept weights by
  |W_ij|·‖X_j‖₂ and refits them (:mod:`tasder.nn.reconstruct`). One Cholesky factor per layer is
  shared by all its probes.

**Every statistic comes from a float64 run of the model** (a float64 copy; the user's model is not
touched). A float32 convolution or matrix product is summed in an order that depends on the CPU's
vector width (AVX2, AVX-512, ...), so its last bits differ between machines, and the choices made
from these statistics are discrete (which weights a series keeps, which permutation wins): a 1e-7
change in the layer inputs moved the shipped 95 %-sparse CNN's validation accuracy under one
config by five images. From a float64 run the inputs each layer sees agree to about 1e-16 between
machines, so the permutations, kept weights and corrections come out the same on every one of them
(tests/test_nn_options.py runs the same calibration under AVX-512, AVX2 and plain kernels). The
TASD layers themselves still run in the model's dtype: their error is measured on the float64
layer input rounded to it. A model whose copy cannot run in float64 is calibrated as it is, with a
warning.

:func:`calibrate_probes` is the mechanism (shared with :mod:`tasder.search`, which measures the
error of many candidate layers in the same pass); :func:`tasder.nn.calibrate` and
``apply_tasd(..., calibration=batches)`` are the user-facing entry points.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 - the universal spelling

from tasder._batch import call_with_batch, floating_to
from tasder.nn.config import LayerSpec
from tasder.nn.layers import TASDLayer
from tasder.nn.reconstruct import damped_inverse_factor
from tasder.tasd.permutation import find_permutation

__all__ = ["ErrorStats", "LayerCalibration", "TASDCalibration", "calibrate_probes", "check_batches"]


@dataclass(frozen=True)
class LayerCalibration:
    """What one layer learned from calibration data (None: the option is off, or W's permutation,
    which comes from the weight — unless the weight's score came from the data too).

    ``term_index`` (weight-shaped, uint8: term t + 1, or 0 for the residual), ``reconstructed``
    (W″, or None) and ``input_norm`` are what a TASD-W layer with ``score: activation`` or
    ``reconstruct`` chose (:meth:`~tasder.nn.TASDLayer.set_weight_calibration`)."""

    permutation: torch.Tensor | None = None
    output_correction: torch.Tensor | None = None
    term_index: torch.Tensor | None = None
    reconstructed: torch.Tensor | None = None
    input_norm: torch.Tensor | None = None


@dataclass(frozen=True)
class TASDCalibration:
    """Calibration results per ``(layer name, spec)``, from :func:`tasder.nn.calibrate`; pass it to
    :func:`~tasder.nn.apply_tasd` (``calibration=``) to apply configs without another data pass."""

    layers: dict[tuple[str, LayerSpec], LayerCalibration] = field(default_factory=dict)

    def get(self, name: str, spec: LayerSpec) -> LayerCalibration | None:
        """The entry for layer ``name`` under ``spec`` (None when it was not calibrated)."""
        return self.layers.get((name, spec))

    def __len__(self) -> int:
        return len(self.layers)


@dataclass(frozen=True)
class ErrorStats:
    """A candidate layer's output error on the calibration data, summed over every element."""

    squared_error: float
    squared_error_corrected: float  # after removing each output channel's mean error
    reference: float  # Σ y², the exact output's energy

    def relative_error(self, corrected: bool) -> float:
        """‖y_approx − y‖ / ‖y‖ (with the bias correction applied when ``corrected``)."""
        err = self.squared_error_corrected if corrected else self.squared_error
        return math.sqrt(err / self.reference) if self.reference > 0 else 0.0


def check_batches(batches: object, what: str = "calibration") -> list[Any]:
    """A non-empty list of batches (tensors, keyword dicts or argument tuples), else ValueError."""
    if isinstance(batches, (torch.Tensor, Mapping, str, bytes)) or not isinstance(batches, Iterable):
        raise ValueError(f"`{what}` must be a list of input batches (tensors, dicts of keyword arguments or "
                         f"argument tuples); got {type(batches).__name__}")
    out = list(batches)
    if not out:
        raise ValueError(f"`{what}` is empty: calibration needs at least one batch")
    return out


def _channels_last(t: torch.Tensor, conv: bool) -> torch.Tensor:
    """(rows, channels): a Linear's last dim, a Conv2d's C of (N, C, H, W) or (C, H, W)."""
    return (t.movedim(-3, -1) if conv else t).reshape(-1, t.shape[-3] if conv else t.shape[-1])


def gemm_rows(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The rows of the layer's GEMM input (rows, K): a Linear's tokens; a Conv2d's im2col columns, K
    = C·R·S with C slowest (``F.unfold``'s order, the order of ``weight.reshape(O, -1)``)."""
    if not isinstance(module, nn.Conv2d):
        return x.reshape(-1, x.shape[-1])
    if x.dim() == 3:
        x = x.unsqueeze(0)
    padding: Any = module.padding
    if module.padding_mode != "zeros" or isinstance(padding, str):
        # as Conv2d itself pads: 'same' may be asymmetric, and other modes reflect/replicate/wrap
        mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
        x = F.pad(x, module._reversed_padding_repeated_twice, mode=mode)
        padding = 0
    cols = F.unfold(x, module.kernel_size, dilation=module.dilation, padding=padding, stride=module.stride)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


def calibrate_probes(
    model: nn.Module,
    probes: Mapping[str, Sequence[TASDLayer]],
    batches: Sequence[Any],
    *,
    max_rows: int = 1024,
    measure: bool = False,
) -> tuple[dict[int, ErrorStats], dict[str, tuple[int, int]]]:
    """Calibrate the TASD layers ``probes[name]`` built from ``model``'s layer ``name``, in place.

    Sets each probe's missing TASD-A permutation (one pass collecting input rows) and output
    correction (one pass measuring the error); the second pass also runs when ``measure`` is set.
    A float64 copy of ``model`` is run in eval mode under ``no_grad``; ``model`` is not touched.

    Returns ``(errors, inputs)``: the :class:`ErrorStats` of every probe by ``id(probe)`` (empty
    when the error pass did not run) and, per layer, (nonzero, total) input elements seen.
    """
    given = dict(model.named_modules())
    for name in probes:
        if not isinstance(given.get(name), (nn.Linear, nn.Conv2d)):
            raise ValueError(f"calibration: the model has no nn.Linear/nn.Conv2d named {name!r}")
    need_perm = {n: [p for p in ps if p.permute and p.mode == "A" and p.permutation is None]
                 for n, ps in probes.items()}
    need_perm = {n: ps for n, ps in need_perm.items() if ps}
    need_weight = {n: [p for p in ps if p._weight_pending] for n, ps in probes.items()}
    need_weight = {n: ps for n, ps in need_weight.items() if ps}
    need_gram = {n for n, ps in need_weight.items() if any(p.reconstruct for p in ps)}
    need_error = measure or any(p.bias_correction for ps in probes.values() for p in ps)
    if not (need_perm or need_weight or need_error):
        return {}, {}
    # The statistics come from a float64 copy (the module doc says why); the probes run in their
    # own dtype on its layer inputs.
    reference, dtype = _reference_model(model, batches[0])
    modules = dict(reference.named_modules())

    def run(hooks: dict[str, Any]) -> None:
        handles = [modules[n].register_forward_hook(h) for n, h in hooks.items()]
        try:
            for batch in batches:
                call_with_batch(reference, batch if dtype is None else floating_to(batch, dtype))
        finally:
            for h in handles:
                h.remove()

    errors: dict[int, ErrorStats] = {}
    inputs: dict[str, tuple[int, int]] = {}
    was_training = reference.training
    reference.eval()
    try:
        with torch.no_grad():
            if need_perm or need_weight:
                rows: dict[str, list[torch.Tensor]] = {n: [] for n in need_perm}
                sumsq: dict[str, torch.Tensor] = {}
                grams: dict[str, torch.Tensor] = {}
                per_batch = max(1, -(-max_rows // len(batches)))

                def collect(name: str) -> Any:
                    conv = isinstance(modules[name], nn.Conv2d)

                    def hook(module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
                        x = args[0].detach()
                        if name in need_perm:
                            r = _channels_last(x, conv)
                            if r.shape[0] > per_batch:
                                r = r[torch.linspace(0, r.shape[0] - 1, per_batch).round().long()]
                            rows[name].append(r.to(torch.float64))
                        if name in need_weight:
                            g = gemm_rows(module, x).double()
                            sq = g.pow(2).sum(0)
                            sumsq[name] = sq if name not in sumsq else sumsq[name] + sq
                            if name in need_gram:
                                gram = g.T @ g
                                grams[name] = gram if name not in grams else grams[name] + gram
                    return hook

                run({n: collect(n) for n in {**need_perm, **need_weight}})
                for name, ps in need_weight.items():
                    if name not in sumsq:
                        raise ValueError(f"calibration: layer {name!r} never ran on the calibration data, so its "
                                         f"weights cannot be chosen from activations")
                    factor = damped_inverse_factor(grams[name]) if name in grams else None
                    for p in ps:
                        p.calibrate_weight_(sumsq[name], factor)
                for name, ps in need_perm.items():
                    sample = torch.cat(rows[name])
                    found: dict[str, torch.Tensor] = {}  # equal series share one search
                    for p in ps:
                        key = str(p.series)
                        if key not in found:
                            found[key] = find_permutation(sample, p.series, dim=1, max_rows=None)
                        p.set_permutation(found[key])
            if need_error:
                # per probe: Σy², per-channel Σe and Σe², rows
                acc: dict[int, dict[str, Any]] = {id(p): {"ref": 0.0, "s1": 0.0, "s2": 0.0, "n": 0}
                                                  for ps in probes.values() for p in ps}
                # A TASD-W probe's output error is x·(Ŵ − W)ᵀ, so its sums follow from the layer's input
                # statistics alone: Σ_rows e_o = R_o·Σx and Σ_rows e_o² = R_o·(XᵀX)·R_oᵀ (R = Ŵ − W,
                # float64). Where the K×K Gram matrix costs less than the probes' own GEMMs it
                # replaces them (the layers of a transformer with K = its width).
                by_gram = {n: [p for p in ps if p.mode == "W"] for n, ps in probes.items()}
                by_gram = {n: ps for n, ps in by_gram.items()
                           if ps and 2 * int(modules[n].weight[0].numel()) < len(ps) * int(modules[n].weight.shape[0])}
                gram_acc: dict[str, dict[str, Any]] = {n: {"h": 0.0, "sum": 0.0, "n": 0, "ref": 0.0} for n in by_gram}

                def measure_hook(name: str) -> Any:
                    conv = isinstance(modules[name], nn.Conv2d)
                    gram_probes = {id(p) for p in by_gram.get(name, [])}

                    def hook(module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> None:
                        x = args[0].detach()
                        nz, tot = inputs.get(name, (0, 0))
                        inputs[name] = (nz + int(torch.count_nonzero(x)), tot + x.numel())
                        exact = out.detach().double()
                        ref = float(exact.pow(2).sum())
                        if gram_probes:
                            g = gemm_rows(module, x).double()
                            ga = gram_acc[name]
                            ga["h"] = ga["h"] + g.T @ g
                            ga["sum"] = ga["sum"] + g.sum(0)
                            ga["n"] += g.shape[0]
                            ga["ref"] += ref
                        for p in probes[name]:
                            if id(p) in gram_probes:
                                continue
                            e = _channels_last(p.forward_uncorrected(x.to(p.weight.dtype)).double() - exact, conv)
                            a = acc[id(p)]
                            a["ref"] += ref
                            a["s1"] = a["s1"] + e.sum(0)
                            a["s2"] = a["s2"] + e.pow(2).sum(0)
                            a["n"] += e.shape[0]
                    return hook

                run({n: measure_hook(n) for n in probes})
                for name, ps in by_gram.items():
                    ga = gram_acc[name]
                    if ga["n"] == 0:
                        continue
                    w = modules[name].weight.detach().double()
                    for p in ps:
                        r = (p.weight.detach().double() - w).reshape(w.shape[0], -1)
                        a = acc[id(p)]
                        a["ref"], a["n"] = ga["ref"], ga["n"]
                        a["s1"] = r @ ga["sum"]
                        a["s2"] = ((r @ ga["h"]) * r).sum(1).clamp_min(0)
                for ps in probes.values():
                    for p in ps:
                        a = acc[id(p)]
                        if a["n"] == 0:
                            continue  # the layer never ran on the calibration data
                        mean = a["s1"] / a["n"]
                        corrected = (a["s2"] - a["n"] * mean.pow(2)).clamp_min(0)
                        errors[id(p)] = ErrorStats(float(a["s2"].sum()), float(corrected.sum()), float(a["ref"]))
                        if p.bias_correction:
                            p.set_output_correction(-mean)
    finally:
        reference.train(was_training)
    return errors, inputs


def _reference_model(model: nn.Module, first_batch: Any) -> tuple[nn.Module, torch.dtype | None]:
    """The model the statistics come from and the dtype its floating inputs are cast to: a float64
    copy of ``model``, or — where the model cannot be copied or its forward does not run in float64
    (a forward that casts to float32 itself, say) — ``model`` itself, inputs as given, with a warning
    that its choices may then differ in their last bits between CPUs."""
    try:
        reference = copy.deepcopy(model).to(torch.float64).eval()
        with torch.no_grad():  # one batch: a model that cannot run in float64 says so here
            call_with_batch(reference, floating_to(first_batch, torch.float64))
        return reference, torch.float64
    except Exception as exc:  # any failure of the copy: calibrate the model as it is (below)
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    was_training = model.training
    try:  # a batch the model itself cannot run is the caller's error: raise the model's own
        with torch.no_grad():
            call_with_batch(model.eval(), first_batch)
    finally:
        model.train(was_training)
    warnings.warn(f"calibration runs the model in its own dtype: a float64 copy of it could not run ({reason}). "
                  f"The permutations and kept weights chosen may then differ between CPUs whose float32 sums "
                  f"round differently (docs/design.md §3.3)", stacklevel=3)
    return model, None


def calibration_of(probe: TASDLayer) -> LayerCalibration:
    """The data-dependent state of a calibrated probe (a TASD-W permutation comes from the weight,
    unless the weight itself was chosen from calibration data)."""
    weight_data = probe.spec.weight_needs_calibration
    perm = probe.permutation if probe.mode == "A" or weight_data else None
    index = recon = norm = None
    if weight_data:
        terms = probe._term_cache
        assert terms is not None, "calibrate the probe first"
        index = torch.zeros(probe.weight.shape, dtype=torch.uint8, device=probe.weight.device)
        for t, term in enumerate(terms):
            index[term != 0] = t + 1
        # W″ where the series keeps (the refit values), the original there only matters for the
        # residual, which a layer built from the calibration never needs: the weight is Σ terms.
        recon = probe.weight.detach().clone() if probe.reconstruct else None
        norm = None if probe.input_norm is None else probe.input_norm.clone()
    return LayerCalibration(None if perm is None else perm.clone(),
                            None if probe.output_correction is None else probe.output_correction.clone(),
                            index, recon, norm)


def apply_calibration(layer: TASDLayer, entry: LayerCalibration) -> None:
    """Give a freshly built TASD layer the state calibration found for its spec."""
    if entry.permutation is not None and layer.mode == "A":
        layer.set_permutation(entry.permutation)
    if entry.term_index is not None and layer.mode == "W":
        layer.input_norm = None if entry.input_norm is None else entry.input_norm.to(layer.weight.device).clone()
        if entry.permutation is not None:
            layer.permutation = entry.permutation.to(layer.weight.device).clone()
            layer._perm_cache = None
        layer.set_weight_calibration(entry.term_index, entry.reconstructed)
    if entry.output_correction is not None:
        layer.set_output_correction(entry.output_correction)

