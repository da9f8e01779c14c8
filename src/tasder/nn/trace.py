"""One forward pass → the GEMMs a model runs: every call of an ``nn.Linear`` or ``nn.Conv2d``.

:func:`trace_gemms` is the one forward-hook tracer of tasder: the accelerator workloads
(:func:`tasder.workloads.trace_network`, :func:`tasder.workloads.workload_from_model`), the
search's hardware cost, MAC counting (:func:`tasder.nn.count_macs`) and training-op counting
(:func:`tasder.train.count_training_ops`) all read the model through it, so they agree on what a
layer is and how often it runs. Its rules:

* **Every call is a record.** A module called twice (a shared or repeated block) gives two
  :class:`GemmCall` records with the same ``name``, in call order; a module that never runs gives
  none. Subclasses count (TASD layers, N:M training layers). A module registered under two names
  is named by the first, as ``model.named_modules()`` lists it (the root module is ``""``).
* **Eval mode, no gradient.** The pass runs under ``torch.no_grad()`` with every submodule in
  eval mode — what inference runs: dropout is off and batch norm uses its running statistics, so
  the shapes and the operands the callers measure are those of deployment. Each submodule's own
  ``training`` flag is restored afterwards (a model that was half in train mode stays so).
* **The caller's model is untouched**: no parameter or buffer changes (eval-mode batch norm does
  not update its statistics), the hooks are removed even when the forward pass raises.
* **GEMM view** (``Z[m,n] += A[m,k]·B[k,n]``, A the weights, docs/design.md §4): a Linear over T
  rows (tokens × batch) is ``M = out_features, K = in_features, N = T``; a Conv2d by im2col is,
  per group, ``M = out/groups, K = C/groups·R·S, N = P·Q·batch``, run ``groups`` times. For a
  convolution :attr:`GemmCall.conv` keeps the full geometry (:class:`ConvGeometry`).

``observe(call, module, x, output)`` is called inside each hook, for callers that measure the
operands of a call (densities, a TASD layer's kept elements) without keeping activations.

>>> import torch
>>> from torch import nn
>>> block = nn.Linear(8, 8)
>>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 5 * 5, 8), block, block)
>>> [(c.name, c.kind, c.M, c.K, c.N) for c in trace_gemms(model, torch.randn(2, 3, 5, 5))]
[('0', 'conv2d', 4, 27, 50), ('2', 'linear', 8, 100, 2), ('3', 'linear', 8, 8, 2), ('3', 'linear', 8, 8, 2)]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from tasder._batch import call_with_batch

__all__ = ["ConvGeometry", "GemmCall", "GemmKind", "trace_gemms"]

GemmKind = Literal["linear", "conv2d"]


@dataclass(frozen=True)
class ConvGeometry:
    """A 2-D convolution's loop bounds and parameters, as the accelerator literature names them.

    Attributes:
        C: input channels. M: output channels (``out_channels``, all groups).
        R, S: kernel height and width. P, Q: output height and width. H, W: input height and width.
        N: the batch (samples in the call; 1 for an unbatched ``(C, H, W)`` input).
        stride, padding, dilation: per spatial dim (a ``padding="same"`` or ``"valid"`` module is
            recorded as the numbers it pads the top/left with).
        groups: the convolution's groups (``C`` for a depthwise one).
    """

    C: int
    M: int
    R: int
    S: int
    P: int
    Q: int
    N: int
    H: int
    W: int
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int


@dataclass(frozen=True)
class GemmCall:
    """One call of a Linear or Conv2d as a GEMM (see the module docstring for the GEMM view).

    Attributes:
        index: position in the trace (call order, from 0).
        name: the module's qualified name (``model.get_submodule(name)``).
        kind: ``"linear"`` or ``"conv2d"``.
        M, K, N: the GEMM of one group (the whole call for a Linear).
        groups: how many such GEMMs the call runs (a grouped convolution's groups; 1 for a Linear).
        batch: samples in the call — the input's leading dim (1 for an unbatched input).
        conv: the convolution's geometry, None for a Linear.
    """

    index: int
    name: str
    kind: GemmKind
    M: int
    K: int
    N: int
    groups: int
    batch: int
    conv: ConvGeometry | None = None

    @property
    def macs(self) -> int:
        """Dense multiply-accumulates of the call (every group)."""
        return self.M * self.K * self.N * self.groups


def _pair(value: Any) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _conv_padding(module: nn.Conv2d) -> tuple[int, int]:
    if isinstance(module.padding, str):  # "valid": none; "same": torch pads (d·(k−1))//2 before
        if module.padding == "valid":
            return (0, 0)
        return tuple(d * (k - 1) // 2 for d, k in zip(module.dilation, module.kernel_size, strict=True))  # type: ignore[return-value]
    return _pair(module.padding)


def _call(index: int, name: str, module: nn.Module, x: torch.Tensor, output: torch.Tensor) -> GemmCall:
    if isinstance(module, nn.Conv2d):
        batched = output.dim() == 4
        r, s = _pair(module.kernel_size)
        p, q = int(output.shape[-2]), int(output.shape[-1])
        batch = int(output.shape[0]) if batched else 1
        groups = int(module.groups)
        geometry = ConvGeometry(C=int(module.in_channels), M=int(module.out_channels), R=r, S=s, P=p, Q=q, N=batch,
                                H=int(x.shape[-2]), W=int(x.shape[-1]), stride=_pair(module.stride),
                                padding=_conv_padding(module), dilation=_pair(module.dilation), groups=groups)
        return GemmCall(index, name, "conv2d", M=module.out_channels // groups,
                        K=module.in_channels // groups * r * s, N=p * q * batch, groups=groups, batch=batch,
                        conv=geometry)
    assert isinstance(module, nn.Linear)
    rows = x.numel() // module.in_features if module.in_features else math.prod(x.shape[:-1])
    batch = int(x.shape[0]) if x.dim() > 1 else 1
    return GemmCall(index, name, "linear", M=int(module.out_features), K=int(module.in_features), N=int(rows),
                    groups=1, batch=batch)


def trace_gemms(
    model: nn.Module,
    example: Any,
    *,
    observe: Callable[[GemmCall, nn.Module, torch.Tensor, torch.Tensor], None] | None = None,
) -> list[GemmCall]:
    """Run ``model`` once on ``example`` and return every Linear/Conv2d call as a :class:`GemmCall`.

    Args:
        model: any ``nn.Module`` (see the module docstring for what happens to it: nothing lasting).
        example: one batch — a tensor (``model(x)``), a tuple/list of positional arguments or a
            mapping of keyword arguments (``model(**batch)``, e.g. a tokenizer's output).
        observe: called as ``observe(call, module, input, output)`` in each call's forward hook.

    Returns:
        The calls in the order they ran (empty when the model runs no Linear or Conv2d).

    Raises:
        TypeError: ``model`` is not a module.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"trace_gemms: `model` must be a torch.nn.Module; got {type(model).__name__}")
    names = {module: name for name, module in model.named_modules()}
    calls: list[GemmCall] = []

    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        x = args[0] if args else kwargs.get("input")
        call = _call(len(calls), names[module], module, x, output)
        calls.append(call)
        if observe is not None:
            observe(call, module, x, output)

    modes = [(m, m.training) for m in model.modules()]
    handles = [m.register_forward_hook(hook, with_kwargs=True) for m in model.modules()
               if isinstance(m, (nn.Linear, nn.Conv2d))]
    try:
        model.eval()
        with torch.no_grad():
            call_with_batch(model, example)
    finally:
        for h in handles:
            h.remove()
        for module, training in modes:
            module.training = training
    return calls
