"""The scikit-learn digits data (1,797 real 8×8 handwritten digits) and a small ReLU CNN for it.

The data ships inside scikit-learn, so nothing downloads. The split is fixed (stratified,
seeded): 60 % train, 20 % validation, 20 % test. Images are scaled to [0, 1] (the raw pixels are
0..16) and shaped (N, 1, 8, 8).

:class:`DigitsCNN` is deliberately a real convolutional network, not a toy MLP: three 3×3 conv
layers (16, 32, 32 channels) with ReLU and max-pooling, then two linear layers. Its layer names
(``conv1``, ``conv2``, ``conv3``, ``fc1``, ``fc2``) are stable; ``conv1`` is the first layer
(its reduction dim per kernel position is C=1, too small for any G:H) and ``fc2`` the classifier.

Trained weights (the ``digits-cnn`` zoo entries) come from :func:`load_digits_cnn`: the network is
trained in-process the first time, deterministically (:class:`DigitsRecipe`: fixed seed, Adam,
fixed epoch count; about 3 s on 2 cores, ≈ 98 % test accuracy), and cached (:mod:`tasder.zoo.cache`).
The sparse variants stand in for the SparseZoo models the TASD paper uses, pruned the way
SparseZoo's recipes prune: *gradual magnitude pruning* (GMP, Zhu & Gupta 2018, "To prune, or not
to prune") of the trained dense network — one *global* magnitude threshold over every conv/linear
weight (biases kept), the sparsity raised along the cubic schedule s_t = s·(1 − (1 − t/T)³) while
training goes on (masks re-applied after every optimizer step), then a fine-tune at the final
mask (:class:`PruningRecipe`). The sparsity is exact. Pruning 95 % at once and fine-tuning the
survivors (the previous recipe) left the 95 % model at 92.5 % test accuracy, six points under
the dense one; GMP loses about one (97.5 %), like SparseZoo's recovered models.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from tasder.scores import Scores

__all__ = [
    "DEFAULT_PRUNING_RECIPE",
    "DEFAULT_RECIPE",
    "DIGITS_SPARSITIES",
    "DigitsCNN",
    "DigitsData",
    "DigitsRecipe",
    "PruningRecipe",
    "correct_per_example",
    "evaluate_accuracy",
    "gradual_prune",
    "load_digits_cnn",
    "load_digits_data",
    "magnitude_prune",
    "prunable_weights",
    "train_digits_cnn",
]

#: The sparsities of the pruned zoo variants (``digits-cnn-sparse-50`` ... ``-95``).
DIGITS_SPARSITIES: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95)

# Bump when training (or pruning) code changes in a way the recipe fields do not capture: the
# cache key includes it, so old cached weights are not reused.
_TRAINING_CODE_VERSION = 2
_PRUNING_CODE_VERSION = 1


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
    return float(_correct(model, x, y, batch_size).mean()) if len(x) else 0.0


def correct_per_example(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> Scores:
    """Top-1 accuracy as :class:`tasder.scores.Scores`: 1.0/0.0 per image (what a search's paired
    confidence bound needs), a float equal to :func:`evaluate_accuracy`."""
    return Scores(_correct(model, x, y, batch_size))


@torch.no_grad()
def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
    was_training = model.training
    model.eval()
    try:
        out = [(model(x[s : s + batch_size]).argmax(dim=1) == y[s : s + batch_size]).double()
               for s in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


# ---------------------------------------------------------------------------------------------
# Deterministic training, pruning and the cached zoo models
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DigitsRecipe:
    """Everything that decides the trained weights (all of it goes into the cache key).

    The defaults train the dense model: 30 epochs of Adam (lr 3e-3, batch 64) from seed 0, on
    the training split only (validation and test stay unseen).
    """

    seed: int = 0
    epochs: int = 30
    lr: float = 3e-3
    batch_size: int = 64
    weight_decay: float = 0.0


#: The dense model's recipe.
DEFAULT_RECIPE = DigitsRecipe()


@dataclass(frozen=True)
class PruningRecipe:
    """Gradual magnitude pruning of a trained model (all of it goes into the sparse cache key).

    The sparsity ramps from 0 to the target over ``prune_epochs`` (cubic schedule, masks
    recomputed every ``update_every`` optimizer steps, global magnitude threshold), then
    ``finetune_epochs`` train at the final mask; Adam at ``lr`` throughout.
    """

    seed: int = 1
    prune_epochs: int = 30
    finetune_epochs: int = 20
    update_every: int = 10
    lr: float = 3e-3
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.prune_epochs < 1 or self.finetune_epochs < 0 or self.update_every < 1:
            raise ValueError(f"PruningRecipe needs prune_epochs ≥ 1, finetune_epochs ≥ 0, update_every ≥ 1; "
                             f"got {self}")


#: The pruning recipe of the sparse zoo variants (≈ 6 s on one core).
DEFAULT_PRUNING_RECIPE = PruningRecipe()


@contextmanager
def _single_thread() -> Iterator[None]:
    """Run torch on one thread for the duration (restored after).

    Why: this network's GEMMs are tiny, so threads only add synchronisation — on a busy 2-core
    machine 30 epochs take 32 s on 2 threads and 6 s on one — and one thread also makes the
    trained weights independent of the machine's core count.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextmanager
def _progress_bar(total: int, description: str, enabled: bool) -> Iterator[Callable[[], None]]:
    """Yield an ``advance()`` that moves a rich progress bar on stderr (only on a terminal)."""
    if not (enabled and sys.stderr.isatty()):
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with progress:
        task = progress.add_task(description, total=total)
        yield lambda: progress.update(task, advance=1)


def prunable_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """The weight (not bias) parameters of every ``Conv2d``/``Linear``, by parameter name."""
    return {
        f"{name}.weight": module.weight
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.Linear))
    }


def _run_epochs(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    recipe: DigitsRecipe,
    description: str,
    progress: bool,
    masks_at: Callable[[int], dict[str, torch.Tensor] | None] | None = None,
) -> None:
    """Adam on (x, y) for ``recipe.epochs`` epochs, deterministic per ``recipe.seed``, one thread.

    ``masks_at(step)``, when given, is called before every optimizer step; the masks it returns
    (None: keep the current ones) zero weights after each step, so pruned weights stay pruned.
    """
    torch.manual_seed(recipe.seed)
    generator = torch.Generator().manual_seed(recipe.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    params = dict(model.named_parameters())
    masks: dict[str, torch.Tensor] = {}
    step = 0
    model.train()
    with _single_thread(), _progress_bar(recipe.epochs, description, progress) as advance:
        for _ in range(recipe.epochs):
            order = torch.randperm(len(x), generator=generator)
            for start in range(0, len(x), recipe.batch_size):
                if masks_at is not None:
                    masks = masks_at(step) or masks
                idx = order[start : start + recipe.batch_size]
                optimizer.zero_grad(set_to_none=True)
                loss_fn(model(x[idx]), y[idx]).backward()
                optimizer.step()
                with torch.no_grad():
                    for name, mask in masks.items():
                        params[name].mul_(mask)
                step += 1
            advance()
    model.eval()


def train_digits_cnn(
    data: DigitsData | None = None, recipe: DigitsRecipe = DEFAULT_RECIPE, *, progress: bool = True
) -> DigitsCNN:
    """Train a fresh :class:`DigitsCNN` on the training split (no cache; see :func:`load_digits_cnn`).

    Deterministic for a given recipe on a given machine (seeded init and batch order); returned
    in eval mode. ``progress`` shows a bar on stderr when stderr is a terminal.
    """
    data = data if data is not None else load_digits_data()
    torch.manual_seed(recipe.seed)
    model = DigitsCNN()
    _run_epochs(model, data.x_train, data.y_train, recipe, "training digits-cnn", progress)
    return model


@torch.no_grad()
def magnitude_prune(model: nn.Module, sparsity: float) -> dict[str, torch.Tensor]:
    """Zero the smallest-|w| fraction ``sparsity`` of all conv/linear weights *globally*, in place.

    Global (one threshold over every layer, as SparseZoo-style GMP does) rather than per layer,
    so layers with many redundant weights lose more. Exactly ``round(sparsity·total)`` weights
    are zeroed (ties broken by position). Returns the keep-masks (float, 1 = kept) by parameter
    name, for a masked fine-tune.
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    weights = prunable_weights(model)
    flat = torch.cat([w.detach().abs().reshape(-1) for w in weights.values()])
    n_prune = round(sparsity * flat.numel())
    keep = torch.ones_like(flat)
    if n_prune:
        keep[torch.argsort(flat, stable=True)[:n_prune]] = 0.0
    masks: dict[str, torch.Tensor] = {}
    offset = 0
    for name, w in weights.items():
        mask = keep[offset : offset + w.numel()].reshape(w.shape).clone()
        offset += w.numel()
        w.mul_(mask)
        masks[name] = mask
    return masks


def gradual_prune(
    model: nn.Module,
    sparsity: float,
    data: DigitsData | None = None,
    recipe: PruningRecipe = DEFAULT_PRUNING_RECIPE,
    *,
    progress: bool = True,
) -> dict[str, torch.Tensor]:
    """Prune ``model`` in place to ``sparsity`` by GMP (see the module doc); returns the final masks.

    Deterministic for a given recipe (seeded batch order, one torch thread).
    """
    if not 0.0 < sparsity < 1.0:
        raise ValueError(f"sparsity must be in (0, 1), got {sparsity!r}")
    data = data if data is not None else load_digits_data()
    ramp_steps = recipe.prune_epochs * -(-len(data.x_train) // recipe.batch_size)

    def masks_at(step: int) -> dict[str, torch.Tensor] | None:
        if step > ramp_steps or (step % recipe.update_every and step != ramp_steps):
            return None
        # Pruned weights are exact zeros, the smallest magnitudes: a higher target keeps them pruned.
        return magnitude_prune(model, sparsity * (1.0 - (1.0 - step / ramp_steps) ** 3))

    schedule = DigitsRecipe(seed=recipe.seed, epochs=recipe.prune_epochs + recipe.finetune_epochs, lr=recipe.lr,
                            batch_size=recipe.batch_size)
    _run_epochs(model, data.x_train, data.y_train, schedule, f"pruning digits-cnn to {sparsity:.0%}", progress,
                masks_at)
    return magnitude_prune(model, sparsity)  # exact: the ramp ends at the target; this makes it certain


def load_digits_cnn(
    sparsity: float | None = None,
    *,
    recipe: DigitsRecipe = DEFAULT_RECIPE,
    pruning: PruningRecipe = DEFAULT_PRUNING_RECIPE,
    progress: bool = True,
) -> DigitsCNN:
    """The trained :class:`DigitsCNN` (dense, or pruned to ``sparsity``), in eval mode, cached.

    The first call trains (and, for a sparse model, prunes the cached dense one by GMP); the
    result is cached under the recipes' key, so later calls only read a file.
    """
    from tasder.zoo.cache import cached_state_dict

    dense_key = {"model": "digits-cnn", "version": _TRAINING_CODE_VERSION, "recipe": asdict(recipe)}

    def check(state: dict[str, torch.Tensor]) -> None:
        DigitsCNN().load_state_dict(state)  # raises on missing/extra keys or wrong shapes

    def build_dense() -> dict[str, torch.Tensor]:
        return train_digits_cnn(recipe=recipe, progress=progress).state_dict()

    state = cached_state_dict("digits-cnn", dense_key, build_dense, check)
    if sparsity is not None:
        if not 0.0 < sparsity < 1.0:
            raise ValueError(f"sparsity must be in (0, 1), got {sparsity!r}")
        dense_state = state
        sparse_key = {**dense_key, "sparsity": sparsity, "pruning_version": _PRUNING_CODE_VERSION,
                      "pruning": asdict(pruning)}

        def build_sparse() -> dict[str, torch.Tensor]:
            model = DigitsCNN()
            model.load_state_dict(dense_state)
            gradual_prune(model, sparsity, recipe=pruning, progress=progress)
            return model.state_dict()

        tag = f"digits-cnn-sparse-{round(sparsity * 100)}"
        state = cached_state_dict(tag, sparse_key, build_sparse, check)
    model = DigitsCNN()
    model.load_state_dict(state)
    return model.eval()
