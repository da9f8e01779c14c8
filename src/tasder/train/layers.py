"""Drop-in ``nn.Linear`` / ``nn.Conv2d`` replacements that train with N:M sparse weights.

They subclass the dense layers, so parameters, ``state_dict`` keys and ``isinstance`` checks stay
the same; only ``forward`` changes. Both masks are recomputed from the dense weights on every
forward call (as SR-STE and BDWP do), so the mask follows the weights as they train.

Methods (:data:`METHODS`):

* ``"dense"``  — the plain layer (a baseline for comparisons; no masks, no decay);
* ``"srste"``  — forward ``W⊙M_F``, dX with ``W⊙M_F``, dense dW + ``λ(1−M_F)⊙W``;
* ``"bdwp"``   — forward ``W⊙M_F``, dX with ``W⊙M_B`` (N:M along the output dim), dense dW + the
  same decay. ``backward_mask`` picks how M_B is formed (see :func:`.functional.backward_mask`).

Grouping: Linear (out, in) — M_F along ``in`` (dim 1), M_B along ``out`` (dim 0). Conv2d
(O, C, R, S) — M_F along C at each kernel position (dim 1), M_B along O (dim 0).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tasder.sparsity.notation import parse_pattern
from tasder.sparsity.patterns import GH, Dense, Pattern
from tasder.train.functional import BACKWARD_MASKS, backward_mask, nm_conv2d, nm_linear, nm_mask

__all__ = ["DEFAULT_DECAY", "METHODS", "NMConv2d", "NMLayer", "NMLinear", "check_method", "parse_nm", "set_grad_scale"]

#: Training methods understood by the layers and :func:`tasder.train.sparsify_for_training`.
METHODS: tuple[str, ...] = ("dense", "srste", "bdwp")

#: SR-STE's decay λ on the pruned weights (``decay = 0.0002`` in its reference code).
DEFAULT_DECAY = 2e-4


def parse_nm(pattern: str | Pattern) -> tuple[int, int]:
    """``"2:8"`` → ``(2, 8)``. N:M training needs a one-rank G:H pattern; anything else is refused."""
    try:
        p = parse_pattern(pattern)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"bad N:M pattern {pattern!r}: {exc}") from None
    if not isinstance(p, GH):
        raise ValueError(
            f"N:M training needs a one-rank N:M pattern such as 2:8 or 1:4, got {str(p)!r}"
            + (" (use --method dense for dense training)" if isinstance(p, Dense) else "")
        )
    return p.g, p.h


def check_method(method: str) -> str:
    """Return ``method`` if known, else raise a ValueError listing the choices."""
    if method not in METHODS:
        raise ValueError(f"unknown training method {method!r}; choose one of {', '.join(METHODS)}")
    return method


def _check_backward_mask(how: str) -> str:
    if how not in BACKWARD_MASKS:
        raise ValueError(f"unknown backward mask {how!r}; choose one of {', '.join(BACKWARD_MASKS)}")
    return how


class NMLayer:
    """What :class:`NMLinear` and :class:`NMConv2d` share: the N:M state (``method``, ``n``, ``m``,
    ``pattern``, ``backward_mask``, ``decay``) and the masks. ``isinstance(module, NMLayer)`` tells
    an N:M training layer from a plain one (op accounting, the training loop, re-sparsifying)."""

    weight: nn.Parameter
    method: str
    n: int
    m: int
    backward_mask: str
    decay: float
    grad_scale: float

    def _init_nm(self, pattern: str | Pattern, method: str, backward_mask: str, decay: float) -> None:
        self.method = check_method(method)
        self.n, self.m = parse_nm(pattern) if method != "dense" else (1, 1)
        self.pattern = f"{self.n}:{self.m}" if method != "dense" else "dense"
        self.backward_mask = _check_backward_mask(backward_mask)
        if not (isinstance(decay, (int, float)) and decay >= 0):
            raise ValueError(f"decay must be a number >= 0, got {decay!r}")
        self.decay = float(decay)
        #: The loss scaler's current scale; the decay is added to the gradient times this value
        #: so that it comes out exactly λ(1−M_F)⊙W after ``GradScaler.unscale_``.
        self.grad_scale = 1.0
        if method != "dense":
            shape = tuple(self.weight.shape)
            if shape[1] % self.m:
                raise ValueError(
                    f"pattern {self.pattern} does not fit weight {shape}: the forward groups run along "
                    f"dim 1 (length {shape[1]}), which is not a multiple of M={self.m}"
                )
            if method == "bdwp" and shape[0] % self.m:
                raise ValueError(
                    f"pattern {self.pattern} does not fit weight {shape}: BDWP's backward groups run along "
                    f"dim 0 (length {shape[0]}), which is not a multiple of M={self.m}"
                )

    def _grad_scale(self) -> float:
        """The scale at backward time (a callable, so a later :func:`set_grad_scale` counts)."""
        return self.grad_scale

    @torch.no_grad()
    def forward_mask(self) -> torch.Tensor:
        """M_F: N:M along the reduction dim (dim 1) of the current dense weight."""
        if self.method == "dense":
            return torch.ones_like(self.weight, dtype=torch.bool)
        return nm_mask(self.weight, self.n, self.m, dim=1)

    @torch.no_grad()
    def masks(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(M_F, M_dx)``: the forward mask and the mask used for the input gradient."""
        if self.method == "dense":
            ones = torch.ones_like(self.weight, dtype=torch.bool)
            return ones, ones
        magnitude = self.weight.detach().abs()  # shared by both masks: one pass less per step
        mf = nm_mask(self.weight, self.n, self.m, dim=1, score=magnitude)
        if self.method == "bdwp":
            return mf, backward_mask(self.weight, self.n, self.m, mf, self.backward_mask, magnitude)
        return mf, mf

    @torch.no_grad()
    def masked_weight(self) -> torch.Tensor:
        """``W⊙M_F``: the weight the forward pass (and the exported dense model) uses."""
        return self.weight * self.forward_mask()

    def _extra_nm(self) -> str:
        if self.method == "dense":
            return "method=dense"
        extra = f"pattern={self.pattern}, method={self.method}, decay={self.decay:g}"
        return extra + (f", backward_mask={self.backward_mask}" if self.method == "bdwp" else "")


class NMLinear(NMLayer, nn.Linear):
    """``nn.Linear`` trained with N:M weights (``method`` = ``"bdwp"``, ``"srste"`` or ``"dense"``).

    ``in_features`` must be a multiple of M (and ``out_features`` too for BDWP); otherwise the
    constructor raises, naming the dimension.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        pattern: str | Pattern = "2:8",
        method: str = "bdwp",
        *,
        backward_mask: str = "independent",
        decay: float = DEFAULT_DECAY,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias, device=device, dtype=dtype)
        self._init_nm(pattern, method, backward_mask, decay)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.method == "dense":
            return nn.functional.linear(x, self.weight, self.bias)
        mf, mdx = self.masks()
        return nm_linear(x, self.weight, self.bias, mf, mdx, self.decay, self._grad_scale)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._extra_nm()}"


def _pair(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


class NMConv2d(NMLayer, nn.Conv2d):
    """``nn.Conv2d`` (groups=1, zero padding) trained with N:M weights.

    M_F groups run along the input channels C at every kernel position, M_B along the output
    channels O. ``in_channels`` must be a multiple of M (and ``out_channels`` too for BDWP).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        pattern: str | Pattern = "2:8",
        method: str = "bdwp",
        *,
        backward_mask: str = "independent",
        decay: float = DEFAULT_DECAY,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        if groups != 1:
            raise ValueError(f"NMConv2d supports groups=1 only, got groups={groups}")
        if padding_mode != "zeros":
            raise ValueError(f"NMConv2d supports padding_mode='zeros' only, got {padding_mode!r}")
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                           bias, padding_mode, device=device, dtype=dtype)
        self._init_nm(pattern, method, backward_mask, decay)
        self._explicit_padding = self._numeric_padding()

    def _numeric_padding(self) -> tuple[int, int]:
        """Padding as two ints: the backward helpers do not take ``"same"``/``"valid"``."""
        if self.padding == "valid":
            return (0, 0)
        if self.padding == "same":
            pads = []
            for k, d in zip(self.kernel_size, self.dilation, strict=True):
                total = d * (k - 1)
                if total % 2:
                    raise ValueError(
                        f"NMConv2d cannot use padding='same' with kernel {self.kernel_size} and dilation "
                        f"{self.dilation} (asymmetric padding); give the padding as numbers"
                    )
                pads.append(total // 2)
            return (pads[0], pads[1])
        return _pair(self.padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.method == "dense":
            return super().forward(x)
        mf, mdx = self.masks()
        return nm_conv2d(x, self.weight, self.bias, mf, mdx, self.decay, self._grad_scale,
                         _pair(self.stride), self._explicit_padding, _pair(self.dilation))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._extra_nm()}"


def set_grad_scale(model: nn.Module, scale: float | torch.Tensor) -> None:
    """Tell every N:M layer of ``model`` the loss scaler's current scale (see the module doc of
    :mod:`tasder.train.functional`): call it before ``scaler.scale(loss).backward()``.

    Without a scaler the value stays 1. :func:`tasder.train.fit` does this itself with ``amp=True``.
    """
    value = float(scale)
    for module in model.modules():
        if isinstance(module, NMLayer):
            module.grad_scale = value
