"""The compressed form of one structured-sparse TASD term: (hierarchical) CP values + positions.

Sparse tensor cores store a G:H tensor in the offset-based *coordinate payload* (CP) format:
every block of H consecutive elements keeps exactly G values and, for each, its position in
``[0, H)`` (``ceil(log2 H)`` bits; NVIDIA's 2:4 format is 2 values + 2×2 bits per block). A block
with fewer than G nonzeros stores explicit zeros at its lowest unused positions.

An HSS pattern, ranks highest first ``(G_r, H_r) -> ... -> (G_0, H_0)``, generalises this per
outermost block of ``ΠH`` elements: the top rank stores ``G_r`` child positions in ``[0, H_r)``
(the non-empty children, padded with the lowest unused empty ones), then every kept child stores
``G_{r-1}`` positions of its own children, and so on down to the values: ``ΠG`` values per
outermost block. Positions are always stored in increasing order.

Layout of :class:`PackedTensor` (``lead`` = the original shape without ``dim``, ``n`` = the
number of outermost blocks along ``dim`` after zero-padding it to a multiple of the block size):

* ``values``: shape ``(*lead, n, ΠG)``; within a block, value ``j`` is the mixed-radix index
  ``(c_r, ..., c_0)`` over ``(G_r, ..., G_0)`` (highest rank slowest).
* ``positions[i]`` (rank ``i``, highest first): shape ``(*lead, n, G_r·…·G_i)``, same ordering;
  ``uint8`` (``int32`` for a rank whose H exceeds 256).
* :meth:`PackedTensor.metadata_bytes`: all positions bit-packed, block after block (row-major
  over ``(*lead, n)``); inside a block rank ``r``'s positions come first, then rank ``r-1``'s and
  so on; each position takes ``Rank.index_bits`` bits, least significant bit first, and the bit
  stream fills every byte from its least significant bit (``numpy.packbits(bitorder="little")``).
  Its length is ``ceil(blocks · metadata_bits_per_block / 8)``, exactly the metadata of
  :func:`tasder.tasd.metrics.packed_nbytes`.

>>> import torch
>>> p = pack(torch.tensor([0.0, 1.5, 0.0, -2.0, 3.0, 0.0, 0.0, 0.0]), "2:4")
>>> p.values.tolist(), p.positions[0].tolist()
([[1.5, -2.0], [3.0, 0.0]], [[1, 3], [0, 1]])
>>> p.nbytes  # 4 float32 values + 4 positions of 2 bits
17
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from tasder._validation import check_dim, check_float_tensor
from tasder.sparsity.masks import satisfies
from tasder.sparsity.notation import parse_pattern
from tasder.sparsity.patterns import Pattern, StructuredPattern

__all__ = ["PackedTensor", "pack", "unpack"]


#: pack() zero-pads every row to whole blocks while it works: refuse a padding beyond this many
#: times the term (rows much shorter than the block), unless it stays under _MAX_PAD_FREE elements.
_MAX_PAD_FACTOR = 8
_MAX_PAD_FREE = 1 << 24


def _position_dtype(h: int) -> torch.dtype:
    return torch.uint8 if h <= 256 else torch.int32


@dataclass(frozen=True, eq=False)
class PackedTensor:
    """One G:H or HSS term in its CP form (see the module docstring for the exact layout).

    Attributes:
        pattern: the G:H or HSS pattern the term obeys.
        shape: the shape of the original (unpacked) term.
        dim: the (non-negative) dimension the blocks run along.
        dtype: the dtype of the values.
        values: ``(*lead, n_blocks, ΠG)`` stored values, ``lead`` = ``shape`` without ``dim``.
        positions: one tensor per rank, highest rank first, shaped ``(*lead, n_blocks, G_r·…·G_i)``.
    """

    pattern: StructuredPattern
    shape: tuple[int, ...]
    dim: int
    dtype: torch.dtype
    values: torch.Tensor = field(repr=False)
    positions: tuple[torch.Tensor, ...] = field(repr=False)

    @property
    def num_blocks(self) -> int:
        """Number of outermost blocks stored (over the whole tensor, padding included)."""
        return math.prod(self.values.shape[:-1])

    @property
    def metadata_bits_per_block(self) -> int:
        """Position bits one outermost block stores: Σ over ranks of (kept children) × index bits."""
        bits = 0
        kept = 1
        for rank in self.pattern.ranks:
            kept *= rank.g
            bits += kept * rank.index_bits
        return bits

    def metadata_bytes(self) -> bytes:
        """Every position bit-packed (``Rank.index_bits`` bits each, little-endian bit order)."""
        blocks = self.num_blocks
        chunks = []
        for rank, pos in zip(self.pattern.ranks, self.positions, strict=True):
            p = pos.detach().cpu().numpy().astype(np.uint32).reshape(blocks, pos.shape[-1])
            shifts = np.arange(rank.index_bits, dtype=np.uint32)
            bits = (p[..., None] >> shifts) & 1  # (blocks, count, index_bits), LSB first
            chunks.append(bits.reshape(blocks, p.shape[1] * rank.index_bits).astype(np.uint8))
        stream = np.concatenate(chunks, axis=1).reshape(-1)
        return np.packbits(stream, bitorder="little").tobytes()

    @property
    def values_nbytes(self) -> int:
        """Bytes of the stored values."""
        return self.values.numel() * self.values.element_size()

    @property
    def nbytes(self) -> int:
        """Values bytes + metadata bytes (equals ``tasder.tasd.metrics.packed_nbytes``)."""
        return self.values_nbytes + math.ceil(self.num_blocks * self.metadata_bits_per_block / 8)

    @property
    def dense_nbytes(self) -> int:
        """Bytes of the term stored densely."""
        return math.prod(self.shape) * self.values.element_size()

    def unpack(self) -> torch.Tensor:
        """The dense term back: the stored values in place, ``+0.0`` everywhere else.

        Stored values (explicit zeros included, with their sign) are copied bit for bit, so
        ``torch.equal(pack(t).unpack(), t)`` holds for every term ``t`` (a ``-0.0`` the format does
        not store comes back as ``+0.0``, which compares equal).
        """
        ranks = self.pattern.ranks
        lead = self.values.shape[:-2]
        n = self.values.shape[-2]
        gs = [r.g for r in ranks]
        block = self.pattern.block_size
        device = self.values.device
        flat = torch.zeros((*lead, n, *gs), dtype=torch.int64, device=device)
        stride = block
        for i, (rank, pos) in enumerate(zip(ranks, self.positions, strict=True)):
            stride //= rank.h
            view = pos.to(torch.int64).reshape(*lead, n, *gs[: i + 1], *([1] * (len(gs) - i - 1)))
            flat = flat + view * stride
        out = torch.zeros((*lead, n, block), dtype=self.dtype, device=device)
        out.scatter_(-1, flat.reshape(*lead, n, self.pattern.kept_per_block), self.values)
        length = self.shape[self.dim]
        return out.reshape(*lead, n * block)[..., :length].movedim(-1, self.dim)

    def __repr__(self) -> str:
        return (
            f"PackedTensor(pattern='{self.pattern}', shape={self.shape}, dim={self.dim}, "
            f"dtype={self.dtype}, nbytes={self.nbytes}, dense_nbytes={self.dense_nbytes})"
        )


def pack(term: torch.Tensor, pattern: str | Pattern, dim: int = -1) -> PackedTensor:
    """Compress a G:H or HSS ``term`` (blocks along ``dim``) into its CP form.

    ``term`` must obey ``pattern`` along ``dim`` (a term of :func:`tasder.decompose` does). A
    length that is not a multiple of the block size is zero-padded for the packing only.
    """
    x = check_float_tensor(term, "term")
    p = parse_pattern(pattern)
    d = check_dim(dim, x.dim())
    if not isinstance(p, StructuredPattern):
        raise ValueError(f"pack supports G:H and HSS terms; got pattern {str(p)!r}")
    # An empty tensor obeys every pattern (and satisfies() cannot reshape some empty shapes).
    if x.numel() and not satisfies(x, p, d):
        raise ValueError(
            f"term does not satisfy pattern {str(p)!r} along dim={d}; pack stores only terms that "
            f"obey their pattern (e.g. the terms of tasder.decompose)"
        )
    ranks = p.ranks
    block = p.block_size
    v = x.detach().movedim(d, -1)
    lead = tuple(v.shape[:-1])
    length = v.shape[-1]
    n = math.ceil(length / block)
    padded = math.prod(lead) * n * block
    if padded > max(_MAX_PAD_FACTOR * x.numel(), _MAX_PAD_FREE):
        raise ValueError(
            f"pack: blocks of {block} along dim={d} (length {length}) would pad the term to {padded:,} elements, "
            f"{padded / max(1, x.numel()):.0f}x its size, while packing; use a pattern whose block fits the dim "
            f"(or pack the rows in smaller pieces)"
        )
    extra = n * block - length
    if extra:
        v = torch.cat([v, v.new_zeros((*lead, extra))], dim=-1)
    hs = [r.h for r in ranks]
    vals = v.reshape(*lead, n, *hs)
    occupied = vals != 0  # NaN counts as nonzero, as in satisfies()
    positions = []
    for i, rank in enumerate(ranks):
        axis = len(lead) + 1 + i  # this rank's H axis; the kept G's of the ranks above precede it
        below = hs[i + 1 :]
        flags = occupied.reshape(*occupied.shape[: axis + 1], math.prod(below)).any(dim=-1)
        # Non-empty children first (index order), then the lowest empty ones; a stable sort of
        # the "empty" flag gives exactly that. Keep the first G and store them in increasing order.
        first = torch.sort((~flags).to(torch.int8), dim=-1, stable=True).indices[..., : rank.g]
        chosen = torch.sort(first, dim=-1).values
        positions.append(chosen)
        index = chosen.reshape(*chosen.shape, *([1] * len(below))).expand(*chosen.shape, *below)
        vals = torch.gather(vals, axis, index)
        occupied = torch.gather(occupied, axis, index)
    out_positions = tuple(
        pos.reshape(*lead, n, math.prod(r.g for r in ranks[: i + 1])).to(_position_dtype(ranks[i].h))
        for i, pos in enumerate(positions)
    )
    return PackedTensor(
        pattern=p,
        shape=tuple(x.shape),
        dim=d,
        dtype=x.dtype,
        values=vals.reshape(*lead, n, p.kept_per_block),
        positions=out_positions,
    )


def unpack(packed: PackedTensor) -> torch.Tensor:
    """The dense term of ``packed`` (same as :meth:`PackedTensor.unpack`)."""
    if not isinstance(packed, PackedTensor):
        raise TypeError(f"`packed` must be a PackedTensor (from pack()); got {type(packed).__name__}")
    return packed.unpack()
