"""TASD layers: ``nn.Linear`` / ``nn.Conv2d`` whose weight or input is a TASD approximation.

Both are *subclasses* of the plain layers, so everything that works on a Linear or a Conv2d —
``state_dict`` save/load (same keys: ``weight``, ``bias``), ``.to()``, ``.eval()/.train()``,
``torch.no_grad`` inference, optimisers, isinstance checks in other tools — keeps working.

Groups lie where docs/design.md §3.3 puts them, along the GEMM reduction dim:

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

**Options** (ours, :class:`~tasder.nn.LayerSpec`): ``permute`` stores a permutation of the
reduction dim in the buffer ``permutation`` — TASD-W: of the *flattened* weight
(:meth:`~TASDLayer.grouped_view`: ``(out, in)`` for Linear, ``(O, R·S·C)`` with C fastest for
Conv2d, i.e. the im2col K), computed from the weight when the layer is built; TASD-A: of the input
channels, set from calibration data (:mod:`tasder.nn.calibration`). The groups then run along the
permuted order; the forward pass is unchanged (Ŵ is stored in the original order, and a TASD-A
input is approximated in the permuted order and put back). ``bias_correction`` adds the buffer
``output_correction`` (one value per output channel, set from calibration data) to the output.
Both buffers are absent from the ``state_dict`` until set. ``score: activation`` and
``reconstruct`` (TASD-W, :mod:`tasder.nn.reconstruct`) choose the kept weights by |W_ij|·‖X_j‖₂
and refit them from calibration activations: such a layer keeps its original weight until
calibration gives it one (:meth:`~TASDLayer.calibrate_weight_`), then holds the approximation and
its terms; the buffer ``input_norm`` (‖X_j‖₂ per input feature, in the weight's flattened K order)
lets :meth:`~TASDLayer.reapproximate_` rank by the same score later. A layer whose spec needs
calibration refuses to run forward before it has it.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 - the universal spelling

from tasder.nn.config import LayerSpec, Mode, Score
from tasder.nn.reconstruct import obs_reconstruct, split_by_index
from tasder.sparsity.patterns import HSS, Pattern, Series
from tasder.tasd.decompose import approximate, decompose
from tasder.tasd.permutation import find_permutation, is_permutation

__all__ = ["TASDConv2d", "TASDLayer", "TASDLinear", "flatten_k", "incompatibility", "make_tasd_layer", "unflatten_k"]

#: The dimension the weight groups run along, for both layer kinds (Linear: in; Conv2d: C).
WEIGHT_DIM = 1


def incompatibility(module: nn.Module, spec: LayerSpec) -> str | None:
    """Why ``module`` (a plain Linear/Conv2d) cannot take ``spec``, or None when it can.

    The reasons are the ones a model transform skips a layer for (docs/design.md §3.3): a grouped
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
_MemoKey = tuple[Series, int, tuple[int, ...] | None]
#: A permutation, its inverse and a hashable key of it.
_Perm = tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]
_MEMO: dict[_MemoKey, _MemoEntry] = {}


def _approximate_memo(x: torch.Tensor, series: Series, dim: int,
                      perm: _Perm | None = None) -> tuple[torch.Tensor, int]:
    """``(approximate(x, series, dim), its nonzero count)``, reusing the result for a repeated input.

    ``perm`` = (permutation, its inverse, its key): approximate in the permuted order of ``dim``
    and put the result back in the original order (layers with equal permutations share it).
    """
    key: _MemoKey = (series, dim, None if perm is None else perm[2])
    memo_ok = not x.is_inference()
    if memo_ok:
        entry = _MEMO.get(key)
        if entry is not None and entry[0]() is x and entry[1] == x._version:
            return entry[2], entry[3]
    if perm is None:
        approx = approximate(x.detach(), series, dim, allow_nonfinite=True)
    else:
        permuted = x.detach().index_select(dim, perm[0])
        approx = approximate(permuted, series, dim, allow_nonfinite=True).index_select(dim, perm[1])
    n_kept = int(torch.count_nonzero(approx))
    if memo_ok:
        ref: weakref.ReferenceType[torch.Tensor]

        def forget(dead: object, key: _MemoKey = key) -> None:
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
    permute: bool
    bias_correction: bool
    score: Score
    reconstruct: bool
    track_stats: bool
    kept_elements: int
    seen_elements: int
    weight: nn.Parameter
    bias: nn.Parameter | None
    permutation: torch.Tensor | None
    output_correction: torch.Tensor | None
    input_norm: torch.Tensor | None
    _term_cache: list[torch.Tensor] | None
    _perm_cache: _Perm | None
    _weight_pending: bool

    #: The input dimension TASD-A groups along (set by each subclass).
    input_dim: int

    def _init_tasd(self, series: str | Pattern | Series, mode: str, permute: bool = False,
                   bias_correction: bool = False, score: str = "magnitude", reconstruct: bool = False) -> None:
        spec = LayerSpec(series=series, mode=mode, permute=permute,  # type: ignore[arg-type]  # validates all
                         bias_correction=bias_correction, score=score, reconstruct=reconstruct)  # type: ignore[arg-type]
        if spec.is_dense:
            raise ValueError(
                f"{type(self).__name__} needs a sparse series; 'dense' means 'leave the layer as it is' "
                f"(use the plain {type(self).__mro__[2].__name__})"
            )
        self.series = spec.series
        self.mode = spec.mode
        self.permute = spec.permute
        self.bias_correction = spec.bias_correction
        self.score = spec.score
        self.reconstruct = spec.reconstruct
        # The weight's approximation waits for calibration data (activation score, reconstruction).
        self._weight_pending = spec.weight_needs_calibration
        self.track_stats = True
        self.kept_elements = 0
        self.seen_elements = 0
        self._term_cache = None
        self._perm_cache = None
        assert isinstance(self, nn.Module)
        self.register_buffer("permutation", None)
        self.register_buffer("output_correction", None)
        self.register_buffer("input_norm", None)
        reason = incompatibility(self, spec)
        if reason:
            raise ValueError(f"{type(self).__name__}: {reason}")
        if self.weight.device.type != "meta":  # on "meta", _copy_parameters does it
            self._approximate_at_build()

    def _approximate_at_build(self) -> None:
        """TASD-W: approximate the weight now, unless that needs calibration data (then it waits)."""
        if self.mode == "W" and not self._weight_pending:
            self.reapproximate_()

    @property
    def spec(self) -> LayerSpec:
        """The layer's series, mode and options as a :class:`LayerSpec`."""
        return LayerSpec(series=self.series, mode=self.mode, permute=self.permute,
                         bias_correction=self.bias_correction, score=self.score, reconstruct=self.reconstruct)

    # -- options: the permutation and the output correction ---------------------------------------

    @property
    def reduction_size(self) -> int:
        """Length of the dim a permutation runs over: TASD-W the flattened K, TASD-A the input channels."""
        w = self.weight
        return int(w[0].numel()) if self.mode == "W" else int(w.shape[1])

    @torch.no_grad()
    def set_permutation(self, perm: torch.Tensor) -> None:
        """TASD-A: approximate the input in the channel order ``perm`` (a permutation of the input
        channels; calibration sets it). A TASD-W layer's permutation comes from its weight when
        the layer is built (the weight is approximated then; the original is not kept)."""
        if not self.permute:
            raise ValueError(f"this {type(self).__name__} was built without `permute`; its groups are fixed")
        if self.mode != "A":
            raise ValueError("a TASD-W layer's permutation is chosen from its weight when it is built")
        k = self.reduction_size
        if not is_permutation(perm, k):
            raise ValueError(f"`perm` must be a permutation of range({k}) as a LongTensor of shape ({k},)")
        self.permutation = perm.clone().to(self.weight.device)
        self._perm_cache = None

    @torch.no_grad()
    def set_output_correction(self, correction: torch.Tensor) -> None:
        """Add ``correction`` (one value per output channel) to every output (``bias_correction``)."""
        if not self.bias_correction:
            raise ValueError(f"this {type(self).__name__} was built without `bias_correction`")
        n = int(self.weight.shape[0])
        if not isinstance(correction, torch.Tensor) or correction.shape != (n,) \
                or not bool(torch.isfinite(correction).all()):
            raise ValueError(f"`correction` must be a finite tensor of shape ({n},)")
        self.output_correction = correction.detach().to(dtype=self.weight.dtype, device=self.weight.device).clone()

    @property
    def calibrated(self) -> bool:
        """True when every buffer the spec needs is set (see :attr:`LayerSpec.needs_calibration`)."""
        return self._missing_buffer() is None

    def _missing_buffer(self) -> str | None:
        """The first buffer the spec needs that calibration has not set yet (None: all set)."""
        if self._weight_pending:
            return "approximated weight (score: activation / reconstruct learn it from calibration data)"
        if self.bias_correction and self.output_correction is None:
            return "output_correction"
        if self.permute and self.mode == "A" and self.permutation is None:
            return "permutation"
        return None

    def _perm(self) -> _Perm | None:
        """(permutation, inverse, hashable key), cached; None without a permutation."""
        if self.permutation is None:
            return None
        if self._perm_cache is None or self._perm_cache[0] is not self.permutation:
            perm = self.permutation
            self._perm_cache = (perm, torch.argsort(perm), tuple(perm.tolist()))
        return self._perm_cache

    def grouped_view(self, t: torch.Tensor) -> tuple[torch.Tensor, int]:
        """``(view, dim)``: a weight-shaped tensor laid out so that the groups are consecutive along ``dim``.

        Without a permutation it is ``t`` itself with the groups along dim 1 (Linear ``in``,
        Conv2d ``C`` at each kernel position); with one, the flattened K ``(out, K)`` permuted.
        """
        perm = self._perm() if self.mode == "W" else None
        if perm is None:
            return t, WEIGHT_DIM
        return flatten_k(t).index_select(1, perm[0]), 1

    def _from_grouped(self, t: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`grouped_view` (TASD-W with a permutation)."""
        perm = self._perm()
        assert perm is not None
        return unflatten_k(t.index_select(1, perm[1]), self.weight.shape)

    def _decompose_weight(self, w: torch.Tensor, allow_nonfinite: bool = False,
                          score: torch.Tensor | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``(terms, residual)`` of the series on ``w`` in the layer's layout, in the weight's shape
        (``score``: weight-shaped ranking instead of |w|)."""
        view, dim = self.grouped_view(w)
        r = decompose(view, self.series, dim, None if score is None else self.grouped_view(score)[0],
                      allow_nonfinite=allow_nonfinite)
        if self.permutation is None:
            return r.terms, r.residual
        return [self._from_grouped(t) for t in r.terms], self._from_grouped(r.residual)

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any) -> None:
        # The option buffers are None (absent from the state_dict) until set: a state_dict that has
        # them sets them, so a layer built with the same spec loads a calibrated one's state.
        for name in ("permutation", "output_correction", "input_norm"):
            value = state_dict.get(prefix + name)
            if isinstance(value, torch.Tensor) and getattr(self, name) is None:
                setattr(self, name, value.detach().clone())
                self._perm_cache = None
        super()._load_from_state_dict(state_dict, prefix, *args)  # type: ignore[misc]
        if isinstance(state_dict.get(prefix + "weight"), torch.Tensor) and self._weight_pending:
            # A calibrated layer's state: its weight is the approximation already.
            self._weight_pending = self.score == "activation" and self.input_norm is None
            self._term_cache = None

    def _check_calibrated(self) -> None:
        missing = self._missing_buffer()
        if missing is not None:
            raise RuntimeError(
                f"this {type(self).__name__} ({self._tasd_extra_repr()}) has no {missing} yet: it needs calibration "
                f"data — build it with tasder.nn.apply_tasd(model, config, calibration=batches)"
            )

    def _effective_bias(self, corrected: bool) -> torch.Tensor | None:
        if not corrected or self.output_correction is None:
            return self.bias
        return self.output_correction if self.bias is None else self.bias + self.output_correction

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
        if self._weight_pending:
            raise ValueError(f"this {type(self).__name__} ({self._tasd_extra_repr()}) chooses its weights from "
                             f"calibration data: build it with tasder.nn.apply_tasd(model, config, calibration=...)")
        w = self.weight.detach()
        score = self._weight_score(w)
        self._choose_permutation(w, score)
        terms, _ = self._decompose_weight(w, score=score)
        approx = terms[0].clone()
        for t in terms[1:]:
            approx += t  # exact: each element lives in one term (TASDResult.approximation does the same)
        self.weight.copy_(approx)
        self._remember_terms(terms)

    def _choose_permutation(self, w: torch.Tensor, score: torch.Tensor | None) -> None:
        """With ``permute`` and none chosen yet, choose the reduction-dim permutation for ``w`` (by
        ``score`` when given, else |W|) and drop the cached permuted view."""
        if self.permute and self.permutation is None:
            self.permutation = find_permutation(flatten_k(w), self.series, 1,
                                                score=None if score is None else flatten_k(score)).to(w.device)
            self._perm_cache = None

    def _weight_score(self, w: torch.Tensor) -> torch.Tensor | None:
        """The weight's selection score (weight-shaped): |W_ij|·‖X_j‖₂, or None for |W|."""
        if self.score != "activation":
            return None
        if self.input_norm is None:
            raise ValueError("score 'activation' needs the input norms from calibration data")
        norm = self.input_norm.to(torch.float64)
        # input_norm is in the order of the weight's trailing dims flattened (Conv2d: C, R, S).
        return w.detach().abs().to(torch.float64) * norm.reshape(w.shape[1:])

    @torch.no_grad()
    def calibrate_weight_(self, sumsq: torch.Tensor, factor: torch.Tensor | None = None
                          ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Choose and (with ``reconstruct``) refit the kept weights from calibration statistics.

        Args:
            sumsq: Σ x_j² per input feature over the calibration data (K = ``in_features``; for a
                Conv2d the im2col K = C·R·S, C slowest, as ``F.unfold`` orders it).
            factor: :func:`tasder.nn.reconstruct.damped_inverse_factor` of the layer's Gram matrix
                XᵀX (same K order); needed for ``reconstruct``.

        The weight held now is the original one (the layer was built waiting for this). Afterwards
        it is the approximation Ŵ, its terms are kept (they sum to Ŵ exactly), and ``input_norm``
        holds ‖X_j‖₂.

        Returns:
            ``(terms, residual, W″)``: W″ is the weight the series decomposed — the original with the
            kept weights refit (``reconstruct``), else the original — and ``sum(terms) + residual ==
            W″`` bit for bit (each element moved, never computed).
        """
        if self.mode != "W" or not self._weight_pending:
            raise ValueError(f"calibrate_weight_() is for TASD-W layers waiting for calibration data "
                             f"({self._tasd_extra_repr()})")
        w = self.weight.detach()
        k = int(w[0].numel())
        if sumsq.shape != (k,):
            raise ValueError(f"`sumsq` must have shape ({k},); got {tuple(sumsq.shape)}")
        if self.reconstruct and (factor is None or factor.shape != (k, k)):
            raise ValueError(f"reconstruct needs the ({k}, {k}) factor of the layer's Gram matrix")
        if self.score == "activation":
            self.input_norm = sumsq.detach().to(torch.float64).clamp_min(0).sqrt().to(w.device)
        score = self._weight_score(w)
        self._choose_permutation(w, score)
        terms, _ = self._decompose_weight(w, score=score)
        index = torch.zeros(w.shape, dtype=torch.uint8, device=w.device)
        for t, term in enumerate(terms):
            index[term != 0] = t + 1  # a kept zero stays zero either way: count it as dropped
        reconstructed = None
        if self.reconstruct:
            assert factor is not None
            keep = index > 0
            refit = obs_reconstruct(w.reshape(w.shape[0], -1), keep.reshape(w.shape[0], -1), factor)
            reconstructed = torch.where(keep, refit.reshape(w.shape).to(w.dtype), w)
        source = w.clone() if reconstructed is None else reconstructed
        terms, residual = self.set_weight_calibration(index, reconstructed)
        return terms, residual, source

    @torch.no_grad()
    def set_weight_calibration(self, index: torch.Tensor, reconstructed: torch.Tensor | None = None
                               ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Set Ŵ from what :meth:`calibrate_weight_` found: ``index`` (weight-shaped, uint8) puts each
        element in term ``index − 1`` or the residual (0); ``reconstructed`` is W″ (the kept weights
        refit, the dropped ones as they were), or None for the weight held now. Returns the terms
        and the residual of that split."""
        w = self.weight.detach()
        source = w if reconstructed is None else reconstructed.to(dtype=w.dtype, device=w.device)
        if index.shape != w.shape or source.shape != w.shape:
            raise ValueError(f"`index` and `reconstructed` must have the weight's shape {tuple(w.shape)}")
        terms, residual = split_by_index(source, index.to(w.device), len(self.series.terms))
        approx = terms[0].clone()
        for t in terms[1:]:
            approx += t
        self.weight.copy_(approx)
        self._term_cache = [t.clone() for t in terms]
        self._weight_pending = False
        return terms, residual

    def _remember_terms(self, terms: list[torch.Tensor]) -> None:
        # Re-decomposing Ŵ gives back the same terms for one-rank G:H series (each term's picks are
        # still the largest of what remains), so nothing is kept for them. An HSS upper rank
        # scores blocks by their mean |w|, which dropping elements changes, and a user score
        # ranks otherwise than |Ŵ| does: keep those terms.
        hss = any(isinstance(t, HSS) for t in self.series.terms)
        keep = hss or self.score != "magnitude"
        self._term_cache = [t.detach().clone() for t in terms] if keep else None

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
        terms, residual = self._decompose_weight(w, allow_nonfinite=True)
        if bool((residual != 0).any()):
            raise ValueError(
                f"the weight of this {type(self).__name__} no longer follows series '{self.series}' "
                f"(was it trained, or loaded from a dense checkpoint?); call reapproximate_() first"
            )
        return list(terms)

    def _approximate_input(self, x: torch.Tensor) -> torch.Tensor:
        """TASD-A: the approximated input (see the module docstring for gradients and counters)."""
        approx, n_kept = _approximate_memo(x, self.series, self.input_dim, self._perm())
        if torch.is_grad_enabled() and x.requires_grad:
            approx = torch.where(approx != 0, x, approx)  # same values; gradient through kept elements
        if self.track_stats:
            self.kept_elements += n_kept
            self.seen_elements += x.numel()
        return approx

    def _tasd_extra_repr(self) -> str:
        options = "".join(f", {o}" for o in ("permute", "bias_correction", "reconstruct") if getattr(self, o))
        if self.score != "magnitude":
            options += f", score={self.score}"
        return f"series={self.series}, mode={self.mode}{options}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, corrected=True)

    def forward_uncorrected(self, x: torch.Tensor) -> torch.Tensor:
        """The forward pass without the output correction (what calibration measures the error of)."""
        return self._run(x, corrected=False)

    def _run(self, x: torch.Tensor, corrected: bool) -> torch.Tensor:
        if corrected:
            self._check_calibrated()
        if self.mode == "A":
            x = self._approximate_input(x)
        return self._op(x, self.weight, self._effective_bias(corrected))

    def _op(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """The plain layer's operation (``F.linear``, the convolution) with ``weight`` and ``bias``."""
        raise NotImplementedError


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
        permute: bool = False,
        bias_correction: bool = False,
        score: Score = "magnitude",
        reconstruct: bool = False,
    ) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._init_tasd(series, mode, permute, bias_correction, score, reconstruct)

    @classmethod
    def from_linear(cls, linear: nn.Linear, series: str | Pattern | Series, mode: Mode = "W", *,
                    permute: bool = False, bias_correction: bool = False, score: Score = "magnitude",
                    reconstruct: bool = False) -> TASDLinear:
        """A TASD copy of ``linear`` (which is not modified; the new layer shares no storage with it)."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"from_linear needs an nn.Linear; got {type(linear).__name__}")
        w = linear.weight
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None,
                    device="meta", dtype=w.dtype, series=series, mode=mode, permute=permute,
                    bias_correction=bias_correction, score=score, reconstruct=reconstruct)
        _copy_parameters(layer, linear)
        return layer

    def _op(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return F.linear(x, weight, bias)

    def to_plain(self) -> nn.Linear:
        """A plain ``nn.Linear`` computing what this layer computes on approximated inputs:
        TASD-W → Ŵ baked in (and the output correction in the bias); TASD-A → the original
        layer (the input approximation and its correction are dropped)."""
        plain = nn.Linear(self.in_features, self.out_features, bias=_plain_has_bias(self),
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
        permute: bool = False,
        bias_correction: bool = False,
        score: Score = "magnitude",
        reconstruct: bool = False,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias, padding_mode=padding_mode,
                         device=device, dtype=dtype)
        self._init_tasd(series, mode, permute, bias_correction, score, reconstruct)

    @classmethod
    def from_conv2d(cls, conv: nn.Conv2d, series: str | Pattern | Series, mode: Mode = "W", *,
                    permute: bool = False, bias_correction: bool = False, score: Score = "magnitude",
                    reconstruct: bool = False) -> TASDConv2d:
        """A TASD copy of ``conv`` (which is not modified; the new layer shares no storage with it)."""
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"from_conv2d needs an nn.Conv2d; got {type(conv).__name__}")
        layer = cls(**_conv_kwargs(conv), device="meta", dtype=conv.weight.dtype, series=series, mode=mode,
                    permute=permute, bias_correction=bias_correction, score=score, reconstruct=reconstruct)
        _copy_parameters(layer, conv)
        return layer

    def _op(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return self._conv_forward(x, weight, bias)

    def to_plain(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` (TASD-W: Ŵ baked in, the output correction in the bias; TASD-A:
        the original layer)."""
        plain = nn.Conv2d(**{**_conv_kwargs(self), "bias": _plain_has_bias(self)}, device="meta",
                          dtype=self.weight.dtype)
        _copy_parameters(plain, self)
        return plain

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._tasd_extra_repr()}"


def make_tasd_layer(module: nn.Module, spec: LayerSpec) -> TASDLayer:
    """The TASD layer for a plain ``nn.Linear``/``nn.Conv2d`` under ``spec`` (a copy; ``module`` is untouched)."""
    options = {"permute": spec.permute, "bias_correction": spec.bias_correction, "score": spec.score,
               "reconstruct": spec.reconstruct}
    if isinstance(module, nn.Conv2d):
        return TASDConv2d.from_conv2d(module, spec.series, spec.mode, **options)
    if isinstance(module, nn.Linear):
        return TASDLinear.from_linear(module, spec.series, spec.mode, **options)
    raise TypeError(f"TASD applies to nn.Linear and nn.Conv2d layers; got {type(module).__name__}")


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


def flatten_k(w: torch.Tensor) -> torch.Tensor:
    """A weight as (out, K): Linear as it is; Conv2d (O, C, R, S) as (O, R·S·C), C fastest (im2col K).

    The layout a TASD-W permutation of the reduction dim indexes (:meth:`TASDLayer.grouped_view`,
    the exported terms of :func:`tasder.nn.export_tasd_weights`).
    """
    return w.permute(0, 2, 3, 1).reshape(w.shape[0], -1) if w.dim() == 4 else w


def unflatten_k(flat: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Inverse of :func:`flatten_k` for a weight of ``shape``."""
    if len(shape) != 4:
        return flat.reshape(shape)
    o, c, r, s = shape
    return flat.reshape(o, r, s, c).permute(0, 3, 1, 2).contiguous()


def _plain_has_bias(layer: TASDLayer) -> bool:
    """A TASD-W layer's output correction becomes a bias of its plain form, even without one before."""
    return layer.bias is not None or (layer.mode == "W" and layer.output_correction is not None)


@torch.no_grad()
def _copy_parameters(dst: nn.Module, src: nn.Module) -> None:
    """Give ``dst`` (built on the meta device) copies of ``src``'s weight and bias, and its mode.

    A TASD-W destination approximates the copied weight (``reapproximate_``). A plain destination
    of a TASD-W source gets the source's effective bias (bias + output correction).
    """
    for name in ("weight", "bias"):
        p = getattr(src, name)
        if name == "bias" and isinstance(src, TASDLayer) and not isinstance(dst, TASDLayer) and src.mode == "W":
            p = src._effective_bias(corrected=True)
        if p is None:
            continue
        grad = getattr(getattr(src, name), "requires_grad", True)
        setattr(dst, name, nn.Parameter(p.detach().clone(), requires_grad=grad))
    dst.train(src.training)
    if isinstance(dst, TASDLayer):
        dst._approximate_at_build()
