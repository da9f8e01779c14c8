"""Input checks shared by every public function: one place, one wording.

Each check raises at the public boundary with a one-line message that names the argument, what
was expected and what arrived (the scikit-learn ``check_array`` habit), so users never see a
traceback from deep inside torch.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["FLOAT_DTYPES", "check_dim", "check_float_tensor", "check_has_data", "check_score"]

#: Floating dtypes the decomposition supports.
FLOAT_DTYPES: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_float_tensor(x: object, name: str = "x", *, allow_nonfinite: bool = True) -> torch.Tensor:
    """Return ``x`` as a torch tensor of a supported float dtype with at least one dimension.

    NumPy arrays are wrapped without copying. ``allow_nonfinite=False`` scans for NaN/Inf here;
    callers that can detect them more cheaply (the compiled kernel) pass ``True`` and check later.
    """
    if isinstance(x, np.ndarray):
        if x.dtype.kind != "f":
            raise TypeError(
                f"`{name}` must be a float tensor (float16, bfloat16, float32 or float64); got a NumPy "
                f"array of dtype {x.dtype}"
            )
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor or numpy.ndarray; got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"`{name}` must have dtype float16, bfloat16, float32 or float64; got {x.dtype} "
            f"(convert it first, e.g. x.float())"
        )
    if x.dim() == 0:
        raise ValueError(f"`{name}` must have at least one dimension; got a 0-dim tensor (a scalar)")
    if x.layout != torch.strided:
        raise ValueError(f"`{name}` must be a dense (strided) tensor; got layout {x.layout} (call .to_dense())")
    if not allow_nonfinite:
        check_finite(x, name)
    return x


def check_has_data(x: torch.Tensor, name: str = "x") -> None:
    """Refuse a tensor without values (the ``meta`` device): masks and decompositions read values."""
    if x.is_meta:
        raise ValueError(f"`{name}` is on the meta device (a shape without values); masks and TASD need a tensor "
                         f"with data on cpu (compiled kernel) or another device such as cuda (PyTorch path): "
                         f"materialise it first, e.g. torch.empty_like(x, device='cpu')")


def check_finite(x: torch.Tensor, name: str = "x") -> None:
    """Raise ValueError if ``x`` holds NaN or Inf."""
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        count = int(bad.sum())
        raise ValueError(
            f"`{name}` holds {count} NaN/Inf value(s); clean the tensor or pass allow_nonfinite=True"
        )


def check_dim(dim: object, ndim: int, name: str = "dim") -> int:
    """Normalise a dimension index (negative counts from the end) for a tensor of ``ndim`` dims."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise ValueError(f"`{name}` must be an int; got {dim!r}")
    dim = int(dim)
    if not -ndim <= dim < ndim:
        raise ValueError(f"`{name}`={dim} is out of range for a tensor with {ndim} dimension(s) "
                         f"(expected {-ndim} <= {name} < {ndim})")
    return dim % ndim


def check_score(score: object, x: torch.Tensor) -> torch.Tensor:
    """A user-supplied score must be a real tensor shaped like ``x``; it is returned as float64."""
    if isinstance(score, np.ndarray):
        score = torch.from_numpy(score)
    if not isinstance(score, torch.Tensor):
        raise TypeError(f"`score` must be a tensor shaped like x; got {type(score).__name__}")
    if score.is_complex() or score.dtype == torch.bool:
        raise TypeError(f"`score` must be a real-valued tensor; got dtype {score.dtype}")
    if score.shape != x.shape:
        raise ValueError(f"`score` must have the shape of x {tuple(x.shape)}; got {tuple(score.shape)}")
    return score.to(torch.float64)
