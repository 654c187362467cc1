"""Equivalence: every compiled spec computes what its hand-written reference computes.

Table-driven. For each mechanism, several parameter settings x input shapes x
{float32, float64} x {eval, train}: the compiled module gets seeded random weights
(randomize_), the reference receives them by position (copy_weights), and the test compares
outputs, the gradient w.r.t. the input, the gradients w.r.t. every parameter, and (after
the forward) the state_dict, which catches BatchNorm running-statistics updates.
"""

import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

# tests/ holds helper modules (reference/, weights.py) but is not a package.
_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from counting import flops_both_ways  # noqa: E402
from reference import REFERENCES  # noqa: E402
from weights import copy_weights, randomize_  # noqa: E402

import attnspec  # noqa: E402
from attnspec.api import spec_path  # noqa: E402

TOLERANCES = {
    torch.float32: dict(atol=1e-5, rtol=1e-5),
    torch.float64: dict(atol=1e-10, rtol=1e-10),
}


@dataclass(frozen=True)
class Case:
    spec: str  # name given to attnspec.load (and key of REFERENCES)
    params: dict
    shapes: tuple  # input shapes, each checked
    pad: bool = False  # pass a key padding mask (mhsa, attention_pool)
    glob: bool = False  # pass global tokens, none of them padding (Longformer)
    definition: str | None = None  # another definition of the spec's file than the main one
    memory: int = 0  # > 0: a second input `memory` [B, memory, D] (cross-attention's keys)
    memory_width: int = 0  # the memory's last axis when it is not x's (kdim)
    memory_name: str = "memory"  # the second input's keyword ...
    memory_axis: int = 1  # ... and the axis of x's shape whose size `memory` replaces
    # False where float32 cannot compare two codes: both drift from the float64 result by
    # more than the tolerance (measured, and said at the case); float64 still checks it
    float32: bool = True
    # False where the two modules draw their dropout masks differently (SDPA's own, in the
    # compiled band): compared in eval mode only (dropout's effect: a test of its own)
    train: bool = True

    @property
    def id(self) -> str:
        args = ",".join(f"{k}={v}" for k, v in self.params.items())
        name = f"{self.spec}.{self.definition}" if self.definition else self.spec
        other = f"+{self.memory_name}={self.memory}" if self.memory else ""
        return f"{name}({args}){'+pad' if self.pad else ''}{'+glob' if self.glob else ''}{other}"


def image(C: int) -> tuple:
    """Two [B, C, H, W] shapes: non-square, and a different batch and size."""
    return ((2, C, 5, 6), (3, C, 7, 7))


def sequence(D: int) -> tuple:
    """Two [B, N, D] shapes."""
    return ((2, 7, D), (3, 5, D))


CASES = [
    # se
    Case("se", dict(C=32, r=4), image(32)),
    Case("se", dict(C=64), image(64)),
    Case("se", dict(C=48, r=8, bias=False), image(48)),
    # eca: adaptive k is 3 for C=32, 5 for C=128, 7 for C=64 with gamma=1, b=0
    Case("eca", dict(C=32), image(32)),
    Case("eca", dict(C=128), image(128)),
    Case("eca", dict(C=64, gamma=1, b=0), image(64)),
    Case("eca", dict(C=16, adaptive=False, kernel=7), image(16)),
    # ECA-NS, a kernel per channel: the adaptive k (3 at C = 32, 5 at 256) and a fixed 7
    Case("eca", dict(C=32, shared=False), image(32)),
    Case("eca", dict(C=256, shared=False), ((2, 256, 3, 5), (1, 256, 4, 2))),
    Case("eca", dict(C=16, adaptive=False, kernel=7, shared=False), image(16)),
    # mhsa
    Case("mhsa", dict(D=32), sequence(32)),
    Case("mhsa", dict(D=32, M=4), sequence(32)),
    Case("mhsa", dict(D=24, M=3, bias=False), sequence(24)),
    Case("mhsa", dict(D=32, M=4, causal=True), sequence(32)),
    Case("mhsa", dict(D=32, M=4), sequence(32), pad=True),
    Case("mhsa", dict(D=16, M=2, causal=True), sequence(16), pad=True),
    Case("mhsa", dict(D=16, M=2, dropout=0.3), sequence(16), pad=True),
    # the paper's d_k and d_v apart from D / M (its Table 3, rows A and B)
    Case("mhsa", dict(D=16, M=4, d_k=2, d_v=8), sequence(16), pad=True),
    Case("mhsa", dict(D=24, M=2, causal=True, d_k=16, d_v=4), sequence(24)),
    # mhsa's encoder-decoder attention: memories of 6 and 4 positions, padded, a memory of
    # another width (kdim = vdim = E), dropout
    Case("mhsa", dict(D=16, M=2), sequence(16), definition="CrossAttention", memory=6),
    Case("mhsa", dict(D=24, M=3, E=12, bias=False), sequence(24), definition="CrossAttention",
         memory=4, memory_width=12, pad=True),
    Case("mhsa", dict(D=16, M=4, dropout=0.2), sequence(16), definition="CrossAttention",
         memory=5, pad=True),
    # linear_attention: bidirectional (the reordered sums) and causal (a masked quadratic
    # form against the authors' running sums), with and without a key padding mask
    Case("linear_attention", dict(D=32), sequence(32)),
    Case("linear_attention", dict(D=24, M=3, eps=1e-3), sequence(24), pad=True),
    Case("linear_attention", dict(D=32, M=4, causal=True), sequence(32)),
    Case("linear_attention", dict(D=16, M=2, causal=True), sequence(16), pad=True),
    Case("linear_attention", dict(D=16, M=2, d_keys=4, d_values=12), sequence(16), pad=True),
    Case("linear_attention", dict(D=12, M=3, causal=True, d_keys=6, d_values=2),
         sequence(12)),
    # epsa: the authors' kernels and groups; a wider output (planes); other kernels and groups
    Case("epsa", dict(C=64), image(64)),
    Case("epsa", dict(C=32, planes=64, reduction=4), image(32)),
    Case("epsa", dict(C=32, planes=64, stride=2, reduction=4), image(32)),
    Case("epsa", dict(C=48, planes=40, k1=1, k2=3, k3=5, k4=7, g1=2, g2=1, g3=2, g4=2,
                      reduction=2), image(48)),
    # polarized (the authors' PSA_p and PSA_s): PSA_p's W_z (one bias-free conv, no LayerNorm)
    # at an even and an odd C; PSA_s's bottleneck (C / 2 / 4 = 4 and 8 wide, LayerNorm; over 2
    # values it is ill-conditioned in float32, as gcnet's)
    Case("polarized", dict(C=16), image(16)),
    Case("polarized", dict(C=33), ((2, 33, 5, 7), (3, 33, 8, 6))),
    Case("polarized", dict(C=32, layout="sequential"), image(32)),
    Case("polarized", dict(C=64, layout="sequential"), ((2, 64, 5, 7), (3, 64, 8, 6))),
    # ... and each branch alone, both layouts
    *[Case("polarized", dict(C=16, layout=layout), image(16), definition=d)
      for d in ("PolarizedChannel", "PolarizedSpatial") for layout in ("parallel", "sequential")],
    # parnet (ParNet's SSE): BN on the skip, gated by sigmoid(bias-free 1×1 conv of its mean)
    *[Case("parnet", dict(C=C), ((2, C, 5, 7), (3, C, 8, 6))) for C in (8, 64, 33)],
    # separable_sa (MobileViTv2) on their [B, d, P, N]: with and without biases; one pixel
    # per patch (P = 1), a single patch (N = 1)
    Case("separable_sa", dict(d=16), ((2, 16, 4, 7), (3, 16, 1, 5))),
    Case("separable_sa", dict(d=8, bias=False), ((2, 8, 4, 9), (3, 8, 2, 1))),
    # ... and their cross-attention: scores and keys from x_prev of 6 or 1 patches
    Case("separable_sa", dict(d=16, attn_dropout=0.2), ((2, 16, 4, 7), (3, 16, 1, 5)),
         memory=6, memory_name="x_prev", memory_axis=-1),
    Case("separable_sa", dict(d=8, bias=False), ((2, 8, 4, 9), (3, 8, 2, 3)), memory=1,
         memory_name="x_prev", memory_axis=-1),
    # coatnet: a table larger than the maps; exactly the map's size (maxvit's) and smaller,
    # one table for every head, inner and out widths != C; maps larger than the table (0
    # beyond); the defaults (head_size 32, 14 × 14 table)
    Case("coatnet", dict(C=16, head_size=4, max_h=7, max_w=8), ((2, 16, 5, 6), (3, 16, 7, 7))),
    Case("coatnet", dict(C=16, out=12, head_size=8, M=3, max_h=5, max_w=6,
                         rel_attn="single_head"), ((2, 16, 5, 6), (3, 16, 3, 4))),
    Case("coatnet", dict(C=12, head_size=4, max_h=6, max_w=5, dropatt=0.2),
         ((2, 12, 6, 5), (3, 12, 4, 5))),
    Case("coatnet", dict(C=8, head_size=4, max_h=3, max_w=2), ((2, 8, 5, 6), (1, 8, 4, 3))),
    Case("coatnet", dict(C=64), ((2, 64, 5, 6), (3, 64, 14, 14))),
    # halo (HaloNet): sides that are and are not multiples of the block, windows past the
    # map's edge attended as zeros and left out, q, k widths other than v's, biased
    # projections, no relative term, a block as wide as the map; the defaults (8, 3, 8 heads)
    Case("halo", dict(C=16, M=2, block_size=2, halo_size=1), ((2, 16, 4, 6), (3, 16, 5, 7))),
    Case("halo", dict(C=16, M=2, block_size=3, halo_size=2, edge="mask"),
         ((2, 16, 6, 6), (3, 16, 7, 5))),
    Case("halo", dict(C=12, out=8, M=4, dim_head=3, block_size=2, halo_size=2,
                      qkv_bias=True), ((2, 12, 5, 6), (1, 12, 3, 9))),
    Case("halo", dict(C=8, M=2, block_size=4, halo_size=1, relative=False, edge="mask"),
         ((2, 8, 4, 4), (3, 8, 9, 6))),
    Case("halo", dict(C=16, M=2, block_size=4, halo_size=0), ((2, 16, 4, 4), (1, 16, 2, 3))),
    Case("halo", dict(C=32), ((2, 32, 16, 16), (1, 32, 10, 13))),
    # residual_attention (CSRA): T = 1, the code's max pooling T = 99, another T and λ, T < 1
    # on 1×1 and 2×9 maps; MHA: every head count in the authors' table, and another λ
    *[Case("residual_attention", params, ((2, C, 5, 7), (3, C, 6, 4)))
      for C, params in ((16, dict(input_dim=16, num_classes=5)),
                        (16, dict(input_dim=16, num_classes=5, T=99)),
                        (12, dict(input_dim=12, num_classes=7, T=4, lam=0.3)))],
    Case("residual_attention", dict(input_dim=8, num_classes=3, T=0.5, lam=1.0),
         ((2, 8, 1, 1), (3, 8, 2, 9))),
    *[Case("residual_attention", dict(input_dim=12, num_classes=6, num_heads=n),
           ((2, 12, 5, 7), (3, 12, 6, 4)), definition="MHA") for n in (1, 2, 4, 6, 8)],
    Case("residual_attention", dict(input_dim=8, num_classes=4, num_heads=4, lam=0.5),
         ((2, 8, 5, 7), (3, 8, 6, 4)), definition="MHA"),
    # coord: mip at its floor of 8 (C / 32 < 8), and C / reduction above it (16 and 12)
    Case("coord", dict(C=32), image(32)),
    Case("coord", dict(C=64, reduction=4), image(64)),
    Case("coord", dict(C=48, reduction=4), ((2, 48, 7, 4), (1, 48, 3, 9))),
    # sliding_window (Longformer): windows of 1, 2 and 3 on each side, dilations 2 and 3,
    # and the default 512 (= all keys here). With pad: _pad_mask keeps key 0, and a query
    # whose window is all padding gets 0 on both sides
    Case("sliding_window", dict(D=16, M=2, attention_window=2), sequence(16)),
    Case("sliding_window", dict(D=24, M=3, attention_window=4), ((2, 9, 24), (3, 6, 24))),
    Case("sliding_window", dict(D=16, M=4, attention_window=2, attention_dilation=2),
         ((2, 9, 16), (3, 6, 16))),
    Case("sliding_window", dict(D=12, M=3, attention_window=4, attention_dilation=3),
         ((2, 11, 12), (1, 4, 12))),
    Case("sliding_window", dict(D=16, M=2, attention_window=512), sequence(16)),
    Case("sliding_window", dict(D=24, M=3, attention_window=6), sequence(24), pad=True),
    # the autoregressive (causal) window, plain and dilated
    Case("sliding_window", dict(D=16, M=2, attention_window=4, autoregressive=True),
         ((2, 9, 16), (3, 6, 16))),
    Case("sliding_window", dict(D=12, M=3, attention_window=6, attention_dilation=2,
                                autoregressive=True), ((2, 11, 12), (1, 4, 12))),
    Case("sliding_window", dict(D=16, M=4, attention_window=4, attention_dilation=2),
         sequence(16), pad=True),
    # a dilation in the last heads alone (the paper's "dilation on 2 heads"): plain, causal
    # with padding, none dilated, and with global tokens in Longformer
    Case("sliding_window", dict(D=16, M=4, attention_window=4, attention_dilation=2,
                                dilated_heads=2), ((2, 9, 16), (3, 13, 16))),
    Case("sliding_window", dict(D=12, M=3, attention_window=2, attention_dilation=3,
                                dilated_heads=1, autoregressive=True),
         ((2, 11, 12), (1, 5, 12)), pad=True),
    Case("sliding_window", dict(D=16, M=4, attention_window=2, attention_dilation=3,
                                dilated_heads=0), sequence(16)),
    Case("sliding_window", dict(D=16, M=4, attention_window=4, attention_dilation=2,
                                dilated_heads=3), ((2, 11, 16), (3, 8, 16)), pad=True,
         glob=True, definition="Longformer"),
    # global tokens (the authors' attention_mask > 0): in SlidingWindow through the same
    # projections (causal too: the global rows still see every key); in Longformer through
    # query_global, key_global, value_global; with padding, a dilation, a window wider than
    # the sequence, and none given (the local rows alone)
    Case("sliding_window", dict(D=16, M=2, attention_window=2), sequence(16), glob=True),
    Case("sliding_window", dict(D=16, M=2, attention_window=4, autoregressive=True),
         ((2, 9, 16), (3, 6, 16)), pad=True, glob=True),
    Case("sliding_window", dict(D=16, M=2, attention_window=2), sequence(16), glob=True,
         definition="Longformer"),
    Case("sliding_window", dict(D=24, M=3, attention_window=4), ((2, 9, 24), (3, 6, 24)),
         pad=True, glob=True, definition="Longformer"),
    Case("sliding_window", dict(D=16, M=4, attention_window=4, attention_dilation=2),
         ((2, 11, 16), (3, 8, 16)), pad=True, glob=True, definition="Longformer"),
    Case("sliding_window", dict(D=8, M=2, attention_window=512), sequence(8), glob=True,
         definition="Longformer"),
    Case("sliding_window", dict(D=8, M=2, attention_window=2), sequence(8),
         definition="Longformer"),
    # the authors' attention dropout (0.1): nothing in eval mode
    Case("sliding_window", dict(D=16, M=2, attention_window=8, attention_probs_dropout_prob=0.1),
         ((2, 40, 16), (1, 9, 16)), pad=True, train=False),
    Case("sliding_window", dict(D=16, M=2, attention_window=8, attention_probs_dropout_prob=0.1),
         ((2, 40, 16),), pad=True, glob=True, definition="Longformer", train=False),
    # simplified_sa (the zoo's projection-free attention): 8, 3 and 1 heads, a padding mask
    Case("simplified_sa", dict(D=32), sequence(32)),
    Case("simplified_sa", dict(D=24, M=3), sequence(24)),
    Case("simplified_sa", dict(D=16, M=1, dropout=0.0), sequence(16)),
    Case("simplified_sa", dict(D=32, M=4), sequence(32), pad=True),
    # emsa: input [B, H, W, C]; sr_ratio 1, 2, 4, 8 (8 on maps smaller than the kernel), a
    # custom qk_scale
    Case("emsa", dict(C=32), ((2, 5, 6, 32), (3, 7, 7, 32))),
    Case("emsa", dict(C=16, M=2, qkv_bias=True), ((2, 5, 6, 16), (3, 7, 7, 16))),
    Case("emsa", dict(C=16, M=4, qk_scale=0.3), ((2, 5, 6, 16), (3, 7, 7, 16))),
    Case("emsa", dict(C=16, M=2, sr_ratio=2, qkv_bias=True), ((2, 5, 6, 16), (3, 7, 7, 16))),
    Case("emsa", dict(C=16, M=4, sr_ratio=4), ((2, 9, 6, 16), (3, 4, 11, 16))),
    Case("emsa", dict(C=8, M=1, sr_ratio=8), ((2, 9, 17, 8), (1, 3, 5, 8))),
    Case("emsa", dict(C=16, M=2, sr_ratio=3), ((2, 9, 7, 16), (3, 5, 11, 16))),  # even kernel
    # ResT's transform (its models' setting): heads mixed by a 1×1 conv, an InstanceNorm of
    # the weights; with one head it is skipped, as the authors'; both dropouts. The norm
    # divides by the spread of nearly uniform weights, magnifying float32 rounding: a
    # larger qk_scale spreads them (at the default, 3x7x7 float32 differs by 1.7e-5)
    Case("emsa", dict(C=16, M=4, sr_ratio=2, apply_transform=True, qk_scale=2.0),
         ((2, 5, 6, 16), (3, 7, 7, 16))),
    Case("emsa", dict(C=16, M=2, apply_transform=True, attn_drop=0.2, proj_drop=0.3),
         ((2, 5, 6, 16), (3, 4, 3, 16))),
    Case("emsa", dict(C=8, M=1, sr_ratio=2, apply_transform=True), ((2, 5, 6, 8), (1, 3, 5, 8))),
    # alibi: 8 heads (a power of two), 6 and 12 (the authors' interleaved slopes), a padding
    # mask, and the symmetric bidirectional form
    Case("alibi", dict(D=32), sequence(32)),
    Case("alibi", dict(D=24, M=6), sequence(24), pad=True),
    Case("alibi", dict(D=24, M=12), sequence(24)),
    Case("alibi", dict(D=16, M=4, causal=False), sequence(16), pad=True),
    Case("alibi", dict(D=16, M=4, attention_dropout=0.1), sequence(16), pad=True),
    # axial: rows then columns, and each layer alone, on non-square maps both ways
    *[Case("axial", params, ((2, 5, 7, params["D"]), (3, 6, 4, params["D"])), definition=d)
      for params in (dict(D=16), dict(D=12, M=3)) for d in (None, "Row", "Column")],
    # masked (causal along the axis): the decoder's column and row layers; the authors'
    # transformer block around either axis, masked or not, with a wider MLP and dropout
    *[Case("axial", dict(D=12, M=3, masked=True), ((2, 5, 7, 12), (3, 6, 4, 12)), definition=d)
      for d in ("Row", "Column")],
    Case("axial", dict(D=16, M=2), ((2, 5, 7, 16), (3, 6, 4, 16)),
         definition="AxialTransformerBlock"),
    Case("axial", dict(D=12, M=3, axis="column", masked=True, hdim_factor=4, dropout=0.1),
         ((2, 5, 7, 12), (3, 6, 4, 12)), definition="AxialTransformerBlock"),
    # cot (CoT block): the authors' kernel 3; kernel 5; dim = 20, whose two weight channels
    # are each shared by 10 interleaved channels; a 7×7 window wider than the map. In float32
    # train mode the fusion's BatchNorm over B pooled vectors is ill-conditioned: both
    # modules are 2e-4 to 3e-3 off float64 (measured on three seeds; about 1e-5 with that
    # BatchNorm in eval mode), so dim=64 and dim=16 are compared in float64 only
    Case("cot", dict(dim=64), image(64), float32=False),
    Case("cot", dict(dim=16, kernel_size=5), image(16), float32=False),
    Case("cot", dict(dim=20), image(20)),
    Case("cot", dict(dim=24, kernel_size=7), image(24)),
    # CoXtLayer (the authors' cotnext blocks): dim a multiple of 16, kernels 3 and 5; the
    # fusion's train-mode BatchNorm over B pooled vectors as above (float32 gradients 3e-4
    # apart), so float64 only
    Case("cot", dict(dim=32, variant="coxt"), image(32), float32=False),
    Case("cot", dict(dim=48, kernel_size=5, variant="coxt"), image(48), float32=False),
    # mobilevit_attn (MobileViT block): 2 heads on 2×2 patches; 3 layers of 3 heads on 2×3
    # patches after a dilated 5×5 conv; 1 head, 1 layer, 4×2 patches, no fusion; every
    # dropout (train mode draws the same masks); 1×1 patches (N = HW) and one patch (N = 1);
    # defaults; each on maps of two sizes where the patch allows
    Case("mobilevit_attn", dict(in_channels=8, transformer_dim=16, ffn_dim=32, head_dim=8),
         ((2, 8, 4, 6), (3, 8, 6, 4))),
    Case("mobilevit_attn", dict(in_channels=6, transformer_dim=24, ffn_dim=20,
                                n_transformer_blocks=3, head_dim=8, patch_h=2, patch_w=3,
                                conv_ksize=5, dilation=2),
         ((2, 6, 6, 9), (1, 6, 4, 6))),
    Case("mobilevit_attn", dict(in_channels=8, transformer_dim=16, ffn_dim=24, head_dim=16,
                                n_transformer_blocks=1, patch_h=4, patch_w=2, no_fusion=True),
         ((2, 8, 8, 6), (3, 8, 4, 4))),
    Case("mobilevit_attn", dict(in_channels=4, transformer_dim=16, ffn_dim=32, head_dim=4,
                                attn_dropout=0.2, dropout=0.1, ffn_dropout=0.3),
         ((2, 4, 4, 6), (3, 4, 4, 6))),
    Case("mobilevit_attn", dict(in_channels=4, transformer_dim=8, ffn_dim=16, head_dim=4,
                                patch_h=1, patch_w=1), ((2, 4, 3, 5),)),
    Case("mobilevit_attn", dict(in_channels=4, transformer_dim=8, ffn_dim=16, head_dim=4,
                                patch_h=3, patch_w=5), ((2, 4, 3, 5),)),
    Case("mobilevit_attn", dict(in_channels=8, transformer_dim=32, ffn_dim=64),
         ((2, 8, 8, 8), (3, 8, 8, 8))),
    # maps that are not multiples of the patch: resized bilinearly to the next multiples
    # and back (the authors' unfolding), on one side or both, odd and smaller than a patch
    Case("mobilevit_attn", dict(in_channels=8, transformer_dim=16, ffn_dim=32, head_dim=8),
         ((2, 8, 5, 7), (1, 8, 4, 3), (2, 8, 1, 6))),
    Case("mobilevit_attn", dict(in_channels=6, transformer_dim=24, ffn_dim=20, head_dim=8,
                                patch_h=2, patch_w=3, n_transformer_blocks=1, dropout=0.1),
         ((2, 6, 7, 7), (1, 6, 4, 10))),
    # vip (Weighted Permute-MLP): the map must be segment_dim × segment_dim (H·C/S = C);
    # the defaults, then biased branches with dropout, then another segment count
    Case("vip", dict(dim=64), ((2, 8, 8, 64), (3, 8, 8, 64))),
    Case("vip", dict(dim=48, segment_dim=4, qkv_bias=True, proj_drop=0.1),
         ((2, 4, 4, 48), (5, 4, 4, 48))),
    Case("vip", dict(dim=36, segment_dim=6, qkv_bias=True), ((1, 6, 6, 36), (3, 6, 6, 36))),
    # s2 (S²-MLPv2's S²-Attention), channels-last; channels % 4 == 0
    Case("s2", dict(channels=16), ((2, 5, 6, 16), (3, 7, 7, 16))),
    Case("s2", dict(channels=8), ((1, 4, 3, 8), (3, 6, 5, 8))),
    # lambda_layer (LambdaNetworks): defaults (a 23×23 lambda conv, wider than the maps); 3×3
    # and 5×5 lambda convs (d != C, batch 1); global relative embeddings exactly covering the
    # map, and smaller than the map (0 beyond)
    Case("lambda_layer", dict(C=16), image(16)),
    Case("lambda_layer", dict(C=8, k=4, h=2, r=3), image(8)),
    Case("lambda_layer", dict(C=12, d=8, k=3, h=4, r=5), ((2, 12, 5, 6), (1, 12, 2, 9))),
    Case("lambda_layer", dict(C=8, k=4, h=2, r=0, size_h=5, size_w=6),
         ((2, 8, 5, 6), (3, 8, 4, 3))),
    Case("lambda_layer", dict(C=6, d=9, k=2, h=3, r=0, size_h=3, size_w=2),
         ((2, 6, 5, 6), (3, 6, 3, 2))),
    # intra-depth |u| (LambdaIntraDepth, the lambdas in the paper's own form): u = 1, 2, 4;
    # lambda convolutions of 3 and 5 (wider than a 2 × 9 map), and global context (r = 0)
    # on maps up to the table's size and larger (offsets beyond it have no embedding)
    *[Case("lambda_layer", params, ((2, params["C"], 5, 6), (1, params["C"], 2, 9)),
           definition="LambdaIntraDepth")
      for params in (dict(C=8, k=4, h=2, u=1, r=3), dict(C=8, k=4, h=2, u=2, r=3),
                     dict(C=12, d=8, k=3, h=4, u=4, r=5), dict(C=8, k=4, h=2, u=3, r=0, size=4),
                     dict(C=6, d=9, k=2, h=3, u=2, r=0, size=6))],
    # crossformer (CrossFormer block: SDA / LDA with the dynamic position bias), [B, H, W, C]
    Case("crossformer", dict(dim=32, num_heads=2, group_size=2), ((2, 4, 6, 32), (3, 6, 4, 32))),
    Case("crossformer", dict(dim=32, num_heads=4, group_size=2, lsda_flag=1),
         ((2, 4, 6, 32), (3, 6, 8, 32))),
    Case("crossformer", dict(dim=48, num_heads=3, group_size=3, lsda_flag=1, qkv_bias=False,
                             qk_scale=0.3, mlp_ratio=2.5), ((2, 6, 9, 48), (1, 9, 6, 48))),
    Case("crossformer", dict(dim=32, num_heads=2, group_size=2, lsda_flag=1, drop=0.2,
                             attn_drop=0.3, drop_path=0.4), ((2, 4, 6, 32), (5, 6, 4, 32))),
    Case("crossformer", dict(dim=64, num_heads=2), ((2, 14, 21, 64), (1, 21, 14, 64))),
    Case("crossformer", dict(dim=64, num_heads=2, lsda_flag=1), ((2, 14, 21, 64), (1, 21, 14, 64))),
    *[Case("crossformer", dict(dim=16, num_heads=2, group_size=2, lsda_flag=f),
           ((2, 4, 6, 16), (3, 6, 4, 16)), definition="LSDA") for f in (0, 1)],
    # the authors' small-map rule: a map whose smaller side (input_resolution) is at most
    # group_size gets SDA with groups of that side, LDA asked for or not; a larger side
    # leaves group_size and lsda_flag alone
    Case("crossformer", dict(dim=32, num_heads=2, group_size=7, lsda_flag=1,
                             input_resolution=3), ((2, 3, 6, 32), (1, 6, 3, 32))),
    Case("crossformer", dict(dim=32, num_heads=2, group_size=4, input_resolution=4),
         ((2, 4, 4, 32), (1, 4, 8, 32))),
    Case("crossformer", dict(dim=16, num_heads=2, group_size=2, lsda_flag=1,
                             input_resolution=6), ((2, 6, 4, 16),), definition="LSDA"),
    # the authors' backbone block: any map size (padded to a multiple of G or of the LDA
    # interval, padded keys masked, padded queries cropped), LDA groups of run-time size;
    # maps that need no padding, padding on one side or both, groups of one row (H < 2·I)
    *[Case("crossformer", params, ((2, 7, 10, params["dim"]), (1, 9, 4, params["dim"]),
                                   (2, 6, 8, params["dim"])), definition=definition)
      for definition in ("CrossFormerBackboneBlock", "LSDABackbone")
      for params in (dict(dim=32, num_heads=2, group_size=3),
                     dict(dim=32, num_heads=4, group_size=3, interval=4, lsda_flag=1),
                     dict(dim=48, num_heads=3, group_size=2, interval=3, lsda_flag=1,
                          qkv_bias=False, qk_scale=0.3))],
    Case("crossformer", dict(dim=48, num_heads=3, group_size=4, mlp_ratio=2.5),
         ((2, 7, 10, 48), (1, 9, 4, 48)), definition="CrossFormerBackboneBlock"),
    # a side shorter than the interval: LDA groups that are all padding (0 here, uniform
    # weights in the authors' code; cropped either way), with and without attention dropout
    *[Case("crossformer", dict(dim=32, num_heads=2, group_size=2, interval=4, lsda_flag=1,
                               attn_drop=p), ((2, 3, 9, 32), (1, 9, 2, 32)),
           definition="LSDABackbone") for p in (0.0, 0.3)],
    Case("crossformer", dict(dim=32, num_heads=2, group_size=2, interval=2, lsda_flag=1,
                             drop=0.2, attn_drop=0.3, drop_path=0.4),
         ((2, 5, 7, 32), (3, 4, 6, 32)), definition="CrossFormerBackboneBlock"),
    Case("crossformer", dict(dim=32, num_heads=2, group_size=7, interval=8, lsda_flag=1,
                             input_resolution=5), ((2, 5, 9, 32), (1, 5, 5, 32)),
         definition="CrossFormerBackboneBlock"),
    # their Attention's position_bias switch off (no dynamic position bias; dim 8 < 16 is
    # then allowed): SDA and LDA blocks, and the backbone block on a padded map
    *[Case("crossformer", dict(dim=dim, num_heads=2, group_size=2, lsda_flag=f,
                               position_bias=False), ((2, 4, 6, dim), (1, 6, 2, dim)))
      for dim, f in ((32, 0), (8, 1))],
    Case("crossformer", dict(dim=32, num_heads=2, group_size=3, position_bias=False),
         ((2, 7, 10, 32), (1, 9, 4, 32)), definition="CrossFormerBackboneBlock"),
    # their Attention alone on groups, with their DynamicPosBias's residual MLP and without
    *[Case("crossformer", dict(dim=64, num_heads=4, dpb_residual=r),
           ((2, 2, 3, 3, 2, 64), (1, 1, 2, 4, 4, 64)), definition="GroupAttention")
      for r in (True, False)],
    # outlook (VOLO): one head; every option and both dropouts; stride 2 on even and odd maps
    # (a pooled window cut by the border: ceil mode); a 5×5 window at stride 1 and 3; the
    # Outlooker block at stride 1 and 2
    Case("outlook", dict(dim=8, num_heads=1), ((2, 5, 6, 8), (3, 7, 7, 8))),
    Case("outlook", dict(dim=12, num_heads=3, qkv_bias=True, qk_scale=0.3, attn_drop=0.2,
                         proj_drop=0.1), ((2, 5, 6, 12), (3, 7, 4, 12))),
    Case("outlook", dict(dim=16, num_heads=4, stride=2), ((2, 6, 8, 16), (3, 5, 7, 16))),
    Case("outlook", dict(dim=8, num_heads=2, kernel_size=5, padding=2),
         ((2, 5, 6, 8), (1, 3, 2, 8))),
    Case("outlook", dict(dim=8, num_heads=2, kernel_size=5, padding=2, stride=3,
                         attn_drop=0.3), ((2, 6, 9, 8), (1, 4, 5, 8))),
    Case("outlook", dict(dim=8, kernel_size=3, padding=1), ((2, 5, 6, 8), (3, 7, 7, 8)),
         definition="Outlooker"),
    Case("outlook", dict(dim=12, kernel_size=3, padding=1, stride=2, num_heads=3,
                         mlp_ratio=2.5, qkv_bias=True, attn_drop=0.2, drop_path=0.4),
         ((2, 6, 4, 12), (3, 7, 9, 12)), definition="Outlooker"),
    # gfnet (GFNet's global filter, Block and BlockLayerScale), [B, H, W, C]: odd and even W
    # (W // 2 + 1 = w frequencies), H ≠ W, the defaults (14 × 14 or 15, 8 frequencies)
    Case("gfnet", dict(dim=8, h=5, w=4), ((2, 5, 6, 8), (3, 5, 7, 8))),
    Case("gfnet", dict(dim=6, h=7, w=3), ((2, 7, 4, 6), (1, 7, 5, 6))),
    Case("gfnet", dict(dim=16), ((2, 14, 14, 16), (3, 14, 15, 16))),
    Case("gfnet", dict(dim=8, h=5, w=4), ((2, 5, 6, 8), (3, 5, 7, 8)), definition="GFNetBlock"),
    Case("gfnet", dict(dim=12, mlp_ratio=2.5, drop=0.3, drop_path=0.4, h=6, w=3),
         ((2, 6, 4, 12), (5, 6, 5, 12)), definition="GFNetBlock"),
    Case("gfnet", dict(dim=8, h=5, w=4), ((2, 5, 6, 8), (3, 5, 7, 8)),
         definition="GFNetBlockLayerScale"),
    Case("gfnet", dict(dim=10, mlp_ratio=3.0, drop=0.2, drop_path=0.3, h=4, w=5,
                       init_values=0.1),
         ((2, 4, 8, 10), (3, 4, 9, 10)), definition="GFNetBlockLayerScale"),
    # acmix (ACmix): the paper's 7 × 7 window, 4 heads; a 5 × 5 window, 3 heads, widths
    # apart; stride 2 (the authors' ResNet's first blocks) with a 3 × 3 and a 7 × 7 window
    Case("acmix", dict(in_planes=16, out_planes=16), ((2, 16, 5, 7), (3, 16, 8, 6))),
    Case("acmix", dict(in_planes=12, out_planes=24, kernel_att=5, head=3),
         ((2, 12, 5, 7), (1, 12, 9, 4))),
    Case("acmix", dict(in_planes=16, out_planes=16, kernel_att=3, head=2, stride=2),
         ((2, 16, 6, 8), (3, 16, 10, 4))),
    Case("acmix", dict(in_planes=8, out_planes=16, stride=2), ((2, 8, 8, 6), (3, 8, 4, 10))),
    # acmix's Swin variant (WindowAttention_acmix, W-MSA): windows of 4 and 3 on maps of
    # one, several and non-square windows, 2 and 3 heads, the authors' qkv bias off, a given
    # qk_scale, both dropouts
    Case("acmix", dict(dim=16, window_size=4, num_heads=2), ((2, 4, 4, 16), (3, 8, 12, 16)),
         definition="WindowAttentionACmix"),
    Case("acmix", dict(dim=24, window_size=3, num_heads=3, qkv_bias=False, qk_scale=0.3),
         ((2, 6, 3, 24), (1, 9, 6, 24)), definition="WindowAttentionACmix"),
    Case("acmix", dict(dim=16, window_size=2, num_heads=2, proj_drop=0.2),
         ((2, 4, 6, 16), (3, 2, 2, 16)), definition="WindowAttentionACmix"),
    # attn_drop goes to SDPA's dropout inside the windows (its own draws): compared in eval
    Case("acmix", dict(dim=16, window_size=2, num_heads=2, attn_drop=0.1, proj_drop=0.2),
         ((2, 4, 6, 16), (3, 2, 2, 16)), definition="WindowAttentionACmix", train=False),
    # its SW-MSA blocks (their block's cyclic shift and region mask): the shift
    # window_size / 2 as theirs, and others; one window (the mask alone), several,
    # non-square maps. proj_drop is drawn on the unrolled map here, on the rolled one
    # there: compared in eval
    Case("acmix", dict(dim=16, window_size=4, num_heads=2, shift_size=2),
         ((2, 8, 8, 16), (3, 12, 4, 16)), definition="WindowAttentionACmix"),
    Case("acmix", dict(dim=24, window_size=3, num_heads=3, shift_size=1, qk_scale=0.3),
         ((2, 6, 9, 24), (1, 3, 3, 24)), definition="WindowAttentionACmix"),
    Case("acmix", dict(dim=16, window_size=4, num_heads=2, shift_size=3, attn_drop=0.1,
                       proj_drop=0.2),
         ((2, 8, 4, 16), (3, 4, 12, 16)), definition="WindowAttentionACmix", train=False),
    # dat (DAT's deformable attention, the CVPR 2022 release): the position table at
    # stride 1, 2, 3; offsets bounded (s > 0), unbounded (s = 0), points squashed (s < 0);
    # every offset kernel (stage_idx); dwc_pe, fixed_pe, no_off, no position term; one
    # head per group; both dropouts
    Case("dat", dict(q_h=7, q_w=6, n_heads=4, n_head_channels=8, n_groups=2),
         ((2, 32, 7, 6), (3, 32, 7, 6))),
    Case("dat", dict(q_h=8, q_w=6, n_heads=4, n_head_channels=8, n_groups=2, stride=2,
                     offset_range_factor=-1.0, stage_idx=3), ((2, 32, 8, 6), (1, 32, 8, 6))),
    Case("dat", dict(q_h=7, q_w=5, n_heads=4, n_head_channels=8, n_groups=2, stride=2,
                     offset_range_factor=3.0, stage_idx=1, attn_drop=0.2, proj_drop=0.1),
         ((2, 32, 7, 5), (3, 32, 7, 5))),
    Case("dat", dict(q_h=7, q_w=5, n_heads=4, n_head_channels=8, n_groups=2, stride=3,
                     offset_range_factor=0.0), ((2, 32, 7, 5), (1, 32, 7, 5))),
    Case("dat", dict(q_h=5, q_w=6, n_heads=4, n_head_channels=8, n_groups=2, dwc_pe=True,
                     offset_range_factor=0.0, stride=2, stage_idx=1),
         ((2, 32, 5, 6), (3, 32, 5, 6))),
    Case("dat", dict(q_h=5, q_w=6, n_heads=4, n_head_channels=8, n_groups=2, fixed_pe=True),
         ((2, 32, 5, 6), (3, 32, 5, 6))),
    Case("dat", dict(q_h=7, q_w=6, n_heads=4, n_head_channels=8, n_groups=2, fixed_pe=True,
                     stride=2, offset_range_factor=-1.0), ((2, 32, 7, 6), (1, 32, 7, 6))),
    Case("dat", dict(q_h=7, q_w=6, n_heads=4, n_head_channels=8, n_groups=2, no_off=True,
                     offset_range_factor=-1.0, stride=2), ((2, 32, 7, 6), (1, 32, 7, 6))),
    Case("dat", dict(q_h=5, q_w=6, n_heads=4, n_head_channels=8, n_groups=2, use_pe=False,
                     stage_idx=0), ((2, 32, 5, 6), (3, 32, 5, 6))),
    Case("dat", dict(q_h=6, q_w=5, n_heads=4, n_head_channels=4, n_groups=4, stride=2),
         ((2, 16, 6, 5), (1, 16, 6, 5))),
    # nonlocal: every variant with and without BN, and other reductions
    *[
        Case("nonlocal", dict(C=16, variant=variant, bn=bn), image(16))
        for variant in ("embedded_gaussian", "dot_product", "gaussian", "concatenation")
        for bn in (True, False)
    ],
    Case("nonlocal", dict(C=12, variant="embedded_gaussian", reduction=3), image(12)),
    Case("nonlocal", dict(C=12, variant="dot_product", reduction=4, bn=False), image(12)),
    Case("nonlocal", dict(C=16, subsample=True, scale=True), image(16)),
    Case("nonlocal", dict(C=16, variant="gaussian", subsample=True, scale=True, bn=False),
         image(16)),
    Case("nonlocal", dict(C=16, variant="dot_product", subsample=True), image(16)),
    Case("nonlocal", dict(C=16, subsample=True, scale=True, bias=False), image(16)),
    # the authors' spacetime block on clips: their defaults (pooled keys, scaled logits),
    # then dot product without pooling, BatchNorm or biases
    Case("nonlocal", dict(C=16), ((2, 16, 3, 4, 6), (3, 16, 2, 5, 4)), definition="NonLocal3D"),
    Case("nonlocal", dict(C=12, variant="dot_product", reduction=3, subsample=False, bn=False,
                          bias=False), ((2, 12, 3, 4, 5), (1, 12, 2, 3, 3)),
         definition="NonLocal3D"),
    # their non-local within groups of consecutive frames (add_nonlocal_group): groups of
    # 2 of 4 and 6 frames, then groups of 1 frame, dot product, unpooled, no BatchNorm
    Case("nonlocal", dict(C=16, group_size=2), ((2, 16, 4, 4, 6), (3, 16, 6, 3, 4)),
         definition="NonLocal3D"),
    Case("nonlocal", dict(C=12, variant="dot_product", reduction=3, subsample=False, bn=False,
                          group_size=1), ((2, 12, 3, 4, 5), (1, 12, 2, 3, 3)),
         definition="NonLocal3D"),
    Case("nonlocal", dict(C=12, variant="concatenation", bn=False, bias=False), image(12)),
    Case("nonlocal", dict(C=12, variant="concatenation", reduction=3, subsample=True),
         image(12)),
    # external
    Case("external", dict(D=32), sequence(32)),
    Case("external", dict(D=16, S=8), sequence(16)),
    # external's segmentation unit (the authors' External_attention): their 64 slots, and 8
    Case("external", dict(C=16), image(16), definition="ExternalAttention"),
    Case("external", dict(C=12, S=8), image(12), definition="ExternalAttention"),
    # external's multi-head form: the authors' coef = 4 (S = 64) and a narrower one
    Case("external", dict(D=16, M=2), sequence(16), definition="ExternalMultiHead"),
    Case("external", dict(D=12, M=3, coef=2, S=10), sequence(12),
         definition="ExternalMultiHead"),
    Case("external", dict(D=16, M=2, attn_drop=0.1, proj_drop=0.2), sequence(16),
         definition="ExternalMultiHead"),
    # gcnet: every fusion (add, mul, both), two bottleneck widths (P = 4 and P = 8), and
    # average pooling. A LayerNorm over P = 2 values is too ill-conditioned for float32
    # tolerances (it maps them to +-1).
    *[
        Case("gcnet", dict(C=C, ratio=ratio, fusion=fusion), image(C))
        for C, ratio in ((64, 0.0625), (32, 0.25))
        for fusion in ("add", "mul", "both")
    ],
    *[Case("gcnet", dict(C=32, ratio=0.25, pooling="avg", fusion=fusion), image(32))
      for fusion in ("add", "mul", "both")],
    # cbam: with and without BN, default and small kernel ...
    *[
        Case("cbam", dict(C=C, r=r, k=k, bn=bn), image(C))
        for C, r, k in ((32, 16, 7), (16, 4, 3))
        for bn in (True, False)
    ],
    # ... one pooled descriptor (the paper's Table 1), and the channel gate alone
    *[Case("cbam", dict(C=16, r=4, k=3, pool=pool, no_spatial=alone), image(16))
      for pool, alone in (("avg", False), ("max", False), ("avg", True), ("both", True))],
    # ... their lp and lse pool types, with the two others, with one, alone, and all four
    *[Case("cbam", dict(C=16, r=4, k=3, pool=pool, lp=lp, lse=lse), image(16))
      for pool, lp, lse in (("both", True, False), ("avg", False, True),
                            ("none", True, False), ("none", False, True),
                            ("both", True, True))],
    Case("cbam", dict(C=32, pool="max", lse=True, no_spatial=True), image(32)),
    # ... the paper's spatial-first arrangement, with and without BN, with another pool
    *[Case("cbam", dict(C=C, r=r, k=k, bn=bn, pool=pool, order="spatial_first"), image(C))
      for C, r, k, bn, pool in ((32, 16, 7, True, "both"), (16, 4, 3, False, "avg"))],
    # ... and each gate as its own definition
    Case("cbam", dict(C=16, r=4, pool="max"), image(16), definition="ChannelGate"),
    Case("cbam", dict(C=16, r=4, pool="none", lp=True, lse=True), image(16),
         definition="ChannelGate"),
    Case("cbam", dict(C=32), image(32), definition="ChannelGate"),
    *[Case("cbam", params, image(8), definition="SpatialGate")
      for params in (dict(), dict(k=3, bn=False))],
    # danet and ccnet: the default and a smaller r (C // r = 4 and 8 or 6), on non-square
    # maps both ways (H < W and H > W), so a swapped H/W axis cannot pass
    *[
        Case(spec, params, ((2, params["C"], 5, 7), (3, params["C"], 6, 4)))
        for spec, params in (("danet", dict(C=32)), ("danet", dict(C=24, r=4)),
                             ("danet", dict(C=16, cam="paper")),
                             ("ccnet", dict(C=32)), ("ccnet", dict(C=24, r=4, R=1)),
                             ("ccnet", dict(C=16, r=2, R=3)))
    ],
    # ccnet's 3-D criss-cross (the authors' CrissCrossAttention3D, the query once): three
    # different sides both ways, the default r and a smaller one
    Case("ccnet", dict(C=16), ((2, 16, 3, 4, 5), (1, 16, 5, 3, 4)),
         definition="CrissCross3D"),
    Case("ccnet", dict(C=12, r=4), ((2, 12, 4, 2, 3), (3, 12, 2, 5, 1)),
         definition="CrissCross3D"),
    # ... and danet's two branches alone
    *[Case("danet", params, ((2, params.get("C", 8), 5, 7), (3, params.get("C", 8), 6, 4)),
           definition="PositionAttention") for params in (dict(C=32), dict(C=24, r=4))],
    *[Case("danet", params, ((2, 8, 5, 7), (3, 6, 6, 4)), definition="ChannelAttention")
      for params in (dict(), dict(cam="paper"))],
    # aft (AFT-simple): with and without the output projection, without biases
    Case("aft", dict(D=32), sequence(32)),
    Case("aft", dict(D=16, proj=False), sequence(16)),
    Case("aft", dict(D=24, bias=False), sequence(24)),
    # AFT-full and AFT-local: w for up to T = 8 positions (sequences of 7 and 5); windows of
    # s = 2 and 3
    Case("aft", dict(D=16, variant="full", T=8), sequence(16)),
    Case("aft", dict(D=16, variant="local", T=8, s=2), sequence(16)),
    Case("aft", dict(D=8, variant="local", T=7, s=3, proj=False), sequence(8)),
    # causal (the paper's autoregressive models): every variant's sums stop at t
    Case("aft", dict(D=16, causal=True), sequence(16)),
    # ... AFT-simple's over several chunks of the running sums (64 positions each)
    Case("aft", dict(D=8, causal=True, proj=False), ((2, 150, 8), (1, 64, 8))),
    Case("aft", dict(D=12, variant="full", T=8, causal=True, bias=False), sequence(12)),
    Case("aft", dict(D=8, variant="local", T=7, s=2, causal=True), sequence(8)),
    # aft.AFTConv (AFT-conv, Eq. 6, its kernels reparameterised by Eq. 8): heads of several
    # channels; h = D, s = 11 (window larger than the maps); no output projection; no
    # biases, 7×7; kernels learned directly, of one offset per head (s = 1) and of 5 × 5
    Case("aft", dict(D=16, h=4, s=3), ((2, 5, 6, 16), (3, 7, 7, 16)), definition="AFTConv"),
    Case("aft", dict(D=8), ((2, 5, 6, 8), (1, 4, 3, 8)), definition="AFTConv"),
    Case("aft", dict(D=12, h=3, s=5, proj=False), ((2, 5, 6, 12), (3, 2, 9, 12)),
         definition="AFTConv"),
    Case("aft", dict(D=16, h=2, s=7, bias=False), ((2, 5, 6, 16), (3, 8, 7, 16)),
         definition="AFTConv"),
    Case("aft", dict(D=6, h=6, s=1, reparam=False), ((2, 3, 4, 6), (1, 2, 5, 6)),
         definition="AFTConv"),
    Case("aft", dict(D=8, h=2, s=5, reparam=False), ((2, 5, 6, 8), (1, 4, 7, 8)),
         definition="AFTConv"),
    # attention_pool: A = D (HAN), a narrower and a wider A, without the bias b
    # attention_pool's Luong attention: decoder states over 6 encoder states, the three
    # scores (concat: an additive E1), with a source padding mask
    Case("attention_pool", dict(D=16), sequence(16), definition="Luong", memory=6),
    Case("attention_pool", dict(D=16, score="dot"), sequence(16), definition="Luong",
         memory=6, pad=True),
    Case("attention_pool", dict(D=12), sequence(12), definition="Luong", memory=4, pad=True),
    Case("attention_pool", dict(D=16, score="concat"), sequence(16), definition="Luong",
         memory=6),
    Case("attention_pool", dict(D=12, score="concat"), sequence(12), definition="Luong",
         memory=4, pad=True),
    # ... their location score W_a h_t: sources shorter than `longest`, and longer (the
    # positions beyond it score 0), padded, under each alignment
    Case("attention_pool", dict(D=16, score="location", longest=8), sequence(16),
         definition="Luong", memory=6),
    Case("attention_pool", dict(D=12, score="location", longest=4), sequence(12),
         definition="Luong", memory=6, pad=True),
    Case("attention_pool", dict(D=12, score="location", longest=5, align="local_m",
                                half_width=1), sequence(12), definition="Luong", memory=7,
         pad=True),
    Case("attention_pool", dict(D=12, score="location", longest=9, align="local_p",
                                half_width=2), sequence(12), definition="Luong", memory=6,
         pad=True),
    # ... their local-m alignment: windows of 2 and 1 around t (queries past the source's
    # end by more than that see nothing), padded, every score
    *[Case("attention_pool", dict(D=12, score=score, align="local_m", half_width=w),
           sequence(12), definition="Luong", memory=4, pad=pad)
      for score, w, pad in (("general", 2, False), ("dot", 1, True), ("concat", 2, True))],
    # ... and their local-p: windows of 1 to 3 around the predicted p_t and the Gaussian,
    # padded sources (S the unpadded length), every score
    *[Case("attention_pool", dict(D=12, score=score, align="local_p", half_width=w),
           sequence(12), definition="Luong", memory=m, pad=pad)
      for score, w, m, pad in (("general", 2, 6, False), ("dot", 1, 4, True),
                               ("concat", 3, 9, True), ("general", 2, 7, True))],
    Case("attention_pool", dict(D=32), sequence(32)),
    Case("attention_pool", dict(D=32, A=16), sequence(32)),
    Case("attention_pool", dict(D=16, A=24, bias=False), sequence(16)),
    Case("attention_pool", dict(D=32, A=16), sequence(32), pad=True),
    # ocnet (base-OC): K = V = C / 2 (the authors' 512 -> 256), then K != V; drop = 0 so
    # train mode is deterministic; non-square maps both ways
    *[
        Case("ocnet", params, ((2, params["C"], 5, 7), (3, params["C"], 6, 4)))
        for params in (dict(C=32, drop=0.0), dict(C=24, K=8, V=16, drop=0.0),
                       dict(C=16, K=12, V=4, drop=0.0))
    ],
    # pyramid-OC: parts of 1, 2, 3, 6 on maps of 7×13 (uneven parts) and 5×4 (fewer rows
    # than parts: the last part takes them all, as the authors' slicing leaves it)
    Case("ocnet", dict(C=8, drop=0.0), ((2, 8, 7, 13), (2, 8, 5, 4)), definition="PyramidOC"),
    Case("ocnet", dict(C=12, drop=0.0), ((3, 12, 6, 6), (2, 12, 9, 5)), definition="PyramidOC"),
    # base-OC on the 2 × 2 and 3 × 3 max-pooled map, resized back (their scale)
    Case("ocnet", dict(C=16, scale=2, drop=0.0), ((2, 16, 6, 8), (3, 16, 7, 5))),
    Case("ocnet", dict(C=12, K=8, V=4, scale=3, drop=0.0), ((2, 12, 9, 7), (3, 12, 6, 6))),
    # the authors' channel dropout (their 0.05 and 0.1), drawn in the same order by both
    Case("ocnet", dict(C=16), ((2, 16, 5, 7), (3, 16, 6, 4))),
    Case("ocnet", dict(C=8), ((2, 8, 7, 13), (2, 8, 5, 4)), definition="PyramidOC"),
    # the self-attention block alone: whole map, and 2 × 2 parts
    Case("ocnet", dict(C=16, K=8, V=12, out=16), ((2, 16, 5, 7), (3, 16, 6, 4)),
         definition="ObjectContext"),
    Case("ocnet", dict(C=8, K=4, V=4, out=6, parts=2), ((2, 8, 5, 7), (3, 8, 6, 4)),
         definition="ObjectContext"),
    # ASP-OC: small dilations so that every branch reaches inside the map, then the
    # authors' 12, 24, 36 (mostly zero padding on small maps); odd sizes for the pooling
    Case("ocnet", dict(C=16, d1=1, d2=2, d3=3, drop=0.0), ((2, 16, 7, 9), (3, 16, 6, 5)),
         definition="ASPOC"),
    Case("ocnet", dict(C=12, out=4, drop=0.0), ((2, 12, 9, 8), (3, 12, 5, 6)),
         definition="ASPOC"),
    Case("ocnet", dict(C=16, d1=1, d2=2, d3=3), ((2, 16, 7, 9), (3, 16, 6, 5)),
         definition="ASPOC"),
    # sge: the paper's G = 64 and fewer, larger groups; non-square maps both ways
    *[
        Case("sge", params, ((2, params["C"], 5, 7), (3, params["C"], 6, 4)))
        for params in (dict(C=128), dict(C=32, G=4), dict(C=24, G=8))
    ],
    # shuffle: the paper's G = 64 (one channel per half), fewer groups with wider halves,
    # and an odd group count (the shuffle's two groups then cut through a group);
    # non-square maps both ways
    *[
        Case("shuffle", params, ((2, params["C"], 5, 7), (3, params["C"], 6, 4)))
        for params in (dict(C=128), dict(C=32, G=4), dict(C=36, G=3))
    ],
    # sk: the paper's r = 16, L = 32, G = 32, then a small d and groups, then d = C / r
    # above the floor L (32 > 8); the BatchNorms keep the authors' momentum, so train mode
    # checks the running statistics too. Float64 only: in train mode the squeeze's
    # BatchNorm normalises B pooled vectors (2 to 4 here), and its float32 backward
    # magnifies rounding until each module's gradients stand 2e-4 to 7e-4 from the float64
    # result (measured at these shapes, on an AMD EPYC; the gate, 1e-5 of the largest
    # gradient, is 1.3e-4 to 2.5e-4), so two float32 codes cannot be compared there
    *[
        Case("sk", params, ((2, params["C"], 5, 7), (3, params["C"], 6, 4)), float32=False)
        for params in (dict(C=64), dict(C=32, r=4, L=8, G=8))
    ],
    Case("sk", dict(C=64, r=2, L=8, G=16), ((4, 64, 5, 7), (3, 64, 6, 4)), float32=False),
    Case("sk", dict(C=32, r=4, L=8, G=8, stride=2), ((4, 32, 5, 7), (3, 32, 6, 4)),
         float32=False),
    # SK[3, G, r]: a third branch dilated by 3, plain and strided
    Case("sk", dict(C=32, r=4, L=8, G=8, M=3), ((4, 32, 5, 7), (3, 32, 8, 6)), float32=False),
    Case("sk", dict(C=64, r=2, L=8, G=16, stride=2, M=3), ((4, 64, 9, 7), (3, 64, 6, 4)),
         float32=False),
    # float32 in eval mode (the BatchNorms' running statistics: well conditioned)
    Case("sk", dict(C=64), ((3, 64, 7, 5),), train=False),
    # sanet (SA module): the defaults (out = C, 2×2 pooling, nearest), then fewer output
    # channels with bilinear upsampling, then a 3×3 pooling window; odd and even sizes, both
    # ways non-square, so the pooling drops edges and the upsampling cannot be a plain ×2
    *[
        Case("sanet", params, ((2, params["C"], 5, 7), (3, params["C"], 8, 6)))
        for params in (dict(C=16), dict(C=16, out=8, mode="linear"),
                       dict(C=8, out=12, pool=3))
    ],
    # bam: the paper's r = 16, d = 4 and sum of the branches, then the authors' code's
    # product of them, then a small C / r with dilation 2; odd sizes, both ways non-square,
    # smaller than the dilated convs' reach, so a conv that shrinks the map cannot pass
    *[
        Case("bam", params, ((2, params["C"], 5, 7), (3, params["C"], 9, 6)))
        for params in (dict(C=64), dict(C=64, fusion="mul"), dict(C=24, r=4, d=2),
                       dict(C=32, r=4, num_layers=3, dilation_conv_num=1),
                       dict(C=32, r=8, num_layers=2, dilation_conv_num=0))
    ],
    # effective_se: one C -> C 1×1 conv and a hard sigmoid; a small, a mid and an odd
    # width, on odd and even sizes, both ways non-square
    *[
        Case("effective_se", params, ((2, params["C"], 5, 7), (3, params["C"], 8, 6)))
        for params in (dict(C=8), dict(C=64), dict(C=33))
    ],
    # gather_excite (GE-θ⁻, global extent): no parameters; even, odd and non-square sizes,
    # a 1 × 1 map, and a single row
    Case("gather_excite", dict(), ((2, 16, 5, 6), (3, 8, 7, 7), (2, 4, 1, 1), (3, 5, 1, 9))),
    # local extents 2, 4, 8 (timm's GatherExcite gather); maps not divisible by the extent
    *[Case("gather_excite", dict(extent=e), ((2, 8, 7, 9), (3, 4, 16, 5))) for e in (2, 4, 8)],
    # GE-θ and GE-θ⁺ (the authors' RN50-GEP and RN50-GEPP): a gather as wide as the map, so
    # each shape is its own parameter setting (a square and a non-square map); r = 16, 4
    *[Case("gather_excite", dict(C=C, H=H, W=W), ((2, C, H, W), (3, C, H, W)),
           definition="GatherExciteTheta") for C, H, W in ((16, 7, 7), (8, 5, 6))],
    *[Case("gather_excite", dict(C=C, H=H, W=W, r=r), ((2, C, H, W), (3, C, H, W)),
           definition="GatherExciteThetaPlus") for C, H, W, r in ((32, 7, 7, 16), (8, 5, 6, 4))],
    # triplet: the authors' 7 × 7 gates, a 3 × 3 one, and without the H–W gate
    Case("triplet", dict(), image(8)),
    Case("triplet", dict(kernel=3), ((2, 6, 5, 9), (3, 5, 4, 4))),
    Case("triplet", dict(spatial=False), image(8)),
    Case("triplet", dict(kernel=5, spatial=False), ((2, 6, 5, 9), (3, 5, 4, 4))),
    # simam: the authors' λ and a large one; maps of 1 × 2 (one degree of freedom) too
    Case("simam", dict(), ((2, 8, 5, 6), (3, 4, 7, 7), (2, 3, 1, 2))),
    Case("simam", dict(lam=0.5), image(8)),
    # generalized (Zhu 2019, mmcv's GeneralizedAttention): all four terms; each term alone;
    # the pairs and triples the paper compares; key strides 1 and 2; a window; an inner
    # width below C (C = 16, M = 3); another position encoding width and magnitude
    Case("generalized", dict(C=16, M=4), image(16)),
    *[
        Case("generalized", dict(C=16, M=4, e1=t[0] == "1", e2=t[1] == "1", e3=t[2] == "1",
                                 e4=t[3] == "1", kv_stride=stride), image(16))
        for t in ("1000", "0100", "0010", "0001", "1100", "1010", "0101", "0111", "1110")
        for stride in (1, 2)
    ],
    Case("generalized", dict(C=16, M=3, spatial_range=1, kv_stride=1), image(16)),
    Case("generalized", dict(C=16, M=2, spatial_range=2), image(16)),
    Case("generalized", dict(C=16, M=4, e3=False, spatial_range=2, kv_stride=2), image(16)),
    Case("generalized", dict(C=16, M=1, position_dim=8, magnitude=3), image(16)),
    # q_stride (mmcv's query downsampling, the result resized back bilinearly): every term,
    # each geometric term alone, E3 alone (one energy for every query), strides 2 and 3,
    # with and without key pooling, a window in input positions
    Case("generalized", dict(C=16, M=4, q_stride=2), image(16)),
    Case("generalized", dict(C=16, M=4, q_stride=2, kv_stride=1), image(16)),
    Case("generalized", dict(C=16, M=2, q_stride=3, spatial_range=2), image(16)),
    Case("generalized", dict(C=16, M=4, q_stride=2, e1=False, e3=False, e4=False), image(16)),
    Case("generalized", dict(C=16, M=4, q_stride=2, e1=False, e2=False, e3=False), image(16)),
    Case("generalized", dict(C=16, M=4, q_stride=2, e1=False, e2=False, e4=False), image(16)),
    # conv_as_attention: equals F.conv2d with 'same' padding; kernels 1, 3 and 5, a
    # different output width, and a 5×5 kernel on maps smaller than it
    Case("conv_as_attention", dict(C=8), image(8)),
    Case("conv_as_attention", dict(C=8, out=5, kernel=5), image(8)),
    Case("conv_as_attention", dict(C=6, out=4, kernel=1), image(6)),
    Case("conv_as_attention", dict(C=4, kernel=5), ((2, 4, 3, 2), (1, 4, 1, 1))),
    # deformable: random (so non-zero) offsets move every sampling point off the grid,
    # some outside the map; kernels 3 and 1, another output width
    Case("deformable", dict(C=4), ((2, 4, 5, 6), (1, 4, 4, 4))),
    Case("deformable", dict(C=6, out=3), ((2, 6, 5, 6), (3, 6, 3, 7))),
    Case("deformable", dict(C=4, kernel=1), ((2, 4, 5, 6),)),
    # DCNv2's modulation: each sampled point scaled by a predicted Δm in [0, 1]
    Case("deformable", dict(C=4, modulation=True), ((2, 4, 5, 6), (1, 4, 4, 4))),
    Case("deformable", dict(C=6, out=3, modulation=True), ((2, 6, 5, 6), (3, 6, 3, 7))),
    Case("deformable", dict(C=4, modulation=True, modulation_scale=2.0),  # the authors' 2·σ
         ((2, 4, 5, 6), (1, 4, 4, 4))),
    # the authors' stride (odd and even sides), dilation (their res5's 2) and deformable
    # groups (their 4), alone and together, with modulation
    Case("deformable", dict(C=4, stride=2), ((2, 4, 5, 6), (1, 4, 4, 7))),
    Case("deformable", dict(C=4, out=3, dilation=2), ((2, 4, 5, 6), (1, 4, 4, 4))),
    Case("deformable", dict(C=8, deformable_groups=4), ((2, 8, 5, 6), (1, 8, 3, 4))),
    Case("deformable", dict(C=6, out=4, stride=2, dilation=2, deformable_groups=2,
                            modulation=True), ((2, 6, 5, 6), (1, 6, 7, 4))),
    Case("deformable", dict(C=4, kernel=5, stride=3, deformable_groups=2), ((2, 4, 7, 8),)),
    # a2: the default widths (C / 4), c_m ≠ c_n both ways
    Case("a2", dict(C=16), image(16)),
    Case("a2", dict(C=12, cm=5, cn=3), image(12)),
    Case("a2", dict(C=8, cm=2, cn=6), image(8)),
    # muse, the authors' form: their kernels 3 and 15 on sequences shorter than the wide
    # one, 4 and 2 heads, other kernels, padding (hidden from the attention; zeroed before
    # the convolutions with dynamic_padding), and both dropouts (the weight dropout is the
    # authors' 0.1 by default)
    Case("muse", dict(D=16, M=4), sequence(16)),
    Case("muse", dict(D=12, M=2, kernel_small=1, kernel_wide=5, weight_dropout=0.0),
         ((2, 7, 12), (3, 2, 12)), pad=True),
    Case("muse", dict(D=8, M=2, kernel_small=2, kernel_wide=4), ((2, 7, 8), (3, 3, 8))),
    # the decoder's form: causal attention, the convolutions' taps ending at the position
    Case("muse", dict(D=16, M=4, causal=True), sequence(16), pad=True),
    Case("muse", dict(D=8, M=2, kernel_small=2, kernel_wide=5, causal=True,
                      weight_dropout=0.0), ((2, 7, 8), (3, 3, 8))),
    Case("muse", dict(D=16, M=4, dynamic_padding=True, attention_dropout=0.1),
         sequence(16), pad=True),
    # muse's popular re-implementation form: 8 and 2 heads, sequences shorter than the
    # widest kernel too
    Case("muse", dict(D=16), sequence(16), definition="MUSESeparable"),
    Case("muse", dict(D=12, M=2), ((2, 7, 12), (3, 2, 12)), definition="MUSESeparable"),
    # psanet: masks covering the map (2H − 1) and smaller ones (zeros join the softmax, as
    # the authors' PSAMask leaves them); each direction; no softmax; a normalisation factor.
    # With the 3×5 mask, through three train-mode BatchNorms of a few channels, float32 is
    # ill-conditioned: on 3×16×7×7 both modules are 1e-5 to 3e-5 off the float64 result (the
    # reference more), so that case is compared in float64 only (to 1e-10)
    Case("psanet", dict(C=16, mask_h=13, mask_w=13, shrink=1), image(16)),
    Case("psanet", dict(C=16, mask_h=3, mask_w=5, shrink=1), image(16), float32=False),
    Case("psanet", dict(C=16, mask_h=5, mask_w=3, direction="collect", shrink=1), image(16),
         float32=False),  # ill-conditioned in float32 train mode as the 3 × 5 case
    Case("psanet", dict(C=8, mask_h=7, mask_w=7, direction="distribute", normalise=False,
                        normalization=49.0, shrink=1), image(8)),
    # the authors' shrink_factor 2: the attention on ((H − 1) / 2 + 1)-sized maps, on inputs
    # whose H − 1 and W − 1 are even (as their concatenation with the input requires)
    Case("psanet", dict(C=16, mask_h=9, mask_w=9), ((2, 16, 5, 7), (3, 16, 9, 7))),
    Case("psanet", dict(C=16, mid=8, mask_h=5, mask_w=7), ((2, 16, 5, 7), (3, 16, 9, 7))),
    Case("psanet", dict(C=16, mask_h=3, mask_w=5, direction="distribute"),
         ((2, 16, 7, 9), (3, 16, 5, 5))),
    # the authors' compact mode: one logit per absolute position of the resized map, which
    # must be mask_h × mask_w (fixed: only the batch varies); both directions with their
    # shrink_factor, each alone, no softmax with a normalisation factor
    Case("psanet", dict(C=16, mask_h=3, mask_w=4, compact=True), ((2, 16, 5, 7), (3, 16, 5, 7))),
    Case("psanet", dict(C=16, mask_h=5, mask_w=3, compact=True, shrink=1),
         ((2, 16, 5, 3), (1, 16, 5, 3))),
    Case("psanet", dict(C=8, mask_h=4, mask_w=3, direction="collect", compact=True, shrink=1),
         ((2, 8, 4, 3), (3, 8, 4, 3))),
    Case("psanet", dict(C=8, mask_h=4, mask_w=5, direction="distribute", compact=True,
                        normalise=False, normalization=20.0), ((2, 8, 7, 9), (3, 8, 7, 9))),
    # emanet: the authors' T = 3 and fewer bases; one step (the reconstruction then uses
    # the initial bases' responsibilities); five. With C = 16, K = 8 the float32 gradient
    # of the last conv through a train-mode BatchNorm is 4e-4 to 1e-3 off float64 in both
    # modules (measured on three inputs): float64 only there
    Case("emanet", dict(C=16, K=8), image(16), float32=False),
    Case("emanet", dict(C=8, K=3, T=1), image(8)),
    Case("emanet", dict(C=8, K=4, T=5), image(8)),
]

# Inputs are INPUT_SCALE * randn. At scale 1 the gaussian non-local's logits x_q.x_k
# (quadratic in x) make a peaky softmax whose float32 input gradient is off by up to
# 0.7x the tolerance from the float64 value, too close for comparing two float32 codes.
INPUT_SCALE = 0.5

DTYPES = {"float32": torch.float32, "float64": torch.float64}
MODES = ("eval", "train")

PARAMS = [
    pytest.param(case, shape, dtype, mode,
                 id=f"{case.id}-{'x'.join(map(str, shape))}-{dname}-{mode}")
    for case in CASES
    for shape in case.shapes
    for dname, dtype in DTYPES.items()
    for mode in MODES
    if (case.float32 or dtype is torch.float64) and (case.train or mode == "eval")
]


def _seed(*parts) -> int:
    """A stable seed per test (independent of test order and of PYTHONHASHSEED)."""
    return zlib.crc32(repr(parts).encode())


def _pad_mask(B: int, N: int, gen: torch.Generator) -> torch.Tensor:
    """Random key padding mask [B, N], True = ignore that key.

    Key 0 is never masked, so no query row is fully masked, with or without a causal
    range (query 0 sees only key 0 when causal); one key is always masked.
    """
    mask = torch.rand(B, N, generator=gen) < 0.4
    mask[:, 0] = False
    mask[0, -1] = True
    return mask


def _global_tokens(B: int, N: int, gen: torch.Generator, pad) -> torch.Tensor:
    """Random global tokens [B, N] (Longformer's): none of them padding; sample 0 has at
    least two, the last sample none (its rows are the window's alone)."""
    glob = torch.rand(B, N, generator=gen) < 0.25
    glob[0, 1] = glob[0, -2] = True
    if B > 1:
        glob[-1] = False
    return glob if pad is None else glob & ~pad


def _build(case: Case, dtype: torch.dtype, seed: int):
    if case.definition:
        compiled = attnspec.compile_file(spec_path(case.spec), case.definition, **case.params)
        reference = REFERENCES[f"{case.spec}.{case.definition}"](**case.params)
    else:
        compiled = attnspec.load(case.spec, **case.params)
        reference = REFERENCES[case.spec](**case.params)
    randomize_(compiled, seed)
    copy_weights(compiled, reference)
    return compiled.to(dtype), reference.to(dtype)


def _outputs(out) -> tuple:
    """A module's outputs as a tuple (`output y, mu` returns several)."""
    return out if isinstance(out, tuple) else (out,)


def _grads(module: torch.nn.Module):
    return [(name, p.grad) for name, p in module.named_parameters()]


@pytest.mark.parametrize("case, shape, dtype, mode", PARAMS)
def test_compiled_matches_reference(case: Case, shape: tuple, dtype: torch.dtype,
                                    mode: str):
    seed = _seed(case.id, shape)
    compiled, reference = _build(case, dtype, seed)
    compiled.train(mode == "train")
    reference.train(mode == "train")
    tol = TOLERANCES[dtype]

    gen = torch.Generator().manual_seed(seed)
    x = (INPUT_SCALE * torch.randn(shape, generator=gen, dtype=torch.float64)).to(dtype)
    kwargs = {}
    if case.memory:
        other = list(shape)
        other[case.memory_axis] = case.memory
        other[-1] = case.memory_width or other[-1]
        kwargs[case.memory_name] = (INPUT_SCALE * torch.randn(
            other, generator=gen, dtype=torch.float64)).to(dtype)
    if case.pad:  # over the keys: the memory's positions when there is one
        kwargs["pad"] = _pad_mask(shape[0], case.memory or shape[1], gen)
    if case.glob:
        kwargs["glob"] = _global_tokens(shape[0], shape[1], gen, kwargs.get("pad"))
    x_c = x.clone().requires_grad_(True)
    x_r = x.clone().requires_grad_(True)

    # forward, each from the same random state: dropout on tensors of the same shape draws
    # the same mask in both
    torch.manual_seed(seed)
    outs_c = _outputs(compiled(x_c, **kwargs))
    torch.manual_seed(seed)
    outs_r = _outputs(reference(x_r, **kwargs))
    assert len(outs_c) == len(outs_r), f"{len(outs_c)} outputs, the reference {len(outs_r)}"
    for i, (out_c, out_r) in enumerate(zip(outs_c, outs_r)):
        assert out_c.dtype == dtype, f"compiled output is {out_c.dtype}, expected {dtype}"
        torch.testing.assert_close(out_c, out_r, **tol, msg=lambda m: f"output {i}: {m}")

    # state after the forward: BatchNorm running stats in train mode, unchanged in eval
    state_c, state_r = compiled.state_dict(), reference.state_dict()
    for (kc, vc), (kr, vr) in zip(state_c.items(), state_r.items()):
        torch.testing.assert_close(vc.reshape(vr.shape), vr, **tol,
                                   msg=lambda m: f"state {kc!r} vs {kr!r}: {m}")

    # backward through a fixed random projection of the output
    ws = [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(dtype) for o in outs_r]
    sum((o * w).sum() for o, w in zip(outs_c, ws)).backward()
    sum((o * w).sum() for o, w in zip(outs_r, ws)).backward()
    # Through a train-mode BatchNorm the input gradient is a difference of terms as large
    # as its largest entry (here up to ~5), so atol follows that size (at least 1), as
    # for the parameter gradients below.
    xscale = max(1.0, x_r.grad.abs().max().item())
    torch.testing.assert_close(x_c.grad, x_r.grad, atol=tol["atol"] * xscale, rtol=tol["rtol"],
                               msg=lambda m: f"grad x: {m}")

    # Parameter gradients. Some are sums whose terms cancel (GCNet's mask-conv gradient;
    # phi's bias gradient is exactly 0 under a softmax), so their rounding error follows
    # the size of the terms, not of the result: atol is scaled by the model's largest
    # gradient entry (at least 1).
    grads_c, grads_r = _grads(compiled), _grads(reference)
    assert len(grads_c) == len(grads_r), (
        f"parameter counts differ: compiled {[n for n, _ in grads_c]}, "
        f"reference {[n for n, _ in grads_r]}")
    scale = max([1.0] + [g.abs().max().item() for _, g in grads_r if g is not None])
    ptol = dict(atol=tol["atol"] * scale, rtol=tol["rtol"])
    for (nc, gc), (nr, gr) in zip(grads_c, grads_r):
        assert (gc is None) == (gr is None), f"grad of {nc!r} is {gc}, of {nr!r} is {gr}"
        if gc is not None:
            torch.testing.assert_close(gc.reshape(gr.shape), gr, **ptol,
                                       msg=lambda m: f"grad {nc!r} vs {nr!r}: {m}")


# every setting's FLOPs as the IR counts them (defaults alone are counted in
# test_every_spec.py); a second input (cross-attention's memory) is not sampled here
@pytest.mark.parametrize("case", [c for c in CASES if not c.memory], ids=lambda c: c.id)
def test_flops_match_torch_flop_counter(case: Case):
    ir = attnspec.build_ir(spec_path(case.spec), case.definition, **case.params)
    x = torch.randn(case.shapes[0])
    ours, torchs = flops_both_ways(ir, x)
    assert ours == torchs


@pytest.mark.parametrize("params", [dict(C=8, k=4, h=2, r=3), dict(C=6, d=9, k=2, h=3, r=5)])
def test_the_lambdas_form_with_one_slice_is_the_attention_form(params):
    """LambdaIntraDepth(u = 1) sums what LambdaLayer sums, in the other order (the lambdas
    first): with the same weights (the position table [k, r·r] as the kernel [k, 1, r, r]),
    the same outputs."""
    path = spec_path("lambda_layer")
    attention = randomize_(attnspec.compile_file(path, **params), 0).double().eval()
    lambdas = attnspec.compile_file(path, "LambdaIntraDepth", u=1, **params).double().eval()
    state = attention.state_dict()
    source = {"query_conv1x1": "q_conv1x1", "query_batchnorm": "q_batchnorm",
              "key_conv1x1": "keys_conv1x1", "value_conv1x1": "value_conv1x1",
              "value_batchnorm": "value_batchnorm", "lambda_conv": "position_linear"}
    for name, t in lambdas.state_dict().items():
        module, entry = name.split(".", 1)
        t.copy_(state[f"{source[module]}.{entry}"].reshape(t.shape))
    x = torch.randn(2, params["C"], 5, 6, dtype=torch.float64)
    torch.testing.assert_close(lambdas(x), attention(x), rtol=1e-10, atol=1e-10)
