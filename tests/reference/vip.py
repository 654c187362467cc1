"""Weighted Permute-MLP of Vision Permutator (ViP).

Paper: Hou, Jiang, Yuan, Cheng, Yan, Feng, "Vision Permutator: A Permutable MLP-Like Architecture
for Visual Recognition", TPAMI 2022, arXiv:2106.12368 (§3.2, Permute-MLP and the weighted
Permute-MLP with split attention).
Official code: houqb/VisionPermutator, models/vip.py, class `WeightedPermuteMLP`:
- input channels last, [B, H, W, C]; C is cut into segment_dim segments of N = C // segment_dim;
- height branch: [B, H, W, S, N] -> [B, S, W, H, N] -> [B, S, W, H*N], `mlp_h` =
  Linear(C, C, bias=qkv_bias) on the last axis (so H * N must equal C: H == segment_dim),
  then back to [B, H, W, C]; width branch the same with W (`mlp_w`); channel branch
  `mlp_c` = Linear(C, C, bias=qkv_bias);
- split attention: the branches' sum averaged over H and W, `reweight` = Mlp(C, C // 4, 3C)
  (fc1, GELU, fc2; its dropout is 0), reshaped [B, C, 3] (channel-major), softmax over the
  three, out = h*a0 + w*a1 + c*a2;
- `proj` = Linear(C, C) and Dropout(proj_drop).
Parameters are registered in the authors' order (mlp_c, mlp_h, mlp_w, reweight, proj).
Deviations: the constructor's unused qk_scale and attn_drop are left out.
"""

import torch
from torch import nn


class WeightedPermuteMLP(nn.Module):
    """x: [B, segment_dim, segment_dim, dim] -> the same shape."""

    def __init__(self, dim: int, segment_dim: int = 8, qkv_bias: bool = False,
                 proj_drop: float = 0.0):
        super().__init__()
        self.segment_dim = segment_dim
        self.mlp_c = nn.Linear(dim, dim, bias=qkv_bias)
        self.mlp_h = nn.Linear(dim, dim, bias=qkv_bias)
        self.mlp_w = nn.Linear(dim, dim, bias=qkv_bias)
        self.reweight = nn.Sequential(nn.Linear(dim, dim // 4), nn.GELU(),
                                      nn.Linear(dim // 4, 3 * dim))
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        S = self.segment_dim
        N = C // S
        seg = x.view(B, H, W, S, N)
        # height: H trades places with the segment axis, Linear over (H, N)
        h = seg.permute(0, 3, 2, 1, 4).reshape(B, S, W, H * N)
        h = self.mlp_h(h).view(B, S, W, H, N).permute(0, 3, 2, 1, 4).reshape(B, H, W, C)
        # width: W trades places with the segment axis, Linear over (W, N)
        w = seg.permute(0, 1, 3, 2, 4).reshape(B, H, S, W * N)
        w = self.mlp_w(w).view(B, H, S, W, N).permute(0, 1, 3, 2, 4).reshape(B, H, W, C)
        c = self.mlp_c(x)
        # split attention across the three branches, per channel
        s = (h + w + c).mean(dim=(1, 2))  # [B, C]
        a = self.reweight(s).view(B, C, 3).softmax(dim=2)  # [B, C, 3]
        a = a[:, None, None]  # [B, 1, 1, C, 3]
        out = h * a[..., 0] + w * a[..., 1] + c * a[..., 2]
        return self.proj_drop(self.proj(out))
