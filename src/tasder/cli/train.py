"""``tasder train``: N:M sparse training (SR-STE, BDWP, or dense) of a built-in model.

::

    tasder train digits-cnn --pattern 2:8 --method bdwp --epochs 20 [--seed 0] [--output ckpt.pt]
                            [--resume ckpt.pt] [--lr 3e-3] [--batch-size 64]
                            [--backward-mask independent|nested] [--json]

Trains on the built-in digits data (:mod:`tasder.zoo.digits`) and prints a summary: final test
and validation accuracy, per-layer sparsity of the weights the model computes with (``W⊙M_F``),
and the training operations of one step as a fraction of dense training, next to the ideal
``(2N/M + 1)/3``.
``--output/-o`` names the checkpoint (the command's output file; ``--out`` is its former name).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tasder.cli.common import JsonOption, emit, status, table, with_examples

__all__ = ["TRAIN_MODELS", "register", "train_cmd"]

#: Models ``tasder train`` knows.
TRAIN_MODELS: tuple[str, ...] = ("digits-cnn",)


TRAIN_HELP = with_examples(
    """Train a built-in model with N:M sparse weights (SR-STE or BDWP) or densely, and summarise.

    A progress bar shows the epochs when stderr is a terminal. With --output the checkpoint is
    written after every epoch; --resume continues a run up to --epochs.""",
    "tasder train digits-cnn --pattern 2:8 --method bdwp --epochs 20",
    "tasder train digits-cnn -p 1:4 -m srste -e 10 --seed 1 -o ckpt.pt",
    "tasder train digits-cnn --epochs 40 --resume ckpt.pt -o ckpt.pt --json",
)


def train_cmd(
    model_name: Annotated[str, typer.Argument(metavar="MODEL", help=f"Model to train: {', '.join(TRAIN_MODELS)}.")],
    pattern: Annotated[str, typer.Option("--pattern", "-p", help="N:M pattern, e.g. 2:8, 1:4, 4:8.")] = "2:8",
    method: Annotated[str, typer.Option("--method", "-m", help="bdwp, srste or dense.")] = "bdwp",
    epochs: Annotated[int, typer.Option("--epochs", "-e", help="Total epochs (a resumed run continues to it).")] = 20,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the initial weights and the batch order.")] = 0,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate (constant).")] = 3e-3,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Examples per step.")] = 64,
    backward_mask: Annotated[
        str, typer.Option("--backward-mask", help="BDWP's M_B: independent (top-N of |W| along out) or nested (⊆ M_F).")
    ] = "independent",
    decay: Annotated[float | None, typer.Option(
        "--decay", show_default=False,
        help="SR-STE decay λ on pruned weights (default: SR-STE's own, tasder.train.DEFAULT_DECAY).")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", metavar="FILE", show_default=False,
        help="Write a checkpoint to FILE after every epoch.")] = None,
    out: Annotated[Path | None, typer.Option("--out", hidden=True, show_default=False)] = None,  # former name
    resume: Annotated[Path | None, typer.Option("--resume", metavar="FILE", show_default=False,
                                                help="Continue from this checkpoint.")] = None,
    as_json: JsonOption = False,
) -> None:
    import torch

    from tasder.train import (
        DEFAULT_DECAY,
        count_training_ops,
        fit,
        parse_nm,
        plan_sparse_training,
        sparsify_for_training,
        weight_sparsity,
    )
    from tasder.train.layers import check_method

    if decay is None:
        decay = DEFAULT_DECAY
    if output is not None and out is not None and output != out:
        raise ValueError("--out is the former name of --output; give one of them")
    out = output if output is not None else out
    if model_name not in TRAIN_MODELS:
        raise ValueError(f"unknown model {model_name!r}; choose one of {', '.join(TRAIN_MODELS)}")
    check_method(method)
    if method != "dense":
        parse_nm(pattern)
    if epochs < 0:
        raise ValueError(f"--epochs must be >= 0, got {epochs}")
    from tasder.zoo.digits import DigitsCNN, load_digits_data

    data = load_digits_data()
    torch.manual_seed(seed)
    dense_model = DigitsCNN()
    plans = plan_sparse_training(dense_model, pattern, method)
    model = sparsify_for_training(dense_model, pattern, method, backward_mask=backward_mask, decay=decay)
    result = fit(model, data, epochs, lr=lr, seed=seed, batch_size=batch_size, model_name=model_name,
                 checkpoint=out, resume=resume)
    ops = count_training_ops(model, data.x_train[:batch_size])
    sparsity = weight_sparsity(model)
    label = "dense" if method == "dense" else f"{method} {pattern}"

    layers = []
    ops_by_name = {lay.name: lay for lay in ops.layers}
    for plan in plans:
        lay = ops_by_name.get(plan.name)
        layers.append({
            "layer": plan.name, "kind": plan.kind, "shape": list(plan.shape),
            "mode": label if plan.sparse else "dense", "reason": plan.reason,
            "sparsity": sparsity[plan.name],
            "ops_fraction": (lay.total / lay.dense_total) if lay and lay.dense_total else None,
        })
    doc = {
        "model": model_name, "method": method, "pattern": pattern if method != "dense" else "dense",
        "backward_mask": backward_mask if method == "bdwp" else None,
        "epochs": epochs, "start_epoch": result.start_epoch, "seed": seed,
        "test_accuracy": result.test_accuracy, "val_accuracy": result.val_accuracy,
        "ops_fraction": ops.fraction, "ideal_fraction": ops.ideal,
        "ops": {"ff": ops.ff, "bp": ops.bp, "wu": ops.wu, "total": ops.total, "dense_total": ops.dense_total},
        "layers": layers, "checkpoint": str(out) if out is not None else None,
    }
    if as_json:
        emit(None, doc, None)
        return

    def render(console: Console) -> None:
        resumed = f", resumed from epoch {result.start_epoch}" if resume is not None else ""
        console.print(f"{model_name}: {label} training, {epochs} epochs, seed {seed}{resumed}", markup=False)
        layer_table = table()
        for col, justify in (("layer", "left"), ("weight", "left"), ("mode", "left"),
                             ("zeros (W⊙M_F)", "right"), ("train ops", "right"), ("note", "left")):
            layer_table.add_column(col, justify=justify)  # type: ignore[arg-type]
        for row in layers:
            frac = row["ops_fraction"]
            layer_table.add_row(str(row["layer"]), f"{row['kind']} " + "×".join(map(str, row["shape"])),
                                str(row["mode"]), f"{100 * float(row['sparsity']):.1f}%",
                                "-" if frac is None else f"{frac:.3f}", str(row["reason"]))
        console.print(layer_table)
        summary = table()
        summary.show_header = False
        summary.add_column("what")
        summary.add_column("value", justify="right")
        acc = result.test_accuracy
        summary.add_row("test accuracy", "-" if acc is None else f"{100 * acc:.2f}%")
        if result.val_accuracy is not None:
            summary.add_row("validation accuracy", f"{100 * result.val_accuracy:.2f}%")
        summary.add_row("training ops (of dense)", f"{ops.fraction:.3f}")
        if ops.ideal is not None:
            summary.add_row("ideal (2N/M+1)/3", f"{ops.ideal:.3f}")
        summary.add_row("MACs per step FF / BP / WU", f"{ops.ff:,.0f} / {ops.bp:,.0f} / {ops.wu:,.0f}")
        console.print(summary)

    emit(render, None, None)
    if out is not None:
        status(f"wrote {out}")


def register(app: typer.Typer) -> None:
    """Add ``train`` to ``app``."""
    app.command("train", help=TRAIN_HELP)(train_cmd)
