"""Model transforms: put TASD layers into a model, take them out, and export their weights.

>>> import torch
>>> from torch import nn
>>> model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
>>> tasd = apply_tasd(model, {"0": {"series": "2:8+1:8", "mode": "W"}, "2": {"series": "4:8", "mode": "A"}})
>>> type(tasd[0]).__name__, type(model[0]).__name__   # the original model is untouched
('TASDLinear', 'Linear')
>>> sorted(tasd_report(tasd).layers)
['0', '2']

Everything :func:`apply_tasd` can reject — the config, the names, the layer types — is checked
on the original model before anything is copied or replaced, and the new layers are all built
before the first one is swapped in, so a failing call leaves the user's model as it was (also
with ``inplace=True``).
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tasder.io import atomic_write_bytes
from tasder.nn.calibration import (
    TASDCalibration,
    apply_calibration,
    calibrate_probes,
    calibration_of,
    check_batches,
)
from tasder.nn.config import LayerSpec, TASDConfig
from tasder.nn.layers import TASDLayer, incompatibility, make_tasd_layer, unflatten_k
from tasder.sparsity.notation import parse_pattern, parse_series
from tasder.sparsity.patterns import StructuredPattern
from tasder.tasd.packing import PackedTensor, pack
from tasder.tasd.permutation import is_permutation

__all__ = [
    "ExportedLayer",
    "TASDReport",
    "apply_tasd",
    "calibrate",
    "export_tasd_weights",
    "load_tasd_weights",
    "revert",
    "strip_tasd",
    "tasd_layers",
    "tasd_report",
]

#: Name of the attribute :func:`apply_tasd` sets on the model it returns.
REPORT_ATTR = "tasd_report"
#: safetensors metadata key holding the JSON description of an export.
EXPORT_METADATA_KEY = "tasder.tasd_weights"
EXPORT_FORMAT = 2
#: Formats :func:`load_tasd_weights` reads (1: before permutations and output corrections).
_READABLE_FORMATS = (1, 2)


@dataclass(frozen=True)
class TASDReport:
    """What :func:`apply_tasd` did; read it with :func:`tasd_report` (or ``model.tasd_report``).

    Attributes:
        layers: every TASD layer of the model after the call, name → its series and mode
            (layers converted by an earlier call included).
        skipped: layers the config selected but that were left dense, name → the reason
            (grouped convolution, reduction dim shorter than the series' block...).
        dense: layers the config explicitly set to ``dense`` (left untouched).
    """

    layers: dict[str, LayerSpec] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    dense: tuple[str, ...] = ()

    def __str__(self) -> str:
        lines = [f"TASD: {len(self.layers)} layer(s) converted, {len(self.skipped)} skipped, "
                 f"{len(self.dense)} left dense by the config"]
        lines += [f"  {name}: {spec.series} (TASD-{spec.mode})" for name, spec in self.layers.items()]
        lines += [f"  {name}: skipped — {reason}" for name, reason in self.skipped.items()]
        return "\n".join(lines)


def _check_model(model: object, fn: str) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{fn}: `model` must be a torch.nn.Module; got {type(model).__name__}")
    return model


def _check_inplace(inplace: object) -> bool:
    if not isinstance(inplace, bool):
        raise TypeError(f"`inplace` must be True or False; got {inplace!r}")
    return inplace


def _is_plain_target(module: nn.Module) -> bool:
    # Exact types only: a subclass (e.g. MultiheadAttention's NonDynamicallyQuantizableLinear,
    # whose forward is never called, or a LoRA layer) has behaviour a TASD layer would not keep.
    return type(module) in (nn.Linear, nn.Conv2d)


def _plan(model: nn.Module, config: TASDConfig) -> tuple[dict[str, LayerSpec], dict[str, str], list[str]]:
    """Decide every layer's fate without touching the model: (convert, skipped, dense).

    Raises for a name the model does not have, a glob that selects nothing, a config that names a
    layer of another type, and a layer that is already a TASD layer.
    """
    modules = dict(model.named_modules(remove_duplicate=False))
    names = [n for n in modules if n]
    candidates = [n for n in names if _is_plain_target(modules[n]) or isinstance(modules[n], TASDLayer)]
    config.check_names(names, candidates)

    convert: dict[str, LayerSpec] = {}
    skipped: dict[str, str] = {}
    dense: list[str] = []
    by_module: dict[int, tuple[str, LayerSpec]] = {}
    for name in names:
        key = config.match(name)
        if key is None:
            continue
        module = modules[name]
        spec = config.layers[key]
        exact = key == name
        if spec.is_dense and not _is_plain_target(module):
            continue  # 'dense' means "leave it as it is", which any module can be
        if isinstance(module, TASDLayer):
            if not exact:  # a glob selects; only an exact name insists
                skipped[name] = f"already a {type(module).__name__} (series '{module.series}', mode {module.mode})"
                continue
            raise ValueError(
                f"layer {name!r} is already a {type(module).__name__} (series '{module.series}', "
                f"mode {module.mode}); call tasder.nn.strip_tasd(model) first to change it"
            )
        if not _is_plain_target(module):
            if exact:
                raise TypeError(
                    f"layer {name!r} is a {type(module).__name__}; TASD applies to nn.Linear and nn.Conv2d "
                    f"layers only (exact types)"
                )
            continue  # a glob selects only the layers TASD applies to
        seen = by_module.get(id(module))
        if seen is not None and seen[1] != spec:
            raise ValueError(
                f"layers {seen[0]!r} and {name!r} are the same (shared) module but the config gives them "
                f"different specs ({seen[1].to_dict()} vs {spec.to_dict()})"
            )
        by_module[id(module)] = (name, spec)
        if spec.is_dense:
            dense.append(name)
            continue
        reason = incompatibility(module, spec)
        if reason:
            skipped[name] = reason
        else:
            convert[name] = spec
    return convert, skipped, dense


def _parent_and_attr(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent_name, _, attr = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), attr


def swap_modules(model: nn.Module, replacements: Mapping[int, nn.Module]) -> None:
    """Replace every occurrence (all aliases of a shared module) of each module id in ``replacements``,
    in place."""
    for name, module in list(model.named_modules(remove_duplicate=False)):
        new = replacements.get(id(module))
        if name and new is not None:
            parent, attr = _parent_and_attr(model, name)
            setattr(parent, attr, new)


def tasd_layers(model: nn.Module) -> Iterator[tuple[str, TASDLayer]]:
    """The TASD layers of ``model``, ``(name, layer)``, in ``named_modules`` order."""
    for name, module in _check_model(model, "tasd_layers").named_modules():
        if isinstance(module, TASDLayer):
            yield name, module


def calibrate(
    model: nn.Module,
    config: TASDConfig | Mapping[str, Any] | str | os.PathLike[str],
    calibration: Sequence[Any],
    *,
    max_rows: int = 1024,
) -> TASDCalibration:
    """Learn from the ``calibration`` batches what the config's ``permute`` (TASD-A) and ``bias_correction`` need.

    Runs them through ``model`` (not modified; eval mode, no gradients) with each selected
    layer's TASD counterpart measuring its own input and error (see :mod:`tasder.nn.calibration`).
    Layers whose spec needs nothing from data are not in the result. Deterministic for the same
    model, config and batches.

    Args:
        model: the original model.
        config: as for :func:`apply_tasd`.
        calibration: calibration batches (tensors, dicts of keyword arguments, or argument tuples).
        max_rows: activation vectors sampled per layer to choose a TASD-A permutation.
    """
    _check_model(model, "calibrate")
    cfg = TASDConfig.coerce(config)
    convert, _, _ = _plan(model, cfg)
    todo = {name: spec for name, spec in convert.items() if spec.needs_calibration}
    if not todo:
        return TASDCalibration()
    data = check_batches(calibration)
    modules = dict(model.named_modules(remove_duplicate=False))
    probes: dict[str, TASDLayer] = {}
    for name, spec in todo.items():
        try:
            probes[name] = make_tasd_layer(modules[name], spec)
        except ValueError as exc:
            raise ValueError(f"layer {name!r}: {exc}") from None
    calibrate_probes(model, {name: [p] for name, p in probes.items()}, data, max_rows=max_rows)
    return TASDCalibration({(name, todo[name]): calibration_of(p) for name, p in probes.items()})


def apply_tasd(
    model: nn.Module,
    config: TASDConfig | Mapping[str, Any] | str | os.PathLike[str],
    *,
    inplace: bool = False,
    calibration: TASDCalibration | Sequence[Any] | None = None,
) -> nn.Module:
    """Replace the configured ``nn.Linear`` / ``nn.Conv2d`` layers by TASD layers.

    Args:
        model: any module; with ``inplace=False`` (default) it is deep-copied and never modified.
        config: a :class:`TASDConfig`, a mapping ``{name or glob: {"series": ..., "mode": "W"|"A"}}``
            (or the versioned ``{"version": 1, "layers": {...}}``), or the path of a YAML file of
            that content. Precedence: exact name, then the longest glob (see :mod:`.config`).
        inplace: convert ``model`` itself (it is still returned).
        calibration: needed when a spec has ``bias_correction``, or ``permute`` in mode A:
            calibration batches (run through the original model first, see :func:`calibrate`) or
            the :class:`TASDCalibration` a previous :func:`calibrate` returned. Ignored otherwise.

    Returns:
        The converted model, with a :class:`TASDReport` attached (:func:`tasd_report`): the TASD
        layers, the layers skipped (grouped convolution, reduction dim shorter than the series'
        largest block) with the reason, and the layers the config left dense.

    Raises:
        ValueError: a config problem (malformed, unknown key, bad mode/series), a name the model does
            not have or a glob that selects no Linear/Conv2d (with close-match suggestions), a layer
            already converted, a weight the series cannot decompose (NaN/Inf), or a spec that needs
            calibration without it.
        TypeError: the config names (exactly) a layer that is not an ``nn.Linear``/``nn.Conv2d``.
    """
    _check_model(model, "apply_tasd")
    inplace = _check_inplace(inplace)
    cfg = TASDConfig.coerce(config)
    convert, skipped, dense = _plan(model, cfg)
    needs = [name for name, spec in convert.items() if spec.needs_calibration]
    if needs and calibration is None:
        raise ValueError(
            f"layer(s) {', '.join(repr(n) for n in needs)} use bias_correction or a TASD-A permutation, which "
            f"learn from data: pass calibration=batches (a list of input batches) or a tasder.nn.calibrate result"
        )
    if needs and not isinstance(calibration, TASDCalibration):
        calibration = calibrate(model, TASDConfig({n: convert[n] for n in needs}), calibration)  # type: ignore[arg-type]
    if needs:
        assert isinstance(calibration, TASDCalibration)
        missing = [n for n in needs if calibration.get(n, convert[n]) is None]
        if missing:
            raise ValueError(f"the calibration has no entry for layer(s) {', '.join(repr(n) for n in missing)} "
                             f"with the spec the config gives them; calibrate with this config")

    target = model if inplace else copy.deepcopy(model)
    modules = dict(target.named_modules(remove_duplicate=False))
    replacements: dict[int, nn.Module] = {}
    for name, spec in convert.items():
        module = modules[name]
        if id(module) in replacements:
            continue  # another alias of a shared module
        try:
            new = make_tasd_layer(module, spec)
            if spec.needs_calibration:
                assert isinstance(calibration, TASDCalibration)
                entry = calibration.get(name, spec)
                assert entry is not None
                apply_calibration(new, entry)
        except ValueError as exc:
            raise ValueError(f"layer {name!r}: {exc}") from None
        replacements[id(module)] = new
    swap_modules(target, replacements)  # nothing above modified `target`; this cannot fail halfway

    report = TASDReport(
        layers={name: layer.spec for name, layer in tasd_layers(target)},
        skipped=skipped,
        dense=tuple(dense),
    )
    setattr(target, REPORT_ATTR, report)
    return target


def tasd_report(model: nn.Module) -> TASDReport:
    """The :class:`TASDReport` of a model returned by :func:`apply_tasd`.

    A model that holds TASD layers but no report (e.g. rebuilt by hand) gets one listing them.
    """
    _check_model(model, "tasd_report")
    report = getattr(model, REPORT_ATTR, None)
    if isinstance(report, TASDReport):
        return report
    return TASDReport(layers={name: layer.spec for name, layer in tasd_layers(model)})


def strip_tasd(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Give back plain ``nn.Linear`` / ``nn.Conv2d`` layers for every TASD layer.

    TASD-W layers keep their approximated weight (baked in); TASD-A layers become the plain layer
    (their input is no longer approximated). The report attribute is removed. With
    ``inplace=False`` (default) ``model`` is deep-copied and not modified.
    """
    _check_model(model, "strip_tasd")
    inplace = _check_inplace(inplace)
    target = model if inplace else copy.deepcopy(model)
    replacements = {id(layer): layer.to_plain() for _, layer in tasd_layers(target)}  # type: ignore[attr-defined]
    swap_modules(target, replacements)
    if REPORT_ATTR in vars(target):
        delattr(target, REPORT_ATTR)
    return target


#: Alias of :func:`strip_tasd`.
revert = strip_tasd


# -- export ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportedLayer:
    """One TASD-W layer read back by :func:`load_tasd_weights`.

    Attributes:
        name: the layer's name in the model.
        series: the series string (canonical form).
        dim: the dimension of the packed layout the groups run along.
        weight: the approximated weight Ŵ.
        terms: each term in its packed (CP) form, in the grouped layout: the weight itself, or with a
            permutation its flattened K ``(out, K)`` permuted (:meth:`TASDLayer.grouped_view`).
        permutation: the layer's K permutation (None without one): the order the hardware reads
            the input in.
        output_correction: per output channel, added to the output (``bias_correction``), or None.
        score: how the kept weights were ranked (``"magnitude"`` or ``"activation"``).
        reconstructed: the kept weights were refit from calibration activations (``reconstruct``).
        input_norm: ‖X_j‖₂ per input feature (``score: activation``; the weight's flattened K
            order), what re-ranking the weights after training needs; None otherwise.
    """

    name: str
    series: str
    dim: int
    weight: torch.Tensor
    terms: tuple[PackedTensor, ...]
    permutation: torch.Tensor | None = None
    output_correction: torch.Tensor | None = None
    score: str = "magnitude"
    reconstructed: bool = False
    input_norm: torch.Tensor | None = None

    def unpacked_terms(self) -> list[torch.Tensor]:
        """The dense terms in the weight's layout (they sum exactly to :attr:`weight`)."""
        terms = [t.unpack() for t in self.terms]
        if self.permutation is None:
            return terms
        inverse = torch.argsort(self.permutation)
        return [unflatten_k(t.index_select(1, inverse), self.weight.shape) for t in terms]


def export_tasd_weights(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Write every TASD-W layer's approximated weight and packed terms to a safetensors file.

    Tensors, per layer ``name``: ``{name}.weight`` (Ŵ) and, per term ``i``,
    ``{name}.terms.{i}.values`` and ``{name}.terms.{i}.positions.{r}`` (rank ``r``, highest first;
    the CP layout of :mod:`tasder.tasd.packing`, in the layer's grouped layout); with the options,
    ``{name}.permutation``, ``{name}.output_correction`` and ``{name}.input_norm``. The metadata key
    ``tasder.tasd_weights`` holds JSON ``{"format": 2, "layers": {name: {"series", "dim", "shape",
    "weight_shape", "dtype", "permutation", "output_correction", "input_norm", "score",
    "reconstructed", "terms": [{"pattern", "ranks"}]}}}`` (``shape``: the packed layout's; the last
    three keys are absent from files written before those options existed). The terms are the
    layer's own (:meth:`TASDLayer.terms`): with ``reconstruct`` they hold the refit weights. The file
    is written atomically (temp file + ``os.replace``).
    Read it back with :func:`load_tasd_weights`.

    Raises:
        ValueError: the model has no TASD-W layer, or a layer's series has a term that has no
            packed form (unstructured).
    """
    from safetensors.torch import save

    _check_model(model, "export_tasd_weights")
    tensors: dict[str, torch.Tensor] = {}
    layers_meta: dict[str, Any] = {}
    for name, layer in tasd_layers(model):
        if layer.mode != "W":
            continue
        bad = [str(t) for t in layer.series.terms if not isinstance(t, StructuredPattern)]
        if bad:
            raise ValueError(f"layer {name!r}: term {bad[0]!r} of series '{layer.series}' has no packed form")
        w = layer.weight.detach().cpu().contiguous()
        meta_terms = []
        tensors[f"{name}.weight"] = w
        dim, shape = 1, list(w.shape)
        for i, (term, pattern) in enumerate(zip(layer.terms(), layer.series.terms, strict=True)):
            view, dim = layer.grouped_view(term)
            shape = list(view.shape)
            packed = pack(view.cpu().contiguous(), pattern, dim=dim)
            tensors[f"{name}.terms.{i}.values"] = packed.values.contiguous()
            for r, pos in enumerate(packed.positions):
                tensors[f"{name}.terms.{i}.positions.{r}"] = pos.contiguous()
            meta_terms.append({"pattern": str(pattern), "ranks": len(packed.positions)})
        for extra in ("permutation", "output_correction", "input_norm"):
            value = getattr(layer, extra)
            if value is not None:
                tensors[f"{name}.{extra}"] = value.detach().cpu().contiguous()
        layers_meta[name] = {
            "series": str(layer.series),
            "dim": dim,
            "shape": shape,
            "weight_shape": list(w.shape),
            "dtype": str(w.dtype).removeprefix("torch."),
            "permutation": layer.permutation is not None,
            "output_correction": layer.output_correction is not None,
            "input_norm": layer.input_norm is not None,
            "score": layer.score,
            "reconstructed": layer.reconstruct,
            "terms": meta_terms,
        }
    if not layers_meta:
        raise ValueError("export_tasd_weights: the model has no TASD-W layer (mode 'W') to export")
    metadata = {EXPORT_METADATA_KEY: json.dumps({"format": EXPORT_FORMAT, "layers": layers_meta})}
    p = Path(path)
    atomic_write_bytes(p, save(tensors, metadata=metadata))
    return p


def load_tasd_weights(path: str | os.PathLike[str]) -> dict[str, ExportedLayer]:
    """Read a file written by :func:`export_tasd_weights`, layer name → :class:`ExportedLayer`.

    Every layer's packed terms are unpacked and checked to sum exactly to the stored weight.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a TASD weights file, a damaged one, or terms that do not sum to the weight
            (the message names the layer).
    """
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {p}")
    try:
        with safe_open(str(p), framework="pt", device="cpu") as fh:
            meta_text = (fh.metadata() or {}).get(EXPORT_METADATA_KEY)
            if meta_text is None:
                raise ValueError(f"{p} is not a tasder TASD weights file (no {EXPORT_METADATA_KEY!r} metadata)")
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except ValueError:
        raise
    except Exception as exc:  # safetensors raises SafetensorError / OSError on damaged files
        raise ValueError(f"{p} is not a readable safetensors file: {exc}") from None
    try:
        meta = json.loads(meta_text)
        if meta.get("format") not in _READABLE_FORMATS:
            raise ValueError(f"unsupported format {meta.get('format')!r}")
        layers = meta["layers"]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{p}: damaged {EXPORT_METADATA_KEY!r} metadata: {exc}") from None

    out: dict[str, ExportedLayer] = {}
    for name, info in layers.items():
        try:
            weight = tensors[f"{name}.weight"]
            dtype = getattr(torch, info["dtype"])
            shape = tuple(int(s) for s in info["shape"])
            dim = int(info["dim"])
            weight_shape = tuple(int(s) for s in info.get("weight_shape", shape))
            extras = {k: tensors[f"{name}.{k}"] if info.get(k, False) else None
                      for k in ("permutation", "output_correction", "input_norm")}
            score = str(info.get("score", "magnitude"))
            reconstructed = bool(info.get("reconstructed", False))
            packed_terms = []
            for i, t in enumerate(info["terms"]):
                pattern = parse_pattern(t["pattern"])
                assert isinstance(pattern, StructuredPattern)
                positions = tuple(tensors[f"{name}.terms.{i}.positions.{r}"] for r in range(int(t["ranks"])))
                packed_terms.append(PackedTensor(pattern=pattern, shape=shape, dim=dim, dtype=dtype,
                                                 values=tensors[f"{name}.terms.{i}.values"], positions=positions))
            series = str(parse_series(info["series"]))
        except (KeyError, TypeError, ValueError, AttributeError, AssertionError) as exc:
            raise ValueError(f"{p}: layer {name!r}: damaged entry ({type(exc).__name__}: {exc})") from None
        if tuple(weight.shape) != weight_shape or weight.dtype != dtype:
            raise ValueError(f"{p}: layer {name!r}: weight is {tuple(weight.shape)} {weight.dtype}, "
                             f"metadata says {weight_shape} {dtype}")
        perm = extras["permutation"]
        if perm is not None and not is_permutation(perm, math.prod(weight_shape[1:])):
            raise ValueError(f"{p}: layer {name!r}: `permutation` is not a permutation of the weight's K")
        entry = ExportedLayer(name=name, series=series, dim=dim, weight=weight, terms=tuple(packed_terms),
                              permutation=perm, output_correction=extras["output_correction"], score=score,
                              reconstructed=reconstructed, input_norm=extras["input_norm"])
        try:
            unpacked = entry.unpacked_terms()
        except Exception as exc:  # shape mismatches inside unpack
            raise ValueError(f"{p}: layer {name!r}: packed terms do not unpack: {exc}") from None
        total = unpacked[0].clone()
        for u in unpacked[1:]:
            total += u
        if not torch.equal(total, weight):
            raise ValueError(f"{p}: layer {name!r}: the unpacked terms do not sum to the stored weight")
        out[name] = entry
    return out
