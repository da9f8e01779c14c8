"""The three GEMMs of a training step, for modelling N:M sparse training (SAT / BDWP) against dense.

For a layer ``Z = W·X`` (W: M×K weights, X: K×N inputs, Z: M×N outputs; docs/design.md §4's GEMM with
A = W, B = X) one training step runs three GEMMs of equal MAC count:

* **FF** ``Z = W·X`` — A = W (M×K), reduction over K = C_in·R·S; SAT runs W's N:M mask along K.
* **BP** ``dX = Wᵀ·dZ`` — A = Wᵀ (K×M), B = dZ (M×N), reduction over **M = C_out**.
* **WU** ``dW = dZ·Xᵀ`` — A = dZ (M×N), B = Xᵀ (N×K), reduction over N: **dense** (no weight mask
  can shrink it, and the dense gradient updates the dense master weights; docs/design.md §3.5).

BP transposes W, and an N:M engine only skips along its GEMM's reduction dim. A mask along K (the
FF mask) says nothing about groups along C_out: Wᵀ then holds a fraction N/M of nonzeros but no
N:M rule, so SAT would run BP dense. BDWP ("bidirectional weight pruning") therefore prunes W a
second time, along C_out, for BP (docs/design.md §3.5; whether that mask is taken from the dense W
or from the FF-pruned W is not resolved there — the model does not care: it only needs that BP's
A obeys N:M along its reduction dim). ``bp_mask`` selects what is modelled:

* ``"bidirectional"`` (default, BDWP/SAT): BP's A carries ``w_pattern`` along its reduction dim.
* ``"forward"`` (one mask, SR-STE/SAT without BDWP): BP's A is ``unstructured(N/M)`` — a structured
  engine runs it dense.
* ``"dense"``: BP's A is dense.

A native convolution (:func:`~tasder.hw.workload.conv_problem`) gives three convolutions over the
same 7-dim loop nest (:func:`~tasder.hw.workload.conv_shape`): FF as it is; BP with A = W (its
pattern along the output channels M, BP's reduction dim), B = dZ and Z = dX, whose sliding window
makes the overlapping partial sums of neighbouring outputs add up in place (col2im without the
im2col matrix); WU with A = dZ, B = X (sliding) and Z = dW, reducing over N, P, Q. Their GEMM
views are the im2col GEMMs above (M·K·N equal to the layer's MACs).

Activations: X's density (``problem.b_density``) is kept in FF, and in WU only when it has no
direction (dense or unstructured): a structured pattern along K of X is not one along N of Xᵀ.
dZ is taken as dense. A measured W (an :class:`~tasder.hw.density.ActualModel`) is measured
transposed for BP. The first layer's BP (the gradient of the network input) is not computed
in a network's training step (:func:`training_network`).

>>> from tasder.hw import Problem
>>> g = training_gemms(Problem("conv", M=64, K=576, N=3136), "2:8")
>>> [(k, p.M, p.K, p.N, str(p.a_density)) for k, p in g.items()]
[('FF', 64, 576, 3136, '2:8'), ('BP', 576, 64, 3136, '2:8'), ('WU', 64, 3136, 576, 'dense')]
>>> str(training_gemms(Problem("conv", M=64, K=576, N=3136), "2:8", bp_mask="forward")["BP"].a_density)
'unstructured(0.25)'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tasder.hw.architecture import Architecture
from tasder.hw.density import ActualModel, DenseModel, DensityModel, UniformModel, density_model
from tasder.hw.mapper import NetworkResult, map_network
from tasder.hw.workload import Network, Problem, conv_shape

__all__ = ["BP_MASKS", "PHASES", "TrainingResult", "map_training", "training_gemms", "training_network"]

#: The three GEMMs of a training step, in execution order.
PHASES: tuple[str, str, str] = ("FF", "BP", "WU")
#: What BP's weight operand (Wᵀ) carries: see the module doc.
BP_MASKS: tuple[str, ...] = ("bidirectional", "forward", "dense")


def _directionless(model: DensityModel) -> DensityModel | None:
    """``model`` if it has no direction (dense/unstructured), else None (dense)."""
    return model if isinstance(model, (DenseModel, UniformModel)) else None


def training_gemms(problem: Problem, w_pattern: Any = None, *, bp_mask: str = "bidirectional") -> dict[str, Problem]:
    """The FF, BP and WU GEMMs of ``problem`` (a forward layer, A = weights) with W pruned to ``w_pattern``.

    ``w_pattern``: the pattern notation of W (``2:8``, ``dense``...; None = ``problem.a_density``).
    ``bp_mask``: one of :data:`BP_MASKS` (what BP's Wᵀ carries). Each GEMM keeps ``repeat`` and
    ``word_bits`` and is named ``<layer>.FF`` / ``.BP`` / ``.WU``.
    """
    if bp_mask not in BP_MASKS:
        raise ValueError(f"bp_mask={bp_mask!r} must be one of {', '.join(BP_MASKS)}")
    w = problem.a_density if w_pattern is None else w_pattern
    model = density_model(w, problem.tensor_size("A"))
    if bp_mask == "dense" or isinstance(model, DenseModel):
        w_bp = None
    elif isinstance(model, ActualModel):  # a measured W: BP reads it transposed
        w_bp = ActualModel(model.nz.T.astype("float32"), f"{model.name}.T")
    elif bp_mask == "forward" and model.structured:
        w_bp = f"unstructured({model.density:g})"
    else:  # bidirectional, or a directionless W (unstructured stays unstructured when transposed)
        w_bp = w
    base = {"repeat": problem.repeat, "word_bits": problem.word_bits}
    g = problem.geometry()
    if g is not None and problem.shape.name == "CNN-Layer":  # type: ignore[union-attr]
        bounds = {d: g[d] for d in ("R", "S", "P", "Q", "C", "M", "N")}

        def conv(phase: str, a: Any, b: Any) -> Problem:
            return Problem(f"{problem.name}.{phase}", a_density=a, b_density=b,
                           shape=conv_shape(g["stride"], g["dilation"], phase), bounds=bounds, **base)

        return {"FF": conv("FF", w, problem.b_density), "BP": conv("BP", w_bp, None),
                "WU": conv("WU", None, _directionless(problem.b_density))}
    return {
        "FF": Problem(f"{problem.name}.FF", M=problem.M, K=problem.K, N=problem.N, a_density=w,
                      b_density=problem.b_density, **base),
        "BP": Problem(f"{problem.name}.BP", M=problem.K, K=problem.M, N=problem.N, a_density=w_bp, **base),
        "WU": Problem(f"{problem.name}.WU", M=problem.M, K=problem.N, N=problem.K,
                      b_density=_directionless(problem.b_density), **base),
    }


def training_network(network: Network | Problem, w_pattern: Any = None, *, bp_mask: str = "bidirectional",
                     first_layer_bp: bool = False) -> dict[str, Network]:
    """Phase → the network of that phase's GEMMs (see :func:`training_gemms`).

    The first layer's BP is left out unless ``first_layer_bp`` (nothing needs the input's gradient);
    a single :class:`Problem` is a one-layer network whose BP is kept.
    """
    if isinstance(network, Problem):
        network, first_layer_bp = Network(network.name, (network,)), True
    per_layer = [training_gemms(p, w_pattern, bp_mask=bp_mask) for p in network.layers]
    out = {}
    for phase in PHASES:
        layers = [g[phase] for g in per_layer]
        if phase == "BP" and not first_layer_bp and len(layers) > 1:
            layers = layers[1:]
        out[phase] = Network(f"{network.name}.{phase}", tuple(layers))
    return out


@dataclass(frozen=True)
class TrainingResult:
    """Per-phase mapper results of one training step on one design."""

    phases: dict[str, NetworkResult]

    @property
    def cycles(self) -> float:
        return sum(r.cycles for r in self.phases.values())

    @property
    def energy_pj(self) -> float:
        return sum(r.energy_pj for r in self.phases.values())

    def phase_cycles(self) -> dict[str, float]:
        return {k: r.cycles for k, r in self.phases.items()}

    def phase_energy_pj(self) -> dict[str, float]:
        return {k: r.energy_pj for k, r in self.phases.items()}


def map_training(arch: Architecture, workload: Network | Problem, w_pattern: Any = None, *,
                 bp_mask: str = "bidirectional", first_layer_bp: bool = False,
                 **mapper_kwargs: Any) -> TrainingResult:
    """Map every GEMM of one training step of ``workload`` on ``arch`` (:func:`~tasder.hw.map_network`).

    E.g. SAT vs TC at 2:8: ``map_training(load_architecture("sat"), net, "2:8")`` and
    ``map_training(load_architecture("tc"), net, "dense")``; phase speedup = tc / sat cycles.
    """
    nets = training_network(workload, w_pattern, bp_mask=bp_mask, first_layer_bp=first_layer_bp)
    return TrainingResult({phase: map_network(arch, net, **mapper_kwargs) for phase, net in nets.items()})
