"""ResT's efficient multi-head self-attention (EMSA).

Paper: Zhang, Yang, "ResT: An Efficient Transformer for Visual Recognition", NeurIPS 2021,
arXiv:2105.13677. Follows the authors' code, wofmanaf/ResT, models/rest.py, class
Attention: q = Linear(x); for sr_ratio > 1 the tokens, read as an H × W map, pass through
a depth-wise Conv2d(kernel sr_ratio + 1, stride sr_ratio, padding sr_ratio // 2) and a
LayerNorm; one Linear(C, 2C) gives the keys and the values (first C outputs the keys,
heads contiguous within each); softmax(q kᵀ · scale) v per head, scale = qk_scale or
head_dim^-0.5; heads concatenated; a biased output Linear.

Deviations, all kept in the spec too:
- Input laid out [B, H, W, C] instead of the authors' forward(x [B, N, C], H, W): the same
  tokens (N = H·W, row-major), the map's size carried by the tensor.
- Parameters registered in the compiled spec's order, not the authors' attribute order:
  sr conv, sr LayerNorm, kv, q, transform_conv, proj (the authors': q, kv, proj, sr,
  sr_norm, transform_conv).
apply_transform (ResT's models set it): a 1×1 Conv2d(M, M) across the heads on the logits,
the softmax, an InstanceNorm2d(M) over each head's map (only with M > 1, as the authors');
attn_drop on the weights, proj_drop after the projection.
The strided convolution is the authors' nn.Conv2d (kernel sr_ratio + 1, stride sr_ratio,
padding sr_ratio // 2), for even and odd sr_ratio alike.
"""

import torch
from torch import nn


class EMSA(nn.Module):
    """x: [B, H, W, C] -> [B, H, W, C]."""

    def __init__(self, C: int, M: int = 8, qkv_bias: bool = False,
                 qk_scale: float | None = None, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, sr_ratio: int = 1, apply_transform: bool = False):
        super().__init__()
        if M < 1 or C % M != 0:
            raise ValueError(f"EMSA: C must be divisible by M, got C={C}, M={M}")
        self.M = M
        self.scale = qk_scale or (C // M) ** -0.5
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(C, C, kernel_size=sr_ratio + 1, stride=sr_ratio,
                                padding=sr_ratio // 2, groups=C)
            self.sr_norm = nn.LayerNorm(C)
        self.kv = nn.Linear(C, 2 * C, bias=qkv_bias)
        self.q = nn.Linear(C, C, bias=qkv_bias)
        self.apply_transform = apply_transform and M > 1
        if self.apply_transform:
            self.transform_conv = nn.Conv2d(M, M, kernel_size=1, stride=1)
            self.transform_norm = nn.InstanceNorm2d(M)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(C, C)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        M, d = self.M, C // self.M
        x = x.reshape(B, H * W, C)  # the authors' tokens
        N = H * W
        q = self.q(x).reshape(B, N, M, d).permute(0, 2, 1, 3)  # [B, M, N, d]
        if self.sr_ratio > 1:
            m = x.permute(0, 2, 1).reshape(B, C, H, W)
            m = self.sr(m).reshape(B, C, -1).permute(0, 2, 1)  # [B, N', C]
            kv_in = self.sr_norm(m)
        else:
            kv_in = x
        kv = self.kv(kv_in).reshape(B, -1, 2, M, d).permute(2, 0, 3, 1, 4)  # [2, B, M, N', d]
        k, v = kv[0], kv[1]
        attn = (q @ k.transpose(-2, -1)) * self.scale  # [B, M, N, N']
        if self.apply_transform:
            attn = self.transform_norm(self.transform_conv(attn).softmax(dim=-1))
        else:
            attn = attn.softmax(dim=-1)
        y = (self.attn_drop(attn) @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(y)).reshape(B, H, W, C)
