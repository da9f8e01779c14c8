"""Which layers get which TASD series: the per-layer configuration of :func:`tasder.nn.apply_tasd`.

A configuration maps layer names, exactly as :meth:`torch.nn.Module.named_modules` spells them,
or fnmatch globs (``*``, ``?``, ``[...]``) over those names, to a :class:`LayerSpec`: a TASD
*series* and a *mode*:

* ``W`` (TASD-W): the layer's weight is decomposed once, offline, and replaced by its
  approximation.
* ``A`` (TASD-A): the layer's *input* is decomposed on every forward pass.
* series ``dense``: the layer is left untouched (whatever the mode).

Four options go beyond the TASD paper (ours, off by default; see :mod:`tasder.nn.calibration`):

* ``permute``: decompose in a permuted order of the reduction dim K chosen so the series drops
  less (:func:`tasder.tasd.find_permutation`; TASD-W: from the weight, over the im2col K of a
  convolution; TASD-A: from calibration activations, over the input channels);
* ``bias_correction``: add to each output channel the mean output error the approximation makes
  on calibration data (closed form, no training);
* ``score: activation`` (TASD-W): rank weights by |W_ij|·‖X_j‖₂ — the weight times the norm of
  the input feature it multiplies on the calibration data (Wanda's score) — instead of |W_ij|;
* ``reconstruct`` (TASD-W): after choosing what the series keeps, update the kept weights so the
  layer's output on the calibration data changes least (an OBS column sweep, as SparseGPT does
  for 2:4; :mod:`tasder.nn.reconstruct`).

An option that needs calibration data (``bias_correction``; ``permute`` in mode A; ``score:
activation`` and ``reconstruct``) makes :func:`~tasder.nn.apply_tasd` ask for calibration batches.

On disk it is YAML, versioned so that later formats can be told apart, and one line per layer so
that two configurations diff cleanly::

    version: 1
    layers:
      encoder.layer.0.attention.self.query: {series: 2:8+1:8, mode: W}
      "encoder.layer.*.intermediate.dense": {series: 4:8+1:8, mode: A}
      conv2: {series: 1:8, mode: W, permute: true, bias_correction: true}
      fc1: {series: 4:8, mode: W, score: activation, reconstruct: true}
      "*": {series: dense}

In Python the bare mapping (just the ``layers`` part) is accepted too; a file must say
``version: 1``. A value may also be a series string alone, which means mode ``W``.

**Precedence** when several keys match one layer: an exact name wins over every glob; among
globs the longest pattern string wins (the more specific one, as a rule); between globs of the
same length the one listed first wins. So ``"*": {series: dense}`` can sit next to specific
entries as a catch-all.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from tasder._yaml import load_yaml_text, read_yaml_text
from tasder.io import atomic_write_text
from tasder.sparsity.notation import parse_series
from tasder.sparsity.patterns import Pattern, Series, StructuredPattern, Unstructured
from tasder.tasd.permutation import permutable_block

__all__ = ["CONFIG_VERSION", "LayerSpec", "Mode", "TASDConfig", "is_glob"]

#: The version of the YAML format this module writes (and the only one it reads).
CONFIG_VERSION = 1

Mode = Literal["W", "A"]
#: How TASD-W ranks weights: ``magnitude`` |W| (the paper's), ``activation`` |W|·‖X‖ (Wanda's).
Score = Literal["magnitude", "activation"]
SCORES: tuple[str, ...] = ("magnitude", "activation")

_SPEC_KEYS = ("series", "mode", "permute", "bias_correction", "score", "reconstruct")
_OPTIONS = ("permute", "bias_correction", "reconstruct")  # the boolean ones
_TOP_KEYS = ("version", "layers", "provenance")
_GLOB_CHARS = frozenset("*?[")


class _ConfigLoader(yaml.SafeLoader):
    """YAML 1.1 safe loading without base-60 numbers.

    PyYAML reads a plain ``2:4`` as the sexagesimal integer 124 and ``4:16`` as 256, which would
    turn the most natural way of writing a G:H series into a number. This loader resolves ints and
    floats without the base-60 forms, so ``series: 2:4`` is the string ``"2:4"``.
    """


_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ConfigLoader.add_implicit_resolver(
    _INT,
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
_ConfigLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
               r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)


class _NoAliasDumper(yaml.SafeDumper):
    """safe_dump that writes a repeated object out again instead of as an anchor and an alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def is_glob(key: str) -> bool:
    """True when ``key`` is an fnmatch pattern rather than a layer name (it holds ``*``, ``?`` or ``[``)."""
    return any(c in _GLOB_CHARS for c in key)


def _parse_mode(mode: object, where: str) -> Mode:
    if isinstance(mode, str) and mode.strip().upper() in ("W", "A"):
        return "W" if mode.strip().upper() == "W" else "A"
    raise ValueError(f"{where}: `mode` must be 'W' (decompose the weights) or 'A' (decompose the input); got {mode!r}")


def _parse_series(series: object, where: str) -> Series:
    if not isinstance(series, (str, Series, Pattern)):
        raise ValueError(
            f"{where}: `series` must be a series string such as '2:8+1:8' or 'dense'; got {series!r}"
        )
    try:
        return parse_series(series.strip() if isinstance(series, str) else series)
    except ValueError as exc:
        raise ValueError(f"{where}: bad `series` {series!r}: {exc}") from None


@dataclass(frozen=True)
class LayerSpec:
    """What to do with one layer: a TASD ``series`` applied in ``mode`` (``"W"`` or ``"A"``).

    Attributes:
        series: the parsed series; ``dense`` means "leave the layer as it is".
        mode: ``"W"`` (weights decomposed once) or ``"A"`` (input decomposed every forward pass).
        permute: decompose in a permuted order of the reduction dim (see the module doc); needs a
            series of G:H terms with one H.
        bias_correction: add the mean output error on calibration data back to each output channel.
        score: TASD-W only: ``"magnitude"`` (|W|, default) or ``"activation"`` (|W_ij|·‖X_j‖₂ on the
            calibration data) ranks the weights the series keeps.
        reconstruct: TASD-W only: update the kept weights from calibration activations so the
            layer's output changes least (least squares per output row, OBS column sweep).
    """

    series: Series
    mode: Mode = "W"
    permute: bool = False
    bias_correction: bool = False
    score: Score = "magnitude"
    reconstruct: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "series", _parse_series(self.series, "LayerSpec"))
        object.__setattr__(self, "mode", _parse_mode(self.mode, "LayerSpec"))
        for option in _OPTIONS:
            if not isinstance(getattr(self, option), bool):
                raise ValueError(f"LayerSpec: `{option}` must be true or false; got {getattr(self, option)!r}")
        if self.score not in SCORES:
            raise ValueError(f"LayerSpec: `score` must be one of {', '.join(SCORES)}; got {self.score!r}")
        if self.series.is_dense and (self.permute or self.bias_correction or self.reconstruct
                                     or self.score != "magnitude"):
            raise ValueError("LayerSpec: series 'dense' leaves the layer untouched; `permute`, `bias_correction`, "
                             "`score` and `reconstruct` do not apply to it")
        if self.mode == "A" and (self.reconstruct or self.score != "magnitude"):
            raise ValueError("LayerSpec: `score: activation` and `reconstruct` choose and refit *weights* (TASD-W); "
                             "mode 'A' decomposes the input")
        if self.permute:
            try:
                permutable_block(self.series)
            except ValueError as exc:
                raise ValueError(f"LayerSpec: `permute`: {exc}") from None
        if self.mode == "A" and any(isinstance(t, Unstructured) for t in self.series.terms):
            # An unstructured term keeps the top fraction of the *whole* activation tensor, so one
            # sample's result would depend on the rest of the batch: not a layer anyone wants.
            raise ValueError(
                f"LayerSpec: series {str(self.series)!r} has an unstructured term, which mode 'A' cannot "
                f"use (its selection would depend on the whole batch); use G:H/HSS terms, or mode 'W'"
            )

    @property
    def is_dense(self) -> bool:
        """True when the layer stays untouched."""
        return self.series.is_dense

    @property
    def needs_calibration(self) -> bool:
        """True when applying the spec needs calibration data (bias correction, a TASD-A permutation, an
        activation-aware score or a reconstruction)."""
        return self.bias_correction or (self.permute and self.mode == "A") or self.weight_needs_calibration

    @property
    def weight_needs_calibration(self) -> bool:
        """True for a TASD-W spec whose weight approximation itself needs calibration data."""
        return self.mode == "W" and (self.score != "magnitude" or self.reconstruct)

    @property
    def block_size(self) -> int:
        """The largest block (Π H) of the series: the shortest reduction dim the series can run on."""
        sizes = [t.block_size for t in self.series.terms if isinstance(t, StructuredPattern)]
        return max(sizes, default=1)

    @classmethod
    def from_value(cls, value: object, where: str = "layer spec") -> LayerSpec:
        """Build a spec from a config value: a mapping ``{series, mode[, permute, bias_correction]}``, a
        series string, or a spec."""
        if isinstance(value, LayerSpec):
            return value
        if isinstance(value, (str, Series, Pattern)):
            return cls(series=_parse_series(value, where), mode="W")
        if not isinstance(value, Mapping):
            raise ValueError(
                f"{where}: expected a mapping like {{series: '2:8+1:8', mode: W}} or a series string; "
                f"got {type(value).__name__} {value!r}"
            )
        unknown = [k for k in value if k not in _SPEC_KEYS]
        if unknown:
            raise ValueError(f"{where}: unknown key {unknown[0]!r}; allowed keys: {', '.join(_SPEC_KEYS)}")
        if "series" not in value:
            raise ValueError(f"{where}: missing key 'series' (e.g. series: 2:8+1:8, or series: dense)")
        series = _parse_series(value["series"], where)
        mode = _parse_mode(value.get("mode", "W"), where)
        for option in _OPTIONS:
            if not isinstance(value.get(option, False), bool):
                raise ValueError(f"{where}: `{option}` must be true or false; got {value[option]!r}")
        score = value.get("score", "magnitude")
        if score not in SCORES:
            raise ValueError(f"{where}: `score` must be one of {', '.join(SCORES)}; got {score!r}")
        try:
            return cls(series=series, mode=mode, permute=value.get("permute", False),
                       bias_correction=value.get("bias_correction", False), score=score,
                       reconstruct=value.get("reconstruct", False))
        except ValueError as exc:
            raise ValueError(str(exc).replace("LayerSpec", where, 1)) from None

    def to_dict(self) -> dict[str, Any]:
        """The YAML/JSON form ``{"series": ..., "mode": ...}``, plus each option that is on."""
        out: dict[str, Any] = {"series": str(self.series), "mode": self.mode}
        out.update({option: True for option in _OPTIONS if getattr(self, option)})
        if self.score != "magnitude":
            out["score"] = self.score
        return out

    def flow_yaml(self) -> str:
        """The spec as one YAML flow mapping (``{series: "2:8", mode: W, permute: true}``)."""
        options = "".join(f", {option}: true" for option in _OPTIONS if getattr(self, option))
        if self.score != "magnitude":
            options += f", score: {self.score}"
        return f"{{series: {json.dumps(str(self.series))}, mode: {self.mode}{options}}}"


@dataclass(frozen=True)
class TASDConfig:
    """A per-layer TASD configuration: layer names or globs → :class:`LayerSpec` (see module doc).

    Build one with :meth:`from_mapping`, :meth:`from_yaml` or :meth:`load`; :meth:`coerce` takes any
    of a config, a mapping or a path. :meth:`save` writes the versioned YAML form atomically.

    >>> cfg = TASDConfig.from_mapping({"fc1": {"series": "2:8+1:8", "mode": "W"}, "*": "dense"})
    >>> cfg.resolve("fc1").mode, str(cfg.resolve("fc2").series)
    ('W', 'dense')
    """

    layers: dict[str, LayerSpec] = field(default_factory=dict)
    #: Where the config came from (e.g. a ``tasder search``: model id, target, constraint, scores).
    #: Free-form, JSON-like; it does not change what the config does, so equality ignores it.
    provenance: dict[str, Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.provenance is not None and not isinstance(self.provenance, Mapping):
            raise ValueError(f"TASDConfig.provenance must be a mapping; got {type(self.provenance).__name__}")
        if not isinstance(self.layers, Mapping):
            raise ValueError(f"TASDConfig.layers must be a mapping of layer names to specs; got {self.layers!r}")
        checked: dict[str, LayerSpec] = {}
        for key, value in self.layers.items():
            if not isinstance(key, str) or not key.strip():
                raise ValueError(f"layer names in a TASD config must be non-empty strings; got {key!r}")
            checked[key] = LayerSpec.from_value(value, f"layer {key!r}")
        object.__setattr__(self, "layers", checked)

    # -- building -------------------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> TASDConfig:
        """From the versioned form ``{"version": 1, "layers": {...}}`` or the bare ``{name: spec}``.

        A mapping is read as the versioned form when it has a ``version`` or a ``layers`` key (so a
        layer literally named ``layers`` or ``version`` must be given in the versioned form).
        """
        if isinstance(data, TASDConfig):
            return data
        if not isinstance(data, Mapping):
            raise ValueError(f"a TASD config must be a mapping; got {type(data).__name__}")
        if "version" in data or "layers" in data:
            unknown = [k for k in data if k not in _TOP_KEYS]
            if unknown:
                raise ValueError(f"TASD config: unknown top-level key {unknown[0]!r}; allowed keys: "
                                 f"{', '.join(_TOP_KEYS)}")
            version = data.get("version", CONFIG_VERSION)
            if isinstance(version, bool) or version != CONFIG_VERSION:
                raise ValueError(f"TASD config: unsupported `version` {version!r}; this tasder reads version 1")
            layers = data.get("layers")
            if layers is None:
                raise ValueError("TASD config: missing key 'layers' (a mapping of layer names/globs to specs)")
            if not isinstance(layers, Mapping):
                raise ValueError(f"TASD config: `layers` must be a mapping; got {type(layers).__name__}")
            provenance = data.get("provenance")
            if provenance is not None and not isinstance(provenance, Mapping):
                raise ValueError(f"TASD config: `provenance` must be a mapping; got {type(provenance).__name__}")
            return cls(dict(layers), dict(provenance) if provenance is not None else None)
        return cls(dict(data))

    @classmethod
    def from_yaml(cls, text: str, source: str = "<string>") -> TASDConfig:
        """Parse the YAML text of a config file (``source`` names it in error messages).

        A file must hold the versioned form (``version: 1`` and ``layers:``), so that a file of
        another kind passed by mistake is named as such rather than read as layer names; the bare
        mapping of layer names is for Python callers (:meth:`from_mapping`). Aliases and duplicate
        keys are refused with the line (:mod:`tasder._yaml`): a layer listed twice would
        otherwise lose its first entry silently.
        """
        data = load_yaml_text(text, source, loader=_ConfigLoader)
        if data is None:
            raise ValueError(f"{source}: empty TASD config (expected `version: 1` and `layers: ...`)")
        if not isinstance(data, Mapping):
            raise ValueError(f"{source}: a TASD config must be a YAML mapping; got {type(data).__name__}")
        if "version" not in data:
            raise ValueError(f"{source}: missing `version: {CONFIG_VERSION}`: a TASD config file holds "
                             f"`version: {CONFIG_VERSION}` and `layers:` (the mapping of layer names to specs)")
        try:
            return cls.from_mapping(data)
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TASDConfig:
        """Read a YAML config file."""
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"no such TASD config file: {p}")
        return cls.from_yaml(read_yaml_text(p), str(p))

    @classmethod
    def coerce(cls, config: TASDConfig | Mapping[str, Any] | str | os.PathLike[str]) -> TASDConfig:
        """A config from whatever :func:`~tasder.nn.apply_tasd` accepts: config, mapping or YAML path."""
        if isinstance(config, TASDConfig):
            return config
        if isinstance(config, Mapping):
            return cls.from_mapping(config)
        if isinstance(config, (str, os.PathLike)):
            return cls.load(config)
        raise TypeError(
            f"`config` must be a TASDConfig, a mapping of layer names to specs, or a path to a YAML file; "
            f"got {type(config).__name__}"
        )

    # -- writing --------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The versioned form ``{"version": 1, "layers": {name: {"series", "mode"}}}`` (plus
        ``"provenance"`` when the config carries one)."""
        out: dict[str, Any] = {"version": CONFIG_VERSION, "layers": {k: v.to_dict() for k, v in self.layers.items()}}
        if self.provenance is not None:
            out["provenance"] = dict(self.provenance)
        return out

    def to_yaml(self) -> str:
        """YAML text, one flow mapping per layer in config order (short diffs)."""
        # Names and series are double-quoted (JSON strings are valid YAML): a plain ``2:4`` would be
        # the base-60 integer 124 to a YAML 1.1 reader, and a glob ``*`` an alias.
        lines = [f"version: {CONFIG_VERSION}", "layers:" + ("" if self.layers else " {}")]
        for key, spec in self.layers.items():
            lines.append(f"  {json.dumps(key)}: {spec.flow_yaml()}")
        text = "\n".join(lines) + "\n"
        if self.provenance is not None:
            # safe_dump quotes every string a YAML 1.1 reader would take for a number ("2:8").
            # _NoAliasDumper: an object listed twice would be written as an anchor and an alias,
            # which the loader refuses.
            text += yaml.dump({"provenance": dict(self.provenance)}, Dumper=_NoAliasDumper, sort_keys=False,
                              default_flow_style=False, allow_unicode=True)
        return text

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_yaml` to ``path`` atomically (temp file + rename); returns the path."""
        return atomic_write_text(path, self.to_yaml())

    # -- matching -------------------------------------------------------------------------------

    def match(self, name: str) -> str | None:
        """The key that decides layer ``name``: the exact name, else the longest matching glob
        (the first listed among equally long ones), else None."""
        if name in self.layers:
            return name
        best: str | None = None
        for key in self.layers:
            if is_glob(key) and fnmatch.fnmatchcase(name, key) and (best is None or len(key) > len(best)):
                best = key
        return best

    def resolve(self, name: str) -> LayerSpec | None:
        """The spec that applies to layer ``name`` (None when no key matches)."""
        key = self.match(name)
        return None if key is None else self.layers[key]

    def check_names(self, names: Iterable[str], candidates: Iterable[str] | None = None) -> None:
        """Raise ValueError for an exact key that is not in ``names``, or a glob matching none of
        ``candidates`` (default ``names``); the message suggests close matches (difflib)."""
        known = list(names)
        known_set = set(known)
        pool = known if candidates is None else list(candidates)
        for key in self.layers:
            if is_glob(key):
                if not any(fnmatch.fnmatchcase(n, key) for n in pool):
                    close = difflib.get_close_matches(key, pool, n=3, cutoff=0.5)
                    hint = f"; close layer names: {', '.join(close)}" if close else ""
                    raise ValueError(f"TASD config: glob {key!r} matches no Linear/Conv2d layer of the model{hint}")
            elif key not in known_set:
                close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
                hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
                raise ValueError(f"TASD config: the model has no layer named {key!r}{hint}")
