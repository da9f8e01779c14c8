"""Workloads: every layer as a GEMM ``Z[m,n] += A[m,k]·B[k,n]`` (docs/design.md §4), and networks of them.

``A`` is the weights (M×K), ``B`` the input activations (K×N), ``Z`` the outputs (M×N). A
convolution is lowered by im2col (M = out channels, K = C·R·S, N = P·Q·batch); a linear layer
over T tokens is M = out, K = in, N = T. A network is an ordered list of layers with repeat
counts; layers are evaluated independently and summed, as Timeloop/Sparseloop users do.

This module knows GEMMs and workload YAML files only: the zoo's models and shape tables, and
tracing a PyTorch model, are one layer up in :mod:`tasder.workloads` (the accelerator model
depends on nothing but :mod:`tasder.sparsity`'s notation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasder.errors import InvalidParameterError
from tasder.hw.density import DenseModel, DensityModel, density_model
from tasder.hw.spec import SpecError, check_keys, get_int, get_str, load_section

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


#: The density model of an operand given as None (frozen, so one instance serves every Problem).
_DENSE = DenseModel()


@dataclass(frozen=True)
class Problem:
    """One GEMM layer: sizes, operand word width in bits, how often it runs per forward pass, and
    the density models of its operands.

    ``a_density`` (weights, M×K) and ``b_density`` (inputs, K×N) accept the pattern notation
    (``dense``, ``2:4``, ``4:8+1:8``, ``K1(2:4)->K0(2:4)``, ``unstructured(0.1)``), None (dense) or
    a :class:`~tasder.hw.density.DensityModel`; strings and None are converted here, once, with
    the operand's size (so a uniform model is exact for the tensor), and the fields always hold a
    ``DensityModel`` afterwards (``str(p.a_density)`` gives the notation back).

    >>> p = Problem("fc", M=64, K=128, N=8, a_density="2:4")
    >>> type(p.a_density).__name__, str(p.a_density), str(p.b_density)
    ('StructuredModel', '2:4', 'dense')
    """

    name: str
    M: int
    K: int
    N: int
    repeat: int = 1
    word_bits: int = 16
    a_density: DensityModel = _DENSE
    b_density: DensityModel = _DENSE

    def __post_init__(self) -> None:
        for key in ("M", "K", "N", "repeat", "word_bits"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidParameterError(f"Problem {self.name!r}: {key} must be a positive integer; got {value!r}")
            if value > MAX_DIM:
                raise InvalidParameterError(f"Problem {self.name!r}: {key}={value:,} is above the limit of 2**31 "
                                            f"({_WHY_DIM})")
        for key, size in (("a_density", self.M * self.K), ("b_density", self.K * self.N)):
            spec: Any = getattr(self, key)
            if not isinstance(spec, DensityModel):
                if spec is not None and (isinstance(spec, bool) or not isinstance(spec, (str, int, float))):
                    raise InvalidParameterError(f"Problem {self.name!r}: {key} must be a pattern string, a density, "
                                                f"None or a DensityModel; got {type(spec).__name__}")
                try:
                    model = density_model(spec, size)
                except ValueError as exc:
                    raise ValueError(f"Problem {self.name!r}: {key}={spec!r}: {exc}") from None
                object.__setattr__(self, key, model)  # frozen: set once, here

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
    """Rows with ``name``, ``M``, ``K``, ``N`` and ``repeat`` (a :mod:`tasder.zoo.shapes` table) as a Network."""
    return Network(name, tuple(Problem(x.name, M=x.M, K=x.K, N=x.N, repeat=x.repeat, word_bits=word_bits)
                               for x in layers))


def load_network(source: str | Path, *, word_bits: int = 16) -> Network:
    """A workload YAML file as a :class:`Network` (zoo models and shape tables by name:
    :func:`tasder.workloads.load_network`).

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
        raise ValueError(f"workload {text!r}: expected a workload YAML file (.yaml/.yml); a zoo model or "
                         f"shape table by name loads with tasder.workloads.load_network({text!r})")
    _, wl = load_section(text, "workload")
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
