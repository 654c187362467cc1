"""MobileViT block.

Paper: Mehta, Rastegari, "MobileViT: Light-weight, General-purpose, and Mobile-friendly
Vision Transformer", ICLR 2022, arXiv:2110.02178 (§3.1, Fig. 1b). Follows the authors' code,
apple/ml-cvnets: cvnets/modules/mobilevit_block.py, MobileViTBlock (forward_spatial,
unfolding, folding); cvnets/modules/transformer.py, TransformerEncoder (pre-norm);
cvnets/layers/multi_head_attention.py, MultiHeadAttention (forward_default). On x [B, C, H, W]:
- local_rep: conv n×n (dilation, no bias), BatchNorm, SiLU; conv 1×1 C -> d (no bias, no
  norm, no activation);
- unfold: [B, d, H, W] -> [B·P, N, d], P = patch_h·patch_w pixel positions (row-major in the
  patch), N = (H / patch_h)(W / patch_w) patches (row-major): every pixel position is its
  own sequence of N tokens;
- global_rep: n_transformer_blocks TransformerEncoders, each
      x = x + Dropout(out_proj(MHA(LayerNorm(x))))
      x = x + Dropout(Linear(Dropout(SiLU(Linear(LayerNorm(x))))))
  MHA: one Linear d -> 3d (bias) read as [3, heads, head_dim] (q, k, v; heads contiguous),
  q scaled by head_dim^-0.5, softmax over the keys, attention dropout, heads concatenated,
  out_proj d -> d (bias); then a final LayerNorm;
- fold back to [B, d, H, W]; conv_proj: 1×1 conv d -> C (no bias), BatchNorm, SiLU;
- fusion (unless no_fusion): concat(input, that) over the channels, conv n×n 2C -> C (no
  bias), BatchNorm, SiLU.
heads = transformer_dim / head_dim (must divide, as the authors assert). The authors' models
use SiLU (`swish`) and LayerNorm (`transformer_norm_layer`), as here. With one head they use
SingleHeadAttention, the same computation (scale d^-0.5 = head_dim^-0.5); one class here.

Deviations, all shared with the spec:
- n_transformer_blocks >= 1 (the authors allow 0: a LayerNorm alone).
- The softmax runs in the input's dtype; the authors cast the logits to float32 for it
  (attn.float()), which rounds float64 logits to float32.
- LayerNorm always normalises the last (feature) axis, as the paper's pre-norm transformer.
  The authors' cvnets LayerNorm instead takes a channel-first path (normalising axis 1, with
  (x - mean) / (std + eps)) whenever axis 1 of its input has the feature width: on the
  [B·P, N, d] tokens that happens when N == d, a shape-sniffing quirk not reproduced here.
- The time-series forward (x_prev) and `transformer_norm_layer` are not parameters.
"""

import torch
from torch import nn
from torch.nn import functional as F


def _conv_bn_silu(cin: int, cout: int, k: int, dilation: int = 1, norm_act: bool = True):
    """The authors' ConvLayer2d: a bias-free conv, then (optionally) BatchNorm and SiLU."""
    block = nn.Sequential()
    block.add_module("conv", nn.Conv2d(cin, cout, k, padding=(k - 1) // 2 * dilation,
                                       dilation=dilation, bias=False))
    if norm_act:
        block.add_module("norm", nn.BatchNorm2d(cout))
        block.add_module("act", nn.SiLU())
    return block


class _MultiHeadAttention(nn.Module):
    """Self-attention on tokens [b, S, d]."""

    def __init__(self, d: int, heads: int, attn_dropout: float):
        super().__init__()
        self.heads, self.head_dim = heads, d // heads
        self.qkv_proj = nn.Linear(d, 3 * d)
        self.attn_dropout = nn.Dropout(attn_dropout)
        self.out_proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, S, d = x.shape
        qkv = self.qkv_proj(x).reshape(b, S, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [b, heads, S, head_dim]
        logits = (q * self.head_dim ** -0.5) @ k.transpose(-1, -2)  # [b, heads, S, S]
        attn = self.attn_dropout(logits.softmax(dim=-1))
        out = (attn @ v).transpose(1, 2).reshape(b, S, d)
        return self.out_proj(out)


class _TransformerEncoder(nn.Module):
    """Pre-norm transformer layer: attention, then FFN, each with a residual."""

    def __init__(self, d: int, ffn_dim: int, heads: int, attn_dropout: float, dropout: float,
                 ffn_dropout: float):
        super().__init__()
        self.pre_norm_mha = nn.Sequential(nn.LayerNorm(d),
                                          _MultiHeadAttention(d, heads, attn_dropout),
                                          nn.Dropout(dropout))
        self.pre_norm_ffn = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, ffn_dim), nn.SiLU(),
                                          nn.Dropout(ffn_dropout), nn.Linear(ffn_dim, d),
                                          nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pre_norm_mha(x)
        return x + self.pre_norm_ffn(x)


class MobileViTAttn(nn.Module):
    """x: [B, in_channels, H, W] -> [B, in_channels, H, W]."""

    def __init__(self, in_channels: int, transformer_dim: int, ffn_dim: int,
                 n_transformer_blocks: int = 2, head_dim: int = 32, attn_dropout: float = 0.0,
                 dropout: float = 0.0, ffn_dropout: float = 0.0, patch_h: int = 2,
                 patch_w: int = 2, conv_ksize: int = 3, dilation: int = 1,
                 no_fusion: bool = False):
        super().__init__()
        if transformer_dim % head_dim != 0:
            raise ValueError(f"MobileViTAttn: transformer_dim {transformer_dim} is not a "
                             f"multiple of head_dim {head_dim}")
        if n_transformer_blocks < 1:
            raise ValueError("MobileViTAttn: n_transformer_blocks must be at least 1")
        self.patch_h, self.patch_w = patch_h, patch_w
        self.local_rep = nn.Sequential()
        self.local_rep.add_module("conv_3x3", _conv_bn_silu(in_channels, in_channels,
                                                            conv_ksize, dilation))
        self.local_rep.add_module("conv_1x1", _conv_bn_silu(in_channels, transformer_dim, 1,
                                                            norm_act=False))
        heads = transformer_dim // head_dim
        self.global_rep = nn.Sequential(
            *[_TransformerEncoder(transformer_dim, ffn_dim, heads, attn_dropout, dropout,
                                  ffn_dropout) for _ in range(n_transformer_blocks)],
            nn.LayerNorm(transformer_dim))
        self.conv_proj = _conv_bn_silu(transformer_dim, in_channels, 1)
        self.fusion = None if no_fusion else _conv_bn_silu(2 * in_channels, in_channels,
                                                           conv_ksize)

    def unfold(self, fm: torch.Tensor) -> torch.Tensor:
        """[B, d, H, W] -> [B·P, N, d]."""
        B, d, H, W = fm.shape
        ph, pw = self.patch_h, self.patch_w
        nh, nw = H // ph, W // pw
        t = fm.reshape(B * d * nh, ph, nw, pw).transpose(1, 2)  # [B·d·nh, nw, ph, pw]
        t = t.reshape(B, d, nh * nw, ph * pw).transpose(1, 3)  # [B, P, N, d]
        return t.reshape(B * ph * pw, nh * nw, d)

    def fold(self, patches: torch.Tensor, B: int, H: int, W: int) -> torch.Tensor:
        """[B·P, N, d] -> [B, d, H, W]."""
        ph, pw = self.patch_h, self.patch_w
        nh, nw = H // ph, W // pw
        d = patches.shape[-1]
        t = patches.reshape(B, ph * pw, nh * nw, d).transpose(1, 3)  # [B, d, N, P]
        t = t.reshape(B * d * nh, nw, ph, pw).transpose(1, 2)  # [B·d·nh, ph, nw, pw]
        return t.reshape(B, d, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        fm = self.local_rep(x)
        # the authors' unfolding: a map that is not a multiple of the patch is resized
        # bilinearly (align_corners=False) to the next multiples, and back after folding
        Hp, Wp = -(-H // self.patch_h) * self.patch_h, -(-W // self.patch_w) * self.patch_w
        resized = (Hp, Wp) != (H, W)
        if resized:
            fm = F.interpolate(fm, size=(Hp, Wp), mode="bilinear", align_corners=False)
        fm = self.fold(self.global_rep(self.unfold(fm)), B, Hp, Wp)
        if resized:
            fm = F.interpolate(fm, size=(H, W), mode="bilinear", align_corners=False)
        fm = self.conv_proj(fm)
        if self.fusion is None:
            return fm
        return self.fusion(torch.cat((x, fm), dim=1))

