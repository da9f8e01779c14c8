"""TASD layers: ``nn.Linear`` / ``nn.Conv2d`` whose weight or input is a TASD approximation.

Both are *subclasses* of the plain layers, so everything that works on a Linear or a Conv2d —
``state_dict`` save/load (same keys: ``weight``, ``bias``), ``.to()``, ``.eval()/.train()``,
``torch.no_grad`` inference, optimisers, isinstance checks in other tools — keeps working.

Groups lie where DESIGN.md §3.3 puts them, along the GEMM reduction dim:

============  ==============================  =============================================
layer         weight (TASD-W)                 input (TASD-A)
============  ==============================  =============================================
Linear        ``(out, in)``, along ``in``     ``(..., in)``, along the last dim
Conv2d        ``(O, C, R, S)``, along ``C``   ``(N, C, H, W)`` (or ``(C, H, W)``), along ``C``
============  ==============================  =============================================

**TASD-W** (mode ``"W"``): ``weight`` *is* the approximated weight Ŵ, so the forward pass is
literally ``F.linear`` / ``F.conv2d`` with Ŵ, bit for bit the plain layer run with Ŵ. The terms
are available from :meth:`~TASDLayer.terms`. Training updates Ŵ densely (it then leaves the
series); call :meth:`~TASDLayer.reapproximate_` to project it back, or train with
:mod:`tasder.train`.

**TASD-A** (mode ``"A"``): the forward pass is the plain op on
``approximate(x.detach(), series, dim)`` (the single-output kernel, bit for bit
``decompose(x, ...).approximation``). The kernel is not differentiable, so when ``x`` needs a
gradient the layer runs ``torch.where(kept, x, x̂)`` instead — the same values, bit for bit —
and the gradient flows to ``x`` through the kept (nonzero) elements only; a dropped element, or
a kept element that is exactly zero, gets zero gradient. Every forward pass adds the number of
kept (nonzero) and of all input elements to ``kept_elements`` / ``seen_elements`` (plain Python
ints, not in the ``state_dict``; :mod:`tasder.nn.accounting` reads them), unless
``track_stats`` is False. NaN/Inf inputs are not rejected: they propagate as in a plain layer.
Layers that read the very same input tensor (the query, key and value projections of an
attention block) share one decomposition of it: see ``_approximate_memo``.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 - the universal spelling

from tasder.nn.config import LayerSpec, Mode
from tasder.sparsity.patterns import HSS, Pattern, Series
from tasder.tasd.decompose import approximate, decompose

__all__ = ["TASDConv2d", "TASDLayer", "TASDLinear", "incompatibility"]

#: The dimension the weight groups run along, for both layer kinds (Linear: in; Conv2d: C).
WEIGHT_DIM = 1


def incompatibility(module: nn.Module, spec: LayerSpec) -> str | None:
    """Why ``module`` (a plain Linear/Conv2d) cannot take ``spec``, or None when it can.

    The reasons are the ones a model transform skips a layer for (DESIGN.md §3.3): a grouped
    convolution (its reduction dim is split per group, which the groups along C would straddle),
    and a reduction dim shorter than the series' largest block, where a G:H block would be
    mostly padding and the "structure" meaningless.
    """
    if isinstance(module, nn.Conv2d):
        if module.groups != 1:
            return f"grouped convolution (groups={module.groups}); only groups=1 is supported"
        k, what = module.in_channels, "in_channels (C per kernel position)"
    elif isinstance(module, nn.Linear):
        k, what = module.in_features, "in_features"
    else:
        return f"unsupported layer type {type(module).__name__}"
    if k < spec.block_size:
        return f"reduction dim {what}={k} is smaller than the block size {spec.block_size} of series '{spec.series}'"
    return None


# -- the TASD-A input memo -------------------------------------------------------------------------
#
# Several layers often read the *same* input tensor: the query, key and value projections of every
# attention block do. Decomposing it once per block instead of three times removes a fifth of
# TASD-A's work on a BERT layer. The memo holds, per (series, dim), the last input seen (weakly),
# its version counter (which any in-place change bumps) and the approximation; an entry dies with
# its input tensor, so no activation outlives its forward pass because of it. Inference tensors
# (torch.inference_mode) have no version counter, so they are never memoised.

_MemoEntry = tuple["weakref.ReferenceType[torch.Tensor]", int, torch.Tensor, int]
_MEMO: dict[tuple[Series, int], _MemoEntry] = {}


def _approximate_memo(x: torch.Tensor, series: Series, dim: int) -> tuple[torch.Tensor, int]:
    """``(approximate(x, series, dim), its nonzero count)``, reusing the result for a repeated input."""
    key = (series, dim)
    memo_ok = not x.is_inference()
    if memo_ok:
        entry = _MEMO.get(key)
        if entry is not None and entry[0]() is x and entry[1] == x._version:
            return entry[2], entry[3]
    approx = approximate(x.detach(), series, dim, allow_nonfinite=True)
    n_kept = int(torch.count_nonzero(approx))
    if memo_ok:
        ref: weakref.ReferenceType[torch.Tensor]

        def forget(dead: object, key: tuple[Series, int] = key) -> None:
            current = _MEMO.get(key)
            if current is not None and current[0] is ref:
                _MEMO.pop(key, None)

        ref = weakref.ref(x, forget)
        _MEMO[key] = (ref, x._version, approx, n_kept)
    return approx, n_kept


class TASDLayer:
    """Base of TASDLinear and TASDConv2d (``isinstance(m, TASDLayer)`` finds either): the spec,
    the weight terms, the TASD-A input path and its counters."""

    series: Series
    mode: Mode
    track_stats: bool
    kept_elements: int
    seen_elements: int
    weight: nn.Parameter
    _term_cache: list[torch.Tensor] | None

    #: The input dimension TASD-A groups along (set by each subclass).
    input_dim: int

    def _init_tasd(self, series: str | Pattern | Series, mode: str) -> None:
        spec = LayerSpec(series=series, mode=mode)  # type: ignore[arg-type]  # validates both
        if spec.is_dense:
            raise ValueError(
                f"{type(self).__name__} needs a sparse series; 'dense' means 'leave the layer as it is' "
                f"(use the plain {type(self).__mro__[2].__name__})"
            )
        self.series = spec.series
        self.mode = spec.mode
        self.track_stats = True
        self.kept_elements = 0
        self.seen_elements = 0
        self._term_cache = None

    @property
    def spec(self) -> LayerSpec:
        """The layer's series and mode as a :class:`LayerSpec`."""
        return LayerSpec(series=self.series, mode=self.mode)

    @property
    def weight_dim(self) -> int:
        """The weight dimension the groups run along (1: Linear ``in``, Conv2d ``C``)."""
        return WEIGHT_DIM

    @property
    def measured_density(self) -> float | None:
        """TASD-A: kept / seen input elements over every forward pass so far (None before any)."""
        return self.kept_elements / self.seen_elements if self.seen_elements else None

    def reset_stats(self) -> None:
        """Zero the TASD-A input counters."""
        self.kept_elements = 0
        self.seen_elements = 0

    @torch.no_grad()
    def reapproximate_(self) -> None:
        """TASD-W: replace ``weight`` (in place) by its approximation under the layer's series.

        For a weight that already follows the series (a fresh TASD-W layer) this changes nothing;
        after training or loading a dense checkpoint it projects the weight back onto the series.
        """
        if self.mode != "W":
            raise ValueError(f"reapproximate_() is for TASD-W layers; this layer has mode {self.mode!r}")
        result = decompose(self.weight.detach(), self.series, WEIGHT_DIM)
        self.weight.copy_(result.approximation)
        self._remember_terms(result.terms)

    def _remember_terms(self, terms: list[torch.Tensor]) -> None:
        # Re-decomposing Ŵ gives back the same terms for one-rank G:H series (each term's picks are
        # still the largest of what remains), so nothing is kept for them. An HSS upper rank
        # scores blocks by their mean |w|, which dropping elements changes: keep those terms.
        hss = any(isinstance(t, HSS) for t in self.series.terms)
        self._term_cache = [t.detach().clone() for t in terms] if hss else None

    def terms(self) -> list[torch.Tensor]:
        """TASD-W: the series' terms of the stored weight; they sum to ``weight`` exactly.

        Raises ValueError when ``weight`` no longer follows the series (it was trained or loaded
        from a dense checkpoint): call :meth:`reapproximate_` first.
        """
        if self.mode != "W":
            raise ValueError(f"terms() is for TASD-W layers (mode 'W'); this layer has mode {self.mode!r}")
        w = self.weight.detach()
        cached = self._term_cache
        if cached is not None and len(cached) > 0 and cached[0].shape == w.shape:
            total = cached[0].clone()
            for t in cached[1:]:
                total += t
            if torch.equal(total, w):
                return [t.clone() for t in cached]
        result = decompose(w, self.series, WEIGHT_DIM, allow_nonfinite=True)
        if bool((result.residual != 0).any()):
            raise ValueError(
                f"the weight of this {type(self).__name__} no longer follows series '{self.series}' "
                f"(was it trained, or loaded from a dense checkpoint?); call reapproximate_() first"
            )
        return result.terms

    def _approximate_input(self, x: torch.Tensor) -> torch.Tensor:
        """TASD-A: the approximated input (see the module docstring for gradients and counters)."""
        approx, n_kept = _approximate_memo(x, self.series, self.input_dim)
        if torch.is_grad_enabled() and x.requires_grad:
            approx = torch.where(approx != 0, x, approx)  # same values; gradient through kept elements
        if self.track_stats:
            self.kept_elements += n_kept
            self.seen_elements += x.numel()
        return approx

    def _tasd_extra_repr(self) -> str:
        return f"series={self.series}, mode={self.mode}"


class TASDLinear(TASDLayer, nn.Linear):
    """``nn.Linear`` with a TASD series on its weight (mode ``"W"``) or its input (mode ``"A"``).

    Build one from a trained layer with :meth:`from_linear` (what :func:`tasder.nn.apply_tasd`
    does); constructed directly, a TASD-W layer approximates its fresh random weight.

    >>> import torch
    >>> layer = TASDLinear.from_linear(torch.nn.Linear(16, 4), "2:8+1:8", "W")
    >>> layer
    TASDLinear(in_features=16, out_features=4, bias=True, series=2:8+1:8, mode=W)
    """

    input_dim = -1

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: Any = None,
        dtype: torch.dtype | None = None,
        *,
        series: str | Pattern | Series,
        mode: Mode = "W",
    ) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._init_tasd(series, mode)
        reason = incompatibility(self, self.spec)
        if reason:
            raise ValueError(f"TASDLinear: {reason}")
        if self.mode == "W" and self.weight.device.type != "meta":
            self.reapproximate_()

    @classmethod
    def from_linear(cls, linear: nn.Linear, series: str | Pattern | Series, mode: Mode = "W") -> TASDLinear:
        """A TASD copy of ``linear`` (which is not modified; the new layer shares no storage with it)."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"from_linear needs an nn.Linear; got {type(linear).__name__}")
        w = linear.weight
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None,
                    device="meta", dtype=w.dtype, series=series, mode=mode)
        _copy_parameters(layer, linear)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "A":
            x = self._approximate_input(x)
        return F.linear(x, self.weight, self.bias)

    def to_plain(self) -> nn.Linear:
        """A plain ``nn.Linear`` computing what this layer computes on approximated inputs:
        TASD-W → Ŵ baked in; TASD-A → the original weights (the input approximation is dropped)."""
        plain = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                          device="meta", dtype=self.weight.dtype)
        _copy_parameters(plain, self)
        return plain

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._tasd_extra_repr()}"


class TASDConv2d(TASDLayer, nn.Conv2d):
    """``nn.Conv2d`` (groups=1) with a TASD series on its weight (``"W"``) or input (``"A"``).

    Any kernel size, stride, padding (also ``'same'``/``'valid'`` and non-zero padding modes) and
    dilation. Build one from a trained layer with :meth:`from_conv2d`.
    """

    input_dim = -3  # C of (N, C, H, W), and of an unbatched (C, H, W)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: str | int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: torch.dtype | None = None,
        *,
        series: str | Pattern | Series,
        mode: Mode = "W",
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias, padding_mode=padding_mode,
                         device=device, dtype=dtype)
        self._init_tasd(series, mode)
        reason = incompatibility(self, self.spec)
        if reason:
            raise ValueError(f"TASDConv2d: {reason}")
        if self.mode == "W" and self.weight.device.type != "meta":
            self.reapproximate_()

    @classmethod
    def from_conv2d(cls, conv: nn.Conv2d, series: str | Pattern | Series, mode: Mode = "W") -> TASDConv2d:
        """A TASD copy of ``conv`` (which is not modified; the new layer shares no storage with it)."""
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"from_conv2d needs an nn.Conv2d; got {type(conv).__name__}")
        layer = cls(**_conv_kwargs(conv), device="meta", dtype=conv.weight.dtype, series=series, mode=mode)
        _copy_parameters(layer, conv)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "A":
            x = self._approximate_input(x)
        return self._conv_forward(x, self.weight, self.bias)

    def to_plain(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` (TASD-W: Ŵ baked in; TASD-A: the original weights)."""
        plain = nn.Conv2d(**_conv_kwargs(self), device="meta", dtype=self.weight.dtype)
        _copy_parameters(plain, self)
        return plain

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._tasd_extra_repr()}"


def _conv_kwargs(conv: nn.Conv2d) -> dict[str, Any]:
    return {
        "in_channels": conv.in_channels,
        "out_channels": conv.out_channels,
        "kernel_size": conv.kernel_size,
        "stride": conv.stride,
        "padding": conv.padding,
        "dilation": conv.dilation,
        "groups": conv.groups,
        "bias": conv.bias is not None,
        "padding_mode": conv.padding_mode,
    }


@torch.no_grad()
def _copy_parameters(dst: nn.Module, src: nn.Module) -> None:
    """Give ``dst`` (built on the meta device) copies of ``src``'s weight and bias, and its mode.

    A TASD-W destination approximates the copied weight (``reapproximate_``).
    """
    for name in ("weight", "bias"):
        p = getattr(src, name)
        if p is None:
            continue
        setattr(dst, name, nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad))
    dst.train(src.training)
    if isinstance(dst, TASDLayer) and dst.mode == "W":
        dst.reapproximate_()
