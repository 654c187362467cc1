"""Contextual Transformer (CoT) block.

Paper: Li, Yao, Pan, Mei, "Contextual Transformer Networks for Visual Recognition", TPAMI
2022, arXiv:2107.12292, §3.2 (Fig. 2): the keys' static context K1 (a k×k grouped conv over
the input), a k×k attention matrix per position from [K1, X] through two 1×1 convs, the
values aggregated with it over each k×k window (the dynamic context K2), and the output a
fusion of K1 and K2.
Official code: JDAI-CV/CoTNet, models/cotnet.py, class CotLayer(dim, kernel_size) (the
block CoTNet puts in place of every ResNet bottleneck's 3×3 conv), with its constants
share_planes = 8, factor = 2, key groups 4, radix 2, reduction_factor 4, and the local
convolution op of cupy_layers/aggregation_zeropad.py, step by step:

  k  = ReLU(BN(conv_k×k(x, groups = 4, no bias)))                           static context K1
  w  = GN(conv1x1(ReLU(BN(conv1x1(cat[x, k], dim / 2, no bias))), k²·dim/8))
       GroupNorm with dim/8 groups: each group holds one weight channel's k² offsets
  v  = BN(conv1x1(x, dim, no bias))
  k2 = swish(BN(local_conv(v, w)))                                          dynamic context K2
  a  = softmax over the radix of se(mean_HW(k2 + k)).view(B, dim, 2)        SK-like fusion
       se = conv1x1(dim, max(dim·2/4, 32)) → BN → ReLU → conv1x1(2·dim), both with biases
  out = a[..., 0] · k2 + a[..., 1] · k

local_conv (the authors' CUDA kernel aggregation_zeropad, stride 1, padding (k − 1) / 2):
with w laid out [B, 1, G, k², H, W], G = dim / 8 weight channels, output channel c at
position p is Σ_j w[b, 0, c mod G, j, p] · v[b, c, p + o_j], o_j the j-th offset of the k×k
window (row-major, from −(k−1)/2), v zero beyond the map. The channels sharing one weight
are c ≡ g (mod G), interleaved, not adjacent. Written here with F.unfold (the same sums as
the authors' own check of the kernel against Unfold).

Notes:
  - The paper writes the query/key concatenation as [K1, Q]; the code concatenates
    [x, k] (the input first), which is followed here.
  - swish = x · sigmoid(x) (timm's 'swish').
  - No deviation in the computation. Plain torch, so it runs on CPU and in float64 (the
    official op needs CUDA).

variant="coxt" is the same file's CoXtLayer(dim, kernel_size) (their cotnext models): the
static context's conv in 8 groups; [x, k] interleaved channel by channel
(cat([x.unsqueeze(2), k.unsqueeze(2)], 2).view(B, 2·dim, H, W)); the embedding's two 1x1
convs and the value's in 2 groups (dw_group); the local convolution on the batch viewed
[2B, dim / 2, H, W] with the weights viewed [2B, 1, G / 2, k², H, W].
"""

import torch
import torch.nn.functional as F
from torch import nn


def local_conv(v: torch.Tensor, w: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """The authors' aggregation_zeropad at stride 1: v [B, C, H, W], w [B, G, k², H, W]
    → [B, C, H, W], channel c weighted by w's channel c mod G (zero padding)."""
    b, c, h, wd = v.shape
    g, kk = w.shape[1], w.shape[2]
    patches = F.unfold(v, kernel_size, padding=(kernel_size - 1) // 2)  # [B, C·k², HW]
    patches = patches.view(b, c // g, g, kk, h, wd)  # channel c = i·G + g  →  (i, g)
    return (patches * w.unsqueeze(1)).sum(dim=3).reshape(b, c, h, wd)


class CoT(nn.Module):
    """x: [B, dim, H, W] -> [B, dim, H, W]."""

    def __init__(self, dim: int, kernel_size: int = 3, variant: str = "cot"):
        super().__init__()
        self.dw_group = 1 if variant == "cot" else 2  # CoXtLayer's grouped embeddings
        if kernel_size % 2 == 0:
            raise ValueError(f"CoT: kernel_size must be odd, got {kernel_size}")
        share_planes, factor, self.radix = 8, 2, 2
        self.dim, self.kernel_size = dim, kernel_size
        self.groups = dim // share_planes  # weight channels, each shared by dim / groups
        if self.groups < 1 or dim % self.groups or dim % 4:
            raise ValueError(f"CoT: dim must be a multiple of 4 and of dim // 8, got {dim}")
        kk = kernel_size * kernel_size
        # Attribute order = the official registration order = state_dict order.
        self.key_embed = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2,
                      groups=4 if variant == "cot" else 8, bias=False),
            nn.BatchNorm2d(dim),
            nn.ReLU(),
        )
        dw = self.dw_group
        self.embed = nn.Sequential(
            nn.Conv2d(2 * dim, dim // factor, 1, groups=dw, bias=False),
            nn.BatchNorm2d(dim // factor),
            nn.ReLU(),
            nn.Conv2d(dim // factor, kk * self.groups, 1, groups=dw),
            nn.GroupNorm(self.groups, kk * self.groups),
        )
        self.conv1x1 = nn.Sequential(nn.Conv2d(dim, dim, 1, groups=dw, bias=False),
                                     nn.BatchNorm2d(dim))
        self.bn = nn.BatchNorm2d(dim)
        attn_chs = max(dim * self.radix // 4, 32)
        self.se = nn.Sequential(
            nn.Conv2d(dim, attn_chs, 1),
            nn.BatchNorm2d(attn_chs),
            nn.ReLU(),
            nn.Conv2d(attn_chs, self.radix * dim, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, wd = x.shape
        k = self.key_embed(x)  # static context
        dw = self.dw_group
        if dw == 1:
            w = self.embed(torch.cat([x, k], dim=1))
        else:  # CoXtLayer: x and k interleaved channel by channel
            w = self.embed(torch.cat([x.unsqueeze(2), k.unsqueeze(2)], dim=2).view(b, -1, h, wd))
        w = w.view(b * dw, self.groups // dw, self.kernel_size ** 2, h, wd)
        v = self.conv1x1(x).view(b * dw, c // dw, h, wd)
        d = self.bn(local_conv(v, w, self.kernel_size).view(b, c, h, wd))
        d = d * torch.sigmoid(d)  # swish: the dynamic context
        u = torch.stack([d, k], dim=2)  # [B, C, radix, H, W]
        s = u.sum(dim=2).mean(dim=(2, 3), keepdim=True)  # [B, C, 1, 1]
        a = self.se(s).view(b, c, self.radix).softmax(dim=2)  # channel-major, as the code
        return (u * a.view(b, c, self.radix, 1, 1)).sum(dim=2)
