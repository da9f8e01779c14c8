"""Workloads: every layer as a GEMM ``Z[m,n] += A[m,k]·B[k,n]`` (DESIGN §4), and networks of them.

``A`` is the weights (M×K), ``B`` the input activations (K×N), ``Z`` the outputs (M×N). A
convolution is lowered by im2col (M = out channels, K = C·R·S, N = P·Q·batch); a linear layer
over T tokens is M = out, K = in, N = T. A network is an ordered list of layers with repeat
counts; layers are evaluated independently and summed, as Timeloop/Sparseloop users do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasder.hw.spec import SpecError, check_keys, check_version, get_int, get_str, load_yaml

__all__ = [
    "DIMS",
    "TENSORS",
    "TENSOR_DIMS",
    "Network",
    "Problem",
    "from_conv2d",
    "from_layer_shapes",
    "from_linear",
    "load_network",
    "trace_module",
]

#: Largest M, K, N (and repeat, word_bits) of a Problem: a tensor's size is the product of two dims,
#: computed in 64-bit integers, so each dim stays below 2**31 (LLM vocabularies are ~2**18).
MAX_DIM = 2**31
_WHY_DIM = "tensor sizes, products of two dims, must fit the model's 64-bit integers"

#: The GEMM's loop dimensions, in the order used by every array in :mod:`tasder.hw`.
DIMS: tuple[str, str, str] = ("M", "K", "N")
#: The three data spaces: weights, inputs, outputs (Timeloop's names would be Weights/Inputs/Outputs).
TENSORS: tuple[str, str, str] = ("A", "B", "Z")
#: Which dimensions index which tensor — the whole of the reuse analysis follows from this table.
TENSOR_DIMS: dict[str, tuple[str, ...]] = {"A": ("M", "K"), "B": ("K", "N"), "Z": ("M", "N")}


@dataclass(frozen=True)
class Problem:
    """One GEMM layer: sizes, operand word width in bits, how often it runs per forward pass."""

    name: str
    M: int
    K: int
    N: int
    repeat: int = 1
    word_bits: int = 16
    #: Density of A (weights) and B (inputs): pattern notation (``dense``, ``2:4``, ``4:8+1:8``,
    #: ``K1(2:4)->K0(2:4)``, ``unstructured(0.1)``) or a :class:`~tasder.hw.density.DensityModel`.
    a_density: Any = None
    b_density: Any = None

    def __post_init__(self) -> None:
        for key in ("M", "K", "N", "repeat", "word_bits"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Problem {self.name!r}: {key} must be a positive integer; got {value!r}")
            if value > MAX_DIM:
                raise ValueError(f"Problem {self.name!r}: {key}={value:,} is above the limit of 2**31 ({_WHY_DIM})")

    @property
    def sizes(self) -> tuple[int, int, int]:
        """``(M, K, N)`` in :data:`DIMS` order."""
        return (self.M, self.K, self.N)

    @property
    def macs(self) -> int:
        """MACs of one instance (not multiplied by ``repeat``)."""
        return self.M * self.K * self.N

    def tensor_size(self, tensor: str) -> int:
        """Words of ``tensor`` (A, B or Z)."""
        sizes = dict(zip(DIMS, self.sizes, strict=True))
        out = 1
        for d in TENSOR_DIMS[tensor]:
            out *= sizes[d]
        return out


@dataclass(frozen=True)
class Network:
    """An ordered list of layers; totals weight each layer by its ``repeat``."""

    name: str
    layers: tuple[Problem, ...]

    def __post_init__(self) -> None:
        if not self.layers:
            raise ValueError(f"Network {self.name!r} has no layers")

    @property
    def macs(self) -> int:
        return sum(p.macs * p.repeat for p in self.layers)


def from_linear(name: str, in_features: int, out_features: int, tokens: int = 1, *, repeat: int = 1,
                word_bits: int = 16) -> Problem:
    """An ``nn.Linear(in, out)`` applied to ``tokens`` rows: M = out, K = in, N = tokens."""
    return Problem(name, M=out_features, K=in_features, N=tokens, repeat=repeat, word_bits=word_bits)


def from_conv2d(name: str, in_channels: int, out_channels: int, kernel: int | tuple[int, int],
                out_hw: int | tuple[int, int], batch: int = 1, *, groups: int = 1, repeat: int = 1,
                word_bits: int = 16) -> Problem:
    """A Conv2d by im2col: M = out/groups, K = (C/groups)·R·S, N = P·Q·batch, repeated per group."""
    r, s = (kernel, kernel) if isinstance(kernel, int) else kernel
    p, q = (out_hw, out_hw) if isinstance(out_hw, int) else out_hw
    if groups < 1 or in_channels % groups or out_channels % groups:
        raise ValueError(f"Conv2d {name!r}: groups={groups} must divide in_channels={in_channels} "
                         f"and out_channels={out_channels}")
    return Problem(name, M=out_channels // groups, K=in_channels // groups * r * s, N=p * q * batch,
                   repeat=repeat * groups, word_bits=word_bits)


def from_layer_shapes(name: str, layers: Sequence[Any], *, word_bits: int = 16) -> Network:
    """A :mod:`tasder.zoo.shapes` table (``LayerShape`` rows) as a :class:`Network`."""
    return Network(name, tuple(Problem(x.name, M=x.M, K=x.K, N=x.N, repeat=x.repeat, word_bits=word_bits)
                               for x in layers))


def trace_module(model: Any, *example_inputs: Any, name: str = "model", word_bits: int = 16,
                 example_kwargs: dict[str, Any] | None = None) -> Network:
    """Run ``model(*example_inputs, **example_kwargs)`` once and record every ``nn.Linear`` and ``nn.Conv2d``.

    Why hooks rather than reading the modules: shapes such as the number of tokens or the output
    resolution only exist at run time. A module called twice appears twice.
    """
    import torch
    from torch import nn

    found: list[Problem] = []

    def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        qualname = names.get(module, type(module).__name__)
        if isinstance(module, nn.Linear):
            tokens = output.numel() // output.shape[-1]
            found.append(from_linear(qualname, module.in_features, module.out_features, tokens, word_bits=word_bits))
        elif isinstance(module, nn.Conv2d):
            batch = output.shape[0] if output.dim() == 4 else 1
            found.append(from_conv2d(qualname, module.in_channels, module.out_channels, module.kernel_size,
                                     (output.shape[-2], output.shape[-1]), batch, groups=module.groups,
                                     word_bits=word_bits))

    names = {m: n for n, m in model.named_modules()}
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    try:
        with torch.no_grad():
            model(*example_inputs, **(example_kwargs or {}))
    finally:
        for h in handles:
            h.remove()
    if not found:
        raise ValueError(f"trace_module({name!r}): the forward pass called no nn.Linear or nn.Conv2d")
    return Network(name, tuple(found))


_ZOO_ALIASES = {"bert": "bert-base", "deit": "deit-small"}


def load_network(source: str | Path, *, word_bits: int = 16) -> Network:
    """A zoo shape table by name (``resnet50``, ``bert-base``, ``deit-small``), any other zoo model
    (traced on its first calibration batch, e.g. ``digits-cnn``), or a workload YAML file.

    The YAML format (see docs/hw_spec.md)::

        version: 0.1
        workload:
          name: tiny
          word_bits: 16          # optional
          layers:
            - {name: fc1, M: 64, K: 128, N: 32, repeat: 1}
    """
    text = str(source)
    if not text.endswith((".yaml", ".yml")) and not Path(text).is_file():
        from tasder import zoo

        entry = zoo.load(_ZOO_ALIASES.get(text, text))
        if entry.layers is not None:
            return from_layer_shapes(text, entry.layers, word_bits=word_bits)
        if entry.model is None or not entry.calibration:
            raise ValueError(f"zoo model {text!r} has neither a layer-shape table nor a model with example inputs")
        # A real model: trace one calibration batch through it (the zoo's calling convention).
        batch = entry.calibration[0]
        if isinstance(batch, dict):
            return trace_module(entry.model, name=text, word_bits=word_bits, example_kwargs=batch)
        return trace_module(entry.model, batch, name=text, word_bits=word_bits)
    doc = load_yaml(text)
    check_keys(doc, ("version", "workload"), required=("version", "workload"))
    check_version(doc)
    wl = doc["workload"]
    if not isinstance(wl, dict):
        raise SpecError(f"{doc.where('workload')}: workload must be a mapping")
    check_keys(wl, ("name", "word_bits", "layers"), required=("layers",))
    bits = get_int(wl, "word_bits", word_bits)
    layers = wl["layers"]
    if not isinstance(layers, list) or not layers:
        raise SpecError(f"{wl.where('layers')}: workload.layers must be a non-empty list of layers")
    out = []
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict):
            raise SpecError(f"{wl.where('layers')}: workload.layers[{i}] must be a mapping with M, K, N")
        check_keys(layer, ("name", "M", "K", "N", "repeat", "word_bits"), required=("M", "K", "N"))
        dims = {k: get_int(layer, k, 1 if k == "repeat" else None, maximum=MAX_DIM, why=_WHY_DIM)
                for k in ("M", "K", "N", "repeat")}
        out.append(Problem(get_str(layer, "name", f"layer{i}"), M=dims["M"], K=dims["K"], N=dims["N"],
                           repeat=dims["repeat"], word_bits=get_int(layer, "word_bits", bits, maximum=1024,
                                                                    why="wider than any datatype")))
    return Network(get_str(wl, "name", Path(text).stem), tuple(out))
