"""Check the demo's data document once, at the edge, before anything is drawn or written.

The pipeline that builds the document and the renderer are written by different people; a key
renamed on one side must fail here with the key's full path (``doc['models'][0]['designs']:
missing``), not as a ``KeyError`` deep inside a plotting function after half the files exist.

The schema is plain data: a dict maps each key to a spec, where a spec is a type tag, a nested
dict, a :class:`_List`/:class:`_Map` of specs, or one of those wrapped in :class:`_Opt` (the key
may be absent) or :class:`_Null` (the value may be ``None``). Keys not in the schema are ignored,
so the pipeline can add fields without breaking older renderers.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

__all__ = ["DOC_SCHEMA", "finite", "jsonable", "validate_doc"]


@dataclass(frozen=True)
class _Opt:
    """The key may be absent (the renderer then leaves the matching part out)."""

    spec: Spec


@dataclass(frozen=True)
class _Null:
    """The value may be ``None`` (rendered as "—")."""

    spec: Spec


@dataclass(frozen=True)
class _List:
    """A list whose every item matches ``item``; ``nonempty`` rejects ``[]``."""

    item: Spec
    nonempty: bool = False


@dataclass(frozen=True)
class _Map:
    """A dict with free-form string keys whose values all match ``value``."""

    value: Spec


#: Type tags: "str", "number" (int or float, not bool; NaN/Inf allowed), "int", "bool".
Spec = Union[str, dict, _Opt, _Null, _List, _Map]  # noqa: UP007 (a runtime alias; `|` needs 3.10 types)

_NUMBER = "number"
_NNUM = _Null(_NUMBER)

_HISTORY_ITEM: dict[str, Spec] = {
    "index": _Opt("int"),
    "metric": _NNUM,
    "cost": _NNUM,
    "ok": "bool",
    "step": _Opt(_Null("str")),
    "layers": _Opt(_Null(_Map("str"))),
    "bound": _Opt(_Null(_NUMBER)),
    "worse": _Opt(_Null("int")),
    "better": _Opt(_Null("int")),
}

_LAYER: dict[str, Spec] = {
    "name": "str",
    "kind": "str",
    "dense_macs": _NUMBER,
    "series": "str",
    "density": _NNUM,
    "executed": _Opt(_NNUM),
    "weight_sparsity": _NNUM,
    "activation_sparsity": _NNUM,
    "damage": _NNUM,
}

_DESIGN: dict[str, Spec] = {
    "design": "str",
    "label": "str",
    "workload": "str",
    "cycles": _NNUM,
    "energy_pj": _NNUM,
    "edp_js": _NNUM,
    "cycles_norm": _NNUM,
    "energy_norm": _NNUM,
    "edp_norm": _NNUM,
    "energy_breakdown_pj": _Map(_Map(_NNUM)),
}

_ERROR_POINT: dict[str, Spec] = {
    "series": "str",
    "effective_density": _NUMBER,
    "dropped_nonzeros": _NNUM,
    "dropped_magnitude": _NNUM,
    "rel_error": _Opt(_NNUM),
}

_SCORE_PAIR: dict[str, Spec] = {"original": _NNUM, "transformed": _NNUM}

_MODEL: dict[str, Spec] = {
    "model": "str",
    "description": _Opt("str"),
    "mode": "str",
    "target": "str",
    "method": "str",
    "options": _Opt(_List("str")),
    "cost": "str",
    "design": "str",
    "constraint": "str",
    "metric_name": "str",
    "scores": {"validation": _SCORE_PAIR, "test": _SCORE_PAIR},
    "macs": {"dense": _NUMBER, "transformed": _NNUM},
    "search": {
        "evaluations": "int",
        "seconds": _NNUM,
        "history": _List(_HISTORY_ITEM),
        "pareto": _List("int"),
        "chosen": _Null("int"),
        "cost_unit": "str",
        "cost_baseline": _NNUM,
        # with per-example scores: how configs were accepted (a paired confidence bound)
        "acceptance": _Opt({"confidence": _NUMBER, "bound_kind": "str", "bound": _Null(_NUMBER),
                            "examples": "int"}),
    },
    "layers": _List(_LAYER),
    "designs": _List(_DESIGN, nonempty=True),
    "error_curve": _Null(
        {"layer": "str", "tensor": "str", "points": _List(_ERROR_POINT),
         "permuted_points": _Opt(_List(_ERROR_POINT))},
    ),
    "config_file": _Opt(_Null("str")),
}

#: The document :func:`tasder.report.write_report` renders (see the package docstring).
DOC_SCHEMA: dict[str, Spec] = {
    "title": "str",
    "tasder_version": "str",
    "created": "str",
    "machine": "str",
    "command": "str",
    "seconds": _NNUM,
    "quick": _Opt("bool"),
    "modelled_vs_measured": {"measured": _List("str"), "modelled": _List("str")},
    "models": _List(_MODEL, nonempty=True),
}


def _describe(value: object) -> str:
    """A short ``repr`` for error messages: documents can hold long lists."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check(value: object, spec: Spec, path: str) -> None:
    """Raise ValueError naming ``path`` where ``value`` does not match ``spec``."""
    if isinstance(spec, _Null):
        if value is not None:
            _check(value, spec.spec, path)
        return
    if isinstance(spec, _Opt):  # reached only for a present key
        _check(value, spec.spec, path)
        return
    if isinstance(spec, str):
        ok = {
            "str": isinstance(value, str),
            "number": _is_number(value),
            "int": isinstance(value, numbers.Integral) and not isinstance(value, bool),
            "bool": isinstance(value, bool),
        }[spec]
        if not ok:
            wanted = {"str": "a string", "number": "a number", "int": "an integer", "bool": "true or false"}[spec]
            raise ValueError(f"{path}: expected {wanted}; got {_describe(value)}")
        return
    if isinstance(spec, _List):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ValueError(f"{path}: expected a list; got {_describe(value)}")
        if spec.nonempty and not value:
            raise ValueError(f"{path}: expected at least one entry; got an empty list")
        for i, item in enumerate(value):
            _check(item, spec.item, f"{path}[{i}]")
        return
    if not isinstance(value, Mapping):
        raise ValueError(f"{path}: expected a dict; got {_describe(value)}")
    if isinstance(spec, _Map):
        for key, item in value.items():
            _check(item, spec.value, f"{path}[{key!r}]")
        return
    for key, sub in spec.items():
        if key not in value:
            if isinstance(sub, _Opt):
                continue
            raise ValueError(f"{path}[{key!r}]: missing (keys present: {', '.join(map(str, value)) or 'none'})")
        _check(value[key], sub, f"{path}[{key!r}]")


def _check_references(doc: Mapping[str, Any]) -> None:
    """Indices into the search history must exist: a dangling ``chosen`` would draw no star."""
    for m, model in enumerate(doc["models"]):
        search = model["search"]
        known = {entry.get("index", i) for i, entry in enumerate(search["history"])}
        path = f"doc['models'][{m}]['search']"
        for j, ref in enumerate(search["pareto"]):
            if ref not in known:
                raise ValueError(f"{path}['pareto'][{j}]: {ref} is not an index of any history entry")
        if search["chosen"] is not None and search["chosen"] not in known:
            raise ValueError(f"{path}['chosen']: {search['chosen']} is not an index of any history entry")


def validate_doc(doc: object) -> None:
    """Raise ValueError, naming the key path, if ``doc`` does not follow :data:`DOC_SCHEMA`."""
    _check(doc, DOC_SCHEMA, "doc")
    assert isinstance(doc, Mapping)
    _check_references(doc)


def finite(value: object) -> float | None:
    """``value`` as a float, or None when it is missing or not finite (NaN/Inf render as "—")."""
    if not _is_number(value):
        return None
    out = float(value)  # type: ignore[arg-type]
    return out if math.isfinite(out) else None


def jsonable(obj: object) -> object:
    """A copy of ``obj`` that strict JSON accepts: NaN/Inf become None, NumPy scalars plain numbers."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        return finite(obj)
    return obj
