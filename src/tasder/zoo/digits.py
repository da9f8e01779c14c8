"""The scikit-learn digits data (1,797 real 8×8 handwritten digits) and a small ReLU CNN for it.

The data ships inside scikit-learn, so nothing downloads. The split is fixed (stratified,
seeded): 60 % train, 20 % validation, 20 % test. Images are scaled to [0, 1] (the raw pixels are
0..16) and shaped (N, 1, 8, 8).

:class:`DigitsCNN` is deliberately a real convolutional network, not a toy MLP: three 3×3 conv
layers (16, 32, 32 channels) with ReLU and max-pooling, then two linear layers. Its layer names
(``conv1``, ``conv2``, ``conv3``, ``fc1``, ``fc2``) are stable; ``conv1`` is the first layer
(its reduction dim per kernel position is C=1, too small for any G:H) and ``fc2`` the classifier.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["DigitsCNN", "DigitsData", "evaluate_accuracy", "load_digits_data"]


@dataclass(frozen=True)
class DigitsData:
    """Fixed train/validation/test split of the digits data (float32 images, int64 labels)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def num_classes(self) -> int:
        return 10


def load_digits_data(seed: int = 0) -> DigitsData:
    """The digits data split 60/20/20 (stratified; ``seed`` fixes the split)."""
    from sklearn.datasets import load_digits  # scikit-learn is only needed for the data
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = digits.target.astype(np.int64)
    x_train, x_rest, y_train, y_rest = train_test_split(x, y, test_size=0.4, random_state=seed, stratify=y)
    x_val, x_test, y_val, y_test = train_test_split(
        x_rest, y_rest, test_size=0.5, random_state=seed, stratify=y_rest
    )
    t = torch.from_numpy
    return DigitsData(t(x_train), t(y_train), t(x_val), t(y_val), t(x_test), t(y_test))


class DigitsCNN(nn.Module):
    """conv(1→16) → conv(16→32) → pool → conv(32→32) → pool → fc(128→64) → fc(64→10), ReLU."""

    def __init__(self, channels: tuple[int, int, int] = (16, 32, 32), hidden: int = 64, num_classes: int = 10):
        super().__init__()
        c1, c2, c3 = channels
        self.conv1 = nn.Conv2d(1, c1, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(c2, c3, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.relu = nn.ReLU()
        self.fc1 = nn.Linear(c3 * 2 * 2, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv1(x))  # 8×8
        x = self.pool(self.relu(self.conv2(x)))  # 4×4
        x = self.pool(self.relu(self.conv3(x)))  # 2×2
        x = self.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)`` in eval mode (the mode is restored after)."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        logits = model(x[start : start + batch_size])
        correct += int((logits.argmax(dim=1) == y[start : start + batch_size]).sum())
    model.train(was_training)
    return correct / len(x) if len(x) else 0.0
