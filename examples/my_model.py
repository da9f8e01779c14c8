"""Your own model in tasder: ``tasder profile|search|apply examples/my_model.py:make``.

A complete example that runs offline in a few seconds on one core: a small MLP on scikit-learn's
bundled breast-cancer data (569 real tumour measurements, 30 features, 2 classes), trained here
deterministically, then pruned to 80 % unstructured weight sparsity by magnitude (fine-tuned with
the mask held), and handed to tasder as the same record the built-in models are
(:func:`tasder.zoo.make_entry`): the model, a few calibration batches, a validation evaluator the
search decides on, and a test evaluator it reports. Copy it and swap in your network and data.

    tasder profile examples/my_model.py:make
    tasder search examples/my_model.py:make --mode W --cost edp --design ttc-vegeta-m8 -o my-config.yaml
    tasder apply examples/my_model.py:make --config my-config.yaml --design ttc-vegeta-m8

The factory takes no arguments and returns a ``tasder.zoo.ZooModel``; ``module.path:make`` works too
when the file is importable as a module.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from torch import nn

from tasder.zoo import ZooModel, make_entry

SEED = 0


class TumourMLP(nn.Module):
    """30 features → 128 → 128 → 2 classes, ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(30, 128)
        self.fc2 = nn.Linear(128, 128)
        self.fc3 = nn.Linear(128, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def _data() -> tuple[torch.Tensor, ...]:
    """A stratified 60/20/20 split, standardised with the training split's statistics."""
    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_rest, y_train, y_rest = train_test_split(x, y, test_size=0.4, random_state=SEED, stratify=y)
    x_val, x_test, y_val, y_test = train_test_split(x_rest, y_rest, test_size=0.5, random_state=SEED, stratify=y_rest)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-8
    return tuple(torch.from_numpy(((a - mean) / std).astype(np.float32)) if a.ndim == 2
                 else torch.from_numpy(a.astype(np.int64))
                 for a in (x_train, y_train, x_val, y_val, x_test, y_test))


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int,
           masks: dict[str, torch.Tensor] | None = None) -> None:
    """Full-batch gradient descent with momentum; pruned weights (``masks``) stay zero.

    Written out rather than ``torch.optim``: an optimizer's first use imports ``torch._dynamo``,
    which costs seconds — more than this whole training.
    """
    params = dict(model.named_parameters())
    velocity = {name: torch.zeros_like(p) for name, p in params.items()}
    for _ in range(steps):
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        with torch.no_grad():
            for name, p in params.items():
                assert p.grad is not None
                velocity[name].mul_(0.9).add_(p.grad)
                p.sub_(0.05 * velocity[name])
                if masks is not None and name in masks:
                    p.mul_(masks[name])


def _prune(model: nn.Module, sparsity: float) -> dict[str, torch.Tensor]:
    """Zero the smallest-|w| ``sparsity`` of all weights (one global threshold); the keep-masks."""
    weights = {n: p for n, p in model.named_parameters() if n.endswith("weight")}
    flat = torch.cat([w.detach().abs().flatten() for w in weights.values()])
    threshold = flat.kthvalue(int(sparsity * flat.numel())).values
    masks = {n: (w.detach().abs() > threshold).float() for n, w in weights.items()}
    with torch.no_grad():
        for n, w in weights.items():
            w.mul_(masks[n])
    return masks


def _accuracy(x: torch.Tensor, y: torch.Tensor) -> Callable[[nn.Module], float]:
    def evaluate(net: nn.Module) -> float:
        with torch.no_grad():
            return float((net(x).argmax(1) == y).float().mean())

    return evaluate


def make() -> ZooModel:
    """The trained, 80 %-pruned MLP with its data, as tasder's commands take it."""
    x_train, y_train, x_val, y_val, x_test, y_test = _data()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: one thread is faster, and the same on every machine
    try:
        torch.manual_seed(SEED)
        model = TumourMLP()
        _train(model, x_train, y_train, steps=150)
        masks = _prune(model, 0.8)
        _train(model, x_train, y_train, steps=60, masks=masks)
    finally:
        torch.set_num_threads(threads)
    return make_entry(
        "tumour-mlp-80", model,
        calibration=[x_train[i : i + 64] for i in range(0, 256, 64)],  # training rows: never scored
        evaluate_val=_accuracy(x_val, y_val), evaluate_test=_accuracy(x_test, y_test), metric="accuracy",
        description="MLP 30-128-128-2 on scikit-learn's breast-cancer data, 80 % unstructured weight sparsity",
    )


if __name__ == "__main__":
    entry = make()
    print(entry.name, entry.metric, entry.evaluate(entry.model), entry.metadata["evaluate_val"](entry.model))
