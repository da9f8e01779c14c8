"""Evaluate only what a config changes: replay what an unchanged prefix of the model produced
(docs/design.md §3.4, "Evaluating less").

A search evaluates configs that differ from the last accepted one in a few layers. When a model
is a chain of *stages* — BERT: the embeddings, then each encoder layer — every stage before the
first one holding a changed layer computes exactly what it computed for the accepted config, on
every batch ``evaluate`` feeds it. :class:`PrefixCache` keeps, per batch (model call), the output of
each stage of the *reference* config (the last accepted one) and, for a new config whose first
changed stage is f, makes stage f−1 return its cached output and the stages before it return
placeholders of the right shape (their outputs only feed the next stage). Stages f.. run as
usual. The result is bit for bit the full forward's: the replayed tensors are the ones the same
code computed on the same inputs.

The contract a stage list must meet (the caller's, checked where it can be): stages run in the
listed order on every call; each stage's input is the previous stage's output plus the model's
own inputs; nothing but the next stage reads a stage's output (code between stages may read its
shape and dtype: BERT builds its attention mask from the embeddings' dtype). The model's inputs
are fingerprinted per call (shapes, dtypes and a hash of the bytes): when ``evaluate`` feeds other
batches, in another order, or calls the model more often than when the reference was recorded,
:class:`PrefixMismatchError` is raised and the search evaluates that config (and every later one) in
full.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["PrefixCache", "PrefixMismatchError", "resolve_stages"]

#: At most this many bytes of cached stage outputs (the reference's and one candidate's).
DEFAULT_MAX_BYTES = 3 << 30


class PrefixMismatchError(RuntimeError):
    """``evaluate`` fed the model other inputs than when the reference outputs were recorded."""


def resolve_stages(model: nn.Module, stages: Sequence[str]) -> list[str]:
    """Stage names (globs allowed, expanded in ``named_modules`` order; a glob matches names with as many
    dotted components as itself), checked to exist and not to nest."""
    names = [n for n, _ in model.named_modules() if n]
    out: list[str] = []
    for pattern in stages:
        if not isinstance(pattern, str) or not pattern:
            raise ValueError(f"`stages`: each stage is a module name or glob; got {pattern!r}")
        # a glob matches names of its own depth: "encoder.layer.*" is the layers, not their insides
        depth = pattern.count(".")
        hits = [n for n in names if n.count(".") == depth and fnmatch.fnmatchcase(n, pattern)] \
            if any(c in pattern for c in "*?[") else [pattern] if pattern in names else []
        if not hits:
            raise ValueError(f"`stages`: {pattern!r} names no submodule of the model")
        out += [h for h in hits if h not in out]
    for a in out:
        for b in out:
            if a != b and b.startswith(a + "."):
                raise ValueError(f"`stages`: {b!r} lies inside {a!r}; stages must not nest")
    return out


def _fingerprint(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
    digest = hashlib.blake2b(digest_size=16)

    def add(v: Any) -> None:
        if isinstance(v, torch.Tensor):
            t = v.detach()
            digest.update(f"T{tuple(t.shape)}{t.dtype}".encode())
            digest.update(t.contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(v, (list, tuple)):
            digest.update(b"(")
            for x in v:
                add(x)
            digest.update(b")")
        elif isinstance(v, Mapping):
            for k in sorted(v):
                digest.update(str(k).encode())
                add(v[k])
        else:
            digest.update(repr(v).encode())

    add(args)
    add(dict(kwargs))
    return digest.hexdigest()


def _clone(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out.detach().clone()
    if isinstance(out, tuple) and all(isinstance(t, torch.Tensor) or t is None for t in out):
        return tuple(None if t is None else t.detach().clone() for t in out)
    raise PrefixMismatchError(f"a stage returned {type(out).__name__}; the prefix cache replays tensors and tuples of "
                         f"tensors only")


def _meta(out: Any) -> Any:
    """The shapes, dtypes and devices of a stage output (what a placeholder for it needs)."""
    if isinstance(out, torch.Tensor):
        return (tuple(out.shape), out.dtype, out.device)
    if isinstance(out, tuple):
        return tuple(None if t is None else _meta(t) for t in out)
    raise PrefixMismatchError(f"a stage returned {type(out).__name__}; the prefix cache replays tensors and tuples of "
                         f"tensors only")


def _placeholder(meta: Any) -> Any:
    """Zeros shaped like a stage's output (what a skipped stage returns: only the next, replayed,
    stage reads it, and code between stages at most its shape and dtype)."""
    if isinstance(meta, tuple) and len(meta) == 3 and isinstance(meta[1], torch.dtype):
        return torch.zeros(meta[0], dtype=meta[1], device=meta[2])
    return tuple(None if m is None else _placeholder(m) for m in meta)


def _nbytes(out: Any) -> int:
    if isinstance(out, torch.Tensor):
        return out.numel() * out.element_size()
    return sum(_nbytes(t) for t in out if t is not None)


@dataclass
class _Record:
    """Per model call: its inputs' fingerprint and each stage's output (None: not kept)."""

    fingerprints: list[str] = field(default_factory=list)
    outputs: list[list[Any]] = field(default_factory=list)  # [stage][call]
    meta: list[list[Any]] = field(default_factory=list)  # [stage][call], always kept

    def tensors(self) -> dict[int, int]:
        """id → bytes of every output kept (outputs shared with another record count once)."""
        return {id(o): _nbytes(o) for stage in self.outputs for o in stage if o is not None}


class PrefixCache:
    """Stage outputs of the reference config, replayed for configs that leave a prefix unchanged.

    Args:
        stages: stage module names, in execution order (:func:`resolve_stages`).
        layer_stage: searched layer name → index of the stage holding it (absent: a layer outside
            every stage, so any change to it runs the model in full).
        max_bytes: the outputs kept (the reference's and one candidate's together); later
            boundaries win when they do not all fit (replaying them skips more work).
    """

    def __init__(self, stages: Sequence[str], layer_stage: Mapping[str, int],
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.stages = list(stages)
        self.layer_stage = dict(layer_stage)
        self.max_bytes = max_bytes
        self.reference: _Record | None = None
        self.reference_specs: dict[str, Any] = {}
        self._candidate: tuple[_Record, dict[str, Any]] | None = None
        self.enabled = True
        self.stage_runs = 0  # stage executions an evaluation needed in total
        self.stage_skips = 0  # ... of which the cache replayed or skipped

    @classmethod
    def for_model(cls, model: nn.Module, stages: Sequence[str], layers: Sequence[str],
                  max_bytes: int = DEFAULT_MAX_BYTES) -> PrefixCache:
        names = resolve_stages(model, stages)
        layer_stage: dict[str, int] = {}
        for layer in layers:
            for i, stage in enumerate(names):
                if layer == stage or layer.startswith(stage + "."):
                    layer_stage[layer] = i
        return cls(names, layer_stage, max_bytes)

    def first_changed(self, specs: Mapping[str, Any]) -> int:
        """The first stage whose layers' specs differ from the reference's (0 without a reference)."""
        if self.reference is None or not self.enabled:
            return 0
        first = len(self.stages)
        for name in set(specs) | set(self.reference_specs):
            if specs.get(name) != self.reference_specs.get(name):
                stage = self.layer_stage.get(name)
                if stage is None:
                    return 0
                first = min(first, stage)
        # replay the latest boundary before `first` that is kept
        ref = self.reference
        while first > 0 and any(o is None for o in ref.outputs[first - 1]):
            first -= 1
        return first

    def evaluate(self, net: nn.Module, evaluate: Callable[[nn.Module], Any], specs: Mapping[str, Any]) -> Any:
        """``evaluate(net)`` with the unchanged prefix replayed; the stage outputs are recorded as a
        candidate reference (:meth:`accept` makes it the reference)."""
        first = self.first_changed(specs)
        modules = dict(net.named_modules())
        stage_modules = [modules[s] for s in self.stages]
        ref = self.reference
        record = _Record(outputs=[[] for _ in self.stages], meta=[[] for _ in self.stages])
        state = {"call": -1}
        handles: list[Any] = []

        def pre_hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            state["call"] += 1
            fp = _fingerprint(args, kwargs)
            record.fingerprints.append(fp)
            if first > 0:
                assert ref is not None
                i = state["call"]
                if i >= len(ref.fingerprints) or ref.fingerprints[i] != fp:
                    raise PrefixMismatchError(f"model call {i + 1} of evaluate got other inputs than when the "
                                         f"reference was recorded")

        def replay(stage: int) -> Callable[..., Any]:
            def forward(*args: Any, **kwargs: Any) -> Any:
                i = state["call"]
                assert ref is not None
                if i < 0:
                    raise PrefixMismatchError(f"stage {self.stages[stage]!r} ran outside a call of the model")
                out = ref.outputs[stage][i]
                record.outputs[stage].append(out)
                record.meta[stage].append(ref.meta[stage][i])
                return out if stage == first - 1 else _placeholder(ref.meta[stage][i])
            return forward

        def capture(stage: int) -> Callable[..., None]:
            def hook(module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
                record.meta[stage].append(_meta(out))
                record.outputs[stage].append(_clone(out) if stage < len(self.stages) - 1 else None)
            return hook

        handles.append(net.register_forward_pre_hook(pre_hook, with_kwargs=True))
        overridden = []
        try:
            for s, module in enumerate(stage_modules):
                if s < first:
                    module.forward = replay(s)  # type: ignore[method-assign]  # an instance attribute, removed below
                    overridden.append(module)
                else:
                    handles.append(module.register_forward_hook(capture(s)))
            value = evaluate(net)
        finally:
            for h in handles:
                h.remove()
            for module in overridden:
                del module.forward
        calls = len(record.fingerprints)
        self.stage_runs += calls * len(self.stages)
        self.stage_skips += calls * first
        # Placeholders are not worth keeping: the replayed prefix's outputs are the reference's.
        self._candidate = (self._trim(record), dict(specs))
        return value

    def _trim(self, record: _Record) -> _Record:
        # the final stage's output is never replayed (a config changing nothing is not evaluated)
        kept = {**record.tensors(), **({} if self.reference is None else self.reference.tensors())}
        total = sum(kept.values())
        stage = 0
        while total > self.max_bytes and stage < len(self.stages) - 1:
            shared = set() if self.reference is None else set(self.reference.tensors())
            total -= sum(_nbytes(o) for o in record.outputs[stage] if o is not None and id(o) not in shared)
            record.outputs[stage] = [None] * len(record.outputs[stage])
            stage += 1
        return record

    def accept(self) -> None:
        """The last evaluated config becomes the reference (it was accepted)."""
        if self._candidate is not None and self.enabled:
            self.reference, self.reference_specs = self._candidate
        self._candidate = None

    def reject(self) -> None:
        """Forget the last evaluated config's outputs."""
        self._candidate = None

    def disable(self) -> None:
        """Evaluate in full from now on (``evaluate`` does not call the model repeatably)."""
        self.enabled = False
        self.reference = None
        self._candidate = None

    @property
    def skipped_fraction(self) -> float:
        """The share of stage executions replayed instead of run, over every evaluation so far."""
        return self.stage_skips / self.stage_runs if self.stage_runs else 0.0
