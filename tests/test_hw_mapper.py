"""The vectorized mapper: optimal on enumerable spaces, deterministic, constrained, and clear when nothing fits."""

from __future__ import annotations

import contextlib
import itertools

import pytest

from hw_helpers import two_level
from tasder.hw import (
    MapperConstraints,
    Mapping,
    MappingError,
    NoValidMappingError,
    Problem,
    evaluate,
    load_architecture,
    load_network,
    map_layer,
    map_network,
)
from tasder.hw.mapping import ORDERS


def _splits(n: int, parts: int):
    if parts == 1:
        yield (n,)
        return
    for d in range(1, n + 1):
        if n % d == 0:
            for rest in _splits(n // d, parts - 1):
                yield (d, *rest)


def _brute_force(arch, prob):
    """Every mapping of a DRAM + buffer + MACs design, evaluated one at a time with the scalar path."""
    out = []
    per_dim = [list(_splits(n, 3)) for n in prob.sizes]  # (DRAM temporal, Buffer temporal, Buffer spatial)
    for (m, k, n) in itertools.product(*per_dim):
        for o0, o1 in itertools.product(ORDERS, ORDERS):
            mapping = Mapping.from_levels([
                {"temporal": {"M": m[0], "K": k[0], "N": n[0]}, "order": o0},
                {"temporal": {"M": m[1], "K": k[1], "N": n[1]}, "order": o1,
                 "spatial": {"M": m[2], "K": k[2], "N": n[2]}},
            ])
            with contextlib.suppress(MappingError):
                out.append(evaluate(arch, prob, mapping))
    return out


@pytest.mark.parametrize("objective", ["edp", "energy", "cycles"])
def test_best_is_never_worse_than_any_brute_force_mapping(tmp_path, objective):
    arch = two_level(tmp_path, capacity=12, dram_bw=2, buf_bw=4, macs=2)
    prob = Problem("tiny", M=4, K=2, N=2)
    every = _brute_force(arch, prob)
    key = {"edp": "edp", "energy": "energy_pj", "cycles": "cycles"}[objective]
    best_brute = min(getattr(e, key) for e in every)
    result = map_layer(arch, prob, budget=100_000, objective=objective)
    assert result.exhaustive
    assert getattr(result.best, key) <= best_brute * (1 + 1e-12)
    assert result.valid == len(every)  # the enumeration and the brute force agree on the valid set


def test_sampled_search_is_deterministic_for_a_seed():
    arch = load_architecture("tc")
    prob = Problem("conv", M=64, K=576, N=196)
    a = map_layer(arch, prob, budget=3000, seed=7, top_k=3)
    b = map_layer(arch, prob, budget=3000, seed=7, top_k=3)
    assert not a.exhaustive
    assert a.best.mapping == b.best.mapping and a.top == b.top
    assert [s for _, s in a.top] == sorted(s for _, s in a.top)
    assert a.best.edp == pytest.approx(a.top[0][1])


def test_dataflow_and_order_constraints_are_respected():
    arch = load_architecture("tc")
    prob = Problem("fc", M=128, K=256, N=32)
    r = map_layer(arch, prob, budget=2000, constraints=MapperConstraints(dataflow="output-stationary"), top_k=5)
    for mapping, _ in r.top:
        assert all(lv.order.endswith("K") for lv in mapping.levels)
    r = map_layer(arch, prob, budget=2000, constraints=MapperConstraints(orders={"RF": "KMN"}, spatial_dims={"L2": ""}))
    assert r.best.mapping.levels[3].order == "KMN"
    assert r.best.mapping.levels[1].spatial == (1, 1, 1)


def test_no_valid_mapping_names_the_tightest_constraint(tmp_path):
    arch = two_level(tmp_path, capacity=2)  # A, B and Z tiles of one word each need 3
    with pytest.raises(NoValidMappingError, match=r"tightest constraint is 'level Buffer: capacity 2 words'"):
        map_layer(arch, Problem("p", M=2, K=2, N=2))
    with pytest.raises(NoValidMappingError, match=r"100 candidate\(s\) tried; the tightest .*capacity 2 words"):
        map_layer(arch, Problem("p", M=64, K=64, N=64), budget=100)  # sampled, not enumerated


def test_bad_mapper_arguments():
    arch = load_architecture("tc")
    prob = Problem("p", M=2, K=2, N=2)
    with pytest.raises(ValueError, match="objective='speed' must be one of edp, energy, cycles"):
        map_layer(arch, prob, objective="speed")
    with pytest.raises(ValueError, match="budget must be a positive integer"):
        map_layer(arch, prob, budget=0)
    with pytest.raises(ValueError, match="has no storage level 'L3'"):
        map_layer(arch, prob, constraints=MapperConstraints(orders={"L3": "MKN"}))
    with pytest.raises(ValueError, match="dataflow='row-stationary' must be one of"):
        map_layer(arch, prob, constraints=MapperConstraints(dataflow="row-stationary"))


def test_network_totals_weight_layers_by_repeat(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text("version: 0.1\nworkload:\n  name: net\n  layers:\n"
                    "    - {name: a, M: 16, K: 32, N: 8, repeat: 3}\n    - {name: b, M: 16, K: 32, N: 8}\n")
    arch = load_architecture("tc")
    res = map_network(arch, load_network(path), budget=500)
    one = res.layers[1].best
    assert res.cycles == pytest.approx(4 * one.cycles)
    assert res.energy_pj == pytest.approx(4 * one.energy_pj)
