"""The package's shape: who imports whom, what start-up loads, the public names and their history.

* Layering (imports point down only): ``cli → demo → report``; ``cli, demo → search → workloads →
  {hw, nn, train, zoo}``; ``train → nn → {targets, tasd} → sparsity``; ``hw → sparsity`` alone;
  ``zoo → io, _batch``. Checked on the source (function-level imports included), so a lazy import
  cannot hide an upward edge.
* Start-up: ``import tasder``, ``import tasder.hw``, ``tasder --help`` and the ``hw`` commands load
  none of torch, numba, scipy, matplotlib, transformers, scikit-learn (checked in fresh processes).
"""

from __future__ import annotations

import ast
import functools
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import tasder

SRC = Path(tasder.__file__).resolve().parent

#: Each top-level module or subpackage of tasder → its layer; an import must go to a lower one.
LAYERS: dict[str, int] = {
    "_validation": 0, "_batch": 0, "_threads": 0, "_text": 0, "_yaml": 0, "errors": 0, "io": 0,
    "sparsity": 1, "scores": 1,
    "targets": 2, "tasd": 2,
    "hw": 3, "nn": 3,
    "train": 4, "zoo": 4,
    "workloads": 5,
    "search": 6,
    "report": 7,
    "demo": 8,
    "cli": 9,
    "__main__": 10, "__init__": 10,
}
#: Stricter than the layers: what these may import at all.
ONLY: dict[str, set[str]] = {
    "hw": {"sparsity", "errors", "_yaml"},  # the accelerator model knows no torch, zoo, nn or search
    "zoo": {"io", "_batch", "errors", "_threads", "scores"},
    "report": {"io"},
    "targets": {"sparsity", "_yaml"},
}

HEAVY = ("torch", "numba", "scipy", "matplotlib", "transformers", "sklearn")


def _unit(path: Path) -> str:
    return path.relative_to(SRC).with_suffix("").parts[0]


@functools.cache
def _edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        here = _unit(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] == "tasder" and len(parts) > 1 and parts[1] in LAYERS and parts[1] != here:
                    edges.setdefault(here, set()).add(parts[1])
    return edges


def test_every_module_has_a_layer():
    units = {_unit(p) for p in SRC.rglob("*.py")}
    assert units <= set(LAYERS), f"give {sorted(units - set(LAYERS))} a layer in LAYERS"


def test_imports_point_down_only():
    upward = [f"{a} → {b}" for a, targets in _edges().items() for b in targets if LAYERS[b] >= LAYERS[a]]
    assert not upward, upward
    for unit, allowed in ONLY.items():
        assert _edges().get(unit, set()) <= allowed, f"{unit} imports {sorted(_edges()[unit] - allowed)}"


def _loaded(code: str) -> list[str]:
    """The heavy modules a fresh interpreter holds after running ``code``."""
    script = f"{code}\nimport sys, json\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("code", [
    "import tasder",
    "import tasder.hw",
    "import tasder.hw, tasder.workloads, tasder.targets, tasder.errors",
    "from tasder.cli.app import run\nimport contextlib, io\n"
    "with contextlib.redirect_stdout(io.StringIO()):\n"
    "    run(['--help']); run(['hw', '--help']); run(['hw', 'eval', '--help'])",
])
def test_start_up_loads_no_heavy_module(code):
    assert _loaded(code) == []


def test_hw_commands_load_neither_torch_nor_numba(tmp_path):
    workload = tmp_path / "w.yaml"
    workload.write_text("version: 0.1\nworkload:\n  layers:\n    - {name: fc, M: 16, K: 32, N: 8}\n")
    code = ("from tasder.cli.app import run\nimport contextlib, io\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    assert run(['hw', 'eval', '--arch', 'tc', '--workload', {str(workload)!r}, '--mapper-budget', '50',"
            " '--json']) == 0\n"
            "    assert run(['hw', 'compare', '--designs', 'stc', '--workload', 'gemm:16x32x8:A=2:4',"
            " '--mapper-budget', '50', '--json']) == 0\n"
            "    assert run(['models', '--json']) == 0")
    loaded = _loaded(code)
    assert "torch" not in loaded and "numba" not in loaded, loaded


# --- names ----------------------------------------------------------------------------------------


def test_top_level_names_load_lazily_and_dir_lists_them():
    assert set(tasder.__all__) <= set(dir(tasder)) and {"hw", "nn", "search", "workloads"} <= set(dir(tasder))
    for name in tasder.__all__:
        assert getattr(tasder, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        tasder.nope  # noqa: B018


def test_hw_namespace_is_small_and_the_old_mapper_names_warn():
    import tasder.hw as hw

    # 30 names, plus Timeloop in and out (issue 16: load_timeloop, timeloop_yaml).
    assert len(hw.__all__) <= 32 and all(hasattr(hw, n) for n in hw.__all__)
    for old, new in (("search", "map_layer"), ("search_network", "map_network"), ("search_training", "map_training")):
        with pytest.warns(DeprecationWarning, match=f"tasder.hw.{old} is deprecated: use tasder.hw.{new}"):
            assert getattr(hw, old) is getattr(hw, new)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert hw.map_layer is not None  # the new names do not warn
    with pytest.raises(AttributeError):
        hw.trace_module  # noqa: B018 - moved to tasder.workloads.trace_network


def test_errors_are_tasder_errors_and_the_builtin_types():
    from tasder import errors
    from tasder.hw import MappingError, NoValidMappingError, SpecError

    assert issubclass(errors.InvalidParameterError, (errors.TasderError, ValueError, TypeError))
    for exc in (SpecError, MappingError, NoValidMappingError):
        assert issubclass(exc, errors.TasderError) and issubclass(exc, ValueError)
    assert issubclass(errors.WorkloadUnavailableError, RuntimeError)
    from tasder.hw import Problem, load_architecture, map_layer

    with pytest.raises(errors.InvalidParameterError, match="budget"):  # also a ValueError for older callers
        map_layer(load_architecture("tc"), Problem("p", M=4, K=4, N=4), budget=0)
    with pytest.raises(errors.InvalidParameterError, match="a_density must be"):
        Problem("p", M=4, K=4, N=4, a_density=[0.5])  # type: ignore[arg-type]


def test_no_public_name_shadows_its_module():
    import tasder.cli
    import tasder.nn

    assert type(tasder.nn.profile).__name__ == "module"
    assert type(tasder.cli.app).__name__ == "module"
