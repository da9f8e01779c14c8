"""Count the multiply-accumulates of one training step, GEMM by GEMM (docs/design.md §3.5).

Per weight layer a training step runs three GEMMs of equal dense size:

* **FF** ``Y = X·Wᵀ`` — N:M hardware skips ``1 − N/M`` of it when W⊙M_F is used (SR-STE, BDWP);
* **BP** ``dX = dY·W`` — BDWP's M_B is N:M along this GEMM's reduction dim, so it costs ``N/M``;
  SR-STE's W⊙M_F is N:M along K, which is *not* this GEMM's reduction dim, so hardware cannot
  skip it and it is counted dense. The first layer needs no input gradient: BP is 0 there, in
  the dense reference too;
* **WU** ``dW = dYᵀ·X`` — dense for every method.

The fraction of dense training operations is Σ(sparse)/Σ(dense) over all layers; for a model
where every layer is BDWP-sparse and BP is counted everywhere it is the ideal ``(2N/M + 1)/3``.
Element-wise work (activations, pooling, the update itself, mask selection) is not counted.
For BDWP with ``backward_mask="nested"`` BP is counted at N/M, an upper bound (M_B may hold
fewer than N per group).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tasder.nn.trace import trace_gemms
from tasder.train.layers import NMLayer

__all__ = ["LayerOps", "TrainingOps", "count_training_ops", "ideal_fraction"]


def ideal_fraction(n: int, m: int) -> float:
    """``(2N/M + 1)/3``: BDWP's share of dense training MACs when FF and BP are N:M and WU dense."""
    return (2 * n / m + 1) / 3


@dataclass(frozen=True)
class LayerOps:
    """MACs of one layer in one training step (``dense_gemm``: one dense GEMM of this layer)."""

    name: str
    method: str
    dense_gemm: int
    ff: float
    bp: float
    wu: float
    first: bool

    @property
    def total(self) -> float:
        return self.ff + self.bp + self.wu

    @property
    def dense_total(self) -> int:
        return self.dense_gemm * (2 if self.first else 3)


@dataclass(frozen=True)
class TrainingOps:
    """Per-layer and total training MACs for one step, and the fraction of dense training."""

    layers: tuple[LayerOps, ...]
    n: int | None
    m: int | None

    @property
    def ff(self) -> float:
        return sum(lay.ff for lay in self.layers)

    @property
    def bp(self) -> float:
        return sum(lay.bp for lay in self.layers)

    @property
    def wu(self) -> float:
        return sum(lay.wu for lay in self.layers)

    @property
    def total(self) -> float:
        return self.ff + self.bp + self.wu

    @property
    def dense_total(self) -> int:
        return sum(lay.dense_total for lay in self.layers)

    @property
    def fraction(self) -> float:
        """Σ training MACs / Σ dense training MACs (1.0 for dense training)."""
        return self.total / self.dense_total if self.dense_total else 1.0

    @property
    def ideal(self) -> float | None:
        """``(2N/M + 1)/3`` for the pattern in use (None when no N:M layer is present)."""
        return None if self.n is None or self.m is None else ideal_fraction(self.n, self.m)


def count_training_ops(model: nn.Module, example: torch.Tensor) -> TrainingOps:
    """Training MACs of one step of ``model`` on the batch ``example`` (shapes only matter).

    Layers are found by :func:`tasder.nn.trace_gemms` (one pass in eval mode, no gradient; every
    call of a layer is a GEMM of the step); the first ``Linear``/``Conv2d`` call is the first
    layer, whose BP is not counted.
    """
    rows: list[LayerOps] = []
    nm: tuple[int, int] | None = None
    for call in trace_gemms(model, example):
        mod = model.get_submodule(call.name)
        first = call.index == 0
        macs = call.macs
        method = mod.method if isinstance(mod, NMLayer) else "dense"
        density = 1.0
        if method in ("srste", "bdwp"):
            density = mod.n / mod.m
            nm = nm or (mod.n, mod.m)
        ff = macs * density
        bp = 0.0 if first else macs * (density if method == "bdwp" else 1.0)
        rows.append(LayerOps(call.name, method, macs, ff, bp, float(macs), first))
    return TrainingOps(tuple(rows), *(nm or (None, None)))
