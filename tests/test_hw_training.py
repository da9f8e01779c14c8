"""Training GEMMs (FF/BP/WU) and SAT: N:M W in FF and BP (BDWP's two masks), dense WU (issue 6/7)."""

from __future__ import annotations

import numpy as np
import pytest

from tasder.hw import (
    Network,
    Problem,
    load_architecture,
    map_training,
    training_network,
)
from tasder.hw.density import ActualModel
from tasder.hw.training import PHASES, training_gemms
from tasder.workloads import load_network

LAYER = Problem("layer", M=256, K=1024, N=256, repeat=3, b_density="unstructured(0.5)")


def test_three_gemms_have_the_layers_macs_and_transpose_w_for_bp():
    g = training_gemms(LAYER, "2:8")
    assert list(g) == list(PHASES)
    assert {k: (p.M, p.K, p.N) for k, p in g.items()} == {"FF": (256, 1024, 256), "BP": (1024, 256, 256),
                                                          "WU": (256, 256, 1024)}
    assert all(p.macs == LAYER.macs and p.repeat == 3 for p in g.values())
    # FF: W along K; BP: Wᵀ carries its own N:M mask along C_out (its reduction dim); WU: dense weights side
    assert (str(g["FF"].a_density), str(g["BP"].a_density), str(g["WU"].a_density)) == ("2:8", "2:8", "dense")
    # X's unstructured density holds for Xᵀ too; dZ is dense
    assert (str(g["FF"].b_density), str(g["BP"].b_density), str(g["WU"].b_density)) == (
        "unstructured(0.5)", "dense", "unstructured(0.5)")
    assert str(training_gemms(LAYER, "2:8", bp_mask="forward")["BP"].a_density) == "unstructured(0.25)"
    assert str(training_gemms(LAYER, "2:8", bp_mask="dense")["BP"].a_density) == "dense"
    assert str(training_gemms(LAYER, "unstructured(0.3)", bp_mask="forward")["BP"].a_density) == "unstructured(0.3)"
    # a structured X has no N:M guarantee along N once transposed
    assert str(training_gemms(Problem("x", M=8, K=8, N=8, b_density="2:4"))["WU"].b_density) == "dense"
    with pytest.raises(ValueError, match="bp_mask"):
        training_gemms(LAYER, "2:8", bp_mask="both")


def test_a_measured_w_is_measured_transposed_for_bp():
    w = np.zeros((8, 16))
    w[0, :] = 1.0  # one dense row: along K dense, along M (BP's K) 1 of 8
    bp = training_gemms(Problem("x", M=8, K=16, N=4), ActualModel(w))["BP"].a_density
    assert isinstance(bp, ActualModel) and bp.nz.shape == (16, 8)
    assert bp.prob_empty(1, 8) == 0.0 and bp.prob_empty(1, 4) == 0.5


def test_network_step_skips_the_first_layers_bp():
    net = Network("two", (Problem("l1", M=8, K=8, N=8), Problem("l2", M=16, K=8, N=8)))
    phases = training_network(net, "2:4")
    assert [p.name for p in phases["BP"].layers] == ["l2.BP"]
    assert [p.name for p in phases["FF"].layers] == ["l1.FF", "l2.FF"]
    assert len(training_network(net, "2:4", first_layer_bp=True)["BP"].layers) == 2
    assert len(training_network(Problem("one", M=8, K=8, N=8), "2:4")["BP"].layers) == 1
    rn = training_network(load_network("resnet50"), "2:8")
    assert sum(p.macs * p.repeat for p in rn["WU"].layers) == load_network("resnet50").macs


@pytest.fixture(scope="module")
def tc_step():
    return map_training(load_architecture("tc"), LAYER, "dense", budget=2000, seed=0, objective="cycles")


@pytest.mark.parametrize(("pattern", "speedup"), [("2:8", 4.0), ("2:4", 2.0)])
def test_sat_speeds_up_ff_and_bp_and_runs_wu_dense(tc_step, pattern, speedup):
    """Compute-bound (cycles objective, B uncompressed but not limiting on this shape): FF and BP at
    M/N (2:4 runs as SAT's 4:8), WU exactly TC's; the step at the weighted mean."""
    sat = map_training(load_architecture("sat"), LAYER, pattern, budget=2000, seed=0, objective="cycles")
    tc = tc_step
    ff, bp, wu = (tc.phases[k].cycles / sat.phases[k].cycles for k in PHASES)
    assert wu == pytest.approx(1.0) and sat.phases["WU"].energy_pj == pytest.approx(tc.phases["WU"].energy_pj)
    assert 0.9 * speedup < ff <= speedup + 1e-9 and 0.9 * speedup < bp <= speedup + 1e-9
    if speedup == 2.0:
        assert ff == pytest.approx(2.0) and bp == pytest.approx(2.0)
        assert tc.cycles / sat.cycles == pytest.approx(3 / (2 * 0.5 + 1))
    assert sat.energy_pj < tc.energy_pj


def test_sat_without_a_bp_mask_runs_bp_dense(tc_step):
    """One (FF) mask only: Wᵀ has density N/M along C_out but no N:M rule, so SAT cannot skip in BP."""
    sat = map_training(load_architecture("sat"), LAYER, "2:4", bp_mask="forward", budget=2000, seed=0,
                          objective="cycles")
    assert tc_step.phases["BP"].cycles / sat.phases["BP"].cycles == pytest.approx(1.0)
    assert tc_step.phases["FF"].cycles / sat.phases["FF"].cycles == pytest.approx(2.0)
