"""TASD: tensor approximation by a series of structured-sparse terms.

>>> import torch, tasder
>>> r = tasder.decompose(torch.randn(64, 64), "2:8+1:8")
>>> len(r.terms), r.series.effective_density
(2, 0.375)
"""

from tasder.tasd.decompose import Backend, TASDResult, approximate, decompose
from tasder.tasd.metrics import (
    DecompositionSums,
    TASDMetrics,
    aggregate,
    gemm_output_error,
    packed_nbytes,
    tensor_sums,
)
from tasder.tasd.packing import PackedTensor, pack, unpack
from tasder.tasd.permutation import (
    clear_permutation_cache,
    find_permutation,
    kept_score,
    permutation_cache_info,
    permutation_store,
)

__all__ = [
    "Backend",
    "DecompositionSums",
    "PackedTensor",
    "TASDMetrics",
    "TASDResult",
    "aggregate",
    "approximate",
    "clear_permutation_cache",
    "decompose",
    "find_permutation",
    "gemm_output_error",
    "kept_score",
    "pack",
    "packed_nbytes",
    "permutation_cache_info",
    "permutation_store",
    "tensor_sums",
    "unpack",
]
