"""Layer-shape tables (no weights) of ResNet-50, BERT-base and DeiT-small for the hardware model.

Why shapes only: the accelerator model (docs/design.md §4) needs each layer's GEMM dimensions and how
often it runs, not weight values, and these networks' weights cannot ship offline. The tables
are written here from the architectures' definitions in code — nothing is downloaded and no
model is instantiated:

* **ResNet-50** (He et al., 2016, "Deep Residual Learning for Image Recognition"), torchvision's
  v1.5 layout: the stride-2 of a downsampling bottleneck sits on its 3×3 conv; stages of
  3, 4, 6, 3 bottlenecks of widths 64, 128, 256, 512 (expansion 4); a 1×1 projection
  ("downsample") conv on the first block of every stage; a 1000-way classifier.
* **BERT-base** (Devlin et al., 2019): 12 layers, hidden 768, 12 heads, FFN 3072 — the
  defaults of ``transformers.BertConfig()`` (a test checks they agree). The attention's two
  activation×activation products are listed as ``matmul`` layers; embeddings (table look-ups)
  and the pooler (not used by most fine-tuned heads) are left out.
* **DeiT-small** (Touvron et al., 2021), ``deit_small_patch16_224``: 16×16 patches of a 224×224
  image (196 patches + a class token = 197 tokens), width 384, 12 blocks, 6 heads, MLP 1536,
  a fused QKV projection as in timm, a 1000-way head on the class token.

GEMM convention (docs/design.md §4): ``Z[m, n] = Σ_k A[m, k]·B[k, n]`` with ``A`` the weights (M×K) and
``B`` the input activations (K×N). Every row carries its GEMM; a convolution's is its im2col
lowering (M = output channels, K = C·R·S, N = P·Q·batch) and its row also carries the
convolution itself (:attr:`LayerShape.conv`: channels, kernel, output size, batch, stride), which
the hardware model evaluates natively; a linear layer over T tokens has M = out features,
K = in features, N = T·batch. For a ``matmul`` (attention) ``A`` is an activation too: ``QKᵀ`` is M = T,
K = head dim, N = T; ``softmax(QKᵀ)·V`` is M = T, K = T, N = head dim; it runs once per head
and sample (``repeat``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "BERT_BASE",
    "ConvDims",
    "LayerShape",
    "bert_base_layers",
    "deit_small_layers",
    "resnet50_layers",
    "total_macs",
]

LayerKind = Literal["conv", "linear", "matmul"]


@dataclass(frozen=True)
class ConvDims:
    """A convolution's loop bounds (C in, M out channels, R×S kernel, P×Q output, N batch) with its
    stride and dilation (height, width); padding is not a loop bound."""

    C: int
    M: int
    R: int
    S: int
    P: int
    Q: int
    N: int = 1
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)


@dataclass(frozen=True)
class LayerShape:
    """One GEMM of a network: ``A`` (M×K) times ``B`` (K×N), run ``repeat`` times per forward pass.

    ``repeat`` counts identical layers (e.g. the 5 identical bottlenecks of a ResNet stage, the 12
    encoder layers of BERT) and per-head/per-sample attention products. A convolution's row also
    has ``conv``, the convolution whose im2col GEMM it is (not part of equality: the GEMM is the row).
    """

    name: str
    kind: LayerKind
    M: int
    K: int
    N: int
    repeat: int = 1
    conv: ConvDims | None = field(default=None, compare=False)

    @property
    def macs(self) -> int:
        """Multiply-accumulates of all ``repeat`` instances."""
        return self.M * self.K * self.N * self.repeat

    @property
    def weight_count(self) -> int:
        """Weight elements of all ``repeat`` instances (0 for a ``matmul``: it has no weights)."""
        return 0 if self.kind == "matmul" else self.M * self.K * self.repeat

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"name": self.name, "kind": self.kind, "M": self.M, "K": self.K, "N": self.N,
                                  "repeat": self.repeat}
        if self.conv is not None:
            out["conv"] = {"C": self.conv.C, "M": self.conv.M, "R": self.conv.R, "S": self.conv.S, "P": self.conv.P,
                           "Q": self.conv.Q, "N": self.conv.N, "stride": list(self.conv.stride),
                           "dilation": list(self.conv.dilation)}
        return out


def total_macs(layers: list[LayerShape]) -> int:
    """Σ MACs of a layer table."""
    return sum(layer.macs for layer in layers)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _conv(name: str, c_in: int, c_out: int, kernel: int, out_hw: int, batch: int, repeat: int = 1,
          stride: int = 1) -> LayerShape:
    return LayerShape(name, "conv", M=c_out, K=c_in * kernel * kernel, N=out_hw * out_hw * batch, repeat=repeat,
                      conv=ConvDims(C=c_in, M=c_out, R=kernel, S=kernel, P=out_hw, Q=out_hw, N=batch,
                                    stride=(stride, stride)))


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def resnet50_layers(batch: int = 1, image_size: int = 224) -> list[LayerShape]:
    """ResNet-50's 53 convolutions and its classifier (54 GEMMs; about 4.1 GMACs at 224², batch 1).

    Identical bottlenecks of a stage share one entry per conv with ``repeat`` = blocks − 1.
    """
    _check_positive(batch=batch, image_size=image_size)
    layers = []
    hw = _conv_out(image_size, 7, 2, 3)  # conv1: 7×7 stride 2, pad 3 → 112
    layers.append(_conv("conv1", 3, 64, 7, hw, batch, stride=2))
    hw = _conv_out(hw, 3, 2, 1)  # max-pool 3×3 stride 2, pad 1 → 56
    c_in = 64
    for stage, (width, blocks, stride) in enumerate(((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)), start=1):
        c_out = width * 4
        out_hw = _conv_out(hw, 3, stride, 1)
        prefix = f"layer{stage}"
        # First block: 1×1 reduce at the input size, 3×3 (stride) to out_hw, 1×1 expand, and the
        # 1×1 stride-s projection of the shortcut.
        layers.append(_conv(f"{prefix}.0.conv1", c_in, width, 1, hw, batch))
        layers.append(_conv(f"{prefix}.0.conv2", width, width, 3, out_hw, batch, stride=stride))
        layers.append(_conv(f"{prefix}.0.conv3", width, c_out, 1, out_hw, batch))
        layers.append(_conv(f"{prefix}.0.downsample", c_in, c_out, 1, out_hw, batch, stride=stride))
        rest = blocks - 1
        tag = f"{prefix}.1-{blocks - 1}" if rest > 1 else f"{prefix}.1"
        layers.append(_conv(f"{tag}.conv1", c_out, width, 1, out_hw, batch, rest))
        layers.append(_conv(f"{tag}.conv2", width, width, 3, out_hw, batch, rest))
        layers.append(_conv(f"{tag}.conv3", width, c_out, 1, out_hw, batch, rest))
        c_in, hw = c_out, out_hw
    layers.append(LayerShape("fc", "linear", M=1000, K=2048, N=batch))
    return layers


@dataclass(frozen=True)
class _BertDims:
    num_hidden_layers: int
    hidden_size: int
    num_attention_heads: int
    intermediate_size: int


#: BERT-base's dimensions (the defaults of ``transformers.BertConfig()``).
BERT_BASE = _BertDims(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072)


def _encoder_block(prefix: str, tokens: int, batch: int, hidden: int, heads: int, mlp: int, layers: int,
                   fused_qkv: bool) -> list[LayerShape]:
    n = tokens * batch
    head_dim = hidden // heads
    block = []
    if fused_qkv:
        block.append(LayerShape(f"{prefix}.attn.qkv", "linear", M=3 * hidden, K=hidden, N=n, repeat=layers))
    else:
        for proj in ("query", "key", "value"):
            block.append(LayerShape(f"{prefix}.attention.self.{proj}", "linear", M=hidden, K=hidden, N=n,
                                    repeat=layers))
    per_head = layers * heads * batch
    block += [
        LayerShape(f"{prefix}.attention.scores", "matmul", M=tokens, K=head_dim, N=tokens, repeat=per_head),
        LayerShape(f"{prefix}.attention.context", "matmul", M=tokens, K=tokens, N=head_dim, repeat=per_head),
    ]
    if fused_qkv:
        block += [
            LayerShape(f"{prefix}.attn.proj", "linear", M=hidden, K=hidden, N=n, repeat=layers),
            LayerShape(f"{prefix}.mlp.fc1", "linear", M=mlp, K=hidden, N=n, repeat=layers),
            LayerShape(f"{prefix}.mlp.fc2", "linear", M=hidden, K=mlp, N=n, repeat=layers),
        ]
    else:
        block += [
            LayerShape(f"{prefix}.attention.output.dense", "linear", M=hidden, K=hidden, N=n, repeat=layers),
            LayerShape(f"{prefix}.intermediate.dense", "linear", M=mlp, K=hidden, N=n, repeat=layers),
            LayerShape(f"{prefix}.output.dense", "linear", M=hidden, K=mlp, N=n, repeat=layers),
        ]
    return block


def bert_base_layers(seq_len: int = 128, batch: int = 1) -> list[LayerShape]:
    """BERT-base's encoder GEMMs for sequences of ``seq_len`` tokens (each entry ×12 layers).

    Per layer the weight GEMMs hold 4·768² + 2·768·3072 weights (Q, K, V, output; FFN up, down).
    """
    _check_positive(seq_len=seq_len, batch=batch)
    d = BERT_BASE
    return _encoder_block("encoder.layer.0-11", seq_len, batch, d.hidden_size, d.num_attention_heads,
                          d.intermediate_size, d.num_hidden_layers, fused_qkv=False)


def deit_small_layers(batch: int = 1, image_size: int = 224) -> list[LayerShape]:
    """DeiT-small's GEMMs: the patch embedding, 12 transformer blocks (one entry each ×12), the head."""
    _check_positive(batch=batch, image_size=image_size)
    patch, width, depth, heads, mlp = 16, 384, 12, 6, 1536
    if image_size % patch:
        raise ValueError(f"image_size must be a multiple of the patch size {patch}, got {image_size}")
    grid = image_size // patch
    tokens = grid * grid + 1  # + the class token
    layers = [_conv("patch_embed.proj", 3, width, patch, grid, batch, stride=patch)]
    layers += _encoder_block("blocks.0-11", tokens, batch, width, heads, mlp, depth, fused_qkv=True)
    layers.append(LayerShape("head", "linear", M=1000, K=width, N=batch))
    return layers
