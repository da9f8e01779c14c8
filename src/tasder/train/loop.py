"""A small, deterministic training loop with atomic checkpoints and exact resume.

Determinism without saving RNG state: at the start of epoch ``e`` the loop seeds torch with
``seed·1000 + e`` (dropout etc.) and draws the batch order from its own generator seeded the same
way, so an epoch's randomness depends only on ``(seed, e)``. A run resumed after epoch ``k``
therefore replays epochs ``k+1…`` exactly as an uninterrupted run would (tested bit for bit).
The learning rate is constant (Adam or SGD with momentum), so nothing depends on the total epoch count.

Checkpoints (``torch.save`` to a temporary file in the target's directory, then ``os.replace``)
are written after every epoch and hold the model and optimizer state, the epoch count, method,
pattern, model name and seed. Resuming from a checkpoint made for another model, method or
pattern is refused before anything is trained or written.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from tasder.io import atomic_open
from tasder.train.layers import NMLayer, set_grad_scale

__all__ = ["CHECKPOINT_FORMAT", "FitResult", "TrainData", "fit", "load_checkpoint", "save_checkpoint"]

#: Marker stored in every checkpoint, so other ``.pt`` files are recognised as not ours.
CHECKPOINT_FORMAT = "tasder-train-checkpoint/1"


class TrainData(Protocol):
    """What :func:`fit` needs: training tensors, and optionally validation/test tensors."""

    x_train: torch.Tensor
    y_train: torch.Tensor


@dataclass
class FitResult:
    """What :func:`fit` did: per-epoch records and the final accuracies (None without data)."""

    epochs_run: int
    start_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)
    val_accuracy: float | None = None
    test_accuracy: float | None = None


def _describe_model(model: nn.Module) -> tuple[str, str]:
    """The (method, pattern) of ``model``'s N:M layers: ("dense", "dense") when it has none."""
    found = {(m.method, m.pattern) for m in model.modules() if isinstance(m, NMLayer) and m.method != "dense"}
    if not found:
        return "dense", "dense"
    if len(found) > 1:
        raise ValueError(f"model mixes N:M settings {sorted(found)}; fit() needs one method and pattern")
    return found.pop()


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """``torch.save(state)`` atomically: to a temp file next to ``path``, then ``os.replace``."""
    p = Path(path)
    with atomic_open(p) as fh:
        torch.save(state, fh)
    return p


_REQUIRED = ("model_state", "optimizer_state", "epoch", "method", "pattern", "model_name")


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`fit`; a missing, damaged or foreign file is a clear error."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such checkpoint: {p}")
    if p.is_dir():
        raise ValueError(f"checkpoint {p} is a directory, not a file")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError... on bad files
        first = " ".join(str(exc).split())[:160]
        raise ValueError(f"{p} is not a readable checkpoint: {first}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{p} is not a tasder training checkpoint (no {CHECKPOINT_FORMAT!r} marker)")
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        raise ValueError(f"checkpoint {p} lacks {', '.join(missing)}")
    return state


def _progress_bar(enabled: bool | None) -> Any:
    """A rich progress bar on stderr, or a no-op when stderr is not a terminal (logs, pipes)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True, highlight=False, emoji=False)
    show = console.is_terminal if enabled is None else enabled and console.is_terminal
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[acc]:.3f}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not show,
    )


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    was_training = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            correct += int((model(x[start : start + batch_size]).argmax(1) == y[start : start + batch_size]).sum())
    model.train(was_training)
    return correct / len(x) if len(x) else 0.0


def fit(
    model: nn.Module,
    data: TrainData,
    epochs: int,
    lr: float = 3e-3,
    seed: int = 0,
    batch_size: int = 64,
    *,
    optimizer: str = "adam",
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    model_name: str = "model",
    checkpoint: str | os.PathLike[str] | None = None,
    resume: str | os.PathLike[str] | None = None,
    amp: bool = False,
    progress: bool | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> FitResult:
    """Train ``model`` in place on ``data.x_train/y_train`` for ``epochs`` epochs in total.

    ``optimizer``: ``"adam"`` (default: it copes with the smaller activations of a network whose
    layers keep only N/M of their weights and no normalisation) or ``"sgd"`` (with ``momentum``);
    ``lr`` and ``weight_decay`` apply to either. Cross-entropy loss by default, batches of
    ``batch_size`` in an order fixed by ``seed`` and the epoch. After each epoch, accuracy on
    ``data.x_val`` (if present) is recorded and, with ``checkpoint``, a checkpoint is written.

    ``resume``: a checkpoint of the same ``model_name``, method and pattern; training continues
    from its epoch to ``epochs`` and ends with the same weights as an uninterrupted run.

    ``amp``: autocast (bf16 on CPU, fp16 on CUDA) with a ``torch.amp.GradScaler``; the N:M layers
    are told the scaler's scale before each backward (:func:`tasder.train.set_grad_scale`) so the
    SR-STE decay is exactly ``λ(1−M_F)⊙W`` after ``unscale_``.

    ``progress``: show a rich bar on stderr (None: only when stderr is a terminal).
    """
    if not (isinstance(epochs, int) and epochs >= 0):
        raise ValueError(f"epochs must be an integer >= 0, got {epochs!r}")
    if not (isinstance(batch_size, int) and batch_size > 0):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    method, pattern = _describe_model(model)
    x, y = data.x_train, data.y_train
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"training data must be non-empty with one label per example ({len(x)} vs {len(y)})")
    if optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose adam or sgd")
    loss_fn = loss_fn or nn.functional.cross_entropy

    if checkpoint is not None:
        parent = Path(checkpoint).parent
        if str(parent) and not parent.is_dir():
            raise FileNotFoundError(f"cannot write checkpoint {checkpoint}: directory {parent} does not exist")
    start = 0
    if resume is not None:
        state = load_checkpoint(resume)
        theirs = (state["model_name"], state["method"], state["pattern"])
        if theirs != (model_name, method, pattern):
            raise ValueError(
                f"checkpoint {resume} is for model {theirs[0]!r}, method {theirs[1]!r}, pattern {theirs[2]!r}; "
                f"this run is model {model_name!r}, method {method!r}, pattern {pattern!r}"
            )
        try:
            model.load_state_dict(state["model_state"])
            opt.load_state_dict(state["optimizer_state"])
        except (RuntimeError, ValueError, KeyError) as exc:
            detail = " ".join(str(exc).split())[:200]
            raise ValueError(f"checkpoint {resume} does not fit this model: {detail}") from None
        start = int(state["epoch"])

    device = next(model.parameters()).device
    device_type = device.type
    scaler = torch.amp.GradScaler(device_type) if amp else None
    amp_dtype = torch.float16 if device_type == "cuda" else torch.bfloat16
    result = FitResult(epochs_run=0, start_epoch=start)
    steps_per_epoch = math.ceil(len(x) / batch_size)
    model.train()
    with _progress_bar(progress) as bar:
        task = bar.add_task(f"training {model_name} ({method} {pattern})",
                            total=max(0, epochs - start) * steps_per_epoch, loss=math.nan, acc=math.nan)
        for epoch in range(start, epochs):
            torch.manual_seed(seed * 1000 + epoch)
            order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed * 1000 + epoch))
            total_loss, correct = 0.0, 0
            for i in range(0, len(x), batch_size):
                idx = order[i : i + batch_size]
                xb, yb = x[idx].to(device), y[idx].to(device)
                opt.zero_grad(set_to_none=True)
                with torch.autocast(device_type, dtype=amp_dtype, enabled=amp):
                    logits = model(xb)
                    loss = loss_fn(logits.float(), yb)
                if scaler is not None:
                    set_grad_scale(model, scaler.get_scale())
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                else:
                    loss.backward()
                    opt.step()
                total_loss += float(loss.detach()) * len(idx)
                correct += int((logits.argmax(1) == yb).sum())
                bar.update(task, advance=1, loss=float(loss.detach()), acc=correct / min(i + batch_size, len(x)))
            record = {"epoch": epoch + 1, "loss": total_loss / len(x), "train_accuracy": correct / len(x)}
            if getattr(data, "x_val", None) is not None:
                record["val_accuracy"] = _accuracy(model, data.x_val.to(device), data.y_val.to(device))
            result.history.append(record)
            result.epochs_run += 1
            if checkpoint is not None:
                save_checkpoint(checkpoint, {
                    "format": CHECKPOINT_FORMAT,
                    "model_state": model.state_dict(),
                    "optimizer_state": opt.state_dict(),
                    "epoch": epoch + 1,
                    "method": method,
                    "pattern": pattern,
                    "model_name": model_name,
                    "seed": seed,
                })
    if scaler is not None:
        set_grad_scale(model, 1.0)
    if getattr(data, "x_val", None) is not None:
        result.val_accuracy = _accuracy(model, data.x_val.to(device), data.y_val.to(device))
    if getattr(data, "x_test", None) is not None:
        result.test_accuracy = _accuracy(model, data.x_test.to(device), data.y_test.to(device))
    return result
