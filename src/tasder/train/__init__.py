"""N:M sparse training: SR-STE and BDWP (docs/design.md §3.5).

>>> from tasder.train import sparsify_for_training, fit, count_training_ops
>>> from tasder.zoo.digits import DigitsCNN, load_digits_data
>>> model = sparsify_for_training(DigitsCNN(), "2:8", "bdwp")  # conv1 and fc2 stay dense
>>> result = fit(model, load_digits_data(), epochs=1)  # doctest: +SKIP

* :class:`NMLinear`, :class:`NMConv2d` — drop-in layers (``pattern``, ``method``);
* :func:`sparsify_for_training` / :func:`to_dense_layers` — swap them in and back out;
* :func:`count_training_ops` — FF/BP/WU MACs per step and the fraction of dense training;
* :func:`fit` — deterministic loop with atomic checkpoints and exact resume.
"""

from tasder.train.accounting import LayerOps, TrainingOps, count_training_ops, ideal_fraction
from tasder.train.functional import BACKWARD_MASKS, backward_mask, nm_conv2d, nm_linear, nm_mask
from tasder.train.layers import DEFAULT_DECAY, METHODS, NMConv2d, NMLayer, NMLinear, parse_nm, set_grad_scale
from tasder.train.loop import CHECKPOINT_FORMAT, FitResult, fit, load_checkpoint, save_checkpoint
from tasder.train.sparsify import (
    LayerPlan,
    plan_sparse_training,
    sparsify_for_training,
    to_dense_layers,
    weight_sparsity,
)

__all__ = [
    "BACKWARD_MASKS",
    "CHECKPOINT_FORMAT",
    "DEFAULT_DECAY",
    "METHODS",
    "FitResult",
    "LayerOps",
    "LayerPlan",
    "NMConv2d",
    "NMLayer",
    "NMLinear",
    "TrainingOps",
    "backward_mask",
    "count_training_ops",
    "fit",
    "ideal_fraction",
    "load_checkpoint",
    "nm_conv2d",
    "nm_linear",
    "nm_mask",
    "parse_nm",
    "plan_sparse_training",
    "save_checkpoint",
    "set_grad_scale",
    "sparsify_for_training",
    "to_dense_layers",
    "weight_sparsity",
]
