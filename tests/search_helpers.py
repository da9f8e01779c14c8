"""The small MLP and calibration batches the search tests share (one definition, seeded)."""

from __future__ import annotations

import torch
from torch import nn


def tiny_mlp() -> nn.Module:
    """Three Linear layers 16 → 32 → 32 → 8 with ReLUs, eval mode, weights from seed 0."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 8)).eval()


def tiny_calibration() -> list[torch.Tensor]:
    """Two batches of 8 inputs (16 features) from seed 1."""
    g = torch.Generator().manual_seed(1)
    return [torch.randn(8, 16, generator=g) for _ in range(2)]
