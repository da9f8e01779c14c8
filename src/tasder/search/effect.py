"""How much one move changes what the *model* computes: the end-to-end effect cost-aware ranks by
(docs/design.md §3.4, "Damage").

A layer's own output error says little about what the model's output loses: the same relative
error in an attention projection and in an MLP's down-projection, or in the first and the last
encoder layer, reaches the model's output scaled by everything the rest of the network does to it
(LayerNorms, residual paths, attention softmaxes). On all-MiniLM-L6-v2 ranking the moves by the
layer's error took the cost-aware search to 26.9 % fewer MACs; ranking them by the relative change
of the model's output on calibration text took it to 30.0 %, both holding on the test split
(README, "Measured numbers").

:func:`measure_model_effect` swaps each candidate's calibrated TASD layer into the model, one at a
time, runs the first :data:`EFFECT_BATCHES` calibration batches and records
``‖f'(x) − f(x)‖ / ‖f(x)‖`` over every floating tensor the model returns (sums over the batches,
in float64). With stages (:mod:`tasder.search.prefix`) the stages before the move's layer are
replayed, not recomputed: the numbers are bit for bit the full forward's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from tasder._batch import call_with_batch
from tasder.nn.transform import swap_modules
from tasder.search.prefix import PrefixCache, PrefixMismatchError

__all__ = ["EFFECT_BATCHES", "measure_model_effect", "output_tensors"]

#: Calibration batches the end-to-end effect is measured on. One: the effect only orders the moves
#: (and decides which are at least as bad as a rejected one), and every (layer, candidate) pays
#: one forward of these batches — 432 of them on MiniLM with ``mode="auto"`` (45 s of a search
#: with two batches of 16 texts, about half that with one).
EFFECT_BATCHES = 1


def output_tensors(out: Any) -> list[torch.Tensor]:
    """Every floating-point tensor in a model's output (a tensor, a mapping such as transformers'
    ``ModelOutput``, or nested tuples/lists), in a fixed order."""
    if isinstance(out, torch.Tensor):
        return [out] if out.is_floating_point() else []
    if isinstance(out, Mapping):
        return [t for key in out for t in output_tensors(out[key])]
    if isinstance(out, (tuple, list)):
        return [t for item in out for t in output_tensors(item)]
    return []


def measure_model_effect(model: nn.Module, probes: Mapping[str, Mapping[Any, nn.Module]], batches: Sequence[Any],
                         stages: Sequence[str] | None = None) -> dict[tuple[str, Any], float]:
    """``(layer, key) → ‖f'(x) − f(x)‖ / ‖f(x)‖``: the model's output change with only that layer
    replaced by ``probes[layer][key]`` (a calibrated TASD layer), on the first
    :data:`EFFECT_BATCHES` of ``batches``.

    ``model`` is modified while this runs (one layer swapped at a time) and restored before it
    returns, also on an error: pass a model of your own (the search passes its private copy).
    ``stages``: the model's stages (:class:`~tasder.search.prefix.PrefixCache`), to replay the
    unchanged prefix; if the model does not call its stages repeatably, every move runs in full.
    A model whose output has no floating tensor, or is zero, is a ValueError.
    """
    used = list(batches[:EFFECT_BATCHES])
    layer_names = list(probes)
    cache = None if stages is None else PrefixCache.for_model(model, list(stages), layer_names)

    def run(net: nn.Module) -> list[torch.Tensor]:
        outs = []
        for batch in used:
            outs.extend(t.detach().to(torch.float64) for t in output_tensors(call_with_batch(net, batch)))
        return outs

    was_training = model.training
    model.eval()
    effects: dict[tuple[str, Any], float] = {}
    try:
        with torch.inference_mode():
            reference = cache.evaluate(model, run, {}) if cache is not None else run(model)
            if cache is not None:
                cache.accept()
            if not reference:
                raise ValueError("the model's output holds no floating-point tensor to measure a change on")
            norm2 = sum(float(t.square().sum()) for t in reference)
            if not math.isfinite(norm2) or norm2 == 0.0:
                raise ValueError(f"the model's output on the calibration batches has norm² {norm2}: "
                                 f"no relative change can be measured")
            for name in layer_names:
                for key, probe in probes[name].items():
                    original = model.get_submodule(name)
                    swap_modules(model, {id(original): probe})  # every alias, as apply_tasd does
                    try:
                        if cache is not None and cache.enabled:
                            try:
                                outs = cache.evaluate(model, run, {name: key})
                            except PrefixMismatchError:
                                cache.disable()
                                outs = run(model)
                            cache.reject()
                        else:
                            outs = run(model)
                    finally:
                        swap_modules(model, {id(probe): original})
                    if [a.shape for a in outs] != [b.shape for b in reference]:
                        raise ValueError(f"layer {name!r}: the model's output changed shape with the layer replaced")
                    diff2 = sum(float((a - b).square().sum()) for a, b in zip(outs, reference, strict=True))
                    effects[(name, key)] = math.sqrt(diff2 / norm2) if math.isfinite(diff2) else math.inf
    finally:
        model.train(was_training)
    return effects
