"""Outlook attention of VOLO, and the Outlooker block around it.

Paper: Yuan, Hou, Jiang, Feng, Yan, "VOLO: Vision Outlooker for Visual Recognition", TPAMI
2022, arXiv:2106.13112 (§3.1, Eqs. 3-5 and Algorithm 1). Follows the authors' code,
sail-sg/volo, models/volo.py, classes OutlookAttention and Outlooker (with its Mlp), as first
released (commit 6883c87, the form of Algorithm 1). On a channels-last map x [B, H, W, C]:
- v = Linear(C, C, bias=qkv_bias)(x), unfolded (F.unfold: kernel k, padding p, stride s)
  into a k·k window per grid position, the grid h × w with h = ceil(H / s), w = ceil(W / s);
  channels split into num_heads heads of C / num_heads (head-major);
- the weights come from the anchor token alone: x average-pooled s × s (stride s,
  ceil_mode, so a window cut by the border averages what it holds; the identity for s = 1),
  then Linear(C, num_heads·k⁴) read as [heads, k² (out), k² (in)] (head-major, then the
  position a weighted value is written to, then the window position it is read from,
  each row-major in the k × k window), times qk_scale (head_dim^-0.5 by default,
  head_dim = C // num_heads), a softmax over the k² window positions read (in), dropout;
- each grid position's k² output vectors, Σ_in a[out, in] v[in] per head, are folded
  back (F.fold, the same kernel, padding and stride, output H × W): overlapping windows
  add up;
- Linear(C, C) and dropout.
Outlooker (pre-norm): x + OA(LayerNorm(x)), then x + Mlp(LayerNorm(x)), the Mlp Linear(C,
int(C·mlp_ratio)), exact GELU, Linear back to C.

Parameters are registered as the authors' __init__ orders them: v, attn, proj (and for
the block norm1, attn.*, norm2, mlp.fc1, mlp.fc2).

Deviations:
- A later commit of the authors' file (113117f) gives stride 1 another path, unfolding v
  with a (2k − 1)² window and folding each position's own k² × k² weights into one
  (2k − 1)² kernel. That is a different function (every query aggregates with its own
  weights instead of collecting its neighbours' windows; outputs differ by O(1) on random
  weights), not an optimisation of this one. Here every stride follows the first release
  and Algorithm 1. The released VOLO models use stride 2, where both commits agree.
- The attention dropout draws its mask on the weights laid out [B, h, w, heads, k², k²]
  (the layout of the Linear's output), the authors on [B, heads, h·w, k², k²]: the same
  distribution, another assignment of random numbers to weights (they coincide for one
  head). The spec draws it on the first layout too, so train-mode checks compare the
  same masks.
- Outlooker: drop_path (stochastic depth) is timm's drop_path, as the authors' DropPath
  (0 in every VOLO outlooker block: outlooker_blocks is never given a rate). act_layer and
  norm_layer are fixed to the authors' GELU and LayerNorm.
- As in the authors' code, dim must be divisible by num_heads, and the unfold grid must be
  ceil(H / s) × ceil(W / s), which holds for k = 2p + 1 (an odd kernel, 'same' padding) at
  any stride; other settings raise an error, where the authors' reshape fails.
This reference pools with ceil_mode on any map, as the spec does (avgpool(..., ceil = true)).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._stochastic_depth import drop_path


class OutlookAttention(nn.Module):
    """x: [B, H, W, dim] -> [B, H, W, dim]."""

    def __init__(self, dim: int, num_heads: int, kernel_size: int = 3, padding: int = 1,
                 stride: int = 1, qkv_bias: bool = False, qk_scale: float | None = None,
                 attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if num_heads < 1 or dim % num_heads != 0:
            raise ValueError(f"OutlookAttention: dim must be divisible by num_heads, "
                             f"got dim={dim}, num_heads={num_heads}")
        self.num_heads = num_heads
        self.kernel_size = kernel_size
        self.padding = padding
        self.stride = stride
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.attn = nn.Linear(dim, kernel_size ** 4 * num_heads)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        M, k, p, s = self.num_heads, self.kernel_size, self.padding, self.stride
        kk = k * k
        h, w = math.ceil(H / s), math.ceil(W / s)

        # values: a k × k window per grid position, [B, C·kk, L] (channel-major)
        v = F.unfold(self.v(x).permute(0, 3, 1, 2), k, padding=p, stride=s)
        if v.shape[-1] != h * w:
            raise ValueError(f"OutlookAttention: the unfold grid has {v.shape[-1]} positions, "
                             f"the pooled map {h}×{w}; kernel_size={k}, padding={p}, "
                             f"stride={s} do not fit a {H}×{W} map")
        v = v.reshape(B, M, C // M, kk, h * w).permute(0, 1, 4, 3, 2)  # [B, M, hw, kk, c]

        # weights from the (pooled) anchor token: [B, h, w, M, kk (out), kk (in)]
        anchor = F.avg_pool2d(x.permute(0, 3, 1, 2), s, s, ceil_mode=True).permute(0, 2, 3, 1)
        a = self.attn(anchor).reshape(B, h, w, M, kk, kk)
        a = self.attn_drop((a * self.scale).softmax(dim=-1))
        a = a.reshape(B, h * w, M, kk, kk).transpose(1, 2)  # [B, M, hw, kk, kk]

        # weighted windows, folded back onto the H × W map: overlaps add up
        y = (a @ v).permute(0, 1, 4, 3, 2).reshape(B, C * kk, h * w)
        y = F.fold(y, (H, W), k, padding=p, stride=s)  # [B, C, H, W]
        return self.proj_drop(self.proj(y.permute(0, 2, 3, 1)))


class Mlp(nn.Module):
    """The authors' Mlp with its dropout at 0: fc1, GELU, fc2."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Outlooker(nn.Module):
    """x: [B, H, W, dim] -> [B, H, W, dim]: outlook attention and an MLP, pre-norm."""

    def __init__(self, dim: int, kernel_size: int, padding: int, stride: int = 1,
                 num_heads: int = 1, mlp_ratio: float = 3.0, attn_drop: float = 0.0,
                 drop_path: float = 0.0, qkv_bias: bool = False,
                 qk_scale: float | None = None):
        super().__init__()
        self.drop_path = drop_path
        self.norm1 = nn.LayerNorm(dim)
        self.attn = OutlookAttention(dim, num_heads, kernel_size=kernel_size,
                                     padding=padding, stride=stride, qkv_bias=qkv_bias,
                                     qk_scale=qk_scale, attn_drop=attn_drop)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + drop_path(self.attn(self.norm1(x)), self.drop_path, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)
