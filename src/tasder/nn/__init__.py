"""TASD on whole models: TASD layers, the per-layer configuration, transforms, profiling, the GEMM
tracer and MAC accounting.

>>> import torch
>>> from torch import nn
>>> from tasder.nn import apply_tasd, count_macs
>>> model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8))
>>> tasd = apply_tasd(model, {"*": {"series": "2:8+1:8", "mode": "W"}})
>>> count_macs(tasd, torch.randn(4, 64)).density
0.375
"""

from tasder.nn.accounting import LayerMACs, MACReport, count_macs
from tasder.nn.calibration import TASDCalibration
from tasder.nn.config import CONFIG_VERSION, LayerSpec, TASDConfig
from tasder.nn.layers import TASDConv2d, TASDLayer, TASDLinear
from tasder.nn.profile import LayerProfile, ModelProfile, profile_model
from tasder.nn.semi_structured import to_semi_structured
from tasder.nn.trace import ConvGeometry, GemmCall, trace_gemms
from tasder.nn.transform import (
    ExportedLayer,
    TASDReport,
    apply_tasd,
    calibrate,
    export_tasd_weights,
    load_tasd_weights,
    revert,
    strip_tasd,
    tasd_layers,
    tasd_report,
)

__all__ = [
    "CONFIG_VERSION",
    "ConvGeometry",
    "ExportedLayer",
    "GemmCall",
    "LayerMACs",
    "LayerProfile",
    "LayerSpec",
    "MACReport",
    "ModelProfile",
    "TASDCalibration",
    "TASDConfig",
    "TASDConv2d",
    "TASDLayer",
    "TASDLinear",
    "TASDReport",
    "apply_tasd",
    "calibrate",
    "count_macs",
    "export_tasd_weights",
    "load_tasd_weights",
    "profile_model",
    "revert",
    "strip_tasd",
    "tasd_layers",
    "tasd_report",
    "to_semi_structured",
    "trace_gemms",
]
