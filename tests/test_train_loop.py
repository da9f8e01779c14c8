"""fit(): determinism, atomic checkpoints, exact resume, refused checkpoints; `tasder train`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tasder.cli.app import run
from tasder.train import CHECKPOINT_FORMAT, fit, load_checkpoint, sparsify_for_training
from tasder.zoo.digits import DigitsCNN, load_digits_data


@dataclass
class Tiny:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor


@pytest.fixture(scope="module")
def tiny() -> Tiny:
    d = load_digits_data()
    return Tiny(d.x_train[:96], d.y_train[:96], d.x_val[:40], d.y_val[:40])


def _model(method: str = "bdwp", pattern: str = "2:8", seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return sparsify_for_training(DigitsCNN(), pattern, method)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_fit_is_deterministic_and_learns(tiny: Tiny) -> None:
    a, b = _model(), _model()
    ra = fit(a, tiny, epochs=2, seed=3, batch_size=32)
    fit(b, tiny, epochs=2, seed=3, batch_size=32)
    assert _same_weights(a, b)
    assert ra.epochs_run == 2 and [h["epoch"] for h in ra.history] == [1, 2]
    assert ra.history[1]["loss"] < ra.history[0]["loss"]
    assert ra.val_accuracy is not None and ra.test_accuracy is None  # Tiny has no test split
    c = _model()
    fit(c, tiny, epochs=2, seed=4, batch_size=32)
    assert not _same_weights(a, c)  # the seed changes the batch order


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tiny: Tiny, tmp_path: Path, optimizer: str) -> None:
    full = _model()
    fit(full, tiny, epochs=3, seed=1, batch_size=32, optimizer=optimizer, model_name="m")
    ckpt = tmp_path / "run.pt"
    first = _model()
    fit(first, tiny, epochs=1, seed=1, batch_size=32, optimizer=optimizer, model_name="m", checkpoint=ckpt)
    state = load_checkpoint(ckpt)
    assert (state["epoch"], state["method"], state["pattern"], state["model_name"]) == (1, "bdwp", "2:8", "m")
    assert state["format"] == CHECKPOINT_FORMAT and "optimizer_state" in state
    resumed = _model(seed=99)  # different init: everything must come from the checkpoint
    result = fit(resumed, tiny, epochs=3, seed=1, batch_size=32, optimizer=optimizer, model_name="m",
                 resume=ckpt, checkpoint=ckpt)
    assert result.start_epoch == 1 and result.epochs_run == 2
    assert _same_weights(resumed, full)
    assert load_checkpoint(ckpt)["epoch"] == 3
    assert not list(tmp_path.glob(".*.tmp"))  # no temp files left behind


@pytest.mark.parametrize(("method", "pattern", "name", "what"), [
    ("srste", "2:8", "m", "method 'bdwp'"),
    ("bdwp", "1:4", "m", "pattern '2:8'"),
    ("bdwp", "2:8", "other", "model 'm'"),
])
def test_resume_from_another_run_is_refused_and_nothing_is_written(
    tiny: Tiny, tmp_path: Path, method: str, pattern: str, name: str, what: str
) -> None:
    ckpt = tmp_path / "run.pt"
    fit(_model(), tiny, epochs=1, seed=0, batch_size=48, model_name="m", checkpoint=ckpt)
    before = ckpt.read_bytes()
    with pytest.raises(ValueError, match=what):
        fit(_model(method, pattern), tiny, epochs=2, batch_size=48, model_name=name, resume=ckpt, checkpoint=ckpt)
    assert ckpt.read_bytes() == before


def test_bad_checkpoints_are_clear_errors(tiny: Tiny, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="is not a readable checkpoint"):
        fit(_model(), tiny, epochs=1, resume=garbage)
    foreign = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, foreign)
    with pytest.raises(ValueError, match="is not a tasder training checkpoint"):
        fit(_model(), tiny, epochs=1, resume=foreign)
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        fit(_model(), tiny, epochs=1, resume=tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fit(_model(), tiny, epochs=1, checkpoint=tmp_path / "nodir" / "x.pt")
    with pytest.raises(ValueError, match="unknown optimizer"):
        fit(_model(), tiny, epochs=1, optimizer="lbfgs")


def test_amp_runs_and_restores_the_grad_scale(tiny: Tiny) -> None:
    model = _model()
    result = fit(model, tiny, epochs=1, batch_size=48, amp=True)
    assert len(result.history) == 1 and model.fc1.grad_scale == 1.0


def test_cli_train_summary_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tmp_path / "c.pt"
    assert run(["train", "digits-cnn", "--pattern", "2:8", "--method", "bdwp", "--epochs", "1",
                "--out", str(ckpt)]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "training ops (of dense)" in out and "75.0%" in out
    assert "first layer (keep_dense)" in out and "classifier (keep_dense)" in out
    assert load_checkpoint(ckpt)["model_name"] == "digits-cnn"
    assert run(["train", "digits-cnn", "--method", "bdwp", "--epochs", "2", "--resume", str(ckpt), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["start_epoch"] == 1 and doc["ideal_fraction"] == pytest.approx(0.5)
    assert 0.5 < doc["ops_fraction"] < 0.52
    assert {row["layer"]: row["sparsity"] for row in doc["layers"]}["fc1"] == 0.75


@pytest.mark.parametrize(("args", "message"), [
    (["train", "resnet-9000"], "unknown model 'resnet-9000'"),
    (["train", "digits-cnn", "--method", "magic"], "unknown training method 'magic'"),
    (["train", "digits-cnn", "--pattern", "2:8+1:8"], "bad N:M pattern"),
])
def test_cli_train_bad_input_exits_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(args) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


def test_cli_train_refuses_a_mismatched_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tmp_path / "c.pt"
    fit(_model("srste"), Tiny(*(t[:32] for t in _tiny_tensors())), epochs=1, model_name="digits-cnn",
        checkpoint=ckpt)
    before = ckpt.read_bytes()
    assert run(["train", "digits-cnn", "--method", "bdwp", "--epochs", "2", "--resume", str(ckpt),
                "--out", str(ckpt)]) == 2
    assert "method 'srste'" in capsys.readouterr().err and ckpt.read_bytes() == before


def _tiny_tensors() -> tuple[torch.Tensor, ...]:
    d = load_digits_data()
    return d.x_train, d.y_train, d.x_val, d.y_val
