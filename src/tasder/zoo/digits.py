"""The scikit-learn digits data (1,797 real 8×8 handwritten digits) and a small ReLU CNN for it.

The data ships inside scikit-learn, so nothing downloads. The split is fixed (stratified,
seeded): 60 % train, 20 % validation, 20 % test. Images are scaled to [0, 1] (the raw pixels are
0..16) and shaped (N, 1, 8, 8). The seed-0 split ships with the weights (``digits-data.safetensors``,
the raw 0..16 pixels in split order): the models were trained and are scored on exactly it,
whatever scikit-learn version is installed, and loading it does not import scikit-learn.

:class:`DigitsCNN` is deliberately a real convolutional network, not a toy MLP: three 3×3 conv
layers (16, 32, 32 channels) with ReLU and max-pooling, then two linear layers. Its layer names
(``conv1``, ``conv2``, ``conv3``, ``fc1``, ``fc2``) are stable; ``conv1`` is the first layer
(its reduction dim per kernel position is C=1, too small for any G:H) and ``fc2`` the classifier.

Trained weights (the ``digits-cnn`` zoo entries) come from :func:`load_digits_cnn`. The default
recipes' weights **ship inside the package** (``tasder/zoo/weights/*.safetensors``, with the digits
split itself, each file's SHA-256 checked on load; see :mod:`tasder.zoo._shipped`), so every
install loads the same bytes and gets the same numbers: trained on another CPU the same recipe
gives other weights (float arithmetic differs with the vector width), and every number downstream
moved with them. The recipe stays here and rebuilds them::

    python -m tasder.zoo.digits --rebuild     # retrain all five, rewrite the files and SHA256SUMS
    python -m tasder.zoo.digits --check       # retrain in a temporary folder; compare with the shipped bytes

Both run the recipe on torch's AVX2 kernels (:data:`RECIPE_KERNELS`, set for a child process), the
kernel set the shipped files were made with, so any x86-64 CPU with AVX2 — AVX-512 ones included —
makes the same bytes (``--native-kernels`` uses this CPU's own set instead).

A shipped file that is missing or damaged is never trusted: the model is then trained from its
recipe on this machine (with a warning saying the numbers may differ from the README's) and kept
in the user cache — the package keeps working where package data was stripped. Any other recipe
(:class:`DigitsRecipe`: fixed seed, Adam, fixed epoch count; about 3 s on one core, ≈ 98 % test
accuracy) is trained in-process on first use, deterministically, and cached (:mod:`tasder.zoo.cache`).
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

import json
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from tasder._threads import single_thread
from tasder.scores import Scores

__all__ = [
    "DEFAULT_PRUNING_RECIPE",
    "DEFAULT_RECIPE",
    "DIGITS_SPARSITIES",
    "SHIPPED_MODELS",
    "DigitsCNN",
    "DigitsData",
    "DigitsRecipe",
    "PruningRecipe",
    "correct_per_example",
    "evaluate_accuracy",
    "gradual_prune",
    "load_digits_cnn",
    "load_digits_cnn_with_source",
    "load_digits_data",
    "magnitude_prune",
    "prunable_weights",
    "rebuild_shipped",
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


#: The shipped split's file (raw 0..16 pixels as uint8 and labels, per split, in split order).
DATA_FILE = "digits-data.safetensors"
_SPLITS = ("train", "val", "test")


def _sklearn_split(seed: int) -> tuple[np.ndarray, ...]:
    """(raw images uint8 (N, 8, 8), labels) for train, val, test: scikit-learn's split for ``seed``."""
    from sklearn.datasets import load_digits  # scikit-learn is only needed to build the split
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    raw = digits.images.astype(np.uint8)  # integers 0..16: exact
    if not np.array_equal(raw, digits.images):
        raise ValueError("scikit-learn's digits images are not integers 0..16 (an unexpected scikit-learn change)")
    y = digits.target.astype(np.uint8)
    x_train, x_rest, y_train, y_rest = train_test_split(raw, y, test_size=0.4, random_state=seed, stratify=y)
    x_val, x_test, y_val, y_test = train_test_split(x_rest, y_rest, test_size=0.5, random_state=seed, stratify=y_rest)
    return x_train, y_train, x_val, y_val, x_test, y_test


def _as_data(parts: Sequence[np.ndarray]) -> DigitsData:
    """Raw uint8 images (N, 8, 8) and labels → :class:`DigitsData` (float32 in [0, 1], (N, 1, 8, 8); int64).

    The images get the strides (64, 1, 8, 1) that NumPy's indexing gave the shipped models'
    training data: the convolution chooses its memory format (and kernel) by the input's strides,
    and for a size-1 channel dim several strides describe the same contiguous tensor — the same
    values with strides (64, 64, 8, 1) train other weights and round logits differently.
    """
    out: list[torch.Tensor] = []
    for i, a in enumerate(parts):
        if i % 2:
            out.append(torch.from_numpy(a.astype(np.int64)))
            continue
        x = torch.empty_strided((len(a), 1, 8, 8), (64, 1, 8, 1), dtype=torch.float32)
        x.copy_(torch.from_numpy(a.astype(np.float32) / 16.0)[:, None])
        out.append(x)
    return DigitsData(*out)


def _shipped_split() -> list[torch.Tensor]:
    from tasder.zoo._shipped import ShippedFileError, read_shipped

    tensors, _ = read_shipped(DATA_FILE)
    try:
        parts = [tensors[f"{kind}_{split}"] for split in _SPLITS for kind in ("images", "labels")]
    except KeyError as exc:
        raise ShippedFileError(f"{DATA_FILE}: no tensor {exc}") from None
    if any(t.dtype != torch.uint8 for t in parts) or any(t.dim() != 3 or t.shape[1:] != (8, 8) for t in parts[::2]):
        raise ShippedFileError(f"{DATA_FILE}: not uint8 (N, 8, 8) images and uint8 labels")
    return parts


def load_digits_data(seed: int = 0, *, source: Literal["auto", "sklearn"] = "auto") -> DigitsData:
    """The digits data split 60/20/20 (stratified; ``seed`` fixes the split).

    ``source="auto"``: the seed-0 split is read from the package (``digits-data.safetensors``,
    verified; the split the shipped models were trained and are scored on); other seeds, or a
    shipped file that is missing or damaged (a warning says so), come from scikit-learn.
    ``"sklearn"``: always scikit-learn's ``train_test_split`` (what the shipped file was made by).
    """
    if source not in ("auto", "sklearn"):
        raise ValueError(f"source must be 'auto' or 'sklearn'; got {source!r}")
    if source == "auto" and seed == 0:
        from tasder.zoo._shipped import ShippedFileError

        try:
            return _as_data([t.numpy() for t in _shipped_split()])
        except ShippedFileError as exc:
            warnings.warn(f"the shipped digits split cannot be used ({exc}); building it with scikit-learn",
                          RuntimeWarning, stacklevel=2)
    return _as_data(_sklearn_split(seed))


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
    """Top-1 accuracy of ``model`` on ``(x, y)`` in eval mode (the mode is restored after).

    Runs on one torch thread: batches of 8×8 images are too small for threads to help, and a
    fixed thread count keeps every reduction in one order on every machine.
    """
    return float(_correct(model, x, y, batch_size).mean()) if len(x) else 0.0


def correct_per_example(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> Scores:
    """Top-1 accuracy as :class:`tasder.scores.Scores`: 1.0/0.0 per image (what a search's paired
    confidence bound needs), a float equal to :func:`evaluate_accuracy` (one torch thread too)."""
    return Scores(_correct(model, x, y, batch_size))


@torch.no_grad()
def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
    was_training = model.training
    model.eval()
    try:
        with single_thread():
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

    Why one thread: this network's GEMMs are tiny, so threads only add synchronisation — on a busy
    2-core machine 30 epochs take 32 s on 2 threads and 6 s on one — and one thread also makes the
    trained weights independent of the machine's core count (not of its vector width: that is why
    the default recipes' weights ship).

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
    with single_thread(), _progress_bar(recipe.epochs, description, progress) as advance:
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


#: The zoo's digits models whose default-recipe weights ship (name → sparsity; None = dense).
SHIPPED_MODELS: dict[str, float | None] = {"digits-cnn": None,
                                           **{f"digits-cnn-sparse-{round(100 * s)}": s for s in DIGITS_SPARSITIES}}


def _model_tag(sparsity: float | None) -> str:
    return "digits-cnn" if sparsity is None else f"digits-cnn-sparse-{round(sparsity * 100)}"


def _recipe_keys(sparsity: float | None, recipe: DigitsRecipe, pruning: PruningRecipe) -> dict[str, Any]:
    """What decides the weights: the dense key, and for a sparse model the pruning on top of it."""
    dense_key: dict[str, Any] = {"model": "digits-cnn", "version": _TRAINING_CODE_VERSION, "recipe": asdict(recipe)}
    if sparsity is None:
        return dense_key
    return {**dense_key, "sparsity": sparsity, "pruning_version": _PRUNING_CODE_VERSION, "pruning": asdict(pruning)}


def _key_text(key: dict[str, Any]) -> str:
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


def _check_state(state: dict[str, torch.Tensor]) -> None:
    DigitsCNN().load_state_dict(state)  # raises on missing/extra keys or wrong shapes
    for name, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"tensor {name!r} holds NaN/Inf values")


def _shipped_state(tag: str, key: dict[str, Any]) -> dict[str, torch.Tensor] | None:
    """The shipped weights of ``tag`` when ``key`` is the recipe they were made by, else None.

    A shipped file that cannot be trusted (missing, hash mismatch, unparsable, made by another
    recipe than the code's default) gives None with a warning: the caller trains instead.
    """
    from tasder.zoo._shipped import ShippedFileError, read_shipped

    sparsity = SHIPPED_MODELS.get(tag, -1.0)
    if sparsity == -1.0 or key != _recipe_keys(sparsity, DEFAULT_RECIPE, DEFAULT_PRUNING_RECIPE):
        return None  # another recipe: nothing ships for it
    try:
        state, meta = read_shipped(f"{tag}.safetensors")
        if meta.get("recipe_key") != _key_text(key):
            raise ShippedFileError(f"{tag}.safetensors was made by another recipe than this tasder's default "
                                   f"(rebuild with python -m tasder.zoo.digits --rebuild)")
        _check_state(state)
    except (ShippedFileError, RuntimeError, ValueError) as exc:
        warnings.warn(f"the shipped weights of {tag} cannot be used ({' '.join(str(exc).split())[:200]}); training "
                      f"them from the recipe on this machine instead, so the numbers may differ from the README's",
                      RuntimeWarning, stacklevel=3)
        return None
    return state


def load_digits_cnn(
    sparsity: float | None = None,
    *,
    recipe: DigitsRecipe = DEFAULT_RECIPE,
    pruning: PruningRecipe = DEFAULT_PRUNING_RECIPE,
    progress: bool = True,
) -> DigitsCNN:
    """The trained :class:`DigitsCNN` (dense, or pruned to ``sparsity``), in eval mode.

    The default recipes' weights (dense, and 50/80/90/95 % sparse) are read from the package
    (see the module doc). Any other recipe is trained on the first call (a sparse model: the
    dense one of ``recipe``, pruned by GMP) and cached under the recipes' key, so later calls only
    read a file.
    """
    return load_digits_cnn_with_source(sparsity, recipe=recipe, pruning=pruning, progress=progress)[0]


def load_digits_cnn_with_source(
    sparsity: float | None = None,
    *,
    recipe: DigitsRecipe = DEFAULT_RECIPE,
    pruning: PruningRecipe = DEFAULT_PRUNING_RECIPE,
    progress: bool = True,
) -> tuple[DigitsCNN, str]:
    """:func:`load_digits_cnn` and where the weights came from: ``"shipped <file> sha256 <12 hex>"``
    or ``"trained on this machine (recipe <key>)"`` (what the zoo records as provenance)."""
    from tasder.zoo._shipped import shipped_sums
    from tasder.zoo.cache import cached_state_dict, recipe_key

    if sparsity is not None and not 0.0 < sparsity < 1.0:
        raise ValueError(f"sparsity must be in (0, 1), got {sparsity!r}")
    key = _recipe_keys(sparsity, recipe, pruning)
    tag = _model_tag(sparsity)
    state = _shipped_state(tag, key)
    if state is not None:
        source = f"shipped {tag}.safetensors sha256 {shipped_sums().get(f'{tag}.safetensors', '?')[:12]}"
    else:
        source = f"trained on this machine (recipe {recipe_key(key)})"
        dense_key = _recipe_keys(None, recipe, pruning)
        dense_state = _shipped_state("digits-cnn", dense_key) if sparsity is not None else None

        def build_dense() -> dict[str, torch.Tensor]:
            return train_digits_cnn(recipe=recipe, progress=progress).state_dict()

        if dense_state is None:
            dense_state = cached_state_dict("digits-cnn", dense_key, build_dense, _check_state)
        state = dense_state
        if sparsity is not None:
            def build_sparse() -> dict[str, torch.Tensor]:
                model = DigitsCNN()
                model.load_state_dict(dense_state)
                gradual_prune(model, sparsity, recipe=pruning, progress=progress)
                return model.state_dict()

            state = cached_state_dict(tag, key, build_sparse, _check_state)
    model = DigitsCNN()
    model.load_state_dict(state)
    return model.eval(), source


# ---------------------------------------------------------------------------------------------
# Rebuilding the shipped files: python -m tasder.zoo.digits --rebuild | --check
# ---------------------------------------------------------------------------------------------


def rebuild_shipped(folder: Path | None = None, *, progress: bool = False,
                    log: Callable[[str], None] | None = None) -> dict[str, str]:
    """Make every shipped digits file from scratch into ``folder`` (default: the package's); return
    file name → SHA-256, also written as ``folder/SHA256SUMS``.

    The split comes from scikit-learn (:func:`load_digits_data` with ``source="sklearn"``), the dense
    model from :data:`DEFAULT_RECIPE`, each sparse one by :func:`gradual_prune` of that dense model
    with :data:`DEFAULT_PRUNING_RECIPE` — nothing shipped is read. About 30 s on one core.
    """
    from tasder.zoo import _shipped
    from tasder.zoo._shipped import write_shipped, write_sums

    out = folder if folder is not None else _shipped.WEIGHTS_DIR
    say = log or (lambda _msg: None)
    raw = _sklearn_split(0)
    sums: dict[str, str] = {}
    split_meta = {"source": "scikit-learn load_digits (UCI optical recognition of handwritten digits, CC BY 4.0)",
                  "split": "train_test_split, stratified, random_state=0: 60 % train, then 50/50 val/test",
                  "pixels": "raw 0..16; the models see pixels / 16 as float32, shape (N, 1, 8, 8)"}
    tensors = {f"{kind}_{split}": torch.from_numpy(np.ascontiguousarray(raw[2 * i + j]))
               for i, split in enumerate(_SPLITS) for j, kind in enumerate(("images", "labels"))}
    sums[DATA_FILE] = write_shipped(DATA_FILE, tensors, split_meta, out)
    data = _as_data(raw)
    say(f"{DATA_FILE}: {len(data.x_train)}/{len(data.x_val)}/{len(data.x_test)} images")
    dense = train_digits_cnn(data, DEFAULT_RECIPE, progress=progress)
    for tag, sparsity in SHIPPED_MODELS.items():
        model = dense
        if sparsity is not None:
            model = DigitsCNN()
            model.load_state_dict(dense.state_dict())
            gradual_prune(model, sparsity, data, DEFAULT_PRUNING_RECIPE, progress=progress)
            model.eval()
        key = _recipe_keys(sparsity, DEFAULT_RECIPE, DEFAULT_PRUNING_RECIPE)
        name = f"{tag}.safetensors"
        sums[name] = write_shipped(name, model.state_dict(), {"model": tag, "recipe_key": _key_text(key)}, out)
        say(f"{name}: test accuracy {evaluate_accuracy(model, data.x_test, data.y_test):.4f}, "
            f"sha256 {sums[name][:16]}…")
    write_sums(sums, out)
    return sums


#: The torch/oneDNN kernel set the shipped files were made with. A float32 sum's rounding depends on
#: the vector width of the kernel that computes it (AVX-512, AVX2, plain), so the recipe gives other
#: bytes on another kernel set; pinned to AVX2, every x86-64 CPU with AVX2 reproduces the shipped
#: files (checked on an AVX-512 machine). Both settings are read when torch first dispatches, hence
#: a child process.
RECIPE_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tasder.zoo.digits --rebuild | --check [--out DIR]``: exit 0 when done / identical."""
    import argparse
    import tempfile

    from tasder.zoo import _shipped
    from tasder.zoo._shipped import shipped_sums

    parser = argparse.ArgumentParser(prog="python -m tasder.zoo.digits",
                                     description="Rebuild the shipped digits split and weights from their recipes.")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--rebuild", action="store_true", help="retrain and rewrite the shipped files and SHA256SUMS")
    what.add_argument("--check", action="store_true",
                      help="retrain into a temporary folder and compare with the shipped files (exit 1 if any differ)")
    parser.add_argument("--out", type=Path, default=None, help="write here instead of the package (with --rebuild)")
    parser.add_argument("--native-kernels", action="store_true",
                        help="train on this CPU's own torch kernels, not the AVX2 ones the shipped files were made "
                             "with (other bytes wherever those differ)")
    args = parser.parse_args(argv)
    if not args.native_kernels and any(os.environ.get(k) != v for k, v in RECIPE_KERNELS.items()):
        import subprocess

        given = list(sys.argv[1:] if argv is None else argv)
        return subprocess.call([sys.executable, "-m", "tasder.zoo.digits", *given],
                               env={**os.environ, **RECIPE_KERNELS})

    def log(msg: str) -> None:
        print(msg, file=sys.stderr)

    if args.rebuild:
        target = args.out if args.out is not None else _shipped.WEIGHTS_DIR
        sums = rebuild_shipped(target, log=log)
        print(f"wrote {len(sums)} files and {target / 'SHA256SUMS'}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        built = rebuild_shipped(Path(tmp), log=log)
    shipped = shipped_sums()
    differ = [n for n in built if shipped.get(n) != built[n]]
    for name in built:
        print(f"{'identical' if name not in differ else 'DIFFERS  '}  {name}  {built[name][:16]}… "
              f"(shipped {shipped.get(name, 'missing')[:16]}…)")
    return 1 if differ else 0


if __name__ == "__main__":  # pragma: no cover - exercised through python -m
    raise SystemExit(main())
