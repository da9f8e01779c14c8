"""N:M masks and the custom autograd functions behind SR-STE and BDWP training (docs/design.md §3.5).

For ``Y = X·Wᵀ`` with ``W`` of shape (out, K) training runs three GEMMs of equal size:

* **FF**  ``Y  = X·(W⊙M_F)ᵀ``      — M_F is N:M along K (the forward reduction dim);
* **BP**  ``dX = dY·(W⊙M_?)``      — SR-STE uses M_F, BDWP uses M_B, N:M along *out* (the
  reduction dim of this GEMM, so N:M hardware can skip work here too);
* **WU**  ``dW = dYᵀ·X``           — dense in both methods (the straight-through estimator), plus
  the SR-STE decay ``λ·(1−M_F)⊙W`` that pulls the pruned weights towards zero.

Why a custom :class:`torch.autograd.Function`: writing ``F.linear(x, w * mask)`` lets autograd
differentiate through the product, which silently gives SR-STE's input gradient (dX with
``W⊙M_F``) whatever method was asked for — the backward mask can never differ from the forward
one, so BDWP is impossible that way — and, without SR-STE's straight-through wrapper, a masked
weight gradient ``(dYᵀX)⊙M_F``, so pruned weights never receive gradient and can never come
back. The functions below choose the backward operands explicitly instead: dX with whichever
mask the method asks for, dW dense (tested against exactly this pitfall).

Mixed precision: the decay term is added *inside* the backward pass, so with a loss scaler it
would be added to the *scaled* gradient and then divided by the scale on ``unscale_``. To keep it
exactly ``λ·(1−M_F)⊙W`` after unscaling, the functions take ``grad_scale`` (the scaler's current
scale, 1 without AMP) and add ``grad_scale·λ·(1−M_F)⊙W``; :func:`tasder.train.set_grad_scale`
(called by :func:`tasder.train.fit` before every backward) keeps the layers' value current, and
the layers hand over a callable, so the value is read when ``backward()`` runs.

Masks are computed by :func:`nm_mask`, a lean top-N selection equivalent to
:func:`tasder.compute_mask` for a one-rank G:H pattern (ties to the lower index) but without the
validation and generality overhead, because it runs on every training step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.autograd.function import once_differentiable
from torch.nn.grad import conv2d_input, conv2d_weight

#: The loss scale: a number, or a callable read when the backward runs (the layers pass one, so
#: a scale set after the forward but before ``backward()`` is still the one used).
GradScale = float | Callable[[], float]

__all__ = [
    "BACKWARD_MASKS",
    "GradScale",
    "NMConv2dFunction",
    "NMLinearFunction",
    "backward_mask",
    "nm_conv2d",
    "nm_linear",
    "nm_mask",
]

#: How the BDWP backward mask M_B is formed (see :func:`backward_mask`).
BACKWARD_MASKS: tuple[str, ...] = ("independent", "nested")


def nm_mask(w: torch.Tensor, n: int, m: int, dim: int, score: torch.Tensor | None = None) -> torch.Tensor:
    """Boolean N:M mask of ``w``: in every group of ``m`` consecutive elements along ``dim`` keep
    the ``n`` with the largest ``score`` (default ``|w|``); ties go to the lower index.

    ``w.shape[dim]`` must be a multiple of ``m`` (layers that do not divide stay dense upstream).
    Equal to ``compute_mask(w, f"{n}:{m}", dim)`` for finite ``w`` (tested), at a fraction of the
    cost, because it runs twice per layer on every training step: no parsing or validation, no
    sort and no copy to move ``dim`` last. It finds each group's N-th largest score ``t`` with
    ``topk``, keeps everything above ``t``, and fills the remaining slots with the elements equal
    to ``t`` in index order (a cumulative count), which is exactly the lower-index tie rule.
    """
    s = w.detach().abs() if score is None else score
    dim = dim % s.dim()
    length = s.shape[dim]
    if length % m:
        raise ValueError(f"dimension {dim} of length {length} is not a multiple of M={m}")
    if n >= m:
        return torch.ones_like(s, dtype=torch.bool)
    g = s.unflatten(dim, (length // m, m))  # a view: the group members lie along dim + 1
    d = dim + 1
    nth = g.topk(n, dim=d, sorted=True).values.narrow(d, n - 1, 1)
    above = g > nth
    tied = g == nth
    free = n - above.sum(d, keepdim=True)  # slots left for the elements tied at the threshold
    keep = above | (tied & (tied.cumsum(d) <= free))
    return keep.flatten(dim, d)


def backward_mask(
    w: torch.Tensor,
    n: int,
    m: int,
    forward_mask: torch.Tensor,
    how: str = "independent",
    magnitude: torch.Tensor | None = None,
) -> torch.Tensor:
    """The BDWP backward mask M_B: N:M along the output dim (dim 0) of ``w``.

    * ``"independent"``: the top-N of ``|W|`` in every group of M consecutive output rows of the
      dense W, ignoring M_F. M_B then holds exactly N per group, but may keep weights that the
      forward pass pruned (their dense values flow into dX).
    * ``"nested"``: M_B ⊆ M_F — the top-N of ``|W|`` per output group chosen only among the
      elements M_F kept (those M_F pruned rank below every kept one and are never selected). A
      group that holds fewer than N forward survivors keeps all of them, so M_B may hold *fewer*
      than N per group; dX then uses only weights that also exist in the forward model (this is
      Bi-Mask's construction without its permutation search).
    """
    magnitude = w.detach().abs() if magnitude is None else magnitude  # ``|w|``, if the caller has it
    if how == "independent":
        return nm_mask(w, n, m, dim=0, score=magnitude)
    if how == "nested":
        # -1 ranks below every |w| >= 0, so a pruned element is only picked if the group has
        # fewer than N survivors; the final `&` drops those picks.
        score = torch.where(forward_mask, magnitude, -1.0)
        return nm_mask(w, n, m, dim=0, score=score) & forward_mask
    raise ValueError(f"unknown backward mask {how!r}; choose one of {', '.join(BACKWARD_MASKS)}")


def _add_decay(
    gw: torch.Tensor, w: torch.Tensor, mf: torch.Tensor, decay: float, grad_scale: GradScale
) -> torch.Tensor:
    """``gw + grad_scale·λ·(1−M_F)⊙W``: the SR-STE decay on the pruned weights, in the gradient's
    scale (in place: ``gw`` is a fresh gradient buffer)."""
    scale = grad_scale() if callable(grad_scale) else grad_scale
    return gw.add_(w.masked_fill(mf, 0.0), alpha=decay * scale)


class NMLinearFunction(torch.autograd.Function):
    """``y = x·(W⊙M_F)ᵀ + b`` with ``dX = dY·(W⊙M_dx)``, ``dW = dYᵀX + s·λ(1−M_F)⊙W`` (dense)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        mask_fwd: torch.Tensor,
        mask_dx: torch.Tensor,
        decay: float,
        grad_scale: GradScale,
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight, mask_fwd, mask_dx)
        ctx.decay, ctx.grad_scale, ctx.has_bias = decay, grad_scale, bias is not None
        return torch.nn.functional.linear(x, weight * mask_fwd, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, gy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, w, mf, mdx = ctx.saved_tensors
        gx = gw = gb = None
        # Under autocast the output (and so gy) may be in a lower precision than the fp32
        # master weights: compute in the weights' dtype and return each grad in its input's dtype.
        gy = gy.to(w.dtype)
        if ctx.needs_input_grad[0]:
            gx = (gy @ (w * mdx)).to(x.dtype)
        if ctx.needs_input_grad[1]:
            gy2, x2 = gy.reshape(-1, gy.shape[-1]), x.reshape(-1, x.shape[-1]).to(w.dtype)
            gw = gy2.t() @ x2  # dense: straight through to the dense W
            if ctx.decay:
                gw = _add_decay(gw, w, mf, ctx.decay, ctx.grad_scale)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = gy.reshape(-1, gy.shape[-1]).sum(0)
        return gx, gw, gb, None, None, None, None


class NMConv2dFunction(torch.autograd.Function):
    """2-D convolution (groups=1) with the same masking rules as :class:`NMLinearFunction`.

    Weight (O, C, R, S): M_F runs along C (dim 1) at each kernel position, M_B along O (dim 0).
    The backward is :func:`torch.nn.grad.conv2d_input` (with ``W⊙M_dx``) and
    :func:`torch.nn.grad.conv2d_weight` (dense) — fused into the one ``aten.convolution_backward``
    call both wrap when both gradients are needed — so any stride, padding and dilation work.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        mask_fwd: torch.Tensor,
        mask_dx: torch.Tensor,
        decay: float,
        grad_scale: GradScale,
        stride: tuple[int, int],
        padding: tuple[int, int],
        dilation: tuple[int, int],
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight, mask_fwd, mask_dx)
        ctx.decay, ctx.grad_scale, ctx.has_bias = decay, grad_scale, bias is not None
        ctx.conv = (stride, padding, dilation)
        return torch.nn.functional.conv2d(x, weight * mask_fwd, bias, stride, padding, dilation)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, gy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, w, mf, mdx = ctx.saved_tensors
        stride, padding, dilation = ctx.conv
        gx = gw = gb = None
        gy = gy.to(w.dtype)
        want_x, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if want_x and want_w:
            # One fused call: the weight gradient does not depend on the weight's values, so the
            # masked weight W⊙M_dx serves both outputs. This is exactly what conv2d_input and
            # conv2d_weight compute (tested equal), without conv2d_weight's stride-0 dummy
            # weight, which sends oneDNN down a slow path (about 2x the dense step on CPU).
            bias_grad = bool(ctx.has_bias and ctx.needs_input_grad[2])
            gx, gw, gb = torch.ops.aten.convolution_backward(
                gy, x.to(w.dtype), w * mdx, [w.shape[0]] if bias_grad else None, stride, padding, dilation,
                False, (0, 0), 1, (True, True, bias_grad),
            )
            gx = gx.to(x.dtype)
        elif want_x:
            gx = conv2d_input(x.shape, w * mdx, gy, stride, padding, dilation).to(x.dtype)
        elif want_w:
            gw = conv2d_weight(x.to(w.dtype), w.shape, gy, stride, padding, dilation)
        if gw is not None and ctx.decay:
            gw = _add_decay(gw, w, mf, ctx.decay, ctx.grad_scale)
        if gb is None and ctx.has_bias and ctx.needs_input_grad[2]:
            gb = gy.sum(dim=(0, 2, 3))
        return gx, gw, gb, None, None, None, None, None, None, None


def nm_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    mask_fwd: torch.Tensor,
    mask_dx: torch.Tensor,
    decay: float = 2e-4,
    grad_scale: GradScale = 1.0,
) -> torch.Tensor:
    """Linear layer with masked forward/input-gradient and dense weight gradient (see module doc).

    SR-STE: ``mask_dx = mask_fwd``. BDWP: ``mask_dx = M_B`` (N:M along the output dim).
    """
    return NMLinearFunction.apply(x, weight, bias, mask_fwd, mask_dx, decay, grad_scale)


def nm_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    mask_fwd: torch.Tensor,
    mask_dx: torch.Tensor,
    decay: float = 2e-4,
    grad_scale: GradScale = 1.0,
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (0, 0),
    dilation: tuple[int, int] = (1, 1),
) -> torch.Tensor:
    """Conv2d (groups=1, zero padding) counterpart of :func:`nm_linear`."""
    return NMConv2dFunction.apply(x, weight, bias, mask_fwd, mask_dx, decay, grad_scale, stride, padding, dilation)
