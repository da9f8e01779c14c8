"""When a search accepts a config: the constraint, and with per-example scores a paired confidence bound.

A constraint ``c`` (keep ≥ c × the original metric) compares two means over the same examples.
With one number per model the rule can only be ``metric ≥ c·metric₀``, and on a small split that
is decided by a handful of examples (docs/design.md §3.4). With the score of every example,
``score(config)/score(original) ≥ c`` is exactly ``mean(d) ≥ 0`` for the per-example

    d_i = s_i − c·s0_i          (s: the config's scores, s0: the original's, same examples)

— a mean of paired differences, not a ratio of two means — so a one-sided Student-t bound on
``mean(d)`` is the right test: accept when ``mean(d) − t_{conf, n−1} · sd(d)/√n ≥ 0``. It is
cheap (no resampling), needs no assumption about how scores are distributed beyond the central
limit theorem, and uses the pairing (the examples both models get right cancel). An absolute
constraint ``Drop(a)`` bounds ``d_i = s_i − s0_i + a`` the same way.

The bound reported next to the point estimate is the lowest ratio the data supports at that
confidence: the lower Fieller limit, i.e. the largest ``c`` the rule above still accepts (for
``Drop`` the lower bound of ``mean(s) − mean(s0)``). Accepting at ``c`` and ``bound ≥ c`` agree.

Float-only evaluators keep the plain rule ``metric ≥ threshold``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from tasder.errors import InvalidParameterError

if TYPE_CHECKING:
    from tasder.search.methods import Drop

__all__ = ["DEFAULT_CONFIDENCE", "Acceptance", "check_confidence", "difference_lower_bound", "mean_lower_bound",
           "metric_resolution", "ratio_lower_bound", "t_quantile"]

#: The default confidence of the paired bound (see docs/design.md §3.4 for why 0.9).
DEFAULT_CONFIDENCE = 0.9
#: Fewer examples of slack than this and the search warns (a handful decide acceptance).
SLACK_WARNING = 5.0


def check_confidence(confidence: object) -> float:
    """``confidence`` checked: a number strictly between 0 and 1."""
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not math.isfinite(confidence) \
            or not 0 < confidence < 1:
        raise InvalidParameterError(f"`confidence` must be a number strictly between 0 and 1 (e.g. 0.9); "
                                    f"got {confidence!r}")
    return float(confidence)


def t_quantile(confidence: float, dof: int) -> float:
    """The one-sided Student-t quantile ``t`` with P(T ≤ t) = confidence and ``dof`` degrees of freedom."""
    # scipy.special's inverse of Student's t CDF (what scipy.stats.t.ppf computes): scipy comes with
    # scikit-learn, a dependency; importing scipy.stats costs 2-3 s of start-up, scipy.special a few tenths.
    from scipy.special import stdtrit

    return float(stdtrit(dof, confidence))


def _moments(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float, float, float]:
    """means of a and b, and the sample variances/covariance (ddof=1), in float64."""
    n = a.size
    ma, mb = float(a.mean()), float(b.mean())
    da, db = a - ma, b - mb
    return ma, mb, float(da @ da) / (n - 1), float(da @ db) / (n - 1), float(db @ db) / (n - 1)


def mean_lower_bound(d: np.ndarray, confidence: float) -> float:
    """One-sided lower confidence bound on the mean of ``d`` (Student t, n − 1 degrees of freedom)."""
    n = d.size
    if n < 2:
        return -math.inf
    mean = float(d.mean())
    sd = float(d.std(ddof=1))
    return mean - t_quantile(confidence, n - 1) * sd / math.sqrt(n)


def ratio_lower_bound(s: np.ndarray, s0: np.ndarray, confidence: float) -> float:
    """The lower Fieller limit of mean(s)/mean(s0): the largest c with ``mean_lower_bound(s − c·s0) ≥ 0``.

    −inf when the original's mean is not significantly above zero at this confidence (then no
    finite ratio is supported).
    """
    n = s.size
    if n < 2:
        return -math.inf
    a, b, vss, vs0, v00 = _moments(s, s0)
    q = t_quantile(confidence, n - 1) ** 2 / n
    big_a = b * b - q * v00
    if big_a <= 0:
        return -math.inf
    half_b = a * b - q * vs0
    disc = half_b * half_b - big_a * (a * a - q * vss)
    # a/b lies between the roots (the quadratic is ≤ 0 there), so disc ≥ 0 up to rounding.
    return (half_b - math.sqrt(max(disc, 0.0))) / big_a


def difference_lower_bound(s: np.ndarray, s0: np.ndarray, confidence: float) -> float:
    """Lower confidence bound on mean(s) − mean(s0) (paired)."""
    return mean_lower_bound(s - s0, confidence)


def metric_resolution(values: list[float], max_denominator: int = 100_000) -> int | None:
    """The smallest n ≤ ``max_denominator`` such that every value is (within 1e-9) a multiple of 1/n —
    the example count of a metric that is a fraction of examples — or None (a continuous metric)."""
    lcm = 1
    for v in values:
        if not math.isfinite(v):
            continue
        frac = Fraction(v).limit_denominator(max_denominator)
        if abs(float(frac) - v) > 1e-9:
            return None
        lcm = lcm * frac.denominator // math.gcd(lcm, frac.denominator)
        if lcm > max_denominator:
            return None
    return lcm


@dataclass(frozen=True)
class Acceptance:
    """The rule a search accepts configs by, fixed once the original model is scored.

    Attributes:
        constraint: a fraction of the original metric, or :class:`~tasder.search.Drop`.
        threshold: c·metric₀ or metric₀ − a (the point-estimate rule, and the plain rule).
        confidence: of the paired bound (used only with per-example scores).
        original: the original model's per-example scores (None: float-only evaluator).
    """

    constraint: float | Drop
    threshold: float
    confidence: float
    original: np.ndarray | None = None

    @property
    def paired(self) -> bool:
        """True when configs are judged by the paired confidence bound."""
        return self.original is not None

    @property
    def bound_kind(self) -> str:
        """What :meth:`judge`'s bound is a bound on: ``"ratio"`` (fraction constraint) or ``"difference"``."""
        return "ratio" if isinstance(self.constraint, float) else "difference"

    def check(self, per_example: np.ndarray | None) -> None:
        """Raise when a config's per-example scores cannot be compared with the original's."""
        if self.original is None:
            if per_example is not None:
                raise InvalidParameterError(
                    "evaluate returned per-example scores for this config but a single number for the original "
                    "model; it must return the same kind every time")
            return
        if per_example is None:
            raise InvalidParameterError(
                f"evaluate returned a single number for this config but {self.original.size} per-example scores "
                f"for the original model; it must return the same kind every time")
        if per_example.size != self.original.size:
            raise InvalidParameterError(
                f"evaluate returned {per_example.size} per-example scores for this config and "
                f"{self.original.size} for the original model; paired scores need the same examples every time")

    def judge(self, metric: float, per_example: np.ndarray | None) -> tuple[bool, float | None]:
        """``(accepted, bound)``: the bound is None for float-only evaluators."""
        if self.original is None:
            return metric >= self.threshold, None
        self.check(per_example)
        assert per_example is not None
        s, s0 = per_example, self.original
        if isinstance(self.constraint, float):
            c = self.constraint
            ok = mean_lower_bound(s - c * s0, self.confidence) >= 0
            return ok, ratio_lower_bound(s, s0, self.confidence)
        a = self.constraint.amount
        ok = mean_lower_bound(s - s0 + a, self.confidence) >= 0
        return ok, difference_lower_bound(s, s0, self.confidence)

    def changes(self, per_example: np.ndarray | None) -> tuple[int, int] | None:
        """``(worse, better)``: how many examples score below / above the original's score for them
        (None for float-only evaluators). Near the constraint these two, not their difference, set the
        bound: a config whose examples flip both ways misses with no net loss."""
        if self.original is None or per_example is None:
            return None
        self.check(per_example)
        return int(np.count_nonzero(per_example < self.original)), int(np.count_nonzero(per_example > self.original))

    def slack_examples(self, metric0: float) -> float | None:
        """How many examples the constraint lets the config lose: n·(metric₀ − threshold) over the
        scores' range (for 0/1 scores: hits). None for float-only evaluators."""
        if self.original is None:
            return None
        spread = float(self.original.max() - self.original.min())
        scale = spread if spread > 0 else max(abs(float(self.original.max())), 1.0)
        return self.original.size * (metric0 - self.threshold) / scale
