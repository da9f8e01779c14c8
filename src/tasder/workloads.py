"""Workloads for the accelerator model from what users have: zoo names, PyTorch models, YAML files.

:mod:`tasder.hw` models GEMMs and knows nothing of torch or of the zoo; this module is the bridge
one layer up (it imports torch, the zoo and :mod:`tasder.nn` only inside the functions that need
them, so ``tasder hw eval --workload FILE.yaml`` stays light):

* :func:`load_network` — a zoo shape table (``resnet50``, ``bert-base``, ``deit-small``), any other
  zoo model (traced on its first calibration batch, e.g. ``digits-cnn``) or a workload YAML file;
* :func:`trace_network` — a model's Linear/Conv2d calls as layers, one per call (the shapes only,
  both operands dense): a Linear is a GEMM, a Conv2d a native convolution (its sliding window
  modelled; ``im2col=True`` lowers it to its im2col GEMM instead);
* :func:`workload_from_model` — the same model as the search's :class:`~tasder.search.HardwareCost`
  sees it: one layer per module (its calls as the repeat count), each operand at its *measured*
  density, optionally with a TASD config's series on the searched operand.

Every model is read through :func:`tasder.nn.trace_gemms` (eval mode, no gradient; see its rules).

>>> from tasder.workloads import load_network
>>> net = load_network("resnet50")
>>> net.name, sum(p.repeat for p in net.layers)
('resnet50', 54)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tasder.hw import workload as hw_workload
from tasder.hw.density import with_data_density
from tasder.hw.workload import Network, Problem, from_conv2d, from_layer_shapes, from_linear

if TYPE_CHECKING:
    import torch
    from torch import nn

    from tasder.nn.config import LayerSpec, TASDConfig
    from tasder.nn.trace import GemmCall

__all__ = ["ZOO_ALIASES", "density_text", "load_network", "trace_network", "with_series", "workload_from_model"]

#: Short names ``load_network`` accepts for zoo shape tables.
ZOO_ALIASES: dict[str, str] = {"bert": "bert-base", "deit": "deit-small"}


def load_network(source: str | Path, *, word_bits: int = 16, im2col: bool = False) -> Network:
    """A zoo shape table by name (``resnet50``, ``bert-base``, ``deit-small``), any other zoo model
    (traced on its first calibration batch, e.g. ``digits-cnn``), or a workload YAML file
    (:func:`tasder.hw.load_network`). Convolutions are native (their sliding windows modelled)
    unless ``im2col``, which lowers every zoo convolution to its im2col GEMM (a YAML file's
    layers are as the file gives them)."""
    text = str(source)
    if text.endswith((".yaml", ".yml")) or Path(text).is_file():
        return hw_workload.load_network(text, word_bits=word_bits)
    from tasder import zoo

    entry = zoo.load(ZOO_ALIASES.get(text, text))
    if entry.layers is not None:
        return from_layer_shapes(text, entry.layers, word_bits=word_bits, im2col=im2col)
    if entry.model is None or not entry.calibration:
        raise ValueError(f"zoo model {text!r} has neither a layer-shape table nor a model with example inputs")
    return trace_network(entry.model, entry.calibration[0], name=text, word_bits=word_bits, im2col=im2col)


def _problem(call: GemmCall, batch: int, repeat: int, word_bits: int, im2col: bool) -> Problem:
    """The :class:`~tasder.hw.Problem` of a traced call over ``batch`` samples (a Linear: ``batch``
    is its rows): a GEMM for a Linear, a convolution per group for a Conv2d (its im2col GEMM with
    ``im2col``)."""
    if call.conv is None:
        return from_linear(call.name, call.K, call.M, batch, repeat=repeat, word_bits=word_bits)
    g = call.conv
    return from_conv2d(call.name, g.C, g.M, (g.R, g.S), (g.P, g.Q), batch, stride=g.stride, dilation=g.dilation,
                       groups=g.groups, repeat=repeat, word_bits=word_bits, im2col=im2col)


def trace_network(model: nn.Module, example: Any, *, name: str = "model", word_bits: int = 16,
                  im2col: bool = False) -> Network:
    """Run ``model`` once on ``example`` (one batch) and make every ``nn.Linear``/``nn.Conv2d`` call a layer.

    Why a trace rather than reading the modules: the number of tokens and a convolution's output
    size only exist at run time. A module called twice appears twice. The batch is the whole
    example's (a Linear's rows; a convolution's N). A Conv2d is a native convolution (R, S, P, Q,
    C, M, N with its stride and dilation; padding is not a loop bound), or with ``im2col`` its
    im2col GEMM (M = out/groups, K = C/groups·R·S, N = P·Q·batch), once per group.
    """
    from tasder.nn.trace import trace_gemms

    calls = trace_gemms(model, example)
    if not calls:
        raise ValueError(f"trace_network({name!r}): the forward pass called no nn.Linear or nn.Conv2d")
    return Network(name, tuple(_problem(c, c.N if c.conv is None else c.batch, 1, word_bits, im2col)
                               for c in calls))


def density_text(density: float) -> str:
    """A measured nonzero fraction in the pattern notation: ``dense`` above 99.9 %, else
    ``unstructured(d)`` (3 significant digits, at least 0.001 so an all-zero tensor stays valid).

    >>> density_text(1.0), density_text(0.05123), density_text(0.0)
    ('dense', 'unstructured(0.0512)', 'unstructured(0.001)')
    """
    if not math.isfinite(density) or density >= 0.999:
        return "dense"
    return f"unstructured({max(density, 0.001):.3g})"


def with_series(problem: Problem, spec: LayerSpec | None, mode: Literal["W", "A"] = "W") -> Problem:
    """``problem`` with its searched operand running ``spec``'s series: A (the weights) for TASD-W,
    B (the inputs) for TASD-A — ``spec.mode`` when set, else ``mode``. A dense or missing spec
    leaves ``problem`` as it is.

    Where the operand's measured density is below 1 and the series is G:H terms of one block size,
    the series carries it (``4:8+1:8@0.477``): the slots the data does not fill hold zeros, which a
    design's zero gating idles (:func:`tasder.hw.density.series_fills`)."""
    if spec is None or spec.is_dense:
        return problem
    operand = "a_density" if (spec.mode or mode) == "W" else "b_density"
    return replace(problem, **{operand: with_data_density(spec.series, float(getattr(problem, operand).density))})


def workload_from_model(model: nn.Module, example: Any, config: TASDConfig | Mapping[str, Any] | None = None, *,
                        mode: Literal["W", "A"] = "W", name: str = "model", per_sample: bool = True,
                        word_bits: int = 16, im2col: bool = False) -> Network:
    """The network ``model`` runs on ``example``, each layer's operands at their measured densities.

    One layer per Linear/Conv2d module, in the order of its first call; a module called more than
    once is one layer with that many repeats (its first call's shape; densities pooled over its
    calls). Operand **A** is the weight (M × K), operand **B** the input (K × N); each carries its
    measured nonzero fraction as :func:`density_text` writes it (``dense`` above 99.9 %, else
    ``unstructured(d)``; the input's over the whole batch). This is exactly what the search's
    :class:`tasder.search.HardwareCost` maps (``HardwareCost.for_model`` is built on it), so
    ``hw.map_network(arch, workload_from_model(model, x, config))`` gives the numbers the search's
    EDP cost and ``tasder apply --design`` give for the same config.

    Args:
        model, example: the model and one batch (a tensor, a tuple of arguments, a mapping of keyword
            arguments); see :func:`tasder.nn.trace_gemms` for how it is run.
        config: a TASD config (a :class:`~tasder.nn.TASDConfig`, its mapping form or a YAML path).
            Each layer it resolves to a series runs that series on one operand: **TASD-W** (mode
            ``W``) replaces A, the weights; **TASD-A** (mode ``A``) replaces B, the inputs. An entry's
            own ``mode`` decides; a bare series (``{"fc1": "4:8"}``) takes ``mode`` below. A name the
            model does not have is a ValueError.
        mode: the mode of config entries given as a bare series.
        per_sample: divide each GEMM's N by the batch size, so the workload is one inference — the
            batch-1 setting the TASD paper evaluates — while densities are averaged over the batch.
        name, word_bits: the network's name and the operands' word width.
        im2col: lower every convolution to its im2col GEMM (default: native convolutions, as
            :func:`trace_network`).

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))
    >>> w = workload_from_model(net, torch.randn(4, 16), {"2": "4:8"}, mode="A")
    >>> [(p.name, p.M, p.K, p.N, str(p.b_density)) for p in w.layers][1][:4]
    ('2', 8, 32, 1)
    >>> series, _, data = str(w.layers[1].b_density).partition("@")  # 4:8 on inputs of measured density
    >>> series, 0 < float(data) < 1, str(w.layers[1].a_density)
    ('4:8', True, 'dense')
    """
    from tasder.nn.trace import trace_gemms

    if mode not in ("W", "A"):
        raise ValueError(f"workload_from_model: mode must be 'W' (weights) or 'A' (inputs); got {mode!r}")
    first: dict[str, tuple[GemmCall, int]] = {}  # name → (its first call, its batch: samples or Linear rows)
    calls: dict[str, int] = {}
    # name → [Σ weight density·elements, Σ weight elements, the same for the input], over its calls
    sums: dict[str, list[float]] = {}

    def density(t: torch.Tensor) -> float:
        return float((t != 0).float().mean()) if t.numel() else 1.0

    def observe(call: GemmCall, module: nn.Module, x: torch.Tensor, output: torch.Tensor) -> None:
        acc = sums.setdefault(call.name, [0.0, 0, 0.0, 0])
        w = module.weight
        acc[0] += density(w) * w.numel()  # one call: exactly density(w) again after the division below
        acc[1] += w.numel()
        acc[2] += density(x) * x.numel()
        acc[3] += x.numel()
        calls[call.name] = calls.get(call.name, 0) + 1
        if call.name not in first:
            first[call.name] = (call, _batch(call, per_sample))

    cfg = None if config is None else _with_default_mode(config, mode)
    trace_gemms(model, example, observe=observe)
    if not first:
        raise ValueError("workload_from_model: the forward pass called no nn.Linear or nn.Conv2d")
    if cfg is not None:
        names = [n for n, _ in model.named_modules() if n]
        cfg.check_names(names, list(first))
    layers = []
    for layer, (call, n) in first.items():
        w_sum, w_all, x_sum, x_all = sums[layer]
        p = replace(_problem(call, n, calls[layer], word_bits, im2col),
                    a_density=density_text(w_sum / w_all if w_all else 1.0),
                    b_density=density_text(x_sum / x_all if x_all else 1.0))
        layers.append(with_series(p, None if cfg is None else cfg.resolve(layer), mode))
    return Network(name, tuple(layers))


def _with_default_mode(config: TASDConfig | Mapping[str, Any] | str | Path, mode: str) -> TASDConfig:
    """``config`` as a TASDConfig, bare-series entries of a plain mapping taking ``mode``."""
    from tasder.nn.config import TASDConfig

    if isinstance(config, Mapping) and not isinstance(config, TASDConfig):
        layers = config.get("layers") if "version" in config and isinstance(config.get("layers"), Mapping) else config
        filled = {k: ({"series": v, "mode": mode} if isinstance(v, str) else v) for k, v in layers.items()}
        config = {**config, "layers": filled} if layers is not config else filled
    return TASDConfig.coerce(config)


def _batch(call: GemmCall, per_sample: bool) -> int:
    """The batch of a call's layer: a Linear's rows (divided by the batch size when ``per_sample``,
    at least 1), a convolution's samples (1 when ``per_sample``)."""
    if call.conv is None:
        return max(1, call.N // call.batch) if per_sample else call.N
    return 1 if per_sample else call.batch
