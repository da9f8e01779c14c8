"""Swap a model's ``Linear``/``Conv2d`` layers for their N:M training versions, and back.

Which layers become sparse (:func:`plan_sparse_training`):

* ``layers=None`` (automatic): every ``nn.Linear`` and ``nn.Conv2d`` except those named in
  ``keep_dense`` — ``"first"`` is the first such layer in registration order (its input has no
  gradient, and stem layers have too few input channels), ``"classifier"`` the last
  ``nn.Linear`` (small, and the most sensitive) — and except layers whose dims do not divide M,
  which stay dense with the reason reported.
* ``layers=[names]``: exactly those layers; ``keep_dense`` is ignored, and a named layer that
  cannot take the pattern is an error (naming the layer and the dimension), not a silent skip.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from tasder.sparsity.patterns import Pattern
from tasder.train.layers import DEFAULT_DECAY, NMConv2d, NMLayer, NMLinear, check_method, parse_nm

__all__ = ["LayerPlan", "plan_sparse_training", "sparsify_for_training", "to_dense_layers", "weight_sparsity"]

_KEEP_DENSE_WORDS = ("first", "classifier")


@dataclass(frozen=True)
class LayerPlan:
    """What :func:`sparsify_for_training` does to one layer: ``sparse`` or not, and why not."""

    name: str
    kind: str  # "Linear" or "Conv2d"
    shape: tuple[int, ...]
    sparse: bool
    reason: str = ""


def _candidates(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, mod) for name, mod in model.named_modules() if isinstance(mod, (nn.Linear, nn.Conv2d))]


def _unfit_reason(module: nn.Module, method: str, m: int) -> str | None:
    """Why ``module`` cannot train with groups of ``m`` under ``method`` (None if it can)."""
    w = module.weight
    if isinstance(module, nn.Conv2d):
        if module.groups != 1:
            return f"grouped conv (groups={module.groups}) is not supported"
        if module.padding_mode != "zeros":
            return f"padding_mode={module.padding_mode!r} is not supported"
        k_name, o_name = "in_channels", "out_channels"
    else:
        k_name, o_name = "in_features", "out_features"
    if w.shape[1] % m:
        return f"{k_name}={w.shape[1]} is not a multiple of M={m}"
    if method == "bdwp" and w.shape[0] % m:
        return f"{o_name}={w.shape[0]} is not a multiple of M={m} (BDWP's backward groups)"
    return None


def plan_sparse_training(
    model: nn.Module,
    pattern: str | Pattern,
    method: str,
    layers: Sequence[str] | None = None,
    keep_dense: Iterable[str] = ("first", "classifier"),
) -> list[LayerPlan]:
    """One :class:`LayerPlan` per ``Linear``/``Conv2d`` of ``model`` (see the module doc)."""
    check_method(method)
    m = parse_nm(pattern)[1] if method != "dense" else 1
    found = _candidates(model)
    names = [name for name, _ in found]
    if isinstance(keep_dense, str):
        keep_dense = (keep_dense,)
    keep = set(keep_dense)
    unknown_keep = sorted(k for k in keep if k not in _KEEP_DENSE_WORDS and k not in names)
    if unknown_keep:
        raise ValueError(f"keep_dense names no Linear/Conv2d layer: {', '.join(unknown_keep)}")
    if layers is not None:
        if isinstance(layers, str):
            layers = (layers,)
        missing = [n for n in layers if n not in names]
        if missing:
            raise ValueError(
                f"no Linear/Conv2d layer named {', '.join(map(repr, missing))}; layers: {', '.join(names)}"
            )
    first = names[0] if names else None
    linears = [name for name, mod in found if isinstance(mod, nn.Linear)]
    classifier = linears[-1] if linears else None

    plans: list[LayerPlan] = []
    for name, mod in found:
        kind = "Conv2d" if isinstance(mod, nn.Conv2d) else "Linear"
        shape = tuple(mod.weight.shape)
        reason = None
        if method == "dense":
            reason = "dense training"
        elif layers is not None:
            if name not in layers:
                reason = "not selected"
            else:
                bad = _unfit_reason(mod, method, m)
                if bad is not None:
                    raise ValueError(f"layer {name!r} {kind}{shape} cannot train with {pattern}: {bad}")
        elif name in keep:
            reason = "kept dense (keep_dense)"
        elif "first" in keep and name == first:
            reason = "first layer (keep_dense)"
        elif "classifier" in keep and name == classifier:
            reason = "classifier (keep_dense)"
        else:
            reason = _unfit_reason(mod, method, m)
        plans.append(LayerPlan(name, kind, shape, reason is None, reason or ""))
    return plans


def _nm_version(mod: nn.Module, pattern: str | Pattern, method: str, backward_mask: str, decay: float) -> nn.Module:
    w = mod.weight
    kw = {"pattern": pattern, "method": method, "backward_mask": backward_mask, "decay": decay,
          "device": w.device, "dtype": w.dtype}
    if isinstance(mod, nn.Conv2d):
        new: nn.Module = NMConv2d(mod.in_channels, mod.out_channels, mod.kernel_size, mod.stride, mod.padding,
                                  mod.dilation, mod.groups, mod.bias is not None, mod.padding_mode, **kw)
    else:
        new = NMLinear(mod.in_features, mod.out_features, mod.bias is not None, **kw)
    new.load_state_dict(mod.state_dict())
    new.train(mod.training)
    return new


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def sparsify_for_training(
    model: nn.Module,
    pattern: str | Pattern,
    method: str = "bdwp",
    layers: Sequence[str] | None = None,
    keep_dense: Iterable[str] = ("first", "classifier"),
    *,
    backward_mask: str = "independent",
    decay: float = DEFAULT_DECAY,
    inplace: bool = False,
) -> nn.Module:
    """``model`` with its chosen layers replaced by :class:`NMLinear`/:class:`NMConv2d`.

    Returns a deep copy unless ``inplace=True``. Weights and biases carry over unchanged (training
    starts from them; the masks are derived on the first forward). ``method="dense"`` replaces
    nothing. Use :func:`plan_sparse_training` for the per-layer report.
    """
    plans = plan_sparse_training(model, pattern, method, layers, keep_dense)
    out = model if inplace else copy.deepcopy(model)
    for plan in plans:
        if plan.sparse:
            mod = out.get_submodule(plan.name)
            if isinstance(mod, NMLayer):  # already an N:M layer: reconfigure by rebuilding
                mod = _plain_version(mod, masked=False)
            _replace(out, plan.name, _nm_version(mod, pattern, method, backward_mask, decay))
    return out


def _plain_version(mod: nn.Module, masked: bool) -> nn.Module:
    w = mod.weight
    kw = {"device": w.device, "dtype": w.dtype}
    if isinstance(mod, nn.Conv2d):
        new: nn.Module = nn.Conv2d(mod.in_channels, mod.out_channels, mod.kernel_size, mod.stride, mod.padding,
                                   mod.dilation, mod.groups, mod.bias is not None, mod.padding_mode, **kw)
    else:
        new = nn.Linear(mod.in_features, mod.out_features, mod.bias is not None, **kw)
    state = {k: v.detach().clone() for k, v in mod.state_dict().items()}
    if masked:
        state["weight"] = mod.masked_weight().detach().clone()
    new.load_state_dict(state)
    new.train(mod.training)
    return new


def to_dense_layers(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """The reverse of :func:`sparsify_for_training`: plain ``nn.Linear``/``nn.Conv2d`` layers holding
    the final *masked* weights ``W⊙M_F`` (what the trained sparse model computes), so the result
    needs nothing from :mod:`tasder.train` and gives the same outputs. Copy unless ``inplace``.
    """
    out = model if inplace else copy.deepcopy(model)
    for name, mod in list(out.named_modules()):
        if isinstance(mod, NMLayer):
            _replace(out, name, _plain_version(mod, masked=True))
    return out


@torch.no_grad()
def weight_sparsity(model: nn.Module) -> dict[str, float]:
    """Fraction of zeros of each Linear/Conv2d weight as the model computes it (``W⊙M_F`` for N:M
    layers, the weight itself for dense ones)."""
    result: dict[str, float] = {}
    for name, mod in _candidates(model):
        w = mod.masked_weight() if isinstance(mod, NMLayer) else mod.weight
        result[name] = float((w == 0).sum()) / w.numel()
    return result
