"""A metric that carries its per-example scores: what an ``evaluate`` function may return.

A search decides whether a transformed model keeps the original's quality by comparing two
scores on one validation split. With one number per model that comparison has no error bar:
on 359 images 99 % of 97.5 % is 3.5 images of slack, and a config that passed by one image on
validation lost 3 % on test. With the score of every example the comparison is *paired* — the same
images, the same queries — and :mod:`tasder.search` can put a confidence bound on it
(docs/design.md §3.4).

:class:`Scores` is a ``float`` (the mean, so ``evaluate(model) > 0.9`` and ``a / b`` keep working
for callers that want a number) that also holds the per-example scores as a read-only float64
NumPy array:

>>> s = Scores([1, 0, 1, 1])
>>> float(s), s.per_example.tolist(), len(s)
(0.75, [1.0, 0.0, 1.0, 1.0], 4)
>>> s / 0.75
1.0

Arithmetic gives plain floats (the per-example scores do not travel through ``+`` or ``/``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tasder.errors import InvalidParameterError

__all__ = ["Scores", "as_scores"]


class Scores(float):
    """The mean of ``per_example`` (a 1-D sequence of finite numbers), carrying them along.

    Attributes:
        per_example: the scores, float64, 1-D, read-only (e.g. 1.0/0.0 = correct/wrong per
            image, hit@1 per query).

    Raises:
        InvalidParameterError: ``per_example`` is not 1-D, is empty, or holds NaN/Inf.
    """

    per_example: np.ndarray

    def __new__(cls, per_example: Any) -> Scores:
        arr = _as_1d(per_example, "Scores")
        if arr.size == 0:
            raise InvalidParameterError("Scores: no per-example scores (an empty split cannot be scored)")
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        if bad:
            raise InvalidParameterError(f"Scores: {bad} of {arr.size} per-example scores are NaN or infinite")
        arr = arr.copy()
        arr.setflags(write=False)
        obj = super().__new__(cls, float(math.fsum(arr.tolist()) / arr.size))
        obj.per_example = arr
        return obj

    def __len__(self) -> int:
        return int(self.per_example.size)

    def __repr__(self) -> str:
        return f"Scores({float(self)!r}, n={len(self)})"

    def __reduce__(self) -> tuple[Any, ...]:  # pickles as itself (float's reduce would drop the scores)
        return (Scores, (self.per_example,))


def _as_1d(value: Any, what: str) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, without importing torch
        value = value.detach().cpu().double().numpy()
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"{what}: per-example scores must be numbers; got {type(value).__name__} "
                                    f"({exc})") from None
    if arr.ndim != 1:
        raise InvalidParameterError(f"{what}: per-example scores must be 1-D (one per example); got shape "
                                    f"{tuple(arr.shape)}")
    return arr


def as_scores(value: Any) -> tuple[float, np.ndarray | None]:
    """``(metric, per-example scores or None)`` from what an ``evaluate`` function returned.

    Accepted: a :class:`Scores`; a 1-D tensor or array (the metric is its mean); a number, a 0-d
    tensor or array (no per-example scores). A NaN metric is returned as NaN (the caller decides);
    per-example scores must be finite and non-empty.

    Raises:
        InvalidParameterError: anything else, a 2-D array, an empty one, non-finite entries.
    """
    if isinstance(value, Scores):
        return float(value), value.per_example
    if isinstance(value, bool):
        raise InvalidParameterError("evaluate returned a bool; return the metric (a number) or per-example scores")
    if isinstance(value, (int, float)):
        return float(value), None
    ndim = getattr(value, "ndim", None)
    if ndim == 0:
        return float(value), None
    if ndim == 1 or isinstance(value, (list, tuple)):
        s = Scores(value)
        return float(s), s.per_example
    raise InvalidParameterError(
        f"evaluate returned {type(value).__name__}{'' if ndim is None else f' with {ndim} dims'}; expected a "
        f"number, a 1-D array/tensor of per-example scores, or tasder.scores.Scores")
