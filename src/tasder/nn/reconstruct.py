"""TASD-W from calibration activations: an activation-aware score and a reconstruction of the kept weights.

Both are ours (beyond the TASD paper), off by default, and are :class:`~tasder.nn.LayerSpec`
options (``score: activation``, ``reconstruct: true``; docs/design.md §3.3). For a layer y = x·Wᵀ with calibration
inputs X (rows = tokens, or im2col columns of a convolution; K = the reduction dim) they use the
statistics of X only:

* **activation-aware score** (Wanda: Sun et al., "A Simple and Effective Pruning Approach for
  Large Language Models", 2023): rank W_ij by |W_ij|·‖X_j‖₂ instead of |W_ij|. A weight that
  multiplies a large input feature matters more to the output than an equal weight on a feature
  that is almost always small. ‖X_j‖₂² is the diagonal of the Gram matrix H = XᵀX.
* **reconstruction** (OBS, as SparseGPT does for 2:4: Frantar & Alistarh, 2023): once the series
  has chosen which weights each row keeps (a fixed mask), the kept weights are updated so that
  ‖X·wᵣ − X·ŵᵣ‖² grows least per output row r. The column sweep of :func:`obs_reconstruct`: with
  U the upper Cholesky factor of H⁻¹ (H damped by 1 % of its mean diagonal), columns are visited in
  order; the dropped weights of column i are set to 0 and their error (w − 0)/U_ii is spread over
  the later columns through row i of U — the optimal update of the not-yet-visited weights for
  that column's removal. Cost: one K×K Cholesky per layer (shared by every series) and rows·K² per
  series, in blocks of 128 columns.

The TASD invariant survives because nothing is computed twice: the reconstructed weight W″ (the
kept positions updated, the dropped ones as they were) is *split* by the mask, each element moved
into exactly one term or the residual (:func:`split_by_index`), so ``sum(terms) + residual == W″``
bit for bit and ``sum(terms)`` is the layer's weight Ŵ.
"""

from __future__ import annotations

import torch

__all__ = ["damped_inverse_factor", "obs_reconstruct", "split_by_index"]

#: SparseGPT's dampening: 1 % of the mean diagonal of H added to it (keeps the Cholesky factor
#: well conditioned when some inputs are (nearly) collinear or never active).
DAMP = 0.01
#: Columns processed per block of the sweep (the rest of W is updated once per block, as one GEMM).
BLOCK = 128


def damped_inverse_factor(gram: torch.Tensor, damp: float = DAMP) -> torch.Tensor:
    """U, the upper Cholesky factor of (H + λI)⁻¹ (float64), for a Gram matrix H = XᵀX (K×K).

    λ = ``damp`` × mean(diag H). An input that is zero on all calibration data (diag 0) gets 1 on
    the diagonal, so its row of U carries no update to the other columns.
    """
    h = gram.detach().to(torch.float64).clone()
    if h.dim() != 2 or h.shape[0] != h.shape[1]:
        raise ValueError(f"the Gram matrix must be square; got shape {tuple(h.shape)}")
    diag = h.diagonal()
    dead = diag == 0
    diag[dead] = 1.0
    h[dead, :] = 0.0
    h[:, dead] = 0.0
    h.diagonal()[dead] = 1.0
    lam = damp * float(diag.mean())
    h.diagonal().add_(lam)
    chol = torch.linalg.cholesky(h)
    inverse = torch.cholesky_inverse(chol)
    return torch.linalg.cholesky(inverse, upper=True)


@torch.no_grad()
def obs_reconstruct(weight: torch.Tensor, keep: torch.Tensor, factor: torch.Tensor,
                    block: int = BLOCK) -> torch.Tensor:
    """The kept weights updated by the OBS column sweep; dropped positions are 0 (float64).

    Args:
        weight: (rows, K), columns in the order of the Gram matrix ``factor`` came from.
        keep: bool (rows, K), what the series keeps.
        factor: :func:`damped_inverse_factor` of the layer's Gram matrix (K×K).
        block: columns per block.
    """
    if weight.dim() != 2 or keep.shape != weight.shape or factor.shape != (weight.shape[1], weight.shape[1]):
        raise ValueError(f"shapes do not fit: weight {tuple(weight.shape)}, keep {tuple(keep.shape)}, "
                         f"factor {tuple(factor.shape)}")
    w = weight.detach().to(torch.float64).clone()
    u = factor.to(torch.float64)
    k = w.shape[1]
    for start in range(0, k, block):
        stop = min(start + block, k)
        w1 = w[:, start:stop].clone()
        err1 = torch.zeros_like(w1)
        u1 = u[start:stop, start:stop]
        keep1 = keep[:, start:stop]
        for i in range(stop - start):
            col = w1[:, i]
            kept = torch.where(keep1[:, i], col, torch.zeros((), dtype=col.dtype))
            err = (col - kept) / u1[i, i]
            w1[:, i:] -= err[:, None] * u1[i, i:][None, :]
            w1[:, i] = kept  # exactly: rounding in the update above must not leave a dropped weight ≠ 0
            err1[:, i] = err
        w[:, start:stop] = w1
        if stop < k:
            w[:, stop:] -= err1 @ u[start:stop, stop:]
    return w


def split_by_index(x: torch.Tensor, index: torch.Tensor, terms: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """``(terms, residual)``: element e of ``x`` moves into term ``index[e] − 1`` (0: the residual).

    Every element lands in exactly one output, the others hold +0.0 — or x's own signed zero where x
    is ±0, as :func:`tasder.tasd.decompose` fills — so ``sum(terms) + residual == x`` bit for bit.
    """
    if index.shape != x.shape:
        raise ValueError(f"`index` has shape {tuple(index.shape)}, x has {tuple(x.shape)}")
    fill = torch.where(x == 0, x, torch.zeros((), dtype=x.dtype, device=x.device))
    out = [torch.where(index == t + 1, x, fill) for t in range(terms)]
    residual = torch.where(index == 0, x, fill)
    return out, residual
